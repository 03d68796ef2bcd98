"""WorkerRuntime: runs leased jobs in N slots, keeps their leases alive, and reports outcomes.

Three kinds of asyncio tasks:
- the fetch loop long-polls `backend.fetch` whenever a slot is free (one fetch in flight at most);
- the heartbeat loop sends the running attempts every interval and stops those the backend names
  (`cancel`: report CancelledByWorker; `abandon`: the lease is gone, report nothing);
- one supervisor task per attempt runs the handler, enforces the run deadline and reports.

Blocking handlers run in a thread pool sized to the slots, so heartbeats keep flowing while they burn
CPU (Dramatiq #692). Backend errors never crash the runtime: fetches back off exponentially (capped),
heartbeats retry at the next tick, reports are retried a few times and then dropped; a dropped report
leaves the job to lease expiry, after which it runs again (at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np

from model.errors import DtqError, Unavailable
from model.job import Assignment, CancelledByWorker, Failed, JobError, Outcome, Succeeded
from realsys.worker.handlers import Handler, HandlerRegistry, JobCancelled, JobContext, JobFailure, registry

log = logging.getLogger("dtq.worker")

StopReason = Literal["cancel", "abandon", "timeout"]
_MIN_EMPTY_POLL = 0.05


class WorkerBackend(Protocol):
    """Where a worker gets work and sends heartbeats and outcomes (gRPC, or in-process in Design B)."""

    async def heartbeat(
        self, worker_id: str, total_slots: int, free_slots: int, running: list[tuple[str, int]]
    ) -> tuple[list[tuple[str, int]], list[tuple[str, int]], float]:
        """Returns (cancel, abandon, heartbeat interval in seconds; <= 0 keeps the current one)."""
        ...

    async def fetch(self, worker_id: str, free_slots: int, wait: float) -> list[Assignment]:
        """Long-polls up to `wait` seconds for at most `free_slots` assignments."""
        ...

    async def report(self, worker_id: str, job_id: str, attempt: int, outcome: Outcome) -> None:
        """Sends one attempt's outcome. A stale attempt is logged, not raised."""
        ...


@dataclass(eq=False, slots=True)
class _Attempt:
    assignment: Assignment
    ctx: JobContext
    handler: Handler | None
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    stop_reason: StopReason | None = None
    supervisor: asyncio.Task[None] | None = None
    wake: asyncio.Future[None] | None = None  # what _await_outcome is waiting on, if anything

    @property
    def key(self) -> tuple[str, int]:
        return (self.assignment.job_id, self.assignment.attempt)


