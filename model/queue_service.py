"""Design A's queue service driver, sans-I/O: a ReadyQueue with reservations and parked Reserve
long-polls, written once for the real service (realsys/micro/queue.py) and the simulated one.

Reserve hands entries out under a hold; an entry not acknowledged in time returns to the queue, so a
coordinator that dies between Reserve and LeaseJobs loses nothing. Reservations are not persisted:
after a restart every stored entry is ready again (the job service's lease fence drops stale ones).
Enqueue dedups by job id: an entry already waiting (ready or delayed) keeps its place in line when
the new one asks for the same priority and ready time; a reserved entry is always replaced, because
its reservation may belong to an attempt that has since ended. Stored rows are written before the
entries become visible (`new_rows`, the adapter stores them, then `push`).

A keyed scheduling policy (model/policies.py) orders the entries by the key each row carries;
Reserve counts as its dispatch (an expired hold returns the entry as newly ready, not undispatched).

Parked Reserve calls are opaque tokens; when entries become ready every one of them is woken and
re-checks (no lost wake-ups: a waiter registers before it yields).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic

from model.actions import T
from model.errors import InvalidArgument
from model.policies import Policy
from model.queue import QueueEntry, ReadyQueue
from model.timer import TimerRule

MAX_HOLD = 300.0  # seconds: the longest reservation a Reserve may ask for
MAX_ITEMS = 1000  # entries per Reserve
MAX_JOB_ID_CHARS = 128

Row = tuple[str, int, float, str]  # (job_id, priority, not_before, the policy's key)


class QueueService(Generic[T]):
    def __init__(self, reservation_hold: float, policy: Policy | None = None) -> None:
        """`policy`: model.policies.queue_service_policy (None: fifo)."""
        self.queue = ReadyQueue(policy)
        self.timer = TimerRule(self.queue.next_deadline)
        self.reservation_hold = reservation_hold  # a Reserve that asks for no hold gets this one
        self.draining = False
        self._waiters: dict[T, None] = {}  # parked Reserve calls, in arrival order

    def restore(self, now: float, rows: Iterable[Row]) -> None:
        for job_id, priority, not_before, key in rows:
            self.queue.push(now, job_id, priority, not_before, key)

    # ------------------------------------------------------------------ Enqueue
    def new_rows(self, now: float, entries: Iterable[Row]) -> list[Row]:
        """The entries to store (and then `push`): all but those already waiting as asked."""
        rows: list[Row] = []
        has_waiting = self.queue.has_waiting
        for job_id, priority, not_before, key in entries:
            if not job_id or len(job_id) > MAX_JOB_ID_CHARS:
                raise InvalidArgument("queue entries need a job_id of 1-128 characters")
            if not has_waiting(now, job_id, priority, not_before):
                rows.append((job_id, priority, not_before, key))
        return rows

    def push(self, now: float, rows: list[Row]) -> tuple[list[T], bool]:
        """The stored rows join the queue. Returns (Reserve calls to wake, re-arm the timer)."""
        if not rows:
            return [], False
        push = self.queue.push
        for job_id, priority, not_before, key in rows:
            push(now, job_id, priority, not_before, key)
        rearm = self.timer.poke()
        return (self._take_waiters() if self.queue.ready_count else []), rearm

    # ------------------------------------------------------------------ Reserve / Ack
    def max_items(self, asked: int) -> int:
        """How many entries a Reserve may take."""
        if asked < 0:
            raise InvalidArgument("max_items must not be negative")
        return min(asked, MAX_ITEMS)

    def hold(self, asked: float) -> float:
        """A Reserve's hold as served: 0 means the configured hold; capped at MAX_HOLD."""
        return min(asked or self.reservation_hold, MAX_HOLD)

    def reserve(self, now: float, max_items: int, hold: float) -> tuple[list[QueueEntry], bool]:
        """Entries handed out under a hold. Returns (entries, re-arm the timer: the holds are new
        deadlines)."""
        taken = self.queue.reserve(now, max_items, hold)
        return taken, bool(taken) and self.timer.poke()

    def add_waiter(self, token: T) -> bool:
        """A Reserve that found nothing parks. False: do not wait (the service drains)."""
        if self.draining:
            return False
        self._waiters[token] = None
        return True

    def waiter_gone(self, token: T) -> None:
        self._waiters.pop(token, None)

    def ack(self, job_ids: Iterable[str]) -> list[str]:
        """The acknowledged reservations, to delete from the store. An entry replaced by a newer
        Enqueue since its reservation stays."""
        ack = self.queue.ack
        return [job_id for job_id in job_ids if ack(job_id)]

    # ------------------------------------------------------------------ timer, drain, gauges
    def on_timer(self, now: float) -> list[T]:
        """Due entries become ready (delays ran out, holds expired): the Reserve calls to wake."""
        return self._take_waiters() if self.queue.handle_timer(now) else []

    def start_draining(self) -> list[T]:
        """Parked Reserve calls answer now instead of holding up shutdown."""
        self.draining = True
        return self._take_waiters()

    def oldest_ready_age(self, now: float) -> float:
        oldest = self.queue.oldest_ready_enqueue_time()
        return 0.0 if oldest is None else max(0.0, now - oldest)

    def _take_waiters(self) -> list[T]:
        waiting = list(self._waiters)
        self._waiters.clear()
        return waiting
