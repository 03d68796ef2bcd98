"""JobTable: submit, validation, cancel, leases, fencing, retries, timers, renewals and restore."""

from __future__ import annotations

import copy
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.commands import Enqueue, JobFinished, LeaseExpired, NotifyCancel, Unqueue
from model.config import CoreConfig
from model.errors import (
    Code,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    StaleAttempt,
)
from model.ids import JobIdFactory
from model.job import CancelledByWorker, Failed, Job, JobError, JobSpec, RetryPolicy, Succeeded
from model.jobs import JobTable, Transition
from model.listing import ListQuery
from model.states import IllegalTransition, JobState

CONFIG = CoreConfig(
    lease_duration=10.0,
    heartbeat_interval=2.0,
    default_execution_timeout=100.0,
    default_max_attempts=3,
    default_initial_backoff=1.0,
    default_max_backoff=8.0,
    default_backoff_multiplier=2.0,
    max_pending=5,
    max_payload_bytes=16,
)


class FixedRandom:
    """A RandomSource that returns the given values in turn."""

    def __init__(self, *values: float) -> None:
        self.values = list(values)
        self.calls = 0

    def random(self) -> float:
        self.calls += 1
        return self.values[(self.calls - 1) % len(self.values)]


def make_table(config: CoreConfig = CONFIG, rng: FixedRandom | None = None) -> JobTable:
    return JobTable(config, JobIdFactory("n1", "a"), rng)


def spec(**kwargs: object) -> JobSpec:
    return JobSpec.make("echo", **kwargs)  # type: ignore[arg-type]


def running(table: JobTable, now: float = 0.0, worker: str = "w1", **kwargs: object) -> str:
    job_id = table.submit(now, spec(**kwargs)).job.job_id
    table.lease(now, job_id, worker)
    return job_id


FAIL_RETRYABLE = Failed(JobError("boom", retryable=True))
FAIL_FATAL = Failed(JobError("bad input", retryable=False))


# ---------------------------------------------------------------------------- submit
def test_submit_creates_a_pending_job_and_enqueues_it() -> None:
    table = make_table()
    result = table.submit(3.0, spec(priority=7, labels={"k": "v"}))
    job = result.job
    assert not result.deduplicated
    assert job.state is JobState.PENDING and job.attempt == 0 and not job.done
    assert job.create_time == job.update_time == 3.0
    assert job.job_id == "n1-a-0000000001"
    assert result.commands == [Enqueue(job.job_id, 7, 3.0)]
    assert table.get(job.job_id) is job
    assert len(table) == 1 and list(table) == [job]
    assert table.count_by_state[JobState.PENDING] == 1 == table.pending_count
    # server defaults were applied
    eff = job.effective
    assert (eff.max_attempts, eff.initial_backoff, eff.max_backoff) == (3, 1.0, 8.0)
    assert (eff.backoff_multiplier, eff.execution_timeout) == (2.0, 100.0)


def test_submit_with_request_id_is_idempotent() -> None:
    table = make_table()
    first = table.submit(0.0, spec(), request_id="req-1")
    again = table.submit(5.0, spec(priority=9), request_id="req-1")
    assert again.deduplicated and again.commands == []
    assert again.job is first.job
    assert len(table) == 1
    other = table.submit(6.0, spec(), request_id="req-2")
    assert other.job.job_id != first.job.job_id and len(table) == 2
    # no request id: never deduplicated
    a, b = table.submit(7.0, spec()), table.submit(7.0, spec())
    assert a.job.job_id != b.job.job_id and not b.deduplicated


def test_dedup_returns_the_original_even_after_it_finished() -> None:
    table = make_table()
    job_id = table.submit(0.0, spec(), request_id="r").job.job_id
    table.cancel(1.0, job_id)
    again = table.submit(2.0, spec(), request_id="r")
    assert again.deduplicated and again.job.state is JobState.CANCELLED


def test_request_id_too_long() -> None:
    with pytest.raises(InvalidArgument):
        make_table().submit(0.0, spec(), request_id="x" * 129)
    make_table().submit(0.0, spec(), request_id="x" * 128)


