"""The ready queue: priority order (higher first), FIFO within a priority, with delayed entries
(retry backoff) and optional reservations (Design A's queue service hands entries out under a hold,
so an entry survives a coordinator that dies between taking it and leasing it).

At most one entry per job id: enqueuing a job that is already queued replaces its entry.
Heaps use lazy deletion; an entry's `seq` tells a live heap item from a stale one.

A keyed scheduling policy (model/policies.py) keeps one ready heap per key instead of the one heap
and chooses the key each taken entry comes from; the default (fifo) keeps the one heap.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from enum import IntEnum

from model.policies import Policy


class Slot(IntEnum):
    READY = 1
    DELAYED = 2
    RESERVED = 3


@dataclass(slots=True)
class QueueEntry:
    job_id: str
    priority: int
    not_before: float
    enqueue_time: float
    seq: int
    slot: Slot
    hold_until: float = 0.0
    key: str = ""  # the scheduling policy's key (model/policies.py)


class ReadyQueue:
    def __init__(self, policy: Policy | None = None) -> None:
        # a keyed policy: per-key ready heaps and live counts (keys with no ready entry are absent)
        self.policy = policy if policy is not None and policy.keyed else None
        self._key_heaps: dict[str, list[tuple[int, int, str]]] = {}
        self._key_ready: dict[str, int] = {}
        self._entries: dict[str, QueueEntry] = {}
        self._ready: list[tuple[int, int, str]] = []  # (-priority, seq, job_id)
        self._delayed: list[tuple[float, int, str]] = []  # (not_before, seq, job_id)
        self._held: list[tuple[float, int, str]] = []  # (hold_until, seq, job_id)
        # the READY ids (entries become ready out of enqueue order: delays, expired holds)
        self._ready_order: dict[str, None] = {}
        # (enqueue_time, seq, job_id) of READY entries, lazily pruned: the age metric's oldest entry
        self._ready_age: list[tuple[float, int, str]] = []
        self._seq = 0
        self.delayed_count = 0
        self.reserved_count = 0

    # -- queries
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._entries

    @property
    def ready_count(self) -> int:
        return len(self._ready_order)

    def oldest_ready_enqueue_time(self) -> float | None:
        heap = self._ready_age
        while heap:
            enqueue_time, seq, job_id = heap[0]
            entry = self._entries.get(job_id)
            if entry is not None and entry.seq == seq and entry.slot is Slot.READY:
                return enqueue_time
            heapq.heappop(heap)
        return None

    def ahead_of(self, job_id: str) -> int | None:
        """How many READY entries `pop` would take before this job's (0: it is next), in this queue's
        own order; None when the job has no READY entry (delayed, reserved or not queued). Counts
        every ready entry: O(ready entries), for status estimates (model/eta.py), not for dispatch."""
        entry = self._entries.get(job_id)
        if entry is None or entry.slot is not Slot.READY:
            return None
        key = (-entry.priority, entry.seq)  # the _ready heap's order
        entries = self._entries
        return sum(1 for other in self._ready_order if (-(e := entries[other]).priority, e.seq) < key)

    def has_waiting(self, now: float, job_id: str, priority: int, not_before: float) -> bool:
        """An entry for this job already waits (ready or delayed) with the same priority and due time,
        so enqueuing it again (a restart, a sweep) would only send it to the back of the line."""
        entry = self._entries.get(job_id)
        if entry is None or entry.slot is Slot.RESERVED or entry.priority != priority:
            return False
        return abs(max(not_before, now) - max(entry.not_before, now)) < 1e-6

    def next_deadline(self) -> float | None:
        if self.policy is not None:
            return self._policy_deadline()
        return self._own_deadline()

    def _own_deadline(self) -> float | None:
        delayed, held = self._delayed, self._held
        if not delayed and not held:
            return None
        self._drop_stale_tops()
        if delayed:
            if held and held[0][0] < delayed[0][0]:
                return held[0][0]
            return delayed[0][0]
        return held[0][0] if held else None

    def _policy_deadline(self) -> float | None:
        """The queue's own deadline, or the policy's (ready work held back until then), if earlier."""
        own = self._own_deadline()
        assert self.policy is not None
        t = self.policy.next_eligible(self._key_ready) if self._key_ready else None
        if t is not None and (own is None or t < own):
            return t
        return own

    # -- changes
    def push(self, now: float, job_id: str, priority: int, not_before: float = 0.0, key: str = "") -> None:
        self.remove(job_id)
        self._seq += 1
        delayed = not_before > now
        entry = QueueEntry(
            job_id, priority, not_before, now, self._seq, Slot.DELAYED if delayed else Slot.READY, key=key
        )
        self._entries[job_id] = entry
        if delayed:
            self.delayed_count += 1
            heapq.heappush(self._delayed, (not_before, entry.seq, job_id))
        else:
            self._make_ready(entry)

    def remove(self, job_id: str) -> bool:
        entry = self._entries.pop(job_id, None)
        if entry is None:
            return False
        if entry.slot is Slot.READY:
            del self._ready_order[job_id]
            if self.policy is not None:
                self._key_left(entry.key)
        elif entry.slot is Slot.DELAYED:
            self.delayed_count -= 1
        else:
            self.reserved_count -= 1
        return True

    def pop(self, now: float, max_items: int) -> list[QueueEntry]:
        """Takes up to max_items ready entries out of the queue, best first (the policy's choice)."""
        self.handle_timer(now)
        if self.policy is not None:
            return self._pop_keyed(now, max_items)
        taken: list[QueueEntry] = []
        while self._ready and len(taken) < max_items:
            _, seq, job_id = heapq.heappop(self._ready)
            entry = self._entries.get(job_id)
            if entry is None or entry.seq != seq or entry.slot is not Slot.READY:
                continue
            del self._entries[job_id]
            del self._ready_order[job_id]
            taken.append(entry)
        return taken

    def put_back(self, entries: list[QueueEntry]) -> None:
        """Returns entries `pop` just took (and nothing else changed) to their places in line."""
        for entry in entries:
            if entry.job_id in self._entries:
                continue  # enqueued again meanwhile: the newer entry stands
            self._entries[entry.job_id] = entry
            self._make_ready(entry)  # same priority and seq: the same place in the heap
            if self.policy is not None:
                self.policy.returned(entry.key)

    def reserve(self, now: float, max_items: int, hold: float) -> list[QueueEntry]:
        """Like pop, but the entries stay, held until `now + hold` unless acknowledged."""
        taken = self.pop(now, max_items)
        for entry in taken:
            entry.slot = Slot.RESERVED
            entry.hold_until = now + hold
            self._entries[entry.job_id] = entry
            self.reserved_count += 1
            heapq.heappush(self._held, (entry.hold_until, entry.seq, entry.job_id))
        return taken

    def ack(self, job_id: str) -> bool:
        entry = self._entries.get(job_id)
        if entry is None or entry.slot is not Slot.RESERVED:
            return False
        return self.remove(job_id)

    def handle_timer(self, now: float) -> int:
        """Moves due delayed entries and expired reservations to READY; returns how many."""
        moved = 0
        for heap, slot in ((self._delayed, Slot.DELAYED), (self._held, Slot.RESERVED)):
            while heap and heap[0][0] <= now:
                _, seq, job_id = heapq.heappop(heap)
                entry = self._entries.get(job_id)
                if entry is None or entry.seq != seq or entry.slot is not slot:
                    continue
                if slot is Slot.DELAYED:
                    self.delayed_count -= 1
                else:
                    self.reserved_count -= 1
                self._make_ready(entry)
                moved += 1
        if self.policy is not None:
            moved += self.policy.wake(now, self._key_ready)
        return moved

    def returned(self, key: str) -> None:
        """An entry `pop` handed out was not dispatched after all (its job was no longer pending)."""
        if self.policy is not None:
            self.policy.returned(key)

    def finished(self, key: str) -> bool:
        """A job this queue handed out ended its attempt (for policies that count running jobs).
        True: the key has ready entries, which may now go (wake a fetcher)."""
        if self.policy is None:
            return False
        self.policy.finished(key)
        return key in self._key_ready

    # -- internals
    def _make_ready(self, entry: QueueEntry) -> None:
        entry.slot = Slot.READY
        self._ready_order[entry.job_id] = None
        if self.policy is None:
            heapq.heappush(self._ready, (-entry.priority, entry.seq, entry.job_id))
        else:
            key = entry.key
            count = self._key_ready.get(key, 0)
            self._key_ready[key] = count + 1
            heapq.heappush(self._key_heaps.setdefault(key, []), (-entry.priority, entry.seq, entry.job_id))
            if not count:
                self.policy.activated(key)
        if len(self._ready_age) > 2 * len(self._ready_order) + 64:  # bound the stale items
            live = (self._entries[job_id] for job_id in self._ready_order)
            self._ready_age = [(e.enqueue_time, e.seq, e.job_id) for e in live]
            heapq.heapify(self._ready_age)
        else:
            heapq.heappush(self._ready_age, (entry.enqueue_time, entry.seq, entry.job_id))

    def _key_left(self, key: str) -> None:
        """A READY entry of `key` left (taken or removed)."""
        left = self._key_ready[key] - 1
        if left:
            self._key_ready[key] = left
        else:  # every item left in its heap is stale
            del self._key_ready[key]
            del self._key_heaps[key]

    def _pop_keyed(self, now: float, max_items: int) -> list[QueueEntry]:
        policy = self.policy
        assert policy is not None
        entries, heaps = self._entries, self._key_heaps
        taken: list[QueueEntry] = []
        while self._key_ready and len(taken) < max_items:
            heads: dict[str, tuple[int, int]] = {}
            for key in self._key_ready:
                heap = heaps[key]
                while True:  # drop stale tops: a live one remains (the key has ready entries)
                    neg, seq, job_id = heap[0]
                    entry = entries.get(job_id)
                    if entry is not None and entry.seq == seq and entry.slot is Slot.READY:
                        break
                    heapq.heappop(heap)
                heads[key] = (neg, seq)
            chosen = policy.choose(now, heads)
            if chosen is None:
                break
            _, _, job_id = heapq.heappop(heaps[chosen])
            entry = entries.pop(job_id)
            del self._ready_order[job_id]
            self._key_left(chosen)
            policy.dispatched(now, chosen)
            taken.append(entry)
        return taken

    def _drop_stale_tops(self) -> None:
        for heap, slot in ((self._delayed, Slot.DELAYED), (self._held, Slot.RESERVED)):
            while heap:
                _, seq, job_id = heap[0]
                entry = self._entries.get(job_id)
                if entry is not None and entry.seq == seq and entry.slot is slot:
                    break
                heapq.heappop(heap)
