"""The job path's single operations, for `dtq calibrate` (clusters.py measures the client API).

A job costs more than the client's calls: the worker's fetch, lease, run, report and the server work
they cause. Two kinds of measurement, both one job (or call) at a time, never a load curve:

1. Worker-side RPCs called directly by the calibrator, which plays the worker (the cluster's own
   workers have no slots), with the same per-process CPU accounting as the client API
   (measure.measure_calls):
   - Design B, at node n1: Peer.QueueDepth, Peer.StealWork (one job, as a thief node would),
     Workers.WorkerHeartbeat and Workers.ReportResult for the stolen job (what a thief sends its
     owner), then WaitJob and GetJobResult of the finished job;
   - Design A, at the coordinator: FetchWork (coordinator -> queue.Reserve -> job.LeaseJobs, then
     queue.Ack), WorkerHeartbeat (-> job.RenewLeases) and ReportResult (-> result.PutResult ->
     job.CompleteAttempt), then WaitJob and GetJobResult of the finished job through the gateway; and
     at the queue alone, Reserve and Ack of entries it was given.
2. The job path with a real worker, in two CPU windows per job (`job_windows`): a cluster whose
   workers have one slot each runs `sleep` jobs of JOB_SECONDS, submitted one at a time. Window 1 runs
   from the submit to SPLIT_SECONDS later (the submit, the dispatch and the launch: the job is then
   sleeping); window 2 from there until TAIL_SECONDS after the job's end (the handler's end, the
   report and the worker's next fetch). Each process's CPU in a window, less its idle rate times the
   window, is what that phase costs it. A second batch also long-polls WaitJob for each job: its
   difference to the first is what a parked WaitJob costs, wake-up included.

In-process steps (Design B's fetch, launch, finish and report; Design A's worker runtime) have no RPC
of their own to time; the windows measure them per phase, and assemble.build_parameters charges each
phase's remainder to one simulator key (documented there). Direct RPC measurements of Design A predict
what its windows should show; `closure` in the calibration file compares the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from dtq.v1 import (
    client_pb2,
    client_pb2_grpc,
    internal_pb2,
    internal_pb2_grpc,
    job_pb2,
    worker_pb2,
    worker_pb2_grpc,
)
from lab.calibration.measure import idle_rates, measure_calls, run_async
from lab.procfs import process_cpu
from realsys import cluster
from realsys.client import channel_options, make_stub
from realsys.convert import to_duration
from realsys.loadgen import job_payload
from realsys.mono.peers import FORWARDED

JOB_SECONDS = 0.1  # the sleep job of the windowed runs
SPLIT_SECONDS = 0.05  # window 1 ends this long after the submit went out (the job is asleep by then)
TAIL_SECONDS = 0.05  # window 2 ends this long after the job's planned end
RPC_TIMEOUT = 5.0
THIEF_WORKER = "n2-calibrate"  # Design B: a peer's worker stealing from n1
CAL_WORKER = "calibrate-worker"  # Design A: the calibrator as the (only) worker


def _channel(address: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(address, options=channel_options())


def _success(job_id: str, attempt: int, worker_id: str) -> worker_pb2.ReportResultRequest:
    request = worker_pb2.ReportResultRequest(worker_id=worker_id, job_id=job_id, attempt=attempt)
    request.success.output = b""
    return request


def _running(job_id: str, attempt: int) -> list[worker_pb2.RunningJob]:
    return [worker_pb2.RunningJob(job_id=job_id, attempt=attempt)]


async def _wait_and_result(
    tq: Any, done: Sequence[str], pids: Mapping[str, int], idle: Mapping[str, float]
) -> dict[str, dict[str, list[float]]]:
    """WaitJob and GetJobResult of jobs that have ended: both answer at once."""
    no_wait = to_duration(0.0)

    def wait(i: int) -> Awaitable[object]:
        request = client_pb2.WaitJobRequest(job_id=done[i], timeout=no_wait)
        return tq.WaitJob(request, timeout=RPC_TIMEOUT)  # type: ignore[no-any-return]

    def result(i: int) -> Awaitable[object]:
        request = client_pb2.GetJobResultRequest(job_id=done[i])
        return tq.GetJobResult(request, timeout=RPC_TIMEOUT)  # type: ignore[no-any-return]

    return {
        "WaitJob": await measure_calls(wait, pids, len(done), idle),
        "GetJobResult.done": await measure_calls(result, pids, len(done), idle),
    }


async def leasing(
    rpc: Callable[[], Awaitable[worker_pb2.FetchWorkResponse]],
    count: int,
    pids: Mapping[str, int],
    idle: Mapping[str, float],
    what: str,
) -> tuple[dict[str, list[float]], list[tuple[str, int]]]:
    """`count` calls of a leasing RPC (one job each) measured, and the (job id, attempt) they leased."""
    leased: list[tuple[str, int]] = []

    async def call(_: int) -> object:
        reply = await rpc()
        leased.extend((a.job_id, a.attempt) for a in reply.assignments)
        return reply

    samples = await measure_calls(call, pids, count, idle)
    if len(leased) < count:
        raise RuntimeError(f"{what}: {len(leased)} of {count} leased")
    return samples, leased


@dataclass(frozen=True, slots=True)
class _Held:
    """Jobs a worker (the calibrator) holds: their WorkerHeartbeat and ReportResult, one call each,
    then WaitJob and GetJobResult of the finished jobs."""

    workers: Any  # WorkersStub
    tq: Any  # TaskQueueStub
    jobs: Sequence[tuple[str, int]]  # (job id, attempt)
    worker_id: str
    total_slots: int
    metadata: Sequence[tuple[str, str]] | None = None

    def _heartbeat(self, i: int) -> Awaitable[object]:
        request = worker_pb2.HeartbeatRequest(
            worker_id=self.worker_id,
            total_slots=self.total_slots,
            free_slots=0,
            running=_running(*self.jobs[i]),
        )
        return self.workers.WorkerHeartbeat(  # type: ignore[no-any-return]
            request, timeout=RPC_TIMEOUT, metadata=self.metadata
        )

    def _report(self, i: int) -> Awaitable[object]:
        request = _success(*self.jobs[i], worker_id=self.worker_id)
        return self.workers.ReportResult(  # type: ignore[no-any-return]
            request, timeout=RPC_TIMEOUT, metadata=self.metadata
        )

    async def measure(
        self, count: int, pids: Mapping[str, int], idle: Mapping[str, float]
    ) -> dict[str, dict[str, list[float]]]:
        out = {
            "WorkerHeartbeat": await measure_calls(self._heartbeat, pids, count, idle),
            "ReportResult": await measure_calls(self._report, pids, count, idle),
        }
        out.update(await _wait_and_result(self.tq, [job_id for job_id, _ in self.jobs], pids, idle))
        return out


# ---------------------------------------------------------------------------- Design B
async def mono_worker_api(
    address: str, pending: Sequence[str], pids: Mapping[str, int], idle: Mapping[str, float]
) -> dict[str, dict[str, list[float]]]:
    """At node `address` (owner of the `pending` jobs): what idle peers and thieves ask of it."""
    count = len(pending)
    channel = _channel(address)
    try:
        peer = make_stub(internal_pb2_grpc.PeerStub, channel)
        workers = make_stub(worker_pb2_grpc.WorkersStub, channel)
        tq = make_stub(client_pb2_grpc.TaskQueueStub, channel)
        out: dict[str, dict[str, list[float]]] = {}
        out["QueueDepth"] = await measure_calls(
            lambda _: peer.QueueDepth(internal_pb2.QueueDepthRequest(), timeout=RPC_TIMEOUT),
            pids,
            count,
            idle,
        )

        def steal() -> Awaitable[worker_pb2.FetchWorkResponse]:
            request = internal_pb2.StealWorkRequest(thief_node="n2", worker_id=THIEF_WORKER, max_jobs=1)
            return peer.StealWork(request, timeout=RPC_TIMEOUT)  # type: ignore[no-any-return]

        out["StealWork"], stolen = await leasing(steal, count, pids, idle, "StealWork of pending jobs")

        # a thief's calls to the owner carry the forwarded mark, as realsys/mono/backend.py sends them
        held = _Held(workers, tq, stolen, THIEF_WORKER, total_slots=0, metadata=FORWARDED)
        out.update(await held.measure(count, pids, idle))
        return out
    finally:
        await channel.close(None)


# ---------------------------------------------------------------------------- Design A
async def micro_worker_api(
    gateway: str,
    coordinator: str,
    queue: str,
    pending: int,
    pids: Mapping[str, int],
    idle: Mapping[str, float],
) -> dict[str, dict[str, list[float]]]:
    """The calibrator as Design A's only worker: fetch each of the `pending` queued jobs, heartbeat
    it, report it; then Reserve and Ack at the queue alone."""
    channels = [_channel(a) for a in (gateway, coordinator, queue)]
    try:
        tq = make_stub(client_pb2_grpc.TaskQueueStub, channels[0])
        workers = make_stub(worker_pb2_grpc.WorkersStub, channels[1])
        queue_stub = make_stub(internal_pb2_grpc.QueueStub, channels[2])
        out: dict[str, dict[str, list[float]]] = {}
        await workers.WorkerHeartbeat(
            worker_pb2.HeartbeatRequest(worker_id=CAL_WORKER, total_slots=1, free_slots=1),
            timeout=RPC_TIMEOUT,
        )
        wait = to_duration(1.0)

        def fetch() -> Awaitable[worker_pb2.FetchWorkResponse]:
            request = worker_pb2.FetchWorkRequest(worker_id=CAL_WORKER, free_slots=1, wait_timeout=wait)
            return workers.FetchWork(request, timeout=RPC_TIMEOUT)  # type: ignore[no-any-return]

        out["FetchWork"], leased = await leasing(fetch, pending, pids, idle, "FetchWork of queued jobs")

        out.update(await _Held(workers, tq, leased, CAL_WORKER, total_slots=1).measure(pending, pids, idle))

        # the queue alone: entries of its own (it keeps ids and priorities, not jobs)
        entries = [internal_pb2.QueueEntry(job_id=f"calibrate-q{i}") for i in range(pending)]
        await queue_stub.Enqueue(internal_pb2.EnqueueRequest(entries=entries), timeout=RPC_TIMEOUT)
        hold, no_wait = to_duration(30.0), to_duration(0.0)
        reserved: list[str] = []

        async def reserve(_: int) -> object:
            request = internal_pb2.ReserveRequest(max_items=1, hold=hold, wait_timeout=no_wait)
            reply: internal_pb2.ReserveResponse = await queue_stub.Reserve(request, timeout=RPC_TIMEOUT)
            reserved.extend(e.job_id for e in reply.entries)
            return reply

        out["queue.Reserve"] = await measure_calls(reserve, pids, pending, idle)
        out["queue.Ack"] = await measure_calls(
            lambda i: queue_stub.Ack(
                internal_pb2.AckRequest(job_ids=reserved[i : i + 1]), timeout=RPC_TIMEOUT
            ),
            pids,
            len(reserved),
            idle,
        )
        return out
    finally:
        await asyncio.gather(*(c.close(None) for c in channels))


# ---------------------------------------------------------------------------- the job path, windowed
async def job_windows(
    submit: Callable[[], Awaitable[str]],
    wait: Callable[[str], Awaitable[object]] | None,
    pids: Mapping[str, int],
    count: int,
    idle: Mapping[str, float],
) -> dict[str, dict[str, list[float]]]:
    """Per job and process: CPU of window 1 ("w1": submit, dispatch, launch) and window 2 ("w2": the
    handler's end, report, next fetch), each less idle rate x its length (signed); "total" = w1 + w2. With
    `wait`, the client also long-polls WaitJob for the job from the moment the submit returned."""
    out: dict[str, dict[str, list[float]]] = {"w1": {n: [] for n in pids}, "w2": {n: [] for n in pids}}
    out["total"] = {n: [] for n in pids}
    out["wall"] = {"submit": [], "job": []}
    loop = asyncio.get_running_loop()
    for _ in range(count):
        c0 = {n: process_cpu(p) for n, p in pids.items()}
        t0 = loop.time()
        job_id = await submit()
        out["wall"]["submit"].append(loop.time() - t0)
        waiter = asyncio.ensure_future(wait(job_id)) if wait is not None else None
        await asyncio.sleep(max(0.0, t0 + SPLIT_SECONDS - loop.time()))
        c1 = {n: process_cpu(p) for n, p in pids.items()}
        t1 = loop.time()
        if waiter is not None:
            await waiter
            out["wall"]["job"].append(loop.time() - t0)
        await asyncio.sleep(max(0.0, t0 + JOB_SECONDS + TAIL_SECONDS - loop.time()))
        c2 = {n: process_cpu(p) for n, p in pids.items()}
        t2 = loop.time()
        for n in pids:
            w1 = c1[n] - c0[n] - idle.get(n, 0.0) * (t1 - t0)
            w2 = c2[n] - c1[n] - idle.get(n, 0.0) * (t2 - t1)
            # signed: an idle process's residuals must average to 0 (derived keys clip at 0)
            out["w1"][n].append(w1)
            out["w2"][n].append(w2)
            out["total"][n].append(w1 + w2)
    return out


async def run_job_windows(
    address: str,
    pids: Mapping[str, int],
    count: int,
    warmup: int = 5,
    payload_bytes: int = 0,
    waited: bool = True,
) -> dict[str, Any]:
    """Both batches against one client-facing address: "plain" (submit only) and, with `waited`,
    "waited" (submit, then WaitJob until the end), the jobs' payloads padded to `payload_bytes`.
    Every job must succeed."""
    channel = _channel(address)
    try:
        tq = make_stub(client_pb2_grpc.TaskQueueStub, channel)
        spec_payload = job_payload(JOB_SECONDS, payload_bytes)
        ids: list[str] = []

        async def submit() -> str:
            request = client_pb2.SubmitJobRequest()
            request.spec.job_type = "sleep"
            request.spec.payload = spec_payload
            reply: client_pb2.SubmitJobResponse = await tq.SubmitJob(request, timeout=RPC_TIMEOUT)
            ids.append(reply.job_id)
            return reply.job_id

        async def wait(job_id: str) -> object:
            request = client_pb2.WaitJobRequest(job_id=job_id, timeout=to_duration(RPC_TIMEOUT / 2))
            return await tq.WaitJob(request, timeout=RPC_TIMEOUT)

        await job_windows(submit, wait, {}, warmup, {})  # warm-up: channels, caches, the worker's loop
        idle = await idle_rates(pids, 1.0)  # >= one heartbeat period of every worker
        plain = await job_windows(submit, None, pids, count, idle)
        out = {"plain": plain, "idle_rate": dict(idle)}
        if waited:
            out["waited"] = await job_windows(submit, wait, pids, count, idle)
        await asyncio.sleep(JOB_SECONDS + TAIL_SECONDS)
        states = set()
        for job_id in ids:
            job = await tq.GetJobStatus(client_pb2.GetJobStatusRequest(job_id=job_id), timeout=RPC_TIMEOUT)
            states.add(job.state)
        if states != {job_pb2.SUCCEEDED}:
            raise RuntimeError(f"windowed jobs ended in states {sorted(states)}, not only SUCCEEDED")
        return out
    finally:
        await channel.close(None)


@contextlib.contextmanager
def windowed_cluster(design: str, store: str) -> Iterator[tuple[str, dict[str, int]]]:
    """A fresh cluster whose workers have one slot each (Design B: every node; Design A: the worker):
    (its first client address, its processes' pids by name)."""
    slots = 6 if design == "mono" else 1
    # Design B: no stealing, so idle peers' depth polls (measured directly) stay out of the windows
    overrides = {"DTQ_STEAL_INTERVAL": "30"} if design == "mono" else {}
    with cluster.running(
        design,
        total_slots=slots,
        store=store,
        overrides=overrides,
        grace=10.0,
        prefix=f"dtq-cal-path-{design}-",
    ) as info:
        yield info.clients[0], {n.name: n.pid for n in info.nodes}


def measure_job_path(design: str, store: str, count: int) -> dict[str, Any]:
    """The windowed jobs, plain and waited, on a windowed_cluster."""
    with windowed_cluster(design, store) as (address, pids):
        started = time.perf_counter()
        out = run_async(run_job_windows(address, pids, count))
        out["wall_seconds"] = time.perf_counter() - started
        return out
