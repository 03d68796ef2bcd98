"""One API conformance suite, run against real six-process local clusters of both designs.

Every test talks through the public client API (realsys.client.DtqClient; raw TaskQueue stubs where a
test needs a request DtqClient does not send) to the addresses in cluster.json, so both designs must
give the same answers and status codes.
Nothing is lost is shown by counting: every accepted job ends in exactly one terminal state.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest

from dtq.v1 import client_pb2, client_pb2_grpc, job_pb2
from model.errors import FailedPrecondition, InvalidArgument, NotFound
from model.ids import owner_of
from model.states import JobState
from realsys import cluster
from realsys.client import DtqClient
from realsys.convert import to_duration
from tests.realsys.conftest import sleep_payload

pytestmark = pytest.mark.slow

DESIGNS = ["micro", "mono"]
FAST = {
    "DTQ_LEASE_DURATION": "2.0",
    "DTQ_HEARTBEAT_INTERVAL": "0.3",
    "DTQ_WORKER_TTL": "2.0",
    "DTQ_DEFAULT_MAX_ATTEMPTS": "5",
    "DTQ_DRAIN_TIMEOUT": "2.0",
}
TERMINAL = {JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}


@pytest.fixture(scope="module", params=DESIGNS)
def running_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[cluster.ClusterInfo]:
    directory = tmp_path_factory.mktemp(f"cluster-{request.param}")
    with cluster.running(
        request.param, directory, store="sqlite", overrides=FAST, timeout=60, grace=5
    ) as info:
        yield info


@pytest.fixture
async def client(running_cluster: cluster.ClusterInfo) -> AsyncIterator[DtqClient]:
    async with DtqClient(running_cluster.clients, timeout=10.0) as c:
        yield c


async def wait_all_terminal(client: DtqClient, job_ids: list[str], timeout: float) -> dict[str, JobState]:
    jobs = await asyncio.gather(*(client.wait(j, timeout=timeout) for j in job_ids))
    return {j.job_id: JobState(j.state) for j in jobs}


async def wait_until_running(client: DtqClient, job_ids: list[str], timeout: float) -> None:
    """Returns once one of `job_ids` is RUNNING; fails after `timeout` seconds (bounded polling)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        states = [JobState((await client.status(j)).state) for j in job_ids]
        if JobState.RUNNING in states:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"none of {len(job_ids)} jobs started running within {timeout}s")


# ---------------------------------------------------------------------------- happy paths
async def test_submit_status_wait_result(client: DtqClient) -> None:
    job_id = await client.submit("echo", b"ping", labels={"suite": "happy"})
    status = await client.status(job_id)
    assert status.job_id == job_id
    assert JobState(status.state) in {JobState.PENDING, JobState.RUNNING, JobState.SUCCEEDED}
    done = await client.wait(job_id, timeout=20)
    assert JobState(done.state) is JobState.SUCCEEDED and done.done
    result = await client.result(job_id)
    assert result.response.output == b"ping"
    assert result.job.attempt == 1


async def test_result_long_poll_returns_when_done(client: DtqClient) -> None:
    job_id = await client.submit("sleep", sleep_payload(0.3))
    result = await client.result(job_id, wait=15)
    assert JobState(result.job.state) is JobState.SUCCEEDED


async def test_failing_job_is_retried_then_failed(client: DtqClient) -> None:
    job_id = await client.submit("fail", json.dumps({"probability": 1.0}).encode(), max_attempts=2)
    done = await client.wait(job_id, timeout=30)
    assert JobState(done.state) is JobState.FAILED
    assert done.attempt == 2
    result = await client.result(job_id)
    assert result.WhichOneof("outcome") == "error"


async def test_submit_with_wait_returns_the_ended_job(client: DtqClient) -> None:
    reply = await client.submit_wait("echo", b"sync", timeout=20)
    assert reply.job.done and JobState(reply.job.state) is JobState.SUCCEEDED
    assert reply.job.job_id == reply.job_id and reply.job.attempt == 1 and not reply.deduplicated
    assert (await client.result(reply.job_id)).response.output == b"sync"
    failed = await client.submit_wait(
        "fail", json.dumps({"probability": 1.0}).encode(), max_attempts=1, timeout=20
    )
    assert JobState(failed.job.state) is JobState.FAILED and failed.job.HasField("error")
    # with a request_id: the retry finds the original job, already ended
    request_id = f"sync-{time.time_ns()}"
    first = await client.submit_wait("echo", b"once", request_id=request_id, timeout=20)
    again = await client.submit_wait("echo", b"once", request_id=request_id, timeout=20)
    assert again.job_id == first.job_id and again.deduplicated and again.job.done


