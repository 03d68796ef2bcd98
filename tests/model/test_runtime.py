"""model/runtime.py's WorkerCore: the worker runtime's rules, one at a time, and its invariants under
random event sequences (Hypothesis)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from model.errors import InvalidArgument, Unavailable
from model.job import Assignment, CancelledByWorker, Failed, JobError, JobSpec, Outcome, Succeeded
from model.runtime import (
    FETCH_BACKOFF_MAX,
    MIN_EMPTY_POLL,
    REPORT_BACKOFF_MAX,
    REPORT_GATHER,
    Action,
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
    Sleep,
    WakeFetch,
    WorkerCore,
    timeout_outcome,
)

LEASE = 5.0
SPEC = JobSpec.make("sleep")
BOOM = Failed(JobError("boom", True, "HANDLER_ERROR"))


def assignment(n: int, now: float = 0.0, attempt: int = 1, run_for: float = 100.0) -> Assignment:
    return Assignment(f"t-1-{n:010x}", attempt, SPEC, now + LEASE, now + run_for, "w1")


def key(n: int, attempt: int = 1) -> Key:
    return (f"t-1-{n:010x}", attempt)


def core(slots: int = 2, **kwargs: Any) -> WorkerCore:
    kwargs.setdefault("heartbeat_interval", 1.0)
    kwargs.setdefault("fetch_wait", 5.0)
    kwargs.setdefault("lease_duration", LEASE)
    return WorkerCore(slots, **kwargs)


def launched(c: WorkerCore, *numbers: int, now: float = 0.0, run_for: float = 100.0) -> None:
    step = c.next_fetch(now)
    assert isinstance(step, Fetch)
    actions = c.fetched(now, [assignment(n, now, run_for=run_for) for n in numbers])
    assert actions == [Launch(assignment(n, now, run_for=run_for)) for n in numbers]
    for n in numbers:
        assert c.begin(now, key(n)) == [RunHandler(key(n), now + run_for)]


# ---------------------------------------------------------------------------- fetch pacing
def test_fetch_asks_for_every_free_slot_one_fetch_at_a_time() -> None:
    c = core(slots=3)
    assert c.next_fetch(0.0) == Fetch(3, 5.0)
    c.fetched(0.2, [assignment(1)])
    assert c.next_fetch(0.2) == Fetch(2, 5.0)
    c.fetched(0.3, [assignment(2), assignment(3)])
    assert c.next_fetch(0.3) == AwaitSlot()
    assert c.released(0.4, key(2)) == [WakeFetch()]
    assert c.released(0.5, key(3)) == []  # the loop was woken already
    assert c.next_fetch(0.5) == Fetch(2, 5.0)


def test_an_empty_fetch_that_came_back_fast_pauses_once() -> None:
    c = core()
    c.next_fetch(1.0)
    c.fetched(1.0 + MIN_EMPTY_POLL / 2, [])
    assert c.next_fetch(1.03) == Sleep(MIN_EMPTY_POLL, wakeable=False)
    assert c.next_fetch(1.08) == Fetch(2, 5.0)
    c.fetched(6.08, [])  # a long-poll that ran its course: fetch again at once
    assert c.next_fetch(6.08) == Fetch(2, 5.0)


def test_fetch_backoff_doubles_to_its_cap_and_a_success_resets_it() -> None:
    c = core()
    delays = []
    for i in range(10):
        assert isinstance(c.next_fetch(float(i)), Fetch)
        delays.append(c.fetch_failed(float(i)))
        assert c.next_fetch(float(i)) == Sleep(delays[-1], wakeable=True)
    assert delays[:4] == [0.05, 0.1, 0.2, 0.4]
    assert max(delays) == FETCH_BACKOFF_MAX == delays[-1]
    c.next_fetch(20.0)
    c.fetched(20.1, [assignment(1)])
    c.next_fetch(20.1)
    assert c.fetch_failed(21.0) == 0.05


@pytest.mark.parametrize("success", ["heartbeat", "report"])
def test_any_successful_call_ends_a_fetch_backoff(success: str) -> None:
    c = core()
    launched(c, 1)
    assert c.handler_ended(0.5, key(1), Succeeded(), raised=False) == [Report(key(1), Succeeded())]
    c.next_fetch(1.0)
    c.fetch_failed(1.0)
    c.fetch_failed(1.0)  # as if twice: the next backoff is 0.1
    assert c.next_fetch(1.0) == Sleep(0.1, wakeable=True)
    if success == "heartbeat":
        c.heartbeat(1.05)
        actions = c.heartbeat_replied(1.06, HeartbeatReply())
    else:
        actions = c.reported(1.06, key(1))
    assert WakeFetch() in actions
    assert c.next_fetch(1.06) == Fetch(1, 5.0)
    c.fetch_failed(2.0)
    assert c.next_fetch(2.0) == Sleep(0.05, wakeable=True)  # the backoff starts over


def test_a_success_before_the_backoff_sleep_began_cancels_it() -> None:
    c = core()
    c.next_fetch(0.0)
    c.fetch_failed(0.0)
    c.heartbeat(0.01)
    assert c.heartbeat_replied(0.02, HeartbeatReply()) == []  # nothing to wake: not sleeping yet
    assert c.next_fetch(0.02) == Fetch(2, 5.0)


def test_no_fetch_after_stop_fetching() -> None:
    c = core()
    c.stop_fetching()
    assert c.next_fetch(0.0) is None


def test_assignments_beyond_the_free_slots_and_duplicates_are_discarded() -> None:
    c = core(slots=2)
    c.next_fetch(0.0)
    actions = c.fetched(0.1, [assignment(1), assignment(1), assignment(2), assignment(3)])
    assert actions == [
        Launch(assignment(1)),
        Discard(key(1), "duplicate"),
        Launch(assignment(2)),
        Discard(key(3), "no free slot"),
    ]
    assert c.free_slots == 0 and c.running == [key(1), key(2)]


# ---------------------------------------------------------------------------- heartbeats
def test_heartbeats_run_at_a_fixed_rate_and_carry_the_held_attempts() -> None:
    c = core(slots=3, heartbeat_interval=0.4)
    launched(c, 1, 2)
    beat = c.heartbeat(10.0)
    assert (beat.total_slots, beat.free_slots, beat.running) == (3, 1, [key(1), key(2)])
    assert beat.timeout == 2.0  # max(interval, 1 s) x 2
    assert c.heartbeat_wait(10.1) == pytest.approx(0.3)
    assert c.heartbeat_wait(10.9) == 0.0  # a slow call does not stretch the interval
    c.heartbeat_replied(10.1, HeartbeatReply(interval=0.25))
    assert c.heartbeat_wait(10.1) == pytest.approx(0.15)
    assert c.heartbeat(11.0).timeout == 2.0


def test_a_cancel_interrupts_and_the_outcome_is_cancelled_unless_the_handler_finished() -> None:
    c = core()
    launched(c, 1, 2)
    c.heartbeat(1.0)
    actions = c.heartbeat_replied(1.1, HeartbeatReply(cancel=[key(1), key(2)]))
    assert actions == [Interrupt(key(1), "cancel"), Interrupt(key(2), "cancel")]
    assert c.heartbeat_replied(2.1, HeartbeatReply(cancel=[key(1)])) == []  # asked once
    assert c.handler_ended(1.2, key(1), BOOM, raised=True) == [Report(key(1), CancelledByWorker())]
    assert c.handler_ended(1.2, key(2), Succeeded(b"x"), raised=False) == [Report(key(2), Succeeded(b"x"))]
    assert c.running == [key(1), key(2)]  # until their reports are through


def test_an_abandon_interrupts_and_nothing_is_reported_but_the_slot_waits_for_the_handler() -> None:
    c = core(slots=1)
    launched(c, 1)
    c.heartbeat(1.0)
    assert c.heartbeat_replied(1.1, HeartbeatReply(abandon=[key(1)])) == [Interrupt(key(1), "abandon")]
    assert c.running == [] and c.free_slots == 0
    assert c.handler_ended(1.5, key(1), BOOM, raised=True) == [Done(key(1), "abandoned")]
    c.released(1.5, key(1))
    assert c.free_slots == 1


def test_an_abandon_after_a_cancel_still_interrupts() -> None:
    c = core()
    launched(c, 1)
    assert c.cancel(key(1)) == [Interrupt(key(1), "cancel")]
    assert c.heartbeat_replied(1.0, HeartbeatReply(abandon=[key(1)])) == [Interrupt(key(1), "abandon")]
    assert c.cancel(key(9)) == []  # unknown attempts are ignored


# ---------------------------------------------------------------------------- one attempt
def test_begin_decides_what_runs() -> None:
    c = core(slots=4)
    c.next_fetch(0.0)
    late = Assignment("t-1-0000000004", 1, JobSpec.make("mystery"), 5.0, 1.0, "w1")
    c.fetched(0.0, [assignment(1), assignment(2), assignment(3), late])
    c.cancel(key(1))
    c.heartbeat(0.0)
    c.heartbeat_replied(0.0, HeartbeatReply(abandon=[key(2)]))
    assert c.begin(0.1, key(1)) == [Report(key(1), CancelledByWorker())]  # never starts
    assert c.begin(0.1, key(2)) == [Done(key(2), "abandoned")]
    (missing,) = c.begin(0.1, key(3), has_handler=False)
    assert isinstance(missing, Report) and isinstance(missing.outcome, Failed)
    assert missing.outcome.error.reason == "UNKNOWN_JOB_TYPE" and not missing.outcome.error.retryable
    (late_step,) = c.begin(2.0, ("t-1-0000000004", 1))
    assert isinstance(late_step, Report) and isinstance(late_step.outcome, Failed)
    assert late_step.outcome.error.reason == "TIMEOUT" and late_step.outcome.error.retryable


def test_the_run_deadline_reports_a_timeout_and_the_slot_waits_for_the_handler() -> None:
    c = core(slots=1)
    launched(c, 1, run_for=2.0)
    interrupt, report = c.deadline_passed(2.0, key(1))
    assert interrupt == Interrupt(key(1), "timeout")
    assert isinstance(report, Report) and isinstance(report.outcome, Failed)
    assert report.outcome.error.reason == "TIMEOUT"
    assert c.handler_ended(2.5, key(1), Succeeded(), raised=False) == []  # too late: TIMEOUT stands
    assert c.cancel(key(1)) == []  # its outcome is decided: nothing to interrupt
    assert c.free_slots == 0
    c.released(2.5, key(1))
    assert c.free_slots == 1


# ---------------------------------------------------------------------------- reports
def test_a_report_is_retried_with_a_capped_backoff_while_heartbeats_renew_its_lease() -> None:
    c = core(slots=1, heartbeat_interval=1.0)
    launched(c, 1)
    c.handler_ended(1.0, key(1), Succeeded(), raised=False)
    now, delays = 1.0, []
    for _ in range(12):
        c.heartbeat(now)
        c.heartbeat_replied(now, HeartbeatReply())  # the lease moves to now + 5
        (step,) = c.report_failed(now, key(1))
        assert isinstance(step, RetryReport)
        delays.append(step.delay)
        now += step.delay
    assert delays[:5] == [0.05, 0.1, 0.2, 0.4, 0.8]
    assert max(delays) == REPORT_BACKOFF_MAX
    assert c.reported(now, key(1))[0] == Done(key(1), "reported")
    assert c.running == []


def test_a_report_is_given_up_when_its_lease_estimate_runs_out() -> None:
    c = core(slots=1)
    launched(c, 1)  # leased at 0 until 5 (the assignment's deadline)
    c.handler_ended(1.0, key(1), Succeeded(), raised=False)
    c.heartbeat(2.0)
    c.heartbeat_replied(2.5, HeartbeatReply(lease_duration=4.0))  # renewed when sent: until 6.0
    assert c.lease_until(key(1)) == 6.0
    now = 3.0
    while True:
        (step,) = c.report_failed(now, key(1))
        if isinstance(step, Done):
            break
        assert isinstance(step, RetryReport) and now + step.delay <= 6.0
        now += step.delay
    assert step == Done(key(1), "lease lost") and now == pytest.approx(6.0)
    assert c.running == []


def test_a_refused_report_is_not_retried_and_an_abandoned_one_stops() -> None:
    c = core()
    launched(c, 1, 2)
    c.handler_ended(1.0, key(1), Succeeded(), raised=False)
    c.handler_ended(1.0, key(2), Succeeded(), raised=False)
    assert c.report_failed(1.1, key(1), "job not found") == [Done(key(1), "refused", "job not found")]
    c.heartbeat(1.2)
    assert c.heartbeat_replied(1.2, HeartbeatReply(abandon=[key(2)])) == []  # no handler to stop
    assert c.report_failed(1.3, key(2)) == [Done(key(2), "abandoned")]
    assert c.running == []


def test_the_lease_is_not_renewed_for_attempts_the_heartbeat_did_not_carry() -> None:
    c = core(slots=2)
    launched(c, 1)
    c.heartbeat(1.0)
    c.next_fetch(1.0)
    c.fetched(1.5, [assignment(2, now=1.5)])
    c.heartbeat_replied(1.6, HeartbeatReply())
    assert c.lease_until(key(1)) == 6.0
    assert c.lease_until(key(2)) == 6.5  # its assignment's, not 1.0 + 5


def test_stop_abandons_everything() -> None:
    c = core()
    launched(c, 1, 2)
    assert c.stop() == [Interrupt(key(1), "abandon"), Interrupt(key(2), "abandon")]
    assert c.running == [] and c.next_fetch(9.0) is None


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ValueError):
        WorkerCore(0, heartbeat_interval=1.0, fetch_wait=1.0)
    with pytest.raises(ValueError):
        WorkerCore(1, heartbeat_interval=0.0, fetch_wait=1.0)


# ---------------------------------------------------------------------------- report-and-fetch
def carrying(slots: int = 2) -> WorkerCore:
    return core(slots=slots, carry_reports=True)


def carried_fetch(ended: float) -> tuple[WorkerCore, object]:
    """A one-slot carrying core whose job 1 succeeded at `ended` with every slot busy (so its report
    waited), and the fetch step its slot's release then made."""
    c = carrying(slots=1)
    launched(c, 1)
    c.next_fetch(0.0)
    c.next_fetch(0.01)
    c.handler_ended(ended, key(1), Succeeded(), raised=False)
    c.released(ended, key(1))
    return c, c.next_fetch(ended)


