"""Stateful properties of model.Scheduler under random interleavings of clients, workers and time.

The machine keeps its own model of what each worker believes it is running (its assignments minus
those it was told to abandon, those it reported, and those it forgot when it was lost), and checks
after every step that the scheduler's view and the workers' views stay consistent: no job lost, no
double dispatch, fencing, terminal states absorb, attempts bounded. Teardown drains the system
(workers come back and run everything) and checks that every job ends.
"""

from __future__ import annotations

import copy
import sys
from collections import Counter

import numpy as np
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from model.commands import JobFinished, LeaseExpired, NotifyCancel, WorkAvailable, WorkerLost
from model.config import CoreConfig
from model.errors import Code, InvalidArgument, StaleAttempt
from model.ids import JobIdFactory
from model.job import Assignment, CancelledByWorker, Failed, Job, JobError, JobSpec, RetryPolicy, Succeeded
from model.scheduler import Scheduler
from model.states import ACTIVE, TERMINAL, IllegalTransition, JobState

CONFIG = CoreConfig(
    lease_duration=10.0,
    heartbeat_interval=2.0,
    worker_ttl=7.0,  # shorter than the lease: a lost worker's jobs are released before they lapse
    default_execution_timeout=40.0,
    default_initial_backoff=0.5,
    default_max_backoff=4.0,
    backoff_jitter=0.5,
    max_pending=10_000,
    result_ttl=0.0,  # no retention here: every accepted job stays (tests/model/test_retention.py)
)
WORKERS = ("w0", "w1", "w2", "w3")
SLOTS = 4
OUTCOMES = ("success", "fail_retryable", "fail_fatal", "cancel_ack")

Pair = tuple[str, int]  # (job_id, attempt)


def snapshot(sched: Scheduler) -> tuple[object, ...]:
    """Everything a rejected call must leave unchanged."""
    jobs = tuple(
        (
            j.job_id,
            j.state,
            j.attempt,
            j.worker_id,
            j.lease_deadline,
            j.run_deadline,
            j.not_before,
            j.error,
            j.output,
            j.update_time,
            j.end_time,
        )
        for j in sched.jobs
    )
    return (jobs, dict(sched.jobs.count_by_state), len(sched.queue), sched.queue.ready_count)


