"""TerminalStore (model/terminal.py): a finished job read back from its columns equals the Job it was
made from, field by field; its retention drops what Retention (a heap's order) drops, when it does;
and a row costs what its docstring says."""

from __future__ import annotations

import gc
import sys
import tracemalloc
from types import MappingProxyType

from hypothesis import given, settings
from hypothesis import strategies as st

from model import terminal
from model.ids import JobIdFactory, SequenceIds
from model.job import EffectiveSpec, Job, JobError, JobSpec, RetryPolicy
from model.jobs import Retention
from model.states import TERMINAL, JobState
from model.terminal import TerminalStore

FACTORY = JobIdFactory("n1", "7")
IDS = SequenceIds(FACTORY.prefix)
times = st.floats(-1e9, 1e12, allow_nan=False)
texts = st.text(max_size=12)
specs = st.builds(
    JobSpec,
    st.sampled_from(["alpha", "b.c"]),
    st.just(b""),
    st.integers(-(2**31), 2**31 - 1),
    st.builds(RetryPolicy, st.integers(0, 9), st.sampled_from([0.0, 0.5])),
    st.sampled_from([0.0, 30.0]),
    st.dictionaries(texts, texts, max_size=3).map(MappingProxyType),
)
effectives = st.builds(
    EffectiveSpec,
    st.integers(1, 9),
    st.just(1.0),
    st.just(60.0),
    st.just(2.0),
    st.sampled_from([30.0, 3600.0]),
)
errors = st.none() | st.builds(
    JobError, texts, st.booleans(), st.sampled_from(["HANDLER_ERROR", "CANCELLED"])
)
# an id of the table's factory (kept as its sequence), or of another incarnation (kept as a string)
own_ids = st.integers(1, 10**6).map(IDS.job_id)
other_ids = st.integers(1, 10**6).map(lambda seq: f"n1-8-{seq:010x}") | st.just("n1-7-000000000A")
jobs = st.builds(
    Job,
    own_ids | other_ids,
    specs,
    effectives,
    times,
    texts,
    st.sampled_from(sorted(TERMINAL)),
    st.integers(0, 2**40),
    times,
    st.none() | times,
    st.none() | times,
    texts,
    times,
    times,
    times,
    errors,
    st.none() | st.binary(max_size=16),
    st.integers(0, 2**40),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(jobs, max_size=30, unique_by=lambda job: job.job_id))
def test_a_job_read_back_equals_the_job_it_was_made_from(made: list[Job]) -> None:
    store = TerminalStore(IDS, ttl=0.0, limit=10**6)
    for job in made:
        store.add(job)
    assert len(store) == len(made)
    for job in made:
        back = store.get(job.job_id)
        assert back == job  # every field: id, spec, effective, times (None kept), state, attempt, ...
        assert back is not None and back.state is job.state and type(back.state) is JobState
        assert list(back.spec.labels.items()) == list(job.spec.labels.items())  # label order kept
    assert list(store) == made  # in the order they were added
    assert store.get(IDS.job_id(10**6 + 1)) is None and store.get("n2-7-0000000001") is None


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 100, allow_nan=False), st.integers(0, 50)),  # (end time, output size)
        max_size=40,
    ),
    st.sampled_from([0.0, 5.0, 30.0]),  # ttl
    st.integers(1, 30),  # limit
    st.sampled_from([None, 200, 600]),  # max_bytes
    st.lists(st.floats(0, 200, allow_nan=False), max_size=6),  # expire calls, at sorted times
    st.booleans(),  # own ids (sequences) or other ids (strings)
    st.sampled_from([1, 3, terminal.RECLAIM_ROWS]),  # how soon dropped rows are freed
)
def test_retention_drops_what_a_heap_ordered_retention_drops(
    ends: list[tuple[float, int]],
    ttl: float,
    limit: int,
    max_bytes: int | None,
    nows: list[float],
    own: bool,
    reclaim: int,
) -> None:
    """The columns' retention against Retention (the generic one, heap order): the same ids dropped
    in the same order, and the same next deadline, after every expire; end times out of order too,
    and dropped rows freed at once or late."""
    saved, terminal.RECLAIM_ROWS = terminal.RECLAIM_ROWS, reclaim
    try:
        _compare_retentions(ends, ttl, limit, max_bytes, nows, own)
    finally:
        terminal.RECLAIM_ROWS = saved


def _compare_retentions(
    ends: list[tuple[float, int]], ttl: float, limit: int, max_bytes: int | None, nows: list[float], own: bool
) -> None:
    store = TerminalStore(IDS, ttl, limit, 1.0, max_bytes)
    heap: Retention[str] = Retention(ttl, limit, 1.0, max_bytes)
    spec, effective = JobSpec("a"), EffectiveSpec(1, 1.0, 1.0, 2.0, 30.0)
    for seq, (ended, size) in enumerate(ends, start=1):
        job_id = IDS.job_id(seq) if own else f"x1-1-{seq:010x}"
        state = JobState.SUCCEEDED
        store.add(Job(job_id, spec, effective, 0.0, "", state, 1, ended, 0.0, ended, "w", output_size=size))
        heap.add(ended, job_id, size)
    assert store.bytes == heap.bytes and len(store) == len(heap)
    for now in sorted(nows):
        assert store.next_deadline() == heap.next_deadline()
        assert [job_id for job_id, _, _ in store.expire(now)] == heap.expire(now)
        assert store.bytes == heap.bytes and len(store) == len(heap)
        assert {job.job_id for job in store} == {k for k in heap._kept}
    assert store.next_deadline() == heap.next_deadline()


