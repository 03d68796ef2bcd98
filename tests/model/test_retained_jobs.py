"""A retained terminal job is kept compact (its spec without payload and shared with every job of the
same settings, its effective spec and worker name shared) and still answers GetJobStatus,
GetJobResult and ListJobs as it did before; and what one retained job costs stays within a budget."""

from __future__ import annotations

import gc
import tracemalloc
from types import MappingProxyType
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lab.bench.memory import run_finished_jobs
from model.config import CoreConfig
from model.ids import JobIdFactory
from model.job import CancelledByWorker, Failed, Job, JobError, JobSpec, RetryPolicy, Succeeded, spec_bytes
from model.jobs import JobTable
from model.listing import ListQuery
from model.states import JobState

CONFIG = CoreConfig(max_page_size=1000, max_pending=100_000)
JOB_TYPES = ("alpha", "beta")
LABELS = st.dictionaries(st.sampled_from(["team", "env", "tier"]), st.sampled_from(["a", "b"]), max_size=2)
ENDINGS = ["succeed", "fail", "cancel_pending", "cancel_running"]

plans = st.lists(
    st.tuples(
        st.sampled_from(JOB_TYPES),
        st.binary(max_size=20),  # payload
        st.integers(-1, 1),  # priority
        LABELS,
        st.sampled_from([0, 3]),  # retry.max_attempts
        st.sampled_from([0.0, 30.0]),  # execution_timeout
        st.sampled_from(ENDINGS),
        st.binary(max_size=10),  # output
    ),
    min_size=1,
    max_size=25,
)


def fresh_spec(
    job_type: str, payload: bytes, priority: int, labels: dict[str, str], attempts: int, timeout: float
) -> JobSpec:
    """A spec built from new objects, as a real node decodes one per request."""
    return JobSpec(
        "".join(job_type),  # a new string object
        bytes(payload),
        priority,
        RetryPolicy(max_attempts=attempts),
        timeout,
        MappingProxyType(dict(labels)),
    )


def view(job: Job) -> dict[str, Any]:
    """What GetJobStatus and GetJobResult answer about a job, and what ListJobs filters on, but
    the fields its ending changes (state, times of the end, error, output)."""
    return {
        "job_id": job.job_id,
        "job_type": job.spec.job_type,
        "priority": job.spec.priority,
        "retry": job.spec.retry,
        "execution_timeout": job.spec.execution_timeout,
        "labels": list(job.spec.labels.items()),  # in their order
        "effective": job.effective,
        "create_time": job.create_time,
        "request_id": job.request_id,
        "attempt": job.attempt,
        "start_time": job.start_time,
        "worker_id": job.worker_id,
    }


