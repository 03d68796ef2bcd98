"""Wakes a sans-I/O core object at its next deadline: performs model/timer.py's TimerRule with
`loop.call_later` (the aioquic get_timer/handle_timer pattern).

Deadlines are wall-clock seconds (time.time()); the loop sleeps `deadline - time.time()`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from model.timer import TimerRule
from realsys.logs import get_logger

log = get_logger(__name__)


class CoreTimer:
    def __init__(
        self,
        next_deadline: Callable[[], float | None] | TimerRule,
        on_timer: Callable[[float], None],
    ) -> None:
        # a driver that decides its own re-arms (model/node.py) hands over its rule
        self.rule = next_deadline if isinstance(next_deadline, TimerRule) else TimerRule(next_deadline)
        self._on_timer = on_timer
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | None = None

    @property
    def armed_for(self) -> float | None:
        """The deadline the timer will fire at, or None when idle (for tests and debugging)."""
        return self.rule.armed_for

    def start(self) -> None:
        """Needs a running loop."""
        self._loop = asyncio.get_running_loop()
        if self.rule.start():
            self.arm()

    def poke(self) -> None:
        """Call after any core call that may have moved the deadline earlier. Cheap when it did not."""
        if self.rule.poke():
            self.arm()

    def stop(self) -> None:
        self.rule.stop()
        self._cancel()
        self._loop = None

    def arm(self) -> None:
        """(Re-)arms the handle at the rule's deadline (the rule said to)."""
        assert self._loop is not None
        self._cancel()
        self._handle = self._loop.call_later(self.rule.delay(time.time()), self._fire)

    def _cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._handle = None

    def _fire(self) -> None:
        self._handle = None
        now = time.time()
        if not self.rule.fired(now):
            self.arm()  # the loop's monotonic clock ran ahead of the wall clock: wait out the rest
            return
        try:
            self._on_timer(now)
        except Exception:
            log.exception("timer callback failed")
        if self.rule.rearm():  # False once on_timer stopped us, or with nothing to wait for
            self.arm()
        else:
            self._cancel()