def test_dropped_rows_are_freed_and_ids_stay_found() -> None:
    """A long run through the store with a small limit: the front slices are reclaimed (the columns
    do not grow with the jobs ever made) and every kept job is still found by its id."""
    store = TerminalStore(IDS, ttl=0.0, limit=10_000)
    spec, effective = JobSpec("a"), EffectiveSpec(1, 1.0, 1.0, 2.0, 30.0)
    for seq in range(1, 100_001):
        now = seq * 0.001
        store.add(Job(IDS.job_id(seq), spec, effective, now, "", JobState.SUCCEEDED, 1, now, now, now, "w"))
        if seq % 1000 == 0:
            store.expire(now)
    assert len(store) <= 10_000
    assert len(store._seq) <= 2 * 10_000 + 1000 and len(store._row_of) <= 2 * 10_000 + 1000
    kept = list(store)
    assert kept[0].job_id == IDS.job_id(100_001 - len(store))
    assert all(store.get(job.job_id) == job for job in kept[:: len(kept) // 50])
    assert store.get(IDS.job_id(1)) is None


ROW_BUDGET = 120  # bytes of columns a finished job's row takes, the sequence slot included


def test_a_row_costs_at_most_its_budget() -> None:
    """A size census (tracemalloc: allocations, not time) of 50,000 finished jobs added to a store:
    the columns' bytes per job. About 105 on CPython 3.11: seven doubles, three ints, a state byte,
    two references, the sequence -> row slot; the budget allows the arrays' over-allocation."""
    spec, effective = JobSpec("a"), EffectiveSpec(1, 1.0, 1.0, 2.0, 30.0)
    workers = [f"n1/w{i}" for i in range(12)]
    made = [
        Job(IDS.job_id(seq), spec, effective, seq, "", JobState.SUCCEEDED, 1, seq + 1.0, seq + 0.5, seq + 1.0,
            workers[seq % 12], seq + 30.0, seq + 60.0, 0.0, None, b"", 0)
        for seq in range(1, 50_001)
    ]  # fmt: skip
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        store = TerminalStore(IDS, ttl=86_400.0, limit=10**6)
        for job in made:
            store.add(job)
        gc.collect()
        per_job = (tracemalloc.get_traced_memory()[0] - start) / len(made)
    finally:
        tracemalloc.stop()
    assert len(store) == len(made)
    assert per_job <= ROW_BUDGET, f"{per_job:.0f} bytes a row"
    # the twelve workers' jobs share twelve interned shapes, and nothing holds a Job
    assert len({id(shape) for shape in store._shape}) == 12
    del made
    gc.collect()
    assert not any(isinstance(o, Job) for o in gc.get_referents(*store._columns()))
    assert sys.getsizeof(store._seq) <= 8 * len(store) * 1.2 + 64


@given(st.lists(st.tuples(st.floats(allow_nan=False), st.integers(0, 2**40)), min_size=2, max_size=20))
def test_a_late_rows_key_sorts_as_its_time_and_row(entries: list[tuple[float, int]]) -> None:
    """The late heap's one-int key orders as the (retention time, row) tuple it replaced, negative
    times, -0.0 and infinities included; the row comes back out of it."""
    keys = {terminal._late_key(t, row): (t, row) for t, row in entries}
    assert all(key >= 0 and key & terminal._ROW == row for key, (_, row) in keys.items())
    assert [keys[k] for k in sorted(keys)] == sorted(keys.values())


def test_a_late_row_costs_its_heap_an_int() -> None:
    """A size census of 20,000 rows that ended out of order (each before the newest, as a worker's
    report that arrives after a later one does): the late heap's bytes per row (53 measured: an
    int and its slot; 91 as a tuple of the row's float end time and an int)."""
    spec, effective = JobSpec("a"), EffectiveSpec(1, 1.0, 1.0, 2.0, 30.0)
    newest = Job(IDS.job_id(1), spec, effective, 0.0, "", JobState.SUCCEEDED, 1, 1e6, 0.5, 1e6,
                 "w", 30.0, 60.0, 0.0, None, b"", 0)  # fmt: skip
    made = [
        Job(IDS.job_id(seq), spec, effective, seq, "", JobState.SUCCEEDED, 1, seq + 1.0, seq + 0.5, seq + 1.0,
            "w", seq + 30.0, seq + 60.0, 0.0, None, b"", 0)
        for seq in range(2, 20_002)
    ]  # fmt: skip
    store = TerminalStore(IDS, ttl=86_400.0, limit=10**6)
    store.add(newest)
    gc.collect()
    tracemalloc.start()
    try:
        for job in made:
            store.add(job)
        del made
        gc.collect()
        late = tracemalloc.get_traced_memory()[0]
        store._late.clear()
        late -= tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert late / 20_000 <= 60, f"{late / 20_000:.0f} bytes a late row"
    assert store._oldest() is not None