class SchedulerMachine(RuleBasedStateMachine):
    # tests/model/test_policies.py runs this machine under other scheduling policies
    config = CONFIG
    tenants: tuple[str, ...] = ()  # label values of the policy's key to submit with (none: no label)

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.sched = Scheduler(self.config, JobIdFactory("node", "1"), rng=np.random.default_rng(7))
        self.accepted: dict[str, int] = {}  # job id -> the max_attempts it was submitted with
        self.by_request: dict[str, str] = {}
        self.request_counter = 0
        self.terminal: dict[str, tuple[object, ...]] = {}
        self.last_attempt: dict[str, int] = {}
        # what each worker believes it runs, and what it was told to cancel
        self.held: dict[str, set[Pair]] = {w: set() for w in WORKERS}
        self.told_cancel: dict[str, set[Pair]] = {w: set() for w in WORKERS}
        # attempts a lost worker forgot (the scheduler may still think they run there)
        self.forgotten: dict[str, set[Pair]] = {w: set() for w in WORKERS}
        self.dead: set[str] = set()

    # ------------------------------------------------------------------ helpers
    def job(self, job_id: str) -> Job:
        return self.sched.jobs.get(job_id)

    def holds_lease(self, worker: str, pair: Pair) -> bool:
        job = self.job(pair[0])
        return job.state in ACTIVE and job.attempt == pair[1] and job.worker_id == worker

    def record_assignments(self, worker: str, assignments: list[Assignment], limit: int) -> None:
        assert len(assignments) <= max(0, limit)
        seen: set[str] = set()
        for a in assignments:
            assert a.job_id in self.accepted
            assert a.job_id not in seen  # one job leased twice in one batch
            seen.add(a.job_id)
            assert a.worker_id == worker
            # an assignment's attempt strictly increases per job (it is the next one)
            assert a.attempt == self.last_attempt.get(a.job_id, 0) + 1
            self.last_attempt[a.job_id] = a.attempt
            assert a.attempt <= self.accepted[a.job_id]
            job = self.job(a.job_id)
            assert job.state is JobState.RUNNING and job.attempt == a.attempt
            assert a.lease_deadline == self.now + CONFIG.lease_duration
            assert a.run_deadline == self.now + job.effective.execution_timeout
            # nobody else may believe it holds this attempt
            for w in WORKERS:
                assert (a.job_id, a.attempt) not in self.held[w]
            self.held[worker].add((a.job_id, a.attempt))

    def forget_pair(self, worker: str, pair: Pair) -> None:
        self.held[worker].discard(pair)
        self.told_cancel[worker].discard(pair)
        if self.holds_lease(worker, pair):
            # e.g. a refused cancel-ack: the handler stopped, but the lease lives on until it lapses
            self.forgotten[worker].add(pair)

    def heartbeat_worker(self, worker: str) -> None:
        running = sorted(self.held[worker])
        free = max(0, SLOTS - len(running))
        expected_abandon = [p for p in running if not self.holds_lease(worker, p)]
        expected_cancel = [
            p for p in running if self.holds_lease(worker, p) and self.job(p[0]).state is JobState.CANCELLING
        ]
        renewal = self.sched.heartbeat(self.now, worker, SLOTS, free, running)
        assert renewal.abandon == expected_abandon
        assert renewal.cancel == expected_cancel
        assert renewal.renewed == len(running) - len(expected_abandon)
        for pair in running:
            if pair not in expected_abandon:
                assert self.job(pair[0]).lease_deadline == self.now + CONFIG.lease_duration
        for pair in renewal.abandon:
            self.forget_pair(worker, pair)
        self.told_cancel[worker].update(renewal.cancel)

    def report(self, worker: str, pair: Pair, outcome_kind: str) -> None:
        job_id, attempt = pair
        job = self.job(job_id)
        before_state = job.state
        valid = self.holds_lease(worker, pair)
        if outcome_kind == "cancel_ack":
            valid = valid and before_state is JobState.CANCELLING
        outcome: Succeeded | Failed | CancelledByWorker
        if outcome_kind == "success":
            outcome = Succeeded(f"out-{job_id}".encode())
        elif outcome_kind == "fail_retryable":
            outcome = Failed(JobError("flaky", retryable=True))
        elif outcome_kind == "fail_fatal":
            outcome = Failed(JobError("broken", retryable=False))
        else:
            outcome = CancelledByWorker()
        before = snapshot(self.sched)
        if not valid:
            with pytest.raises(StaleAttempt) as info:
                self.sched.report(self.now, worker, job_id, attempt, outcome)
            assert info.value.code is Code.ABORTED
            assert snapshot(self.sched) == before  # fencing: a stale report changes nothing
            self.forget_pair(worker, pair)
            return
        result = self.sched.report(self.now, worker, job_id, attempt, outcome)
        self.forget_pair(worker, pair)
        assert result.job is job
        if outcome_kind == "success":
            expected = JobState.SUCCEEDED
        elif outcome_kind == "cancel_ack" or before_state is JobState.CANCELLING:
            expected = JobState.CANCELLED
        elif outcome_kind == "fail_retryable" and attempt < job.effective.max_attempts:
            expected = JobState.PENDING
        else:
            expected = JobState.FAILED
        assert job.state is expected
        if expected in TERMINAL:
            assert JobFinished(job_id, expected) in result.commands
            assert job.end_time == self.now
        if expected is JobState.SUCCEEDED:
            assert job.output == f"out-{job_id}".encode()
        if expected is JobState.PENDING:
            assert job.worker_id == "" and job_id in self.sched.queue
            backoff = job.not_before - self.now
            cap = min(CONFIG.default_max_backoff, 0.5 * 2.0 ** (attempt - 1))
            assert cap * (1 - CONFIG.backoff_jitter) <= backoff <= cap

    def check_commands(self, commands: list[object]) -> None:
        """Checks what a timer or release call returned, right after the call."""
        for command in commands:
            if isinstance(command, LeaseExpired | JobFinished):
                assert command.job_id in self.accepted
            if isinstance(command, JobFinished):
                assert self.job(command.job_id).state is command.state
            if isinstance(command, LeaseExpired):
                job = self.job(command.job_id)
                assert job.attempt == command.attempt
                assert command.reason in ("LEASE_EXPIRED", "TIMEOUT", "WORKER_LOST", "WORKER_LEFT")
                assert command.requeued == (job.state is JobState.PENDING)
                assert job.state is JobState.PENDING or job.done
            if isinstance(command, WorkerLost):
                assert command.worker_id in WORKERS
                assert command.worker_id not in self.sched.workers.workers
                # its attempts ended at once, without waiting for each lease to run out
                assert not any(
                    j.state in ACTIVE and j.worker_id == command.worker_id for j in self.sched.jobs
                )

    # ------------------------------------------------------------------ client rules
    @rule(
        priority=st.integers(-2, 2),
        max_attempts=st.integers(1, 4),
        execution_timeout=st.sampled_from([0.0, 0.0, 25.0]),
        request=st.sampled_from(["none", "none", "new", "reuse"]),
        data=st.data(),
    )
    def submit(
        self, priority: int, max_attempts: int, execution_timeout: float, request: str, data: st.DataObject
    ) -> None:
        spec = JobSpec.make(
            "task",
            payload=b"p",
            priority=priority,
            retry=RetryPolicy(max_attempts=max_attempts),
            execution_timeout=execution_timeout,
            labels={self.config.policy_key: data.draw(st.sampled_from(self.tenants))}
            if self.tenants
            else None,
        )
        request_id = ""
        if request == "reuse" and self.by_request:
            request_id = data.draw(st.sampled_from(sorted(self.by_request)))
            before = snapshot(self.sched)
            result = self.sched.submit(self.now, spec, request_id)
            assert result.deduplicated
            assert result.job.job_id == self.by_request[request_id]
            assert result.commands == []
            assert snapshot(self.sched) == before
            return
        if request != "none":
            self.request_counter += 1
            request_id = f"req-{self.request_counter}"
        result = self.sched.submit(self.now, spec, request_id)
        assert not result.deduplicated
        job = result.job
        assert job.job_id not in self.accepted
        assert job.state is JobState.PENDING and job.attempt == 0
        assert job.job_id in self.sched.queue
        self.accepted[job.job_id] = max_attempts
        if request_id:
            self.by_request[request_id] = job.job_id

    @precondition(lambda self: self.accepted)
    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        job_id = data.draw(st.sampled_from(sorted(self.accepted)))
        job = self.job(job_id)
        state = job.state
        if state in TERMINAL:
            before = snapshot(self.sched)
            with pytest.raises(IllegalTransition):
                self.sched.cancel(self.now, job_id)
            assert snapshot(self.sched) == before
            return
        result = self.sched.cancel(self.now, job_id)
        if state is JobState.PENDING:
            assert job.state is JobState.CANCELLED
            assert job_id not in self.sched.queue
            assert JobFinished(job_id, JobState.CANCELLED) in result.commands
        else:
            assert job.state is JobState.CANCELLING
            assert result.commands == [NotifyCancel(job_id, job.attempt, job.worker_id)]

    # ------------------------------------------------------------------ worker rules
    @rule(worker=st.sampled_from(WORKERS), max_jobs=st.integers(0, 3))
    def fetch(self, worker: str, max_jobs: int) -> None:
        self.dead.discard(worker)  # a fetching worker is alive (again)
        ready_before = {e for e in self.accepted if self.job(e).state is JobState.PENDING}
        assignments = self.sched.fetch(self.now, worker, max_jobs)
        assert {a.job_id for a in assignments} <= ready_before
        self.record_assignments(worker, assignments, max_jobs)
        if len(assignments) < max_jobs and self.sched.queue.policy is None:
            # nothing ready was left behind (a keyed policy may hold ready work back)
            for job in self.sched.jobs:
                if job.state is JobState.PENDING:
                    assert job.not_before > self.now

    @rule(worker=st.sampled_from(WORKERS), requested=st.integers(0, 3))
    def steal(self, worker: str, requested: int) -> None:
        """The worker stands in for a peer node's idle worker taking work from this owner."""
        self.dead.discard(worker)
        assignments = self.sched.steal(self.now, worker, requested)
        self.record_assignments(worker, assignments, requested)

    @precondition(lambda self: set(WORKERS) - self.dead)
    @rule(data=st.data())
    def heartbeat(self, data: st.DataObject) -> None:
        worker = data.draw(st.sampled_from(sorted(set(WORKERS) - self.dead)))
        self.heartbeat_worker(worker)

    @precondition(lambda self: any(self.held[w] for w in WORKERS if w not in self.dead))
    @rule(data=st.data(), outcome=st.sampled_from(OUTCOMES))
    def report_result(self, data: st.DataObject, outcome: str) -> None:
        worker = data.draw(st.sampled_from(sorted(w for w in WORKERS if self.held[w] and w not in self.dead)))
        pair = data.draw(st.sampled_from(sorted(self.held[worker])))
        if pair in self.told_cancel[worker] and outcome != "success":
            outcome = data.draw(st.sampled_from(["cancel_ack", outcome]))
        self.report(worker, pair, outcome)

    @precondition(lambda self: any(self.told_cancel[w] for w in WORKERS if w not in self.dead))
    @rule(data=st.data())
    def acknowledge_cancel(self, data: st.DataObject) -> None:
        worker = data.draw(
            st.sampled_from(sorted(w for w in WORKERS if self.told_cancel[w] and w not in self.dead))
        )
        pair = data.draw(st.sampled_from(sorted(self.told_cancel[worker])))
        self.report(worker, pair, "cancel_ack")

    @precondition(lambda self: self.last_attempt)
    @rule(data=st.data(), worker=st.sampled_from(WORKERS), outcome=st.sampled_from(OUTCOMES))
    def stale_report(self, data: st.DataObject, worker: str, outcome: str) -> None:
        """A report under an attempt that cannot hold the lease: older, never issued, or finished."""
        job_id = data.draw(st.sampled_from(sorted(self.last_attempt)))
        job = self.job(job_id)
        attempt = data.draw(st.sampled_from([job.attempt - 1, job.attempt + 1, job.attempt]))
        if job.state in ACTIVE and attempt == job.attempt and worker == job.worker_id:
            attempt = job.attempt + 1
        assert not self.holds_lease(worker, (job_id, attempt))
        before = snapshot(self.sched)
        with pytest.raises(StaleAttempt):
            self.sched.report(self.now, worker, job_id, attempt, Succeeded())
        assert snapshot(self.sched) == before

    @rule(worker=st.sampled_from(WORKERS), graceful=st.booleans())
    def lose_worker(self, worker: str, graceful: bool) -> None:
        """The worker dies (stops heartbeating, forgets its jobs) or drains and says goodbye."""
        self.forgotten[worker] |= self.held[worker]
        self.held[worker].clear()
        self.told_cancel[worker].clear()
        self.dead.add(worker)
        if graceful:
            holding = [j.job_id for j in self.sched.jobs if j.state in ACTIVE and j.worker_id == worker]
            commands = self.sched.release_worker(self.now, worker)
            self.check_commands(list(commands))
            for job_id in holding:
                assert self.job(job_id).state is not JobState.RUNNING or self.job(job_id).worker_id != worker
            assert worker not in self.sched.workers.workers

    # ------------------------------------------------------------------ time
    @rule(dt=st.sampled_from([0.1, 0.5, 1.0, 2.0, 5.0, 11.0, 30.0]))
    def advance(self, dt: float) -> None:
        self.now += dt
        self.check_commands(list(self.sched.handle_timer(self.now)))

    @rule()
    def tick(self) -> None:
        """A heartbeat interval passes and every live worker heartbeats (the well-behaved case)."""
        self.now += CONFIG.heartbeat_interval
        self.check_commands(list(self.sched.handle_timer(self.now)))
        for worker in WORKERS:
            if worker not in self.dead:
                self.heartbeat_worker(worker)

    @rule()
    def timer_due(self) -> None:
        """The driver's timer fires exactly at next_deadline()."""
        deadline = self.sched.next_deadline()
        if deadline is None:
            return
        assert deadline >= self.now - 30.0  # nothing overdue by more than the longest step
        self.now = max(self.now, deadline)
        self.check_commands(list(self.sched.handle_timer(self.now)))
        later = self.sched.next_deadline()
        assert later is None or later > self.now

    # ------------------------------------------------------------------ invariants
    @invariant()
    def counts_match_a_recount(self) -> None:
        jobs = list(self.sched.jobs)
        recount = Counter(j.state for j in jobs)
        assert self.sched.jobs.count_by_state == {s: recount.get(s, 0) for s in JobState}
        assert self.sched.jobs.pending_count == recount.get(JobState.PENDING, 0)

    @invariant()
    def no_job_is_lost(self) -> None:
        assert len(self.sched.jobs) == len(self.accepted)
        assert {j.job_id for j in self.sched.jobs} == set(self.accepted)
        pending = [j for j in self.sched.jobs if j.state is JobState.PENDING]
        # each PENDING job is queued exactly once (the queue keeps one entry per job) and nothing else is
        assert len(self.sched.queue) == len(pending)
        for job in pending:
            assert job.job_id in self.sched.queue
            assert job.worker_id == ""
        deadline = self.sched.next_deadline()
        timers = self.sched.jobs._timers  # white box: an armed timer per leased attempt
        for job in self.sched.jobs:
            assert job.state is not JobState.STATE_UNSPECIFIED
            if job.state in ACTIVE:
                assert job.worker_id in WORKERS and job.attempt >= 1
                assert job.attempt == self.last_attempt[job.job_id]
                due = min(job.lease_deadline, job.run_deadline)
                assert any(t[2] == job.job_id and t[1] == job.attempt and t[0] <= due for t in timers)
                assert deadline is not None and deadline <= due

    @invariant()
    def terminal_states_absorb(self) -> None:
        for job in self.sched.jobs:
            record = (job.state, job.attempt, job.end_time, job.output, job.error)
            if job.job_id in self.terminal:
                assert record == self.terminal[job.job_id]
            elif job.done:
                assert job.end_time is not None and job.end_time <= self.now
                self.terminal[job.job_id] = record

    @invariant()
    def no_double_dispatch(self) -> None:
        for job in self.sched.jobs:
            believers = [w for w in WORKERS if (job.job_id, job.attempt) in self.held[w]]
            if job.state in ACTIVE:
                # only the lease holder may believe it runs the current attempt...
                assert believers in ([], [job.worker_id])
                # ...and unless it forgot (was lost), it does believe so
                pair = (job.job_id, job.attempt)
                assert pair in self.held[job.worker_id] or pair in self.forgotten[job.worker_id]
            valid = [
                w for w in WORKERS for p in self.held[w] if p[0] == job.job_id and self.holds_lease(w, p)
            ]
            assert len(valid) <= 1

    @invariant()
    def attempts_are_bounded(self) -> None:
        for job in self.sched.jobs:
            assert 0 <= job.attempt <= job.effective.max_attempts == self.accepted[job.job_id]
            assert job.attempt == self.last_attempt.get(job.job_id, 0)

    # ------------------------------------------------------------------ drain
    def teardown(self) -> None:
        """Workers come back and run everything; time moves on. Every job must end."""
        if sys.exc_info()[0] is not None:
            return  # a step already failed (teardown runs in a `finally`): keep that failure visible
        self.dead.clear()
        for _ in range(100):
            if all(j.done for j in self.sched.jobs):
                break
            self.now += CONFIG.heartbeat_interval
            self.check_commands(list(self.sched.handle_timer(self.now)))
            for worker in WORKERS:
                self.heartbeat_worker(worker)
                for pair in sorted(self.told_cancel[worker]):
                    self.report(worker, pair, "cancel_ack")
                assignments = self.sched.fetch(self.now, worker, 10)
                self.record_assignments(worker, assignments, 10)
                for pair in sorted(self.held[worker]):
                    if self.holds_lease(worker, pair) and self.job(pair[0]).state is JobState.RUNNING:
                        self.report(worker, pair, "success")
            self.counts_match_a_recount()
            self.no_job_is_lost()
            self.terminal_states_absorb()
            self.no_double_dispatch()
            self.attempts_are_bounded()
        assert all(j.done for j in self.sched.jobs), [
            (j.job_id, j.state.name) for j in self.sched.jobs if not j.done
        ]
        assert len(self.sched.queue) == 0
        assert self.sched.jobs.count_by_state[JobState.PENDING] == 0


