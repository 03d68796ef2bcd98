"""Design A end to end, in one process: the six roles on loopback, each behind its own gRPC server
(realsys.server.start_role), talking to each other over real channels.

Leases, heartbeats and worker TTLs are short, so failure paths finish in about a second.
Every wait is bounded; the whole module stays well under a minute.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from dtq.v1 import (
    client_pb2,
    client_pb2_grpc,
    internal_pb2,
    internal_pb2_grpc,
    worker_pb2,
    worker_pb2_grpc,
)
from model.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from model.job import JobSpec
from model.states import JobState
from realsys.client import DtqClient
from realsys.cluster import free_ports
from realsys.config import NodeConfig, grpc_options
from realsys.convert import to_duration
from realsys.metrics import NodeMetrics
from realsys.micro import coordinator
from realsys.micro.base import hop_timeout, poll_budget
from realsys.micro.coordinator import CoordinatorRole
from realsys.micro.gateway import GatewayRole
from realsys.micro.job import JobRole
from realsys.micro.queue import QueueRole
from realsys.micro.result import ResultRole
from realsys.micro.worker import WorkerRole
from realsys.server import RunningRole, start_role
from realsys.worker import HandlerRegistry, JobContext
from tests.realsys.conftest import (
    Closing,
    assert_unavailable,
    assert_wait_backs_off,
    fast_core,
    sleep_payload,
)

pytestmark = pytest.mark.timeout(40)

SERVICES = ("result", "queue", "job", "coordinator", "gateway")  # start order: callees first
ROLE_TYPES: dict[str, Any] = {
    "gateway": GatewayRole,
    "job": JobRole,
    "queue": QueueRole,
    "coordinator": CoordinatorRole,
    "result": ResultRole,
}
CORE = fast_core(lease_duration=1.0, worker_ttl=1.0, reservation_hold=1.0, default_max_attempts=3)


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.05)


class MicroCluster(Closing):
    """The six roles on pre-allocated loopback ports (job and coordinator call each other, and a
    restarted service must come back on the same address)."""

    def __init__(self, root: Path, store: str, batching: str = "off") -> None:
        self.root = root
        self.store = store
        self.batching = batching
        self.services = {
            name: f"127.0.0.1:{port}" for name, port in zip(SERVICES, free_ports(5), strict=True)
        }
        self.running: dict[str, RunningRole] = {}
        self.core = CORE

    def config(self, role: str) -> NodeConfig:
        return NodeConfig(
            design="micro",
            role=role,  # type: ignore[arg-type]
            name=role,
            listen=self.services.get(role, "127.0.0.1:0"),
            data_dir=self.root / role,
            store=self.store,  # type: ignore[arg-type]
            slots=4 if role == "worker" else 0,
            core=self.core,
            services=self.services,
            metrics_port=-1,
            rpc_timeout=1.0,
            fetch_wait=0.5,
            drain_timeout=1.0,
            batching=self.batching,  # type: ignore[arg-type]
        )

    async def start(
        self, role: str, key: str = "", handlers: HandlerRegistry | None = None, **kwargs: Any
    ) -> RunningRole:
        config = self.config(role)
        metrics = NodeMetrics(config.name, role, "micro")
        instance = (
            WorkerRole(config, metrics, handlers=handlers)
            if role == "worker"
            else ROLE_TYPES[role](config, metrics, **kwargs)
        )
        running = await start_role(config, instance, metrics)
        self.running[key or role] = running
        return running

    async def start_all(
        self, worker: bool = True, handlers: HandlerRegistry | None = None, **job_kwargs: Any
    ) -> None:
        for role in ("result", "queue", "job", "coordinator"):
            await self.start(role, **(job_kwargs if role == "job" else {}))
        if worker:
            await self.start("worker", handlers=handlers)
        await self.start("gateway")

    async def stop(self, key: str) -> None:
        await asyncio.wait_for(self.running.pop(key).stop(), 10)

    async def kill_worker(self, key: str = "worker") -> None:
        """Stops a worker without letting it report or heartbeat again: its jobs are simply gone."""
        role = self.running[key].role
        assert isinstance(role, WorkerRole)
        await role.runtime.stop()  # abandons running attempts without a report
        await self.stop(key)

    async def close(self) -> None:
        for key in reversed(list(self.running)):
            await self.stop(key)

    def role(self, key: str) -> Any:
        return self.running[key].role


@pytest.fixture(params=["memory", "sqlite", "memory-batching"])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[MicroCluster]:
    store, _, batching = request.param.partition("-")
    async with MicroCluster(tmp_path, store, "on" if batching else "off") as c:
        yield c


@pytest.fixture
async def sqlite_cluster(tmp_path: Path) -> AsyncIterator[MicroCluster]:
    async with MicroCluster(tmp_path, "sqlite") as c:
        yield c


@pytest.fixture
async def client(cluster: MicroCluster) -> AsyncIterator[DtqClient]:
    await cluster.start_all()
    async with DtqClient(cluster.services["gateway"], timeout=5.0) as c:
        yield c


def hanging_handlers(output: bytes | None) -> HandlerRegistry:
    """A "hang" job type that never ends (output None) or returns `output` at once."""
    handlers = HandlerRegistry.with_builtins()

    async def hang(ctx: JobContext) -> bytes:
        if output is None:
            await asyncio.sleep(3600)
        return output or b""

    handlers.register("hang", hang)
    return handlers


# ---------------------------------------------------------------------------- happy paths
async def test_submit_complete_result(client: DtqClient) -> None:
    job_id = await client.submit("echo", b"ping", labels={"k": "v"})
    assert job_id.startswith("job-")
    done = await client.wait(job_id, timeout=10)
    assert JobState(done.state) is JobState.SUCCEEDED and done.done and done.attempt == 1
    assert done.owner_node == "job"
    result = await client.result(job_id)
    assert result.WhichOneof("outcome") == "response"
    assert result.response.output == b"ping"
    # GetJobResult with a wait long-polls through the job service
    slow = await client.submit("sleep", sleep_payload(0.2))
    waited = await client.result(slow, wait=10)
    assert JobState(waited.job.state) is JobState.SUCCEEDED


async def test_submit_with_wait_is_one_gateway_call_and_one_hop(
    client: DtqClient, cluster: MicroCluster
) -> None:
    reply = await client.submit_wait("echo", b"sync", timeout=10)
    assert (
        reply.job.done and JobState(reply.job.state) is JobState.SUCCEEDED and reply.job.owner_node == "job"
    )
    slow = await client.submit_wait("sleep", sleep_payload(1.0), timeout=0.2)
    assert not slow.job.done  # the wait ran out first: the job as it is
    assert JobState((await client.wait(slow.job_id, timeout=10)).state) is JobState.SUCCEEDED

    def calls(key: str, method: str) -> float:
        value = cluster.running[key].metrics.registry.get_sample_value(
            "dtq_rpc_total", {"method": method, "code": "OK"}
        )
        return value or 0.0

    assert calls("gateway", "/dtq.v1.TaskQueue/SubmitJob") == 2
    assert calls("job", "/dtq.v1.JobStore/CreateJob") == 2
    assert calls("job", "/dtq.v1.JobStore/WaitJob") == 1  # only the explicit wait above


async def test_batching_coalesces_hops_and_answers_waits_at_the_gateway(tmp_path: Path) -> None:
    async with MicroCluster(tmp_path, "memory", batching="on") as c:
        await c.start_all()

        async def subscribed() -> bool:
            return bool(c.role("gateway")._watch.live)

        await eventually(subscribed, 10, "the gateway's WatchJobs subscription")
        async with DtqClient(c.services["gateway"], timeout=5.0) as client:

            async def one(i: int) -> JobState:
                job_id = await client.submit("echo", str(i).encode())
                return JobState((await client.wait(job_id, timeout=10)).state)

            assert await asyncio.gather(*(one(i) for i in range(32))) == [JobState.SUCCEEDED] * 32
            # a wait that runs out answers with the job as it is (the job service is asked)
            slow = await client.submit("sleep", sleep_payload(1.0))
            assert not (await client.wait(slow, timeout=0.2)).done
            assert JobState((await client.wait(slow, timeout=10)).state) is JobState.SUCCEEDED
            assert (await client.result(slow)).job.done

        def calls(key: str, method: str) -> float:
            value = c.running[key].metrics.registry.get_sample_value(
                "dtq_rpc_total", {"method": method, "code": "OK"}
            )
            return value or 0.0

        waits = calls("gateway", "/dtq.v1.TaskQueue/WaitJob")
        assert waits >= 34
        # only the slow job's waits may reach the job service; the 32 echo jobs' were answered here
        assert calls("job", "/dtq.v1.JobStore/WaitJob") <= waits - 32
        assert calls("job", "/dtq.v1.JobStore/CreateJob") == 0
        assert 1 <= calls("job", "/dtq.v1.JobStore/CreateJobs") <= 33
        assert calls("job", "/dtq.v1.JobStore/CompleteAttempt") == 0
        assert 1 <= calls("job", "/dtq.v1.JobStore/CompleteAttempts") <= 33
        assert calls("result", "/dtq.v1.ResultStore/PutResult") == 0
        assert calls("result", "/dtq.v1.ResultStore/PutResults") >= 1
        assert calls("coordinator", "/dtq.v1.Workers/ReportResult") == 0
        assert calls("coordinator", "/dtq.v1.Workers/ReportResults") >= 1


async def test_failing_job_is_retried_then_fails(client: DtqClient) -> None:
    job_id = await client.submit("fail", json.dumps({"probability": 1.0}).encode(), max_attempts=2)
    done = await client.wait(job_id, timeout=10)
    assert JobState(done.state) is JobState.FAILED and done.attempt == 2
    result = await client.result(job_id)
    assert result.WhichOneof("outcome") == "error"
    assert "injected failure" in result.error.message


async def test_error_codes(client: DtqClient) -> None:
    for call in (client.status, client.result, client.cancel):
        with pytest.raises(NotFound):
            await call("job-abc-00000fffff")
        with pytest.raises(InvalidArgument):
            await call("not a job id")
    with pytest.raises(InvalidArgument):
        await client.submit("")
    with pytest.raises(InvalidArgument):
        await client.list(page_size=-1)
    with pytest.raises(InvalidArgument):
        await client.list(page_token="garbage!")
    with pytest.raises(ResourceExhausted):
        await client.submit("echo", b"x" * 5000)
    job_id = await client.submit("sleep", sleep_payload(0.5))
    with pytest.raises(FailedPrecondition):
        await client.result(job_id)  # unfinished
    await client.wait(job_id, timeout=10)
    with pytest.raises(FailedPrecondition):
        await client.cancel(job_id)  # finished


async def test_idempotent_resubmit(client: DtqClient) -> None:
    spec = JobSpec.make("echo", b"once")
    first = await client.submit_spec(spec, request_id="order-42")
    again = await client.submit_spec(spec, request_id="order-42")
    assert again.job_id == first.job_id and again.deduplicated and not first.deduplicated
    other = await client.submit_spec(spec, request_id="order-43")
    assert other.job_id != first.job_id


async def test_list_with_pagination(client: DtqClient) -> None:
    ids = [await client.submit("echo", b"", labels={"batch": "p"}) for _ in range(7)]
    seen: list[str] = []
    token = ""
    sizes = []
    while True:
        jobs, token = await client.list(labels={"batch": "p"}, page_size=3, page_token=token)
        sizes.append(len(jobs))
        seen.extend(j.job_id for j in jobs)
        if not token:
            break
        with pytest.raises(InvalidArgument):  # a token belongs to its filter
            await client.list(labels={"batch": "q"}, page_size=3, page_token=token)
    assert sizes == [3, 3, 1]
    assert seen == ids  # creation order, each job once


# ---------------------------------------------------------------------------- cancellation
async def test_cancel_pending_and_running(client: DtqClient, cluster: MicroCluster) -> None:
    # four slots: fill them, so the fifth job stays pending
    running = [await client.submit("sleep", sleep_payload(30)) for _ in range(4)]

    async def all_running() -> bool:
        states = [JobState((await client.status(j)).state) for j in running]
        return all(s is JobState.RUNNING for s in states)

    await eventually(all_running, 10, "four running jobs")
    pending = await client.submit("echo", b"never")
    cancelled = await client.cancel(pending)
    assert JobState(cancelled.state) is JobState.CANCELLED and cancelled.done

    target = running[0]
    cancelling = await client.cancel(target)
    assert JobState(cancelling.state) is JobState.CANCELLING
    done = await client.wait(target, timeout=10)  # the worker hears it in a heartbeat and stops
    assert JobState(done.state) is JobState.CANCELLED
    assert done.error.reason == "CANCELLED"

    # the freed slot must not run the cancelled pending job (its stale queue entry is fenced off)
    await asyncio.sleep(0.5)
    assert (await client.status(pending)).attempt == 0
    for job_id in running[1:]:
        await client.cancel(job_id)
    for job_id in running[1:]:
        assert JobState((await client.wait(job_id, timeout=10)).state) is JobState.CANCELLED


# ---------------------------------------------------------------------------- failures
async def test_worker_loss_requeues_to_another_worker(cluster: MicroCluster) -> None:
    await cluster.start_all(handlers=hanging_handlers(None))
    async with DtqClient(cluster.services["gateway"], timeout=5.0) as client:
        ids = [await client.submit("hang", b"", max_attempts=3) for _ in range(3)]

        async def all_running() -> bool:
            states = [JobState((await client.status(j)).state) for j in ids]
            return all(s is JobState.RUNNING for s in states)

        await eventually(all_running, 10, "jobs running on the first worker")
        first_worker = cluster.role("worker").worker_id
        await cluster.kill_worker()
        await cluster.start("worker", handlers=hanging_handlers(b"second"))
        for job_id in ids:
            done = await client.wait(job_id, timeout=15)
            assert JobState(done.state) is JobState.SUCCEEDED, done
            assert done.attempt == 2 and done.worker_id != first_worker
            assert (await client.result(job_id)).response.output == b"second"
    registry = cluster.running["job"].metrics.registry
    assert (registry.get_sample_value("dtq_lease_expiries_total") or 0) >= 3
    assert (registry.get_sample_value("dtq_requeues_total") or 0) >= 3


async def test_job_service_restart_loses_no_accepted_job(sqlite_cluster: MicroCluster) -> None:
    cluster = sqlite_cluster
    await cluster.start_all(worker=False)
    async with DtqClient(cluster.services["gateway"], timeout=3.0) as client:
        before = [await client.submit("echo", str(i).encode(), request_id=f"r{i}") for i in range(5)]
        await cluster.stop("job")
        with pytest.raises(Unavailable):
            await client.status(before[0])
        await cluster.start("job")
        # the incarnation changed: new ids cannot collide with the old ones
        after = await client.submit("echo", b"after")
        assert after.split("-")[1] != before[0].split("-")[1]
        # idempotency keys survive the restart
        assert (await client.submit("echo", b"0", request_id="r0")) == before[0]
        await cluster.start("worker")
        for i, job_id in enumerate(before):
            done = await client.wait(job_id, timeout=10)
            assert JobState(done.state) is JobState.SUCCEEDED, done
            assert (await client.result(job_id)).response.output == str(i).encode()
        assert JobState((await client.wait(after, timeout=10)).state) is JobState.SUCCEEDED
        listed = [j.job_id async for j in client.list_all()]
        assert listed == [*before, after]


async def test_job_service_restart_keeps_running_leases(sqlite_cluster: MicroCluster) -> None:
    """A worker that outlives a job-service restart keeps its lease and reports under attempt 1."""
    cluster = sqlite_cluster
    await cluster.start_all()
    async with DtqClient(cluster.services["gateway"], timeout=3.0) as client:
        job_id = await client.submit("sleep", sleep_payload(1.5))

        async def running() -> bool:
            return JobState((await client.status(job_id)).state) is JobState.RUNNING

        await eventually(running, 10, "the job to run")
        await cluster.stop("job")
        await cluster.start("job")
        done = await client.wait(job_id, timeout=10)
        assert JobState(done.state) is JobState.SUCCEEDED and done.attempt == 1


async def test_late_result_from_old_attempt_is_aborted(cluster: MicroCluster) -> None:
    """Two hand-driven workers: the first loses its lease, the job runs again on the second, and
    the first one's late report is refused with ABORTED without touching the winning result."""
    await cluster.start_all(worker=False)
    async with (
        DtqClient(cluster.services["gateway"], timeout=5.0) as client,
        grpc.aio.insecure_channel(cluster.services["coordinator"], options=grpc_options()) as channel,
    ):
        workers: Any = worker_pb2_grpc.WorkersStub(channel)  # type: ignore[no-untyped-call]
        job_id = await client.submit("echo", b"x", max_attempts=3)

        async def fetch(worker_id: str) -> Any:
            for _ in range(20):
                reply = await workers.FetchWork(
                    worker_pb2.FetchWorkRequest(
                        worker_id=worker_id, free_slots=1, wait_timeout=to_duration(1.0)
                    ),
                    timeout=5,
                )
                if reply.assignments:
                    return reply.assignments[0]
            raise AssertionError("no work fetched")

        await workers.WorkerHeartbeat(worker_pb2.HeartbeatRequest(worker_id="old", total_slots=1), timeout=5)
        first = await fetch("old")
        assert (first.job_id, first.attempt) == (job_id, 1)
        # "old" goes silent: its lease expires (and the coordinator declares it lost)
        second = await fetch("new")
        assert (second.job_id, second.attempt) == (job_id, 2)

        def report(worker_id: str, attempt: int, output: bytes) -> Any:
            request = worker_pb2.ReportResultRequest(worker_id=worker_id, job_id=job_id, attempt=attempt)
            request.success.output = output
            return workers.ReportResult(request, timeout=5)

        with pytest.raises(grpc.aio.AioRpcError) as stale:
            await report("old", 1, b"stale")
        assert stale.value.code() is grpc.StatusCode.ABORTED
        reply = await report("new", 2, b"winner")
        assert JobState(reply.state) is JobState.SUCCEEDED
        with pytest.raises(grpc.aio.AioRpcError) as again:
            await report("old", 1, b"stale")
        assert again.value.code() is grpc.StatusCode.ABORTED
        result = await client.result(job_id)
        assert result.response.output == b"winner" and result.job.attempt == 2

        # heartbeats of the stale attempt are told to abandon it
        beat = await workers.WorkerHeartbeat(
            worker_pb2.HeartbeatRequest(
                worker_id="old", total_slots=1, running=[worker_pb2.RunningJob(job_id=job_id, attempt=1)]
            ),
            timeout=5,
        )
        assert [(r.job_id, r.attempt) for r in beat.abandon] == [(job_id, 1)]


