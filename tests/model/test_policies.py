"""Scheduling policies (model/policies.py): properties of each policy on the ready queue, and the whole
Scheduler's stateful machine (tests/model/test_scheduler_properties.py) run under the keyed policies.

Queue level: a random program of pushes (key, priority, a delay), takes of a few entries, ends of
running jobs and time steps, driven like a driver drives it (handle_timer at next_deadline). Checked:
nothing lost (every pushed entry is taken exactly once by the end, and the queue drains without
stalling: whenever ready work is held back, next_deadline says when it may go), fifo order,
the fair share bound, the concurrency limit, the rate limit over every window, determinism.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.commands import WorkAvailable
from model.config import CoreConfig
from model.errors import InvalidArgument
from model.ids import JobIdFactory
from model.job import Failed, JobError, JobSpec, Succeeded
from model.policies import POLICIES, FairShare, PolicySettings, build, parse_weights
from model.queue import ReadyQueue
from model.scheduler import Scheduler
from model.states import ACTIVE
from tests.model.test_scheduler_properties import CONFIG, SchedulerMachine

KEYS = ("x", "y", "z")
SETTINGS = {
    "fifo": PolicySettings("fifo"),
    "fair": PolicySettings("fair", weights={"x": 1.0, "y": 3.0, "z": 0.5}),
    "concurrency": PolicySettings("concurrency", limit=2),
    "ratelimit": PolicySettings("ratelimit", rate=2.0, burst=3.0),
}

# one step: ("push", key, priority, delay) | ("take", n) | ("end", index) | ("wait", dt)
step = st.one_of(
    st.tuples(st.just("push"), st.sampled_from(KEYS), st.integers(-1, 1), st.sampled_from([0.0, 0.0, 0.7])),
    st.tuples(st.just("take"), st.integers(1, 4)),
    st.tuples(st.just("end"), st.integers(0, 50)),
    st.tuples(st.just("wait"), st.sampled_from([0.05, 0.3, 1.0])),
)


@dataclasses.dataclass
class Run:
    # (now, job_id, key, priority, seq, ready at, pushes so far): seq counts pushes
    taken: list[tuple[float, str, str, int, int, float, int]]
    max_running: dict[str, int]


def play(name: str, program: list[tuple[Any, ...]]) -> Run:
    """Performs the program, then drains: ends every running job and follows the timer until the
    queue is empty (failing if it stalls with work in it)."""
    queue = ReadyQueue(build(SETTINGS[name]))
    now = 0.0
    n = 0
    running: list[str] = []  # keys of dispatched, not yet ended jobs
    taken: list[tuple[float, str, str, int, int, float, int]] = []
    max_running: Counter[str] = Counter()

    def take(k: int) -> None:
        for entry in queue.pop(now, k):
            ready_at = max(entry.enqueue_time, entry.not_before)
            taken.append((now, entry.job_id, entry.key, entry.priority, entry.seq, ready_at, n))
            running.append(entry.key)
            max_running[entry.key] = max(max_running[entry.key], Counter(running)[entry.key])

    def advance(to: float) -> None:
        nonlocal now
        deadline = queue.next_deadline()
        while deadline is not None and deadline <= to:  # the driver's timer fires at each deadline
            now = max(now, deadline)
            queue.handle_timer(now)
            later = queue.next_deadline()
            assert later is None or later > now, "a deadline that does not move on would spin the timer"
            deadline = later
        now = to

    for op in program:
        if op[0] == "push":
            _, key, priority, delay = op
            n += 1
            queue.push(now, f"j{n}", int(priority), now + float(delay), str(key))
        elif op[0] == "take":
            take(int(op[1]))
        elif op[0] == "end" and running:
            queue.finished(running.pop(int(op[1]) % len(running)))
        elif op[0] == "wait":
            advance(now + float(op[1]))
    for _ in range(10 * n + 10):  # drain
        if not len(queue):
            break
        while running:
            queue.finished(running.pop())
        before = len(taken)
        take(4)
        if len(taken) == before:
            deadline = queue.next_deadline()
            assert deadline is not None, "ready or delayed work, but no deadline: the queue stalled"
            advance(max(deadline, now))
    assert not len(queue), "the queue did not drain"
    return Run(taken, dict(max_running))


@pytest.mark.parametrize("name", sorted(SETTINGS))
@given(program=st.lists(step, max_size=60))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_nothing_lost_and_deterministic(name: str, program: list[tuple[Any, ...]]) -> None:
    run = play(name, program)
    pushed = sum(1 for op in program if op[0] == "push")
    ids = [t[1] for t in run.taken]
    assert sorted(ids) == sorted(f"j{i}" for i in range(1, pushed + 1))  # each once, none made up
    assert play(name, program) == run  # the same program, the same decisions


@given(program=st.lists(step, max_size=60))
@settings(max_examples=150, deadline=None)
def test_fifo_takes_in_priority_then_arrival_order(program: list[tuple[Any, ...]]) -> None:
    """fifo keeps the queue's own heap: at each take, nothing better (higher priority, or the same
    priority and earlier) that was ready then is left for later."""
    queue = ReadyQueue(build(SETTINGS["fifo"]))
    assert queue.policy is None  # not keyed: today's one heap, untouched
    run = play("fifo", program)
    for i, (now, _, _, priority, seq, _, pushed) in enumerate(run.taken):
        for _, _, _, p2, s2, ready_at, _ in run.taken[i + 1 :]:
            if s2 <= pushed and ready_at <= now:  # it was ready when this one was taken: it ranks after
                assert (-priority, seq) < (-p2, s2)


@given(program=st.lists(step, max_size=60))
@settings(max_examples=150, deadline=None)
def test_concurrency_never_exceeds_the_limit(program: list[tuple[Any, ...]]) -> None:
    run = play("concurrency", program)
    assert all(count <= 2 for count in run.max_running.values())


@given(program=st.lists(step, max_size=60))
@settings(max_examples=150, deadline=None)
def test_rate_limit_holds_over_every_window(program: list[tuple[Any, ...]]) -> None:
    """At most burst + rate * T dispatches of a key in any window [t, t + T]."""
    rate, burst = 2.0, 3.0
    run = play("ratelimit", program)
    for key in KEYS:
        times = [t[0] for t in run.taken if t[2] == key]
        for i in range(len(times)):
            for j in range(i, len(times)):
                assert j - i + 1 <= burst + rate * (times[j] - times[i]) + 1e-6


@given(
    weights=st.lists(st.sampled_from([0.5, 1.0, 2.0, 3.0]), min_size=2, max_size=3),
    depth=st.integers(1, 30),
    priorities=st.lists(st.integers(-1, 1), min_size=1, max_size=90),
)
@settings(max_examples=200, deadline=None)
def test_fair_share_bound_for_backlogged_keys(
    weights: list[float], depth: int, priorities: list[int]
) -> None:
    """Keys backlogged throughout: in the first n dispatches key k gets >= w_k (n - K) / W, whatever
    the priorities (fair share is between keys; priority orders a key's own jobs)."""
    keys = KEYS[: len(weights)]
    policy = build(PolicySettings("fair", weights=dict(zip(keys, weights, strict=True))))
    queue = ReadyQueue(policy)
    n = 0
    for key in keys:
        for i in range(depth * 4):
            n += 1
            queue.push(0.0, f"j{n}", priorities[(n + i) % len(priorities)], 0.0, key)
    got: Counter[str] = Counter()
    total, k = sum(weights), len(keys)
    for dispatches in range(1, depth * len(keys) + 1):  # every key still has work left throughout
        (entry,) = queue.pop(0.0, 1)
        got[entry.key] += 1
        for key, w in zip(keys, weights, strict=True):
            assert got[key] >= w * (dispatches - k) / total - 1e-9


def test_fair_share_gives_an_idle_key_no_credit() -> None:
    """A key that was idle joins at the current virtual time: it does not get a burst that makes up
    for the time it had no work."""
    queue = ReadyQueue(FairShare(PolicySettings("fair")))
    for i in range(100):
        queue.push(0.0, f"x{i}", 0, 0.0, "x")
    assert {e.key for e in queue.pop(0.0, 50)} == {"x"}
    for i in range(10):
        queue.push(1.0, f"y{i}", 0, 0.0, "y")
    keys = [e.key for e in queue.pop(1.0, 10)]
    assert keys.count("y") == 5 and keys.count("x") == 5  # alternating from here on


def test_ratelimit_wakes_the_timer_at_the_next_token() -> None:
    queue = ReadyQueue(build(PolicySettings("ratelimit", rate=4.0, burst=2.0)))
    for i in range(5):
        queue.push(0.0, f"j{i}", 0, 0.0, "x")
    queue.push(0.0, "other", 0, 0.0, "y")
    assert [e.job_id for e in queue.pop(0.0, 10)] == ["j0", "j1", "other"]  # the burst, and y
    assert queue.next_deadline() == pytest.approx(0.25)  # x's next token
    assert queue.pop(0.1, 10) == []
    assert queue.handle_timer(0.25) == 1  # one held key may go: wake a fetcher
    assert [e.job_id for e in queue.pop(0.25, 10)] == ["j2"]
    assert queue.next_deadline() == pytest.approx(0.5)


# ---------------------------------------------------------------------------- configuration
def test_policies_are_registered_by_name() -> None:
    assert set(POLICIES) >= {"fifo", "fair", "concurrency", "ratelimit"}
    for name, cls in POLICIES.items():
        assert cls.name == name


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"policy": "lottery"}, "policy must be one of concurrency, fair, fifo, ratelimit"),
        ({"policy": "fair", "policy_weights": "x=1,y"}, "policy_weights is KEY=WEIGHT"),
        ({"policy": "fair", "policy_weights": "x=0"}, "weights > 0"),
        ({"policy": "fair", "policy_weights": "x=1,x=2"}, "names 'x' twice"),
        ({"policy": "concurrency", "policy_limit": 0}, "policy_limit >= 1"),
        ({"policy": "ratelimit", "policy_rate": 0.0}, "policy_rate > 0"),
        ({"policy": "ratelimit", "policy_burst": 0.5}, "policy_burst >= 1"),
        ({"policy": "fair", "policy_key": ""}, "policy_key"),
    ],
)
def test_bad_policy_config_is_one_invalid_argument(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message) as info:
        CoreConfig(**changes)
    assert "\n" not in info.value.message