# ---------------------------------------------------------------------------- examples
def make_scheduler(config: CoreConfig = CONFIG) -> Scheduler:
    return Scheduler(config, JobIdFactory("node", "1"), rng=np.random.default_rng(0))


def test_submit_fetch_report_round_trip() -> None:
    sched = make_scheduler()
    assert sched.node == "node"
    low = sched.submit(0.0, JobSpec.make("t", priority=0))
    high = sched.submit(0.0, JobSpec.make("t", priority=5))
    assert low.commands == [WorkAvailable(1)]
    assert sched.queue.ready_count == 2
    got = sched.fetch(1.0, "w0", 1)
    assert [a.job_id for a in got] == [high.job.job_id]
    assert sched.dispatched == 1
    result = sched.report(2.0, "w0", high.job.job_id, 1, Succeeded(b"x"))
    assert result.job.state is JobState.SUCCEEDED
    assert result.commands == [JobFinished(high.job.job_id, JobState.SUCCEEDED)]
    assert [a.job_id for a in sched.fetch(3.0, "w1", 5)] == [low.job.job_id]
    assert sched.fetch(3.0, "w1", 5) == []


def test_fetch_validates_the_worker_id() -> None:
    sched = make_scheduler()
    sched.submit(0.0, JobSpec.make("t"))
    for bad in ("", "x" * 200, "bad\nid"):
        with pytest.raises(InvalidArgument):
            sched.fetch(0.0, bad, 1)
    assert sched.queue.ready_count == 1  # nothing was taken