@pytest.mark.parametrize(
    "bad",
    [
        JobSpec.make(""),
        JobSpec.make("1abc"),
        JobSpec.make("has space"),
        JobSpec.make("a" * 129),
        JobSpec.make("trailing\n"),
        spec(priority=2**31),
        spec(priority=-(2**31) - 1),
        spec(labels={"": "v"}),
        spec(labels={"k" * 257: "v"}),
        spec(labels={"k": "v" * 257}),
        spec(labels={f"k{i}": "v" for i in range(65)}),
        spec(retry=RetryPolicy(max_attempts=-1)),
        spec(retry=RetryPolicy(max_attempts=101)),
        spec(retry=RetryPolicy(initial_backoff=-1.0)),
        spec(retry=RetryPolicy(max_backoff=-1.0)),
        spec(retry=RetryPolicy(backoff_multiplier=-2.0)),
        spec(retry=RetryPolicy(backoff_multiplier=0.5)),
        spec(retry=RetryPolicy(initial_backoff=5.0, max_backoff=2.0)),
        spec(execution_timeout=-1.0),
        spec(execution_timeout=CONFIG.max_execution_timeout + 1),
        spec(execution_timeout=math.nan),
        spec(execution_timeout=math.inf),
        spec(retry=RetryPolicy(initial_backoff=math.nan)),
        spec(retry=RetryPolicy(initial_backoff=math.inf)),
        spec(retry=RetryPolicy(max_backoff=math.nan)),
        spec(retry=RetryPolicy(max_backoff=math.inf)),
        spec(retry=RetryPolicy(backoff_multiplier=math.nan)),
        spec(retry=RetryPolicy(backoff_multiplier=math.inf)),
    ],
)
def test_spec_validation(bad: JobSpec) -> None:
    table = make_table()
    with pytest.raises(InvalidArgument) as info:
        table.submit(0.0, bad)
    assert info.value.code is Code.INVALID_ARGUMENT
    assert len(table) == 0 and table.ids.next_sequence == 1  # no id was used up


def test_good_edge_specs_are_accepted() -> None:
    table = make_table(CoreConfig(max_payload_bytes=16))
    for good in (
        JobSpec.make("a"),
        JobSpec.make("A" + "b" * 127),
        JobSpec.make("ns.type:v1-x_y"),
        spec(priority=2**31 - 1),
        spec(priority=-(2**31)),
        spec(labels={f"k{i}": "" for i in range(64)}),
        spec(retry=RetryPolicy(max_attempts=100, backoff_multiplier=1.0)),
        spec(execution_timeout=CONFIG.max_execution_timeout),
        spec(payload=b"x" * 16),
    ):
        assert table.submit(0.0, good).job.state is JobState.PENDING


def test_oversize_payload_is_resource_exhausted() -> None:
    table = make_table()
    with pytest.raises(ResourceExhausted) as info:
        table.submit(0.0, spec(payload=b"x" * 17))
    assert info.value.code is Code.RESOURCE_EXHAUSTED
    assert len(table) == 0


def test_queue_full_is_resource_exhausted() -> None:
    table = make_table()  # max_pending=5
    ids = [table.submit(0.0, spec()).job.job_id for _ in range(5)]
    with pytest.raises(ResourceExhausted) as info:
        table.submit(0.0, spec())
    assert info.value.code is Code.RESOURCE_EXHAUSTED
    assert len(table) == 5
    # a retry of an accepted request still answers (dedup is checked first)
    table2 = make_table(CoreConfig(max_pending=1))
    table2.submit(0.0, spec(), request_id="r")
    assert table2.submit(0.0, spec(), request_id="r").deduplicated
    # room again once a pending job leaves PENDING
    table.lease(1.0, ids[0], "w")
    assert table.submit(1.0, spec()).job.state is JobState.PENDING


