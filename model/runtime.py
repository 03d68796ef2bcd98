"""The worker runtime's decisions, written once. realsys/worker/runtime.py (asyncio, threads, handlers)
and sim/worker.py (SimPy) feed events in (`now` passed in) and perform the actions that come out.

A worker runs leased attempts in N slots with three kinds of activity:
- the fetch loop asks `next_fetch(now)`: Fetch (one in flight at most, for all free slots), AwaitSlot
  (no slot free: a WakeFetch ends the wait), or Sleep (MIN_EMPTY_POLL after an empty fetch that came
  back fast; a capped exponential backoff after a failed fetch, which any successful call ends at once
  with WakeFetch, so a backend that is back is used at once);
- the heartbeat loop sends `heartbeat(now)` at a fixed rate (`heartbeat_wait`: a slow call does not
  stretch the interval). A reply's `cancel` interrupts the handler, whose outcome is then reported as
  CancelledByWorker (unless it finished anyway); `abandon` interrupts it and nothing is reported (the
  lease is gone). A reply renews, in the worker's own estimate, the leases of the attempts it carried;
- one supervisor per attempt: `begin` says RunHandler (until the run deadline) or what to report at
  once; `deadline_passed` interrupts the handler and reports a TIMEOUT; `handler_ended` decides the
  report; `released` frees the slot when the handler really ended (a thread cannot be killed: a timed
  out one keeps its slot until it returns).

Reports are kept and retried (capped backoff) until they go through, the backend refuses them for good
(stale, not found, invalid), or the attempt's lease is gone (a heartbeat reply abandoned it, or the
worker's estimate of the lease ran out: the last renewal it saw plus the lease duration). A report
dropped while the lease still held would make the job run again once the lease expired.

Report-and-fetch (`carry_reports`, for a backend whose fetch can carry reports: FetchWork's `reports`):
a report decided while no fetch is in flight and none is backing off rides the next Fetch instead of
a call of its own (`Report.carried`; the fetch loop's answer comes back to its supervisor as the Done
or RetryReport that `reported` / `report_failed` would give). A report decided while a fetch is in
flight goes on its own at once, as before: a long-poll never holds a report back; so does a TIMEOUT
report (its slot may stay taken by a thread that cannot be killed). After a fetch that
launched attempts, the next one waits up to `gather` seconds (a wakeable Sleep) for their reports to be
decided, ended as soon as all are, so work that ends at once (no-op jobs) is reported on the fetch that
asks for more. A carried report that did not go through (the call failed, or the backend answered no
verdict for it: an older server) is retried on its own exactly as report_failed says; fencing (the
attempt number, the lease holder) is the backend's, unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from model.errors import DtqError, Unavailable
from model.job import Assignment, CancelledByWorker, Failed, JobError, Outcome

MIN_EMPTY_POLL = 0.05  # pause after an empty fetch that came back faster than this (no long-poll)
FETCH_BACKOFF_MIN = 0.05
FETCH_BACKOFF_MAX = 5.0
REPORT_BACKOFF_MIN = 0.05
REPORT_BACKOFF_MAX = 1.0
REPORT_GATHER = 0.005  # carry_reports: how long a fetch waits for the reports of what it launched
HEARTBEAT_TIMEOUT_FLOOR = 1.0  # a heartbeat call may take max(interval, this) * 2

Key: TypeAlias = tuple[str, int]  # (job id, attempt)
StopReason = Literal["cancel", "abandon", "timeout"]
DoneReason = Literal["reported", "abandoned", "refused", "lease lost"]


# ---------------------------------------------------------------------------- fetch loop steps
@dataclass(frozen=True, slots=True)
class Fetch:
    """Long-poll the backend for up to `free_slots` assignments, waiting at most `wait` seconds, and
    send `reports` (carry_reports) in the same call; then `fetched` with the backend's verdicts."""

    free_slots: int
    wait: float
    reports: tuple[tuple[Key, Outcome], ...] = ()


@dataclass(frozen=True, slots=True)
class AwaitSlot:
    """No slot is free: wait for WakeFetch."""


@dataclass(frozen=True, slots=True)
class Sleep:
    """Wait `seconds` before asking again; `wakeable`: a backoff that WakeFetch ends early."""

    seconds: float
    wakeable: bool


