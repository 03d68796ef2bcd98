"""The simulator's per-job holders stay small: draws kept as durations read back equal, executions
kept as flags by id audit the same duplicates, and the timeout wheel keeps no FIFO for a duration done.
Also what a run carries from its start: no scipy.stats (~75 MB of RSS) among its imports."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from model.audit import duplicate_jobs
from model.workload import JobDraw
from sim.draws import Draws
from sim.engine import SimEnv, TimeoutWheel, wake
from sim.worker import Executions

draws = st.builds(
    JobDraw,
    st.sampled_from(["sleep", "cpu", "echo"]),
    st.floats(0.0, 5.0),
    priority=st.sampled_from([0, 0, 2]),
    payload_bytes=st.sampled_from([0, 0, 100]),
    labels=st.sampled_from([(), (("team", "a"),)]),
)


@settings(deadline=None)  # a first example on a loaded host took 280 ms (then 0.5 ms)
@given(st.lists(st.tuples(st.sampled_from([f"j{i}" for i in range(12)]), draws)), st.data())
def test_draws_read_back_what_was_stored(items: list[tuple[str, JobDraw]], data: st.DataObject) -> None:
    table = Draws()
    want: dict[str, JobDraw] = {}
    for job_id, draw in items:
        table[job_id] = draw
        want[job_id] = draw
    drop = data.draw(st.booleans())
    if want and drop:
        gone = data.draw(st.sampled_from(sorted(want)))
        del table[gone], want[gone]
    assert len(table) == len(want) and sorted(table) == sorted(want)
    for job_id, draw in want.items():
        assert table[job_id] == draw and table.get(job_id) == draw and job_id in table
    assert table.get("missing") is None and "missing" not in table
    plain = sum(len(d) for d in table._plain.values())
    assert plain == sum(d == JobDraw(d.job_type, d.duration) for d in want.values())


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]), st.integers(1, 3))))
def test_executions_audit_the_same_duplicates_as_the_list(starts: list[tuple[str, int]]) -> None:
    executions = Executions()
    for key in starts:
        executions.append(key)
    assert len(executions) == len(starts)
    assert duplicate_jobs(executions.started_ids()) == duplicate_jobs(job_id for job_id, _ in starts)
    assert executions.duplicates() == duplicate_jobs(job_id for job_id, _ in starts)


def test_the_wheel_keeps_no_fifo_once_its_waits_are_done() -> None:
    """Long-poll waits of many distinct durations (as a deadline minus now gives): each FIFO goes
    once its waits ended, so the wheel does not grow with the run (it kept one per wait before)."""
    env = SimEnv()
    wheel = TimeoutWheel(env)
    events = []
    for i in range(500):
        event = env.event()
        wheel.add(event, 1.0 + i * 1e-3)
        events.append(event)
    for event in events[::2]:
        wake(event)  # woken early, as most waits are
    env.run(until=10.0)
    assert all(event.triggered for event in events)
    assert [event.value for event in events[1::2]] == [False] * 250  # the others timed out
    assert wheel._fifos == {}


def test_the_wheel_holds_about_the_pending_waits_not_every_wait() -> None:
    """Waits of one duration (the load generator's 30 s WaitJob polls), nearly all woken early: a
    woken wait lets go of its event at once, and the FIFO compacts, so the wheel holds about the
    waits still pending (it held every wait of the last poll period, each with its event, before).
    Every pending wait still times out at its deadline, and a woken one does not."""
    env = SimEnv()
    wheel = TimeoutWheel(env)
    timed_out: list[simpy.Event] = []
    pending: list[simpy.Event] = []
    held = []
    for i in range(10_000):
        event = env.event()
        wheel.add(event, 30.0, timed_out.append)
        if i % 100 == 0:
            pending.append(event)  # one in a hundred is never woken
        else:
            wake(event)
        env.run(until=env.now + 0.001)  # the wake is processed: the wait lets go of its event
        held.append(len(wheel._fifos[30.0].waits))
    fifo = wheel._fifos[30.0]
    assert max(held) <= 2 * len(pending) + 64  # the compaction's bound: pending ones, twice, plus its minimum
    assert sum(w.event is not None for w in fifo.waits) <= len(pending)  # woken ones hold no event
    env.run(until=100.0)
    assert timed_out == pending and [e.value for e in pending] == [False] * len(pending)
    assert wheel._fifos == {}


def test_the_wheel_times_out_in_the_order_and_at_the_time_of_simpy_timeouts() -> None:
    """The wheel's armed timers against one simpy timeout per wait: every wait that was not woken
    ends at its deadline, in the same order, with waits of many durations added and woken while
    others fire."""
    rng = random.Random(7)
    plan = [
        (rng.uniform(0, 5), rng.choice([0.5, 1.0, 2.5, rng.uniform(0, 3)]), rng.random() < 0.7)
        for _ in range(400)
    ]

    def ends(use_wheel: bool) -> list[tuple[int, float]]:
        env = SimEnv()
        wheel = TimeoutWheel(env)
        seen: list[tuple[int, float]] = []

        def one(i: int, at: float, timeout: float, woken: bool) -> Any:
            yield env.timeout(at)
            event = env.event()
            if use_wheel:
                wheel.add(event, timeout)
            else:
                env.timeout(timeout).callbacks.append(lambda _: wake(event, False))
            if woken:
                env.timeout(timeout / 2).callbacks.append(lambda _: wake(event))
            value = yield event
            seen.append((i, env.now if value is False else -1.0))

        for i, (at, timeout, woken) in enumerate(plan):
            env.process(one(i, at, timeout, woken))
        env.run()
        return seen

    assert ends(True) == ends(False)


def test_importing_and_running_the_simulator_loads_no_scipy_stats() -> None:
    """scipy.stats (imported by model/results/stats.py's intervals and fits where they run) would be
    ~75 MB of a run's RSS, from its first job to its end; pandas comes only with a DataFrame."""
    code = (
        "import sys, sim, lab.bench.memory\n"
        "from model.workload import OpenLoop, WorkloadSpec\n"
        "sim.run(sim.SimConfig('mono', WorkloadSpec(OpenLoop(50.0), run_time=0.5, warmup=0.1)))\n"
        "heavy = sorted(m for m in sys.modules if m.startswith(('scipy.stats', 'pandas')))\n"
        "assert not heavy, heavy[:5]\n"
    )
    subprocess.run([sys.executable, "-W", "ignore", "-c", code], check=True, cwd=Path(__file__).parents[2])
