"""WorkerRuntime: runs leased jobs in N slots, keeps their leases alive, and reports outcomes.

model/runtime.py's WorkerCore makes every decision (when to fetch and for how many slots, pauses and
backoffs, the heartbeat schedule, what a cancel, an abandon or the run deadline does, what is reported
and for how long a report is retried); this module performs them with asyncio tasks:
- the fetch loop long-polls `backend.fetch` (one fetch in flight at most);
- the heartbeat loop sends the running attempts at a fixed rate;
- one supervisor task per attempt runs the handler, wakes at its run deadline and reports.

Blocking handlers run in a thread pool sized to the slots, so heartbeats keep flowing while they burn
CPU (Dramatiq #692). Backend errors never crash the runtime: a failed report is retried until it goes
through, is refused for good, or its lease is gone (then the job runs again: at-least-once).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from model.errors import DtqError, Unavailable
from model.job import Assignment, Failed, JobError, Outcome, Succeeded
from model.runtime import (
    ATTEMPT_STEPS,
    Action,
    AttemptStep,
    AwaitSlot,
    Discard,
    Done,
    Fetch,
    HeartbeatReply,
    Interrupt,
    Key,
    Launch,
    Report,
    RetryReport,
    RunHandler,
    StopReason,
    WakeFetch,
    WorkerCore,
)
from realsys.worker.handlers import Handler, HandlerRegistry, JobCancelled, JobContext, JobFailure, registry

log = logging.getLogger("dtq.worker")


class WorkerBackend(Protocol):
    """Where a worker gets work and sends heartbeats and outcomes (gRPC, or in-process in Design B)."""

    async def heartbeat(
        self, worker_id: str, total_slots: int, free_slots: int, running: list[tuple[str, int]]
    ) -> HeartbeatReply:
        """Cancel and abandon lists, and the heartbeat interval and lease duration when known."""
        ...

    async def fetch(self, worker_id: str, free_slots: int, wait: float) -> list[Assignment]:
        """Long-polls up to `wait` seconds for at most `free_slots` assignments."""
        ...

    async def report(self, worker_id: str, job_id: str, attempt: int, outcome: Outcome) -> None:
        """Sends one attempt's outcome. A stale attempt is logged, not raised. Raises Unavailable (or
        any non-core exception) when the backend could not be reached, another core error when it
        refused the report for good."""
        ...


class ReportingBackend(WorkerBackend, Protocol):
    """A backend whose fetch can carry reports (report-and-fetch: FetchWork's `reports`)."""

    async def fetch_and_report(
        self, worker_id: str, free_slots: int, wait: float, reports: tuple[tuple[Key, Outcome], ...]
    ) -> tuple[list[Assignment], list[DtqError | None]]:
        """As fetch, sending `reports` first; returns the assignments and each report's verdict, in
        order (None: through, or stale; Unavailable: try again; another error: refused). Fewer
        verdicts than reports: the rest were not taken. Raises as fetch does."""
        ...


@dataclass(eq=False, slots=True)
class _Run:
    """One attempt's supervisor: its handler and how to wake it."""

    assignment: Assignment
    ctx: JobContext
    handler: Handler | None
    future: asyncio.Future[Any] | None = None  # the handler, once started
    stop: StopReason | None = None  # the last Interrupt the core sent
    wake: asyncio.Future[bool] | None = None  # what the supervisor waits on; True: the deadline is due
    carried: asyncio.Future[AttemptStep] | None = None  # a report riding a fetch: the verdict's step

    @property
    def key(self) -> Key:
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
        lease_duration: float = 0.0,
        seed: int | np.random.SeedSequence | None = None,
        clock: Callable[[], float] = time.time,
        carry_reports: bool = False,
    ) -> None:
        """`lease_duration` <= 0: learnt from heartbeat replies. `clock`: wall-clock seconds, the time
        base of run deadlines (the core's `now`); sleeps use the running loop's clock.
        `carry_reports`: report-and-fetch (model/runtime.py); the backend must be a ReportingBackend."""
        if carry_reports and not hasattr(backend, "fetch_and_report"):
            raise ValueError("carry_reports needs a backend with fetch_and_report")
        self.core = WorkerCore(
            slots,
            heartbeat_interval=heartbeat_interval,
            fetch_wait=fetch_wait,
            lease_duration=lease_duration,
            carry_reports=carry_reports,
        )
        self.worker_id = worker_id
        self.slots = slots
        self.backend = backend
        self.handlers = handlers
        self._clock = clock
        # one stream per attempt, spawned in start order from the worker's seed
        self._seed = seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(seed)
        self._next_child = self._seed.n_children_spawned  # the child _seed.spawn(1) would give next
        self._runs: dict[Key, _Run] = {}  # supervisors not yet finished
        self._fetch_wake = asyncio.Event()
        self._executor: ThreadPoolExecutor | None = None
        self._fetch_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        self._supervisors: set[asyncio.Task[None]] = set()
        self._started = False
        # counters for metrics and tests
        self.heartbeats_sent = 0
        self.handlers_ended = 0
        self.reports_dropped = 0  # reports given up because the lease was gone
        self.max_busy_seen = 0

    # ------------------------------------------------------------------ public API
    @property
    def free_slots(self) -> int:
        return self.core.free_slots

    @property
    def running(self) -> list[tuple[str, int]]:
        """Attempts whose lease this worker keeps: running, or finished with the report not through."""
        return self.core.running

    @property
    def heartbeat_interval(self) -> float:
        return self.core.heartbeat_interval

    async def start(self) -> None:
        if self._started:
            return
        self._started = True
        self._executor = ThreadPoolExecutor(
            max_workers=self.slots, thread_name_prefix=f"dtq-{self.worker_id}"
        )
        self._heartbeat_task = asyncio.create_task(self._heartbeat_loop(), name=f"{self.worker_id}-heartbeat")
        self._fetch_task = asyncio.create_task(self._fetch_loop(), name=f"{self.worker_id}-fetch")

    def cancel(self, job_id: str, attempt: int) -> None:
        """Push path (NotifyCancel): stop the attempt, report it cancelled. Unknown attempts are ignored."""
        self._perform(self.core.cancel((job_id, attempt)))

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
        self._perform(self.core.stop())
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

    # ------------------------------------------------------------------ performing actions
    def _perform(self, actions: list[Action]) -> AttemptStep | None:
        """Performs the actions for others; returns the one addressed to the calling supervisor."""
        step: AttemptStep | None = None
        for action in actions:
            if isinstance(action, ATTEMPT_STEPS):  # the most frequent: three per job
                run = self._runs.get(action.key) if self.core.carry_reports else None
                if run is not None and run.carried is not None and not run.carried.done():
                    run.carried.set_result(action)  # the verdict on a report a fetch carried
                else:
                    step = action
            elif isinstance(action, Launch):
                self._launch(action.assignment)
            elif isinstance(action, WakeFetch):
                self._fetch_wake.set()
            elif isinstance(action, Interrupt):
                run = self._runs.get(action.key)
                if run is not None:
                    self._interrupt(run, action.reason)
            elif isinstance(action, Discard) and action.reason == "no free slot":
                log.error("fetch returned more work than free slots; dropping %s attempt %d", *action.key)
        return step

    def _interrupt(self, run: _Run, reason: StopReason) -> None:
        run.stop = reason
        run.ctx.cancelled.set()
        future = run.future
        # cancelling an executor future would mark it done while its thread still runs: never do that
        if future is not None and not (run.handler is not None and run.handler.blocking):
            future.cancel()
        if run.wake is not None:
            _resolve(run.wake)

    # ------------------------------------------------------------------ fetch loop
    async def _stop_fetching(self) -> None:
        self._perform(self.core.stop_fetching())  # reports waiting for a fetch go on their own
        task, self._fetch_task = self._fetch_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _fetch_loop(self) -> None:
        core = self.core
        failures = 0
        while True:
            step = core.next_fetch(self._clock())
            if step is None:
                return
            if isinstance(step, Fetch):
                verdicts: list[DtqError | None] = []
                try:
                    if step.reports:
                        backend: Any = self.backend  # a ReportingBackend (checked in __init__)
                        assignments, verdicts = await backend.fetch_and_report(
                            self.worker_id, step.free_slots, step.wait, step.reports
                        )
                    else:
                        assignments = await self.backend.fetch(self.worker_id, step.free_slots, step.wait)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    failures += 1
                    delay = core.fetch_failed(self._clock())
                    self._perform(core.carried_failed(self._clock()))
                    log.warning("fetch failed (%s); retrying in %.2fs", _describe(exc), delay)
                    continue
                if failures:
                    log.info("fetch works again after %d failed attempt(s)", failures)
                    failures = 0
                self._perform(core.fetched(self._clock(), assignments, verdicts))
            elif isinstance(step, AwaitSlot):
                self._fetch_wake.clear()
                await self._fetch_wake.wait()
            elif step.wakeable:  # a backoff that any successful call ends
                self._fetch_wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(step.seconds):
                        await self._fetch_wake.wait()
            else:
                await asyncio.sleep(step.seconds)

    def _launch(self, assignment: Assignment) -> None:
        ctx = JobContext(
            job_id=assignment.job_id,
            attempt=assignment.attempt,
            spec=assignment.spec,
            deadline=assignment.run_deadline,
            rng_source=_child_rng(self._seed, self._next_child),
        )
        self._next_child += 1
        run = _Run(assignment, ctx, self.handlers.get(assignment.spec.job_type))
        self._runs[run.key] = run
        self.max_busy_seen = max(self.max_busy_seen, self.core.busy)
        task = asyncio.create_task(self._supervise(run), name=f"job-{run.key[0]}-{run.key[1]}")
        self._supervisors.add(task)
        task.add_done_callback(self._supervisors.discard)

    # ------------------------------------------------------------------ one attempt
    async def _supervise(self, run: _Run) -> None:
        key = run.key
        try:
            try:
                step = self._perform(self.core.begin(self._clock(), key, run.handler is not None))
                if isinstance(step, RunHandler):
                    assert run.handler is not None
                    run.future = self._start_handler(run, run.handler)
                    step = await self._await_handler(run, step.deadline)
            except asyncio.CancelledError:
                self._interrupt(run, "abandon")  # the runtime is stopping
                raise
            finally:
                # the slot stays taken until the handler really ends (a thread cannot be killed)
                future = run.future
                if future is None or future.done():
                    self._release(key)
                else:
                    future.add_done_callback(lambda _: self._release(key))
            if isinstance(step, Report):
                await self._report(run, step)
        finally:
            self._runs.pop(key, None)

    def _start_handler(self, run: _Run, handler: Handler) -> asyncio.Future[Any]:
        if handler.blocking:
            assert self._executor is not None
            future: asyncio.Future[Any] = asyncio.get_running_loop().run_in_executor(
                self._executor, handler.fn, run.ctx
            )
        else:
            future = asyncio.ensure_future(handler.fn(run.ctx))
        future.add_done_callback(_consume_exception)
        return future

    async def _await_handler(self, run: _Run, deadline: float) -> AttemptStep | None:
        """Waits for the handler to end, an abandon, or the run deadline; returns the core's step."""
        loop = asyncio.get_running_loop()
        future = run.future
        assert future is not None
        while not future.done():
            # One future woken by whichever comes first: the handler ending, an Interrupt (_interrupt)
            # or the deadline's timer. Cheaper per job than a task on an event + asyncio.wait.
            wake: asyncio.Future[bool] = loop.create_future()
            run.wake = wake
            future.add_done_callback(functools.partial(_resolve_on_done, wake))
            timer = loop.call_later(max(0.0, deadline - self._clock()), _resolve, wake, True)
            try:
                deadline_due = await wake
            finally:
                timer.cancel()
                run.wake = None
            if future.done():
                break
            if run.stop == "abandon":
                return None  # the lease is gone: nobody wants its outcome
            if deadline_due:
                return self._perform(self.core.deadline_passed(self._clock(), run.key))
            # a cancel: the handler was asked to stop; keep waiting for it to end (or a later abandon)
        outcome, raised = _outcome_of(future)
        return self._perform(self.core.handler_ended(self._clock(), run.key, outcome, raised))

    def _release(self, key: Key) -> None:
        self.handlers_ended += 1
        self._perform(self.core.released(self._clock(), key))

    async def _report(self, run: _Run, report: Report) -> None:
        key, outcome = report.key, report.outcome
        job_id, number = key
        core = self.core
        carried = report.carried
        while True:
            step: AttemptStep | None
            error: Exception
            if carried:  # a fetch carries it: the fetch loop hands over the verdict's step
                carried = False
                run.carried = asyncio.get_running_loop().create_future()
                try:
                    step = await run.carried
                finally:
                    run.carried = None
                error = Unavailable("the call that carried it failed or did not take it")
            else:
                try:
                    await self.backend.report(self.worker_id, job_id, number, outcome)
                except asyncio.CancelledError:
                    raise
                except DtqError as exc:
                    refusal = None if isinstance(exc, Unavailable) else exc.message
                    error = exc
                    step = self._perform(core.report_failed(self._clock(), key, refusal))
                except Exception as exc:
                    error = exc
                    step = self._perform(core.report_failed(self._clock(), key))
                else:
                    self._perform(core.reported(self._clock(), key))
                    return
            if isinstance(step, RetryReport):
                log.warning(
                    "report of %s attempt %d failed (%s); retrying in %.2fs",
                    job_id,
                    number,
                    _describe(error),
                    step.delay,
                )
                await asyncio.sleep(step.delay)
                continue
            if isinstance(step, Done) and step.reason == "refused":
                log.warning("report of %s attempt %d refused: %s", job_id, number, step.detail)
            elif isinstance(step, Done) and step.reason == "lease lost":
                self.reports_dropped += 1
                log.error("dropping report of %s attempt %d: its lease has run out", job_id, number)
            return

    # ------------------------------------------------------------------ heartbeats
    async def _heartbeat_loop(self) -> None:
        core = self.core
        while self._started:
            beat = core.heartbeat(self._clock())
            try:
                # asyncio.timeout, not wait_for: 3.11's wait_for can swallow a cancel (gh-86296)
                async with asyncio.timeout(beat.timeout):
                    reply = await self.backend.heartbeat(
                        self.worker_id, beat.total_slots, beat.free_slots, beat.running
                    )
                self.heartbeats_sent += 1
                self._perform(core.heartbeat_replied(self._clock(), reply))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                core.heartbeat_failed(self._clock())
                log.warning("heartbeat failed: %s", _describe(exc))
            # fixed rate: a slow heartbeat does not stretch the interval
            await asyncio.sleep(core.heartbeat_wait(self._clock()))


