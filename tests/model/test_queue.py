"""ReadyQueue: priority order, FIFO within a priority, delays, reservations, removal and dedup."""

from __future__ import annotations

from dataclasses import dataclass

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from model.queue import ReadyQueue, Slot


def ids_of(entries: list) -> list[str]:  # type: ignore[type-arg]
    return [e.job_id for e in entries]


# ---------------------------------------------------------------------------- examples
def test_priority_order_then_fifo() -> None:
    q = ReadyQueue()
    q.push(0.0, "low1", 0)
    q.push(0.0, "high1", 5)
    q.push(0.0, "low2", 0)
    q.push(0.0, "mid", 1)
    q.push(0.0, "high2", 5)
    q.push(0.0, "neg", -3)
    assert len(q) == 6 and q.ready_count == 6
    assert ids_of(q.pop(0.0, 2)) == ["high1", "high2"]
    assert ids_of(q.pop(0.0, 10)) == ["mid", "low1", "low2", "neg"]
    assert len(q) == 0 and q.pop(0.0, 10) == []


def test_pop_respects_max_items() -> None:
    q = ReadyQueue()
    for i in range(5):
        q.push(0.0, f"j{i}", 0)
    assert q.pop(0.0, 0) == []
    assert ids_of(q.pop(0.0, 3)) == ["j0", "j1", "j2"]
    assert len(q) == 2


def test_delayed_entries_become_ready_at_not_before() -> None:
    q = ReadyQueue()
    q.push(0.0, "later", 9, not_before=5.0)
    q.push(0.0, "now", 0)
    assert q.delayed_count == 1 and q.ready_count == 1
    assert q.next_deadline() == 5.0
    assert ids_of(q.pop(4.999, 10)) == ["now"]
    assert "later" in q
    assert q.pop(4.999, 10) == []
    assert q.handle_timer(5.0) == 1
    assert q.delayed_count == 0 and q.ready_count == 1
    assert q.next_deadline() is None
    assert ids_of(q.pop(5.0, 10)) == ["later"]


def test_pop_moves_due_delayed_entries_itself() -> None:
    q = ReadyQueue()
    q.push(0.0, "a", 0, not_before=1.0)
    q.push(0.0, "b", 0, not_before=2.0)
    assert ids_of(q.pop(2.0, 10)) == ["a", "b"]


def test_not_before_in_the_past_is_ready_at_once() -> None:
    q = ReadyQueue()
    q.push(10.0, "a", 0, not_before=3.0)
    q.push(10.0, "b", 0, not_before=10.0)
    assert q.delayed_count == 0 and q.ready_count == 2


def test_fifo_is_by_push_order_even_for_delayed_entries() -> None:
    q = ReadyQueue()
    q.push(0.0, "retry", 0, not_before=1.0)  # pushed first, ready later
    q.push(0.5, "fresh", 0)
    assert ids_of(q.pop(2.0, 10)) == ["retry", "fresh"]


def test_reserve_ack_and_hold_expiry() -> None:
    q = ReadyQueue()
    q.push(0.0, "a", 1)
    q.push(0.0, "b", 0)
    q.push(0.0, "c", 0)
    taken = q.reserve(1.0, 2, hold=5.0)
    assert ids_of(taken) == ["a", "b"]
    assert all(e.slot is Slot.RESERVED and e.hold_until == 6.0 for e in taken)
    assert len(q) == 3 and q.reserved_count == 2 and q.ready_count == 1
    assert "a" in q and "b" in q
    assert q.next_deadline() == 6.0
    # a reserved entry is not handed out again
    assert ids_of(q.pop(2.0, 10)) == ["c"]
    assert q.ack("a") is True
    assert q.ack("a") is False
    assert q.ack("c") is False  # not reserved (already popped)
    assert "a" not in q and q.reserved_count == 1
    assert q.handle_timer(5.99) == 0
    assert q.handle_timer(6.0) == 1  # b was never acknowledged
    assert q.reserved_count == 0 and q.ready_count == 1
    assert q.ack("b") is False  # too late: it is ready again
    assert ids_of(q.pop(6.0, 10)) == ["b"]


def test_expired_reservation_keeps_its_place() -> None:
    q = ReadyQueue()
    q.push(0.0, "first", 0)
    q.reserve(0.0, 1, hold=1.0)
    q.push(0.5, "second", 0)
    assert ids_of(q.pop(1.0, 10)) == ["first", "second"]


def test_ack_of_unknown_or_ready_entries() -> None:
    q = ReadyQueue()
    assert q.ack("nope") is False
    q.push(0.0, "a", 0)
    assert q.ack("a") is False
    assert "a" in q