def test_retry_waits_out_its_backoff_in_the_queue() -> None:
    sched = make_scheduler(CoreConfig(default_initial_backoff=2.0, default_max_backoff=2.0))
    job_id = sched.submit(0.0, JobSpec.make("t")).job.job_id
    sched.fetch(0.0, "w0", 1)
    result = sched.report(1.0, "w0", job_id, 1, Failed(JobError("x", retryable=True)))
    assert result.job.state is JobState.PENDING
    assert not any(isinstance(c, WorkAvailable) for c in result.commands)  # not ready yet
    assert sched.fetch(2.0, "w0", 1) == []
    assert sched.next_deadline() == 3.0
    assert sched.handle_timer(3.0) == [WorkAvailable(1)]
    assert [a.attempt for a in sched.fetch(3.0, "w1", 1)] == [2]


def test_cancelled_pending_job_is_not_dispatched() -> None:
    sched = make_scheduler()
    job_id = sched.submit(0.0, JobSpec.make("t")).job.job_id
    result = sched.cancel(1.0, job_id)
    assert result.commands == [JobFinished(job_id, JobState.CANCELLED)]  # the Unqueue was applied here
    assert job_id not in sched.queue
    assert sched.fetch(2.0, "w0", 5) == []


def test_lost_worker_jobs_are_requeued_when_it_is_declared_lost() -> None:
    sched = make_scheduler(CoreConfig(worker_ttl=5.0, lease_duration=10.0, default_initial_backoff=0.0))
    job_id = sched.submit(0.0, JobSpec.make("t")).job.job_id
    sched.heartbeat(0.0, "w0", 1, 1, [])
    sched.fetch(0.0, "w0", 1)
    assert sched.next_deadline() == 5.0
    commands = sched.handle_timer(5.0)
    assert WorkerLost("w0", held_work=True) in commands
    assert LeaseExpired(job_id, 1, "w0", "WORKER_LOST", requeued=True) in commands
    assert [a.attempt for a in sched.fetch(5.0, "w1", 1)] == [2]
    # the lost worker comes back: it is told to abandon its old attempt
    assert sched.heartbeat(6.0, "w0", 1, 0, [(job_id, 1)]).abandon == [(job_id, 1)]


