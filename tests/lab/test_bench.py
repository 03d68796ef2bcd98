"""`dtq bench`'s end-to-end figure goes through the load generator's closed loop in wait mode."""

from __future__ import annotations

import os

import pytest

from dtq.v1 import client_pb2, job_pb2
from lab.bench.clients import e2e_once, e2e_workload
from lab.bench.targets import RoutedDtqTarget, routed_target_spec
from realsys.targets import DtqTarget, dtq_target_spec

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


async def test_submit_wait_target_answers_wait_from_a_terminal_submit_reply() -> None:
    assert routed_target_spec(["a:1"], "mono", 30.0)["kwargs"]["submit_wait"] == 30.0
    assert "submit_wait" not in dtq_target_spec(["a:1"])["kwargs"]
    with pytest.raises(ValueError):
        DtqTarget(["a:1"], submit_wait=-1.0)
    target = RoutedDtqTarget(["127.0.0.1:1"], timeout=1.0, submit_wait=30.0)
    request = target.submit_request("echo", b"")
    assert request.wait_timeout.seconds == 30 and target.submit_timeout() == 31.0
    done = client_pb2.SubmitJobResponse(job_id="n1-1-01")
    done.job.state, done.job.attempt, done.job.done = job_pb2.SUCCEEDED, 1, True
    target.note_submitted(done)
    target.note_submitted(client_pb2.SubmitJobResponse(job_id="n1-1-02"))  # not ended: not kept
    # answered from the reply: no channel is ever opened (the address would refuse)
    assert await target.wait("n1-1-01", 5.0) == ("SUCCEEDED", 1)
    assert target.ended("n1-1-01") is None and target.ended("n1-1-02") is None
    await target.close()