def test_spec_with_explicit_retry_policy() -> None:
    table = make_table()
    job = table.submit(
        0.0,
        spec(
            retry=RetryPolicy(max_attempts=7, initial_backoff=0.25, max_backoff=3.0, backoff_multiplier=3.0),
            execution_timeout=9.0,
        ),
    ).job
    eff = job.effective
    assert (eff.max_attempts, eff.initial_backoff, eff.max_backoff, eff.backoff_multiplier) == (
        7,
        0.25,
        3.0,
        3.0,
    )
    assert eff.execution_timeout == 9.0
    # an initial backoff above the default ceiling raises the ceiling rather than failing
    job = table.submit(0.0, spec(retry=RetryPolicy(initial_backoff=20.0))).job
    assert job.effective.max_backoff == 20.0


# ---------------------------------------------------------------------------- get
def test_get_malformed_is_invalid_argument_unknown_is_not_found() -> None:
    table = make_table()
    for bad in ("", "nope", "n1-a-", "N1-a-1", "n1-a-1\n", "x" * 1000):
        with pytest.raises(InvalidArgument):
            table.get(bad)
    with pytest.raises(NotFound) as info:
        table.get("n1-a-00000000ff")
    assert info.value.code is Code.NOT_FOUND
    with pytest.raises(NotFound):
        table.get("other-1-1")  # well formed, someone else's
    with pytest.raises(InvalidArgument):
        table.cancel(0.0, "garbage id")
    with pytest.raises(NotFound):
        table.cancel(0.0, "n1-a-5")
    with pytest.raises(NotFound):
        table.complete(0.0, "n1-a-5", 1, "w", Succeeded())
    with pytest.raises(NotFound):
        table.lease(0.0, "n1-a-5", "w")


# ---------------------------------------------------------------------------- cancel
def test_cancel_pending() -> None:
    table = make_table()
    job_id = table.submit(0.0, spec()).job.job_id
    result = table.cancel(2.0, job_id)
    assert result.job.state is JobState.CANCELLED and result.job.done
    assert result.commands == [Unqueue(job_id), JobFinished(job_id, JobState.CANCELLED)]
    assert result.job.end_time == 2.0
    assert result.job.error is not None and result.job.error.reason == "CANCELLED"
    assert table.count_by_state[JobState.CANCELLED] == 1 and table.pending_count == 0
    # the stale queue entry cannot be leased: the lease is the fence
    with pytest.raises(IllegalTransition):
        table.lease(3.0, job_id, "w")


def test_cancel_running_then_worker_acks() -> None:
    table = make_table()
    job_id = running(table, worker="w1")
    result = table.cancel(1.0, job_id)
    assert result.job.state is JobState.CANCELLING
    assert result.commands == [NotifyCancel(job_id, 1, "w1")]
    # cancelling again is harmless and notifies again
    assert table.cancel(1.5, job_id).commands == [NotifyCancel(job_id, 1, "w1")]
    renewal = table.renew(2.0, "w1", [(job_id, 1)])
    assert renewal.cancel == [(job_id, 1)] and renewal.abandon == [] and renewal.renewed == 1
    done = table.complete(3.0, job_id, 1, "w1", CancelledByWorker())
    assert_cancelled(done, job_id)


def assert_cancelled(done: Transition, job_id: str) -> None:
    """The attempt's end left the job CANCELLED, with its CANCELLED error and a JobFinished."""
    assert done.job.state is JobState.CANCELLED
    assert done.commands == [JobFinished(job_id, JobState.CANCELLED)]
    assert done.job.error is not None and done.job.error.reason == "CANCELLED"


def test_cancelling_job_that_succeeds_anyway_keeps_its_result() -> None:
    table = make_table()
    job_id = running(table)
    table.cancel(1.0, job_id)
    done = table.complete(2.0, job_id, 1, "w1", Succeeded(b"out"))
    assert done.job.state is JobState.SUCCEEDED and done.job.output == b"out"


