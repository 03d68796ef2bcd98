"""More twin sets: the same real runs simulated other ways (another calibration, unscaled, the fair
scheduler), each with its own tables under data/validation/<set>/ (`dtq validate --twin-sets`)."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lab.validation.output import build_tables
from lab.validation.spec import Validation
from lab.validation.twins import simulate
from model.errors import InvalidArgument
from sim.params import calibration_path, load_scheduler_slice


@dataclass(frozen=True, slots=True)
class TwinSet:
    """The same real runs simulated another way: from another calibration, on its own host speed or
    moved, or with what-ifs laid over it. `folder` is under data/ ("validation" is the main set)."""

    folder: str
    calibration: str
    host_scale: bool = True
    sim_overrides: Mapping[str, Any] = field(default_factory=dict)
    # the kernel's fair scheduler with the time slice the calibration measured (cpu_slice = its
    # measurements.scheduler_slice) instead of FIFO per burst
    fair_scheduler: bool = False

    @property
    def name(self) -> str:
        return self.folder.rpartition("/")[2]

    def what_ifs(self) -> dict[str, Any]:
        """What this set lays over the calibration (sim.params dotted keys)."""
        out = dict(self.sim_overrides)
        if self.fair_scheduler:
            measured = load_scheduler_slice(self.calibration)
            if measured is None:
                raise InvalidArgument(f"calibration {self.calibration} has no measurements.scheduler_slice")
            out["cpu_slice"] = measured
        return out

    def applied(self, v: Validation) -> Validation:
        return replace(
            v,
            calibration=self.calibration,
            host_scale=self.host_scale,
            sim_overrides={**v.sim_overrides, **self.what_ifs()},
        )


MAIN_FOLDER = "validation"
TWIN_SETS = (
    TwinSet(MAIN_FOLDER, "local"),
    TwinSet("validation/after", "local-after"),
    TwinSet("validation/unscaled", "local", host_scale=False),
    TwinSet("validation/after-unscaled", "local-after", host_scale=False),
    TwinSet("validation/rounds-a", "local-rounds-a"),
    TwinSet("validation/rounds-b", "local-rounds-b"),
    TwinSet("validation/fair", "local", fair_scheduler=True),
    TwinSet("validation/after-fair", "local-after", fair_scheduler=True),
    # a loop that queued for a core takes it warm: no cold wake-up (issue 23)
    TwinSet("validation/warm-handover", "local", sim_overrides={"wakeup_warm_handover": True}),
)


def make_twin_set(
    v: Validation, twin_set: TwinSet, runs: Path | str, data: Path | str, log: Any = print
) -> dict[str, Any] | None:
    """Simulates every real run of `v` under `runs` the twin set's way, in a scratch root of links to
    the real runs (the main twins stay), and writes its tables to data/<folder>/. None (skipped) when
    its calibration file is missing."""
    if twin_set.folder == MAIN_FOLDER:
        raise InvalidArgument("the main twin set is `dtq validate` itself")
    if not calibration_path(twin_set.calibration).is_file():
        log(f"{twin_set.folder}: skipped (no calibration {twin_set.calibration})")
        return None
    varied = twin_set.applied(v)
    with tempfile.TemporaryDirectory(prefix=f"dtq-twins-{twin_set.name}-") as tmp:
        scratch = Path(tmp)
        for real in sorted(Path(runs).glob(f"real-*-{v.name}*")):
            (scratch / real.name).symlink_to(real.resolve(), target_is_directory=True)
        written = simulate(varied, scratch, records=False, log=log)
        tables = build_tables(varied, scratch, Path(data) / twin_set.folder)
    log(f"{twin_set.folder}: {len(written)} twins")
    return tables
