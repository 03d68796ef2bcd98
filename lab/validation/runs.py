"""The validation's runs on disk, real and simulated, and the saturation rates they measured."""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.validation.plan import saturation_name
from lab.validation.spec import DESIGNS, Validation
from model.results.runs import (
    load_config,
    load_summary,
    run_exists,
)
from model.results.summary import metric


@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    kind: str
    design: str
    point: Mapping[str, str]  # axis -> label (the runner's parameters.point)
    workload: Mapping[str, Any]
    replication: int
    summary: Mapping[str, Any]
    started_at: str = ""
    probe: Mapping[str, Any] | None = None  # lab.calibration.hostprobe at its start, when taken


def runs_of(root: Path, kind: str, experiment: str) -> list[RunInfo]:
    """Complete runs of `kind` made for `experiment` (run ids <kind>-<design>-<experiment>.<labels>-...)."""
    out = []
    for design in DESIGNS:
        for path in sorted(root.glob(f"{kind}-{design}-{experiment}.*")):
            if not path.is_dir() or not run_exists(root, path.name):
                continue
            config = load_config(path)
            out.append(
                RunInfo(
                    run_id=path.name,
                    kind=kind,
                    design=str(config["design"]),
                    point=dict(config.get("parameters", {}).get("point", {})),
                    workload=config["workload"],
                    replication=int(config.get("replication", 0)),
                    summary=load_summary(path),
                    started_at=str(config.get("started_at", "")),
                    probe=config.get("parameters", {}).get("host_probe"),
                )
            )
    return out


def saturation_rate(summary: Mapping[str, Any], submit_fraction: float) -> float | None:
    """min(served requests/s, completed jobs/s / submit fraction): see the module docstring."""
    served = metric(summary, ("throughput", "requests_per_s"))
    done = metric(summary, ("throughput", "completed_per_s"))
    if served is None or done is None or not submit_fraction > 0:
        return None
    return min(served, done / submit_fraction)


def measured_saturation(v: Validation, root: Path, kind: str = "real") -> dict[tuple[str, str, str], float]:
    """(design, duration, mix) -> mean saturation rate over the saturation runs of `kind` on disk."""
    values: dict[tuple[str, str, str], list[float]] = {}
    for run in runs_of(root, kind, saturation_name(v)):
        if run.workload["arrival"].get("clients") != v.saturation.clients:
            continue
        key = (run.design, run.point.get("duration", ""), run.point.get("mix", ""))
        rate = saturation_rate(run.summary, v.submit_fraction(key[2])) if key[2] in dict(v.mixes) else None
        if rate is not None:
            values.setdefault(key, []).append(rate)
    return {k: statistics.fmean(xs) for k, xs in values.items()}
