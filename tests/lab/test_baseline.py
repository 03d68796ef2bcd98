"""The Celery + Redis baseline: a private redis-server and Celery worker, driven through CeleryTarget
and the same load generator as dtq. Skipped (with the reason) where redis-server cannot be had; CI
installs it in .ci/run. Every wait is bounded; the module takes about 20 s."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

celery = pytest.importorskip("celery", reason="the lab extra is not installed: pip install -e '.[lab]'")

from lab.baseline.runner import BaselineCluster, RedisUnavailable, ensure_redis_server, run_baseline  # noqa: E402
from lab.baseline.target import CeleryTarget, outcome, state_name  # noqa: E402
from model.results.runs import load_config, load_jobs, load_records, load_summary  # noqa: E402
from model.workload import ClosedLoop, Distribution, Op, RequestMix, WorkloadSpec  # noqa: E402
from realsys.targets import Target, TargetError  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaselineCluster]:
    try:
        ensure_redis_server()
    except RedisUnavailable as exc:
        pytest.skip(str(exc))
    # a short visibility timeout, so the killed-worker test sees redelivery within seconds
    with BaselineCluster(tmp_path_factory.mktemp("baseline"), visibility_timeout=2.0) as c:
        yield c


def sleep_payload(seconds: float) -> bytes:
    return json.dumps({"seconds": seconds}).encode()


def test_state_mapping() -> None:
    assert [state_name(s) for s in ("PENDING", "STARTED", "RETRY", "SUCCESS", "FAILURE", "REVOKED")] == [
        "PENDING",
        "RUNNING",
        "PENDING",
        "SUCCEEDED",
        "FAILED",
        "CANCELLED",
    ]
    assert outcome(None) == ("PENDING", 0)
    assert outcome({"status": "SUCCESS", "result": {"attempts": 2, "output": ""}}) == ("SUCCEEDED", 2)
    failed = {"status": "FAILURE", "result": {"exc_type": "JobFailed", "exc_message": ["boom", 3]}}
    assert outcome(failed) == ("FAILED", 3)
    assert outcome({"status": "FAILURE", "result": {"exc_type": "KeyError", "exc_message": ["x"]}}) == (
        "FAILED",
        1,
    )


async def test_target_semantics(cluster: BaselineCluster) -> None:
    target = CeleryTarget(cluster.redis_url)
    assert isinstance(target, Target) and target.design == "celery"
    try:
        ok = await target.submit("sleep", sleep_payload(0.3))
        assert await target.status(ok) in ("PENDING", "RUNNING")
        with pytest.raises(TargetError) as unfinished:
            await target.result(ok)
        assert unfinished.value.code == "FAILED_PRECONDITION"
        assert await target.wait(ok, 10.0) == ("SUCCEEDED", 1)
        assert await target.result(ok) == "SUCCEEDED"
        with pytest.raises(TargetError) as finished:
            await target.cancel(ok)
        assert finished.value.code == "FAILED_PRECONDITION"

        echo = await target.submit("echo", b"hello")
        hard = await target.submit("fail", b'{"probability": 1.0, "retryable": false}')
        retried = await target.submit("fail", b'{"probability": 1.0}')  # 3 attempts, 0.5 s + 1 s backoff
        bad = await target.submit("sleep", b"not json")
        results = await asyncio.gather(*(target.wait(j, 15.0) for j in (echo, hard, retried, bad)))
        assert results == [("SUCCEEDED", 1), ("FAILED", 1), ("FAILED", 3), ("FAILED", 1)]

        for call, code in (
            (target.list(10), "UNIMPLEMENTED"),
            (target.submit("nope", b""), "INVALID_ARGUMENT"),
        ):
            with pytest.raises(TargetError) as err:
                await call
            assert err.value.code == code

        # fill the 12 slots, then cancel a job still in the queue: it never runs
        busy = [await target.submit("sleep", sleep_payload(1.0)) for _ in range(cluster.slots)]
        queued = await target.submit("sleep", sleep_payload(0.0))
        assert await target.cancel(queued) == "CANCELLING"
        assert await target.wait(queued, 10.0) == ("CANCELLED", 0)
        assert {s for s, _ in await asyncio.gather(*(target.wait(j, 10.0) for j in busy))} == {"SUCCEEDED"}
        # a wait that times out answers with the current state, without blocking longer
        slow = await target.submit("sleep", sleep_payload(2.0))
        started = time.monotonic()
        state, _ = await target.wait(slow, 0.2)
        assert state in ("PENDING", "RUNNING") and time.monotonic() - started < 1.5
    finally:
        await target.close()


def test_short_load_through_the_load_generator(cluster: BaselineCluster, tmp_path: Path) -> None:
    spec = WorkloadSpec(
        arrival=ClosedLoop(4),
        mix=RequestMix(submit=0.5, status=0.25, result=0.25),
        duration=Distribution("constant", 0.01),
        run_time=1.5,
        warmup=0.3,
        seed=3,
    )
    path, summary = run_baseline(cluster, spec, tmp_path, "baseline-celery-test-3-r0", drain_timeout=10.0)
    assert summary == load_summary(path)
    assert summary["kind"] == "baseline" and summary["design"] == "celery"
    jobs = summary["jobs"]
    assert jobs["submitted"] > 10 and jobs["succeeded"] == jobs["submitted"], jobs
    assert summary["throughput"]["jobs_per_s"] > 0
    # the only errors a mixed load may see: a result asked of a job not finished yet
    assert set(summary["errors"]) <= {"FAILED_PRECONDITION"}
    config = load_config(path)
    assert config["design"] == "celery" and config["parameters"]["total_slots"] == 12
    assert config["parameters"]["store"] == "redis" and config["parameters"]["pool"] == "threads"
    all_jobs = load_jobs(path)
    assert set(all_jobs["final_state"].tolist()) == {"SUCCEEDED"}


def test_closed_loop_wait_mode_through_the_load_generator(cluster: BaselineCluster, tmp_path: Path) -> None:
    """Each client waits (pub/sub, no polling) for its job: one job per client in the system, and
    completed_per_s is the count of terminal records ending in the window over its length."""
    spec = WorkloadSpec(
        arrival=ClosedLoop(4, wait_for_completion=True),
        mix=RequestMix(submit=0.75, status=0.25),
        duration=Distribution("constant", 0.02),
        run_time=1.5,
        warmup=0.3,
        seed=4,
    )
    path, summary = run_baseline(
        cluster, spec, tmp_path, "baseline-celery-wait-4-r0", processes=2, drain_timeout=10.0
    )
    requests, jobs = load_records(path)
    owner = {r.job_id: r.client for r in requests if r.op is Op.SUBMIT and r.status == "OK"}
    assert sorted(owner) == sorted(j.job_id for j in jobs) and len(jobs) > 10
    assert all(math.isfinite(j.end_time) for j in jobs) and summary["jobs"]["unfinished"] == 0
    end_of = {j.job_id: j.end_time for j in jobs}
    for client in {r.client for r in requests}:
        mine = sorted((r for r in requests if r.client == client), key=lambda r: r.intended_time)
        for prev, nxt in itertools.pairwise(mine):
            waited = prev.op is Op.SUBMIT and prev.job_id in owner
            waited_until = end_of[prev.job_id] if waited else prev.end_time
            assert nxt.intended_time >= waited_until  # the client's job ended before its next request
    events = sorted([(j.submit_time, 1) for j in jobs] + [(j.end_time, -1) for j in jobs])
    assert max(itertools.accumulate(step for _, step in events)) <= 4
    start, end = spec.warmup, spec.total_time
    finished = sum(start <= j.end_time < end for j in jobs)
    assert summary["throughput"]["completed_per_s"] == pytest.approx(finished / (end - start))
    assert summary["completion_ms"]["count"] == summary["jobs"]["submitted"] > 0


async def test_a_killed_worker_loses_no_work(cluster: BaselineCluster) -> None:
    """acks_late + reject_on_worker_lost: the message of a task whose worker was SIGKILLed goes back to
    the queue once the visibility timeout (2 s here) passes, and a restarted worker runs it."""
    target = CeleryTarget(cluster.redis_url)
    try:
        job = await target.submit("sleep", sleep_payload(1.0))
        for _ in range(200):
            if await target.status(job) == "RUNNING":
                break
            await asyncio.sleep(0.02)
        assert await target.status(job) == "RUNNING"
        await asyncio.to_thread(cluster.kill_worker, 0)
        await asyncio.to_thread(cluster.restart_worker, 0)
        state, _ = await target.wait(job, 20.0)
        assert state == "SUCCEEDED"
    finally:
        await target.close()


def test_down_stops_exactly_its_processes(tmp_path: Path) -> None:
    try:
        ensure_redis_server()
    except RedisUnavailable as exc:
        pytest.skip(str(exc))
    c = BaselineCluster(tmp_path)
    c.up()
    pids = [p.pid for p in (c._redis, *c._workers) if p is not None]
    assert len(pids) == 2
    for pid in pids:  # out of the terminal's process group, in our session (scheduled as dtq's nodes)
        assert os.getpgid(pid) == pid != os.getpgid(0)
        assert os.getsid(pid) == os.getsid(0)
    c.down(grace=10.0)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
