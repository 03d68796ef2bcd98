"""The bounds of both designs, end to end on loopback, in-process:
- overload: a flood above max_pending gets RESOURCE_EXHAUSTED ("queue is full") and loses nothing
  it accepted; an oversized payload gets RESOURCE_EXHAUSTED and never reaches storage;
- retention: a finished job and its result are deleted result_ttl after it ended, from memory and
  from SQLite, and then answer NOT_FOUND saying so;
- bytes (issue 26): replies that carry payloads or pages fit the message limit and lease nothing
  they could not carry; a byte flood of fast jobs keeps the nodes within their byte budgets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import json
import logging
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2

from dtq.v1 import (
    client_pb2,
    client_pb2_grpc,
    internal_pb2,
    internal_pb2_grpc,
    job_pb2,
    worker_pb2,
    worker_pb2_grpc,
)
from lab.procfs import rss_mib
from model.config import CoreConfig
from model.jobs import JobTable
from model.states import JobState
from realsys.config import grpc_options
from realsys.micro.job import JobRole
from realsys.micro.result import ResultRole
from realsys.mono import MonoNode
from realsys.server import RunningRole
from realsys.storage import WAL_RESTART_BYTES
from tests.realsys.conftest import MICRO_ROLES, Closing, start_roles, stop_roles

pytestmark = pytest.mark.timeout(60)

MAX_PENDING = 20
CORE = CoreConfig(
    lease_duration=30.0,
    heartbeat_interval=1.0,
    worker_ttl=20.0,
    max_pending=MAX_PENDING,
    max_payload_bytes=1024,
    result_ttl=1.0,
)


@dataclass(eq=False)
class Deployment(Closing):
    """One design on loopback without in-process workers (the test is the worker). Design B runs
    `nodes` nodes; the client and worker stubs talk to n1."""

    design: str
    root: Path
    store: str
    core: CoreConfig = CORE
    nodes: int = 1
    slots: int = 0  # Design B: each node's own worker slots
    running: list[RunningRole] = field(default_factory=list, init=False)
    client_address: str = field(default="", init=False)
    worker_address: str = field(default="", init=False)
    channels: list[grpc.aio.Channel] = field(default_factory=list, init=False)

    async def start(self) -> None:
        common: dict[str, Any] = {
            "store": self.store,
            "core": self.core,
            "steal_interval": 0.02,
            "metrics_port": -1,
            "rpc_timeout": 2.0,
            "fetch_wait": 0.2,
            "drain_timeout": 0.5,
        }
        if self.design == "micro":
            self.running, services = await start_roles(
                "micro", self.root, tuple(MICRO_ROLES), slots=0, **common
            )
            self.client_address, self.worker_address = services["gateway"], services["coordinator"]
        else:
            names = [f"n{i + 1}" for i in range(self.nodes)]
            self.running, self.peers = await start_roles("mono", self.root, names, slots=self.slots, **common)
            self.client_address = self.worker_address = self.peers["n1"]

    def stubs(self, client_address: str = "") -> tuple[Any, Any]:
        client = grpc.aio.insecure_channel(client_address or self.client_address, options=grpc_options())
        worker = grpc.aio.insecure_channel(self.worker_address, options=grpc_options())
        self.channels += [client, worker]
        return client_pb2_grpc.TaskQueueStub(client), worker_pb2_grpc.WorkersStub(worker)

    def peer_stub(self, node: str) -> Any:
        channel = grpc.aio.insecure_channel(self.peers[node], options=grpc_options())
        self.channels.append(channel)
        return internal_pb2_grpc.PeerStub(channel)

    def tables(self) -> list[JobTable]:
        """Every JobTable of the deployment (Design A: the job service's; Design B: each node's)."""
        return [
            role.role.table if isinstance(role.role, JobRole) else role.role.core.scheduler.jobs
            for role in self.running
            if isinstance(role.role, JobRole | MonoNode)
        ]

    def job_rows(self) -> int:
        """Rows in the SQLite job table(s) of this deployment."""
        return self.rows("jobs")

    def result_rows(self) -> int:
        return self.rows("results")

    def rows(self, table: str) -> int:
        """Rows in the SQLite tables named `table` of this deployment."""
        total = 0
        for path in self.root.rglob("*.sqlite3"):
            with sqlite3.connect(path) as conn:
                has = conn.execute("SELECT name FROM sqlite_master WHERE name = ?", (table,)).fetchone()
                if has:
                    total += conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        return total

    async def close(self) -> None:
        await stop_roles(self.running, self.channels)


@contextlib.asynccontextmanager
async def deployed(
    design: str, root: Path, store: str, core: CoreConfig = CORE, nodes: int = 1, slots: int = 0
) -> AsyncIterator[Deployment]:
    """A started Deployment, closed at the end of the block."""
    async with Deployment(design, root, store, core, nodes, slots) as d:
        await d.start()
        yield d


@pytest.fixture(params=["micro", "mono"])
async def deployment(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Deployment]:
    async with deployed(request.param, tmp_path, "sqlite") as d:
        yield d


async def _submit(
    client: Any, payload: bytes = b"x", request_id: str = ""
) -> tuple[grpc.StatusCode, str, str]:
    try:
        reply = await client.SubmitJob(
            client_pb2.SubmitJobRequest(
                spec=job_pb2.JobSpec(job_type="echo", payload=payload), request_id=request_id
            ),
            timeout=5,
        )
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or "", ""
    return grpc.StatusCode.OK, "", reply.job_id


async def _run_all(worker: Any, count: int) -> list[str]:
    """Acts as a worker: fetches and completes jobs until `count` were done (bounded in time)."""
    done: list[str] = []
    deadline = time.monotonic() + 20
    while len(done) < count and time.monotonic() < deadline:
        fetched = await worker.FetchWork(
            worker_pb2.FetchWorkRequest(worker_id="ow", free_slots=50), timeout=5
        )
        for a in fetched.assignments:
            await worker.ReportResult(
                worker_pb2.ReportResultRequest(
                    worker_id="ow",
                    job_id=a.job_id,
                    attempt=a.attempt,
                    success=job_pb2.JobResult(output=b"ok"),
                ),
                timeout=5,
            )
            done.append(a.job_id)
    return done


async def test_flood_gets_backpressure_and_loses_nothing(deployment: Deployment) -> None:
    client, worker = deployment.stubs()
    replies = await asyncio.gather(*(_submit(client) for _ in range(3 * MAX_PENDING)))
    accepted = [job_id for code, _, job_id in replies if code is grpc.StatusCode.OK]
    refused = [(code, details) for code, details, _ in replies if code is not grpc.StatusCode.OK]
    assert len(accepted) == MAX_PENDING, replies
    assert len(refused) == 2 * MAX_PENDING
    assert all(code is grpc.StatusCode.RESOURCE_EXHAUSTED and "queue is full" in d for code, d in refused)
    assert deployment.job_rows() == MAX_PENDING  # what was refused was never stored

    big_code, big_details, _ = await _submit(client, b"x" * (CORE.max_payload_bytes + 1))
    assert big_code is grpc.StatusCode.RESOURCE_EXHAUSTED and "limit" in big_details
    assert deployment.job_rows() == MAX_PENDING

    # every accepted job runs to completion: nothing lost, and the queue takes work again
    done = await _run_all(worker, MAX_PENDING)
    assert sorted(done) == sorted(accepted)
    for job_id in accepted:
        job = await client.GetJobStatus(client_pb2.GetJobStatusRequest(job_id=job_id), timeout=5)
        assert JobState(job.state) is JobState.SUCCEEDED
    code, _, _ = await _submit(client)
    assert code is grpc.StatusCode.OK


async def test_finished_jobs_and_results_expire(deployment: Deployment) -> None:
    client, worker = deployment.stubs()
    replies = [await _submit(client) for _ in range(5)]
    accepted = [job_id for _, _, job_id in replies]
    assert all(accepted)
    assert await _run_all(worker, 5)
    result = await client.GetJobResult(client_pb2.GetJobResultRequest(job_id=accepted[0]), timeout=5)
    assert result.response.output == b"ok"
    assert deployment.job_rows() == 5
    # the TTL is 1 s; the deletion is a timer: wait for it, bounded
    deadline = time.monotonic() + 10
    while deployment.job_rows() and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    assert deployment.job_rows() == 0
    for job_id in accepted:
        for call in (client.GetJobStatus, client.GetJobResult):
            request = (
                client_pb2.GetJobStatusRequest(job_id=job_id)
                if call is client.GetJobStatus
                else client_pb2.GetJobResultRequest(job_id=job_id)
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(request, timeout=5)
            assert caught.value.code() is grpc.StatusCode.NOT_FOUND
            assert "finished more than 1s ago" in (caught.value.details() or "")
    if deployment.design == "micro":
        # the result service drops outcomes result_ttl + lease + grace after it stored them; with
        # this config that is 91 s, so here only check they are there and counted for retention
        role = deployment.running[0].role
        assert isinstance(role, ResultRole)
        assert len(role.retention) == deployment.result_rows() == 5
        due = role.retention.next_deadline()
        assert due is not None and due > time.time() + CORE.result_ttl + CORE.lease_duration
        role._on_timer(due + 30)  # what its timer does once the last of them is due
        assert deployment.result_rows() == 0 and len(role.retention) == 0


# ---------------------------------------------------------------------------- bytes (issue 26)
MIB = 1 << 20
BIG = CoreConfig(
    lease_duration=30.0, heartbeat_interval=1.0, worker_ttl=20.0
)  # 1 MiB payloads, 4 MiB replies
BIG_PAYLOAD = b"p" * (MIB - 200)


@pytest.fixture(params=["micro", "mono"])
async def big(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Deployment]:
    async with deployed(request.param, tmp_path, "memory", BIG, nodes=2) as d:
        yield d


async def _states(client: Any, job_ids: list[str]) -> list[tuple[JobState, int]]:
    out = []
    for job_id in job_ids:
        job = await client.GetJobStatus(client_pb2.GetJobStatusRequest(job_id=job_id), timeout=5)
        out.append((JobState(job.state), job.attempt))
    return out


async def test_fetch_of_large_jobs_returns_what_fits_and_leases_nothing_else(big: Deployment) -> None:
    """Issue 26: a FetchWork for 12 slots with ten ~1 MiB jobs ready got RESOURCE_EXHAUSTED in
    Design B after all ten were leased (each lease then ran out and cost an attempt)."""
    client, worker = big.stubs()
    ids = [(await _submit(client, BIG_PAYLOAD))[2] for _ in range(10)]
    assert all(ids)
    fetch = worker_pb2.FetchWorkRequest(worker_id="w-big", free_slots=12)
    reply = await worker.FetchWork(fetch, timeout=10)
    got = [a.job_id for a in reply.assignments]
    assert 1 <= len(got) < 10 and reply.ByteSize() <= BIG.max_reply_bytes
    states = dict(zip(ids, await _states(client, ids), strict=True))
    assert all(states[j] == (JobState.RUNNING, 1) for j in got)
    assert all(states[j] == (JobState.PENDING, 0) for j in ids if j not in got)  # no attempt burnt
    # the rest come with the next fetches, each once, at attempt 1
    while len(got) < 10:
        more = await worker.FetchWork(fetch, timeout=10)
        assert more.assignments, "a ready job was not handed out"
        assert more.ByteSize() <= BIG.max_reply_bytes
        got += [a.job_id for a in more.assignments]
    assert sorted(got) == sorted(ids)
    assert {s for s in await _states(client, ids)} == {(JobState.RUNNING, 1)}


async def test_steal_of_large_jobs_costs_no_attempt(big: Deployment) -> None:
    """Issue 26: with --slots 72 a StealWork of 12 large jobs failed "Sent message larger than max"
    and 36 of 60 jobs needed a second attempt. The victim leases only what its reply carries."""
    if big.design == "micro":
        pytest.skip("Design A does not steal")
    client, _ = big.stubs()
    ids = [(await _submit(client, BIG_PAYLOAD))[2] for _ in range(12)]  # all owned by n1
    peer = big.peer_stub("n1")
    request = internal_pb2.StealWorkRequest(thief_node="n2", worker_id="n2-w", max_jobs=12)
    stolen: list[str] = []
    while len(stolen) < 12:
        reply = await peer.StealWork(request, timeout=10)
        assert reply.assignments and reply.ByteSize() <= BIG.max_reply_bytes
        batch = [a.job_id for a in reply.assignments]
        assert len(batch) < 12
        states = dict(zip(ids, await _states(client, ids), strict=True))
        assert all(states[j] == (JobState.PENDING, 0) for j in ids if j not in stolen + batch)
        stolen += batch
    assert sorted(stolen) == sorted(ids)
    assert {s for s in await _states(client, ids)} == {(JobState.RUNNING, 1)}


async def test_stolen_large_jobs_run_once_end_to_end(tmp_path: Path) -> None:
    """Issue 26's reproduction with the nodes' own workers: 12 slots a node (as --slots 72 gives), 60
    jobs of ~1 MiB on n1. An idle n2 asks for 12 (half of n1's queue, at most its free slots): that
    StealWork failed "Sent message larger than max" after leasing them, and 36 of 60 jobs needed a
    second attempt. Now the victim's reply stays within the byte budget and every job succeeds at its
    first attempt."""
    async with deployed("mono", tmp_path, "memory", BIG, nodes=2, slots=12) as d:
        client, _ = d.stubs()
        payload = json.dumps({"seconds": 0.3, "pad": "p" * (MIB - 200)}).encode()
        request = client_pb2.SubmitJobRequest(spec=job_pb2.JobSpec(job_type="sleep", payload=payload))
        replies = await asyncio.gather(*(client.SubmitJob(request, timeout=10) for _ in range(60)))  # a burst
        ids = [reply.job_id for reply in replies]
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            states = await _states(client, ids)
            if all(state is JobState.SUCCEEDED for state, _ in states):
                break
            await asyncio.sleep(0.1)
        assert states == [(JobState.SUCCEEDED, 1)] * 60, states
        stolen = d.running[1].metrics.registry.get_sample_value("dtq_stolen_total") or 0.0
        assert stolen > 0  # n2 took some: steals of large jobs went through


def _max_labels(i: int) -> dict[str, str]:
    """64 labels of 256-character keys and values, in a 4-byte UTF-8 character: the largest spec."""
    return {f"{k:02d}{i:04d}".ljust(256, "\U0001d11e"): "\U0001d11e" * 256 for k in range(BIG.max_labels)}


async def test_list_page_of_maximal_labels_fits_at_page_size_1000(big: Deployment) -> None:
    """Issue 26: with labels at their limits, pages of 100 and more failed RESOURCE_EXHAUSTED. A page
    now ends at the byte budget with a next token; paging still sees every job exactly once (Design
    B merges the nodes' byte-bounded pages)."""
    clients = [big.stubs()[0]]
    if big.design == "mono":
        clients.append(big.stubs(big.peers["n2"])[0])  # jobs on both nodes: the merge is exercised
    ids = []
    for i in range(72):  # ~130 KiB of labels each: ~9.4 MB in all, over the 8 MiB message limit
        spec = job_pb2.JobSpec(job_type="echo", labels=_max_labels(i))
        reply = await clients[i % len(clients)].SubmitJob(client_pb2.SubmitJobRequest(spec=spec), timeout=10)
        ids.append(reply.job_id)
    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await clients[0].ListJobs(
            client_pb2.ListJobsRequest(page_size=1000, page_token=token), timeout=10
        )
        assert page.ByteSize() <= BIG.max_reply_bytes
        assert page.jobs and all(len(job.spec.labels) == BIG.max_labels for job in page.jobs)
        seen += [job.job_id for job in page.jobs]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages >= 3
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))


