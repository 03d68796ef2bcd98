"""Design A coordinator: serves the Workers API and tells workers about cancellations.

It holds only the WorkerRegistry (who is alive); jobs belong to the job service and ready entries to
the queue service. Dispatch is reserve -> lease -> ack:

    queue.Reserve(free_slots, hold)  ->  job.LeaseJobs(worker, ids)  ->  queue.Ack(every reserved id)

If the coordinator dies (or LeaseJobs fails) between Reserve and Ack, the hold runs out and the entries
return to the queue. Ids the job service refused (stale entries) are acknowledged too, so they go away.
A report stores the outcome in the result service first and then completes the attempt in the job
service, so a job the job service calls SUCCEEDED always has its result stored.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

import grpc

from dtq.v1 import internal_pb2, internal_pb2_grpc, worker_pb2, worker_pb2_grpc
from model.errors import InvalidArgument
from model.ids import parse_job_id
from model.job import CancelledByWorker, Failed, Succeeded, bounded_outcome
from model.workers import WorkerRegistry, validate_worker_id
from realsys.config import NodeConfig
from realsys.convert import from_duration, outcome_from_pb, outcome_to_pb, running_to_pb, to_duration
from realsys.decoding import add_servicer
from realsys.metrics import NodeMetrics
from realsys.micro.base import (
    Context,
    MicroRole,
    hop_timeout,
    job_error_pb,
    make_stub,
    poll_budget,
    rpc_code,
)
from realsys.status import grpc_errors
from realsys.timer import CoreTimer

MAX_FETCH = 1000
# Push cancels kept per worker until its next heartbeat; more than this means the worker is not listening.
MAX_PENDING_CANCELS = 10_000
RELEASE_ATTEMPTS = 5


class CoordinatorRole(MicroRole, worker_pb2_grpc.WorkersServicer, internal_pb2_grpc.CoordinatorServicer):
    service_names = ("dtq.v1.Workers", "dtq.v1.Coordinator")
    calls = ("queue", "job", "result")

    def __init__(self, config: NodeConfig, metrics: NodeMetrics) -> None:
        super().__init__(config)
        self.metrics = metrics
        self.registry = WorkerRegistry(config.core)
        self._timer = CoreTimer(self.registry.next_deadline, self._on_timer)
        # worker -> cancels learned from NotifyCancel, delivered with its next heartbeat response
        self._cancels: dict[str, dict[tuple[str, int], None]] = {}
        self._queue: Any = None
        self._job: Any = None
        self._result: Any = None

    def add_to_server(self, server: grpc.aio.Server) -> None:
        add_servicer(worker_pb2_grpc.add_WorkersServicer_to_server, self, server)
        add_servicer(internal_pb2_grpc.add_CoordinatorServicer_to_server, self, server)

    def on_channels(self, channels: Mapping[str, grpc.aio.Channel]) -> None:
        self._queue = make_stub(internal_pb2_grpc.QueueStub, channels["queue"])
        self._job = make_stub(internal_pb2_grpc.JobStoreStub, channels["job"])
        self._result = make_stub(internal_pb2_grpc.ResultStoreStub, channels["result"])

    async def start(self) -> None:
        await super().start()
        self._timer.start()

    async def close(self) -> None:
        self._timer.stop()
        await super().close()

    # ------------------------------------------------------------------ Workers
    @grpc_errors
    async def WorkerHeartbeat(
        self, request: worker_pb2.HeartbeatRequest, context: Context
    ) -> worker_pb2.HeartbeatResponse:
        assert self._job is not None
        now = time.time()
        self.registry.heartbeat(
            now, request.worker_id, request.total_slots, request.free_slots, holds_work=bool(request.running)
        )
        self._timer.poke()
        response: worker_pb2.HeartbeatResponse = await self._job.RenewLeases(
            request, timeout=hop_timeout(self.config, context)
        )
        # taken only once the renewal went through, so a failed heartbeat does not lose them
        pushed = self._cancels.pop(request.worker_id, None)
        if pushed:
            have = {(r.job_id, r.attempt) for r in response.cancel}
            response.cancel.extend(running_to_pb([key for key in pushed if key not in have]))
        response.heartbeat_interval.CopyFrom(to_duration(self.config.core.heartbeat_interval))
        return response

    @grpc_errors
    async def FetchWork(
        self, request: worker_pb2.FetchWorkRequest, context: Context
    ) -> worker_pb2.FetchWorkResponse:
        assert self._queue is not None and self._job is not None
        worker_id = validate_worker_id(request.worker_id)
        if request.free_slots < 0:
            raise InvalidArgument("free_slots must not be negative")
        self.registry.touch(time.time(), worker_id)
        wanted = min(request.free_slots, MAX_FETCH)
        # keep time for LeaseJobs after the wait, or the worker may never see jobs leased to it
        wait = poll_budget(
            from_duration(request.wait_timeout, "wait_timeout"),
            context,
            reserve=min(1.0, self.config.rpc_timeout),
        )
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait
        hold = to_duration(self.config.core.reservation_hold)
        while wanted and not self.draining:
            left = max(0.0, give_up - loop.time())
            reserved = await self._queue.Reserve(
                internal_pb2.ReserveRequest(max_items=wanted, hold=hold, wait_timeout=to_duration(left)),
                timeout=hop_timeout(self.config, context, wait=left),
            )
            ids = [entry.job_id for entry in reserved.entries]
            if not ids:
                break  # the wait ran out
            # on failure nothing is acknowledged: the reservation runs out and the entries return
            leased = await self._job.LeaseJobs(
                internal_pb2.LeaseJobsRequest(worker_id=worker_id, job_ids=ids),
                timeout=hop_timeout(self.config, context),
            )
            self.spawn(self._ack(ids), "ack")
            if leased.assignments:
                self.registry.note_work(worker_id)  # when lost, its attempts need a release
                return worker_pb2.FetchWorkResponse(assignments=leased.assignments)
            if loop.time() >= give_up:
                break  # only stale entries, and no time left to wait for more
        return worker_pb2.FetchWorkResponse()

    @grpc_errors
    async def ReportResult(
        self, request: worker_pb2.ReportResultRequest, context: Context
    ) -> worker_pb2.ReportResultResponse:
        assert self._job is not None and self._result is not None
        worker_id = validate_worker_id(request.worker_id)
        # INVALID_ARGUMENT without one; an output over max_result_bytes fails the job for good and an
        # error message is cut (model.job.bounded_outcome, as the job table applies it)
        outcome = bounded_outcome(outcome_from_pb(request), self.config.core)
        if request.attempt < 1:
            raise InvalidArgument("attempt must be >= 1")
        parse_job_id(request.job_id)  # a malformed id is refused before anything is stored
        self.registry.touch(time.time(), worker_id)
        forward = worker_pb2.ReportResultRequest()
        forward.CopyFrom(request)
        outcome_to_pb(outcome, forward)  # the bounded outcome
        if not isinstance(outcome, CancelledByWorker):
            put = internal_pb2.PutResultRequest(job_id=request.job_id, attempt=request.attempt)
            if isinstance(outcome, Succeeded):
                put.response.output = outcome.output
                # the job service keeps states and output sizes (retention), not result bytes
            else:
                assert isinstance(outcome, Failed)
                put.error.CopyFrom(job_error_pb(outcome.error))
            # before CompleteAttempt: a stale attempt's result is harmless under its own (job, attempt) key
            await self._result.PutResult(put, timeout=hop_timeout(self.config, context))
        response: worker_pb2.ReportResultResponse = await self._job.CompleteAttempt(
            forward, timeout=hop_timeout(self.config, context)
        )
        return response

    # ------------------------------------------------------------------ Coordinator
    @grpc_errors
    async def NotifyCancel(
        self, request: internal_pb2.NotifyCancelRequest, context: Context
    ) -> internal_pb2.NotifyCancelResponse:
        if not request.job_id:
            raise InvalidArgument("job_id is required")
        worker_id = validate_worker_id(request.worker_id)
        # a worker we do not know is dead or not yet registered: RenewLeases tells it anyway
        if worker_id in self.registry.workers:
            cancels = self._cancels.setdefault(worker_id, {})
            if len(cancels) < MAX_PENDING_CANCELS:
                cancels[(request.job_id, request.attempt)] = None
        return internal_pb2.NotifyCancelResponse()

    # ------------------------------------------------------------------ background
    def _on_timer(self, now: float) -> None:
        for lost in self.registry.handle_timer(now):
            self._cancels.pop(lost.worker_id, None)
            if not lost.held_work:  # a stray heartbeat: nothing to release, nothing to warn about
                self.log.debug("worker lost", extra={"worker_id": lost.worker_id})
                continue
            self.log.warning("worker lost", extra={"worker_id": lost.worker_id})
            self.spawn(self._release(lost.worker_id), "release-worker")

    async def _release(self, worker_id: str) -> None:
        """Ends the lost worker's attempts now; if this fails, their leases run out on their own."""
        assert self._job is not None
        delay = 0.1
        for _ in range(RELEASE_ATTEMPTS):
            try:
                reply = await self._job.ReleaseWorker(
                    internal_pb2.ReleaseWorkerRequest(worker_id=worker_id), timeout=self.config.rpc_timeout
                )
            except grpc.aio.AioRpcError as exc:
                self.log.warning(
                    "ReleaseWorker failed", extra={"worker_id": worker_id, "code": rpc_code(exc)}
                )
                await asyncio.sleep(delay)
                delay *= 2
                continue
            self.log.info("released lost worker", extra={"worker_id": worker_id, "requeued": reply.requeued})
            return

    async def _ack(self, job_ids: list[str]) -> None:
        assert self._queue is not None
        try:
            await self._queue.Ack(internal_pb2.AckRequest(job_ids=job_ids), timeout=self.config.rpc_timeout)
        except grpc.aio.AioRpcError as exc:
            # the holds run out and the entries come back; LeaseJobs then refuses them and they are acked
            self.log.warning("Ack failed", extra={"jobs": len(job_ids), "code": rpc_code(exc)})
