"""The core's byte budgets (issue 26): replies that carry payloads or many jobs end before
max_reply_bytes, unfinished payloads are bounded by max_pending_bytes, finished jobs keep no payload
and their results are bounded (max_result_bytes each, max_retained_bytes in all, large ones out of RAM).
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.commands import Enqueue, JobFinished, JobsExpired, StoreOutput
from model.config import CoreConfig
from model.errors import InvalidArgument, ResourceExhausted
from model.ids import JobIdFactory
from model.job import Failed, JobError, JobSpec, Succeeded, assignment_bytes
from model.jobs import JobTable, Retention
from model.scheduler import Scheduler
from model.states import JobState

KIB = 1 << 10
CONFIG = CoreConfig(
    max_payload_bytes=64 * KIB,
    max_result_bytes=64 * KIB,
    max_reply_bytes=400 * KIB,
    max_pending_bytes=4 << 20,
    max_retained_bytes=100 * KIB,
    max_inline_result_bytes=8 * KIB,
    max_error_chars=100,
    max_labels=4,
)


def scheduler(config: CoreConfig = CONFIG) -> Scheduler:
    return Scheduler(config, JobIdFactory("n1", "1"))


def big(size: int, priority: int = 0) -> JobSpec:
    return JobSpec.make("echo", payload=b"p" * size, priority=priority)


# ---------------------------------------------------------------------------- replies
def test_fetch_leases_what_fits_and_keeps_the_rest_in_line() -> None:
    sched = scheduler()
    ids = [sched.submit(0.0, big(60 * KIB)).job.job_id for _ in range(10)]
    first = sched.fetch(0.0, "w", 12)
    sizes = [assignment_bytes(a.job_id, a.spec) for a in first]
    assert len(first) == 6 and sum(sizes) <= CONFIG.max_reply_bytes  # a 7th would pass 400 KiB
    assert [a.job_id for a in first] == ids[:6]
    rest = [sched.jobs.get(job_id) for job_id in ids[6:]]
    assert all(job.state is JobState.PENDING and job.attempt == 0 for job in rest)  # nothing burnt
    assert sched.queue.ready_count == 4
    assert [a.job_id for a in sched.fetch(0.0, "w", 12)] == ids[6:]  # in their places, FIFO


def test_one_job_always_fits_and_priority_order_holds() -> None:
    sched = scheduler()
    low = sched.submit(0.0, big(10 * KIB)).job.job_id
    high = sched.submit(0.0, big(60 * KIB, priority=5)).job.job_id
    assert [a.job_id for a in sched.fetch(0.0, "w", 2, max_bytes=1)] == [high]  # over budget, alone
    assert [a.job_id for a in sched.fetch(0.0, "w", 2, max_bytes=1)] == [low]


def test_steal_is_bounded_by_bytes_too() -> None:
    sched = scheduler()
    for _ in range(12):
        sched.submit(0.0, big(60 * KIB))
    stolen = sched.steal(0.0, "n2-w", 12)
    assert len(stolen) == 6 and sched.queue.ready_count == 6
    assert sched.stolen_out == 6


def test_lease_batch_requeues_what_does_not_fit() -> None:
    table = JobTable(CONFIG, JobIdFactory("job", "1"))
    ids = [table.submit(0.0, big(60 * KIB)).job.job_id for _ in range(8)]
    table.cancel(0.0, ids[1])  # a stale queue entry: skipped
    leased, requeue = table.lease_batch(0.0, [*ids, "job-1-00000000ff", "bad id"], "w")
    assert [a.job_id for a in leased] == [ids[0], *ids[2:8]][:6]
    assert requeue == [Enqueue(ids[7], 0, 0.0)]
    assert table.get(ids[7]).state is JobState.PENDING and table.get(ids[7]).attempt == 0


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.tuples(st.integers(0, 64 * KIB), st.integers(0, 2)), min_size=1, max_size=30),
    slots=st.integers(1, 12),
    budget=st.integers(1, 500 * KIB),
)
def test_every_ready_job_is_handed_out_once_in_order(
    sizes: list[tuple[int, int]], slots: int, budget: int
) -> None:
    sched = scheduler()
    specs = {sched.submit(0.0, big(size, priority)).job.job_id: priority for size, priority in sizes}
    handed: list[str] = []
    for _ in range(len(specs)):
        batch = sched.fetch(0.0, "w", slots, max_bytes=budget)
        assert 1 <= len(batch) <= slots
        if len(batch) > 1:
            assert sum(assignment_bytes(a.job_id, a.spec) for a in batch) <= budget
        assert all(a.attempt == 1 for a in batch)
        handed += [a.job_id for a in batch]
        if len(handed) == len(specs):
            break
    # best priority first, FIFO within one (ids are in submit order)
    assert handed == sorted(specs, key=lambda job_id: (-specs[job_id], job_id))
    assert sched.fetch(0.0, "w", slots, max_bytes=budget) == []


# ---------------------------------------------------------------------------- payloads
def test_pending_bytes_are_bounded_and_freed_when_jobs_end() -> None:
    config = dataclasses.replace(CONFIG, max_pending_bytes=256 * KIB)
    table = JobTable(config, JobIdFactory("n1", "1"))
    ids = [table.submit(0.0, big(64 * KIB)).job.job_id for _ in range(4)]  # 256 KiB: the bound
    with pytest.raises(ResourceExhausted, match=r"queue is full: .* payload bytes"):
        table.submit(0.0, big(1))
    assert table.submit(0.0, big(0)).job.state is JobState.PENDING  # an empty payload still fits
    table.lease(0.0, ids[0], "w")
    with pytest.raises(ResourceExhausted):
        table.submit(0.0, big(1))  # a running job's payload is still needed
    table.complete(1.0, ids[0], 1, "w", Succeeded(b"ok"))
    assert table.get(ids[0]).spec.payload == b""  # nothing returns a finished job's payload
    assert table.pending_bytes == 3 * 64 * KIB
    table.submit(1.0, big(64 * KIB))
    table.cancel(1.0, ids[1])
    assert table.get(ids[1]).spec.payload == b"" and table.pending_bytes == 3 * 64 * KIB


def test_restore_drops_old_payloads_of_finished_jobs_and_counts_the_rest() -> None:
    source = JobTable(CONFIG, JobIdFactory("n1", "1"))
    done = source.submit(0.0, big(KIB)).job
    source.lease(0.0, done.job_id, "w")
    source.complete(0.0, done.job_id, 1, "w", Succeeded(b"x" * 10))
    waiting = source.submit(0.0, big(2 * KIB)).job
    old_record = dataclasses.replace(done, spec=big(KIB))  # saved before payloads were dropped
    table = JobTable(CONFIG, JobIdFactory("n1", "2"))
    table.restore(old_record)
    table.restore(dataclasses.replace(waiting))
    assert table.get(done.job_id).spec.payload == b""
    assert table.pending_bytes == 2 * KIB
    assert table.retention.bytes == 10


# ---------------------------------------------------------------------------- results
def test_an_output_over_the_limit_fails_the_job_for_good() -> None:
    table = JobTable(CONFIG, JobIdFactory("n1", "1"))
    job_id = table.submit(0.0, big(1)).job.job_id
    table.lease(0.0, job_id, "w")
    job = table.complete(0.0, job_id, 1, "w", Succeeded(b"o" * (64 * KIB + 1))).job
    assert job.state is JobState.FAILED and job.output is None
    assert job.error is not None and job.error.reason == "RESULT_TOO_LARGE" and not job.error.retryable
    assert "65537 bytes; the limit is 65536" in job.error.message


def test_a_long_error_message_is_cut() -> None:
    table = JobTable(CONFIG, JobIdFactory("n1", "1"))
    job_id = table.submit(0.0, big(1)).job.job_id
    table.lease(0.0, job_id, "w")
    error = JobError("e" * 10_000, retryable=False, reason="R" * 1000)
    job = table.complete(0.0, job_id, 1, "w", Failed(error)).job
    assert job.error is not None and len(job.error.message) == 100 and len(job.error.reason) == 64


def test_large_outputs_are_stored_not_kept_in_ram() -> None:
    table = JobTable(CONFIG, JobIdFactory("n1", "1"))
    small, large = (table.submit(0.0, big(1)).job.job_id for _ in range(2))
    for job_id in (small, large):
        table.lease(0.0, job_id, "w")
    kept = table.complete(0.0, small, 1, "w", Succeeded(b"s" * (8 * KIB)))
    assert kept.job.output == b"s" * (8 * KIB) and kept.commands == [JobFinished(small, JobState.SUCCEEDED)]
    stored = table.complete(0.0, large, 1, "w", Succeeded(b"L" * (8 * KIB + 1)))
    assert stored.job.output is None and stored.job.output_size == 8 * KIB + 1
    assert stored.commands[0] == StoreOutput(large, b"L" * (8 * KIB + 1))  # before JobFinished


def test_results_are_retained_up_to_a_byte_budget_oldest_first() -> None:
    table = JobTable(CONFIG, JobIdFactory("n1", "1"))  # 100 KiB of results
    ids = []
    for n in range(4):
        job_id = table.submit(float(n), big(1)).job.job_id
        table.lease(float(n), job_id, "w")
        table.complete(float(n), job_id, 1, "w", Succeeded(b"r" * (40 * KIB)))
        ids.append(job_id)
    assert table.retention.bytes == 160 * KIB
    assert table.next_deadline() == 0.0  # over the bound: due at once
    (expired,) = [c for c in table.handle_timer(4.0) if isinstance(c, JobsExpired)]
    assert expired.job_ids == tuple(ids[:2])  # down to 99 KiB: the two oldest go
    assert table.retention.bytes == 80 * KIB and table.find(ids[2]) is not None


def test_retention_weighs_keys_and_readding_replaces_the_weight() -> None:
    retention: Retention[str] = Retention(0.0, 100, max_bytes=10)
    retention.add(0.0, "a", 6)
    retention.add(1.0, "b", 4)
    assert retention.next_deadline() is None and retention.bytes == 10
    retention.add(2.0, "a", 7)  # moved to the back, heavier
    assert retention.bytes == 11 and retention.expire(2.0) == ["b"]
    retention.discard("a")
    assert retention.bytes == 0 and len(retention) == 0


# ---------------------------------------------------------------------------- config
def test_config_needs_a_reply_that_holds_one_job() -> None:
    with pytest.raises(InvalidArgument, match=r"max_reply_bytes .* must hold one job"):
        CoreConfig(max_reply_bytes=1 << 20)  # a 1 MiB payload plus its status does not fit
    with pytest.raises(InvalidArgument, match="max_reply_bytes"):
        CoreConfig(max_result_bytes=4 << 20)
    for name in ("max_pending_bytes", "max_retained_bytes", "max_inline_result_bytes", "max_error_chars"):
        with pytest.raises(InvalidArgument, match=name):
            CoreConfig(**{name: -1})
    with pytest.raises(InvalidArgument, match=r"max_pending_bytes \(1000\) must be >= max_payload_bytes"):
        CoreConfig(max_pending_bytes=1000)
    with pytest.raises(InvalidArgument, match="max_worker_slots"):
        CoreConfig(max_worker_slots=0)
    defaults = CoreConfig()
    assert defaults.max_status_bytes < 160 * KIB  # labels and error at their limits, 4-byte chars
    assert defaults.max_reply_bytes >= defaults.max_result_bytes + defaults.max_status_bytes