FLOOD_PAYLOAD = b"f" * (256 << 10)
FLOOD = CoreConfig(
    lease_duration=30.0,
    heartbeat_interval=1.0,
    worker_ttl=20.0,
    max_pending_bytes=2 * MIB,  # 8 unfinished 256 KiB jobs per owner
    max_retained_bytes=2 * MIB,  # and 8 finished jobs' results
)
FLOOD_ROUNDS, FLOOD_JOBS = 6, 48
_LIBC_NAME = ctypes.util.find_library("c")
LIBC = ctypes.CDLL(_LIBC_NAME) if _LIBC_NAME and hasattr(ctypes.CDLL(_LIBC_NAME), "malloc_trim") else None


async def _flood_round(client: Any, tag: str) -> tuple[list[str], int]:
    """Submits FLOOD_JOBS 256 KiB jobs at once, each retried while refused; (accepted ids, refusals)."""

    async def one(i: int) -> tuple[str, int]:
        refused = 0
        deadline = time.monotonic() + 30
        while True:
            # with a request id, so a retry after a timeout on a busy machine cannot make a second job
            code, details, job_id = await _submit(client, FLOOD_PAYLOAD, f"{tag}-{i}")
            if code is grpc.StatusCode.OK:
                return job_id, refused
            if code is not grpc.StatusCode.UNAVAILABLE:
                assert code is grpc.StatusCode.RESOURCE_EXHAUSTED and "queue is full" in details, details
            assert time.monotonic() < deadline, f"{tag}-{i} refused for 30 s"
            refused += 1
            await asyncio.sleep(0.02)

    replies = await asyncio.gather(*(one(i) for i in range(FLOOD_JOBS)))
    return [job_id for job_id, _ in replies], sum(refused for _, refused in replies)


