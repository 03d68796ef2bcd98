"""GetJobStatus's estimated start and end times on real local clusters of both designs: a PENDING job
behind busy slots gets both (and a RUNNING job an end) when DTQ_ESTIMATE_WINDOW > 0, and no estimate
at all when it is 0 (the default); `dtq status` prints them when present. Design B runs one node,
so the waiting job's owner is the node whose slots are busy."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from model.states import JobState
from realsys import cluster
from realsys.client import DtqClient
from realsys.convert import from_timestamp
from realsys.loadgen import job_payload

pytestmark = pytest.mark.slow

SLOTS = 2
LONG = 3.0  # s: the jobs that keep both slots busy while the test looks


@pytest.fixture(scope="module", params=[("micro", 50), ("mono", 50), ("micro", 0), ("mono", 0)], ids=str)
def running_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[cluster.ClusterInfo, int]]:
    design, window = request.param
    directory = tmp_path_factory.mktemp(f"eta-{design}-{window}")
    nodes = {"nodes": 1} if design == "mono" else {}
    overrides = {"DTQ_ESTIMATE_WINDOW": str(window)}  # explicit: the caller's environment may set it
    with cluster.running(
        design,
        directory,
        store="memory",
        total_slots=SLOTS,
        overrides=overrides,
        timeout=60,
        grace=5,
        **nodes,
    ) as info:
        yield info, window


async def test_a_pending_job_gets_an_estimate_only_when_on(
    running_cluster: tuple[cluster.ClusterInfo, int],
) -> None:
    info, window = running_cluster
    async with DtqClient(info.clients, timeout=10.0) as client:
        first = await client.submit("sleep", job_payload(0.1))  # one completion: a service time
        assert JobState((await client.wait(first, timeout=20)).state) is JobState.SUCCEEDED
        busy = [await client.submit("sleep", job_payload(LONG)) for _ in range(SLOTS)]
        deadline = time.monotonic() + 20
        while not all([JobState((await client.status(j)).state) is JobState.RUNNING for j in busy]):
            assert time.monotonic() < deadline, "the slot-filling jobs never all ran"
            await asyncio.sleep(0.05)
        waiting = await client.submit("sleep", job_payload(0.1))
        before = time.time()
        job = await client.status(waiting)
        running = await client.status(busy[0])
        assert JobState(job.state) is JobState.PENDING and JobState(running.state) is JobState.RUNNING
        if window == 0:
            for pb in (job, running):
                assert not pb.HasField("estimated_start_time") and not pb.HasField("estimated_end_time")
        else:
            assert job.HasField("estimated_start_time") and job.HasField("estimated_end_time")
            start, end = from_timestamp(job.estimated_start_time), from_timestamp(job.estimated_end_time)
            # both slots busy, nobody ahead: it waits for one release (mean / slots) and then runs a mean
            assert before - 1.0 < start < end and end - start < LONG + 1.0
            assert start > before - 1.0 and start - before < LONG
            assert not running.HasField("estimated_start_time") and running.HasField("estimated_end_time")
            assert from_timestamp(running.estimated_end_time) >= from_timestamp(running.start_time)
            if info.design == "mono":  # the CLI prints what the reply carries (one design is enough)
                shown = await asyncio.to_thread(_cli_status, info.directory, waiting)
                assert {"estimated_start_time", "estimated_end_time"} <= set(shown)
        done = await client.status(first)
        assert not done.HasField("estimated_start_time") and not done.HasField("estimated_end_time")
        for job_id in (*busy, waiting):
            await client.cancel(job_id)


def _cli_status(directory: Path, job_id: str) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "realsys", "status", "--dir", str(directory), job_id],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    shown: dict[str, object] = json.loads(out.stdout)
    return shown