def test_a_fetch_waits_briefly_for_the_reports_of_what_it_launched_and_carries_them() -> None:
    c = carrying(slots=3)
    assert c.next_fetch(0.0) == Fetch(3, 5.0)
    c.fetched(0.1, [assignment(1), assignment(2)])
    assert c.next_fetch(0.1) == Sleep(REPORT_GATHER, wakeable=True)  # for 1 and 2 to decide
    for n in (1, 2):
        assert c.begin(0.1, key(n)) == [RunHandler(key(n), 100.0)]
    assert c.handler_ended(0.101, key(1), Succeeded(b"1"), raised=False) == [
        Report(key(1), Succeeded(b"1"), carried=True)
    ]
    c.released(0.101, key(1))
    # the last one ends the wait at once
    assert c.handler_ended(0.102, key(2), BOOM, raised=True) == [
        Report(key(2), BOOM, carried=True),
        WakeFetch(),
    ]
    c.released(0.102, key(2))
    step = c.next_fetch(0.102)
    assert step == Fetch(3, 5.0, ((key(1), Succeeded(b"1")), (key(2), BOOM)))
    assert c.running == [key(1), key(2)]  # held (and heartbeaten) until the verdicts come back
    actions = c.fetched(0.2, [assignment(3, 0.2)], [None, InvalidArgument("no such job")])
    assert actions[:2] == [Done(key(1), "reported"), Done(key(2), "refused", "no such job")]
    assert Launch(assignment(3, 0.2)) in actions and c.running == [key(3)]


