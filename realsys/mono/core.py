"""LocalCore: one node's Scheduler with its persistence, timer and long-poll wake-ups.

Every servicer and the in-process worker backend go through this object; it is the only place that
calls the Scheduler. Each mutating call saves the jobs it touched before returning (so before the RPC
answers), then performs the commands the core handed back: wake fetchers, wake waiters, push cancels.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from model.commands import (
    Command,
    JobFinished,
    JobsExpired,
    LeaseExpired,
    NotifyCancel,
    StoreOutput,
    WorkAvailable,
    WorkerLost,
)
from model.config import CoreConfig
from model.errors import InvalidArgument
from model.ids import JobIdFactory
from model.job import Assignment, Job, JobSpec, Outcome
from model.jobs import Renewal, Submitted
from model.listing import ListQuery, Page
from model.scheduler import Scheduler
from model.workers import pick_waiter
from realsys.logs import get_logger
from realsys.metrics import NodeMetrics
from realsys.storage import JobRecords

log = get_logger(__name__)

Clock = Callable[[], float]


def wire_time() -> float:
    """time.time(), rounded to a value that survives a trip through a protobuf Timestamp unchanged.

    ListJobs merges pages whose jobs came over the wire and hands out a cursor built from the last
    one; the owner compares that cursor with its own create times. A raw float can come back from a
    Timestamp one ulp off, which would repeat or skip a job at a page boundary.
    """
    t = time.time()
    for _ in range(4):
        # to_timestamp's and from_timestamp's arithmetic, without building the message
        nanos_total = round(t * 1e9)
        back = nanos_total // 10**9 + (nanos_total % 10**9) / 1e9
        if back == t:
            break
        t = back
    return t


# Long-poll waits below use one future per waiter plus a timer, not asyncio.wait_for(event.wait()):
# in Python 3.11 wait_for wraps the coroutine in a Task, which costs more than the rest of a WaitJob.
@dataclass(eq=False, slots=True)
class _FetchWaiter:
    worker_id: str
    free_slots: int
    woken: asyncio.Future[bool]  # True: work may be there; False: timed out


@dataclass(eq=False, slots=True)
class _DoneWaiters:
    futures: list[asyncio.Future[bool]] = field(default_factory=list)


def _settle(future: asyncio.Future[bool], value: bool = True) -> None:
    if not future.done():
        future.set_result(value)


class LocalCore:
    def __init__(
        self,
        node: str,
        config: CoreConfig,
        records: JobRecords,
        metrics: NodeMetrics | None = None,
        clock: Clock = wire_time,
    ) -> None:
        self.records = records
        self.metrics = metrics
        self.clock = clock
        ids = JobIdFactory(node=node, incarnation=records.next_incarnation())
        # randomness only feeds retry-backoff jitter (when configured); the core never seeds it
        self.scheduler = Scheduler(config, ids, rng=np.random.default_rng())
        self.workers_lost = 0
        # the JobTable counts lease expiries and requeues itself; metrics get the increments
        self._seen_expiries = 0
        self._seen_requeues = 0
        self.draining = False
        # push path for NotifyCancel; the node sets it to its WorkerRuntime.cancel
        self.local_worker_id = ""
        self.cancel_local: Callable[[str, int], None] | None = None
        self._fetch_waiters: dict[int, _FetchWaiter] = {}  # insertion order = arrival order
        self._next_waiter = 0
        self._done_waiters: dict[str, _DoneWaiters] = {}
        # set by the node once a CoreTimer exists: called after any call that may move the deadline
        self.poke: Callable[[], None] = lambda: None

    @property
    def node(self) -> str:
        return self.scheduler.node

    @property
    def config(self) -> CoreConfig:
        return self.scheduler.config

    # ---------------------------------------------------------------- start-up
    def restore(self) -> int:
        """Loads every saved job; pending ones go back on the ready queue. Returns how many."""
        now = self.clock()
        jobs = self.records.load_all()
        for job in jobs:
            self.scheduler.restore(now, job)
        return len(jobs)

    # ---------------------------------------------------------------- client side
    def submit(self, spec: JobSpec, request_id: str = "") -> Submitted:
        result = self.scheduler.submit(self.clock(), spec, request_id)
        if not result.deduplicated:
            self._commit([result.job], result.commands)
        return result

    def get(self, job_id: str) -> Job:
        return self.scheduler.jobs.get(job_id)

    def cancel(self, job_id: str) -> Job:
        result = self.scheduler.cancel(self.clock(), job_id)
        self._commit([result.job], result.commands)
        return result.job

    def output_of(self, job: Job) -> bytes:
        """A finished job's result: in the record, or in the store when the core keeps only its size."""
        if job.output is not None:
            return job.output
        return (self.records.load_output(job.job_id) or b"") if job.output_size else b""

    def list_page(self, query: ListQuery, page_size: int, page_token: str) -> Page[Job]:
        return self.scheduler.jobs.list_page(query, page_size, page_token)

    async def wait_done(self, job_id: str, timeout: float) -> Job:
        """The job once it is done, or as it is after `timeout` seconds (at once while draining)."""
        job = self.get(job_id)
        if job.done or timeout <= 0 or self.draining:
            return job
        await self.wait_end(job, timeout)
        return self.get(job_id)

    async def wait_end(self, job: Job, timeout: float) -> None:
        """Waits until `job` (a record of this table, updated in place) is done, `timeout` seconds
        pass, or the node drains. Unlike wait_done it never raises: the record outlives retention."""
        if job.done or timeout <= 0 or self.draining:
            return
        job_id = job.job_id
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        waiters = self._done_waiters.setdefault(job_id, _DoneWaiters())
        waiters.futures.append(future)
        timer = loop.call_later(timeout, _settle, future, False)
        try:
            await future
        finally:
            timer.cancel()
            # drop the entry when the last waiter leaves without the job finishing (no leak)
            if self._done_waiters.get(job_id) is waiters:
                waiters.futures.remove(future)
                if not waiters.futures:
                    del self._done_waiters[job_id]

    # ---------------------------------------------------------------- worker side
    def heartbeat(
        self, worker_id: str, total_slots: int, free_slots: int, running: Sequence[tuple[str, int]]
    ) -> Renewal:
        renewal = self.scheduler.heartbeat(self.clock(), worker_id, total_slots, free_slots, running)
        # renewed lease deadlines are persisted, so a restart does not expire leases that are alive
        abandoned = set(renewal.abandon)
        renewed = [self.get(job_id) for job_id, attempt in running if (job_id, attempt) not in abandoned]
        self._commit(renewed, [])
        return renewal

    def fetch_now(self, worker_id: str, free_slots: int) -> list[Assignment]:
        """Leases what is ready right now, without waiting."""
        if free_slots < 0:
            raise InvalidArgument("free_slots must not be negative")
        if free_slots == 0 or self.draining:
            return []
        now = self.clock()
        assignments = self.scheduler.fetch(now, worker_id, free_slots)
        self._note_free_slots(now, worker_id, free_slots - len(assignments))
        self._commit([self.get(a.job_id) for a in assignments], [])
        return assignments

    async def fetch(self, worker_id: str, free_slots: int, wait: float) -> list[Assignment]:
        """Long-poll: leases up to free_slots jobs, waiting up to `wait` seconds for some to be ready."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            assignments = self.fetch_now(worker_id, free_slots)
            remaining = deadline - loop.time()
            if assignments or free_slots == 0 or self.draining or remaining <= 0:
                return assignments
            await self.wait_for_work(worker_id, free_slots, remaining)

    async def wait_for_work(self, worker_id: str, free_slots: int, timeout: float) -> bool:
        """Waits until ready work may be there for this fetcher (True) or the timeout passes (False)."""
        if self.draining or timeout <= 0:
            return False
        # an idle fetcher's free slots are what the victim side of stealing keeps for itself
        self._note_free_slots(self.clock(), worker_id, free_slots)
        token = self._next_waiter
        self._next_waiter += 1
        loop = asyncio.get_running_loop()
        waiter = _FetchWaiter(worker_id, free_slots, loop.create_future())
        self._fetch_waiters[token] = waiter
        timer = loop.call_later(timeout, _settle, waiter.woken, False)
        try:
            return await waiter.woken
        finally:
            timer.cancel()
            self._fetch_waiters.pop(token, None)

    def steal(self, thief_worker_id: str, max_jobs: int) -> list[Assignment]:
        if max_jobs < 0:
            raise InvalidArgument("max_jobs must not be negative")
        now = self.clock()
        assignments = self.scheduler.steal(now, thief_worker_id, max_jobs)
        # the thief's worker heartbeats here only after it has the jobs; count this call as a sign of
        # life so the registry does not declare it lost in between
        self.scheduler.workers.touch(now, thief_worker_id)
        self._commit([self.get(a.job_id) for a in assignments], [])
        return assignments

    def report(self, worker_id: str, job_id: str, attempt: int, outcome: Outcome) -> Job:
        result = self.scheduler.report(self.clock(), worker_id, job_id, attempt, outcome)
        self._commit([result.job], result.commands)
        return result.job

    def release_worker(self, worker_id: str) -> None:
        """The worker is gone for sure (this node's own worker after a drain or restart): requeue now."""
        self._commit([], self.scheduler.release_worker(self.clock(), worker_id))

    def on_timer(self, now: float) -> None:
        self._commit([], self.scheduler.handle_timer(now))

    def start_draining(self) -> None:
        self.draining = True
        for waiter in self._fetch_waiters.values():
            _settle(waiter.woken)
        # WaitJob long-polls answer now, as the micro job role does: the server's grace period then
        # waits only for short calls, not for every client's long-poll to time out
        for waiters in self._done_waiters.values():
            for future in waiters.futures:
                _settle(future, False)

    # ---------------------------------------------------------------- gauges
    @property
    def ready_count(self) -> int:
        return self.scheduler.queue.ready_count

    def oldest_ready_age(self) -> float:
        oldest = self.scheduler.queue.oldest_ready_enqueue_time()
        return 0.0 if oldest is None else max(0.0, self.clock() - oldest)

    # ---------------------------------------------------------------- internals
    def _note_free_slots(self, now: float, worker_id: str, free_slots: int) -> None:
        """Keeps a registered worker's free slots current between heartbeats (steal grants use them)."""
        info = self.scheduler.workers.workers.get(worker_id)
        if info is not None and info.total_slots:
            free = max(0, min(free_slots, info.total_slots))
            self.scheduler.workers.heartbeat(now, worker_id, info.total_slots, free)

    def _commit(self, touched: Iterable[Job], commands: list[Command]) -> None:
        """Saves every job the call changed, then performs the commands (durable before visible)."""
        jobs = {job.job_id: job for job in touched}
        expired: list[str] = []
        for command in commands:
            if isinstance(command, JobsExpired):
                expired.extend(command.job_ids)
            elif isinstance(command, StoreOutput):  # durable before the record that says SUCCEEDED
                self.records.save_output(command.job_id, command.output)
        gone = set(expired)
        for command in commands:
            if isinstance(command, LeaseExpired | JobFinished | NotifyCancel) and command.job_id not in gone:
                jobs.setdefault(command.job_id, self.get(command.job_id))
        if len(jobs) == 1:
            # one statement in autocommit: committed when it returns, without BEGIN/COMMIT round trips
            # (a third of the cost of a one-job save_many in SQLite)
            (job,) = jobs.values()
            self.records.save(job)
        elif jobs:
            self.records.save_many(jobs.values())
        if expired:
            self.records.delete(expired)  # retention: the table dropped them (result_ttl)
        for command in commands:
            self._perform(command)
        self.poke()
        self._count()

    def _count(self) -> None:
        table = self.scheduler.jobs
        if self.metrics is not None:
            if table.lease_expiries > self._seen_expiries:
                self.metrics.lease_expiries.inc(table.lease_expiries - self._seen_expiries)
            if table.requeues > self._seen_requeues:
                self.metrics.requeues.inc(table.requeues - self._seen_requeues)
        self._seen_expiries, self._seen_requeues = table.lease_expiries, table.requeues

    def _perform(self, command: Command) -> None:
        if isinstance(command, WorkAvailable):
            self._wake_fetchers(command.count)
        elif isinstance(command, JobFinished):
            waiters = self._done_waiters.pop(command.job_id, None)
            if waiters is not None:
                for future in waiters.futures:
                    _settle(future)
        elif isinstance(command, NotifyCancel):
            if command.worker_id == self.local_worker_id and self.cancel_local is not None:
                self.cancel_local(command.job_id, command.attempt)
            # other workers (external, or a thief node's) hear it in their next heartbeat
        elif isinstance(command, LeaseExpired):
            log.info(
                "lease expired",
                extra={
                    "job_id": command.job_id,
                    "attempt": command.attempt,
                    "reason": command.reason,
                    "requeued": command.requeued,
                },
            )
        elif isinstance(command, WorkerLost):
            self.workers_lost += 1
            # one that never held work (a stray heartbeat) is no news: no more than a debug line
            level = logging.INFO if command.held_work else logging.DEBUG
            log.log(level, "worker lost", extra={"worker_id": command.worker_id})

    def _wake_fetchers(self, count: int) -> None:
        """Wakes the long-polling fetchers that will take the `count` new jobs (model.pick_waiter)."""
        tokens = [str(t) for t, w in self._fetch_waiters.items() if not w.woken.done()]
        free = {str(t): w.free_slots for t, w in self._fetch_waiters.items()}
        while count > 0 and tokens:
            chosen = pick_waiter(tokens, free)
            if chosen is None:
                break
            tokens.remove(chosen)
            waiter = self._fetch_waiters[int(chosen)]
            _settle(waiter.woken)
            count -= waiter.free_slots