@settings(max_examples=150, deadline=None)
@given(plans)
def test_a_retained_job_answers_as_before_it_was_compacted(plans: list[tuple[Any, ...]]) -> None:
    table = JobTable(CONFIG, JobIdFactory("n1", "1"))
    now = 0.0
    before: dict[str, dict[str, Any]] = {}
    specs: dict[str, JobSpec] = {}
    outputs: dict[str, bytes] = {}
    for i, (job_type, payload, priority, labels, attempts, timeout, ending, output) in enumerate(plans):
        now += 0.25
        spec = fresh_spec(job_type, payload, priority, labels, attempts, timeout)
        job = table.submit(now, spec, request_id=f"r{i}" if i % 2 else "").job
        specs[job.job_id] = spec
        if ending == "cancel_pending":
            before[job.job_id] = view(job)
            table.cancel(now, job.job_id)
            continue
        a = table.lease(now, job.job_id, "".join(["worker-", str(i % 2)]))  # new name objects
        before[job.job_id] = view(job)
        now += 0.5
        if ending == "succeed":
            table.complete(now, job.job_id, a.attempt, a.worker_id, Succeeded(output))
            outputs[job.job_id] = output
        elif ending == "fail":
            table.complete(now, job.job_id, a.attempt, a.worker_id, Failed(JobError("boom", retryable=False)))
        else:
            table.cancel(now, job.job_id)
            table.complete(now, job.job_id, a.attempt, a.worker_id, CancelledByWorker())
    table.handle_timer(now + 60.0)  # leases' timer entries due: nothing is left running
    done = [table.get(job_id) for job_id in before]
    assert all(job.done for job in done)
    for job in done:
        assert view(job) == before[job.job_id]  # GetJobStatus's fields, as before the end
        assert job.spec.payload == b""
        assert job.status_bytes == (
            spec_bytes(specs[job.job_id], include_payload=False)
            + len(job.job_id)
            + len(job.worker_id)
            + len(job.request_id)
            + (len(job.error.message) + len(job.error.reason) if job.error is not None else 0)
        )
        if job.job_id in outputs:  # GetJobResult
            assert job.state is JobState.SUCCEEDED
            assert job.output == outputs[job.job_id] and job.output_size == len(outputs[job.job_id])
    # the compaction happened: jobs of equal settings share one spec, effective spec and worker name
    by_settings: dict[tuple[Any, ...], Job] = {}
    for job in done:
        s = job.spec
        first = by_settings.setdefault(
            (s.job_type, s.priority, s.retry, s.execution_timeout, tuple(s.labels.items())), job
        )
        assert first.spec is job.spec and first.effective is job.effective
        if first.worker_id == job.worker_id:
            assert first.worker_id is job.worker_id
    # ListJobs: every filter finds what the original specs say it should
    queries = [ListQuery()]
    queries += [ListQuery.make(job_type=t) for t in JOB_TYPES]
    queries += [ListQuery.make(labels={"team": "a"}), ListQuery.make(job_type="alpha", labels={"env": "b"})]
    queries += [
        ListQuery.make(states=[state]) for state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
    ]
    for query in queries:
        got = [job.job_id for job in table.list_page(query, page_size=1000).items]
        want = [
            job.job_id
            for job in done
            if query.matches(job, specs[job.job_id].job_type, dict(specs[job.job_id].labels))
        ]
        assert got == want


def _run_jobs(table: JobTable, n: int, t0: float) -> float:
    """n jobs through submit, lease and success, each with a new spec as a real node decodes it
    (the loop lab.bench.memory measures with)."""
    return run_finished_jobs(table, n, t0, lambda i: fresh_spec("sleep", b"x" * 64, i % 3, {}, 0, 0.0))


RETAINED_JOB_BUDGET = 200  # bytes; 1003 before retained jobs were compacted, 436 before the columns


def test_a_retained_job_costs_at_most_its_budget() -> None:
    """Every byte a table holds for its retained jobs, per job (tracemalloc: allocations, not time):
    its row of columns (model/terminal.py), the listing index and the sequence -> row slot. About 128
    on CPython 3.11; the budget leaves room for another allocator's rounding and the arrays' growth."""
    table = JobTable(CONFIG, JobIdFactory("n1", "1"))
    t = _run_jobs(table, 2000, 1000.0)  # warm: the shared specs and names exist
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        n = 20_000
        _run_jobs(table, n, t)
        gc.collect()
        per_job = (tracemalloc.get_traced_memory()[0] - start) / n
    finally:
        tracemalloc.stop()
    assert len(table) == 22_000 and table.count_by_state[JobState.SUCCEEDED] == 22_000
    assert per_job <= RETAINED_JOB_BUDGET, f"{per_job:.0f} bytes a retained job"


def test_a_retained_job_holds_no_object_of_its_own() -> None:
    """A finished job is no Job object in the table: its row holds raw numbers and two references,
    one to a shape (spec, effective spec, worker, request id, error) shared by every job of the same
    settings and worker, one to its output (the one empty bytes object when empty)."""
    table = JobTable(CONFIG, JobIdFactory("n1", "1"))
    _run_jobs(table, 240, 0.0)
    store = table.retention
    assert len(store) == 240 and not table._jobs
    assert len({id(shape) for shape in store._shape}) == 12  # a worker (i % 12) fixes the priority (i % 3)
    assert all(output == b"" for output in store._output)
    one, other = table.get("n1-1-0000000002"), table.get("n1-1-0000000002")
    assert one == other and one is not other  # built again for each read
