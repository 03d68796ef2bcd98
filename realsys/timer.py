"""Wakes a sans-I/O core object at its next deadline (the aioquic get_timer/handle_timer pattern).

Deadlines are wall-clock seconds (time.time()); the loop sleeps `deadline - time.time()`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from realsys.logs import get_logger

log = get_logger(__name__)

# After a firing, wait at least this long before the next one: a core whose deadline does not move past
# `now` must not spin the loop.
_MIN_REARM = 0.001


class CoreTimer:
    def __init__(self, next_deadline: Callable[[], float | None], on_timer: Callable[[float], None]) -> None:
        self._next_deadline = next_deadline
        self._on_timer = on_timer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None
        self._armed_for: float | None = None  # the wall-clock deadline the handle fires at

    @property
    def armed_for(self) -> float | None:
        """The deadline the timer will fire at, or None when idle (for tests and debugging)."""
        return self._armed_for

    def start(self) -> None:
        """Needs a running loop."""
        self._loop = asyncio.get_running_loop()
        self._arm(0.0)

    def poke(self) -> None:
        """Call after any core call that may have moved the deadline earlier. Cheap when it did not."""
        if self._loop is None:
            return
        deadline = self._next_deadline()
        if deadline is not None and (self._armed_for is None or deadline < self._armed_for):
            self._set(deadline, 0.0)

    def stop(self) -> None:
        self._cancel()
        self._loop = None

    def _arm(self, min_delay: float) -> None:
        deadline = self._next_deadline()
        if deadline is None:
            self._cancel()
        else:
            self._set(deadline, min_delay)

    def _set(self, deadline: float, min_delay: float) -> None:
        assert self._loop is not None
        self._cancel()
        delay = max(deadline - time.time(), min_delay)
        self._handle = self._loop.call_later(delay, self._fire)
        self._armed_for = deadline

    def _cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None
        self._armed_for = None

    def _fire(self) -> None:
        deadline = self._armed_for
        self._handle = None
        self._armed_for = None
        now = time.time()
        if deadline is not None and now < deadline:
            # the loop's monotonic clock ran ahead of the wall clock: wait out the rest
            self._set(deadline, 0.0)
            return
        try:
            self._on_timer(now)
        except Exception:
            log.exception("timer callback failed")
        if self._loop is not None:  # on_timer may have stopped us
            self._arm(_MIN_REARM)