async def test_submit_with_wait_answers_when_the_wait_runs_out(
    client: DtqClient, running_cluster: cluster.ClusterInfo
) -> None:
    started = time.monotonic()
    channel = grpc.aio.insecure_channel(running_cluster.clients[0])
    try:
        stub = client_pb2_grpc.TaskQueueStub(channel)
        request = client_pb2.SubmitJobRequest(
            spec=job_pb2.JobSpec(job_type="sleep", payload=sleep_payload(5.0)), wait_timeout=to_duration(0.3)
        )
        short: client_pb2.SubmitJobResponse = await stub.SubmitJob(request, timeout=10)
        assert time.monotonic() - started >= 0.25
        assert not short.job.done and JobState(short.job.state) in {JobState.PENDING, JobState.RUNNING}
        # a wait longer than the call's deadline is capped below it: OK, not DEADLINE_EXCEEDED
        request.wait_timeout.CopyFrom(to_duration(30.0))
        started = time.monotonic()
        capped: client_pb2.SubmitJobResponse = await stub.SubmitJob(request, timeout=1.0)
        assert time.monotonic() - started < 1.0 and not capped.job.done
        # a negative wait is refused before any job is made
        tag = f"neg-{time.time_ns()}"
        bad = client_pb2.SubmitJobRequest(spec=job_pb2.JobSpec(job_type="echo", labels={"tag": tag}))
        bad.wait_timeout.seconds = -1
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.SubmitJob(bad, timeout=5)
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert (await client.list(labels={"tag": tag}))[0] == []
    finally:
        await channel.close(None)
    done = await wait_all_terminal(client, [short.job_id, capped.job_id], timeout=30)
    assert set(done.values()) == {JobState.SUCCEEDED}


# ---------------------------------------------------------------------------- errors
async def test_unknown_job_is_not_found(client: DtqClient, running_cluster: cluster.ClusterInfo) -> None:
    owner = "job" if running_cluster.design == "micro" else "n1"
    for call in (client.status, client.result, client.cancel):
        with pytest.raises(NotFound):
            await call(f"{owner}-abc-00000fffff")


async def test_invalid_arguments(client: DtqClient) -> None:
    with pytest.raises(InvalidArgument):
        await client.status("not a job id")
    with pytest.raises(InvalidArgument):
        await client.submit("")  # empty job type
    with pytest.raises(InvalidArgument):
        await client.list(page_size=-1)
    with pytest.raises(InvalidArgument):
        await client.list(page_token="garbage!")
    _, token = await client.list(states=[JobState.SUCCEEDED], page_size=1)
    if token:  # a token used with another filter is refused
        with pytest.raises(InvalidArgument):
            await client.list(states=[JobState.FAILED], page_size=1, page_token=token)


async def test_result_of_unfinished_job_is_failed_precondition(client: DtqClient) -> None:
    job_id = await client.submit("sleep", sleep_payload(1.0))
    with pytest.raises(FailedPrecondition):
        await client.result(job_id)
    await client.wait(job_id, timeout=20)


async def test_cancel_finished_job_is_failed_precondition(client: DtqClient) -> None:
    job_id = await client.submit("echo", b"x")
    await client.wait(job_id, timeout=20)
    with pytest.raises(FailedPrecondition):
        await client.cancel(job_id)


# ---------------------------------------------------------------------------- semantics
async def test_idempotent_resubmit(client: DtqClient) -> None:
    request_id = f"req-{time.time_ns()}"
    first = await client.submit("echo", b"once", request_id=request_id)
    second = await client.submit("echo", b"once", request_id=request_id)
    assert first == second


async def test_cancel_pending_job(client: DtqClient) -> None:
    # fill every slot so the last job stays pending, then cancel it
    blockers = [await client.submit("sleep", sleep_payload(2.0), priority=10) for _ in range(14)]
    pending = await client.submit("sleep", sleep_payload(2.0), priority=-10)
    cancelled = await client.cancel(pending)
    assert JobState(cancelled.state) is JobState.CANCELLED
    final = await wait_all_terminal(client, [*blockers, pending], timeout=40)
    assert final[pending] is JobState.CANCELLED
    assert all(final[b] is JobState.SUCCEEDED for b in blockers)