async def _echo_worker(worker: Any, stop: asyncio.Event, finished: dict[str, int]) -> None:
    """Runs every job it can fetch, returning the payload as the result (256 KiB each)."""
    while not stop.is_set():
        fetched = await worker.FetchWork(
            worker_pb2.FetchWorkRequest(worker_id="flood-w", free_slots=8, wait_timeout=_seconds(0.1)),
            timeout=30,  # every role runs in this process: on a loaded 2-core host its loop stalled past 5 s
        )
        for a in fetched.assignments:
            reply = await worker.ReportResult(
                worker_pb2.ReportResultRequest(
                    worker_id="flood-w",
                    job_id=a.job_id,
                    attempt=a.attempt,
                    success=job_pb2.JobResult(output=a.spec.payload),
                ),
                timeout=30,
            )
            assert JobState(reply.state) is JobState.SUCCEEDED
            finished[a.job_id] = finished.get(a.job_id, 0) + 1


def _seconds(value: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(value * 1e9))
    return d


def settled_rss_mib() -> float:
    """This process's RSS once garbage is collected and malloc has returned its free pages (glibc
    keeps freed 256 KiB blocks in per-thread arenas otherwise: RSS would measure the allocator)."""
    gc.collect()
    if LIBC is not None:
        LIBC.malloc_trim(0)
    return rss_mib(os.getpid()) or 0.0


