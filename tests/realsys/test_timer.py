from __future__ import annotations

import asyncio
import logging
import time

import pytest

from realsys.timer import CoreTimer

pytestmark = pytest.mark.timeout(30)


class FakeCore:
    """A core with a list of wall-clock deadlines; handle_timer drops those that are due."""

    def __init__(self, *deadlines: float) -> None:
        self.deadlines = sorted(deadlines)
        self.fired: list[float] = []
        self.fail_next = False
        self.event = asyncio.Event()

    def next_deadline(self) -> float | None:
        return self.deadlines[0] if self.deadlines else None

    def handle_timer(self, now: float) -> None:
        self.fired.append(now)
        self.deadlines = [d for d in self.deadlines if d > now]
        self.event.set()
        if self.fail_next:
            self.fail_next = False
            raise RuntimeError("core bug")

    async def wait_fired(self, count: int, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while len(self.fired) < count:
                self.event.clear()
                await self.event.wait()


async def test_fires_at_the_deadline() -> None:
    deadline = time.time() + 0.1
    core = FakeCore(deadline)
    timer = CoreTimer(core.next_deadline, core.handle_timer)
    timer.start()
    assert timer.armed_for == deadline
    await core.wait_fired(1)
    assert deadline <= core.fired[0] < deadline + 0.5
    assert timer.armed_for is None  # nothing left to wait for
    await asyncio.sleep(0.05)
    assert len(core.fired) == 1
    timer.stop()


async def test_fires_each_deadline_in_turn() -> None:
    now = time.time()
    deadlines = [now + 0.02, now + 0.06, now + 0.1]
    core = FakeCore(*deadlines)
    timer = CoreTimer(core.next_deadline, core.handle_timer)
    timer.start()
    await core.wait_fired(3)
    assert all(fired >= deadline for fired, deadline in zip(core.fired, deadlines, strict=True))
    timer.stop()


async def test_a_past_deadline_fires_at_once() -> None:
    core = FakeCore(time.time() - 100)
    timer = CoreTimer(core.next_deadline, core.handle_timer)
    timer.start()
    await core.wait_fired(1, timeout=1.0)
    timer.stop()


async def test_poke_moves_the_timer_earlier() -> None:
    core = FakeCore(time.time() + 60)
    timer = CoreTimer(core.next_deadline, core.handle_timer)
    timer.start()
    soon = time.time() + 0.05
    core.deadlines.insert(0, soon)
    timer.poke()
    assert timer.armed_for == soon
    await core.wait_fired(1, timeout=2.0)
    assert core.fired[0] >= soon
    assert timer.armed_for is not None and timer.armed_for > time.time() + 30  # back to the late one
    timer.stop()


async def test_poke_from_idle_arms_the_timer() -> None:
    core = FakeCore()
    timer = CoreTimer(core.next_deadline, core.handle_timer)
    timer.start()
    assert timer.armed_for is None
    await asyncio.sleep(0.02)
    assert core.fired == []
    core.deadlines = [time.time() + 0.03]
    timer.poke()
    await core.wait_fired(1, timeout=2.0)


async def test_poke_does_not_postpone() -> None:
    first = time.time() + 0.05
    core = FakeCore(first)
    timer = CoreTimer(core.next_deadline, core.handle_timer)
    timer.start()
    core.deadlines = [first + 60]  # moved later: the early wake-up is harmless, so keep it
    timer.poke()
    assert timer.armed_for == first
    timer.stop()


async def test_callback_errors_are_logged_and_the_timer_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    now = time.time()
    core = FakeCore(now + 0.01, now + 0.05)
    core.fail_next = True
    timer = CoreTimer(core.next_deadline, core.handle_timer)
    with caplog.at_level(logging.ERROR, logger="realsys.timer"):
        timer.start()
        await core.wait_fired(2)
    assert any("timer callback failed" in r.getMessage() and r.exc_info for r in caplog.records)
    timer.stop()


async def test_stop_cancels() -> None:
    core = FakeCore(time.time() + 0.03)
    timer = CoreTimer(core.next_deadline, core.handle_timer)
    timer.start()
    timer.stop()
    timer.poke()  # ignored once stopped
    await asyncio.sleep(0.1)
    assert core.fired == []
    assert timer.armed_for is None


async def test_a_core_stuck_in_the_past_does_not_spin_the_loop() -> None:
    calls: list[float] = []
    timer = CoreTimer(lambda: 0.0, calls.append)  # a buggy core: always due
    timer.start()
    await asyncio.sleep(0.1)
    timer.stop()
    assert 0 < len(calls) <= 150  # bounded by the 1 ms re-arm floor