@pytest.mark.parametrize("outcome", [FAIL_RETRYABLE, FAIL_FATAL])
def test_cancelling_job_is_never_retried(outcome: Failed) -> None:
    table = make_table()
    job_id = running(table)
    table.cancel(1.0, job_id)
    done = table.complete(2.0, job_id, 1, "w1", outcome)
    assert_cancelled(done, job_id)


def test_cancelling_job_whose_lease_lapses_is_cancelled() -> None:
    table = make_table()
    job_id = running(table)
    table.cancel(1.0, job_id)
    commands = table.handle_timer(10.0)
    assert commands == [
        LeaseExpired(job_id, 1, "w1", "LEASE_EXPIRED", requeued=False),
        JobFinished(job_id, JobState.CANCELLED),
    ]
    assert table.get(job_id).state is JobState.CANCELLED


@pytest.mark.parametrize("final", ["succeed", "fail", "cancel"])
def test_cancel_terminal_is_failed_precondition(final: str) -> None:
    table = make_table()
    job_id = running(table)
    if final == "succeed":
        table.complete(1.0, job_id, 1, "w1", Succeeded())
    elif final == "fail":
        table.complete(1.0, job_id, 1, "w1", FAIL_FATAL)
    else:
        table.cancel(1.0, job_id)
        table.complete(1.0, job_id, 1, "w1", CancelledByWorker())
    before = copy.copy(table.get(job_id))
    with pytest.raises(FailedPrecondition) as info:
        table.cancel(2.0, job_id)
    assert info.value.code is Code.FAILED_PRECONDITION
    assert table.get(job_id) == before


# ---------------------------------------------------------------------------- lease and complete
def test_lease_sets_the_fence_and_deadlines() -> None:
    table = make_table()
    job_id = table.submit(0.0, spec(execution_timeout=30.0)).job.job_id
    a = table.lease(5.0, job_id, "w1")
    assert (a.job_id, a.attempt, a.worker_id) == (job_id, 1, "w1")
    assert a.lease_deadline == 15.0 and a.run_deadline == 35.0
    job = table.get(job_id)
    assert job.state is JobState.RUNNING and job.start_time == 5.0 and job.worker_id == "w1"
    assert table.next_deadline() == 15.0
    # a second lease of the same job is refused
    with pytest.raises(IllegalTransition):
        table.lease(5.0, job_id, "w2")
    assert table.get(job_id).worker_id == "w1" and table.get(job_id).attempt == 1


def test_lease_needs_a_worker() -> None:
    table = make_table()
    job_id = table.submit(0.0, spec()).job.job_id
    with pytest.raises(InvalidArgument):
        table.lease(0.0, job_id, "")
    assert table.get(job_id).state is JobState.PENDING


def test_success() -> None:
    table = make_table()
    job_id = running(table)
    done = table.complete(4.0, job_id, 1, "w1", Succeeded(b"42"))
    assert done.job.state is JobState.SUCCEEDED and done.job.output == b"42" and done.job.error is None
    assert done.job.end_time == 4.0
    assert done.commands == [JobFinished(job_id, JobState.SUCCEEDED)]
    assert table.next_deadline() == 10.0  # the timer entry is stale now and ignored
    assert table.handle_timer(10.0) == []
    assert table.get(job_id).state is JobState.SUCCEEDED


def test_report_from_another_worker_or_attempt_is_stale() -> None:
    table = make_table()
    job_id = running(table, worker="w1")
    before = copy.copy(table.get(job_id))
    for attempt, worker in ((2, "w1"), (0, "w1"), (1, "w2")):
        with pytest.raises(StaleAttempt) as info:
            table.complete(1.0, job_id, attempt, worker, Succeeded())
        assert info.value.code is Code.ABORTED
    assert table.get(job_id) == before
    # an empty worker id skips the worker check (the attempt is the fence)
    assert table.complete(1.0, job_id, 1, "", Succeeded()).job.state is JobState.SUCCEEDED


