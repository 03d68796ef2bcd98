"""The Dramatiq + Redis baseline (lab/baseline/dramatiq_*.py): a private redis-server and a `dramatiq`
master with its worker processes, driven through DramatiqTarget and the same load generator as dtq.
Skipped (with the reason) where redis-server cannot be had. Every wait is bounded."""

from __future__ import annotations

import asyncio
import json
import math
import os
from pathlib import Path

import pytest

pytest.importorskip("dramatiq", reason="the lab extra is not installed: pip install -e '.[lab]'")

from lab.baseline.dramatiq_runner import DramatiqCluster
from lab.baseline.dramatiq_target import DramatiqTarget
from lab.baseline.runner import RedisUnavailable, ensure_redis_server
from lab.bench.clients import e2e_workload
from realsys import loadgen
from realsys.targets import TargetError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]


def test_dramatiq_baseline_end_to_end_then_down_stops_every_process(tmp_path: Path) -> None:
    try:
        ensure_redis_server()
    except RedisUnavailable as exc:
        pytest.skip(str(exc))
    cluster = DramatiqCluster(tmp_path, processes=2, threads=2)
    cluster.up()
    try:
        pids = cluster.server_pids()
        assert len(pids) >= 4  # redis-server, the dramatiq master and its 2 worker processes

        async def semantics() -> None:
            target = DramatiqTarget(cluster.redis_url, submit_threads=2)
            try:
                with pytest.raises(TargetError) as bad:
                    await target.submit("nope", b"")
                assert bad.value.code == "INVALID_ARGUMENT"
                job = await target.submit("sleep", json.dumps({"seconds": 1.0}).encode())
                assert await target.status(job) == "PENDING"
                with pytest.raises(TargetError) as early:
                    await target.result(job)
                assert early.value.code == "FAILED_PRECONDITION"
                assert await target.wait(job, 10.0) == ("SUCCEEDED", 1)
                assert await target.status(job) == "SUCCEEDED" and await target.result(job) == "SUCCEEDED"
                with pytest.raises(TargetError) as cancel:
                    await target.cancel(job)
                assert cancel.value.code == "UNIMPLEMENTED"
            finally:
                await target.close()

        asyncio.run(semantics())
        # the bench's closed loop in wait mode: 4 clients, each with one job in the system at a time
        spec = e2e_workload(4, 0.3, 1.0)
        result = loadgen.run(cluster.target_spec(), spec, 2, drain_timeout=10.0)
        assert len(result.jobs) > 10
        assert all(j.final_state.name == "SUCCEEDED" and math.isfinite(j.end_time) for j in result.jobs)
    finally:
        cluster.down(grace=10.0)
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