async def test_cancel_running_job_reaches_handler(client: DtqClient) -> None:
    job_id = await client.submit("sleep", sleep_payload(60.0))
    deadline = time.monotonic() + 20
    while JobState((await client.status(job_id)).state) is not JobState.RUNNING:
        assert time.monotonic() < deadline, "job never started"
        await asyncio.sleep(0.05)
    cancelling = await client.cancel(job_id)
    assert JobState(cancelling.state) in {JobState.CANCELLING, JobState.CANCELLED}
    started = time.monotonic()
    done = await client.wait(job_id, timeout=20)
    assert JobState(done.state) is JobState.CANCELLED
    assert time.monotonic() - started < 10, "the handler did not stop cooperatively"


async def test_list_filters_and_pagination_see_every_job_once(client: DtqClient) -> None:
    tag = f"list-{time.time_ns()}"
    ids = set(await asyncio.gather(*(client.submit("echo", b"", labels={"tag": tag}) for _ in range(23))))
    await wait_all_terminal(client, sorted(ids), timeout=30)
    seen: list[str] = []
    token = ""
    while True:
        jobs, token = await client.list(labels={"tag": tag}, page_size=5, page_token=token)
        assert len(jobs) <= 5
        seen.extend(j.job_id for j in jobs)
        if not token:
            break
    assert len(seen) == len(set(seen)) == 23
    assert set(seen) == ids
    keys = [(j.create_time.ToNanoseconds(), j.job_id) for j in [await client.status(i) for i in seen]]
    assert keys == sorted(keys), "pages are not in (create time, id) order"
    succeeded, _ = await client.list(labels={"tag": tag}, states=[JobState.SUCCEEDED], page_size=100)
    assert {j.job_id for j in succeeded} == ids
    none, token = await client.list(labels={"tag": tag}, job_type="sleep", page_size=100)
    assert none == [] and token == ""


async def test_many_jobs_all_end_in_exactly_one_terminal_state(client: DtqClient) -> None:
    ids = list(await asyncio.gather(*(client.submit("sleep", sleep_payload(0.01)) for _ in range(120))))
    assert len(set(ids)) == len(ids)
    final = await wait_all_terminal(client, ids, timeout=60)
    assert all(state is JobState.SUCCEEDED for state in final.values())


# ---------------------------------------------------------------------------- faults
def worker_bearing(info: cluster.ClusterInfo) -> str:
    return "worker" if info.design == "micro" else "n2"


@pytest.mark.parametrize("design", DESIGNS)
async def test_worker_killed_mid_job_has_its_job_requeued(design: str, tmp_path: Path) -> None:
    with cluster.running(
        design, tmp_path / design, store="sqlite", overrides=FAST, timeout=60, grace=5
    ) as info:
        async with DtqClient(info.clients, timeout=10.0) as client:
            ids = list(await asyncio.gather(*(client.submit("sleep", sleep_payload(1.5)) for _ in range(24))))
            victim = worker_bearing(info)
            # kill only once the victim runs a job (a fixed sleep missed them on a slow first run)
            mine = [j for j in ids if info.design == "micro" or owner_of(j) == victim]
            await wait_until_running(client, mine, timeout=20.0)
            cluster.kill(info.directory, victim, signal.SIGKILL)
            await asyncio.sleep(0.5)
            cluster.start(info.directory, victim, timeout=60)
            final = await wait_all_terminal(client, ids, timeout=90)
            assert all(s is JobState.SUCCEEDED for s in final.values()), final
            statuses = [await client.status(j) for j in ids]
            assert max(s.attempt for s in statuses) >= 2, "no job was requeued: the kill hit no running job"


@pytest.mark.parametrize(("design", "victims"), [("micro", ["job", "result"]), ("mono", ["n1", "n4"])])
async def test_restarted_owner_loses_no_accepted_job(design: str, victims: list[str], tmp_path: Path) -> None:
    with cluster.running(
        design, tmp_path / design, store="sqlite", overrides=FAST, timeout=60, grace=5
    ) as info:
        async with DtqClient(info.clients, timeout=10.0) as client:
            before = list(
                await asyncio.gather(*(client.submit("sleep", sleep_payload(0.2)) for _ in range(40)))
            )
            for victim in victims:
                cluster.kill(info.directory, victim, signal.SIGKILL)
                cluster.start(info.directory, victim, timeout=60)
            after = list(
                await asyncio.gather(*(client.submit("sleep", sleep_payload(0.05)) for _ in range(20)))
            )
            final = await wait_all_terminal(client, before + after, timeout=90)
            assert len(final) == 60
            assert all(s is JobState.SUCCEEDED for s in final.values()), final
            listed = {j.job_id async for j in client.list_all(page_size=100)}
            assert set(before + after) <= listed
