"""model/actions.py: the WaitJob waiter bookkeeping the drivers share."""

from __future__ import annotations

from model.actions import DoneWaiters


def test_done_waiters_survive_end_and_rewait() -> None:
    waiters: DoneWaiters[int] = DoneWaiters()
    waiters.add(1, "j")
    assert waiters.ended("j") == [1]
    waiters.add(2, "j")  # registers before the first one resumed
    waiters.gone(1, "j")  # the first one resumes: must not drop the second
    assert waiters.ended("j") == [2]
    assert len(waiters) == 0
    waiters.add(3, "k")
    waiters.gone(3, "k")  # timed out: the entry goes with its last waiter (no leak)
    assert len(waiters) == 0 and waiters.ended("k") is None


def test_take_all_empties() -> None:
    waiters: DoneWaiters[int] = DoneWaiters()
    waiters.add(1, "a")
    waiters.add(2, "b")
    waiters.add(3, "a")
    assert sorted(waiters.take_all()) == [1, 2, 3]
    assert len(waiters) == 0 and list(waiters) == []
