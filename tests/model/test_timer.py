"""model/timer.py: the core timer's re-arm rule, against a reference loop that performs it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from model.timer import MIN_REARM, TimerRule


class Core:
    def __init__(self, deadline: float | None) -> None:
        self.deadline = deadline

    def next_deadline(self) -> float | None:
        return self.deadline


def test_start_arms_at_the_deadline_or_stays_idle() -> None:
    core = Core(10.0)
    rule = TimerRule(core.next_deadline)
    assert rule.start()
    assert rule.armed_for == 10.0
    assert rule.delay(4.0) == 6.0
    assert rule.delay(12.0) == 0.0  # overdue: at once
    idle = TimerRule(Core(None).next_deadline)
    assert not idle.start()
    assert idle.armed_for is None


def test_poke_rearms_only_for_an_earlier_deadline() -> None:
    core = Core(10.0)
    rule = TimerRule(core.next_deadline)
    assert not rule.poke()  # not started: ignored
    rule.start()
    core.deadline = 20.0
    assert not rule.poke()  # later: the early wake-up is harmless
    assert rule.armed_for == 10.0
    core.deadline = 5.0
    assert rule.poke()
    assert rule.armed_for == 5.0
    core.deadline = None
    assert not rule.poke()


def test_an_early_firing_waits_out_the_rest() -> None:
    rule = TimerRule(Core(10.0).next_deadline)
    rule.start()
    assert not rule.fired(9.5)  # the loop's clock ran ahead
    assert rule.armed_for == 10.0
    assert rule.delay(9.5) == 0.5
    assert rule.fired(10.0)
    assert rule.armed_for is None


def test_rearm_after_a_firing_waits_at_least_min_rearm() -> None:
    core = Core(10.0)
    rule = TimerRule(core.next_deadline)
    rule.start()
    assert rule.fired(10.0)
    assert rule.rearm()  # a core whose deadline did not move past now
    assert rule.delay(10.0) == MIN_REARM
    core.deadline = None
    assert rule.fired(10.0 + MIN_REARM)
    assert not rule.rearm()
    assert rule.armed_for is None


def test_stop_makes_everything_idle() -> None:
    rule = TimerRule(Core(10.0).next_deadline)
    rule.start()
    rule.stop()
    assert rule.armed_for is None
    assert not rule.poke()
    assert not rule.rearm()


@given(
    st.lists(
        st.tuples(st.floats(0.0, 5.0), st.one_of(st.none(), st.floats(0.0, 100.0))), min_size=1, max_size=40
    )
)
def test_a_loop_performing_the_rule_fires_every_deadline_never_before_it(
    steps: list[tuple[float, float | None]],
) -> None:
    """A reference loop: at each step time passes, the core's deadline may move (then a poke). Every
    firing happens at or after the deadline it was armed for, and a due deadline is never missed
    for more than MIN_REARM past a firing."""
    core = Core(None)
    rule = TimerRule(core.next_deadline)
    now = 0.0
    handle: float | None = None  # when the armed handle fires
    if rule.start():
        handle = now + rule.delay(now)
    fired: list[tuple[float, float]] = []  # (time, the deadline it was armed for)
    for advance, deadline in steps:
        target = now + advance
        while handle is not None and handle <= target:
            now = handle
            armed = rule.armed_for
            handle = None
            if not rule.fired(now):
                handle = now + rule.delay(now)
                continue
            assert armed is not None
            fired.append((now, armed))
            if core.deadline is not None and core.deadline <= now:
                core.deadline = None  # handle_timer consumed it
            if rule.rearm():
                handle = now + rule.delay(now)
        now = target
        if deadline is not None:
            core.deadline = now + deadline
            if rule.poke():
                handle = now + rule.delay(now)
        # invariant: whenever the core has a deadline, a handle will fire no later than it
        if core.deadline is not None:
            assert handle is not None and handle <= max(core.deadline, now) + MIN_REARM + 1e-9
    for at, armed in fired:
        assert at >= armed