def test_the_gather_wait_runs_out_for_work_that_takes_longer() -> None:
    c = carrying()
    c.next_fetch(0.0)
    c.fetched(0.1, [assignment(1)])
    assert c.next_fetch(0.1) == Sleep(REPORT_GATHER, wakeable=True)
    assert c.next_fetch(0.1 + REPORT_GATHER) == Fetch(1, 5.0)  # no report came: fetch for the free slot
    # decided while that long-poll is in flight: the report goes on its own at once
    assert c.handler_ended(1.0, key(1), Succeeded(), raised=False) == [Report(key(1), Succeeded())]


def test_a_report_decided_with_every_slot_busy_rides_the_fetch_for_its_slot() -> None:
    c = carrying(slots=1)
    launched(c, 1)
    assert c.next_fetch(0.0) == Sleep(REPORT_GATHER, wakeable=True)
    assert c.next_fetch(0.01) == AwaitSlot()  # the wait ran out; no slot free
    assert c.handler_ended(1.0, key(1), Succeeded(), raised=False) == [
        Report(key(1), Succeeded(), carried=True)
    ]
    assert c.released(1.0, key(1)) == [WakeFetch()]  # the slot's release wakes the fetch loop
    assert c.next_fetch(1.0) == Fetch(1, 5.0, ((key(1), Succeeded()),))


