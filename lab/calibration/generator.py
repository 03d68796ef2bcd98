"""The load generator's own CPU per request, against the in-process InMemoryTarget."""

from __future__ import annotations

from typing import Any

from lab.calibration.measure import run_async
from model.workload import workload_from_mapping
from realsys.loadgen import run_load
from realsys.targets import InMemoryTarget


def measure_loadgen(seconds: float, rate: float = 500.0) -> dict[str, float]:
    """Generator CPU per request: run_load against the in-process InMemoryTarget (its own tiny work is
    included), open-loop submits, no WaitJob tracking."""
    spec = workload_from_mapping(
        {
            "arrival": {"kind": "open", "rate": rate, "max_in_flight": 256},
            "mix": {"submit": 1.0},
            "job_type": "sleep",
            "duration": {"kind": "constant", "mean": 0},
            "run_time": seconds,
            "warmup": 0,
            "seed": 1,
        }
    )

    async def go() -> Any:
        return await run_load(InMemoryTarget(), spec, track_jobs=False)

    result = run_async(go())
    n = max(len(result.requests), 1)
    return {"cpu_per_request": result.stats.cpu_time / n, "requests": float(n)}
