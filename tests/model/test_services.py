"""Design A's queue, coordinator and result-service drivers (model/queue_service.py, coordinator.py,
result_service.py)."""

from __future__ import annotations

import pytest

from model.config import CoreConfig
from model.coordinator import MAX_FETCH, MAX_PENDING_CANCELS, Coordinator, fetch_limit
from model.errors import InvalidArgument
from model.job import Failed, Succeeded
from model.queue_service import MAX_HOLD, MAX_ITEMS, QueueService
from model.result_service import RETENTION_GRACE, ResultService, check_key

CONFIG = CoreConfig(lease_duration=3.0, heartbeat_interval=1.0, worker_ttl=2.5, result_ttl=10.0)


def test_enqueue_dedups_and_wakes_every_parked_reserve_in_arrival_order() -> None:
    queue: QueueService[str] = QueueService(reservation_hold=2.0)
    queue.timer.start()
    assert queue.add_waiter("r1") and queue.add_waiter("r2")
    rows = queue.new_rows(0.0, [("a", 0, 0.0, ""), ("b", 0, 5.0, "")])
    assert rows == [("a", 0, 0.0, ""), ("b", 0, 5.0, "")]
    woken, rearm = queue.push(0.0, rows)
    assert woken == ["r1", "r2"] and rearm  # "b" is delayed: a deadline
    assert queue.new_rows(0.1, [("a", 0, 0.0, "")]) == []  # already waiting as asked: keeps its place
    with pytest.raises(InvalidArgument):
        queue.new_rows(0.1, [("", 0, 0.0, "")])
    assert queue.push(0.1, []) == ([], False)


def test_reserve_limits_holds_and_acks() -> None:
    queue: QueueService[str] = QueueService(reservation_hold=2.0)
    queue.timer.start()
    assert queue.max_items(5000) == MAX_ITEMS
    with pytest.raises(InvalidArgument):
        queue.max_items(-1)
    assert queue.hold(0.0) == 2.0 and queue.hold(1e6) == MAX_HOLD
    queue.push(0.0, queue.new_rows(0.0, [("a", 0, 0.0, "")]))
    taken, rearm = queue.reserve(0.0, 10, 2.0)
    assert [e.job_id for e in taken] == ["a"] and rearm  # the hold is a deadline
    assert queue.reserve(0.0, 10, 2.0) == ([], False)
    assert queue.add_waiter("r")
    assert queue.on_timer(2.5) == ["r"]  # the hold ran out: back in the queue, the parked call wakes
    taken, _ = queue.reserve(2.5, 10, 2.0)
    assert queue.ack(["a", "zzz"]) == ["a"]
    assert queue.start_draining() == [] and not queue.add_waiter("late")


def test_coordinator_keeps_cancels_for_the_next_heartbeat_and_forgets_lost_workers() -> None:
    coord = Coordinator(CONFIG)
    coord.timer.start()
    assert coord.heartbeat(0.0, "w", 4, 4, holds_work=False)  # its expiry is the first deadline
    assert not coord.heartbeat(0.0, "stray", 4, 4, holds_work=False)  # a later deadline
    coord.notify_cancel("j1", 1, "w")
    coord.notify_cancel("j2", 1, "gone")  # unknown worker: its RenewLeases tells it
    assert coord.pushed_cancels("w", [("j1", 1)]) == []  # already told by RenewLeases
    coord.notify_cancel("j3", 2, "w")
    assert coord.pushed_cancels("w", []) == [("j3", 2)]
    assert coord.pushed_cancels("w", []) == []  # taken once
    for i in range(MAX_PENDING_CANCELS + 5):
        coord.notify_cancel(f"j{i}", 1, "w")
    assert len(coord.pushed_cancels("w", [])) == MAX_PENDING_CANCELS
    coord.notify_cancel("j", 1, "w")
    assert coord.fetch(1.0, "w", 5000) == MAX_FETCH == fetch_limit(10**6)
    with pytest.raises(InvalidArgument):
        coord.fetch(1.0, "w", -1)
    with pytest.raises(InvalidArgument):
        coord.report(1.0, "w", "job-1-0000000001", 0, Succeeded(b""))
    big = Succeeded(b"x" * (CONFIG.max_result_bytes + 1))
    bounded = coord.report(1.0, "w", "job-1-0000000001", 1, big)
    assert isinstance(bounded, Failed) and bounded.error.reason == "RESULT_TOO_LARGE"
    coord.leased("w")  # handed work: when lost, its attempts need a release
    lost, release = coord.on_timer(1.0 + CONFIG.worker_ttl + 0.1)
    assert sorted(w.worker_id for w in lost) == ["stray", "w"]
    assert release == ["w"]  # the stray heartbeat's worker never held work: nothing to release
    assert coord.workers_lost == 2 and coord.pushed_cancels("w", []) == []


def test_result_retention_outlives_the_job_and_counts_its_deletes() -> None:
    results = ResultService(CONFIG)
    results.timer.start()
    assert results.stored(0.0, ("j", 1), 10)
    due = CONFIG.result_ttl + CONFIG.lease_duration + RETENTION_GRACE
    assert results.timer.armed_for == due
    assert results.on_timer(due - 0.1) == []
    assert results.on_timer(due) == [("j", 1)] and results.expired == 1
    no_ttl = ResultService(CoreConfig(result_ttl=0.0))
    no_ttl.timer.start()
    assert not no_ttl.stored(0.0, ("j", 1), 10)  # no age limit: nothing to wait for
    by_bytes = ResultService(CoreConfig(result_ttl=0.0, max_retained_bytes=100))
    by_bytes.timer.start()
    by_bytes.restore(0.0, [(("a", 1), 120)])
    assert not by_bytes.stored(1.0, ("b", 1), 60)  # 180 bytes: within 2 x max_retained_bytes
    assert by_bytes.stored(2.0, ("c", 1), 60)  # 240: over the bound, due at once
    assert by_bytes.on_timer(2.0) == [("a", 1)]  # the oldest first
    with pytest.raises(InvalidArgument):
        check_key("j", 0)