class WorkerRuntime:
    """N slots of job execution for one worker id. See the module docstring for the loops it runs."""

    def __init__(
        self,
        worker_id: str,
        slots: int,
        backend: WorkerBackend,
        handlers: HandlerRegistry = registry,
        heartbeat_interval: float = 2.0,
        *,
        fetch_wait: float = 5.0,
        seed: int | np.random.SeedSequence | None = None,
        max_backoff: float = 5.0,
        report_attempts: int = 4,
    ) -> None:
        if slots < 1:
            raise ValueError("a worker needs at least one slot")
        if heartbeat_interval <= 0 or fetch_wait < 0:
            raise ValueError("heartbeat_interval must be > 0 and fetch_wait >= 0")
        self.worker_id = worker_id
        self.slots = slots
        self.backend = backend
        self.handlers = handlers
        self.heartbeat_interval = heartbeat_interval
        self.fetch_wait = fetch_wait
        self.max_backoff = max_backoff
        self.report_attempts = report_attempts
        # one stream per attempt, spawned in start order from the worker's seed
        self._seed = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        self._next_child = self._seed.n_children_spawned  # the child _seed.spawn(1) would give next
        self._attempts: dict[tuple[str, int], _Attempt] = {}  # started and not yet reported or abandoned
        self._busy = 0  # handlers still executing (a timed-out thread keeps its slot until it returns)
        self._slot_freed = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._fetch_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._supervisors: set[asyncio.Task[None]] = set()
        self._fetching = False
        self._started = False
        # counters for metrics and tests
        self.heartbeats_sent = 0
        self.handlers_ended = 0
        self.reports_dropped = 0
        self.max_busy_seen = 0

    # ------------------------------------------------------------------ public API
    @property
    def free_slots(self) -> int:
        return max(0, self.slots - self._busy)

    @property
    def running(self) -> list[tuple[str, int]]:
        """Attempts whose lease this worker keeps: running, or finished with the report not yet through."""
        return list(self._attempts)

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._fetching = True
        self._executor = ThreadPoolExecutor(
            max_workers=self.slots, thread_name_prefix=f"dtq-{self.worker_id}"
        )
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop(), name=f"{self.worker_id}-heartbeat")
        self._fetch_task = asyncio.create_task(self._fetch_loop(), name=f"{self.worker_id}-fetch")

    def cancel(self, job_id: str, attempt: int) -> None:
        """Push path (NotifyCancel): stop the attempt, report it cancelled. Unknown attempts are ignored."""
        self._stop((job_id, attempt), "cancel")

    async def drain(self, timeout: float) -> None:
        """Stops fetching, waits up to `timeout` for running jobs to finish and report, then stops.

        Jobs still running after the timeout are stopped without a report: their leases expire on the
        server and they run again elsewhere (at-least-once). An in-flight fetch is cancelled; anything it
        had already leased is likewise recovered by lease expiry.
        """
        await self._stop_fetching()
        if self._supervisors:
            _, pending = await asyncio.wait(set(self._supervisors), timeout=max(0.0, timeout))
            if pending:
                log.warning("drain timed out; %d job(s) left for lease expiry", len(pending))
        await self.stop()

    async def stop(self) -> None:
        """Stops at once: running attempts are abandoned (no report; their leases expire)."""
        self._started = False
        await self._stop_fetching()
        for attempt in list(self._attempts.values()):
            self._stop(attempt.key, "abandon")
        supervisors = set(self._supervisors)
        for task in supervisors:
            task.cancel()
        if self._heartbeat_task is not None:
            self._heartbeat_task.cancel()
            supervisors.add(self._heartbeat_task)
        await asyncio.gather(*supervisors, return_exceptions=True)
        if self._executor is not None:
            # threads cannot be killed; cancelled handlers see ctx.cancelled and should return soon
            self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ fetch loop
    async def _stop_fetching(self) -> None:
        self._fetching = False
        task, self._fetch_task = self._fetch_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _fetch_loop(self) -> None:
        delay = 0.0
        while self._fetching:
            free = self.free_slots
            if free == 0:
                self._slot_freed.clear()
                await self._slot_freed.wait()
                continue
            began = time.monotonic()
            try:
                assignments = await self.backend.fetch(self.worker_id, free, self.fetch_wait)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = min(self.max_backoff, max(0.05, delay * 2))
                log.warning("fetch failed (%s); retrying in %.2fs", _describe(exc), delay)
                await asyncio.sleep(delay)
                continue
            delay = 0.0
            for assignment in assignments:
                self._launch(assignment)
            if not assignments and time.monotonic() - began < _MIN_EMPTY_POLL:
                await asyncio.sleep(_MIN_EMPTY_POLL)  # a backend that does not long-poll must not spin us

    def _launch(self, assignment: Assignment) -> None:
        key = (assignment.job_id, assignment.attempt)
        if key in self._attempts:
            return  # a duplicate delivery of an attempt already running
        if self.free_slots == 0:
            # the backend broke the free_slots contract; the lease expires and the job runs again
            log.error("fetch returned more work than free slots; dropping %s attempt %d", *key)
            return
        ctx = JobContext(
            job_id=assignment.job_id,
            attempt=assignment.attempt,
            spec=assignment.spec,
            deadline=assignment.run_deadline,
            rng_source=_child_rng(self._seed, self._next_child),
        )
        self._next_child += 1
        attempt = _Attempt(assignment, ctx, self.handlers.get(assignment.spec.job_type))
        self._attempts[key] = attempt
        self._busy += 1
        self.max_busy_seen = max(self.max_busy_seen, self._busy)
        task = asyncio.create_task(self._supervise(attempt), name=f"job-{key[0]}-{key[1]}")
        attempt.supervisor = task
        self._supervisors.add(task)
        task.add_done_callback(self._supervisors.discard)

    # ------------------------------------------------------------------ one attempt
    async def _supervise(self, attempt: _Attempt) -> None:
        future: asyncio.Future[Any] | None = None
        try:
            if attempt.handler is None:
                job_type = attempt.assignment.spec.job_type
                outcome: Outcome | None = Failed(
                    JobError(
                        f"this worker has no handler for job type {job_type!r}", False, "UNKNOWN_JOB_TYPE"
                    )
                )
            elif time.time() >= attempt.assignment.run_deadline:
                outcome = _timeout_error(attempt)
            else:
                future = self._start_handler(attempt, attempt.handler)
                outcome = await self._await_outcome(attempt, future)
        except asyncio.CancelledError:
            self._stop(attempt.key, "abandon")
            if future is not None:
                self._interrupt(attempt, future)
            raise
        finally:
            # the slot stays taken until the handler really ends (a thread cannot be killed)
            if future is None or future.done():
                self._release_slot()
            else:
                future.add_done_callback(lambda _: self._release_slot())
        try:
            if outcome is not None:
                await self._report(attempt, outcome)
        finally:
            self._attempts.pop(attempt.key, None)

    def _start_handler(self, attempt: _Attempt, handler: Handler) -> asyncio.Future[Any]:
        if handler.blocking:
            assert self._executor is not None
            future: asyncio.Future[Any] = asyncio.get_running_loop().run_in_executor(
                self._executor, handler.fn, attempt.ctx
            )
        else:
            future = asyncio.ensure_future(handler.fn(attempt.ctx))
        future.add_done_callback(_consume_exception)
        return future

    async def _await_outcome(self, attempt: _Attempt, future: asyncio.Future[Any]) -> Outcome | None:
        """Waits for the handler, a stop request or the run deadline. None: do not report (abandoned)."""
        loop = asyncio.get_running_loop()
        while not future.done():
            if not attempt.stop.is_set():
                # One future woken by whichever comes first: the handler ending, a stop request
                # (_stop) or the deadline. Cheaper per job than a task on stop.wait() + asyncio.wait.
                wake: asyncio.Future[None] = loop.create_future()
                attempt.wake = wake
                future.add_done_callback(functools.partial(_resolve_on_done, wake))
                timeout = max(0.0, attempt.assignment.run_deadline - time.time())
                timer = loop.call_later(timeout, _resolve, wake)
                try:
                    await wake
                finally:
                    timer.cancel()
                    attempt.wake = None
            if future.done():
                break
            if attempt.stop_reason == "abandon":
                self._interrupt(attempt, future)
                return None
            if time.time() >= attempt.assignment.run_deadline:
                attempt.stop_reason = "timeout"
                self._interrupt(attempt, future)
                return _timeout_error(attempt)
            # a cancel: ask the handler to stop, then keep waiting for it to end (or a later abandon)
            attempt.stop.clear()
            self._interrupt(attempt, future)
        if attempt.stop_reason == "abandon":
            return None
        return _outcome_of(future, cancel_requested=attempt.stop_reason == "cancel")

    def _interrupt(self, attempt: _Attempt, future: asyncio.Future[Any]) -> None:
        attempt.ctx.cancelled.set()
        # cancelling an executor future would mark it done while its thread still runs: never do that
        if not self._is_blocking(attempt):
            future.cancel()

    def _is_blocking(self, attempt: _Attempt) -> bool:
        return attempt.handler is not None and attempt.handler.blocking

    def _release_slot(self) -> None:
        self._busy -= 1
        self.handlers_ended += 1
        self._slot_freed.set()

    def _stop(self, key: tuple[str, int], reason: StopReason) -> None:
        attempt = self._attempts.get(key)
        if attempt is None:
            return
        if reason == "abandon":
            self._attempts.pop(key, None)  # never heartbeat or report it again
        if attempt.stop_reason is None or reason == "abandon":
            attempt.stop_reason = reason
        attempt.ctx.cancelled.set()
        attempt.stop.set()
        if attempt.wake is not None:
            _resolve(attempt.wake)

    async def _report(self, attempt: _Attempt, outcome: Outcome) -> None:
        job_id, number = attempt.key
        delay = 0.05
        for i in range(self.report_attempts):
            if attempt.stop_reason == "abandon":
                return  # the lease went away while retrying: nobody wants this report
            try:
                await self.backend.report(self.worker_id, job_id, number, outcome)
                return
            except asyncio.CancelledError:
                raise
            except DtqError as exc:
                if not isinstance(exc, Unavailable):  # stale, not found, invalid: retrying cannot help
                    log.warning("report of %s attempt %d refused: %s", job_id, number, exc.message)
                    return
                error: Exception = exc
            except Exception as exc:
                error = exc
            if i + 1 < self.report_attempts:
                log.warning("report of %s attempt %d failed (%s); retrying", job_id, number, _describe(error))
                await asyncio.sleep(delay)
                delay = min(self.max_backoff, delay * 2)
        self.reports_dropped += 1
        log.error("dropping report of %s attempt %d; its lease will expire", job_id, number)

    # ------------------------------------------------------------------ heartbeats
    async def _heartbeat_loop(self) -> None:
        while self._started:
            began = time.monotonic()
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel (gh-86296)
                async with asyncio.timeout(max(self.heartbeat_interval, 1.0) * 2):
                    cancel, abandon, interval = await self.backend.heartbeat(
                        self.worker_id, self.slots, self.free_slots, self.running
                    )
                self.heartbeats_sent += 1
                if interval > 0:
                    self.heartbeat_interval = interval
                self._apply_heartbeat(cancel, abandon)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("heartbeat failed: %s", _describe(exc))
            # fixed rate: a slow heartbeat does not stretch the interval
            await asyncio.sleep(max(0.0, self.heartbeat_interval - (time.monotonic() - began)))

    def _apply_heartbeat(self, cancel: Sequence[tuple[str, int]], abandon: Sequence[tuple[str, int]]) -> None:
        for key in abandon:
            self._stop((key[0], key[1]), "abandon")
        for key in cancel:
            self._stop((key[0], key[1]), "cancel")


