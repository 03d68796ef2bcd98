"""The worker runtime in simulated time: model/runtime.py's WorkerCore decides, this performs.

The same activities as realsys/worker/runtime.py: a fetch loop, a heartbeat loop at a fixed rate, and
one supervisor per attempt (launch CPU, the handler, the report and its retries).

Handlers do what the built-in job types of realsys/worker/handlers.py do with the job the trace drew
(cluster.draws): `sleep` waits its duration (a slot, no CPU); `cpu` burns cpu_fraction (default 1) of
its duration as CPU of the process that runs the worker (Design B: the node's own process; Design A:
the worker process), then waits the rest; `fail` waits its duration, then fails with its
`probability` (the verdict of attempt a is model.workload.attempt_uniform(seed, a), as the real
handler draws it); `echo` ends at once; any other type waits its duration and succeeds. The core then
decides as in the real system: retries after a backoff up to max_attempts, a TIMEOUT report at the run
deadline, a CancelledByWorker report when a cancel interrupts the handler.

A `cpu` handler runs in a thread of that process: it needs the process's GIL (its loop, `Proc`) and a
core. It takes them in bursts of GIL_SWITCH_INTERVAL, each queued behind whatever the loop was given
meanwhile (CPython makes a thread that holds the GIL give it up to a waiting one after the switch
interval), so a CPU job slows the process's requests by up to a switch interval each, and two CPU jobs
of one process share its one GIL. The run deadline is checked between bursts.

The backend is the design's: Design B's node calls its Scheduler in-process (and steals), Design A's
worker process calls the coordinator over RPC. Its methods are generators in simulated time; a call
that fails raises a core error (model.errors), as the real backends do. A backend with
`carries_reports` True and a `fetch_and_report` method gets report-and-fetch (model/runtime.py); the
design backends do not model it yet, so they keep one report call per report.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import simpy

from model.errors import DtqError, Unavailable
from model.job import Assignment, Failed, JobError, Outcome, Succeeded
from model.runtime import (
    ATTEMPT_STEPS,
    Action,
    AttemptStep,
    AwaitSlot,
    Discard,
    Fetch,
    HeartbeatReply,
    Interrupt,
    Key,
    Launch,
    Report,
    RetryReport,
    RunHandler,
    WakeFetch,
    WorkerCore,
)
from model.workload import JobDraw, attempt_uniform
from sim.cpu import Proc
from sim.engine import SimGen
from sim.idcolumns import JobFlags

if TYPE_CHECKING:
    from sim.engine import Cluster

RunningList = list[tuple[str, int]]
_INTERRUPTED = Failed(JobError("the handler was interrupted", True, "HANDLER_ERROR"))
GIL_SWITCH_INTERVAL = 0.005  # CPython's sys.getswitchinterval() default: a thread's GIL turn under contention
_NO_JOB = JobDraw("sleep", 0.0)  # a job the trace did not draw (none in a normal run)


class WorkerBackend(Protocol):
    def fetch(self, worker: SimWorker, free_slots: int, wait: float) -> SimGen[list[Assignment]]: ...

    def heartbeat(
        self, worker: SimWorker, total_slots: int, free_slots: int, running: RunningList
    ) -> SimGen[tuple[RunningList, RunningList] | HeartbeatReply | None]:
        """(cancel, abandon), or a HeartbeatReply that also says the interval and lease duration."""
        ...

    def report(
        self, worker: SimWorker, job_id: str, attempt: int, outcome: Outcome, pre: float = 0.0
    ) -> SimGen[None]:
        """`pre`: the worker's CPU in the same loop step before the report goes out."""
        ...


@dataclass(eq=False, slots=True)
class _Run:
    """One attempt's supervisor process."""

    assignment: Assignment
    process: simpy.Process | None = None
    sleeping: bool = False  # in the handler: an interrupt may be thrown into the supervisor
    carried: simpy.Event | None = None  # a report riding a fetch: succeeds with the verdict's step

    @property
    def key(self) -> Key:
        return (self.assignment.job_id, self.assignment.attempt)


class Executions:
    """Every attempt the cluster's workers started, as the fault audit counts them: how many, and
    the id of each job started more than once. Held as a count and a flag byte per job id
    (sim/idcolumns.py), not a list of (job id, attempt) pairs: a long run starts millions (about a
    byte a job, where sets of ids cost 30 and kept the id strings alive)."""

    __slots__ = ("_flags", "count")

    def __init__(self) -> None:
        self.count = 0
        self._flags = JobFlags()  # 1: started once, 2: started again

    def append(self, key: Key) -> None:
        self.count += 1
        job_id = key[0]
        self._flags.set(job_id, 2 if self._flags.get(job_id) else 1)

    def __len__(self) -> int:
        return self.count

    def duplicates(self) -> list[str]:
        """The ids started more than once, sorted: model.audit.duplicate_jobs(started_ids()),
        without a count per job (a Counter of a million ids was the end of a long run's peak)."""
        return sorted(self._flags.having(2))

    def started_ids(self) -> Iterator[str]:
        """One id per start, as model.audit.duplicate_jobs takes them, up to twice a job (all the
        audit tells apart)."""
        for job_id, flags in self._flags.items():
            yield job_id
            if flags == 2:
                yield job_id


