"""Design B in one process: three MonoNodes on loopback, started with server.start_role, driven through
DtqClient (and raw stubs for the worker API). Every wait is bounded."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from dtq.v1 import (
    client_pb2,
    client_pb2_grpc,
    internal_pb2,
    internal_pb2_grpc,
    job_pb2,
    worker_pb2,
    worker_pb2_grpc,
)
from model.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, Unavailable
from model.ids import owner_of, parse_job_id
from model.job import JobSpec
from model.states import JobState
from realsys.client import DtqClient
from realsys.cluster import free_ports
from realsys.coalesce import MAX_BATCH_ITEMS
from realsys.config import NodeConfig, Store, grpc_options
from realsys.convert import from_timestamp
from realsys.metrics import NodeMetrics
from realsys.mono import MonoNode
from realsys.mono.peers import request_home
from realsys.server import RunningRole, start_role
from realsys.targets import DtqTarget
from tests.realsys.conftest import Closing, fast_core, sleep_payload

pytestmark = pytest.mark.timeout(60)

NODES = ("n1", "n2", "n3")
CORE = fast_core(lease_duration=2.0, worker_ttl=2.0, max_pending=60)


@dataclass
class Cluster(Closing):
    """Three nodes that know each other's (pre-picked) ports; nodes can be stopped and restarted."""

    tmp: Path
    store: Store
    slots: int
    steal_fanout: int = 0
    addresses: dict[str, str] = field(default_factory=dict)
    running: dict[str, RunningRole] = field(default_factory=dict)
    clients: list[DtqClient] = field(default_factory=list)
    channels: list[grpc.aio.Channel] = field(default_factory=list)

    def config(self, name: str) -> NodeConfig:
        return NodeConfig(
            design="mono",
            role="node",
            name=name,
            listen=self.addresses[name],
            data_dir=self.tmp / name,
            store=self.store,
            slots=self.slots,
            core=CORE,
            peers=dict(self.addresses),
            metrics_port=-1,
            rpc_timeout=2.0,
            fetch_wait=1.0,
            steal_interval=0.02,
            steal_fanout=self.steal_fanout,
            drain_timeout=1.0,
        )

    async def start(self, name: str) -> MonoNode:
        config = self.config(name)
        metrics = NodeMetrics(name, "node", "mono")
        node = MonoNode(config, metrics)
        self.running[name] = await start_role(config, node, metrics)
        return node

    async def stop(self, name: str) -> None:
        await self.running.pop(name).stop()

    def node(self, name: str) -> MonoNode:
        role = self.running[name].role
        assert isinstance(role, MonoNode)
        return role

    def counter(self, name: str, metric: str) -> float:
        value = self.running[name].metrics.registry.get_sample_value(metric)
        return value or 0.0

    def client(self, *names: str) -> DtqClient:
        c = DtqClient([self.addresses[n] for n in names or NODES], timeout=5.0)
        self.clients.append(c)
        return c

    def stub(self, name: str, factory: Any) -> Any:
        channel = grpc.aio.insecure_channel(self.addresses[name], options=grpc_options())
        self.channels.append(channel)
        return factory(channel)

    async def close(self) -> None:
        for c in self.clients:
            await c.close()
        for ch in self.channels:
            await ch.close(None)
        await asyncio.gather(*(r.stop() for r in self.running.values()))


async def make_cluster(tmp: Path, store: Store = "memory", slots: int = 2, steal_fanout: int = 0) -> Cluster:
    cluster = Cluster(tmp, store, slots, steal_fanout)
    cluster.addresses = {n: f"127.0.0.1:{p}" for n, p in zip(NODES, free_ports(len(NODES)), strict=True)}
    for name in NODES:
        await cluster.start(name)
    # nodes start one after another; let every node connect to every peer once, so tests that stop
    # a node see the fail-fast path of a peer known to have been up
    deadline = time.monotonic() + 5.0
    while any(len(cluster.node(n).links.seen_up) < len(NODES) - 1 for n in NODES):
        assert time.monotonic() < deadline, "nodes did not connect to each other"
        await asyncio.sleep(0.01)
    return cluster


