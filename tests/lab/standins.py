"""Stand-ins for the real system in the lab's end-to-end tests: no cluster, and the simulator at
slower parameters as the "real" runs (the validation and semantics suites drive their real side
through these)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import sim
from lab.experiment.plan import PlannedRun
from lab.experiment.runner import _Handle
from model.results.runs import run_config
from sim.params import SimParams

# provenance written into the stand-in runs' configs (no host, no libraries: byte-stable files)
FIXED_PROVENANCE = {"code_version": "test", "python": "3", "libraries": {}, "host": {}}

RunFunction = Callable[[Any, PlannedRun, Any], Any]


@contextlib.contextmanager
def no_cluster(design: str, store: str, slots: int, options: Any) -> Iterator[Any]:
    """A cluster factory that starts nothing."""
    yield _Handle({}, {"store": store, "total_slots": slots})


def simulated_real_run(params: SimParams) -> RunFunction:
    """A run function standing in for the real system: the simulator at `params` (slower than the
    calibration the twins use), its runs labelled real."""

    def run_function(handle: Any, run: PlannedRun, options: Any) -> Any:
        result = sim.run(
            sim.SimConfig(run.design, run.workload, params, replication=run.replication, run_id=run.run_id)  # type: ignore[arg-type]
        )
        config = run_config(
            run_id=run.run_id,
            kind="real",
            design=run.design,
            workload=run.workload,
            parameters={**handle.parameters, "point": dict(run.point)},
            replication=run.replication,
            started_at="2000-01-01T00:00:00Z",
            provenance_info=FIXED_PROVENANCE,
        )
        return config, result.requests, result.jobs, {**result.summary, "kind": "real"}

    return run_function