def test_a_timeout_report_goes_on_its_own_its_slot_may_stay_taken() -> None:
    c = carrying(slots=1)
    launched(c, 1, run_for=1.0)
    c.next_fetch(0.0)
    assert c.next_fetch(0.01) == AwaitSlot()
    actions = c.deadline_passed(1.0, key(1))  # a thread that cannot be killed keeps its slot
    assert actions == [Interrupt(key(1), "timeout"), Report(key(1), timeout_outcome(1))]


def test_reports_go_at_once_asking_for_nothing_when_no_slot_is_free() -> None:
    c = carrying(slots=1)
    launched(c, 1)
    assert c.next_fetch(0.0) == Sleep(REPORT_GATHER, wakeable=True)
    assert c.handler_ended(0.001, key(1), Succeeded(), raised=False) == [
        Report(key(1), Succeeded(), carried=True),
        WakeFetch(),
    ]
    step = c.next_fetch(0.001)  # before the slot's release: nothing to ask for, the report goes now
    assert step == Fetch(0, 0.0, ((key(1), Succeeded()),))


def test_carried_reports_without_a_verdict_or_on_a_failed_call_are_retried_on_their_own() -> None:
    for failed_call in (False, True):
        c, step = carried_fetch(1.0)
        assert step == Fetch(1, 5.0, ((key(1), Succeeded()),))
        if failed_call:
            c.fetch_failed(1.1)
            actions = c.carried_failed(1.1)
        else:  # an older server: it ignored the reports and answered no verdicts
            actions = c.fetched(1.1, [])
        assert actions == [RetryReport(key(1), 0.05)]
        assert c.running == [key(1)]
        assert c.reported(1.2, key(1))[0] == Done(key(1), "reported")  # sent on its own


