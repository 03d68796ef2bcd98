"""model/node.py, Design B's node driver: properties of the steps it asks its adapters to perform.

A random interleaving of client calls, worker calls, long-poll waiters and time is played against
one NodeDriver (tokens are plain ints). After every step:
- durable before visible: every job an effect names (JobFinished, NotifyCancel, LeaseExpired) and
  every job a call hands out (submitted, cancelled, leased, stolen, reported) is in the step's saves
  unless retention deleted it in the same step; nothing is both saved and deleted;
- a woken fetcher set never exceeds the work announced: for each wake-up of fetchers, the free slots
  of all but the last woken one are less than the ready jobs that caused it; only waiting fetchers
  are woken, and each at most once;
- WaitJob waiters are woken exactly when their job ends (or the node drains), and only once.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.actions import DRAINING_OWNER_RETRY_AFTER, Step, Wake
from model.commands import JobFinished, LeaseExpired, NotifyCancel, WorkAvailable
from model.config import CoreConfig
from model.errors import DtqError, Unavailable
from model.ids import JobIdFactory
from model.job import Failed, Job, JobError, JobSpec, Succeeded
from model.node import NodeDriver
from model.scheduler import Scheduler

CONFIG = CoreConfig(
    lease_duration=3.0,
    heartbeat_interval=1.0,
    worker_ttl=2.5,
    default_initial_backoff=0.2,
    result_ttl=4.0,  # retention inside the runs: expiries and deletes happen
    max_retained_jobs=6,
)
SPEC = JobSpec.make("sleep")
WORKERS = ("n1-w", "w2")

op = st.one_of(
    st.tuples(st.just("advance"), st.floats(0.0, 2.0)),
    st.tuples(st.just("submit"), st.just(0)),
    st.tuples(st.just("cancel"), st.integers(0, 30)),
    st.tuples(st.just("heartbeat"), st.integers(0, 1)),
    st.tuples(st.just("fetch"), st.integers(0, 1), st.integers(0, 3)),
    st.tuples(st.just("steal"), st.integers(0, 3)),
    st.tuples(st.just("report"), st.integers(0, 30), st.booleans()),
    st.tuples(st.just("wait_fetch"), st.integers(0, 1), st.integers(0, 4)),
    st.tuples(st.just("fetch_timeout"), st.integers(0, 20)),
    st.tuples(st.just("wait_done"), st.integers(0, 30)),
    st.tuples(st.just("release"), st.integers(0, 1)),
)


class Checker:
    def __init__(self) -> None:
        scheduler = Scheduler(CONFIG, JobIdFactory(node="n1", incarnation="1"))
        self.driver: NodeDriver[int] = NodeDriver(scheduler, local_worker_id="n1-w")
        self.driver.timer.start()
        self.now = 0.0
        self.jobs: list[str] = []
        self.held: dict[str, dict[str, int]] = {w: {} for w in WORKERS}
        self.next_token = 0
        self.fetchers: dict[int, int] = {}  # waiting: token -> free slots
        self.done_waiters: dict[int, str] = {}  # token -> job id
        self.woken: set[int] = set()
        self.saved: set[str] = set()
        self.deleted: set[str] = set()
        self.announced = 0  # ready jobs the commands of the last call announced (WorkAvailable)
        commit = self.driver._commit

        def spy(touched: Any, commands: Any) -> Step[int]:
            self.announced = sum(c.count for c in commands if isinstance(c, WorkAvailable))
            return commit(touched, commands)

        self.driver._commit = spy  # type: ignore[method-assign]

    def table(self) -> Any:
        return self.driver.scheduler.jobs

    def token(self) -> int:
        self.next_token += 1
        return self.next_token

    def check(self, step: Step[int], handed_out: list[str]) -> None:
        saved = {job.job_id for job in step.save}
        deleted = set(step.delete)
        assert not saved & deleted
        for job in step.save:
            # the live record; a finished one lives in the table's columns: an equal Job is built
            found = self.table().find(job.job_id)
            assert isinstance(job, Job) and (found is job or (job.done and found == job))
        for job_id in handed_out:
            assert job_id in saved or job_id in deleted
        for effect in step.effects:
            if isinstance(effect, JobFinished | NotifyCancel | LeaseExpired):
                assert effect.job_id in saved or effect.job_id in deleted
            if isinstance(effect, NotifyCancel):
                assert effect.worker_id == "n1-w"  # only the local worker's cancels are pushed
            if isinstance(effect, Wake):
                tokens = list(effect.tokens)
                assert len(set(tokens)) == len(tokens)
                assert not set(tokens) & self.woken
                self.woken.update(tokens)
                fetch = [t for t in tokens if t in self.fetchers]
                done = [t for t in tokens if t in self.done_waiters]
                assert len(fetch) + len(done) == len(tokens)  # only registered waiters
                if fetch and not self.driver.draining:
                    assert not done
                    # all but the last woken fetcher leave some of the announced work uncovered
                    covered = sum(self.fetchers[t] for t in fetch[:-1])
                    assert covered < self.announced
                    assert all(self.fetchers[t] > 0 for t in fetch)
                for t in done:
                    job = self.table().find(self.done_waiters[t])
                    assert self.driver.draining or job is None or job.done
                for t in fetch:
                    del self.fetchers[t]
                for t in done:
                    del self.done_waiters[t]
        self.saved |= saved
        self.deleted |= deleted
        # a waiting WaitJob waiter's job has not ended (its end would have woken it)
        for job_id in self.done_waiters.values():
            job = self.table().find(job_id)
            assert job is not None and not job.done

    def play(self, step_op: tuple[Any, ...]) -> None:
        d = self.driver
        kind = step_op[0]
        self.announced = 0
        handed: list[str] = []
        try:
            if kind == "advance":
                self.now += step_op[1]
                deadline = d.scheduler.next_deadline()
                if deadline is not None and deadline <= self.now:
                    step = d.on_timer(self.now)
                    self.check(step, [])
                    self.forget_lost()
                return
            if kind == "submit":
                result, step = d.submit(self.now, SPEC)
                self.jobs.append(result.job.job_id)
                handed = [result.job.job_id]
            elif kind == "cancel":
                if not self.jobs:
                    return
                job, step = d.cancel(self.now, self.jobs[step_op[1] % len(self.jobs)])
                handed = [job.job_id]
            elif kind == "heartbeat":
                worker = WORKERS[step_op[1]]
                running = sorted(self.held[worker].items())
                renewal, step = d.heartbeat(self.now, worker, 3, max(0, 3 - len(running)), running)
                for job_id, _ in renewal.abandon:
                    self.held[worker].pop(job_id, None)
                handed = [job_id for job_id, _ in running if job_id in self.held[worker]]
            elif kind == "fetch":
                worker = WORKERS[step_op[1]]
                got, step = d.fetch_now(self.now, worker, step_op[2])
                self.held[worker].update({a.job_id: a.attempt for a in got})
                handed = [a.job_id for a in got]
            elif kind == "steal":
                got, step = d.steal(self.now, "w2", step_op[1])
                self.held["w2"].update({a.job_id: a.attempt for a in got})
                handed = [a.job_id for a in got]
            elif kind == "report":
                if not self.jobs:
                    return
                job_id = self.jobs[step_op[1] % len(self.jobs)]
                holder = next((w for w in WORKERS if job_id in self.held[w]), None)
                if holder is None:
                    return
                attempt = self.held[holder].pop(job_id)
                outcome = Succeeded() if step_op[2] else Failed(JobError("x", retryable=True))
                job, step = d.report(self.now, holder, job_id, attempt, outcome)
                handed = [job.job_id]
            elif kind == "wait_fetch":
                token = self.token()
                if d.add_fetcher(self.now, token, WORKERS[step_op[1]], step_op[2]):
                    self.fetchers[token] = step_op[2]
                return
            elif kind == "fetch_timeout":
                waiting = list(self.fetchers)
                if waiting:
                    token = waiting[step_op[1] % len(waiting)]
                    d.fetcher_gone(token)
                    del self.fetchers[token]
                return
            elif kind == "wait_done":
                if not self.jobs:
                    return
                job = self.table().find(self.jobs[step_op[1] % len(self.jobs)])
                if job is not None and not job.done:
                    token = self.token()
                    d.add_done_waiter(token, job.job_id)
                    self.done_waiters[token] = job.job_id
                return
            else:
                assert kind == "release"
                worker = WORKERS[step_op[1]]
                step = d.release_worker(self.now, worker)
                self.held[worker].clear()
        except DtqError:
            return  # refused: nothing changed
        self.check(step, handed)

    def forget_lost(self) -> None:
        registry = self.driver.scheduler.workers.workers
        for worker in WORKERS:
            if worker not in registry:
                self.held[worker] = {
                    j: a
                    for j, a in self.held[worker].items()
                    if (job := self.table().find(j)) is not None and job.attempt == a and not job.done
                }


@settings(max_examples=150, deadline=None)
@given(st.lists(op, min_size=1, max_size=60))
def test_steps_save_before_visible_and_wake_no_more_than_announced(ops: list[tuple[Any, ...]]) -> None:
    checker = Checker()
    for step_op in ops:
        checker.play(step_op)
    # draining wakes every waiter still waiting, once
    step = checker.driver.start_draining()
    checker.check(step, [])
    assert not checker.fetchers and not checker.done_waiters


def test_work_wakes_the_fetchers_with_most_free_slots_until_covered() -> None:
    checker = Checker()
    d = checker.driver
    for token, free in ((1, 1), (2, 3), (3, 2)):
        assert d.add_fetcher(0.0, token, "w2", free)
    _, step = d.submit(0.0, SPEC)
    assert [list(e.tokens) for e in step.effects if isinstance(e, Wake)] == [[2]]
    _, step = d.submit(0.0, SPEC)  # token 2 is no longer waiting
    assert [list(e.tokens) for e in step.effects if isinstance(e, Wake)] == [[3]]
    d.fetcher_gone(1)  # timed out: not woken any more
    _, step = d.submit(0.0, SPEC)
    assert not [e for e in step.effects if isinstance(e, Wake)]


def test_a_job_retention_drops_is_deleted_not_saved() -> None:
    checker = Checker()
    d = checker.driver
    result, _ = d.submit(0.0, SPEC)
    job, step = d.cancel(0.5, result.job.job_id)
    assert [j.job_id for j in step.save] == [job.job_id]
    assert step.rearm  # the retention deadline is the first one
    step = d.on_timer(0.5 + CONFIG.result_ttl + 1.0)
    assert list(step.delete) == [job.job_id] and not step.save


def test_a_draining_node_answers_long_polls_unavailable_with_a_retry_after() -> None:
    """Long-polls that the drain ends early: UNAVAILABLE, retry after a second at the owner, at once
    elsewhere for a relayed one; a finished job, or a call that asked for no wait, is answered."""
    d = Checker().driver
    pending = d.submit(0.0, SPEC)[0].job
    done = d.cancel(0.0, d.submit(0.0, SPEC)[0].job.job_id)[0]
    assert d.add_done_waiter(1, pending.job_id)
    d.wait_ended(pending, 5.0)  # not draining: the job as it is
    d.check_relay(5.0)
    d.start_draining()
    assert not d.add_done_waiter(2, pending.job_id)  # no new waits
    with pytest.raises(Unavailable) as owner:
        d.wait_ended(pending, 5.0)
    assert owner.value.retry_after == DRAINING_OWNER_RETRY_AFTER
    d.wait_ended(done, 5.0)
    d.wait_ended(pending, 0.0)
    with pytest.raises(Unavailable) as relay:
        d.check_relay(5.0)
    assert relay.value.retry_after == 0.0 and d.relay_cut().retry_after == 0.0
    d.check_relay(0.0)  # a plain read is relayed as ever