def test_weights_parse() -> None:
    assert parse_weights("") == {}
    assert parse_weights(" x=1, y=2.5 ") == {"x": 1.0, "y": 2.5}
    with pytest.raises(InvalidArgument):
        parse_weights("x=nan")


def test_an_empty_key_label_is_refused_at_submit_under_a_keyed_policy() -> None:
    spec = JobSpec.make("t", labels={"tenant": ""})
    fair = Scheduler(CoreConfig(policy="fair"), JobIdFactory("n", "1"))
    with pytest.raises(InvalidArgument, match="label 'tenant'"):
        fair.submit(0.0, spec)
    assert len(fair.jobs) == 0
    Scheduler(CoreConfig(), JobIdFactory("n", "1")).submit(0.0, spec)  # fifo has no key: accepted
    fair.submit(0.0, JobSpec.make("t"))  # no label at all: the shared key ""


# ---------------------------------------------------------------------------- the whole scheduler
class ConcurrencyMachine(SchedulerMachine):
    """The scheduler's stateful machine (leases, retries, cancels, lost workers, steals, restarts of
    attempts) under a per-key concurrency limit; the limit is checked against the job table itself:
    the jobs holding a lease per key."""

    config = dataclasses.replace(CONFIG, policy="concurrency", policy_limit=2)
    tenants = ("x", "y")

    def check_limit(self) -> None:
        active = Counter(j.spec.labels["tenant"] for j in self.sched.jobs if j.state in ACTIVE)
        assert all(n <= 2 for n in active.values()), active

    def fetch(self, worker: str, max_jobs: int) -> None:
        super().fetch(worker, max_jobs)
        self.check_limit()

    def steal(self, worker: str, requested: int) -> None:
        super().steal(worker, requested)
        self.check_limit()