FetchStep: TypeAlias = Fetch | AwaitSlot | Sleep | None  # None: fetching has stopped


# ---------------------------------------------------------------------------- heartbeats
@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Send a heartbeat with these fields; give up on the call after `timeout` seconds."""

    total_slots: int
    free_slots: int
    running: list[Key]
    timeout: float


@dataclass(frozen=True, slots=True)
class HeartbeatReply:
    """What a backend answered to a heartbeat (the WorkerHeartbeat response)."""

    cancel: Sequence[Key] = ()
    abandon: Sequence[Key] = ()
    interval: float = 0.0  # <= 0: keep the current interval
    lease_duration: float = 0.0  # <= 0: not said; keep what the worker knew


# ---------------------------------------------------------------------------- actions
@dataclass(frozen=True, slots=True)
class Launch:
    """Start a supervisor for this attempt (it holds a slot from now on)."""

    assignment: Assignment


@dataclass(frozen=True, slots=True)
class Discard:
    """An assignment that is not run: a second delivery of a running attempt, or one beyond the free
    slots (the backend broke the contract; the lease expires and the job runs again)."""

    key: Key
    reason: Literal["duplicate", "no free slot"]


@dataclass(frozen=True, slots=True)
class WakeFetch:
    """End the fetch loop's AwaitSlot, or its backoff Sleep."""


@dataclass(frozen=True, slots=True)
class Interrupt:
    """Ask the attempt's handler to stop. "cancel": keep waiting for it and report what it returns;
    "abandon": stop waiting, nothing is reported; "timeout": its TIMEOUT report follows at once."""

    key: Key
    reason: StopReason


@dataclass(frozen=True, slots=True)
class RunHandler:
    """To the attempt's supervisor: run the handler, and call `deadline_passed` at `deadline`."""

    key: Key
    deadline: float


@dataclass(frozen=True, slots=True)
class Report:
    """To the attempt's supervisor: send this outcome (then `reported` or `report_failed`).
    `carried`: the next Fetch sends it; wait for the Done or RetryReport addressed to this attempt."""

    key: Key
    outcome: Outcome
    carried: bool = False


@dataclass(frozen=True, slots=True)
class RetryReport:
    """To the attempt's supervisor: send the same outcome again after `delay` seconds."""

    key: Key
    delay: float


@dataclass(frozen=True, slots=True)
class Done:
    """To the attempt's supervisor: nothing more to do (besides releasing its slot)."""

    key: Key
    reason: DoneReason
    detail: str = ""


Action: TypeAlias = Launch | Discard | WakeFetch | Interrupt | RunHandler | Report | RetryReport | Done
AttemptStep: TypeAlias = RunHandler | Report | RetryReport | Done  # the actions addressed to a supervisor
ATTEMPT_STEPS = (RunHandler, Report, RetryReport, Done)


def timeout_outcome(attempt: int) -> Failed:
    return Failed(JobError(f"attempt {attempt} ran past its run deadline", retryable=True, reason="TIMEOUT"))


def no_handler_outcome(job_type: str) -> Failed:
    return Failed(
        JobError(f"this worker has no handler for job type {job_type!r}", False, "UNKNOWN_JOB_TYPE")
    )


@dataclass(slots=True)
class _Held:
    """An attempt whose lease the worker holds: running, or finished with its report not through."""

    assignment: Assignment
    lease_until: float  # the worker's estimate of when the lease runs out
    stop: StopReason | None = None
    outcome: Outcome | None = None  # decided: being reported
    report_delay: float = 0.0