def test_an_unavailable_verdict_is_retried_and_a_lost_lease_ends_it() -> None:
    c, step = carried_fetch(1.0)
    assert step == Fetch(1, 5.0, ((key(1), Succeeded()),))
    assert c.fetched(1.1, [], [Unavailable("job service down")]) == [RetryReport(key(1), 0.05)]
    c2, step = carried_fetch(4.0)
    assert step == Fetch(1, 5.0, ((key(1), Succeeded()),))
    assert c2.fetched(6.0, [], [Unavailable("down")]) == [Done(key(1), "lease lost")]  # lease until 5


def test_an_abandoned_report_waiting_for_a_fetch_is_not_sent() -> None:
    c = carrying(slots=1)
    launched(c, 1)
    c.next_fetch(0.0)
    c.next_fetch(0.01)
    c.handler_ended(1.0, key(1), Succeeded(), raised=False)
    c.heartbeat(1.0)
    assert c.heartbeat_replied(1.0, HeartbeatReply(abandon=[key(1)])) == [Done(key(1), "abandoned")]
    c.released(1.0, key(1))
    assert c.next_fetch(1.0) == Fetch(1, 5.0)  # nothing carried


def test_stop_fetching_sends_the_waiting_reports_on_their_own() -> None:
    c = carrying(slots=2)
    launched(c, 1)
    assert c.next_fetch(0.0) == Sleep(REPORT_GATHER, wakeable=True)
    c.handler_ended(0.001, key(1), Succeeded(), raised=False)
    assert c.stop_fetching() == [RetryReport(key(1), 0.0)]
    assert c.next_fetch(0.01) is None


def test_without_carry_reports_nothing_changes() -> None:
    c = core(slots=1)
    launched(c, 1)
    assert c.next_fetch(0.0) == AwaitSlot()
    assert c.handler_ended(1.0, key(1), Succeeded(), raised=False) == [Report(key(1), Succeeded())]
    assert c.stop_fetching() == []


