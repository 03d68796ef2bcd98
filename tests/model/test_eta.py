"""model/eta.py, the status estimator, and the drivers that answer with it (model/node.py, Design B;
model/job_service.py, Design A): its properties (monotone in the queue position, no line and a free
slot -> now, times in the caller's seconds), the service-time window, ReadyQueue.ahead_of against the
pop order, and that the drivers answer only when CoreConfig.estimate_window > 0."""

from __future__ import annotations

import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.config import CoreConfig
from model.errors import InvalidArgument, StaleAttempt
from model.eta import Estimator, ServiceTimes, start_time
from model.ids import JobIdFactory
from model.job import JobSpec, Succeeded
from model.job_service import JobService
from model.jobs import JobTable
from model.node import NodeDriver
from model.queue import ReadyQueue
from model.scheduler import Scheduler

times = st.floats(0.0, 1e9, allow_nan=False)
means = st.floats(1e-3, 1e4, allow_nan=False)
positions = st.integers(0, 10_000)
slot_counts = st.integers(1, 256)


# ---------------------------------------------------------------------------- the estimator
@given(times, positions, positions, slot_counts, st.integers(0, 300), means)
def test_start_is_monotone_in_the_position(
    now: float, a: int, b: int, slots: int, busy: int, mean: float
) -> None:
    lo, hi = min(a, b), max(a, b)
    assert start_time(now, lo, slots, busy, mean) <= start_time(now, hi, slots, busy, mean)
    # one more job ahead of a job that must wait costs exactly one slot release: mean / slots
    free = slots - min(busy, slots)
    if hi >= free:
        step = start_time(now, hi + 1, slots, busy, mean) - start_time(now, hi, slots, busy, mean)
        assert step == pytest.approx(mean / slots, rel=1e-6, abs=1e-6)


@given(times, slot_counts, st.data(), means)
def test_no_line_and_a_free_slot_starts_now(now: float, slots: int, data: st.DataObject, mean: float) -> None:
    busy = data.draw(st.integers(0, slots - 1))
    ahead = data.draw(st.integers(0, slots - busy - 1))  # fewer ahead than free slots
    assert start_time(now, ahead, slots, busy, mean) == now
    estimate = Estimator(5)
    estimate.observe(mean)
    got = estimate.pending(now, 0, slots, busy)
    assert got is not None and got.start == now and got.end == pytest.approx(now + mean)


@given(times, st.floats(0.0, 1e6, allow_nan=False), positions, slot_counts, st.integers(0, 300), means)
def test_times_are_absolute_seconds_in_the_callers_clock(
    now: float, shift: float, ahead: int, slots: int, busy: int, mean: float
) -> None:
    """Shifting `now` shifts the estimate by as much (it is a time, not a duration); scaling every
    duration (seconds to milliseconds) scales the wait by as much; the end is one mean after the start."""
    wait = start_time(now, ahead, slots, busy, mean) - now
    assert wait >= 0
    assert start_time(now + shift, ahead, slots, busy, mean) - (now + shift) == pytest.approx(
        wait, rel=1e-6, abs=1e-3
    )
    base = start_time(0.0, ahead, slots, busy, mean)  # at epoch 0 the wait keeps every digit
    assert start_time(0.0, ahead, slots, busy, mean * 1000) == pytest.approx(base * 1000, rel=1e-9)
    assert wait == pytest.approx(base, rel=1e-6, abs=1e-6)
    estimator = Estimator(3)
    estimator.observe(mean)
    got = estimator.pending(now, ahead, slots, busy)
    assert got is not None and got.end - got.start == pytest.approx(mean, rel=1e-6, abs=1e-6)


@given(times, positions, slot_counts, st.integers(0, 300), means, times)
def test_a_job_in_backoff_starts_no_earlier_than_due(
    now: float, ahead: int, slots: int, busy: int, mean: float, not_before: float
) -> None:
    start = start_time(now, ahead, slots, busy, mean, not_before)
    assert start >= not_before and start >= now
    assert start == max(start_time(now, ahead, slots, busy, mean), not_before)


def test_the_formula_on_known_numbers() -> None:
    # 4 slots all busy, mean 2 s: the job 3 places back waits for 4 releases, one every 0.5 s
    assert start_time(100.0, 3, 4, 4, 2.0) == 102.0
    # 2 of 4 free: the first two in line start now, the third waits for one release
    assert start_time(100.0, 1, 4, 2, 2.0) == 100.0
    assert start_time(100.0, 2, 4, 2, 2.0) == 100.5
    with pytest.raises(ValueError):
        start_time(0.0, 0, 0, 0, 1.0)