def _outcome_of(future: asyncio.Future[Any]) -> tuple[Outcome, bool]:
    """What an ended handler's outcome is, and whether it raised (or was cancelled) rather than
    returned: the core turns a raise into CancelledByWorker when a cancel asked it to stop."""
    if future.cancelled():
        return _failed("handler task was cancelled", True), True
    exc = future.exception()
    if exc is None:
        try:
            return Succeeded(_to_bytes(future.result())), False
        except TypeError as err:
            return _failed(str(err), False), False
    if isinstance(exc, JobFailure):
        return _failed(exc.message, exc.retryable), True
    if isinstance(exc, JobCancelled):
        return _failed("handler stopped without a cancel request", True), True
    return _failed(f"{type(exc).__name__}: {exc}", True), True


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


def _child_rng(parent: np.random.SeedSequence, index: int) -> Callable[[], np.random.Generator]:
    """The Generator of parent's child `index`, made only when called: the same stream as the
    index-th `parent.spawn(1)` (that is how SeedSequence.spawn numbers its children)."""

    def make() -> np.random.Generator:
        child = np.random.SeedSequence(
            parent.entropy, spawn_key=(*parent.spawn_key, index), pool_size=parent.pool_size
        )
        return np.random.default_rng(child)

    return make


def _resolve(future: asyncio.Future[bool], deadline_due: bool = False) -> None:
    if not future.done():
        future.set_result(deadline_due)


def _resolve_on_done(future: asyncio.Future[bool], _done: asyncio.Future[Any]) -> None:
    _resolve(future)


def _consume_exception(future: asyncio.Future[Any]) -> None:
    # a handler we stopped waiting for may fail later; nobody will read it, so do not log it as lost
    if not future.cancelled():
        future.exception()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
