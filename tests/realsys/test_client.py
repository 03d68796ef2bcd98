"""DtqClient against a tiny in-process TaskQueue server backed by a real model.Scheduler (a fake)."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from dtq.v1 import client_pb2, client_pb2_grpc, job_pb2
from model.config import CoreConfig
from model.errors import FailedPrecondition, InvalidArgument, NotFound, Unavailable
from model.ids import JobIdFactory
from model.job import Failed, JobError, JobSpec, Outcome, Succeeded
from model.scheduler import Scheduler
from model.states import JobState
from realsys.client import DtqClient, SyncClient, grpc_code
from realsys.convert import from_duration, job_to_pb, query_from_pb, result_to_pb, spec_from_pb
from realsys.status import grpc_errors

pytestmark = pytest.mark.timeout(20)

Context = grpc.aio.ServicerContext[object, object]


class FakeTaskQueue(client_pb2_grpc.TaskQueueServicer):
    """The client API over one Scheduler, as a Design B node serves it (minus forwarding)."""

    def __init__(self, max_wait: float = 10.0) -> None:
        self.scheduler = Scheduler(CoreConfig(), JobIdFactory("t", "1"))
        self.max_wait = max_wait  # a server may answer a long-poll early; clients must re-poll
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    async def _wait_done(self, job_id: str, wait: float) -> None:
        deadline = time.monotonic() + min(wait, self.max_wait)
        while not self.scheduler.jobs.get(job_id).done and time.monotonic() < deadline:
            await asyncio.sleep(0.01)

    @grpc_errors
    async def SubmitJob(
        self, request: client_pb2.SubmitJobRequest, context: Context
    ) -> client_pb2.SubmitJobResponse:
        self._count("SubmitJob")
        submitted = self.scheduler.submit(time.time(), spec_from_pb(request.spec), request.request_id)
        job = submitted.job
        return client_pb2.SubmitJobResponse(
            job_id=job.job_id, job=job_to_pb(job, "t"), deduplicated=submitted.deduplicated
        )

    @grpc_errors
    async def GetJobStatus(self, request: client_pb2.GetJobStatusRequest, context: Context) -> job_pb2.Job:
        self._count("GetJobStatus")
        return job_to_pb(self.scheduler.jobs.get(request.job_id), "t")

    @grpc_errors
    async def GetJobResult(
        self, request: client_pb2.GetJobResultRequest, context: Context
    ) -> client_pb2.GetJobResultResponse:
        self._count("GetJobResult")
        await self._wait_done(request.job_id, from_duration(request.wait_timeout, "wait_timeout"))
        job = self.scheduler.jobs.get(request.job_id)
        if not job.done:
            raise FailedPrecondition(f"job {job.job_id} is {job.state.name}")
        return result_to_pb(job, "t")

    @grpc_errors
    async def WaitJob(self, request: client_pb2.WaitJobRequest, context: Context) -> job_pb2.Job:
        self._count("WaitJob")
        await self._wait_done(request.job_id, from_duration(request.timeout, "timeout"))
        return job_to_pb(self.scheduler.jobs.get(request.job_id), "t")

    @grpc_errors
    async def CancelJob(self, request: client_pb2.CancelJobRequest, context: Context) -> job_pb2.Job:
        self._count("CancelJob")
        return job_to_pb(self.scheduler.cancel(time.time(), request.job_id).job, "t")

    @grpc_errors
    async def ListJobs(
        self, request: client_pb2.ListJobsRequest, context: Context
    ) -> client_pb2.ListJobsResponse:
        self._count("ListJobs")
        page = self.scheduler.jobs.list_page(
            query_from_pb(request.filter), request.page_size, request.page_token
        )
        return client_pb2.ListJobsResponse(
            jobs=[job_to_pb(j, "t") for j in page.items], next_page_token=page.next_page_token
        )

    # what a worker would do
    def run(self, job_id: str, outcome: Outcome) -> None:
        now = time.time()
        (assignment,) = [a for a in self.scheduler.fetch(now, "w1", 100) if a.job_id == job_id]
        self.scheduler.report(now, "w1", job_id, assignment.attempt, outcome)


@pytest.fixture
async def served() -> AsyncIterator[tuple[FakeTaskQueue, str]]:
    servicer = FakeTaskQueue()
    server = grpc.aio.server()
    add_servicer: Any = client_pb2_grpc.add_TaskQueueServicer_to_server  # generated code is untyped
    add_servicer(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield servicer, f"127.0.0.1:{port}"
    await server.stop(None)


@pytest.fixture
async def client(served: tuple[FakeTaskQueue, str]) -> AsyncIterator[DtqClient]:
    async with DtqClient([served[1]], timeout=5.0) as c:
        yield c


def dead_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"  # nothing listens there now


# ---------------------------------------------------------------------------- calls
async def test_submit_status_and_result(served: tuple[FakeTaskQueue, str], client: DtqClient) -> None:
    fake, _ = served
    job_id = await client.submit(
        "echo", "hi", priority=3, max_attempts=2, execution_timeout=7.5, labels={"team": "a"}
    )
    job = await client.status(job_id)
    assert job.job_id == job_id and job.state == job_pb2.PENDING and not job.done
    assert job.spec.priority == 3 and job.spec.retry.max_attempts == 2
    assert from_duration(job.spec.execution_timeout, "t") == 7.5
    assert dict(job.spec.labels) == {"team": "a"}
    assert fake.scheduler.jobs.get(job_id).spec.payload == b"hi"

    with pytest.raises(FailedPrecondition) as info:
        await client.result(job_id)
    assert grpc_code(info.value) is grpc.StatusCode.FAILED_PRECONDITION

    fake.run(job_id, Succeeded(b"out"))
    result = await client.result(job_id)
    assert result.WhichOneof("outcome") == "response" and result.response.output == b"out"
    assert result.job.state == job_pb2.SUCCEEDED


async def test_result_waits_and_reports_errors(served: tuple[FakeTaskQueue, str], client: DtqClient) -> None:
    fake, _ = served
    job_id = await client.submit("fail", max_attempts=1)
    asyncio.get_running_loop().call_later(0.1, fake.run, job_id, Failed(JobError("boom", False)))
    result = await client.result(job_id, wait=5.0)
    assert result.WhichOneof("outcome") == "error"
    assert result.error.message == "boom" and result.job.state == job_pb2.FAILED


async def test_submit_spec_and_request_id_dedup(client: DtqClient) -> None:
    first = await client.submit_spec(JobSpec.make("sleep", b"{}", priority=1), request_id="req-1")
    again = await client.submit_spec(JobSpec.make("sleep", b"{}", priority=1), request_id="req-1")
    assert not first.deduplicated and again.deduplicated
    assert first.job_id == again.job_id and first.job.request_id == "req-1"


async def test_wait_repolls_until_done(served: tuple[FakeTaskQueue, str], client: DtqClient) -> None:
    fake, _ = served
    fake.max_wait = 0.1  # the server answers each long-poll after 0.1 s at most
    job_id = await client.submit("echo")
    asyncio.get_running_loop().call_later(0.35, fake.run, job_id, Succeeded(b""))
    job = await client.wait(job_id, timeout=5.0)
    assert job.done and job.state == job_pb2.SUCCEEDED
    assert fake.calls["WaitJob"] >= 3


async def test_wait_returns_the_unfinished_job_after_its_timeout(client: DtqClient) -> None:
    job_id = await client.submit("echo")
    started = time.monotonic()
    job = await client.wait(job_id, timeout=0.3)
    assert 0.25 <= time.monotonic() - started < 2.0
    assert not job.done and job.state == job_pb2.PENDING


async def test_cancel(served: tuple[FakeTaskQueue, str], client: DtqClient) -> None:
    job_id = await client.submit("sleep")
    job = await client.cancel(job_id, reason="test")
    assert job.state == job_pb2.CANCELLED and job.done
    with pytest.raises(FailedPrecondition):
        await client.cancel(job_id)


async def test_list_pages_and_filters(served: tuple[FakeTaskQueue, str], client: DtqClient) -> None:
    ids = [await client.submit("echo", labels={"batch": "x"}) for _ in range(5)]
    other = await client.submit("sleep")
    await client.cancel(ids[0])

    jobs, token = await client.list(labels={"batch": "x"}, page_size=2)
    assert [j.job_id for j in jobs] == ids[:2] and token
    jobs, token = await client.list(labels={"batch": "x"}, page_size=2, page_token=token)
    assert [j.job_id for j in jobs] == ids[2:4]

    every = [j.job_id async for j in client.list_all(labels={"batch": "x"}, page_size=2)]
    assert every == ids
    assert [j.job_id async for j in client.list_all(job_type="sleep")] == [other]
    pending = [j.job_id async for j in client.list_all(states=["pending"], job_type="echo")]
    assert pending == ids[1:]
    cancelled, _ = await client.list(states=[JobState.CANCELLED])
    assert [j.job_id for j in cancelled] == [ids[0]]
    recent, _ = await client.list(created_after=time.time() + 60)
    assert recent == []


# ---------------------------------------------------------------------------- errors
async def test_errors_map_to_core_exceptions(client: DtqClient) -> None:
    with pytest.raises(NotFound) as not_found:
        await client.status("t-1-00000000ff")
    assert grpc_code(not_found.value) is grpc.StatusCode.NOT_FOUND
    with pytest.raises(InvalidArgument) as bad_id:
        await client.status("not a job id")
    assert grpc_code(bad_id.value) is grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(InvalidArgument) as negative:
        await client.list(page_size=-1)
    assert grpc_code(negative.value) is grpc.StatusCode.INVALID_ARGUMENT
    assert "page_size" in negative.value.message
    with pytest.raises(InvalidArgument):
        await client.submit("9-not-a-type")
    with pytest.raises(InvalidArgument):  # checked before any call
        await client.list(states=["sleeping"])
    with pytest.raises(NotFound):
        await client.wait("t-1-00000000ff", timeout=1.0)


async def test_unavailable_retries_reads_and_idempotent_submits_only(
    served: tuple[FakeTaskQueue, str],
) -> None:
    fake, live = served
    async with DtqClient([dead_address(), live], timeout=2.0) as c:
        with pytest.raises(Unavailable) as info:  # round-robin starts at the dead address; no request_id
            await c.submit("echo")
        assert grpc_code(info.value) is grpc.StatusCode.UNAVAILABLE
        assert fake.calls.get("SubmitJob", 0) == 0

        c._next = 0  # start at the dead address again
        job_id = await c.submit("echo", request_id="r1")  # idempotent: retried on the live one
        c._next = 0
        assert (await c.status(job_id)).job_id == job_id  # reads retry too
        c._next = 0
        with pytest.raises(Unavailable):  # cancel is never retried
            await c.cancel(job_id)


async def test_all_addresses_down_is_unavailable() -> None:
    async with DtqClient(dead_address(), timeout=1.0) as c:
        with pytest.raises(Unavailable):
            await c.status("t-1-1")


def test_client_needs_an_address() -> None:
    with pytest.raises(ValueError):
        DtqClient([])


async def test_sync_client(served: tuple[FakeTaskQueue, str]) -> None:
    _, address = served

    def use() -> tuple[str, job_pb2.Job, list[str]]:
        with SyncClient([address], timeout=5.0) as c:
            job_id = c.submit("echo", b"x", request_id="sync-1")
            status = c.status(job_id)
            listed = [j.job_id for j in c.list_all(page_size=1)]
            with pytest.raises(NotFound):
                c.status("t-1-00000000ff")
            return job_id, status, listed

    # the sync client runs its own loop, so it must not run on the server's
    job_id, status, listed = await asyncio.to_thread(use)
    assert status.job_id == job_id and listed == [job_id]


async def test_wait_backs_off_when_a_server_answers_long_polls_at_once(
    served: tuple[FakeTaskQueue, str], client: DtqClient
) -> None:
    """A server that answers every WaitJob at once, not done (as a draining node did): the client
    backs off (up to 1 s between polls) instead of spinning."""
    servicer, _ = served
    servicer.max_wait = 0.0
    job_id = await client.submit("sleep", b"{}")
    started = time.monotonic()
    job = await client.wait(job_id, timeout=2.0)
    assert not job.done and time.monotonic() - started >= 2.0
    assert 3 <= servicer.calls["WaitJob"] <= 10, servicer.calls  # 50, 100, 200, 400, 800 ms ... apart