def test_no_estimate_before_a_completion_or_without_slots() -> None:
    estimator = Estimator(10)
    assert estimator.pending(0.0, 0, 4, 0) is None and estimator.running(0.0, 0.0) is None
    estimator.observe(1.0)
    assert estimator.pending(0.0, 0, 0, 0) is None
    running = estimator.running(5.0, 3.0)
    assert running is not None and (running.start, running.end) == (3.0, 5.0)  # 3 + 1 passed: now
    running = estimator.running(3.5, 3.0)
    assert running is not None and running.end == 4.0


@given(st.integers(1, 20), st.lists(st.floats(0.0, 1e4, allow_nan=False), min_size=1, max_size=200))
def test_service_times_is_the_mean_of_the_last_window(window: int, samples: list[float]) -> None:
    times_ = ServiceTimes(window)
    for s in samples:
        times_.observe(s)
    last = samples[-window:]
    assert len(times_) == len(last)
    assert times_.mean == pytest.approx(statistics.fmean(last), rel=1e-9, abs=1e-9)


def test_service_times_window_and_clock_steps() -> None:
    with pytest.raises(ValueError):
        ServiceTimes(0)
    times_ = ServiceTimes(2)
    assert times_.mean is None
    times_.observe(-1.0)  # a clock step back counts as 0
    assert times_.mean == 0.0
    for _ in range(10_000):  # past the periodic re-sum
        times_.observe(0.1)
    assert times_.mean == pytest.approx(0.1, rel=1e-12)


def test_the_setting_is_validated() -> None:
    assert CoreConfig().estimate_window == 0  # off by default
    assert CoreConfig(estimate_window=50).estimate_window == 50
    with pytest.raises(InvalidArgument, match="estimate_window"):
        CoreConfig(estimate_window=-1)


# ---------------------------------------------------------------------------- ReadyQueue.ahead_of
@given(st.lists(st.tuples(st.integers(-2, 2), st.booleans()), min_size=1, max_size=40))
def test_ahead_of_is_the_place_in_pop_order(entries: list[tuple[int, bool]]) -> None:
    """Every READY job's ahead_of is its index in the order pop hands them out; a delayed one has none."""
    queue = ReadyQueue()
    for i, (priority, delayed) in enumerate(entries):
        queue.push(10.0, f"j{i}", priority, not_before=20.0 if delayed else 0.0)
    places = {f"j{i}": queue.ahead_of(f"j{i}") for i in range(len(entries))}
    order = [e.job_id for e in queue.pop(10.0, len(entries))]
    for i, (_, delayed) in enumerate(entries):
        job_id = f"j{i}"
        assert places[job_id] == (None if delayed else order.index(job_id))
    assert queue.ahead_of("nope") is None


# ---------------------------------------------------------------------------- the drivers
CONFIG = CoreConfig(lease_duration=3.0, heartbeat_interval=1.0, worker_ttl=2.5)
ON = CoreConfig(lease_duration=3.0, heartbeat_interval=1.0, worker_ttl=2.5, estimate_window=10)
SPEC = JobSpec.make("sleep")


def node(config: CoreConfig) -> NodeDriver[int]:
    return NodeDriver(Scheduler(config, JobIdFactory(node="n1", incarnation="1")), local_worker_id="n1-w")


def test_node_driver_estimates_only_when_on() -> None:
    for config in (CONFIG, ON):
        driver = node(config)
        driver.heartbeat(0.0, "n1-w", 2, 2, [])
        ids = [driver.submit(0.0, SPEC)[0].job.job_id for _ in range(6)]
        leased, _ = driver.fetch_now(0.0, "n1-w", 2)  # both slots busy, 4 in line
        assert [a.job_id for a in leased] == ids[:2]
        driver.report(2.0, "n1-w", ids[0], 1, Succeeded(b""))  # a service time of 2 s
        driver.heartbeat(2.0, "n1-w", 2, 1, [(ids[1], 1)])
        got = driver.estimate(2.0, driver.scheduler.jobs.get(ids[3]))
        if config.estimate_window == 0:
            assert driver.estimator is None and got is None
            continue
        # 2 slots, 1 busy, mean 2 s; ids[3] has ids[2] ahead, which takes the free slot: ids[3]
        # waits for 1 - 1 + 1 = 1 release, one every 2 / 2 = 1 s
        assert got is not None and (got.start, got.end) == (3.0, 5.0)
        first = driver.estimate(2.0, driver.scheduler.jobs.get(ids[2]))
        assert first is not None and first.start == 2.0  # a free slot waits for it
        running = driver.estimate(2.5, driver.scheduler.jobs.get(ids[1]))
        assert running is not None and (running.start, running.end) == (0.0, 2.5)  # overdue: now
        assert driver.estimate(2.0, driver.scheduler.jobs.get(ids[0])) is None  # finished