class SimWorker:
    def __init__(
        self,
        cluster: Cluster,
        worker_id: str,
        slots: int,
        proc: Proc,
        backend: WorkerBackend,
    ) -> None:
        params = cluster.params
        self.cluster = cluster
        self.env = cluster.env
        self.worker_id = worker_id
        self.slots = slots
        self.proc = proc
        self.backend = backend
        self.core = WorkerCore(
            slots,
            heartbeat_interval=params.core.heartbeat_interval,
            fetch_wait=params.fetch_wait,
            lease_duration=params.core.lease_duration,
            min_empty_poll=params.min_empty_poll,
            carry_reports=bool(getattr(backend, "carries_reports", False)),
        )
        self.alive = True
        self._runs: dict[Key, _Run] = {}
        self._fetch_wake: simpy.Event | None = None
        self.launched = 0
        self.reports = 0
        self.dropped = 0
        # every execution start of every worker of the run, (job id, attempt): duplicates are jobs
        # started more than once (model.audit.duplicate_jobs); shared across restarts
        self.executions: Executions = cluster.__dict__.setdefault("executions", Executions())

    @property
    def free_slots(self) -> int:
        return self.core.free_slots

    @property
    def running(self) -> RunningList:
        return self.core.running

    def start(self) -> None:
        # the same order as WorkerRuntime.start: the heartbeat task first, then the fetch task
        self.env.process(self._heartbeat_loop())
        self.env.process(self._fetch_loop())

    def kill(self) -> None:
        """The process died: no more fetches, heartbeats or reports; its leases run out on the server."""
        self.alive = False
        for run in list(self._runs.values()):
            self._interrupt(run, "kill")
        self._runs.clear()
        self._wake_fetch()

    def cancel(self, job_id: str, attempt: int) -> None:
        """Push path (NotifyCancel)."""
        self._perform(self.core.cancel((job_id, attempt)))

    # ------------------------------------------------------------------ performing actions
    def _perform(self, actions: list[Action]) -> AttemptStep | None:
        """Performs the actions for others; returns the one addressed to the calling supervisor."""
        step: AttemptStep | None = None
        for action in actions:
            if isinstance(action, ATTEMPT_STEPS):  # the most frequent: three per job
                run = self._runs.get(action.key) if self.core.carry_reports else None
                if run is not None and run.carried is not None and not run.carried.triggered:
                    run.carried.succeed(action)  # the verdict on a report a fetch carried
                else:
                    step = action
            elif isinstance(action, Launch):
                self._launch(action.assignment)
            elif isinstance(action, WakeFetch):
                self._wake_fetch()
            elif isinstance(action, Interrupt):
                run = self._runs.get(action.key)
                if run is not None:
                    self._interrupt(run, action.reason)
            elif isinstance(action, Discard) and action.reason == "no free slot":
                self.dropped += 1
        return step

    def _wake_fetch(self) -> None:
        if self._fetch_wake is not None and not self._fetch_wake.triggered:
            self._fetch_wake.succeed()

    def _interrupt(self, run: _Run, reason: str) -> None:
        if run.sleeping and run.process is not None:
            run.sleeping = False  # one interrupt; the core knows why when it lands
            run.process.interrupt(reason)

    # ------------------------------------------------------------------ loops
    def _fetch_loop(self) -> SimGen[None]:
        env = self.env
        core = self.core
        while self.alive:
            step = core.next_fetch(env._now)
            if step is None:
                return
            if isinstance(step, Fetch):
                verdicts: list[DtqError | None] = []
                try:
                    if step.reports:
                        backend: Any = self.backend  # carries_reports: it has fetch_and_report
                        assignments, verdicts = yield from backend.fetch_and_report(
                            self, step.free_slots, step.wait, step.reports
                        )
                    else:
                        assignments = yield from self.backend.fetch(self, step.free_slots, step.wait)
                except DtqError:
                    if not self.alive:
                        return
                    core.fetch_failed(env._now)
                    self._perform(core.carried_failed(env._now))
                    continue
                if not self.alive:
                    return
                self.reports += sum(1 for verdict in verdicts if verdict is None)
                self._perform(core.fetched(env._now, assignments, verdicts))
            elif isinstance(step, AwaitSlot):
                self._fetch_wake = simpy.Event(env)
                yield self._fetch_wake
            elif step.wakeable:
                self._fetch_wake = simpy.Event(env)
                yield self._fetch_wake | env.timeout(step.seconds)
            else:
                yield env.timeout(step.seconds)

    def _heartbeat_loop(self) -> SimGen[None]:
        env = self.env
        core = self.core
        while self.alive:
            beat = core.heartbeat(env._now)
            reply: tuple[RunningList, RunningList] | HeartbeatReply | None
            try:
                reply = yield from self.backend.heartbeat(
                    self, beat.total_slots, beat.free_slots, beat.running
                )
            except DtqError:
                reply = None
            if not self.alive:
                return
            if reply is None:
                core.heartbeat_failed(env._now)
            else:
                if not isinstance(reply, HeartbeatReply):
                    reply = HeartbeatReply(*reply)
                self._perform(core.heartbeat_replied(env._now, reply))
            # fixed rate: a slow heartbeat does not stretch the interval
            yield env.timeout(core.heartbeat_wait(env._now))

    # ------------------------------------------------------------------ attempts
    def _launch(self, assignment: Assignment) -> None:
        run = _Run(assignment)
        self._runs[run.key] = run
        self.launched += 1
        self.executions.append(run.key)
        run.process = self.env.process(self._supervise(run))

    def _supervise(self, run: _Run) -> SimGen[None]:
        env = self.env
        proc = self.proc
        core = self.core
        key = run.key
        yield proc.run(proc.cost("launch") + proc.byte_cost("launch", self.cluster.payload_of(key[0])))
        if not self.alive:
            return
        step = self._perform(core.begin(env._now, key))
        if isinstance(step, RunHandler):
            job = self.cluster.draws.get(key[0], _NO_JOB)
            run.sleeping = True
            try:
                actions = yield from self._handler(job, key, step.deadline)
            except simpy.Interrupt:
                if not self.alive:
                    return
                actions = core.handler_ended(env._now, key, _INTERRUPTED, raised=True)
            run.sleeping = False
            step = self._perform(actions)
        self._perform(core.released(env._now, key))
        if not self.alive:
            return
        if isinstance(step, Report):
            # the handler's end, the slot's release and the report's start are one loop step
            yield from self._report(run, step, pre=proc.cost("finish"))
        self._runs.pop(key, None)

    def _handler(self, job: JobDraw, key: Key, deadline: float) -> SimGen[list[Action]]:
        """The handler of `job`'s type, until it returns or its run deadline: the core's decision."""
        env = self.env
        core = self.core
        outcome: Outcome = Succeeded()
        wait = job.duration
        if job.job_type == "echo":
            wait = 0.0
        elif job.job_type == "fail":
            probability = job.param("probability", 1.0)
            retryable = job.param("retryable", True)
            if not (isinstance(probability, int | float) and 0 <= probability <= 1) or not isinstance(
                retryable, bool
            ):
                invalid = Failed(JobError("fail: bad parameters", False, "HANDLER_ERROR"))
                return core.handler_ended(env._now, key, invalid, raised=True)
            if attempt_uniform(job.seed, key[1]) < probability:  # drawn first, as the real handler does
                message = f"fail: injected failure (probability {probability:g})"
                outcome = Failed(JobError(message, retryable, "HANDLER_ERROR"))
        elif job.job_type == "cpu":
            fraction = 1.0 if job.cpu_fraction is None else job.cpu_fraction
            burn = job.duration * fraction
            wait = job.duration - burn
            proc = self.proc
            while burn > 1e-12:  # the thread's turns on the GIL, each behind what the loop was given
                if env._now >= deadline:
                    return core.deadline_passed(env._now, key)
                turn = min(GIL_SWITCH_INTERVAL, burn)
                burn -= turn
                yield proc.run(turn)
        limit = deadline - env._now
        if limit <= 0:
            return core.deadline_passed(env._now, key)
        yield env.timeout(min(wait, limit))
        if wait >= limit:
            return core.deadline_passed(env._now, key)
        return core.handler_ended(env._now, key, outcome, raised=isinstance(outcome, Failed))

    def _report(self, run: _Run, report: Report, pre: float) -> SimGen[None]:
        env = self.env
        core = self.core
        key, outcome = report.key, report.outcome
        if report.carried:  # a fetch carries it: the fetch loop hands over the verdict's step
            run.carried = simpy.Event(env)
            step = yield run.carried
            run.carried = None
            if not isinstance(step, RetryReport) or not self.alive:
                return
            yield env.timeout(step.delay)
            pre = 0.0
        while True:
            try:
                yield from self.backend.report(self, key[0], key[1], outcome, pre=pre)
            except DtqError as exc:
                if not self.alive:
                    return
                refusal = None if isinstance(exc, Unavailable) else str(exc)
                actions = core.report_failed(env._now, key, refusal)
            else:
                self.reports += 1
                actions = core.reported(env._now, key)
            step = self._perform(actions)
            if not isinstance(step, RetryReport) or not self.alive:
                return
            yield env.timeout(step.delay)
            pre = 0.0