def test_report_on_pending_or_terminal_job_is_stale() -> None:
    table = make_table()
    pending = table.submit(0.0, spec()).job.job_id
    with pytest.raises(StaleAttempt):
        table.complete(0.0, pending, 0, "w", Succeeded())
    job_id = running(table)
    table.complete(1.0, job_id, 1, "w1", Succeeded())
    with pytest.raises(StaleAttempt):
        table.complete(1.0, job_id, 1, "w1", Succeeded())


def test_cancel_ack_without_a_cancel_is_refused() -> None:
    table = make_table()
    job_id = running(table)
    with pytest.raises(StaleAttempt):
        table.complete(1.0, job_id, 1, "w1", CancelledByWorker())
    assert table.get(job_id).state is JobState.RUNNING


def test_non_retryable_failure_fails_at_once() -> None:
    table = make_table()
    job_id = running(table)
    done = table.complete(1.0, job_id, 1, "w1", FAIL_FATAL)
    assert done.job.state is JobState.FAILED
    assert done.commands == [JobFinished(job_id, JobState.FAILED)]
    assert done.job.error == FAIL_FATAL.error


def test_retryable_failure_requeues_after_backoff_then_fails_after_max_attempts() -> None:
    table = make_table()  # 3 attempts, backoff 1, 2, ...
    job_id = running(table, now=0.0)
    first = table.complete(1.0, job_id, 1, "w1", FAIL_RETRYABLE)
    assert first.job.state is JobState.PENDING and first.job.worker_id == ""
    assert first.commands == [Enqueue(job_id, 0, 2.0)]
    assert first.job.not_before == 2.0 and table.requeues == 1
    a2 = table.lease(2.0, job_id, "w2")
    assert a2.attempt == 2
    second = table.complete(3.0, job_id, 2, "w2", FAIL_RETRYABLE)
    assert second.commands == [Enqueue(job_id, 0, 5.0)]
    a3 = table.lease(5.0, job_id, "w1")
    assert a3.attempt == 3
    last = table.complete(6.0, job_id, 3, "w1", FAIL_RETRYABLE)
    assert last.job.state is JobState.FAILED and last.job.attempt == 3
    assert last.commands == [JobFinished(job_id, JobState.FAILED)]
    assert last.job.error == FAIL_RETRYABLE.error


def test_single_attempt_job_is_not_retried() -> None:
    table = make_table()
    job_id = running(table, retry=RetryPolicy(max_attempts=1))
    assert table.complete(1.0, job_id, 1, "w1", FAIL_RETRYABLE).job.state is JobState.FAILED


# ---------------------------------------------------------------------------- backoff
def backoff_after(table: JobTable, attempt: int, **kwargs: object) -> float:
    job = table.submit(0.0, spec(**kwargs)).job
    job.attempt = attempt
    return table.backoff(job)


def test_backoff_is_exponential_and_capped() -> None:
    table = make_table(CoreConfig(max_pending=1000))
    retry = RetryPolicy(max_attempts=20, initial_backoff=0.5, max_backoff=10.0, backoff_multiplier=3.0)
    delays = [backoff_after(table, n, retry=retry) for n in range(1, 7)]
    assert delays == [0.5, 1.5, 4.5, 10.0, 10.0, 10.0]
    assert backoff_after(table, 0, retry=retry) == 0.5
    flat = RetryPolicy(max_attempts=5, initial_backoff=2.0, backoff_multiplier=1.0)
    assert [backoff_after(table, n, retry=flat) for n in (1, 2, 5)] == [2.0, 2.0, 2.0]


def test_backoff_does_not_overflow_for_huge_multipliers() -> None:
    config = CoreConfig(max_attempts_cap=5000, max_pending=1000)
    table = make_table(config)
    retry = RetryPolicy(max_attempts=5000, initial_backoff=1.0, max_backoff=60.0, backoff_multiplier=1e10)
    assert backoff_after(table, 40, retry=retry) == 60.0
    retry2 = RetryPolicy(max_attempts=5000, initial_backoff=0.1, max_backoff=60.0, backoff_multiplier=2.0)
    assert backoff_after(table, 4000, retry=retry2) == 60.0
    # and through the table: many retries of such a job keep working
    job_id = running(table, retry=retry)
    for attempt in range(1, 60):
        result = table.complete(float(attempt), job_id, attempt, "w1", FAIL_RETRYABLE)
        assert result.job.state is JobState.PENDING
        assert result.job.not_before - float(attempt) <= 60.0
        table.lease(result.job.not_before, job_id, "w1")