def _outcome_of(future: asyncio.Future[Any], cancel_requested: bool) -> Outcome:
    """The outcome of a handler that ended. Work that finished despite a cancel keeps its result."""
    if future.cancelled():
        return CancelledByWorker() if cancel_requested else _failed("handler task was cancelled", True)
    exc = future.exception()
    if exc is None:
        try:
            return Succeeded(_to_bytes(future.result()))
        except TypeError as err:
            return _failed(str(err), False)
    if cancel_requested:  # whatever it raised while stopping, it stopped because it was asked to
        return CancelledByWorker()
    if isinstance(exc, JobFailure):
        return _failed(exc.message, exc.retryable)
    if isinstance(exc, JobCancelled):
        return _failed("handler stopped without a cancel request", True)
    return _failed(f"{type(exc).__name__}: {exc}", True)


def _to_bytes(value: object) -> bytes:
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"handler returned {type(value).__name__}; expected bytes, str or None")


def _failed(message: str, retryable: bool) -> Failed:
    return Failed(JobError(message, retryable, "HANDLER_ERROR"))


def _timeout_error(attempt: _Attempt) -> Failed:
    a = attempt.assignment
    return Failed(
        JobError(f"attempt {a.attempt} ran past its run deadline", retryable=True, reason="TIMEOUT")
    )


def _child_rng(parent: np.random.SeedSequence, index: int) -> Callable[[], np.random.Generator]:
    """The Generator of parent's child `index`, made only when called: the same stream as the
    index-th `parent.spawn(1)` (that is how SeedSequence.spawn numbers its children)."""

    def make() -> np.random.Generator:
        child = np.random.SeedSequence(
            parent.entropy, spawn_key=(*parent.spawn_key, index), pool_size=parent.pool_size
        )
        return np.random.default_rng(child)

    return make


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _resolve_on_done(future: asyncio.Future[None], _done: asyncio.Future[Any]) -> None:
    _resolve(future)


def _consume_exception(future: asyncio.Future[Any]) -> None:
    # a handler we stopped waiting for may fail later; nobody will read it, so do not log it as lost
    if not future.cancelled():
        future.exception()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