async def test_internal_services_validate_and_report_status(cluster: MicroCluster) -> None:
    await cluster.start_all(worker=False)
    async with (
        grpc.aio.insecure_channel(cluster.services["queue"], options=grpc_options()) as q_channel,
        grpc.aio.insecure_channel(cluster.services["result"], options=grpc_options()) as r_channel,
    ):
        queue: Any = internal_pb2_grpc.QueueStub(q_channel)  # type: ignore[no-untyped-call]
        results: Any = internal_pb2_grpc.ResultStoreStub(r_channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await results.GetResult(internal_pb2.GetResultRequest(job_id="job-1-1", attempt=1), timeout=5)
        assert missing.value.code() is grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as bad:
            await queue.Reserve(internal_pb2.ReserveRequest(max_items=-1), timeout=5)
        assert bad.value.code() is grpc.StatusCode.INVALID_ARGUMENT

        # dedup: a second Enqueue of a waiting entry keeps its place; Reserve long-polls; Ack removes
        entry = internal_pb2.QueueEntry(job_id="job-1-0000000001", priority=0)
        await queue.Enqueue(internal_pb2.EnqueueRequest(entries=[entry]), timeout=5)
        later = internal_pb2.QueueEntry(job_id="job-1-0000000002", priority=0)
        await queue.Enqueue(internal_pb2.EnqueueRequest(entries=[later, entry]), timeout=5)
        stats = await queue.Stats(internal_pb2.QueueStatsRequest(), timeout=5)
        assert stats.ready == 2
        reserved = await queue.Reserve(
            internal_pb2.ReserveRequest(max_items=1, hold=to_duration(5), wait_timeout=to_duration(1)),
            timeout=5,
        )
        assert [e.job_id for e in reserved.entries] == ["job-1-0000000001"]
        await queue.Ack(internal_pb2.AckRequest(job_ids=["job-1-0000000001", "job-1-0000000002"]), timeout=5)
        stats = await queue.Stats(internal_pb2.QueueStatsRequest(), timeout=5)
        assert (stats.ready, stats.reserved) == (1, 0)  # only the reserved one was acknowledged

        async def reserve_later() -> Any:
            return await queue.Reserve(
                internal_pb2.ReserveRequest(max_items=5, wait_timeout=to_duration(3)), timeout=5
            )

        await queue.Reserve(internal_pb2.ReserveRequest(max_items=5), timeout=5)  # drain the queue
        began = time.monotonic()
        waiting = asyncio.ensure_future(reserve_later())
        await asyncio.sleep(0.2)
        await queue.Enqueue(
            internal_pb2.EnqueueRequest(entries=[internal_pb2.QueueEntry(job_id="job-1-0000000003")]),
            timeout=5,
        )
        woken = await asyncio.wait_for(waiting, 5)
        assert [e.job_id for e in woken.entries] == ["job-1-0000000003"]
        assert time.monotonic() - began < 2.0  # woken by the Enqueue, not by the timeout


async def test_lost_queue_entries_are_swept_back(tmp_path: Path) -> None:
    """A queue that forgets its entries (memory store, restarted) is repaired by the job service's
    sweep of jobs that stay PENDING too long."""
    cluster = MicroCluster(tmp_path, "memory")
    try:
        await cluster.start_all(worker=False, sweep_interval=0.3)
        async with DtqClient(cluster.services["gateway"], timeout=5.0) as client:
            ids = [await client.submit("echo", b"swept") for _ in range(3)]
            await cluster.stop("queue")
            await cluster.start("queue")  # empty: nothing persisted
            await cluster.start("worker")
            for job_id in ids:
                done = await client.wait(job_id, timeout=10)
                assert JobState(done.state) is JobState.SUCCEEDED, done
    finally:
        await cluster.close()


# a reply budget of about one 3 KB assignment: smaller labels and errors make room for so small a budget
SMALL_REPLIES = dataclasses.replace(
    CORE, max_result_bytes=4096, max_labels=1, max_label_chars=8, max_error_chars=64, max_reply_bytes=7000
)


async def test_oversized_lease_batch_is_split(cluster: MicroCluster) -> None:
    """LeaseJobs stops before its reply outgrows max_reply_bytes (model.JobTable.lease_batch); the rest
    go back to the queue."""
    cluster.core = SMALL_REPLIES
    await cluster.start_all(worker=False)
    async with (
        DtqClient(cluster.services["gateway"], timeout=5.0) as client,
        grpc.aio.insecure_channel(cluster.services["coordinator"], options=grpc_options()) as channel,
    ):
        workers: Any = worker_pb2_grpc.WorkersStub(channel)  # type: ignore[no-untyped-call]
        ids = {await client.submit("echo", b"x" * 3000) for _ in range(3)}
        fetched: list[str] = []
        for _ in range(10):
            reply = await workers.FetchWork(
                worker_pb2.FetchWorkRequest(worker_id="w", free_slots=3, wait_timeout=to_duration(1.0)),
                timeout=5,
            )
            assert len(reply.assignments) <= 1
            fetched.extend(a.job_id for a in reply.assignments)
            if len(fetched) == 3:
                break
        assert set(fetched) == ids and len(fetched) == 3


class _Deadline:
    """Just enough of a ServicerContext for the deadline helpers."""

    def __init__(self, left: float | None) -> None:
        self.left = left

    def time_remaining(self) -> float | None:
        return self.left


def test_deadline_helpers() -> None:
    config = MicroCluster(Path("/nonexistent"), "memory").config("gateway")  # rpc_timeout 1.0
    ctx: Any = _Deadline(None)
    assert hop_timeout(config, ctx) == 1.0
    assert hop_timeout(config, ctx, wait=3.0) == 4.0
    ctx = _Deadline(0.4)
    assert hop_timeout(config, ctx, wait=3.0) == 0.4  # never past the caller's deadline
    assert 0 < poll_budget(10.0, ctx) < 0.4  # a long-poll ends before the caller's deadline
    assert poll_budget(10.0, ctx, reserve=1.0) == 0.0
    assert poll_budget(0.2, _Deadline(None)) == 0.2  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- draining
async def test_a_draining_job_service_answers_long_polls_unavailable_with_a_retry_after(
    sqlite_cluster: MicroCluster,
) -> None:
    """As Design B's draining owner does: a WaitJob (or GetJobResult with a wait) that the drain ends
    early is UNAVAILABLE with dtq-retry-after-ms, through the gateway, so DtqClient.wait backs off
    and asks again instead of taking the unfinished job for the end of its wait (before: the job,
    PENDING, at once)."""
    cluster = sqlite_cluster
    await cluster.start_all(worker=False)  # no worker: the job stays PENDING
    gateway = cluster.services["gateway"]
    async with DtqClient(gateway, timeout=5.0) as client:
        job_id = await client.submit("sleep", sleep_payload(30))
        channel = grpc.aio.insecure_channel(gateway)
        try:
            stub = client_pb2_grpc.TaskQueueStub(channel)
            wait = client_pb2.WaitJobRequest(job_id=job_id, timeout=to_duration(20))
            result = client_pb2.GetJobResultRequest(job_id=job_id, wait_timeout=to_duration(20))
            calls = [
                asyncio.ensure_future(stub.WaitJob(wait, timeout=25)),
                asyncio.ensure_future(stub.GetJobResult(result, timeout=25)),
            ]
            await asyncio.sleep(0.3)
            started = time.monotonic()
            await cluster.role("job").drain()
            await assert_unavailable([*calls, stub.WaitJob(wait, timeout=25)], "1000")  # a new long-poll too
            assert time.monotonic() - started < 2.0
        finally:
            await channel.close(None)

        def wait_calls() -> float:
            registry = cluster.running["gateway"].metrics.registry
            sample = registry.get_sample_value(
                "dtq_rpc_total", {"method": "/dtq.v1.TaskQueue/WaitJob", "code": "UNAVAILABLE"}
            )
            return sample or 0.0

        await assert_wait_backs_off(client, job_id, wait_calls, most=6)


@pytest.mark.parametrize("batching", ["off", "on"])
async def test_a_fetch_carrying_reports_completes_them_on_its_lease_or_on_their_own(
    tmp_path: Path, batching: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Report-and-fetch at the coordinator (no worker role: the test is the worker): carried reports
    are answered in order, a bad one alone; with work waiting they ride the fetch's LeaseJobs (no
    CompleteAttempt(s) call), with none they go on their own at once (not after the long-poll)."""
    async with MicroCluster(tmp_path, "memory", batching) as c:
        await c.start_all(worker=False)
        channel = grpc.aio.insecure_channel(c.services["coordinator"])
        workers: Any = worker_pb2_grpc.WorkersStub(channel)  # generated code is untyped
        try:
            async with DtqClient(c.services["gateway"], timeout=5.0) as client:
                first = await client.submit("echo", b"1")
                fetch = worker_pb2.FetchWorkRequest
                report = worker_pb2.ReportResultRequest
                (a,) = (await workers.FetchWork(fetch(worker_id="w", free_slots=1), timeout=3)).assignments
                second = await client.submit("echo", b"2")
                await asyncio.sleep(0.2)  # the second job is ready in the queue

                def calls(key: str, method: str) -> float:
                    value = c.running[key].metrics.registry.get_sample_value(
                        "dtq_rpc_total", {"method": method, "code": "OK"}
                    )
                    return value or 0.0

                def completes() -> float:
                    return calls("job", "/dtq.v1.JobStore/CompleteAttempt") + calls(
                        "job", "/dtq.v1.JobStore/CompleteAttempts"
                    )

                before = completes()
                # the reports ride the LeaseJobs only when Reserve answers within the linger (3 ms),
                # which a loaded host can miss: here the question is where they go, not how fast
                monkeypatch.setattr(coordinator, "COMPLETE_LINGER", 1.0)
                reply = await workers.FetchWork(
                    fetch(
                        worker_id="w",
                        free_slots=1,
                        wait_timeout=to_duration(1.0),
                        reports=[
                            report(worker_id="w", job_id=a.job_id, attempt=2, success={"output": b"x"}),
                            report(worker_id="v", job_id=a.job_id, attempt=1, success={"output": b"x"}),
                            report(worker_id="w", job_id=a.job_id, attempt=1, success={"output": b"one"}),
                        ],
                    ),
                    timeout=3,
                )
                stale, other, ok = reply.report_results
                assert stale.code == "ABORTED" and other.code == "INVALID_ARGUMENT" and not ok.code
                assert ok.state == JobState.SUCCEEDED
                assert [x.job_id for x in reply.assignments] == [second]
                assert completes() == before  # it rode the LeaseJobs that leased the second job
                assert (await client.result(first)).response.output == b"one"
                monkeypatch.undo()
                # nothing waiting: the report goes on its own at once, the fetch long-polls on
                (b,) = reply.assignments
                started = time.monotonic()
                carrying = asyncio.ensure_future(
                    workers.FetchWork(
                        fetch(
                            worker_id="w",
                            free_slots=1,
                            wait_timeout=to_duration(2.0),
                            reports=[
                                report(worker_id="w", job_id=b.job_id, attempt=1, success={"output": b"2"})
                            ],
                        ),
                        timeout=5,
                    )
                )
                done = await client.wait(second, timeout=1.5)
                assert done.state == JobState.SUCCEEDED and time.monotonic() - started < 1.5
                assert completes() == before + 1
                third = await client.submit("echo", b"3")
                reply = await carrying
                assert not reply.report_results[0].code and [x.job_id for x in reply.assignments] == [third]
        finally:
            await channel.close(None)
