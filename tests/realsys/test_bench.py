"""`dtq bench`'s end-to-end figure goes through the load generator's closed loop in wait mode."""

from __future__ import annotations

import os

import pytest

from realsys.bench import e2e_once, e2e_workload

pytestmark = pytest.mark.timeout(60)


def test_e2e_workload_is_a_waiting_closed_loop_of_no_ops() -> None:
    spec = e2e_workload(16, 1.5, 4.0)
    assert spec.arrival.clients == 16 and spec.arrival.wait_for_completion  # type: ignore[union-attr]
    assert spec.job_type == "echo" and spec.mix.submit == 1.0 and spec.duration.mean == 0.0
    assert (spec.warmup, spec.run_time) == (1.5, 4.0)


def test_e2e_once_measures_completed_jobs_through_the_load_generator() -> None:
    # the in-memory target answers each call after 1 ms and ends a no-op at once: 4 clients in wait
    # mode complete at most 4 / 1 ms = 4000 jobs/s (each job costs them at least its submit call)
    target = {"factory": "realsys.targets:InMemoryTarget", "kwargs": {"service_time": 0.001}}
    result = e2e_once(target, clients=4, processes=2, warmup=0.2, window=0.6, server_pids=[os.getpid()])
    assert 100 <= result["rate"] <= 4 / 0.001
    assert result["errors"] == {}
    assert result["client_cpu"] > 0 and result["loop"] in ("uvloop", "asyncio")
    assert result["server_cpu"] >= 0 and result["server_cpu_per_job"] >= 0
