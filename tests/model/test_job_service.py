"""model/job_service.py, Design A's job-service driver: the sweep and staleness formulas, the outbox,
LeaseJobs' byte budget (the core's max_reply_bytes), the restore grace and retention deletes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.actions import DRAINING_OWNER_RETRY_AFTER, PutResult, Wake
from model.commands import JobFinished, NotifyCancel
from model.config import CoreConfig
from model.errors import NotFound, StaleAttempt, Unavailable
from model.ids import JobIdFactory
from model.job import Failed, JobError, JobSpec, Succeeded, assignment_bytes
from model.job_service import JobService, stale_after, sweep_interval
from model.jobs import JobTable
from model.states import JobState

CONFIG = CoreConfig(lease_duration=3.0, heartbeat_interval=1.0, worker_ttl=2.5, result_ttl=10.0)


def service(config: CoreConfig = CONFIG) -> JobService[int]:
    table = JobTable(config, JobIdFactory(node="job", incarnation="1"))
    jobs: JobService[int] = JobService(table, rpc_timeout=5.0)
    jobs.timer.start()
    return jobs


def test_sweep_and_staleness_formulas() -> None:
    assert sweep_interval(CoreConfig(lease_duration=1.0, heartbeat_interval=0.5, worker_ttl=0.9)) == 5.0
    assert sweep_interval(CoreConfig(lease_duration=10.0)) == 30.0
    assert sweep_interval(CoreConfig(lease_duration=100.0)) == 60.0
    assert sweep_interval(CONFIG, 0.3) == 0.3
    assert stale_after(CONFIG, 5.0) == CONFIG.reservation_hold + 3.0 + 5.0


def test_create_goes_to_the_outbox_and_the_sweep_repairs_a_lost_entry() -> None:
    jobs = service()
    submitted, step = jobs.create(0.0, JobSpec.make("echo"))
    job_id = submitted.job.job_id
    assert [j.job_id for j in step.save] == [job_id] and step.flush
    batch, entries = jobs.take_batch()
    assert list(batch) == [job_id] and [e.job_id for e in entries] == [job_id]
    assert not jobs.outbox
    assert not jobs.sweep(jobs.stale_after - 0.01)  # not stale yet
    assert jobs.sweep(jobs.stale_after + 0.01)  # still PENDING: enqueued again
    assert list(jobs.outbox) == [job_id]
    jobs.put_back({job_id: batch[job_id]})  # a failed send: a newer command wins
    assert jobs.outbox[job_id] is not batch[job_id]


def test_entries_carry_the_policy_key_also_when_the_sweep_sends_them_again() -> None:
    jobs = service(CoreConfig(lease_duration=3.0, heartbeat_interval=1.0, worker_ttl=2.5, policy="fair"))
    submitted, _ = jobs.create(0.0, JobSpec.make("echo", labels={"tenant": "x"}))
    unlabelled, _ = jobs.create(0.0, JobSpec.make("echo"))
    _, entries = jobs.take_batch()
    assert [e.key for e in entries] == ["x", ""]
    assert jobs.sweep(jobs.stale_after + 0.01)
    _, entries = jobs.take_batch()
    assert [(e.job_id, e.key) for e in entries] == [(submitted.job.job_id, "x"), (unlabelled.job.job_id, "")]
    fifo = service()
    fifo.create(0.0, JobSpec.make("echo", labels={"tenant": "x"}))
    assert [e.key for e in fifo.take_batch()[1]] == [""]  # fifo has no key: entries as before


def test_a_cancelled_job_needs_no_entry_and_wakes_its_waiters() -> None:
    jobs = service()
    submitted, _ = jobs.create(0.0, JobSpec.make("echo"))
    job_id = submitted.job.job_id
    jobs.add_waiter(7, job_id)
    job, step = jobs.cancel(1.0, job_id)
    assert job.state is JobState.CANCELLED
    assert [list(e.tokens) for e in step.effects if isinstance(e, Wake)] == [[7]]
    assert any(isinstance(e, JobFinished) for e in step.effects)
    assert step.rearm  # the retention deadline
    _, entries = jobs.take_batch()
    assert entries == []


def test_cancel_of_a_running_job_notifies_its_worker_and_completion_strips_the_output() -> None:
    jobs = service()
    submitted, _ = jobs.create(0.0, JobSpec.make("echo"))
    job_id = submitted.job.job_id
    leased, step = jobs.lease(0.1, "w1", [job_id])
    assert [a.job_id for a in leased] == [job_id] and [j.job_id for j in step.save] == [job_id]
    _, step = jobs.cancel(0.2, job_id)
    assert [e for e in step.effects if isinstance(e, NotifyCancel)] == [NotifyCancel(job_id, 1, "w1")]
    jobs2 = service()
    submitted, _ = jobs2.create(0.0, JobSpec.make("echo"))
    jobs2.lease(0.1, "w1", [submitted.job.job_id])
    job, _ = jobs2.complete(0.2, submitted.job.job_id, 1, "w1", Succeeded(b"big output"))
    assert job.state is JobState.SUCCEEDED and job.output == b""  # the bytes live in the result service
    assert job.output_size == len(b"big output")  # retention weighs the job by them


def test_restore_grace_and_retention_deletes() -> None:
    jobs = service()
    a, _ = jobs.create(0.0, JobSpec.make("echo"))
    b, _ = jobs.create(0.0, JobSpec.make("echo"))
    jobs.lease(0.0, "w1", [a.job.job_id])
    jobs.cancel(0.0, b.job.job_id)
    records = [a.job, b.job]
    restarted = service()
    assert restarted.restore(100.0, records) == 2
    assert a.job.lease_deadline == 100.0 + CONFIG.lease_duration  # a full lease to reach us
    step = restarted.on_timer(100.0)
    assert list(step.delete) == [b.job.job_id]  # ended long ago: retention drops it now
    assert not step.rearm  # the timer re-arms itself after a firing


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 3000), min_size=1, max_size=12), st.integers(0, 20000))
def test_lease_reply_stays_within_its_budget_and_nothing_is_lost(payloads: list[int], extra: int) -> None:
    small = CoreConfig(max_payload_bytes=3000, max_result_bytes=3000, max_labels=1, max_label_chars=8)
    config = CoreConfig(
        max_payload_bytes=3000,
        max_result_bytes=3000,
        max_labels=1,
        max_label_chars=8,
        max_reply_bytes=3000 + small.max_status_bytes + extra,
    )
    jobs = service(config)
    ids = [jobs.create(0.0, JobSpec.make("echo", b"x" * n))[0].job.job_id for n in payloads]
    jobs.take_batch()
    leased, step = jobs.lease(1.0, "w1", ids)
    sizes = [assignment_bytes(a.job_id, a.spec) for a in leased]
    assert leased  # the first always goes, whatever its size
    assert sum(sizes) <= config.max_reply_bytes  # the core's byte budget (JobTable.lease_batch)
    assert {j.job_id for j in step.save} == {a.job_id for a in leased}
    rest = [job_id for job_id in ids if job_id not in {a.job_id for a in leased}]
    assert set(jobs.outbox) == set(rest)  # each one not leased goes back to the queue
    assert step.flush == bool(rest)


def test_only_the_lease_holder_gets_its_result_stored() -> None:
    """Issue 26, defect 1: the fence comes before the result service is written."""
    jobs = service()
    submitted, _ = jobs.create(0.0, JobSpec.make("echo"))
    job_id = submitted.job.job_id
    jobs.lease(0.1, "w1", [job_id])
    for worker, attempt in (("w2", 1), ("w1", 2), ("w1", 0)):
        with pytest.raises(StaleAttempt):
            jobs.fence(job_id, attempt, worker, Succeeded(b"forged"))
    with pytest.raises(NotFound):
        jobs.fence("job-1-0000000099", 1, "w1", Succeeded(b"early"))  # a job not made yet
    assert jobs.fence(job_id, 1, "w1", Succeeded(b"real")) == PutResult(job_id, 1, b"real")
    assert jobs.fence(job_id, 1, "w1", Failed(JobError("boom"))) is None  # the record keeps the error
    too_big = Succeeded(b"x" * (CONFIG.max_result_bytes + 1))
    assert jobs.fence(job_id, 1, "w1", too_big) is None  # it fails the job: nothing to store
    job, _ = jobs.complete(0.2, job_id, 1, "w1", Succeeded(b"real"))
    assert job.state is JobState.SUCCEEDED
    with pytest.raises(StaleAttempt):  # a duplicate after the end stores nothing either
        jobs.fence(job_id, 1, "w1", Succeeded(b"again"))


def test_a_draining_job_service_answers_long_polls_unavailable_with_a_retry_after() -> None:
    jobs = service()
    job = jobs.create(0.0, JobSpec.make("echo"))[0].job
    assert jobs.add_waiter(1, job.job_id)
    jobs.wait_ended(job, 5.0)  # not draining: the job as it is
    step = jobs.start_draining()
    assert [list(e.tokens) for e in step.effects if isinstance(e, Wake)] == [[1]]
    assert not jobs.add_waiter(2, job.job_id)  # no new waits
    with pytest.raises(Unavailable) as info:
        jobs.wait_ended(job, 5.0)
    assert info.value.retry_after == DRAINING_OWNER_RETRY_AFTER
    jobs.wait_ended(job, 0.0)  # a read that asked for no wait is answered
