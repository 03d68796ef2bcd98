"""Design A job service: the authority on job records, their states and leases.

A model.JobTable persisted through JobRecords: every job a call changes is saved before the call
returns. The table's commands are carried out here:
- Enqueue -> queue.Enqueue, from an outbox flushed by one background task in batches and retried with
  backoff, so a slow or absent queue service never fails a submit. The outbox lives in memory: after a
  restart every PENDING job is enqueued again (the queue dedups by id; JobTable.lease is the fence).
  A periodic sweep re-enqueues jobs that stayed PENDING suspiciously long, which repairs a queue that
  lost entries (memory store restarted, or an Ack that raced a re-enqueue).
- NotifyCancel -> coordinator.NotifyCancel, best effort (the next heartbeat carries the cancel anyway).
- JobFinished -> wakes WaitJob long-polls.  LeaseExpired -> a log line (the expiry and requeue
  counters come from the table's own counts).  Unqueue -> nothing: the Queue API has no removal, and
  a cancelled job's stale entry is dropped when LeaseJobs refuses it.
Result bytes are not kept here: the result service holds them, keyed by (job, attempt).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import grpc
import numpy as np

from dtq.v1 import client_pb2, internal_pb2, internal_pb2_grpc, job_pb2, worker_pb2
from model.commands import Command, Enqueue, JobFinished, JobsExpired, LeaseExpired, NotifyCancel
from model.errors import DtqError
from model.ids import JobIdFactory
from model.job import Job
from model.jobs import JobTable
from model.states import ACTIVE, JobState
from model.workers import validate_worker_id
from realsys.config import NodeConfig
from realsys.convert import (
    fill_assignment_pb,
    from_duration,
    job_to_pb,
    outcome_from_pb,
    query_from_pb,
    running_from_pb,
    running_to_pb,
    spec_from_pb,
    submit_response,
    to_duration,
    to_timestamp,
)
from realsys.decoding import add_servicer
from realsys.metrics import NodeMetrics
from realsys.micro.base import (
    Context,
    KeyedWaiters,
    MicroRole,
    make_stub,
    poll_budget,
    rpc_code,
)
from realsys.status import grpc_errors
from realsys.storage import open_job_records
from realsys.timer import CoreTimer

OWNER = "job"  # Job.owner_node in Design A: the service that owns the record
ENQUEUE_BATCH = 1000


class JobRole(MicroRole, internal_pb2_grpc.JobStoreServicer):
    service_names = ("dtq.v1.JobStore",)
    calls = ("queue", "coordinator")

    def __init__(
        self,
        config: NodeConfig,
        metrics: NodeMetrics,
        *,
        sweep_interval: float | None = None,
    ) -> None:
        super().__init__(config)
        self.metrics = metrics
        core = config.core
        self.records = open_job_records(config)
        rng = np.random.default_rng() if core.backoff_jitter > 0 else None
        self.table = JobTable(
            core, JobIdFactory(node=OWNER, incarnation=self.records.next_incarnation()), rng
        )
        # PENDING jobs, for the sweep: job id -> None, in no particular order
        self._pending: dict[str, None] = {}
        # Enqueue commands not yet accepted by the queue service; a newer command replaces an older one
        self._outbox: dict[str, Enqueue] = {}
        self._outbox_ready = asyncio.Event()
        self._waiters = KeyedWaiters()
        self._counted = (0, 0)  # (lease expiries, requeues) already added to the metrics
        # how often, and after how long PENDING, a job is enqueued again (see the module docstring)
        self.sweep_interval = sweep_interval or min(60.0, max(5.0, 3 * core.lease_duration))
        self.stale_after = core.reservation_hold + core.lease_duration + config.rpc_timeout
        self._restore()
        self._timer = CoreTimer(self.table.next_deadline, self._on_timer)
        self._queue: Any = None
        self._coordinator: Any = None

    def _restore(self) -> None:
        now = time.time()
        grace = now + self.config.core.lease_duration
        for job in self.records.load_all():
            if job.state in ACTIVE:
                # a worker that outlived our restart gets a full lease to reach us with a heartbeat
                job.lease_deadline = max(job.lease_deadline, grace)
            self._perform(self.table.restore(job))
            self._track(job)
        self._counted = (self.table.lease_expiries, self.table.requeues)  # not new since this start

    def add_to_server(self, server: grpc.aio.Server) -> None:
        add_servicer(internal_pb2_grpc.add_JobStoreServicer_to_server, self, server)

    def on_channels(self, channels: Mapping[str, grpc.aio.Channel]) -> None:
        self._queue = make_stub(internal_pb2_grpc.QueueStub, channels["queue"])
        self._coordinator = make_stub(internal_pb2_grpc.CoordinatorStub, channels["coordinator"])

    async def start(self) -> None:
        await super().start()
        self._timer.start()
        self.metrics.set_sources(jobs_by_state=self._jobs_by_state)
        self.spawn(self._flush_outbox(), "enqueue")
        self.spawn(self._sweep(), "sweep")

    async def drain(self) -> None:
        await super().drain()
        self._waiters.fire_all()  # WaitJob long-polls answer now
        # give queued Enqueue commands a chance to reach the queue (they are re-derived on restart anyway)
        deadline = time.monotonic() + self.config.rpc_timeout
        while self._outbox and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def close(self) -> None:
        self._timer.stop()
        await super().close()
        self.records.close()

    # ------------------------------------------------------------------ client-facing (via the gateway)
    @grpc_errors
    async def CreateJob(
        self, request: client_pb2.SubmitJobRequest, context: Context
    ) -> client_pb2.SubmitJobResponse:
        wait = from_duration(request.wait_timeout, "wait_timeout")  # checked first: a bad wait makes no job
        submitted = self.table.submit(time.time(), spec_from_pb(request.spec), request.request_id)
        if not submitted.deduplicated:
            self._save([submitted.job])
        self._perform(submitted.commands)
        job = submitted.job
        if wait > 0:
            # synchronous invocation, as WaitJob waits; `job` is the table's record, updated in place
            budget = poll_budget(wait, context)
            if not job.done and budget > 0 and not self.draining:
                await self._waiters.wait(job.job_id, budget)
        return submit_response(job, OWNER, submitted.deduplicated)

    @grpc_errors
    async def GetJob(self, request: client_pb2.GetJobStatusRequest, context: Context) -> job_pb2.Job:
        return job_to_pb(self.table.get(request.job_id), OWNER)

    @grpc_errors
    async def WaitJob(self, request: client_pb2.WaitJobRequest, context: Context) -> job_pb2.Job:
        job = self.table.get(request.job_id)
        wait = poll_budget(from_duration(request.timeout, "timeout"), context)
        if not job.done and wait > 0 and not self.draining:
            await self._waiters.wait(job.job_id, wait)
        return job_to_pb(self.table.get(request.job_id), OWNER)

    @grpc_errors
    async def CancelJob(self, request: client_pb2.CancelJobRequest, context: Context) -> job_pb2.Job:
        transition = self.table.cancel(time.time(), request.job_id)
        self._save([transition.job])
        self._perform(transition.commands)
        self._timer.poke()  # a finished job's retention deadline
        return job_to_pb(transition.job, OWNER)

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
        worker_id = validate_worker_id(request.worker_id)
        # the core leases what fits config.max_reply_bytes; the pending rest get a fresh queue entry
        # (the coordinator acks every id it reserved); stale entries are skipped (the lease is the fence)
        leased, requeue = self.table.lease_batch(time.time(), list(dict.fromkeys(request.job_ids)), worker_id)
        response = internal_pb2.LeaseJobsResponse()
        for assignment in leased:
            fill_assignment_pb(response.assignments.add(), assignment, OWNER)
        self._save(self.table.get(a.job_id) for a in leased)
        self._perform(requeue)
        if leased:
            self._timer.poke()
        return response

    @grpc_errors
    async def RenewLeases(
        self, request: worker_pb2.HeartbeatRequest, context: Context
    ) -> worker_pb2.HeartbeatResponse:
        running = running_from_pb(list(request.running))
        renewal = self.table.renew(time.time(), request.worker_id, running)
        # persist the new deadlines, so a restart does not expire leases that heartbeats kept alive
        abandoned = set(renewal.abandon)
        self._save(
            self.table.get(job_id) for job_id, attempt in running if (job_id, attempt) not in abandoned
        )
        return worker_pb2.HeartbeatResponse(
            cancel=running_to_pb(renewal.cancel),
            abandon=running_to_pb(renewal.abandon),
            heartbeat_interval=to_duration(self.config.core.heartbeat_interval),
            lease_duration=to_duration(self.config.core.lease_duration),
        )

    @grpc_errors
    async def CompleteAttempt(
        self, request: worker_pb2.ReportResultRequest, context: Context
    ) -> worker_pb2.ReportResultResponse:
        # the output lives in the result service, keyed by (job, attempt): the table keeps only its
        # size, so retention drops jobs by result bytes as the result service drops the results
        transition = self.table.complete(
            time.time(),
            request.job_id,
            request.attempt,
            request.worker_id,
            outcome_from_pb(request),
            output_elsewhere=True,
        )
        self._save([transition.job])
        self._perform(transition.commands)
        self._timer.poke()  # a finished job's retention deadline
        return worker_pb2.ReportResultResponse(state=_state_pb(transition.job.state))

    @grpc_errors
    async def ReleaseWorker(
        self, request: internal_pb2.ReleaseWorkerRequest, context: Context
    ) -> internal_pb2.ReleaseWorkerResponse:
        validate_worker_id(request.worker_id)
        commands = self.table.release_worker(time.time(), request.worker_id)
        self._save(self._jobs_in(commands))
        self._perform(commands)
        self._timer.poke()
        requeued = sum(1 for c in commands if isinstance(c, LeaseExpired) and c.requeued)
        return internal_pb2.ReleaseWorkerResponse(requeued=requeued)

    # ------------------------------------------------------------------ timer and commands
    def _on_timer(self, now: float) -> None:
        commands = self.table.handle_timer(now)
        if commands:
            self._save(self._jobs_in(commands))
            expired = [job_id for c in commands if isinstance(c, JobsExpired) for job_id in c.job_ids]
            if expired:
                # retention (result_ttl / max_retained_jobs): the table dropped them; the result
                # service applies the same policy to the outcomes it holds
                self.records.delete(expired)
                for job_id in expired:
                    self._pending.pop(job_id, None)
                    self._outbox.pop(job_id, None)
            self._perform(commands)

    def _jobs_in(self, commands: Sequence[Command]) -> list[Job]:
        ids = dict.fromkeys(getattr(c, "job_id", "") for c in commands)
        ids.pop("", None)
        # a job retention dropped in the same call has no record left to save
        return [job for job_id in ids if (job := self.table.find(job_id)) is not None]

    def _save(self, jobs: Iterable[Job]) -> None:
        """Durable before the RPC answers: a caller that saw OK never loses this change."""
        batch = list(jobs)
        if not batch:
            return
        self.records.save_many(batch)
        for job in batch:
            self._track(job)
        self._observe()

    def _track(self, job: Job) -> None:
        if job.state is JobState.PENDING:
            self._pending[job.job_id] = None
        else:
            self._pending.pop(job.job_id, None)

    def _perform(self, commands: Iterable[Command]) -> None:
        for command in commands:
            if isinstance(command, Enqueue):
                self._outbox[command.job_id] = command
                self._outbox_ready.set()
            elif isinstance(command, JobFinished):
                self._waiters.fire(command.job_id)
            elif isinstance(command, NotifyCancel):
                if command.worker_id and self._coordinator is not None:
                    self.spawn(self._notify_cancel(command), "notify-cancel")
            elif isinstance(command, LeaseExpired):
                self.log.info(
                    "lease expired",
                    extra={
                        "job_id": command.job_id,
                        "attempt": command.attempt,
                        "worker_id": command.worker_id,
                        "reason": command.reason,
                        "requeued": command.requeued,
                    },
                )
            # Unqueue: nothing to do (see the module docstring)

    def _observe(self) -> None:
        """Carries the table's expiry and requeue counts over to the Prometheus counters."""
        expiries, requeues = self.table.lease_expiries, self.table.requeues
        self.metrics.lease_expiries.inc(expiries - self._counted[0])
        self.metrics.requeues.inc(requeues - self._counted[1])
        self._counted = (expiries, requeues)

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
            while self._outbox:
                batch = dict(list(self._outbox.items())[:ENQUEUE_BATCH])
                for job_id in batch:
                    del self._outbox[job_id]
                entries = [
                    internal_pb2.QueueEntry(
                        job_id=c.job_id, priority=c.priority, not_before=to_timestamp(c.not_before)
                    )
                    for c in batch.values()
                    if self._is_pending(c.job_id)  # cancelled meanwhile: no entry needed
                ]
                if not entries:
                    continue
                try:
                    await self._queue.Enqueue(
                        internal_pb2.EnqueueRequest(entries=entries), timeout=self.config.rpc_timeout
                    )
                    delay = 0.05
                except grpc.aio.AioRpcError as exc:
                    for job_id, command in batch.items():
                        self._outbox.setdefault(job_id, command)  # a newer command wins
                    self.log.warning(
                        "enqueue failed; retrying",
                        extra={"jobs": len(entries), "code": rpc_code(exc), "retry_in": delay},
                    )
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)

    def _is_pending(self, job_id: str) -> bool:
        with contextlib.suppress(DtqError):
            return self.table.get(job_id).state is JobState.PENDING
        return False

    async def _sweep(self) -> None:
        """Re-enqueues jobs PENDING for longer than a dispatch can take; the queue dedups by id."""
        while True:
            await asyncio.sleep(self.sweep_interval)
            for command in self.table.stale_pending(time.time(), list(self._pending), self.stale_after):
                self._outbox.setdefault(command.job_id, command)
            if self._outbox:
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


def _state_pb(state: JobState) -> job_pb2.JobState:
    return cast(job_pb2.JobState, int(state))