class RateLimitMachine(SchedulerMachine):
    """... under a per-key rate limit: the drain (teardown) must still end every job, which needs the
    timer to wake for held-back work."""

    config = dataclasses.replace(CONFIG, policy="ratelimit", policy_rate=1.0, policy_burst=2.0)
    tenants = ("x", "y")


class FairMachine(SchedulerMachine):
    config = dataclasses.replace(CONFIG, policy="fair", policy_weights="x=3")
    tenants = ("x", "y")


_machine_settings = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestConcurrencyMachine = ConcurrencyMachine.TestCase
TestConcurrencyMachine.settings = _machine_settings
TestRateLimitMachine = RateLimitMachine.TestCase
TestRateLimitMachine.settings = _machine_settings
TestFairMachine = FairMachine.TestCase
TestFairMachine.settings = _machine_settings


def test_concurrency_counts_running_jobs_until_their_attempt_ends() -> None:
    config = dataclasses.replace(
        CONFIG, policy="concurrency", policy_limit=1, default_initial_backoff=0.0, backoff_jitter=0.0
    )
    sched = Scheduler(config, JobIdFactory("n", "1"))
    ids = [sched.submit(0.0, JobSpec.make("t", labels={"tenant": "x"})).job.job_id for _ in range(3)]
    other = sched.submit(0.0, JobSpec.make("t", labels={"tenant": "y"})).job.job_id
    assert [a.job_id for a in sched.fetch(0.0, "w0", 10)] == [ids[0], other]
    assert sched.fetch(0.0, "w0", 10) == []
    sched.report(1.0, "w0", ids[0], 1, Failed(JobError("boom", retryable=True)))  # requeued
    assert [a.job_id for a in sched.fetch(1.0, "w0", 10)] == [ids[1]]
    done = sched.report(2.0, "w0", ids[1], 1, Succeeded())
    assert WorkAvailable(1) in done.commands  # x's slot is free and x has work: wake a fetcher
    assert [a.job_id for a in sched.fetch(2.0, "w0", 10)] == [ids[2]]
    assert math.isclose(sched.queue.ready_count, 1)  # ids[0]'s retry waits for x's slot
