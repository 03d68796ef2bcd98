"""Design A job service: performs the job-service driver (model/job_service.py) with JobRecords,
gRPC and futures.

The driver owns the JobTable and its decisions (what to save, the Enqueue outbox, the sweep, the
LeaseJobs byte budget, the restore grace, retention deletes); this role performs its steps: save
the records before the RPC answers, delete expired ones, wake WaitJob long-polls, send NotifyCancel
to the coordinator, log lease expiries, carry the table's counts to the metrics. One background task
flushes the outbox to queue.Enqueue in batches, retried with backoff, so a slow or absent queue
service never fails a submit; another runs the sweep. Result bytes are not kept here: the result
service holds them, keyed by (job, attempt), written by this role only (CompleteAttempt), for the
attempt that holds the lease and before the job is recorded as SUCCEEDED.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, cast

import grpc
import numpy as np

from dtq.v1 import client_pb2, internal_pb2, internal_pb2_grpc, job_pb2, worker_pb2
from model.actions import Step, Wake
from model.commands import JobFinished, LeaseExpired, NotifyCancel
from model.errors import DtqError, InvalidArgument
from model.ids import JobIdFactory
from model.job_service import OWNER, JobService
from model.jobs import JobTable
from model.states import JobState
from realsys.coalesce import item_error
from realsys.config import NodeConfig
from realsys.convert import (
    fill_assignment_pb,
    from_duration,
    heartbeat_response,
    job_to_pb,
    outcome_from_pb,
    query_from_pb,
    running_from_pb,
    spec_from_pb,
    status_to_pb,
    submit_response,
    to_timestamp,
)
from realsys.decoding import add_servicer
from realsys.metrics import NodeMetrics
from realsys.micro.base import (
    Clock,
    Context,
    StoredRole,
    hop_timeout,
    make_stub,
    park,
    poll_budget,
    rpc_code,
    settle,
)
from realsys.status import grpc_errors
from realsys.storage import open_job_records
from realsys.timer import CoreTimer

Token = asyncio.Future[bool]

# WatchJobs: the most notices one stream message carries, and the most a subscriber may fall behind
# before its stream is ended (it then asks with WaitJob, as without a subscription).
MAX_NOTICES_PER_MESSAGE = 256
MAX_NOTICES_BEHIND = 16384


class _Watcher:
    """One WatchJobs subscriber: the notices not yet sent, and a flag its stream waits on."""

    __slots__ = ("notices", "overflow", "ready")

    def __init__(self) -> None:
        self.notices: list[internal_pb2.JobNotice] = []
        self.ready = asyncio.Event()
        self.overflow = False

    def push(self, notice: internal_pb2.JobNotice) -> None:
        if len(self.notices) >= MAX_NOTICES_BEHIND:
            self.overflow = True
        else:
            self.notices.append(notice)
        self.ready.set()


class JobRole(StoredRole, internal_pb2_grpc.JobStoreServicer):
    service_names = ("dtq.v1.JobStore",)
    calls = ("queue", "coordinator", "result")

    def __init__(
        self,
        config: NodeConfig,
        metrics: NodeMetrics,
        *,
        sweep_interval: float | None = None,
        clock: Clock = time.time,
    ) -> None:
        super().__init__(config, metrics, clock)
        core = config.core
        self.records = self._store = open_job_records(config)
        rng = np.random.default_rng() if core.backoff_jitter > 0 else None
        table = JobTable(core, JobIdFactory(node=OWNER, incarnation=self.records.next_incarnation()), rng)
        self.jobs: JobService[Token] = JobService(
            table, config.rpc_timeout, sweep_every=sweep_interval or 0.0
        )
        self.table = table
        self.jobs.restore(self.clock(), self.records.load_all())
        self._outbox_ready = asyncio.Event()
        if self.jobs.outbox:
            self._outbox_ready.set()  # restored PENDING jobs are enqueued again
        self._timer = CoreTimer(self.jobs.timer, self._on_timer)
        self._queue: Any = None
        self._coordinator: Any = None
        self._result: Any = None
        self._watchers: list[_Watcher] = []
        self._notice_messages = metrics.recorder("/dtq.v1.JobStore/WatchJobs:message")

    def add_to_server(self, server: grpc.aio.Server) -> None:
        add_servicer(internal_pb2_grpc.add_JobStoreServicer_to_server, self, server)

    def on_channels(self, channels: Mapping[str, grpc.aio.Channel]) -> None:
        self._queue = make_stub(internal_pb2_grpc.QueueStub, channels["queue"])
        self._coordinator = make_stub(internal_pb2_grpc.CoordinatorStub, channels["coordinator"])
        self._result = make_stub(internal_pb2_grpc.ResultStoreStub, channels["result"])

    async def start(self) -> None:
        await super().start()
        self.metrics.set_sources(jobs_by_state=self._jobs_by_state)
        self.spawn(self._flush_outbox(), "enqueue")
        self.spawn(self._sweep(), "sweep")

    async def drain(self) -> None:
        await super().drain()
        self._perform(self.jobs.start_draining())  # WaitJob long-polls answer now
        for watcher in self._watchers:
            watcher.ready.set()  # WatchJobs streams end: their gateways ask with WaitJob
        # give queued Enqueue commands a chance to reach the queue (they are re-derived on restart anyway)
        deadline = time.monotonic() + self.config.rpc_timeout
        while self.jobs.outbox and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    # ------------------------------------------------------------------ client-facing (via the gateway)
    @grpc_errors
    async def CreateJob(
        self, request: client_pb2.SubmitJobRequest, context: Context
    ) -> client_pb2.SubmitJobResponse:
        wait = from_duration(request.wait_timeout, "wait_timeout")  # checked first: a bad wait makes no job
        submitted, step = self.jobs.create(self.clock(), spec_from_pb(request.spec), request.request_id)
        self._perform(step)
        job = submitted.job
        if wait > 0:
            # synchronous invocation, as WaitJob waits; `job` is the table's record, updated in place
            budget = poll_budget(wait, context)
            if not job.done and budget > 0:
                await self._wait_end(job.job_id, budget)
        return submit_response(job, OWNER, submitted.deduplicated)

    @grpc_errors
    async def CreateJobs(
        self, request: internal_pb2.CreateJobsRequest, context: Context
    ) -> internal_pb2.CreateJobsResponse:
        """CreateJob for each request (none may wait), answered one by one; the records of the whole
        batch are saved in one transaction before the reply."""
        response = internal_pb2.CreateJobsResponse()
        steps: list[Step[Token]] = []
        for one in request.requests:
            result = response.results.add()
            try:
                if from_duration(one.wait_timeout, "wait_timeout") > 0:
                    raise InvalidArgument("CreateJobs takes no wait_timeout: send that request as CreateJob")
                submitted, step = self.jobs.create(self.clock(), spec_from_pb(one.spec), one.request_id)
            except DtqError as exc:
                _fill_error(result.error, exc)
                continue
            steps.append(step)
            result.response.CopyFrom(submit_response(submitted.job, OWNER, submitted.deduplicated))
        self._perform_all(steps)
        return response

    @grpc_errors
    async def GetJob(self, request: client_pb2.GetJobStatusRequest, context: Context) -> job_pb2.Job:
        job = self.table.get(request.job_id)
        return status_to_pb(job, OWNER, self.jobs.estimate(self.clock(), job))

    @grpc_errors
    async def WaitJob(self, request: client_pb2.WaitJobRequest, context: Context) -> job_pb2.Job:
        job = self.table.get(request.job_id)
        wait = poll_budget(from_duration(request.timeout, "timeout"), context)
        if not job.done and wait > 0:
            await self._wait_end(job.job_id, wait)
            job = self.table.get(request.job_id)
            # ended early because the service drains: UNAVAILABLE with a retry-after (the driver's)
            self.jobs.wait_ended(job, wait)
        return job_to_pb(job, OWNER)

    async def WatchJobs(
        self, request: internal_pb2.WatchJobsRequest, context: Context
    ) -> AsyncIterator[internal_pb2.JobNotices]:
        """Streams job ends to a gateway: first an empty message (subscribed), then batches of
        notices, until the service drains or the subscriber falls MAX_NOTICES_BEHIND behind."""
        if self.draining:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the job service is draining")
        watcher = _Watcher()
        self._watchers.append(watcher)
        try:
            yield internal_pb2.JobNotices()
            while not self.draining and not watcher.overflow:
                await watcher.ready.wait()
                watcher.ready.clear()
                while watcher.notices and not watcher.overflow:
                    batch = watcher.notices[:MAX_NOTICES_PER_MESSAGE]
                    del watcher.notices[:MAX_NOTICES_PER_MESSAGE]
                    self._notice_messages.count(grpc.StatusCode.OK)
                    yield internal_pb2.JobNotices(notices=batch)
        finally:
            self._watchers.remove(watcher)

    def _notify_watchers(self, job_id: str) -> None:
        job = self.table.find(job_id)
        notice = internal_pb2.JobNotice(job_id=job_id)
        if job is not None:
            notice.job.CopyFrom(job_to_pb(job, OWNER))
        for watcher in self._watchers:
            watcher.push(notice)

    async def _wait_end(self, job_id: str, timeout: float) -> None:
        future: Token = asyncio.get_running_loop().create_future()
        if not self.jobs.add_waiter(future, job_id):
            return  # the service drains: no waiting
        try:
            await park(future, timeout)
        finally:
            self.jobs.waiter_gone(future, job_id)

    @grpc_errors
    async def CancelJob(self, request: client_pb2.CancelJobRequest, context: Context) -> job_pb2.Job:
        job, step = self.jobs.cancel(self.clock(), request.job_id)
        self._perform(step)
        return job_to_pb(job, OWNER)

    @grpc_errors
    async def ListJobs(
        self, request: client_pb2.ListJobsRequest, context: Context
    ) -> client_pb2.ListJobsResponse:
        page = self.table.list_page(query_from_pb(request.filter), request.page_size, request.page_token)
        return client_pb2.ListJobsResponse(
            jobs=[job_to_pb(job, OWNER) for job in page.items], next_page_token=page.next_page_token
        )

    # ------------------------------------------------------------------ coordinator-facing
    @grpc_errors
    async def LeaseJobs(
        self, request: internal_pb2.LeaseJobsRequest, context: Context
    ) -> internal_pb2.LeaseJobsResponse:
        response = internal_pb2.LeaseJobsResponse()
        if request.completes:  # reports first, as CompleteAttempts (the coordinator's report-and-fetch)
            response.completed.extend((await self._complete_all(request.completes, context)).results)
        leased, step = self.jobs.lease(self.clock(), request.worker_id, request.job_ids)
        self._perform(step)
        for assignment in leased:
            fill_assignment_pb(response.assignments.add(), assignment, OWNER)
        return response

    @grpc_errors
    async def RenewLeases(
        self, request: worker_pb2.HeartbeatRequest, context: Context
    ) -> worker_pb2.HeartbeatResponse:
        running = running_from_pb(list(request.running))
        renewal, step = self.jobs.renew(self.clock(), request.worker_id, running, request.total_slots)
        self._perform(step)
        core = self.config.core
        return heartbeat_response(
            renewal.cancel, renewal.abandon, core.heartbeat_interval, core.lease_duration
        )

    @grpc_errors
    async def CompleteAttempt(
        self, request: worker_pb2.ReportResultRequest, context: Context
    ) -> worker_pb2.ReportResultResponse:
        outcome = outcome_from_pb(request)
        # the lease fence first: a report that does not hold the lease is ABORTED before anything is
        # stored; the result service is written only here, for the lease holder, before the transition
        put = self.jobs.fence(request.job_id, request.attempt, request.worker_id, outcome)
        if put is not None:
            assert self._result is not None
            stored = internal_pb2.PutResultRequest(job_id=put.job_id, attempt=put.attempt)
            stored.response.output = put.output
            await self._result.PutResult(stored, timeout=hop_timeout(self.config, context))
        job, step = self.jobs.complete(
            self.clock(), request.job_id, request.attempt, request.worker_id, outcome
        )
        self._perform(step)
        return worker_pb2.ReportResultResponse(state=_state_pb(job.state))

    @grpc_errors
    async def CompleteAttempts(
        self, request: internal_pb2.CompleteAttemptsRequest, context: Context
    ) -> internal_pb2.CompleteAttemptsResponse:
        """CompleteAttempt for each report, answered one by one: every report is fenced first, the
        lease holders' results go to the result service in one PutResults call, and then each
        attempt whose result was stored (or needed none) completes; one transaction saves them all."""
        return await self._complete_all(request.reports, context)

    async def _complete_all(
        self, reports: Sequence[worker_pb2.ReportResultRequest], context: Context
    ) -> internal_pb2.CompleteAttemptsResponse:
        assert self._result is not None
        response = internal_pb2.CompleteAttemptsResponse()
        results = [response.results.add() for _ in reports]
        outcomes: list[Any] = []
        puts: list[tuple[int, internal_pb2.PutResultRequest]] = []
        for index, report in enumerate(reports):
            try:
                outcome = outcome_from_pb(report)
                put = self.jobs.fence(report.job_id, report.attempt, report.worker_id, outcome)
            except DtqError as exc:
                _fill_error(results[index].error, exc)
                outcomes.append(None)
                continue
            outcomes.append(outcome)
            if put is not None:
                stored = internal_pb2.PutResultRequest(job_id=put.job_id, attempt=put.attempt)
                stored.response.output = put.output
                puts.append((index, stored))
        if puts:
            # a failed call fails every report of the batch (the workers report again)
            reply = await self._result.PutResults(
                internal_pb2.PutResultsRequest(results=[stored for _, stored in puts]),
                timeout=hop_timeout(self.config, context),
            )
            for (index, _), error in zip(puts, reply.errors, strict=True):
                if error.code:
                    results[index].error.CopyFrom(error)
                    outcomes[index] = None
        steps: list[Step[Token]] = []
        now = self.clock()
        for index, (report, outcome) in enumerate(zip(reports, outcomes, strict=True)):
            if outcome is None:
                continue
            try:
                job, step = self.jobs.complete(now, report.job_id, report.attempt, report.worker_id, outcome)
            except DtqError as exc:
                _fill_error(results[index].error, exc)
                continue
            steps.append(step)
            results[index].response.state = _state_pb(job.state)
        self._perform_all(steps)
        return response

    @grpc_errors
    async def ReleaseWorker(
        self, request: internal_pb2.ReleaseWorkerRequest, context: Context
    ) -> internal_pb2.ReleaseWorkerResponse:
        requeued, step = self.jobs.release_worker(self.clock(), request.worker_id)
        self._perform(step)
        return internal_pb2.ReleaseWorkerResponse(requeued=requeued)

    # ------------------------------------------------------------------ performing a step
    def _on_timer(self, now: float) -> None:
        self._perform(self.jobs.on_timer(now))

    def _perform(self, step: Step[Token], saved: bool = False) -> None:
        """Durable before the RPC answers: a caller that saw OK never loses this change. `saved`:
        the step's records are already saved (_perform_all)."""
        if step.save and not saved:
            self.records.save_many(step.save)
        if step.delete:
            self.records.delete(step.delete)
        for effect in step.effects:
            if isinstance(effect, Wake):
                for future in effect.tokens:
                    settle(future, effect.value)
            elif isinstance(effect, NotifyCancel):
                if self._coordinator is not None:
                    self.spawn(self._notify_cancel(effect), "notify-cancel")
            elif isinstance(effect, LeaseExpired):
                self.log.info(
                    "lease expired",
                    extra={
                        "job_id": effect.job_id,
                        "attempt": effect.attempt,
                        "worker_id": effect.worker_id,
                        "reason": effect.reason,
                        "requeued": effect.requeued,
                    },
                )
            elif isinstance(effect, JobFinished) and self._watchers:
                # its waiters were in a Wake before it; subscribed gateways hear of it here
                self._notify_watchers(effect.job_id)
        if step.flush:
            self._outbox_ready.set()
        if step.rearm:
            self._timer.arm()
        if step.expiries:
            self.metrics.lease_expiries.inc(step.expiries)
        if step.requeues:
            self.metrics.requeues.inc(step.requeues)

    def _perform_all(self, steps: list[Step[Token]]) -> None:
        """Several steps, their saves in one transaction (durable before any of them answers), then
        each step's own deletes, effects and signals in order."""
        saves = [job for step in steps for job in step.save]
        if saves:
            self.records.save_many(saves)
        for step in steps:
            self._perform(step, saved=True)

    def _jobs_by_state(self) -> dict[str, int]:
        return {state.name: n for state, n in self.table.count_by_state.items()}

    # ------------------------------------------------------------------ background work
    async def _flush_outbox(self) -> None:
        """Sends Enqueue commands to the queue service, one batch at a time, until it takes them."""
        assert self._queue is not None
        delay = 0.05
        while True:
            await self._outbox_ready.wait()
            self._outbox_ready.clear()
            while self.jobs.outbox:
                batch, commands = self.jobs.take_batch()
                if not commands:
                    continue
                entries = [
                    internal_pb2.QueueEntry(
                        job_id=c.job_id, priority=c.priority, not_before=to_timestamp(c.not_before), key=c.key
                    )
                    for c in commands
                ]
                try:
                    await self._queue.Enqueue(
                        internal_pb2.EnqueueRequest(entries=entries), timeout=self.config.rpc_timeout
                    )
                    delay = 0.05
                except grpc.aio.AioRpcError as exc:
                    self.jobs.put_back(batch)
                    self.log.warning(
                        "enqueue failed; retrying",
                        extra={"jobs": len(entries), "code": rpc_code(exc), "retry_in": delay},
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)

    async def _sweep(self) -> None:
        """Re-enqueues jobs PENDING for longer than a dispatch can take; the queue dedups by id."""
        while True:
            await asyncio.sleep(self.jobs.sweep_interval)
            if self.jobs.sweep(self.clock()):
                self._outbox_ready.set()

    async def _notify_cancel(self, command: NotifyCancel) -> None:
        assert self._coordinator is not None
        request = internal_pb2.NotifyCancelRequest(
            job_id=command.job_id, attempt=command.attempt, worker_id=command.worker_id
        )
        try:
            await self._coordinator.NotifyCancel(request, timeout=self.config.rpc_timeout)
        except grpc.aio.AioRpcError as exc:
            # the worker still learns of the cancel from RenewLeases on its next heartbeat
            self.log.info("NotifyCancel failed", extra={"job_id": command.job_id, "code": rpc_code(exc)})


def _fill_error(target: internal_pb2.ItemError, error: DtqError) -> None:
    target.code, target.message, target.retry_after = item_error(error)


def _state_pb(state: JobState) -> job_pb2.JobState:
    return cast(job_pb2.JobState, int(state))
