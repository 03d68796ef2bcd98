"""Design A coordinator: serves the Workers API and tells workers about cancellations; performs the
coordinator driver (model/coordinator.py: the WorkerRegistry and the cancels kept for heartbeats).

It holds only who is alive; jobs belong to the job service and ready entries to the queue service.
Dispatch is reserve -> lease -> ack:

    queue.Reserve(free_slots, hold)  ->  job.LeaseJobs(worker, ids)  ->  queue.Ack(every reserved id)

If the coordinator dies (or LeaseJobs fails) between Reserve and Ack, the hold runs out and the entries
return to the queue. Ids the job service refused (stale entries) are acknowledged too, so they go away.
A report goes to the job service (CompleteAttempt), which checks the lease, has the result stored in
the result service for the lease holder only, and then completes the attempt, so a job it calls
SUCCEEDED always has its result stored and a refused report stores nothing.

Report-and-fetch: reports a FetchWork carries are checked first, then completed on that fetch's
LeaseJobs (its `completes`, handled before the lease as CompleteAttempts) when its Reserve answers
within COMPLETE_LINGER with entries; otherwise they go on their own at once, so a long-poll never
holds a report back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc

from dtq.v1 import internal_pb2, internal_pb2_grpc, worker_pb2, worker_pb2_grpc
from model.coordinator import Coordinator
from model.errors import DtqError, InvalidArgument
from model.workers import validate_worker_id
from realsys.coalesce import MAX_BATCH_ITEMS, Coalescer, error_of_item, item_error, message_coalescer
from realsys.config import NodeConfig
from realsys.convert import from_duration, outcome_from_pb, outcome_to_pb, running_to_pb, to_duration
from realsys.decoding import add_servicer
from realsys.metrics import NodeMetrics
from realsys.micro.base import (
    Clock,
    Context,
    MicroRole,
    hop_timeout,
    make_stub,
    poll_budget,
    rpc_code,
)
from realsys.status import grpc_errors
from realsys.timer import CoreTimer

RELEASE_ATTEMPTS = 5
# DTQ_BATCHING=on: acknowledgements wait up to this long for the next Reserve to carry them, then go
# as an Ack call of their own (well inside the reservation hold)
ACK_LINGER = 0.05
# report-and-fetch: how long a FetchWork's reports wait for its Reserve to answer, to ride its LeaseJobs
COMPLETE_LINGER = 0.003
ReportRequest = worker_pb2.ReportResultRequest
ReportResponse = worker_pb2.ReportResultResponse


class CoordinatorRole(MicroRole, worker_pb2_grpc.WorkersServicer, internal_pb2_grpc.CoordinatorServicer):
    service_names = ("dtq.v1.Workers", "dtq.v1.Coordinator")
    calls = ("queue", "job")

    def __init__(self, config: NodeConfig, metrics: NodeMetrics, *, clock: Clock = time.time) -> None:
        super().__init__(config, clock)
        self.metrics = metrics
        self.coordinator = Coordinator(config.core)
        self.registry = self.coordinator.registry
        self._timer = CoreTimer(self.coordinator.timer, self._on_timer)
        self._queue: Any = None
        self._job: Any = None
        # DTQ_BATCHING=on: reports go to the job service coalesced, as CompleteAttempts
        self._completes: Coalescer[ReportRequest, ReportResponse] | None = None
        self._acks: list[str] = []  # batching: acknowledgements for the next Reserve to carry
        self._ack_flush: asyncio.TimerHandle | None = None
        if config.batching == "on":
            self._completes = message_coalescer(
                "CompleteAttempts", self._complete_attempts, config.core.max_reply_bytes
            )

    def add_to_server(self, server: grpc.aio.Server) -> None:
        add_servicer(worker_pb2_grpc.add_WorkersServicer_to_server, self, server)
        add_servicer(internal_pb2_grpc.add_CoordinatorServicer_to_server, self, server)

    def on_channels(self, channels: Mapping[str, grpc.aio.Channel]) -> None:
        self._queue = make_stub(internal_pb2_grpc.QueueStub, channels["queue"])
        self._job = make_stub(internal_pb2_grpc.JobStoreStub, channels["job"])

    async def start(self) -> None:
        await super().start()
        self._timer.start()

    async def close(self) -> None:
        self._timer.stop()
        if self._ack_flush is not None:
            self._ack_flush.cancel()
        if self._completes is not None:
            await self._completes.close()
        await super().close()

    # ------------------------------------------------------------------ Workers
    @grpc_errors
    async def WorkerHeartbeat(
        self, request: worker_pb2.HeartbeatRequest, context: Context
    ) -> worker_pb2.HeartbeatResponse:
        assert self._job is not None
        if self.coordinator.heartbeat(
            self.clock(), request.worker_id, request.total_slots, request.free_slots, bool(request.running)
        ):
            self._timer.arm()
        response: worker_pb2.HeartbeatResponse = await self._job.RenewLeases(
            request, timeout=hop_timeout(self.config, context)
        )
        # taken only once the renewal went through, so a failed heartbeat does not lose them
        pushed = self.coordinator.pushed_cancels(
            request.worker_id, ((r.job_id, r.attempt) for r in response.cancel)
        )
        if pushed:
            response.cancel.extend(running_to_pb(pushed))
        response.heartbeat_interval.CopyFrom(to_duration(self.config.core.heartbeat_interval))
        return response

    @grpc_errors
    async def FetchWork(
        self, request: worker_pb2.FetchWorkRequest, context: Context
    ) -> worker_pb2.FetchWorkResponse:
        assert self._queue is not None and self._job is not None
        worker_id = request.worker_id
        wanted = self.coordinator.fetch(self.clock(), worker_id, request.free_slots)
        # report-and-fetch: each carried report is answered as ReportResult would; checked now, and
        # completed on the LeaseJobs of this fetch when its Reserve answers within COMPLETE_LINGER,
        # else on their own at once (a long-poll never holds a report back)
        items: list[worker_pb2.ReportResultItem] = []
        pending: list[tuple[int, ReportRequest]] = []  # checked, not yet sent to the job service
        if request.reports:
            if len(request.reports) > MAX_BATCH_ITEMS:
                raise InvalidArgument(f"FetchWork carries at most {MAX_BATCH_ITEMS} reports")
            items, pending = self._checked_items(request.reports, worker_id)
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
            acks, self._acks = self._acks, []
            reserve = self._queue.Reserve(
                internal_pb2.ReserveRequest(
                    max_items=wanted, hold=hold, wait_timeout=to_duration(left), ack_job_ids=acks
                ),
                timeout=hop_timeout(self.config, context, wait=left),
            )
            if pending:
                reserving = asyncio.ensure_future(reserve)
                try:
                    await asyncio.wait({reserving}, timeout=COMPLETE_LINGER)
                    if not reserving.done() or not reserving.result().entries:  # result(): its error
                        await self._complete_items(items, pending, context)
                        pending = []
                    reserved = await reserving
                finally:
                    reserving.cancel()  # a no-op once it is done
            else:
                reserved = await reserve
            ids = [entry.job_id for entry in reserved.entries]
            if not ids:
                break  # the wait ran out
            # on failure nothing is acknowledged: the reservation runs out and the entries return
            leased = await self._job.LeaseJobs(
                internal_pb2.LeaseJobsRequest(
                    worker_id=worker_id, job_ids=ids, completes=[forward for _, forward in pending]
                ),
                timeout=hop_timeout(self.config, context),
            )
            if pending:
                if len(leased.completed) == len(pending):
                    self._fill_items(items, pending, _completed(leased.completed))
                else:  # a job service that predates `completes` ignored them: send them on their own
                    await self._complete_items(items, pending, context)
                pending = []
            self._acknowledge(ids)
            if leased.assignments:
                self.coordinator.leased(worker_id)  # when lost, its attempts need a release
                return worker_pb2.FetchWorkResponse(assignments=leased.assignments, report_results=items)
            if loop.time() >= give_up:
                break  # only stale entries, and no time left to wait for more
        if pending:  # no fetch to ride (nothing wanted, or draining)
            await self._complete_items(items, pending, context)
        return worker_pb2.FetchWorkResponse(report_results=items)

    @grpc_errors
    async def ReportResult(
        self, request: worker_pb2.ReportResultRequest, context: Context
    ) -> worker_pb2.ReportResultResponse:
        assert self._job is not None
        forward = self._checked_report(request)
        if self._completes is not None:
            return await self._completes.call(forward)
        # the job service checks the lease, has the result stored (the lease holder's only) and then
        # completes the attempt (model/job_service.py: fence, PutResult, complete)
        response: worker_pb2.ReportResultResponse = await self._job.CompleteAttempt(
            forward, timeout=hop_timeout(self.config, context)
        )
        return response

    @grpc_errors
    async def ReportResults(
        self, request: worker_pb2.ReportResultsRequest, context: Context
    ) -> worker_pb2.ReportResultsResponse:
        """ReportResult for each report, answered one by one; forwarded together (coalesced with
        other workers' reports when batching is on, else as one CompleteAttempts call)."""
        if len(request.reports) > MAX_BATCH_ITEMS:
            raise InvalidArgument(f"ReportResults takes at most {MAX_BATCH_ITEMS} reports")
        assert self._job is not None
        return worker_pb2.ReportResultsResponse(results=await self._report_items(request.reports, context))

    async def _report_items(
        self, reports: Sequence[ReportRequest], context: Context
    ) -> list[worker_pb2.ReportResultItem]:
        """Each report's verdict, as ReportResult would answer it; the hop's failure fails the call."""
        items, checked = self._checked_items(reports)
        await self._complete_items(items, checked, context)
        return items

    def _checked_items(
        self, reports: Sequence[ReportRequest], worker_id: str | None = None
    ) -> tuple[list[worker_pb2.ReportResultItem], list[tuple[int, ReportRequest]]]:
        """One verdict per report, those refused already filled in, and the (index, forward) of the
        others. `worker_id`: the caller's (FetchWork), which every report must name."""
        items = [worker_pb2.ReportResultItem() for _ in reports]
        checked: list[tuple[int, ReportRequest]] = []
        for index, report in enumerate(reports):
            try:
                if worker_id is not None and report.worker_id != worker_id:
                    raise InvalidArgument("a carried report must name the fetching worker")
                checked.append((index, self._checked_report(report)))
            except DtqError as exc:
                items[index].code, items[index].message, _ = item_error(exc)
        return items, checked

    async def _complete_items(
        self,
        items: list[worker_pb2.ReportResultItem],
        checked: list[tuple[int, ReportRequest]],
        context: Context,
    ) -> None:
        """Completes the checked reports on their own (coalesced with other workers' reports when
        batching is on, else as one CompleteAttempts call) and fills in their verdicts."""
        if self._completes is not None:
            outcomes = await self._completes.call_many([forward for _, forward in checked])
        else:
            outcomes = list(
                await self._complete_attempts(
                    [forward for _, forward in checked], hop_timeout(self.config, context)
                )
            )
        self._fill_items(items, checked, outcomes)

    @staticmethod
    def _fill_items(
        items: list[worker_pb2.ReportResultItem],
        checked: list[tuple[int, ReportRequest]],
        outcomes: Sequence[ReportResponse | BaseException],
    ) -> None:
        for (index, _), outcome in zip(checked, outcomes, strict=True):
            if isinstance(outcome, DtqError):
                items[index].code, items[index].message, _ = item_error(outcome)
            elif isinstance(outcome, BaseException):
                raise outcome  # the hop failed: the whole call fails with its code (grpc_errors)
            else:
                items[index].state = outcome.state

    def _checked_report(self, request: worker_pb2.ReportResultRequest) -> worker_pb2.ReportResultRequest:
        """The report to forward: INVALID_ARGUMENT without an outcome; a malformed attempt or id is
        refused before anything is stored; the outcome comes back bounded (an output over
        max_result_bytes fails the job)."""
        validate_worker_id(request.worker_id)
        outcome = self.coordinator.report(
            self.clock(), request.worker_id, request.job_id, request.attempt, outcome_from_pb(request)
        )
        forward = worker_pb2.ReportResultRequest()
        forward.CopyFrom(request)
        outcome_to_pb(outcome, forward)  # the bounded outcome
        return forward

    async def _complete_attempts(
        self, reports: list[worker_pb2.ReportResultRequest], timeout: float | None = None
    ) -> list[worker_pb2.ReportResultResponse | DtqError]:
        if not reports:
            return []
        reply = await self._job.CompleteAttempts(
            internal_pb2.CompleteAttemptsRequest(reports=reports), timeout=timeout or self.config.rpc_timeout
        )
        return _completed(reply.results)

    # ------------------------------------------------------------------ Coordinator
    @grpc_errors
    async def NotifyCancel(
        self, request: internal_pb2.NotifyCancelRequest, context: Context
    ) -> internal_pb2.NotifyCancelResponse:
        self.coordinator.notify_cancel(request.job_id, request.attempt, request.worker_id)
        return internal_pb2.NotifyCancelResponse()

    # ------------------------------------------------------------------ background
    def _on_timer(self, now: float) -> None:
        lost, release = self.coordinator.on_timer(now)
        for worker in lost:
            # a stray heartbeat's worker (never held work) is no news: no more than a debug line
            level = logging.WARNING if worker.held_work else logging.DEBUG
            self.log.log(level, "worker lost", extra={"worker_id": worker.worker_id})
        for worker_id in release:
            self.spawn(self._release(worker_id), "release-worker")

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

    def _acknowledge(self, job_ids: list[str]) -> None:
        """Acks the reserved ids: at once, or (batching) with the next Reserve, or on their own
        after ACK_LINGER if no Reserve comes first. Ids lost with a failed call come back when
        their hold runs out; LeaseJobs then refuses them and they are acknowledged again."""
        if self.config.batching != "on":
            self.spawn(self._ack(job_ids), "ack")
            return
        self._acks.extend(job_ids)
        if self._ack_flush is None:
            self._ack_flush = asyncio.get_running_loop().call_later(ACK_LINGER, self._flush_acks)

    def _flush_acks(self) -> None:
        self._ack_flush = None
        if self._acks:
            acks, self._acks = self._acks, []
            self.spawn(self._ack(acks), "ack")

    async def _ack(self, job_ids: list[str]) -> None:
        assert self._queue is not None
        try:
            await self._queue.Ack(internal_pb2.AckRequest(job_ids=job_ids), timeout=self.config.rpc_timeout)
        except grpc.aio.AioRpcError as exc:
            # the holds run out and the entries come back; LeaseJobs then refuses them and they are acked
            self.log.warning("Ack failed", extra={"jobs": len(job_ids), "code": rpc_code(exc)})


def _completed(results: Sequence[internal_pb2.CompleteAttemptResult]) -> list[ReportResponse | DtqError]:
    """CompleteAttempts' (or LeaseJobs') per-report results: a response, or the error it failed with."""
    return [
        error_of_item(r.error.code, r.error.message, r.error.retry_after)
        if r.HasField("error")
        else r.response
        for r in results
    ]