@pytest.fixture(params=["micro", "mono"])
async def flood(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Deployment]:
    async with deployed(request.param, tmp_path, "sqlite", FLOOD) as d:
        yield d


async def test_byte_flood_of_fast_jobs_stays_within_the_byte_budget(flood: Deployment) -> None:
    """Issue 26: 1,500 fast jobs of 256 KiB grew Design A's job service from 68 to 485 MB, and it
    stayed. Now unfinished payloads are bounded by max_pending_bytes (RESOURCE_EXHAUSTED beyond,
    retried here), a finished job keeps no payload, and results beyond max_retained_bytes go oldest
    first, out of RAM when large. The nodes run in this process: its RSS must stay flat while 6 x 12
    MiB of payloads and as many of results pass through; every accepted job runs once and succeeds."""
    client, worker = flood.stubs()
    stop = asyncio.Event()
    finished: dict[str, int] = {}
    running = asyncio.create_task(_echo_worker(worker, stop, finished))
    accepted: list[str] = []
    refusals = 0
    rss: list[float] = []
    try:
        for n in range(FLOOD_ROUNDS):
            ids, refused = await _flood_round(client, f"round{n}")
            accepted += ids
            refusals += refused
            deadline = time.monotonic() + 30
            while len(finished) < len(accepted) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            rss.append(settled_rss_mib())
    finally:
        stop.set()
        await running
    assert refusals > 0  # the byte bound did refuse work (48 x 256 KiB at once is 12 MiB)
    assert sorted(finished) == sorted(accepted) and set(finished.values()) == {1}  # none lost, none twice
    for table in flood.tables():
        assert table.pending_bytes == 0
        assert table.retention.bytes <= FLOOD.max_retained_bytes
        assert sum(len(job.output or b"") for job in table) <= FLOOD.max_retained_bytes
        assert all(job.spec.payload == b"" for job in table)
    last = list(finished)[-1]  # the last to finish: its result is kept (in the store: it is large)
    result = await client.GetJobResult(client_pb2.GetJobResultRequest(job_id=last), timeout=5)
    assert result.response.output == FLOOD_PAYLOAD
    with pytest.raises(grpc.aio.AioRpcError) as caught:  # the first went when the results passed 2 MiB
        await client.GetJobResult(client_pb2.GetJobResultRequest(job_id=accepted[0]), timeout=5)
    assert caught.value.code() is grpc.StatusCode.NOT_FOUND
    assert f"or {FLOOD.max_retained_bytes} bytes of results" in (caught.value.details() or "")
    # on disk (before: 413 MiB in Design A, 510 MiB in Design B): each database holds what is kept
    # (a few MiB), and each WAL restarts once past WAL_RESTART_BYTES (plus what is written until the
    # checkpointer's next turn), instead of holding every payload and result ever written
    for path in flood.root.rglob("*.sqlite3*"):
        size = path.stat().st_size
        bound = 3 * WAL_RESTART_BYTES if path.name.endswith("-wal") else 8 * MIB
        assert size < bound, f"{path.name}: {size / MIB:.0f} MiB"
    # flat: after a warm-up round, 5 more rounds (60 MiB in, 60 MiB of results) do not grow it round by
    # round (before the byte bounds: +12 MiB a round in Design A, +24 MiB in Design B). The least-squares
    # slope over those rounds must stay under half the smaller leak; a one-off step (+19 MiB seen once on a
    # loaded host, against a bound of 12 then) moves it by less than that
    after = rss[1:]
    centre = (len(after) - 1) / 2
    slope = sum((i - centre) * r for i, r in enumerate(after)) / sum(
        (i - centre) ** 2 for i in range(len(after))
    )
    assert slope < 6, f"RSS grows {slope:.1f} MiB a round; by round (MiB): {[round(r) for r in rss]}"
    assert max(after) - after[0] < 36, f"RSS by round (MiB): {[round(r) for r in rss]}"


