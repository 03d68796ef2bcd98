"""Small workloads and configs shared by the simulator tests."""

from __future__ import annotations

from typing import Any

from model.workload import Distribution, OpenLoop, RequestMix, WorkloadSpec, workload_from_mapping


def mixed_workload(rate: float = 150.0, run_time: float = 3.0, seed: int = 7) -> WorkloadSpec:
    """Every op, short exponential jobs: exercises submits, reads, lists and cancels of live jobs."""
    return WorkloadSpec(
        OpenLoop(rate, max_in_flight=256),
        RequestMix(submit=0.6, status=0.15, result=0.1, list=0.05, cancel=0.1),
        duration=Distribution("exponential", 0.2),
        run_time=run_time,
        warmup=0.5,
        seed=seed,
    )


def submits(**changes: Any) -> WorkloadSpec:
    """Open-loop submits of 10 ms jobs (workload file keys; `changes` replace top-level keys)."""
    spec = {
        "arrival": {"kind": "open", "rate": 100},
        "mix": {"submit": 1.0},
        "duration": {"kind": "constant", "mean": 0.01},
        "run_time": 2.0,
        "warmup": 0.3,
        "seed": 4,
    }
    return workload_from_mapping({**spec, **changes})