def test_remove_in_every_slot() -> None:
    q = ReadyQueue()
    q.push(0.0, "ready", 0)
    q.push(0.0, "delayed", 0, not_before=10.0)
    q.push(0.0, "reserved", 5)
    q.reserve(0.0, 1, hold=10.0)
    assert (q.ready_count, q.delayed_count, q.reserved_count) == (1, 1, 1)
    assert q.remove("ready") and q.remove("delayed") and q.remove("reserved")
    assert not q.remove("ready")
    assert (len(q), q.ready_count, q.delayed_count, q.reserved_count) == (0, 0, 0, 0)
    assert q.handle_timer(100.0) == 0
    assert q.pop(100.0, 10) == []
    assert q.next_deadline() is None


def test_push_of_a_queued_job_replaces_its_entry() -> None:
    q = ReadyQueue()
    q.push(0.0, "a", 0)
    q.push(0.0, "b", 0)
    q.push(1.0, "a", 0)  # moves to the back
    assert len(q) == 2
    assert ids_of(q.pop(1.0, 10)) == ["b", "a"]
    q.push(2.0, "c", 0)
    q.push(2.0, "c", 0, not_before=9.0)  # ready -> delayed
    assert q.ready_count == 0 and q.delayed_count == 1 and len(q) == 1
    assert q.pop(5.0, 10) == []
    q.push(5.0, "c", 3)  # delayed -> ready
    assert q.ready_count == 1 and q.delayed_count == 0
    entries = q.pop(5.0, 10)
    assert ids_of(entries) == ["c"] and entries[0].priority == 3
    assert q.handle_timer(9.0) == 0  # the replaced delayed entry is gone


def test_oldest_ready_enqueue_time() -> None:
    q = ReadyQueue()
    assert q.oldest_ready_enqueue_time() is None
    q.push(0.0, "delayed", 0, not_before=5.0)
    q.push(1.0, "a", 0)
    assert q.oldest_ready_enqueue_time() == 1.0
    q.push(6.0, "b", 0)
    q.handle_timer(7.0)  # "delayed" (enqueued at 0.0) is now ready
    assert q.oldest_ready_enqueue_time() == 0.0
    q.remove("delayed")
    assert q.oldest_ready_enqueue_time() == 1.0
    q.reserve(8.0, 1, hold=1.0)  # takes "a"
    assert q.oldest_ready_enqueue_time() == 6.0
    q.handle_timer(9.0)  # "a" returns
    assert q.oldest_ready_enqueue_time() == 1.0
    q.pop(9.0, 10)
    assert q.oldest_ready_enqueue_time() is None


def test_age_index_stays_bounded_and_right_when_never_read() -> None:
    q = ReadyQueue()
    queued: dict[str, float] = {}
    for i in range(2000):
        now = float(i)
        q.push(now, f"j{i}", i % 3, not_before=now + (5.0 if i % 7 == 0 else 0.0))
        queued[f"j{i}"] = now
        if i % 2:
            for entry in q.pop(now, 1):
                del queued[entry.job_id]
    # white box: the lazily pruned age heap must not keep every entry ever queued
    assert len(q._ready_age) <= 2 * q.ready_count + 65
    q.handle_timer(1e9)
    assert q.ready_count == len(queued) == 1000
    assert q.oldest_ready_enqueue_time() == min(queued.values())
    while queued:
        for entry in q.pop(1e9, 7):
            del queued[entry.job_id]
        assert q.oldest_ready_enqueue_time() == (min(queued.values()) if queued else None)


# ---------------------------------------------------------------------------- property vs a reference
@dataclass
class RefEntry:
    priority: int
    not_before: float
    enqueue_time: float
    seq: int
    state: str  # "ready" | "delayed" | "reserved"
    hold_until: float = 0.0


class Reference:
    """The queue's contract spelled out naively (linear scans)."""

    def __init__(self) -> None:
        self.entries: dict[str, RefEntry] = {}
        self.seq = 0

    def push(self, now: float, job_id: str, priority: int, not_before: float) -> None:
        self.seq += 1
        state = "delayed" if not_before > now else "ready"
        self.entries[job_id] = RefEntry(priority, not_before, now, self.seq, state)

    def advance(self, now: float) -> int:
        moved = 0
        for e in self.entries.values():
            if (e.state == "delayed" and e.not_before <= now) or (
                e.state == "reserved" and e.hold_until <= now
            ):
                e.state = "ready"
                moved += 1
        return moved

    def pop(self, now: float, n: int) -> list[str]:
        self.advance(now)
        ready = sorted(
            (jid for jid, e in self.entries.items() if e.state == "ready"),
            key=lambda jid: (-self.entries[jid].priority, self.entries[jid].seq),
        )[:n]
        for jid in ready:
            del self.entries[jid]
        return ready

    def count(self, state: str) -> int:
        return sum(e.state == state for e in self.entries.values())


JOB_IDS = st.sampled_from([f"j{i}" for i in range(8)])


class QueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.q = ReadyQueue()
        self.ref = Reference()
        self.now = 0.0

    @rule(dt=st.sampled_from([0.0, 0.25, 1.0, 2.5, 7.0]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule(
        job_id=JOB_IDS,
        priority=st.integers(-2, 2),
        delay=st.one_of(st.just(0.0), st.sampled_from([-1.0, 0.5, 1.0, 3.0])),
    )
    def push(self, job_id: str, priority: int, delay: float) -> None:
        not_before = self.now + delay if delay else 0.0
        self.q.push(self.now, job_id, priority, not_before)
        self.ref.push(self.now, job_id, priority, not_before)

    @rule(job_id=JOB_IDS)
    def remove(self, job_id: str) -> None:
        assert self.q.remove(job_id) == (self.ref.entries.pop(job_id, None) is not None)

    @rule(n=st.integers(0, 4))
    def pop(self, n: int) -> None:
        got = self.q.pop(self.now, n)
        want = self.ref.pop(self.now, n)
        assert ids_of(got) == want
        assert all(e.enqueue_time <= self.now for e in got)

    @rule(n=st.integers(0, 3), hold=st.sampled_from([0.5, 2.0, 5.0]))
    def reserve(self, n: int, hold: float) -> None:
        taken = self.q.reserve(self.now, n, hold)
        want = self.ref.pop(self.now, n)
        assert ids_of(taken) == want
        for entry in taken:
            # it comes back under its original seq, so it keeps its place in line
            self.ref.entries[entry.job_id] = RefEntry(
                entry.priority, entry.not_before, entry.enqueue_time, entry.seq, "reserved", self.now + hold
            )

    @precondition(lambda self: any(e.state == "reserved" for e in self.ref.entries.values()))
    @rule(data=st.data())
    def ack_reserved(self, data: st.DataObject) -> None:
        held = sorted(jid for jid, e in self.ref.entries.items() if e.state == "reserved")
        job_id = data.draw(st.sampled_from(held))
        if self.ref.entries[job_id].hold_until <= self.now:
            self.q.handle_timer(self.now)
            self.ref.advance(self.now)
            assert self.q.ack(job_id) is False  # the hold ran out: it went back to the queue
            return
        assert self.q.ack(job_id) is True
        del self.ref.entries[job_id]

    @rule(job_id=JOB_IDS)
    def ack_any(self, job_id: str) -> None:
        self.q.handle_timer(self.now)
        self.ref.advance(self.now)
        expected = job_id in self.ref.entries and self.ref.entries[job_id].state == "reserved"
        assert self.q.ack(job_id) is expected
        if expected:
            del self.ref.entries[job_id]

    @rule()
    def timer(self) -> None:
        assert self.q.handle_timer(self.now) == self.ref.advance(self.now)
        assert self.q.ready_count == self.ref.count("ready")
        assert self.q.delayed_count == self.ref.count("delayed")
        assert self.q.reserved_count == self.ref.count("reserved")
        ready_times = [e.enqueue_time for e in self.ref.entries.values() if e.state == "ready"]
        assert self.q.oldest_ready_enqueue_time() == (min(ready_times) if ready_times else None)

    @invariant()
    def same_contents(self) -> None:
        assert len(self.q) == len(self.ref.entries)
        for i in range(8):
            assert (f"j{i}" in self.q) == (f"j{i}" in self.ref.entries)
        # counts never go negative and always add up (lazy: due entries may not have moved yet)
        counts = (self.q.ready_count, self.q.delayed_count, self.q.reserved_count)
        assert min(counts) >= 0 and sum(counts) == len(self.q)

    @invariant()
    def next_deadline_is_the_earliest_pending_timer(self) -> None:
        # the reference moves nothing here; compare with what is still waiting in the queue itself
        waits = [e.not_before for e in self.ref.entries.values() if e.state == "delayed"]
        waits += [e.hold_until for e in self.ref.entries.values() if e.state == "reserved"]
        deadline = self.q.next_deadline()
        if not waits:
            assert deadline is None
        else:
            assert deadline == min(waits)


TestQueueAgainstReference = QueueMachine.TestCase
TestQueueAgainstReference.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_has_waiting_tells_a_duplicate_enqueue_from_a_change() -> None:
    q = ReadyQueue()
    q.push(0.0, "a", priority=1)
    q.push(0.0, "b", priority=1, not_before=5.0)
    assert q.has_waiting(1.0, "a", 1, 0.0)  # same priority, already due: keep its place
    assert q.has_waiting(1.0, "a", 1, 0.5)  # both due now: the same
    assert not q.has_waiting(1.0, "a", 2, 0.0)  # a new priority must re-enter
    assert q.has_waiting(1.0, "b", 1, 5.0)
    assert not q.has_waiting(1.0, "b", 1, 6.0)  # a later due time is a change
    assert not q.has_waiting(1.0, "c", 1, 0.0)  # not queued at all
    q.reserve(1.0, 1, hold=10.0)  # "a" is handed out: a new Enqueue must replace the reservation
    assert not q.has_waiting(1.0, "a", 1, 0.0)
