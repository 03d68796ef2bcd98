"""realsys/worker/runtime.py's WorkerRuntime in simulated time.

Same loops, same rules: a fetch loop that long-polls for up to `free` jobs whenever a slot is free
(one fetch in flight at most, a short pause after an empty fetch that came back fast); a heartbeat
loop at a fixed rate that stops the attempts the backend names (cancel: report CancelledByWorker;
abandon: drop silently); one supervisor per attempt that runs the handler, enforces the run deadline
and reports. Handlers are `sleep` jobs of the trace's duration: they hold a slot, not a CPU.

The backend is the design's: Design B's node calls its Scheduler in-process (and steals), Design A's
worker process calls the coordinator over RPC. Its methods are generators in simulated time.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import simpy

from model.job import Assignment, CancelledByWorker, Failed, JobError, Outcome, Succeeded
from sim.cpu import Proc
from sim.engine import SimGen

if TYPE_CHECKING:
    from sim.engine import Cluster

RunningList = list[tuple[str, int]]


class WorkerBackend(Protocol):
    def fetch(self, worker: SimWorker, free_slots: int, wait: float) -> SimGen[list[Assignment]]: ...

    def heartbeat(
        self, worker: SimWorker, total_slots: int, free_slots: int, running: RunningList
    ) -> SimGen[tuple[RunningList, RunningList] | None]: ...

    def report(
        self, worker: SimWorker, job_id: str, attempt: int, outcome: Outcome, pre: float = 0.0
    ) -> SimGen[None]:
        """`pre`: the worker's CPU in the same loop step before the report goes out."""
        ...


@dataclass(eq=False, slots=True)
class _Attempt:
    assignment: Assignment
    process: simpy.Process | None = None
    stop_reason: str | None = None  # "cancel", "abandon" or "kill"
    sleeping: bool = False  # in the handler: an interrupt may be thrown into the supervisor

    @property
    def key(self) -> tuple[str, int]:
        return (self.assignment.job_id, self.assignment.attempt)


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
        self.heartbeat_interval = params.core.heartbeat_interval
        self.fetch_wait = params.fetch_wait
        self.min_empty_poll = params.min_empty_poll
        self.alive = True
        self._attempts: dict[tuple[str, int], _Attempt] = {}
        self._busy = 0
        self._slot_freed: simpy.Event | None = None
        self.launched = 0
        self.reports = 0
        self.dropped = 0
        # every execution start of every worker of the run, (job id, attempt): duplicates are jobs
        # started more than once (model.audit.duplicate_jobs); shared across restarts
        self.executions: list[tuple[str, int]] = cluster.__dict__.setdefault("executions", [])

    @property
    def free_slots(self) -> int:
        return max(0, self.slots - self._busy)

    @property
    def running(self) -> RunningList:
        return list(self._attempts)

    def start(self) -> None:
        # the same order as WorkerRuntime.start: the heartbeat task first, then the fetch task
        self.env.process(self._heartbeat_loop())
        self.env.process(self._fetch_loop())

    def kill(self) -> None:
        """The process died: no more fetches, heartbeats or reports; its leases run out on the server."""
        self.alive = False
        for attempt in list(self._attempts.values()):
            self._stop(attempt.key, "kill")
        self._attempts.clear()
        if self._slot_freed is not None and not self._slot_freed.triggered:
            self._slot_freed.succeed()

    def cancel(self, job_id: str, attempt: int) -> None:
        """Push path (NotifyCancel)."""
        self._stop((job_id, attempt), "cancel")

    def apply_heartbeat(self, cancel: RunningList, abandon: RunningList) -> None:
        for key in abandon:
            self._stop((key[0], key[1]), "abandon")
        for key in cancel:
            self._stop((key[0], key[1]), "cancel")

    # ------------------------------------------------------------------ loops
    def _fetch_loop(self) -> SimGen[None]:
        env = self.env
        while self.alive:
            free = self.free_slots
            if free == 0:
                self._slot_freed = simpy.Event(env)
                yield self._slot_freed
                continue
            began = env.now
            assignments = yield from self.backend.fetch(self, free, self.fetch_wait)
            if not self.alive:
                return
            for assignment in assignments:
                self._launch(assignment)
            if not assignments and env.now - began < self.min_empty_poll:
                yield env.timeout(self.min_empty_poll)

    def _heartbeat_loop(self) -> SimGen[None]:
        env = self.env
        while self.alive:
            began = env.now
            reply = yield from self.backend.heartbeat(self, self.slots, self.free_slots, self.running)
            if not self.alive:
                return
            if reply is not None:
                self.apply_heartbeat(*reply)
            # fixed rate: a slow heartbeat does not stretch the interval
            yield env.timeout(max(0.0, self.heartbeat_interval - (env.now - began)))

    # ------------------------------------------------------------------ attempts
    def _launch(self, assignment: Assignment) -> None:
        key = (assignment.job_id, assignment.attempt)
        if key in self._attempts:
            return
        if self.free_slots == 0:
            self.dropped += 1  # the backend broke the free_slots contract; the lease will expire
            return
        attempt = _Attempt(assignment)
        self._attempts[key] = attempt
        self._busy += 1
        self.launched += 1
        self.executions.append(key)
        attempt.process = self.env.process(self._supervise(attempt))

    def _supervise(self, attempt: _Attempt) -> SimGen[None]:
        env = self.env
        proc = self.proc
        a = attempt.assignment
        yield proc.run(proc.cost("launch"))
        outcome: Outcome | None
        if not self.alive:
            return
        if attempt.stop_reason == "abandon":
            outcome = None
        elif attempt.stop_reason == "cancel":
            outcome = CancelledByWorker()
        elif env.now >= a.run_deadline:
            outcome = _timeout(a)
        else:
            duration = self.cluster.durations.get(a.job_id, 0.0)
            limit = a.run_deadline - env.now
            attempt.sleeping = True
            try:
                yield env.timeout(min(duration, limit))
                outcome = Succeeded() if duration < limit else _timeout(a)
            except simpy.Interrupt:
                outcome = None if attempt.stop_reason in ("abandon", "kill") else CancelledByWorker()
            attempt.sleeping = False
        self._release_slot()
        if not self.alive:
            return
        if outcome is None:
            self._attempts.pop(attempt.key, None)
            return
        # the handler's end, the slot's release and the report's start are one loop step
        yield from self.backend.report(self, a.job_id, a.attempt, outcome, pre=proc.cost("finish"))
        self.reports += 1
        self._attempts.pop(attempt.key, None)

    def _release_slot(self) -> None:
        self._busy -= 1
        if self._slot_freed is not None and not self._slot_freed.triggered:
            self._slot_freed.succeed()

    def _stop(self, key: tuple[str, int], reason: str) -> None:
        attempt = self._attempts.get(key)
        if attempt is None:
            return
        if reason in ("abandon", "kill"):
            self._attempts.pop(key, None)  # never heartbeat or report it again
        if attempt.stop_reason is None or reason in ("abandon", "kill"):
            attempt.stop_reason = reason
        if attempt.sleeping and attempt.process is not None:
            attempt.sleeping = False  # one interrupt; the reason is read when it lands
            attempt.process.interrupt(reason)


def _timeout(a: Assignment) -> Failed:
    return Failed(JobError(f"attempt {a.attempt} ran past its deadline", retryable=True, reason="TIMEOUT"))