class WorkerCore:
    """One worker's slots, fetch pacing, heartbeats, stops and reports (see the module docstring)."""

    def __init__(
        self,
        slots: int,
        *,
        heartbeat_interval: float,
        fetch_wait: float,
        lease_duration: float = 0.0,
        min_empty_poll: float = MIN_EMPTY_POLL,
        carry_reports: bool = False,
        gather: float = REPORT_GATHER,
    ) -> None:
        """`lease_duration` <= 0: unknown until a heartbeat reply says it (until then an attempt's lease
        is the deadline its assignment came with). `carry_reports`: report-and-fetch (module docstring),
        with fetches waiting up to `gather` seconds for the reports of what they launched."""
        if slots < 1:
            raise ValueError("a worker needs at least one slot")
        if heartbeat_interval <= 0 or fetch_wait < 0 or min_empty_poll < 0 or gather < 0:
            raise ValueError("heartbeat_interval must be > 0, fetch_wait, min_empty_poll and gather >= 0")
        self.slots = slots
        self.heartbeat_interval = heartbeat_interval
        self.fetch_wait = fetch_wait
        self.lease_duration = max(0.0, lease_duration)
        self.min_empty_poll = min_empty_poll
        self.carry_reports = carry_reports
        self.gather = gather
        self._outbox: dict[Key, Outcome] = {}  # carry_reports: decided, for the next Fetch
        self._carrying: list[Key] = []  # the reports on the fetch in flight
        self._gathering: set[Key] = set()  # launched by the last fetch, report not decided yet
        self._held: dict[Key, _Held] = {}  # in launch order: what heartbeats carry
        self._running: dict[Key, None] = {}  # handlers holding a slot (an abandoned one until it ends)
        self._fetching = True
        self._fetch_state: Literal["idle", "fetching", "await_slot", "backoff", "pause", "gather"] = "idle"
        self._fetch_began = 0.0
        self._fetch_delay = 0.0  # the last backoff; 0 after a success
        self._sleep: Sleep | None = None  # what next_fetch says before fetching again
        self._heartbeat_began = 0.0
        self._heartbeat_sent: list[Key] = []

    # ------------------------------------------------------------------ state
    @property
    def free_slots(self) -> int:
        return max(0, self.slots - len(self._running))

    @property
    def busy(self) -> int:
        return len(self._running)

    @property
    def running(self) -> list[Key]:
        """Attempts whose lease this worker keeps: running, or finished with the report not through."""
        return list(self._held)

    def lease_until(self, key: Key) -> float | None:
        held = self._held.get(key)
        return None if held is None else held.lease_until

    # ------------------------------------------------------------------ fetch loop
    def next_fetch(self, now: float) -> FetchStep:
        if not self._fetching:
            return None
        if self._sleep is not None:
            step, self._sleep = self._sleep, None
            self._fetch_state = "backoff" if step.wakeable else "pause"
            return step
        if self._gathering:
            if self._fetch_state != "gather":  # wait for the reports of what the last fetch launched
                self._fetch_state = "gather"
                return Sleep(self.gather, wakeable=True)
            self._gathering.clear()  # the wait ran out
        free = self.free_slots
        if free == 0 and not self._outbox:
            self._fetch_state = "await_slot"
            return AwaitSlot()
        self._fetch_state = "fetching"
        self._fetch_began = now
        if not self._outbox:
            return Fetch(free, self.fetch_wait)
        reports = tuple(self._outbox.items())
        self._outbox.clear()
        self._carrying = [key for key, _ in reports]
        # no slot free (a timed-out thread keeps its slot): the reports go at once, asking for nothing
        return Fetch(free, self.fetch_wait if free else 0.0, reports)

    def fetched(
        self,
        now: float,
        assignments: Sequence[Assignment],
        report_errors: Sequence[DtqError | None] = (),
    ) -> list[Action]:
        """The fetch came back. `report_errors`: the verdict on each report it carried, in order (None:
        through; Unavailable: not handled, try again; another error: refused for good); a report
        with no verdict (an older backend ignores carried reports) is tried again on its own."""
        self._fetch_state = "idle"
        self._fetch_delay = 0.0
        actions: list[Action] = self._carried_answered(now, report_errors) if self._carrying else []
        for assignment in assignments:
            key = (assignment.job_id, assignment.attempt)
            if key in self._held or key in self._running:
                actions.append(Discard(key, "duplicate"))
            elif self.free_slots == 0:
                actions.append(Discard(key, "no free slot"))
            else:
                self._held[key] = _Held(assignment, assignment.lease_deadline)
                self._running[key] = None
                actions.append(Launch(assignment))
                if self.carry_reports and self.gather > 0 and self._fetching:
                    self._gathering.add(key)
        if not assignments and now - self._fetch_began < self.min_empty_poll:
            self._sleep = Sleep(self.min_empty_poll, wakeable=False)  # a backend that does not long-poll
        return actions

    def fetch_failed(self, now: float) -> float:
        """Returns the backoff before the next fetch (next_fetch then says Sleep). The reports it
        carried, if any: `carried_failed`."""
        self._fetch_state = "idle"
        self._fetch_delay = min(FETCH_BACKOFF_MAX, max(FETCH_BACKOFF_MIN, self._fetch_delay * 2))
        self._sleep = Sleep(self._fetch_delay, wakeable=True)
        return self._fetch_delay

    def carried_failed(self, now: float) -> list[Action]:
        """The fetch that carried reports failed: each is handled as report_failed (not refused)."""
        return self._carried_answered(now, ())

    def _carried_answered(self, now: float, errors: Sequence[DtqError | None]) -> list[Action]:
        carried, self._carrying = self._carrying, []
        actions: list[Action] = []
        for index, key in enumerate(carried):
            error = errors[index] if index < len(errors) else Unavailable("no verdict on a carried report")
            if error is None:
                actions += self.reported(now, key)
            else:
                refusal = None if isinstance(error, Unavailable) else error.message
                actions += self.report_failed(now, key, refusal)
        return actions

    def stop_fetching(self) -> list[Action]:
        """No more fetches. Reports waiting for one, or on the one being stopped, go on their own now
        (RetryReport at once: a stopped call may or may not have delivered them)."""
        self._fetching = False
        self._gathering.clear()
        keys = [*self._carrying, *self._outbox]
        self._carrying, self._outbox = [], {}
        return [RetryReport(key, 0.0) for key in keys if key in self._held]

    def _backend_answered(self) -> list[Action]:
        """Any successful call: the backend is back, so a fetch backing off goes now."""
        self._fetch_delay = 0.0
        if self._sleep is not None and self._sleep.wakeable:
            self._sleep = None
        if self._fetch_state == "backoff":
            self._fetch_state = "idle"
            return [WakeFetch()]
        return []

    # ------------------------------------------------------------------ heartbeats
    def heartbeat(self, now: float) -> Heartbeat:
        self._heartbeat_began = now
        self._heartbeat_sent = list(self._held)
        timeout = max(self.heartbeat_interval, HEARTBEAT_TIMEOUT_FLOOR) * 2
        return Heartbeat(self.slots, self.free_slots, list(self._heartbeat_sent), timeout)

    def heartbeat_replied(self, now: float, reply: HeartbeatReply) -> list[Action]:
        if reply.interval > 0:
            self.heartbeat_interval = reply.interval
        if reply.lease_duration > 0:
            self.lease_duration = reply.lease_duration
        actions: list[Action] = []
        for job_id, attempt in reply.abandon:
            actions += self._stop((job_id, attempt), "abandon")
        for job_id, attempt in reply.cancel:
            actions += self._stop((job_id, attempt), "cancel")
        if self.lease_duration > 0:
            # renewed when the server handled the call, so no earlier than when it was sent
            until = self._heartbeat_began + self.lease_duration
            for key in self._heartbeat_sent:
                held = self._held.get(key)
                if held is not None and until > held.lease_until:
                    held.lease_until = until
        return actions + self._backend_answered()

    def heartbeat_failed(self, now: float) -> None:
        """Nothing is renewed; the next heartbeat goes at its usual time."""

    def heartbeat_wait(self, now: float) -> float:
        """Seconds until the next heartbeat: fixed rate from the last one's start."""
        return max(0.0, self.heartbeat_interval - (now - self._heartbeat_began))

    # ------------------------------------------------------------------ stops
    def cancel(self, key: Key) -> list[Action]:
        """Push path (NotifyCancel): as a heartbeat reply's cancel. Unknown attempts are ignored."""
        return self._stop(key, "cancel")

    def stop(self) -> list[Action]:
        """The runtime stops: every attempt is abandoned (no report; the leases expire on the server)."""
        self._fetching = False
        actions: list[Action] = []
        for key in list(self._held):
            actions += self._stop(key, "abandon")
        return actions

    def _stop(self, key: Key, reason: StopReason) -> list[Action]:
        held = self._held.get(key)
        if held is None:
            return []
        if reason == "abandon":
            del self._held[key]  # never heartbeat or report it again
            if self._outbox.pop(key, None) is not None:
                return [Done(key, "abandoned")]  # its supervisor waits for the fetch that carries it
        elif held.stop is not None:
            return []  # already stopping
        before, held.stop = held.stop, reason
        if held.outcome is None and key in self._running and before != reason:
            return [Interrupt(key, reason)]
        return []

    # ------------------------------------------------------------------ one attempt
    def begin(self, now: float, key: Key, has_handler: bool = True) -> list[Action]:
        """The supervisor starts (after any launch work of its own)."""
        held = self._held.get(key)
        if held is None:
            return [Done(key, "abandoned")]
        a = held.assignment
        if held.stop == "cancel":
            return self._decide(held, CancelledByWorker())
        if not has_handler:
            return self._decide(held, no_handler_outcome(a.spec.job_type))
        if now >= a.run_deadline:
            return self._decide(held, timeout_outcome(a.attempt))
        return [RunHandler(key, a.run_deadline)]

    def deadline_passed(self, now: float, key: Key) -> list[Action]:
        held = self._held.get(key)
        if held is None:
            return [Done(key, "abandoned")]
        if held.outcome is not None:
            return []
        held.stop = "timeout"
        # on its own: the slot may stay taken by a thread that cannot be killed, and no fetch comes
        return [Interrupt(key, "timeout"), *self._decide(held, timeout_outcome(key[1]), carry=False)]

    def handler_ended(self, now: float, key: Key, outcome: Outcome, raised: bool) -> list[Action]:
        """The handler returned (`raised` False: `outcome` is what it returned) or raised / was stopped
        (`outcome` is the failure to report unless a cancel asked it to stop)."""
        held = self._held.get(key)
        if held is None:
            return [Done(key, "abandoned")]
        if held.outcome is not None:
            return []  # timed out: its report is already decided
        if raised and held.stop == "cancel":
            outcome = CancelledByWorker()  # whatever it raised, it stopped because it was asked to
        return self._decide(held, outcome)

    def released(self, now: float, key: Key) -> list[Action]:
        """The handler really ended (or never started): its slot is free."""
        self._running.pop(key, None)
        if self._fetch_state == "await_slot" and self.free_slots > 0:
            self._fetch_state = "idle"
            return [WakeFetch()]
        return []

    def _decide(self, held: _Held, outcome: Outcome, carry: bool = True) -> list[Action]:
        """`carry`: the attempt's slot is released next (its supervisor does it before reporting)."""
        held.outcome = outcome
        key = (held.assignment.job_id, held.assignment.attempt)
        state = self._fetch_state
        if not (
            carry
            and self.carry_reports
            and self._fetching
            and self._sleep is None
            and state in ("idle", "await_slot", "gather")
        ):
            return [Report(key, outcome)]  # a fetch is in flight or backing off: the report goes now
        self._outbox[key] = outcome
        actions: list[Action] = [Report(key, outcome, carried=True)]
        self._gathering.discard(key)
        # await_slot: the slot's release wakes the fetch loop (released), so it asks for that slot
        if state == "gather" and not self._gathering:
            self._fetch_state = "idle"
            actions.append(WakeFetch())
        return actions

    # ------------------------------------------------------------------ reports
    def reported(self, now: float, key: Key) -> list[Action]:
        self._held.pop(key, None)
        return [Done(key, "reported"), *self._backend_answered()]

    def report_failed(self, now: float, key: Key, refusal: str | None = None) -> list[Action]:
        """`refusal`: the backend said no for good (stale, not found, invalid); None: it could not be
        reached or was unavailable, so the report is tried again while the lease holds."""
        held = self._held.get(key)
        if held is None:
            return [Done(key, "abandoned")]
        if refusal is not None:
            del self._held[key]
            return [Done(key, "refused", refusal)]
        if now >= held.lease_until:
            del self._held[key]
            return [Done(key, "lease lost")]
        held.report_delay = min(REPORT_BACKOFF_MAX, max(REPORT_BACKOFF_MIN, held.report_delay * 2))
        return [RetryReport(key, min(held.report_delay, held.lease_until - now))]