def test_zero_backoff_requeues_ready_at_once() -> None:
    table = make_table(CoreConfig(default_initial_backoff=0.0, default_max_backoff=0.0))
    job_id = running(table)
    result = table.complete(1.0, job_id, 1, "w1", FAIL_RETRYABLE)
    assert result.commands == [Enqueue(job_id, 0, 1.0)]


def test_jitter_needs_a_random_source() -> None:
    with pytest.raises(InvalidArgument):
        JobTable(CoreConfig(backoff_jitter=0.5), JobIdFactory("n", "1"))


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.999999])
def test_jitter_uses_the_rng_and_stays_within_bounds(draw: float) -> None:
    rng = FixedRandom(draw)
    table = make_table(CoreConfig(backoff_jitter=0.4, max_pending=100), rng)
    retry = RetryPolicy(max_attempts=10, initial_backoff=1.0, max_backoff=100.0, backoff_multiplier=2.0)
    delay = backoff_after(table, 3, retry=retry)
    assert rng.calls == 1
    assert delay == pytest.approx(4.0 * (1 - 0.4 * draw))
    assert 4.0 * 0.6 <= delay <= 4.0


@given(
    draws=st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=1, max_size=20),
    jitter=st.floats(0.0, 1.0),
    attempt=st.integers(1, 30),
)
def test_jitter_bounds_property(draws: list[float], jitter: float, attempt: int) -> None:
    rng = FixedRandom(*draws)
    table = make_table(CoreConfig(backoff_jitter=jitter, max_pending=100), rng)
    retry = RetryPolicy(max_attempts=50, initial_backoff=0.5, max_backoff=30.0, backoff_multiplier=2.0)
    job = table.submit(0.0, spec(retry=retry)).job
    job.attempt = attempt
    base = min(30.0, 0.5 * 2.0 ** (attempt - 1))
    for draw in draws:
        delay = table.backoff(job)
        assert base * (1 - jitter) - 1e-12 <= delay <= base
        if jitter:
            assert delay == pytest.approx(base * (1 - jitter * draw))


def test_no_jitter_draws_nothing() -> None:
    rng = FixedRandom(0.5)
    table = make_table(CoreConfig(backoff_jitter=0.0), rng)
    backoff_after(table, 2)
    assert rng.calls == 0


# ---------------------------------------------------------------------------- timers
def test_lease_expiry_requeues_with_next_attempt() -> None:
    table = make_table()
    job_id = running(table, now=0.0)
    assert table.handle_timer(9.99) == []
    commands = table.handle_timer(10.0)
    assert commands == [
        LeaseExpired(job_id, 1, "w1", "LEASE_EXPIRED", requeued=True),
        Enqueue(job_id, 0, 11.0),
    ]
    job = table.get(job_id)
    assert job.state is JobState.PENDING and job.error is not None
    assert job.error.reason == "LEASE_EXPIRED" and job.error.retryable
    assert table.lease_expiries == 1 and table.requeues == 1
    assert table.lease(11.0, job_id, "w2").attempt == 2
    # the old attempt is fenced off
    with pytest.raises(StaleAttempt):
        table.complete(12.0, job_id, 1, "w1", Succeeded())


def test_lease_expiry_on_the_last_attempt_fails_the_job() -> None:
    table = make_table()
    job_id = running(table, retry=RetryPolicy(max_attempts=1))
    commands = table.handle_timer(10.0)
    assert commands == [
        LeaseExpired(job_id, 1, "w1", "LEASE_EXPIRED", requeued=False),
        JobFinished(job_id, JobState.FAILED),
    ]
    job = table.get(job_id)
    assert job.state is JobState.FAILED and job.error is not None and job.error.reason == "LEASE_EXPIRED"


