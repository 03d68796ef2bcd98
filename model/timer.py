"""The core timer's re-arm rule, sans-I/O: when a driver wakes a core object at its next deadline.

The aioquic get_timer/handle_timer pattern: the core says `next_deadline()`; this rule says when the
driver's one timer handle fires. Adapters perform it: realsys/timer.py with `loop.call_later`,
sim/engine.py with a simpy timeout. Each method answers whether the adapter must (re-)arm its handle;
the delay to arm it with is `delay(now)` = max(deadline - now, min_delay).

- start: arm at the deadline (or stay idle when there is none).
- poke (after any core call that may have moved the deadline earlier): re-arm only when the deadline
  is earlier than the armed one; a later one keeps the early wake-up, which is harmless.
- fired (the armed handle fired at `now`): if `now` is still before the armed deadline, the loop's
  clock ran ahead of the core's (a monotonic loop clock against wall-clock deadlines): wait out the
  rest. Otherwise run the core's handle_timer, then `rearm`.
- rearm (after handle_timer): arm at the new deadline, but at least MIN_REARM later, so that a core
  whose deadline does not move past `now` cannot spin the loop.
"""

from __future__ import annotations

from collections.abc import Callable

# After a firing, wait at least this long before the next one.
MIN_REARM = 0.001


class TimerRule:
    __slots__ = ("_min_delay", "_next_deadline", "armed_for", "running")

    def __init__(self, next_deadline: Callable[[], float | None]) -> None:
        self._next_deadline = next_deadline
        self.armed_for: float | None = None  # the deadline the adapter's handle fires at; None: idle
        self.running = False
        self._min_delay = 0.0

    def start(self) -> bool:
        """True: arm a handle with `delay(now)`."""
        self.running = True
        return self._arm(0.0)

    def stop(self) -> None:
        """The adapter cancels its handle; pokes are ignored from now on."""
        self.running = False
        self.armed_for = None

    def poke(self) -> bool:
        """True: replace the armed handle (if any) with one at `delay(now)`. Cheap when False."""
        if not self.running:
            return False
        deadline = self._next_deadline()
        if deadline is not None and (self.armed_for is None or deadline < self.armed_for):
            self.armed_for = deadline
            self._min_delay = 0.0
            return True
        return False

    def fired(self, now: float) -> bool:
        """The armed handle fired at `now`. True: run handle_timer(now), then `rearm()`. False: it
        fired early (the loop's clock ran ahead): arm again with `delay(now)` to wait out the rest."""
        deadline = self.armed_for
        if deadline is not None and now < deadline:
            self._min_delay = 0.0
            return False
        self.armed_for = None
        return True

    def rearm(self) -> bool:
        """After handle_timer. True: arm with `delay(now)`; False: nothing to wait for (or stopped)."""
        if not self.running:
            return False
        return self._arm(MIN_REARM)

    def delay(self, now: float) -> float:
        """How long from `now` the handle to arm waits: max(deadline - now, the rule's minimum)."""
        assert self.armed_for is not None
        return max(self.armed_for - now, self._min_delay)

    def _arm(self, min_delay: float) -> bool:
        deadline = self._next_deadline()
        self.armed_for = deadline
        self._min_delay = min_delay
        return deadline is not None