@pytest.fixture(params=["memory", "sqlite"])
async def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Cluster]:
    async with await make_cluster(tmp_path, request.param) as c:
        yield c


@pytest.fixture
async def idle(tmp_path: Path) -> AsyncIterator[Cluster]:
    """No worker slots anywhere: jobs stay PENDING until a test's own (raw) worker takes them."""
    async with await make_cluster(tmp_path, "memory", slots=0) as c:
        yield c


async def wait_state(client: DtqClient, job_id: str, states: set[JobState], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while JobState((await client.status(job_id)).state) not in states:
        assert time.monotonic() < deadline, f"{job_id} never reached {states}"
        await asyncio.sleep(0.02)


# ---------------------------------------------------------------------------- happy paths
async def test_submit_complete_result_on_every_node(cluster: Cluster) -> None:
    for name in NODES:
        client = cluster.client(name)
        job_id = await client.submit("echo", f"hello {name}")
        assert owner_of(job_id) == name  # the accepting node owns the job
        result = await client.result(job_id, wait=5.0)
        assert JobState(result.job.state) is JobState.SUCCEEDED
        assert result.response.output == f"hello {name}".encode()
        assert result.job.owner_node == name


async def test_requests_about_another_nodes_job_are_forwarded(cluster: Cluster) -> None:
    job_id = await cluster.client("n1").submit("sleep", sleep_payload(0.2))
    other = cluster.client("n2")
    assert (await other.status(job_id)).job_id == job_id
    done = await other.wait(job_id, timeout=5.0)
    assert JobState(done.state) is JobState.SUCCEEDED
    assert JobState((await cluster.client("n3").result(job_id)).job.state) is JobState.SUCCEEDED
    with pytest.raises(FailedPrecondition):
        await other.cancel(job_id)  # a finished job, forwarded to its owner
    assert cluster.counter("n2", "dtq_forwarded_total") >= 3
    assert cluster.counter("n3", "dtq_forwarded_total") >= 1


async def test_idempotent_resubmit_across_nodes(cluster: Cluster) -> None:
    ids = []
    for name in (*NODES, "n1"):
        response = await cluster.client(name).submit_spec(
            JobSpec.make("echo", b"once"), request_id="order-42"
        )
        ids.append((response.job_id, response.deduplicated))
    assert len({job_id for job_id, _ in ids}) == 1
    assert [dedup for _, dedup in ids].count(False) == 1


async def test_work_is_stolen_by_idle_nodes(cluster: Cluster) -> None:
    client = cluster.client("n1")
    ids = [await client.submit("sleep", sleep_payload(0.25)) for _ in range(16)]
    started = time.monotonic()
    jobs = await asyncio.gather(*(client.wait(j, timeout=15.0) for j in ids))
    elapsed = time.monotonic() - started
    assert all(JobState(j.state) is JobState.SUCCEEDED for j in jobs)
    assert all(owner_of(j.job_id) == "n1" for j in jobs)  # stealing does not move ownership
    ran_on = {j.worker_id for j in jobs}
    assert ran_on - {"n1-w"}, f"only n1 ran jobs: {ran_on}"
    stolen = sum(cluster.counter(n, "dtq_stolen_total") for n in ("n2", "n3"))
    assert stolen > 0
    assert stolen == sum(1 for j in jobs if j.worker_id != "n1-w")
    # 16 x 0.25 s on n1's 2 slots alone would take 2 s; six slots should do it in about a third
    assert elapsed < 1.8, f"took {elapsed:.2f}s"


async def test_a_steal_fanout_of_one_still_finds_the_loaded_node(tmp_path: Path) -> None:
    """Each depth round asks one random peer (DTQ_STEAL_FANOUT=1): the idle nodes still steal."""
    cluster = await make_cluster(tmp_path, "memory", steal_fanout=1)
    try:
        assert all(cluster.node(n).backend.pacer.fanout == 1 for n in NODES)
        client = cluster.client("n1")
        ids = [await client.submit("sleep", sleep_payload(0.25)) for _ in range(16)]
        jobs = await asyncio.gather(*(client.wait(j, timeout=15.0) for j in ids))
        assert all(JobState(j.state) is JobState.SUCCEEDED for j in jobs)
        assert sum(cluster.counter(n, "dtq_stolen_total") for n in ("n2", "n3")) > 0
    finally:
        await cluster.close()


async def test_submit_with_wait_on_every_node_and_through_the_home_forward(cluster: Cluster) -> None:
    for name in NODES:
        reply = await cluster.client(name).submit_wait("echo", f"sync {name}", timeout=5.0)
        assert reply.job.done and JobState(reply.job.state) is JobState.SUCCEEDED
        assert owner_of(reply.job_id) == name
    # a request_id whose home is another node: forwarded there, and the wait happens there
    key = next(k for k in (f"sync-{i}" for i in range(100)) if request_home(k, list(NODES)) == "n3")
    forwarded = await cluster.client("n1").submit_wait("echo", b"k", request_id=key, timeout=5.0)
    assert owner_of(forwarded.job_id) == "n3" and forwarded.job.done
    assert cluster.counter("n1", "dtq_forwarded_total") >= 1


async def test_submit_with_wait_target_sends_one_rpc_per_job(cluster: Cluster) -> None:
    target = DtqTarget([cluster.addresses["n1"]], timeout=5.0, submit_wait=10.0)
    try:
        for _ in range(5):
            job_id = await target.submit("echo", b"")
            assert await target.wait(job_id, 5.0) == ("SUCCEEDED", 1)
    finally:
        await target.close()
    samples = {
        labels["method"].rsplit("/", 1)[-1]: value
        for metric in cluster.running["n1"].metrics.registry.collect()
        if metric.name == "dtq_rpc"
        for sample_name, labels, value, *_ in metric.samples
        if sample_name == "dtq_rpc_total"
    }
    assert samples.get("SubmitJob") == 5 and "WaitJob" not in samples


async def test_submit_with_wait_on_an_idle_node(idle: Cluster) -> None:
    stub = idle.stub("n1", client_pb2_grpc.TaskQueueStub)
    request = client_pb2.SubmitJobRequest(spec=job_pb2.JobSpec(job_type="echo"))
    request.wait_timeout.FromMilliseconds(200)
    started = time.monotonic()
    reply: client_pb2.SubmitJobResponse = await stub.SubmitJob(request, timeout=5)
    assert time.monotonic() - started >= 0.15
    assert JobState(reply.job.state) is JobState.PENDING and not reply.job.done
    # capped below the caller's deadline (as WaitJob is): an answer, not DEADLINE_EXCEEDED
    request.wait_timeout.FromSeconds(30)
    reply = await stub.SubmitJob(request, timeout=0.5)
    assert not reply.job.done
    # a negative wait: INVALID_ARGUMENT, and no job was made
    before = len(idle.node("n1").core.scheduler.jobs)
    request.wait_timeout.seconds = -1
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.SubmitJob(request, timeout=5)
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert len(idle.node("n1").core.scheduler.jobs) == before
    # a stop answers a parked submit-with-wait at once (like WaitJob), with the job as it is
    request.wait_timeout.FromSeconds(20)
    parked = asyncio.ensure_future(stub.SubmitJob(request, timeout=25))
    deadline = time.monotonic() + 5.0
    while not idle.node("n1").core.driver.jobs_waited_on:
        assert time.monotonic() < deadline, "the submit never parked"
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await idle.stop("n1")
    last: client_pb2.SubmitJobResponse = await parked
    assert time.monotonic() - started < 0.5
    assert JobState(last.job.state) is JobState.PENDING


# ---------------------------------------------------------------------------- cancel
async def test_cancel_pending_job_via_another_node(idle: Cluster) -> None:
    job_id = await idle.client("n1").submit("sleep", sleep_payload(1.0))
    cancelled = await idle.client("n3").cancel(job_id)
    assert JobState(cancelled.state) is JobState.CANCELLED and cancelled.done
    with pytest.raises(FailedPrecondition):
        await idle.client("n2").cancel(job_id)
    result = await idle.client("n2").result(job_id)
    assert result.error.reason == "CANCELLED"


async def test_cancel_running_job_stops_the_handler(cluster: Cluster) -> None:
    client = cluster.client("n2")
    job_id = await client.submit("sleep", sleep_payload(30.0))
    await wait_state(client, job_id, {JobState.RUNNING})
    cancelling = await cluster.client("n1").cancel(job_id)
    assert JobState(cancelling.state) in {JobState.CANCELLING, JobState.CANCELLED}
    started = time.monotonic()
    done = await client.wait(job_id, timeout=5.0)
    assert JobState(done.state) is JobState.CANCELLED
    assert time.monotonic() - started < 1.0  # pushed to the in-process worker, not left to a heartbeat


async def test_cancel_of_a_stolen_running_job_reaches_the_thief(cluster: Cluster) -> None:
    client = cluster.client("n1")
    ids = [await client.submit("sleep", sleep_payload(30.0)) for _ in range(4)]
    deadline = time.monotonic() + 5.0
    while True:
        jobs = [await client.status(j) for j in ids]
        stolen = [
            j for j in jobs if j.worker_id not in ("", "n1-w") and JobState(j.state) is JobState.RUNNING
        ]
        if stolen:
            break
        assert time.monotonic() < deadline, "nothing was stolen"
        await asyncio.sleep(0.02)
    await client.cancel(stolen[0].job_id)  # the owner learns it; the thief hears it in a heartbeat
    done = await client.wait(stolen[0].job_id, timeout=5.0)
    assert JobState(done.state) is JobState.CANCELLED
    for job_id in ids:
        if not (await client.status(job_id)).done:
            await client.cancel(job_id)
    final = await asyncio.gather(*(client.wait(j, timeout=5.0) for j in ids))
    assert {JobState(j.state) for j in final} == {JobState.CANCELLED}


# ---------------------------------------------------------------------------- listing
async def test_list_merges_every_node_and_paginates_exactly_once(idle: Cluster) -> None:
    submitted: set[str] = set()
    for round_ in range(5):
        for name in NODES:
            submitted.add(await idle.client(name).submit("echo", b"", labels={"round": str(round_)}))
    seen: list[job_pb2.Job] = []
    token = ""
    hops = 0
    while True:  # each page from the next node: any node continues a listing started elsewhere
        jobs, token = await idle.client(NODES[hops % len(NODES)]).list(page_size=4, page_token=token)
        hops += 1
        assert len(jobs) <= 4
        seen.extend(jobs)
        if not token:
            break
    ids = [j.job_id for j in seen]
    assert len(ids) == len(set(ids)) == 15 and set(ids) == submitted
    keys = [(j.create_time.ToNanoseconds(), j.job_id) for j in seen]
    assert keys == sorted(keys)
    assert hops == 4
    # cursors are built from create times that crossed the wire: they must equal the owners' own
    for job in seen:
        owned = idle.node(owner_of(job.job_id)).core.get(job.job_id)
        assert from_timestamp(job.create_time) == owned.create_time

    client = idle.client("n2")
    one, _ = await client.list(labels={"round": "3"}, page_size=100)
    assert sorted(j.job_id for j in one) == sorted(j.job_id for j in seen if j.spec.labels["round"] == "3")
    _, token = await client.list(states=[JobState.PENDING], page_size=2)
    assert token
    with pytest.raises(InvalidArgument):  # the filter changed in the middle of pagination
        await client.list(states=[JobState.SUCCEEDED], page_size=2, page_token=token)
    with pytest.raises(InvalidArgument):
        await client.list(page_size=-1)
    with pytest.raises(InvalidArgument):
        await client.list(page_token="not-a-token")


# ---------------------------------------------------------------------------- worker API
async def _leased_at_n1(idle: Cluster, payload: bytes, free_slots: int) -> tuple[str, Any, Any, Any]:
    """A job submitted at n1 and fetched there by the external worker "ext" with `free_slots` free:
    its id, n1's and n2's Workers stubs, and its one assignment."""
    job_id = await idle.client("n1").submit("echo", payload)
    n1 = idle.stub("n1", worker_pb2_grpc.WorkersStub)
    n2 = idle.stub("n2", worker_pb2_grpc.WorkersStub)
    fetched = await n1.FetchWork(
        worker_pb2.FetchWorkRequest(worker_id="ext", free_slots=free_slots, wait_timeout={"seconds": 1}),
        timeout=3,
    )
    (assignment,) = fetched.assignments
    return job_id, n1, n2, assignment


async def test_external_worker_through_any_node(idle: Cluster) -> None:
    job_id, n1, n2, assignment = await _leased_at_n1(idle, b"ext", free_slots=3)
    assert assignment.job_id == job_id and assignment.attempt == 1 and assignment.owner_node == "n1"
    # a heartbeat and reports sent to n2 are forwarded to the owner
    beat = await n2.WorkerHeartbeat(
        worker_pb2.HeartbeatRequest(
            worker_id="ext",
            total_slots=3,
            free_slots=2,
            running=[worker_pb2.RunningJob(job_id=job_id, attempt=1)],
        ),
        timeout=3,
    )
    assert not beat.cancel and not beat.abandon
    with pytest.raises(grpc.aio.AioRpcError) as stale:
        await n2.ReportResult(
            worker_pb2.ReportResultRequest(
                worker_id="ext", job_id=job_id, attempt=2, success={"output": b"x"}
            ),
            timeout=3,
        )
    assert stale.value.code() is grpc.StatusCode.ABORTED
    reply = await n2.ReportResult(
        worker_pb2.ReportResultRequest(worker_id="ext", job_id=job_id, attempt=1, success={"output": b"ok"}),
        timeout=3,
    )
    assert reply.state == JobState.SUCCEEDED
    assert (await idle.client("n3").result(job_id)).response.output == b"ok"
    # an empty long-poll returns within its wait, capped below the call deadline
    started = time.monotonic()
    empty = await n1.FetchWork(
        worker_pb2.FetchWorkRequest(worker_id="ext", free_slots=1, wait_timeout={"seconds": 30}), timeout=0.5
    )
    assert not empty.assignments and time.monotonic() - started < 0.5


async def test_a_fetch_carrying_reports_answers_each_as_report_result_would(idle: Cluster) -> None:
    """Report-and-fetch (FetchWork's `reports`) on a node that owns none of the jobs: each report is
    forwarded to its owner and answered in order; a bad one fails alone, not the fetch."""
    job_id, _, n2, assignment = await _leased_at_n1(idle, b"carried", free_slots=1)
    report = worker_pb2.ReportResultRequest
    reply = await n2.FetchWork(
        worker_pb2.FetchWorkRequest(
            worker_id="ext",
            free_slots=1,
            wait_timeout={"nanos": 50_000_000},
            reports=[
                report(worker_id="ext", job_id=job_id, attempt=2, success={"output": b"x"}),  # stale
                report(worker_id="other", job_id=job_id, attempt=1, success={"output": b"x"}),
                report(worker_id="ext", job_id=job_id, attempt=1, success={"output": b"ok"}),
            ],
        ),
        timeout=3,
    )
    assert assignment.job_id == job_id and not reply.assignments
    stale, other, ok = reply.report_results
    assert stale.code == "ABORTED" and other.code == "INVALID_ARGUMENT" and not ok.code
    assert ok.state == JobState.SUCCEEDED
    assert (await idle.client("n3").result(job_id)).response.output == b"ok"


async def test_report_results_answers_each_report_as_report_result_would(idle: Cluster) -> None:
    """ReportResults (what a worker with DTQ_BATCHING sends) on a node that owns none of the jobs: each
    report is forwarded to its owner and answered in order; a refused one fails alone, not the call."""
    jobs = [await idle.client(n).submit("echo", b"batched") for n in ("n1", "n3")]
    n2 = idle.stub("n2", worker_pb2_grpc.WorkersStub)
    assigned = []
    for node in ("n1", "n3"):
        fetched = await idle.stub(node, worker_pb2_grpc.WorkersStub).FetchWork(
            worker_pb2.FetchWorkRequest(worker_id="ext", free_slots=1, wait_timeout={"seconds": 1}), timeout=3
        )
        assigned += [a.job_id for a in fetched.assignments]
    assert assigned == jobs
    report = worker_pb2.ReportResultRequest
    reply = await n2.ReportResults(
        worker_pb2.ReportResultsRequest(
            reports=[
                report(worker_id="ext", job_id=jobs[0], attempt=2, success={"output": b"x"}),  # stale
                report(worker_id="ext", job_id=jobs[0], attempt=1, success={"output": b"one"}),
                report(worker_id="ext", job_id="no-such-job", attempt=1, success={"output": b"x"}),
                report(worker_id="ext", job_id=jobs[1], attempt=1, failure={"message": "boom"}),
            ]
        ),
        timeout=3,
    )
    stale, one, unknown, failed = reply.results
    assert stale.code == "ABORTED" and unknown.code in {"NOT_FOUND", "INVALID_ARGUMENT"}
    assert not one.code and one.state == JobState.SUCCEEDED
    assert not failed.code and failed.state in {JobState.PENDING, JobState.FAILED}  # retried or failed
    assert (await idle.client("n3").result(jobs[0])).response.output == b"one"
    with pytest.raises(grpc.aio.AioRpcError) as too_many:
        too_many_reports = [report()] * (MAX_BATCH_ITEMS + 1)
        await n2.ReportResults(worker_pb2.ReportResultsRequest(reports=too_many_reports), timeout=3)
    assert too_many.value.code() is grpc.StatusCode.INVALID_ARGUMENT


async def test_lease_expires_without_heartbeats_and_the_job_is_requeued(idle: Cluster) -> None:
    job_id = await idle.client("n2").submit("echo", b"")
    n2 = idle.stub("n2", worker_pb2_grpc.WorkersStub)
    first = await n2.FetchWork(worker_pb2.FetchWorkRequest(worker_id="ghost", free_slots=1), timeout=3)
    assert first.assignments[0].attempt == 1
    second = await n2.FetchWork(
        worker_pb2.FetchWorkRequest(worker_id="ext", free_slots=1, wait_timeout={"seconds": 4}), timeout=6
    )
    assert second.assignments[0].job_id == job_id and second.assignments[0].attempt == 2
    assert idle.counter("n2", "dtq_lease_expiries_total") == 1
    assert idle.counter("n2", "dtq_requeues_total") == 1


async def test_peer_service(idle: Cluster) -> None:
    await idle.client("n3").submit("echo", b"")
    peer = idle.stub("n3", internal_pb2_grpc.PeerStub)
    depth = await peer.QueueDepth(internal_pb2.QueueDepthRequest(), timeout=3)
    assert (depth.node, depth.ready) == ("n3", 1)
    metrics = idle.running["n3"].metrics
    metrics.refresh()
    assert metrics.registry.get_sample_value("dtq_queue_depth") == 1
    assert metrics.registry.get_sample_value("dtq_jobs", {"state": "PENDING"}) == 1
    assert (metrics.registry.get_sample_value("dtq_oldest_pending_age_seconds") or 0) >= 0
    local = await peer.ListLocalJobs(client_pb2.ListJobsRequest(), timeout=3)
    assert [owner_of(j.job_id) for j in local.jobs] == ["n3"]
    # n3 has no idle slots of its own, so it grants the whole request
    stolen = await peer.StealWork(
        internal_pb2.StealWorkRequest(thief_node="n1", worker_id="n1-w", max_jobs=5)
    )
    assert len(stolen.assignments) == 1 and stolen.assignments[0].owner_node == "n3"


# ---------------------------------------------------------------------------- errors
async def test_error_codes(idle: Cluster) -> None:
    client = idle.client("n1")
    with pytest.raises(InvalidArgument):
        await client.status("not a job id")
    with pytest.raises(InvalidArgument):
        await client.submit("")
    for owner in ("n1", "n2"):  # local, and forwarded: NOT_FOUND survives the hop
        with pytest.raises(NotFound):
            await client.status(f"{owner}-abc-00000fffff")
    with pytest.raises(NotFound, match="not a node of this cluster"):  # an owner that is no node
        await client.status("n9-abc-0000000001")  # not transient, and Design A says NOT_FOUND too
    with pytest.raises(ResourceExhausted):
        await client.submit("echo", b"x" * 5000)
    pending = await client.submit("echo", b"")
    with pytest.raises(FailedPrecondition):
        await idle.client("n2").result(pending)  # unfinished
    started = time.monotonic()
    with pytest.raises(FailedPrecondition):
        await idle.client("n2").result(pending, wait=0.3)  # long-polls, then still unfinished
    assert 0.25 < time.monotonic() - started < 2.0
    waited = await idle.client("n3").wait(pending, timeout=0.3)
    assert not waited.done
    # a second hop is refused: a forwarded request that is still not at its owner
    raw = idle.stub("n1", client_pb2_grpc.TaskQueueStub)
    with pytest.raises(grpc.aio.AioRpcError) as second_hop:
        await raw.GetJobStatus(
            client_pb2.GetJobStatusRequest(job_id="n2-abc-0000000001"),
            timeout=3,
            metadata=(("dtq-forwarded", "1"),),
        )
    assert second_hop.value.code() is grpc.StatusCode.UNAVAILABLE
    # queue full
    n3 = idle.client("n3")
    with pytest.raises(ResourceExhausted):
        for _ in range(CORE.max_pending + 1):
            await n3.submit("echo", b"")


async def test_a_peer_down_is_unavailable(idle: Cluster) -> None:
    job_id = await idle.client("n2").submit("echo", b"")
    await idle.stop("n2")
    client = idle.client("n1")
    with pytest.raises(Unavailable):
        await client.status(job_id)
    with pytest.raises(Unavailable):  # a listing without n2's jobs would be wrong, not partial
        await client.list()
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await client.cancel(job_id)
    assert time.monotonic() - started < 0.5  # a peer seen up before and now refusing fails fast
    # the others keep serving their own jobs
    assert (await client.status(await client.submit("echo", b""))).job_id


# ---------------------------------------------------------------------------- restart
async def test_restart_keeps_every_accepted_job(tmp_path: Path) -> None:
    cluster = await make_cluster(tmp_path, "sqlite")
    try:
        client = cluster.client("n1")
        # a request_id is accepted by its home node: pick one whose home is n1
        key = next(k for k in (f"kept-{i}" for i in range(100)) if request_home(k, list(NODES)) == "n1")
        done = await client.submit("echo", b"before", request_id=key)
        assert JobState((await client.wait(done, timeout=5.0)).state) is JobState.SUCCEEDED
        ids = [await client.submit("sleep", sleep_payload(0.3)) for _ in range(10)]
        await wait_state(client, ids[0], {JobState.RUNNING, JobState.SUCCEEDED})
        await cluster.stop("n1")
        node = await cluster.start("n1")  # same data_dir and port
        assert len(node.core.scheduler.jobs) == 11
        client = cluster.client("n1", "n2")
        kept = await client.result(done)
        assert kept.response.output == b"before"
        again = await client.submit("echo", b"before", request_id=key)
        assert again == done  # the idempotency index survived too
        fresh = await cluster.client("n1").submit("echo", b"after")
        assert parse_job_id(fresh)[1] != parse_job_id(done)[1]  # a new incarnation: ids never repeat
        final = await asyncio.gather(*(client.wait(j, timeout=10.0) for j in [*ids, fresh]))
        assert all(JobState(j.state) is JobState.SUCCEEDED for j in final)
    finally:
        await cluster.close()


async def test_stop_answers_waitjob_long_polls_instead_of_waiting_for_them(idle: Cluster) -> None:
    """A SIGTERM'd node must not sit out its whole grace period on clients' WaitJob long-polls."""
    job_id = await idle.client("n1").submit("echo", b"")  # no slots: stays PENDING
    owner = next(n for n in NODES if idle.node(n).core.scheduler.jobs.find(job_id) is not None)
    waiting = asyncio.create_task(idle.client(owner).wait(job_id, timeout=30.0))
    deadline = time.monotonic() + 5.0
    while not idle.node(owner).core.driver.jobs_waited_on:
        assert time.monotonic() < deadline, "the WaitJob never parked"
        await asyncio.sleep(0.01)
    started = time.monotonic()
    await idle.stop(owner)
    # drain_timeout is 1.0 s here; before the fix the stop took all of it
    assert time.monotonic() - started < 0.5
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
