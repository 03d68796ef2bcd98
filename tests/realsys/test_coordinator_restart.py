"""Design A, six real processes: a coordinator killed (SIGKILL) while jobs finish makes no job run twice.

Issue 24: the worker gave a finished attempt's report up after ~0.35 s of "connection refused", so
every job that ended while the coordinator was down ran again as attempt 2 once its lease expired.
The worker now keeps the report until it goes through or the lease is gone (model/runtime.py).
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path

import pytest

from model.states import JobState
from realsys import cluster
from realsys.client import DtqClient

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

JOBS = 12  # one per worker slot: all run at once
JOB_SECONDS = 1.0
DOWN_SECONDS = 2.0  # the coordinator stays dead this long: every job ends while it is down
OVERRIDES = {
    "DTQ_LEASE_DURATION": "15.0",  # the whole outage, including a slow restart, fits in the lease
    "DTQ_HEARTBEAT_INTERVAL": "0.5",
    "DTQ_WORKER_TTL": "5.0",
    "DTQ_DRAIN_TIMEOUT": "2.0",
}


async def _all_running(client: DtqClient, job_ids: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [JobState((await client.status(j)).state) for j in job_ids]
        if all(s is JobState.RUNNING for s in states):
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the {len(job_ids)} jobs were not all running within {timeout}s")


async def test_jobs_that_end_while_the_coordinator_is_down_run_once(tmp_path: Path) -> None:
    info = cluster.up("micro", tmp_path / "micro", total_slots=JOBS, overrides=OVERRIDES, timeout=60)
    try:
        async with DtqClient(info.clients, timeout=10.0) as client:
            payload = json.dumps({"seconds": JOB_SECONDS}).encode()
            ids = list(await asyncio.gather(*(client.submit("sleep", payload) for _ in range(JOBS))))
            await _all_running(client, ids, timeout=30.0)
            cluster.kill(info.directory, "coordinator", signal.SIGKILL)
            killed = time.monotonic()
            await asyncio.sleep(DOWN_SECONDS)  # the handlers end; their reports meet a dead coordinator
            cluster.start(info.directory, "coordinator", timeout=60)
            outage = time.monotonic() - killed
            jobs = await asyncio.gather(*(client.wait(j, timeout=60) for j in ids))
            # a new job is picked up at once: the worker does not sleep out a fetch backoff
            back = time.monotonic()
            after = await client.submit("echo", b"after")
            assert JobState((await client.wait(after, timeout=30)).state) is JobState.SUCCEEDED
            picked_up = time.monotonic() - back
        log = (info.directory / "worker.log").read_text()
        dropped = [line for line in log.splitlines() if "dropping report" in line]
        assert outage < float(OVERRIDES["DTQ_LEASE_DURATION"]) - 1.0, f"outage {outage:.1f}s"
        assert [JobState(j.state) for j in jobs] == [JobState.SUCCEEDED] * JOBS, jobs
        assert [j.attempt for j in jobs] == [1] * JOBS, (
            f"jobs ran twice after a coordinator outage of {outage:.1f}s; "
            f"the worker dropped {len(dropped)} reports: {dropped[:2]}"
        )
        assert not dropped
        assert picked_up < 5.0, f"a job submitted after the restart took {picked_up:.1f}s"
    finally:
        cluster.down(info.directory, grace=5)
