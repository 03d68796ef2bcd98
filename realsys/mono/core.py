"""LocalCore: performs Design B's node driver (model/node.py) with SQLite, futures, logs and metrics.

Every servicer and the in-process worker backend go through this object; it is the only place that
calls the driver. Each mutating call performs the driver's Step before returning: store large results,
save the jobs it touched, delete expired ones, settle waiters' futures, push cancels to the local
worker, log, re-arm the core timer.

Group commit (a store with `group_commit`, SQLite): the jobs a step saves are staged, and every step
of one loop iteration is committed in one transaction by a callback at its end (`call_soon`). Until
that commit nothing is told: wake-ups (waiters, fetchers) are held, and a handler that answers about
state awaits `committed()` first, so an acknowledged job, lease or end survives a kill -9 exactly as
when each step committed on its own. The driver's decisions (what is saved, when) do not change; only
when the adapter writes them. Without a running loop (start-up, tests) a step commits at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence

import numpy as np

from model.actions import Step, Wake
from model.commands import JobFinished, LeaseExpired, NotifyCancel, WorkerLost
from model.config import CoreConfig
from model.eta import Estimate
from model.ids import JobIdFactory
from model.job import Assignment, Job, JobSpec, Outcome
from model.jobs import Renewal, Submitted
from model.listing import ListQuery, Page
from model.node import NodeDriver
from model.scheduler import Scheduler
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
Token = asyncio.Future[bool]  # a waiter, as the driver knows it: True: woken; False: timed out/drained


def _settle(future: Token, value: bool = True) -> None:
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
        self.driver: NodeDriver[Token] = NodeDriver(self.scheduler)
        # push path for NotifyCancel; the node sets it to its WorkerRuntime.cancel
        self.cancel_local: Callable[[str, int], None] | None = None
        # set by the node once a CoreTimer exists (performing self.driver.timer): arms it when a step says
        self.rearm: Callable[[], None] = lambda: None
        # group commit (module docstring): the pending commit, its waiters and the wake-ups it holds
        self._group = records.group_commit
        self._commit_handle: asyncio.Handle | None = None
        self._commit_waiters: list[asyncio.Future[None]] = []
        self._held: list[tuple[Token, bool]] = []

    @property
    def node(self) -> str:
        return self.scheduler.node

    @property
    def config(self) -> CoreConfig:
        return self.scheduler.config

    @property
    def draining(self) -> bool:
        return self.driver.draining

    @property
    def workers_lost(self) -> int:
        return self.driver.workers_lost

    @property
    def local_worker_id(self) -> str:
        return self.driver.local_worker_id

    @local_worker_id.setter
    def local_worker_id(self, worker_id: str) -> None:
        self.driver.local_worker_id = worker_id

    # ---------------------------------------------------------------- start-up
    def restore(self) -> int:
        """Loads every saved job; pending ones go back on the ready queue. Returns how many."""
        return self.driver.restore(self.clock(), self.records.load_all())

    # ---------------------------------------------------------------- client side
    def submit(self, spec: JobSpec, request_id: str = "") -> Submitted:
        result, step = self.driver.submit(self.clock(), spec, request_id)
        self._perform(step)
        return result

    def get(self, job_id: str) -> Job:
        return self.scheduler.jobs.get(job_id)

    def estimate(self, job: Job) -> Estimate | None:
        """Its estimated start and end (None unless DTQ_ESTIMATE_WINDOW > 0): the driver's."""
        return self.driver.estimate(self.clock(), job)

    def cancel(self, job_id: str) -> Job:
        job, step = self.driver.cancel(self.clock(), job_id)
        self._perform(step)
        return job

    def output_of(self, job: Job) -> bytes:
        """A finished job's result: in the record, or in the store when the core keeps only its size."""
        if job.output is not None:
            return job.output
        return (self.records.load_output(job.job_id) or b"") if job.output_size else b""

    def list_page(self, query: ListQuery, page_size: int, page_token: str) -> Page[Job]:
        return self.scheduler.jobs.list_page(query, page_size, page_token)

    async def wait_done(self, job_id: str, timeout: float) -> Job:
        """The job once it is done, or as it is after `timeout` seconds; UNAVAILABLE with a
        retry-after when the wait ended early (or never began) because the node drains (the
        driver's wait_ended)."""
        job = self.get(job_id)
        if job.done or timeout <= 0:
            return job
        await self.wait_end(job, timeout)
        job = self.get(job_id)
        self.driver.wait_ended(job, timeout)
        return job

    async def wait_end(self, job: Job, timeout: float) -> None:
        """Waits until `job` (a record of this table, updated in place) is done, `timeout` seconds
        pass, or the node drains. Unlike wait_done it never raises: the record outlives retention."""
        if job.done or timeout <= 0:
            return
        job_id = job.job_id
        loop = asyncio.get_running_loop()
        future: Token = loop.create_future()
        if not self.driver.add_done_waiter(future, job_id):
            return  # the node drains: no waiting
        timer = loop.call_later(timeout, _settle, future, False)
        try:
            await future
        finally:
            timer.cancel()
            # drop the entry when the last waiter leaves without the job finishing (no leak)
            self.driver.done_waiter_gone(future, job_id)

    # ---------------------------------------------------------------- worker side
    def heartbeat(
        self, worker_id: str, total_slots: int, free_slots: int, running: Sequence[tuple[str, int]]
    ) -> Renewal:
        renewal, step = self.driver.heartbeat(self.clock(), worker_id, total_slots, free_slots, running)
        self._perform(step)
        return renewal

    def fetch_now(self, worker_id: str, free_slots: int) -> list[Assignment]:
        """Leases what is ready right now, without waiting."""
        assignments, step = self.driver.fetch_now(self.clock(), worker_id, free_slots)
        self._perform(step)
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
        if timeout <= 0:
            return False
        loop = asyncio.get_running_loop()
        future: Token = loop.create_future()
        if not self.driver.add_fetcher(self.clock(), future, worker_id, free_slots):
            return False
        timer = loop.call_later(timeout, self._fetch_timed_out, future)
        try:
            return await future
        finally:
            timer.cancel()
            self.driver.fetcher_gone(future)

    def _fetch_timed_out(self, future: Token) -> None:
        self.driver.fetcher_gone(future)  # from now on it takes no wake-up meant for others
        _settle(future, False)

    def steal(self, thief_worker_id: str, max_jobs: int) -> list[Assignment]:
        assignments, step = self.driver.steal(self.clock(), thief_worker_id, max_jobs)
        self._perform(step)
        return assignments

    def report(self, worker_id: str, job_id: str, attempt: int, outcome: Outcome) -> Job:
        job, step = self.driver.report(self.clock(), worker_id, job_id, attempt, outcome)
        self._perform(step)
        return job

    def release_worker(self, worker_id: str) -> None:
        """The worker is gone for sure (this node's own worker after a drain or restart): requeue now."""
        self._perform(self.driver.release_worker(self.clock(), worker_id))

    def on_timer(self, now: float) -> None:
        self._perform(self.driver.on_timer(now))

    def start_draining(self) -> None:
        self._perform(self.driver.start_draining())

    # ---------------------------------------------------------------- gauges
    @property
    def ready_count(self) -> int:
        return self.scheduler.queue.ready_count

    def oldest_ready_age(self) -> float:
        oldest = self.scheduler.queue.oldest_ready_enqueue_time()
        return 0.0 if oldest is None else max(0.0, self.clock() - oldest)

    # ---------------------------------------------------------------- group commit
    @property
    def uncommitted(self) -> bool:
        """Whether some step's saves wait for the commit at the end of this loop iteration."""
        return self._commit_handle is not None

    async def committed(self) -> None:
        """Returns once the pending commit (if any) is done; raises what the commit raised."""
        if self._commit_handle is None:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._commit_waiters.append(future)
        await future

    def _stage(self, save: Sequence[Job]) -> None:
        if self._commit_handle is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop (start-up, a test): commit now
                self.records.save_many(save)
                return
            self._commit_handle = loop.call_soon(self._commit)
        self.records.stage(save)

    def _commit(self) -> None:
        self._commit_handle = None
        waiters, self._commit_waiters = self._commit_waiters, []
        held, self._held = self._held, []
        error: Exception | None = None
        try:
            self.records.commit()
        except Exception as exc:  # the callers' RPCs fail with it, as a failed save did before
            log.exception("commit failed")
            error = exc
        for waiter in waiters:
            if not waiter.done():
                if error is None:
                    waiter.set_result(None)
                else:
                    waiter.set_exception(error)
        for future, value in held:
            _settle(future, value)

    # ---------------------------------------------------------------- performing a step
    def _perform(self, step: Step[Token]) -> None:
        for output in step.outputs:  # durable before the record that says SUCCEEDED
            self.records.save_output(output.job_id, output.output)
        save = step.save
        if save:
            if self._group:
                self._stage(save)
            elif len(save) == 1:
                self.records.save(save[0])
            else:
                self.records.save_many(save)
        if step.delete:
            self.records.delete(step.delete)  # retention: the table dropped them (result_ttl)
        for effect in step.effects:
            if isinstance(effect, Wake):
                if self._commit_handle is not None:  # told once the commit holds the state
                    self._held.extend((future, effect.value) for future in effect.tokens)
                else:
                    for future in effect.tokens:
                        _settle(future, effect.value)
            elif isinstance(effect, NotifyCancel):
                if self.cancel_local is not None:
                    self.cancel_local(effect.job_id, effect.attempt)
            elif isinstance(effect, LeaseExpired):
                log.info(
                    "lease expired",
                    extra={
                        "job_id": effect.job_id,
                        "attempt": effect.attempt,
                        "reason": effect.reason,
                        "requeued": effect.requeued,
                    },
                )
            elif isinstance(effect, WorkerLost):
                # one that never held work (a stray heartbeat) is no news: no more than a debug line
                level = logging.INFO if effect.held_work else logging.DEBUG
                log.log(level, "worker lost", extra={"worker_id": effect.worker_id})
            else:
                assert isinstance(effect, JobFinished)  # its waiters are in a Wake before it
        if step.rearm:
            self.rearm()
        if self.metrics is not None:
            if step.expiries:
                self.metrics.lease_expiries.inc(step.expiries)
            if step.requeues:
                self.metrics.requeues.inc(step.requeues)
