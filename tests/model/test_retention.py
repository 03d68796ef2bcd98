"""Retention of terminal jobs (result_ttl, max_retained_jobs): nothing unfinished is ever dropped, and
everything finished longer than the TTL ago is gone after handle_timer."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.commands import JobsExpired
from model.config import CoreConfig
from model.errors import InvalidArgument, NotFound
from model.ids import JobIdFactory
from model.job import Failed, JobError, JobSpec, Succeeded
from model.jobs import RETENTION_GRANULARITY, JobTable, Retention
from model.states import TERMINAL

TTL = 100.0

# (time step, action, job index) — actions drive jobs through every kind of ending
ACTIONS = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=60.0),
        st.sampled_from(["submit", "submit_keyed", "lease", "succeed", "fail", "cancel", "timer"]),
        st.integers(min_value=0, max_value=30),
    ),
    max_size=80,
)


def _table(ttl: float = TTL, limit: int = 1_000_000) -> JobTable:
    config = CoreConfig(result_ttl=ttl, max_retained_jobs=limit, default_max_attempts=1)
    return JobTable(config, JobIdFactory(node="n1", incarnation="1"))


def _drive(table: JobTable, actions: list[tuple[float, str, int]]) -> tuple[float, list[str], set[str]]:
    """Runs the actions; returns the final time, every accepted id and the ids retention dropped."""
    now = 0.0
    accepted: list[str] = []
    dropped: set[str] = set()
    for step, action, index in actions:
        now += step
        if action.startswith("submit"):
            request_id = f"r{index}" if action == "submit_keyed" else ""
            submitted = table.submit(now, JobSpec(job_type="t"), request_id)
            if not submitted.deduplicated:
                accepted.append(submitted.job.job_id)
            continue
        if action == "timer":
            for command in table.handle_timer(now):
                if isinstance(command, JobsExpired):
                    dropped.update(command.job_ids)
            continue
        if not accepted:
            continue
        job = table.find(accepted[index % len(accepted)])
        if job is None:
            continue
        try:
            if action == "lease":
                table.lease(now, job.job_id, "w1")
            elif action == "succeed":
                table.complete(now, job.job_id, job.attempt, "w1", Succeeded(b"x"))
            elif action == "fail":
                table.complete(now, job.job_id, job.attempt, "w1", Failed(JobError("boom")))
            else:
                table.cancel(now, job.job_id)
        except Exception:  # an illegal move for the job's state: the core refuses it, nothing changes
            continue
    return now, accepted, dropped


@settings(max_examples=150, deadline=None, derandomize=True)
@given(ACTIONS, st.floats(min_value=0.0, max_value=300.0))
def test_only_terminal_jobs_are_dropped_and_all_old_ones_are(
    actions: list[tuple[float, str, int]], extra: float
) -> None:
    table = _table()
    now, accepted, dropped = _drive(table, actions)
    now += extra
    for command in table.handle_timer(now):
        if isinstance(command, JobsExpired):
            dropped.update(command.job_ids)
    for job_id in accepted:
        job = table.find(job_id)
        if job_id in dropped:
            assert job is None
            with pytest.raises(NotFound, match="finished more than"):
                table.get(job_id)
        else:
            # every accepted job not reported dropped is still here
            assert job is not None
            if job.state in TERMINAL:
                assert job.end_time is not None and job.end_time + TTL > now  # young enough to keep
    assert len(table) == len(accepted) - len(dropped)
    assert sum(table.count_by_state.values()) == len(table)
    # nothing left is due: the next deadline (if any) is in the future
    deadline = table.next_deadline()
    assert deadline is None or deadline > now


@settings(max_examples=100, deadline=None, derandomize=True)
@given(ACTIONS, st.integers(min_value=1, max_value=5))
def test_count_bound_drops_oldest_terminal_first(actions: list[tuple[float, str, int]], limit: int) -> None:
    table = _table(ttl=0.0, limit=limit)  # no age limit: only the count bound
    now, accepted, dropped = _drive(table, actions[: len(actions) // 2])
    ended = {j.job_id: j.end_time for j in table if j.end_time is not None}
    now, more, dropped_later = _drive(table, actions[len(actions) // 2 :])
    accepted += more
    dropped |= dropped_later
    ended.update({j.job_id: j.end_time for j in table if j.end_time is not None})
    for command in table.handle_timer(now):
        if isinstance(command, JobsExpired):
            dropped.update(command.job_ids)
    kept_terminal = [j for j in table if j.done]
    assert len(kept_terminal) <= limit
    assert all(job_id in dropped for job_id in accepted if table.find(job_id) is None)
    for job_id in dropped:
        assert table.find(job_id) is None
    # oldest first: a job dropped at the last timer ended no later than every terminal job kept
    last = {job_id for job_id in dropped if job_id in ended}
    if kept_terminal and last:
        assert max(ended[j] or 0.0 for j in last) <= min(j.end_time or 0.0 for j in kept_terminal)
    unfinished = [job_id for job_id in accepted if job_id not in dropped]
    assert all(table.find(job_id) is not None for job_id in unfinished)


def test_expiry_releases_the_request_id_and_emits_one_command() -> None:
    table = _table()
    first = table.submit(0.0, JobSpec(job_type="t"), "req-1").job
    table.lease(1.0, first.job_id, "w1")
    table.complete(2.0, first.job_id, 1, "w1", Succeeded(b"ok"))
    assert table.handle_timer(50.0) == []  # the finished attempt's lease timer passes harmlessly
    assert table.next_deadline() == 2.0 + TTL + RETENTION_GRANULARITY  # deletions come in batches
    assert table.handle_timer(2.0 + TTL - 0.001) == []
    assert table.find(first.job_id) is not None
    assert table.handle_timer(2.0 + TTL) == [JobsExpired((first.job_id,))]
    assert table.next_deadline() is None
    again = table.submit(200.0, JobSpec(job_type="t"), "req-1")
    assert not again.deduplicated and again.job.job_id != first.job_id


def test_retention_oldest_first_and_readd() -> None:
    retention: Retention[str] = Retention(ttl=10.0, limit=2)
    retention.add(3.0, "c")
    retention.add(1.0, "a")
    retention.add(2.0, "b")
    assert retention.next_deadline() == 1.0  # over the bound: due at once, oldest first
    assert retention.expire(1.0) == ["a"]
    retention.add(5.0, "b")  # re-added: timed from 5
    assert retention.next_deadline() == 13.0
    assert retention.expire(13.0) == ["c"]
    assert retention.expire(15.0) == ["b"]
    assert len(retention) == 0 and retention.next_deadline() is None


def test_over_the_bound_drops_one_percent_below_it() -> None:
    retention: Retention[int] = Retention(ttl=0.0, limit=200)
    for i in range(201):
        retention.add(float(i), i)
    assert retention.expire(1000.0) == list(range(3))  # down to 198: the next 2 ends drop nothing
    assert len(retention) == 198


def test_config_rejects_bad_retention() -> None:
    with pytest.raises(InvalidArgument):
        CoreConfig(result_ttl=-1.0)
    with pytest.raises(InvalidArgument):
        CoreConfig(max_retained_jobs=0)
    assert CoreConfig().result_ttl == 24 * 3600.0


class _RetentionModel:
    """Retention's rules written plainly (every kept key with its end time, insertion number and
    size; the order is (end time, insertion number)): the reference for the compact queue."""

    def __init__(self, ttl: float, limit: int, granularity: float, max_bytes: int | None) -> None:
        self.ttl, self.limit, self.granularity, self.max_bytes = ttl, limit, granularity, max_bytes
        self.kept: dict[str, tuple[float, int, int]] = {}
        self.counter = 0

    def add(self, end_time: float, key: str, size: int) -> None:
        self.counter += 1
        self.kept.pop(key, None)
        self.kept[key] = (end_time, self.counter, size)

    def discard(self, key: str) -> None:
        self.kept.pop(key, None)

    @property
    def bytes(self) -> int:
        return sum(size for _, _, size in self.kept.values())

    def order(self) -> list[str]:
        return sorted(self.kept, key=lambda k: self.kept[k][:2])

    def over(self) -> bool:
        return len(self.kept) > self.limit or (self.max_bytes is not None and self.bytes > self.max_bytes)

    def next_deadline(self) -> float | None:
        if not self.kept:
            return None
        oldest = self.kept[self.order()[0]][0]
        if self.over():
            return oldest
        return oldest + self.ttl + self.granularity if self.ttl > 0 else None

    def expire(self, now: float) -> list[str]:
        keep = self.limit - self.limit // 100 if len(self.kept) > self.limit else self.limit
        keep_bytes = self.max_bytes
        if keep_bytes is not None and self.bytes > keep_bytes:
            keep_bytes -= keep_bytes // 100
        dropped = []
        for key in self.order():
            within = len(self.kept) <= keep and (keep_bytes is None or self.bytes <= keep_bytes)
            if within and not (self.ttl > 0 and self.kept[key][0] + self.ttl <= now):
                break
            del self.kept[key]
            dropped.append(key)
        return dropped


RETENTION_OPS = st.lists(
    st.tuples(
        st.sampled_from(["add", "add", "add", "discard", "expire"]),
        st.sampled_from("abcdefgh"),
        st.floats(min_value=-3.0, max_value=10.0),  # a time step: negative ones end "in the past"
        st.integers(min_value=0, max_value=5),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(
    RETENTION_OPS,
    st.sampled_from([0.0, 5.0, 20.0]),
    st.integers(min_value=1, max_value=6),
    st.sampled_from([None, 8, 15]),
)
def test_retention_drops_exactly_what_its_rules_say(
    ops: list[tuple[str, str, float, int]], ttl: float, limit: int, max_bytes: int | None
) -> None:
    """The compact queue (an in-order run in columns plus a heap for keys that end in the past) drops
    the same keys in the same order as the plain rules, through re-adds, discards and clocks that
    step back, with equal end times ordered by insertion."""
    retention: Retention[str] = Retention(ttl, limit, RETENTION_GRANULARITY, max_bytes)
    model = _RetentionModel(ttl, limit, RETENTION_GRANULARITY, max_bytes)
    now = 0.0
    for op, key, step, size in ops:
        if op == "add":
            end = round(now + min(step, 0.0), 1)  # rounded: equal end times happen
            retention.add(end, key, size)
            model.add(end, key, size)
        elif op == "discard":
            retention.discard(key)
            model.discard(key)
        else:
            now += max(step, 0.0)
            assert retention.expire(now) == model.expire(now)
        assert len(retention) == len(model.kept)
        assert retention.bytes == model.bytes
        assert (key in retention) == (key in model.kept)
        assert retention.next_deadline() == model.next_deadline()
    assert retention.expire(now + 10**6) == model.expire(now + 10**6)


def test_retention_reclaims_the_front_of_its_queue() -> None:
    """Entries dropped from the front of the in-order run are freed, not kept as a growing prefix."""
    retention: Retention[int] = Retention(10.0, 10**9, 0.0)
    for i in range(50_000):
        retention.add(float(i), i)
        if i % 100 == 0:
            retention.expire(float(i))
    retention.expire(49_999.0)
    assert len(retention) == 10  # ended within the TTL: 49_990 .. 49_999
    assert len(retention._keys) - retention._head < 5_000 and len(retention._keys) < 10_000