def test_heartbeats_extend_the_lease() -> None:
    table = make_table()
    job_id = running(table, now=0.0)
    for t in (5.0, 12.0, 19.0):
        assert table.handle_timer(t) == []
        renewal = table.renew(t, "w1", [(job_id, 1)])
        assert renewal.renewed == 1 and renewal.abandon == [] and renewal.cancel == []
        assert table.get(job_id).lease_deadline == t + 10.0
    assert table.handle_timer(28.9) == []
    assert table.get(job_id).state is JobState.RUNNING
    expired = table.handle_timer(29.0)
    assert isinstance(expired[0], LeaseExpired) and expired[0].reason == "LEASE_EXPIRED"


def test_execution_timeout_beats_heartbeats() -> None:
    table = make_table()
    job_id = running(table, now=0.0, execution_timeout=15.0)
    table.renew(8.0, "w1", [(job_id, 1)])  # lease until 18, run deadline 15
    assert table.handle_timer(14.9) == []
    commands = table.handle_timer(15.0)
    assert commands[0] == LeaseExpired(job_id, 1, "w1", "TIMEOUT", requeued=True)
    assert table.get(job_id).error is not None
    assert table.get(job_id).error.reason == "TIMEOUT"  # type: ignore[union-attr]
    assert table.get(job_id).state is JobState.PENDING


def test_abandon_list_for_stale_attempts() -> None:
    table = make_table()
    job_id = running(table, worker="w1")
    other = running(table, worker="w2")
    table.handle_timer(10.0)  # both leases lapse; both requeued
    table.lease(11.0, job_id, "w2")  # attempt 2 now belongs to w2
    renewal = table.renew(11.5, "w1", [(job_id, 1), (other, 1), ("n1-a-00000000ff", 1)])
    assert renewal.abandon == [(job_id, 1), (other, 1), ("n1-a-00000000ff", 1)]
    assert renewal.renewed == 0 and renewal.cancel == []
    # w2 does hold attempt 2, and claiming attempt 2 from w1 does not work
    assert table.renew(11.5, "w2", [(job_id, 2)]).renewed == 1
    assert table.renew(11.5, "w1", [(job_id, 2)]).abandon == [(job_id, 2)]
    # finished jobs are abandoned too
    table.complete(12.0, job_id, 2, "w2", Succeeded())
    assert table.renew(12.5, "w2", [(job_id, 2)]).abandon == [(job_id, 2)]


def test_cancel_list_for_cancelling_jobs() -> None:
    table = make_table()
    a = running(table, worker="w1")
    b = running(table, worker="w1")
    table.cancel(1.0, b)
    renewal = table.renew(2.0, "w1", [(a, 1), (b, 1)])
    assert renewal.cancel == [(b, 1)] and renewal.abandon == [] and renewal.renewed == 2
    assert table.get(b).lease_deadline == 12.0  # the cancelling attempt still holds its lease


def test_release_worker_ends_its_attempts() -> None:
    table = make_table()
    a = running(table, worker="w1")
    b = running(table, worker="w1", retry=RetryPolicy(max_attempts=1))
    c = running(table, worker="w1")
    keep = running(table, worker="w2")
    table.cancel(1.0, c)
    commands = table.release_worker(2.0, "w1")
    assert LeaseExpired(a, 1, "w1", "WORKER_LOST", requeued=True) in commands
    assert Enqueue(a, 0, 3.0) in commands
    assert LeaseExpired(b, 1, "w1", "WORKER_LOST", requeued=False) in commands
    assert JobFinished(b, JobState.FAILED) in commands
    assert JobFinished(c, JobState.CANCELLED) in commands
    assert table.get(a).state is JobState.PENDING
    assert table.get(keep).state is JobState.RUNNING
    assert table.release_worker(3.0, "w1") == []  # nothing left to release
    assert table.release_worker(3.0, "nobody") == []


