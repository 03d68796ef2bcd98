"""sim/idcolumns.py: the per-job maps held as columns answer as a dict, a set of flags and a list of
ids would, for the core's ids (sequence numbers) and for any other string."""

from __future__ import annotations

import gc
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from model.ids import JobIdFactory
from sim.idcolumns import JobFlags, JobFloats, JobIds
from sim.worker import Executions

# the core's ids of a few nodes, and strings of no such form (or nearly: upper-case hex, short)
core_ids = st.builds(
    lambda node, seq: f"{node}-1-{seq:010x}", st.sampled_from(["n0", "n17", "owner"]), st.integers(1, 3000)
)
other_ids = st.sampled_from(["n0-1-000000000A", "x", "", "n0-1-00000001", "n0-1- 000000001"]) | st.text(
    max_size=14
)
ids = core_ids | other_ids
values = st.floats(-1e12, 1e12, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["set", "pop"]), ids, values), max_size=60), st.lists(ids, max_size=10)
)
def test_job_floats_answers_as_a_dict(ops: list[tuple[str, str, float]], probes: list[str]) -> None:
    floats, want = JobFloats(), dict[str, float]()
    for op, job_id, value in ops:
        if op == "set":
            floats[job_id] = value
            want[job_id] = value
        else:
            assert floats.pop(job_id) == want.pop(job_id, None)
    assert len(floats) == len(want) and sorted(floats) == sorted(want)
    for job_id in [*want, *probes]:
        assert floats.get(job_id) == want.get(job_id) and (job_id in floats) == (job_id in want)
        assert floats.get(job_id, -1.5) == want.get(job_id, -1.5)


@settings(max_examples=200, deadline=None)
@given(st.lists(ids, max_size=60))
def test_job_ids_and_executions_answer_as_a_list_and_sets(started: list[str]) -> None:
    listed, executions = JobIds(), Executions()
    for job_id in started:
        listed.append(job_id)
        executions.append((job_id, 1))
    assert len(listed) == len(started) and list(listed) == started
    assert [listed[i] for i in range(len(started))] == started
    assert len(executions) == len(started)
    # one id per start, up to twice a job: what model.audit.duplicate_jobs tells apart
    want = [job_id for job_id in dict.fromkeys(started) for _ in range(min(2, started.count(job_id)))]
    assert sorted(executions.started_ids()) == sorted(want)
    assert executions.duplicates() == sorted({job_id for job_id in started if started.count(job_id) > 1})
    flags = JobFlags()
    for job_id in started:
        flags.set(job_id, 3)
    assert sorted(flags.items()) == sorted((job_id, 3) for job_id in set(started))


def test_a_job_costs_a_slot_of_a_column_not_its_id_string() -> None:
    """A size census (tracemalloc): 30,000 ids of one node in each map, with the id strings let go:
    about 8 bytes a job for the floats and the ids, 1 for the flags, where a dict with its keys kept
    about 150."""
    factory = JobIdFactory("n42", "1")
    n = 30_000
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        floats, listed, flags = JobFloats(), JobIds(), JobFlags()
        for _ in range(n):
            job_id = factory.new_id()  # a new string, dropped after this turn
            floats[job_id] = 0.5
            listed.append(job_id)
            flags.set(job_id, 1)
        gc.collect()
        per_job = (tracemalloc.get_traced_memory()[0] - start) / n
    finally:
        tracemalloc.stop()
    assert len(floats) == n and len(listed) == n and listed[-1] == f"n42-1-{n:010x}"
    assert per_job <= 24, f"{per_job:.1f} bytes a job in three maps"