def test_node_driver_needs_its_own_worker_and_a_completion() -> None:
    driver = node(ON)
    job = driver.submit(0.0, SPEC)[0].job
    assert driver.estimate(0.0, job) is None  # no worker registered
    driver.heartbeat(0.0, "n1-w", 2, 2, [])
    assert driver.estimate(0.0, job) is None  # no service time seen yet
    with pytest.raises(StaleAttempt):
        driver.report(1.0, "n1-w", job.job_id, 1, Succeeded(b""))  # not leased: refused...
    assert driver.estimator is not None and len(driver.estimator.service) == 0  # ...and not counted


def job_service(config: CoreConfig) -> JobService[int]:
    jobs: JobService[int] = JobService(JobTable(config, JobIdFactory(node="job", incarnation="1")), 5.0)
    jobs.timer.start()
    return jobs


def test_job_service_estimates_only_when_on() -> None:
    for config in (CONFIG, ON):
        jobs = job_service(config)
        ids = []
        for t in range(6):  # one submit per second: the order they became PENDING
            ids.append(jobs.create(float(t), SPEC)[0].job.job_id)
        jobs.renew(5.0, "w", [], total_slots=2)
        leased, _ = jobs.lease(5.0, "w", ids[:2])
        assert len(leased) == 2
        jobs.complete(7.0, ids[0], 1, "w", Succeeded(b""))  # a service time of 2 s
        jobs.renew(7.0, "w", [(ids[1], 1)], total_slots=2)
        got = jobs.estimate(7.0, jobs.table.get(ids[3]))
        if config.estimate_window == 0:
            assert jobs.estimator is None and got is None
            continue
        assert got is not None and (got.start, got.end) == (8.0, 10.0)  # as in the node test
        first = jobs.estimate(7.0, jobs.table.get(ids[2]))
        assert first is not None and first.start == 7.0
        # a worker silent past worker_ttl no longer counts: no slots, no estimate
        assert jobs.estimate(7.0 + CONFIG.worker_ttl + 0.1, jobs.table.get(ids[3])) is None


def test_job_service_orders_by_priority_then_pending_time() -> None:
    jobs = job_service(ON)
    low = jobs.create(0.0, SPEC)[0].job.job_id
    high = jobs.create(1.0, JobSpec.make("sleep", priority=5))[0].job.job_id
    jobs.renew(1.0, "w", [], total_slots=1)
    leased, _ = jobs.lease(1.0, "w", [high])
    assert [a.job_id for a in leased] == [high]
    jobs.complete(2.0, high, 1, "w", Succeeded(b""))
    other = jobs.create(2.0, JobSpec.make("sleep", priority=5))[0].job.job_id
    jobs.renew(2.0, "w", [], total_slots=1)
    got_low = jobs.estimate(2.0, jobs.table.get(low))
    got_other = jobs.estimate(2.0, jobs.table.get(other))
    assert got_low is not None and got_other is not None
    assert got_other.start == 2.0 and got_low.start == 3.0  # the later, higher-priority job goes first


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 3)), min_size=1, max_size=30), st.integers(1, 4))
def test_node_estimates_follow_the_line(ops: list[tuple[int, int]], slots: int) -> None:
    """After any submits (random priorities), fetches and reports, the PENDING jobs' estimated starts
    never go down along the order the queue will hand them out, and none is before `now`."""
    driver = node(ON)
    driver.heartbeat(0.0, "n1-w", slots, slots, [])
    running: list[str] = []
    now = 0.0
    for priority, fetch in ops:
        now += 0.25
        driver.submit(now, JobSpec.make("sleep", priority=priority))
        if fetch and len(running) < slots:
            leased, _ = driver.fetch_now(now, "n1-w", min(fetch, slots - len(running)))
            running += [a.job_id for a in leased]
        if running and fetch == 3:
            driver.report(now, "n1-w", running.pop(0), 1, Succeeded(b""))
        driver.heartbeat(now, "n1-w", slots, slots - len(running), [(j, 1) for j in running])
    queue = driver.scheduler.queue
    line = sorted(
        (j for j in driver.scheduler.jobs._jobs.values() if j.job_id in queue),
        key=lambda j: queue.ahead_of(j.job_id) or 0,
    )
    starts = [driver.estimate(now, j) for j in line]
    if driver.estimator is None or len(driver.estimator.service) == 0:
        assert all(s is None for s in starts)
        return
    values = [s.start for s in starts if s is not None]
    assert len(values) == len(line)
    assert values == sorted(values) and all(v >= now for v in values)