def test_next_deadline_and_stale_timer_entries() -> None:
    table = make_table()
    assert table.next_deadline() is None
    job_id = running(table, now=0.0)
    table.renew(5.0, "w1", [(job_id, 1)])
    assert table.next_deadline() == 10.0  # the old entry is still at the top
    assert table.handle_timer(10.0) == []  # ... and re-armed at the renewed deadline
    assert table.next_deadline() == 15.0


# ---------------------------------------------------------------------------- restore
def test_restore_saved_records() -> None:
    old = make_table()
    pending = old.submit(0.0, spec(priority=3), request_id="r1").job.job_id
    run = running(old, now=0.0, worker="w1")
    done = running(old, now=0.0, worker="w1")
    old.complete(1.0, done, 1, "w1", Succeeded(b"ok"))
    retrying = running(old, now=0.0, worker="w2")
    old.complete(1.0, retrying, 1, "w2", FAIL_RETRYABLE)  # pending again, not before 2.0
    saved = [copy.copy(j) for j in old]  # specs are immutable: a shallow copy is a saved record

    new = JobTable(CONFIG, JobIdFactory("n1", "b"))  # a new incarnation
    commands = [c for job in saved for c in new.restore(job)]
    assert commands == [Enqueue(pending, 3, 0.0), Enqueue(retrying, 0, 2.0)]
    assert len(new) == 4
    assert new.count_by_state == old.count_by_state
    assert new.get(done).output == b"ok"
    assert new.submit(5.0, spec(), request_id="r1").deduplicated
    # the running attempt kept its lease: its worker can still report...
    assert new.renew(3.0, "w1", [(run, 1)]).renewed == 1
    # ...and its timer is armed
    assert new.next_deadline() == 10.0
    expired = new.handle_timer(13.0)
    assert LeaseExpired(run, 1, "w1", "LEASE_EXPIRED", requeued=True) in expired
    # the worker index was rebuilt: releasing a worker finds its restored attempts
    run2 = running(old, now=20.0, worker="w9")
    new.restore(copy.copy(old.get(run2)))
    assert any(isinstance(c, LeaseExpired) and c.job_id == run2 for c in new.release_worker(21.0, "w9"))
    # new ids do not collide with restored ones
    assert new.submit(22.0, spec()).job.job_id.startswith("n1-b-")


def test_restore_rejects_duplicates() -> None:
    table = make_table()
    job = table.submit(0.0, spec()).job
    with pytest.raises(InvalidArgument):
        table.restore(copy.copy(job))
    assert len(table) == 1


# ---------------------------------------------------------------------------- listing (smoke; see properties)
def test_list_page_smoke() -> None:
    table = make_table(CoreConfig(default_page_size=2))
    ids = [table.submit(float(i), spec()).job.job_id for i in range(3)]
    first = table.list_page(ListQuery())
    assert [j.job_id for j in first.items] == ids[:2] and first.has_more and first.next_page_token
    second = table.list_page(ListQuery(), page_token=first.next_page_token)
    assert [j.job_id for j in second.items] == ids[2:] and not second.has_more
    assert second.next_page_token == ""


def test_job_records_are_plain_data() -> None:
    table = make_table()
    job = table.submit(0.0, spec()).job
    assert isinstance(job, Job) and job.sort_key == (0.0, job.job_id)


def test_stale_pending_enqueues_again_only_long_due_pending_jobs() -> None:
    table = make_table()
    old = table.submit(0.0, JobSpec.make("echo", priority=3)).job
    fresh = table.submit(9.0, JobSpec.make("echo")).job
    running = table.submit(0.0, JobSpec.make("echo")).job
    table.lease(1.0, running.job_id, "w1")
    ids = [old.job_id, fresh.job_id, running.job_id, "n0-1-00000fffff"]  # an unknown id is skipped
    assert table.stale_pending(10.0, ids, older_than=5.0) == [Enqueue(old.job_id, 3, old.not_before)]
    assert table.stale_pending(4.0, ids, older_than=5.0) == []