def test_release_worker_that_leaves() -> None:
    sched = make_scheduler(CoreConfig(default_initial_backoff=0.0))
    job_id = sched.submit(0.0, JobSpec.make("t")).job.job_id
    sched.heartbeat(0.0, "w0", 1, 1, [])
    sched.fetch(0.0, "w0", 1)
    commands = sched.release_worker(1.0, "w0")
    assert LeaseExpired(job_id, 1, "w0", "WORKER_LEFT", requeued=True) in commands
    assert WorkAvailable(1) in commands
    assert "w0" not in sched.workers.workers
    assert job_id in sched.queue


def test_steal_keeps_work_for_local_idle_slots() -> None:
    sched = make_scheduler()
    ids = [sched.submit(0.0, JobSpec.make("t")).job.job_id for _ in range(6)]
    sched.heartbeat(0.0, "local", 4, 2, [])  # two local slots free: keep two jobs for them
    stolen = sched.steal(0.0, "peer-worker", 10)
    assert [a.job_id for a in stolen] == ids[:4]
    assert all(a.worker_id == "peer-worker" for a in stolen)
    assert sched.stolen_out == 4
    assert sched.steal(0.0, "peer-worker", 10) == []
    # the owner keeps ownership: the thief reports here
    assert sched.report(1.0, "peer-worker", ids[0], 1, Succeeded()).job.state is JobState.SUCCEEDED


def test_restore_requeues_pending_jobs() -> None:
    old = make_scheduler()
    pending = old.submit(0.0, JobSpec.make("t", priority=2)).job
    running = old.submit(0.0, JobSpec.make("t")).job
    old.fetch(0.0, "w0", 1)  # takes the priority-2 job
    assert pending.state is JobState.RUNNING and running.state is JobState.PENDING
    new = Scheduler(CONFIG, JobIdFactory("node", "2"), rng=np.random.default_rng(1))
    commands = [c for job in (copy.copy(pending), copy.copy(running)) for c in new.restore(1.0, job)]
    assert commands == [WorkAvailable(1)]
    assert running.job_id in new.queue and pending.job_id not in new.queue
    assert [a.job_id for a in new.fetch(1.0, "w1", 5)] == [running.job_id]
    # the restored lease is still fenced by its attempt
    assert new.report(2.0, "w0", pending.job_id, 1, Succeeded()).job.state is JobState.SUCCEEDED


TestSchedulerProperties = SchedulerMachine.TestCase
TestSchedulerProperties.settings = settings(
    max_examples=200,
    stateful_step_count=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