STRAY = CoreConfig(lease_duration=5.0, heartbeat_interval=0.2, worker_ttl=0.5)


@pytest.fixture(params=["micro", "mono"])
async def stray(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Deployment]:
    async with deployed(request.param, tmp_path, "memory", STRAY) as d:
        yield d


async def test_stray_heartbeats_cost_no_release_and_no_log_lines(
    stray: Deployment, caplog: pytest.LogCaptureFixture
) -> None:
    """Issue 26: each heartbeat from a new worker id added ~590 bytes of log once the id expired,
    and in Design A a ReleaseWorker call. A worker that never held work now expires silently (a
    debug line); one that did is still released, loudly, and its job requeued."""
    caplog.set_level(logging.INFO)
    client, worker = stray.stubs()
    (_, _, job_id) = await _submit(client)
    await worker.WorkerHeartbeat(worker_pb2.HeartbeatRequest(worker_id="holder", total_slots=1), timeout=5)
    fetched = await worker.FetchWork(worker_pb2.FetchWorkRequest(worker_id="holder", free_slots=1), timeout=5)
    assert [a.job_id for a in fetched.assignments] == [job_id]
    for n in range(20):
        hello = worker_pb2.HeartbeatRequest(worker_id=f"stray-{n}", total_slots=1, free_slots=1)
        await worker.WorkerHeartbeat(hello, timeout=5)
    deadline = time.monotonic() + 10  # the holder goes silent: lost after worker_ttl, its job requeued
    while time.monotonic() < deadline:
        job = await client.GetJobStatus(client_pb2.GetJobStatusRequest(job_id=job_id), timeout=5)
        if JobState(job.state) is JobState.PENDING:
            break
        await asyncio.sleep(0.05)
    assert JobState(job.state) is JobState.PENDING and job.error.reason in ("WORKER_LOST", "LEASE_EXPIRED")
    await asyncio.sleep(3 * STRAY.worker_ttl)  # every stray id has expired too
    lost = [r for r in caplog.records if r.getMessage() == "worker lost" and r.levelno >= logging.INFO]
    assert [getattr(r, "worker_id", "") for r in lost] == ["holder"]
    if stray.design == "micro":
        job_role = next(r for r in stray.running if isinstance(r.role, JobRole))
        releases = job_role.metrics.registry.get_sample_value(
            "dtq_rpc_total", {"method": "/dtq.v1.JobStore/ReleaseWorker", "code": "OK"}
        )
        assert releases == 1  # the holder's, none for the 20 strays