# ---------------------------------------------------------------------------- invariants
class WorkerCoreMachine(RuleBasedStateMachine):
    """Random interleavings of every event an adapter can feed; what the actions say must hold."""

    @initialize(slots=st.integers(1, 4), carry=st.booleans())
    def setup(self, slots: int, carry: bool) -> None:
        self.core = core(slots=slots, heartbeat_interval=0.5, lease_duration=2.0, carry_reports=carry)
        self.slots = slots
        self.carry = carry
        self.waiting: dict[Key, Outcome] = {}  # carried reports not yet on a fetch
        self.on_fetch: list[Key] = []  # the reports the fetch in flight carries
        self.answered: list[Key] = []  # carried reports answered (Done / RetryReport) by the last call
        self.now = 0.0
        self.next_job = 0
        self.fetch_in_flight = False
        self.handlers: dict[Key, None] = {}  # started, not yet ended (RunHandler seen)
        self.unbegun: dict[Key, None] = {}  # launched, supervisor not yet begun
        self.to_release: dict[Key, None] = {}  # handler ended (or never started): slot to release
        self.reporting: dict[Key, Outcome] = {}
        self.reported: set[Key] = set()
        self.abandoned: set[Key] = set()
        self.interrupted: dict[Key, str] = {}

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            if isinstance(action, Launch):
                k = (action.assignment.job_id, action.assignment.attempt)
                assert k not in self.handlers and k not in self.unbegun
                self.unbegun[k] = None
            elif isinstance(action, Interrupt):
                assert action.key in self.handlers or action.key in self.unbegun, action
                self.interrupted[action.key] = action.reason
                if action.reason == "abandon":
                    self.abandoned.add(action.key)
            elif isinstance(action, RunHandler):
                self.handlers[action.key] = None
            elif isinstance(action, Report):
                assert action.key not in self.reporting and action.key not in self.waiting, "one outcome"
                assert action.key not in self.abandoned
                assert self.carry or not action.carried
                assert not (action.carried and self.fetch_in_flight), "a long-poll never holds a report back"
                if action.carried:
                    self.waiting[action.key] = action.outcome
                else:
                    self.reporting[action.key] = action.outcome
            elif isinstance(action, Done):
                self.reporting.pop(action.key, None)
                self.waiting.pop(action.key, None)
                self.answered.append(action.key)
                assert action.key not in self.core.running
            elif isinstance(action, RetryReport):
                assert 0 <= action.delay <= REPORT_BACKOFF_MAX
                lease = self.core.lease_until(action.key)
                assert lease is not None and self.now + action.delay <= lease + 1e-9
                if action.key in self.waiting:  # a carried report now goes on its own
                    self.reporting[action.key] = self.waiting.pop(action.key)
                self.answered.append(action.key)

    @rule(dt=st.floats(0.0, 1.0))
    def time_passes(self, dt: float) -> None:
        self.now += dt

    @precondition(lambda self: not self.fetch_in_flight)
    @rule()
    def fetch_step(self) -> None:
        step = self.core.next_fetch(self.now)
        if isinstance(step, Fetch):
            assert step.free_slots == self.core.free_slots
            assert step.free_slots > 0 or (step.reports and step.wait == 0)
            carried = [k for k, _ in step.reports]
            assert carried == list(self.waiting)  # every waiting report, in the order decided
            for k, outcome in step.reports:
                assert self.waiting[k] == outcome
            self.on_fetch = carried
            self.fetch_in_flight = True
        elif isinstance(step, AwaitSlot):
            assert self.core.free_slots == 0 and not self.waiting

    @precondition(lambda self: self.fetch_in_flight)
    @rule(
        n=st.integers(0, 5),
        fail=st.booleans(),
        verdicts=st.lists(st.sampled_from(["ok", "unavailable", "refused"]), max_size=6),
    )
    def fetch_returns(self, n: int, fail: bool, verdicts: list[str]) -> None:
        self.fetch_in_flight = False
        carried, self.on_fetch = self.on_fetch, []
        self.answered = []
        if fail:
            assert 0 < self.core.fetch_failed(self.now) <= FETCH_BACKOFF_MAX
            self._apply(self.core.carried_failed(self.now))
        else:
            batch = []
            for _ in range(n):
                self.next_job += 1
                batch.append(assignment(self.next_job, self.now, run_for=3.0))
            before = self.core.free_slots
            errors = [
                None if v == "ok" else Unavailable("down") if v == "unavailable" else InvalidArgument("no")
                for v in verdicts[: len(carried)]  # fewer verdicts than reports: an older server
            ]
            actions = self.core.fetched(self.now, batch, errors)
            assert sum(isinstance(a, Launch) for a in actions) == min(n, before)
            self._apply(actions)
        # every carried report still held gets its answer: none is lost on the way
        for k in carried:
            assert k in self.answered or k in self.abandoned, k
        self.waiting = {k: o for k, o in self.waiting.items() if k not in carried}

    @precondition(lambda self: bool(self.unbegun))
    @rule(data=st.data(), has_handler=st.booleans())
    def supervisor_begins(self, data: st.DataObject, has_handler: bool) -> None:
        k = data.draw(st.sampled_from(sorted(self.unbegun)))
        del self.unbegun[k]
        actions = self.core.begin(self.now, k, has_handler)
        self._apply(actions)
        if not any(isinstance(a, RunHandler) for a in actions):
            self.to_release[k] = None

    @precondition(lambda self: bool(self.handlers))
    @rule(data=st.data(), how=st.sampled_from(["returned", "raised", "deadline"]))
    def handler_ends(self, data: st.DataObject, how: str) -> None:
        k = data.draw(st.sampled_from(sorted(self.handlers)))
        if how == "deadline":  # the handler is interrupted (and ends at once, here)
            self._apply(self.core.deadline_passed(self.now, k))
            del self.handlers[k]
        else:
            del self.handlers[k]
            outcome = Succeeded() if how == "returned" else BOOM
            actions = self.core.handler_ended(self.now, k, outcome, raised=how == "raised")
            if how == "raised" and self.interrupted.get(k) == "cancel" and k not in self.abandoned:
                # whatever it raised, it reports the cancel (on its own or carried: _apply checks which)
                (report,) = actions[:1]
                assert isinstance(report, Report) and (report.key, report.outcome) == (k, CancelledByWorker())
                assert all(not isinstance(a, Report) for a in actions[1:])
            self._apply(actions)
        self.to_release[k] = None

    @precondition(lambda self: bool(self.to_release))
    @rule(data=st.data())
    def slot_released(self, data: st.DataObject) -> None:
        k = data.draw(st.sampled_from(sorted(self.to_release)))
        del self.to_release[k]
        self._apply(self.core.released(self.now, k))

    @precondition(lambda self: self.carry and not self.fetch_in_flight)
    @rule()
    def stop_fetching(self) -> None:
        waiting = list(self.waiting)
        self.answered = []
        self._apply(self.core.stop_fetching())
        assert all(k in self.answered for k in waiting)  # they go on their own
        assert not self.waiting

    @precondition(lambda self: bool(self.reporting))
    @rule(data=st.data(), result=st.sampled_from(["ok", "unavailable", "refused"]))
    def report_answered(self, data: st.DataObject, result: str) -> None:
        k = data.draw(st.sampled_from(sorted(self.reporting)))
        if result == "ok":
            self._apply(self.core.reported(self.now, k))
            self.reporting.pop(k, None)
            self.reported.add(k)
        else:
            self._apply(self.core.report_failed(self.now, k, "no" if result == "refused" else None))

    @rule(data=st.data(), fail=st.booleans())
    def heartbeat(self, data: st.DataObject, fail: bool) -> None:
        beat = self.core.heartbeat(self.now)
        assert beat.running == self.core.running
        if fail:
            self.core.heartbeat_failed(self.now)
            return
        held = sorted(beat.running)
        cancel = data.draw(st.lists(st.sampled_from(held), unique=True)) if held else []
        abandon = data.draw(st.lists(st.sampled_from(held), unique=True)) if held else []
        self._apply(self.core.heartbeat_replied(self.now, HeartbeatReply(cancel, abandon)))
        # an abandoned attempt is never reported again, whether or not it had a handler to interrupt
        # (one whose report a fetch in flight carries gets that fetch's Done)
        self.abandoned.update(abandon)

    @invariant()
    def slots_add_up(self) -> None:
        if not hasattr(self, "core"):
            return
        c = self.core
        assert c.free_slots + c.busy == self.slots
        # a slot is held from Launch until released, whatever happened to the lease
        assert c.busy == len(self.unbegun) + len(self.handlers) + len(self.to_release)
        assert not set(c.running) & self.abandoned
        # a report waiting for a fetch is held (heartbeaten) until its answer, unless abandoned
        assert all(k in c.running or k in self.abandoned for k in self.waiting)


TestWorkerCoreMachine = WorkerCoreMachine.TestCase
TestWorkerCoreMachine.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)


@given(st.lists(st.floats(0.0, 0.2), min_size=1, max_size=30))
def test_report_retries_never_outlive_the_lease(gaps: list[float]) -> None:
    c = core(slots=1)
    launched(c, 1)
    c.handler_ended(0.1, key(1), Succeeded(), raised=False)
    now = 0.1
    for gap in gaps:
        now += gap
        (step,) = c.report_failed(now, key(1))
        if isinstance(step, Done):
            assert step.reason == "lease lost" and now >= LEASE
            return
        assert isinstance(step, RetryReport) and now + step.delay <= LEASE
