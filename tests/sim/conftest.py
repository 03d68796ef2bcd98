"""Small workloads and configs shared by the simulator tests."""

from __future__ import annotations

from model.workload import Distribution, OpenLoop, RequestMix, WorkloadSpec


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
