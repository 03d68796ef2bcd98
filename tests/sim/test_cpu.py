"""The callback CPU model equals the nested-resource model it replaces (sim/cpu.py docstring)."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import numpy as np
import pytest
import simpy

from sim.cpu import CostModel, Host, OverlapHost, Proc
from sim.dist import Dist
from sim.params import SimParams


def _bursts(seed: int, n: int, procs: int) -> list[tuple[float, int, float]]:
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1e-3, n))
    return [
        (float(t), int(p), float(d))
        for t, p, d in zip(arrivals, rng.integers(0, procs, n), rng.exponential(2e-3, n), strict=True)
    ]


def _ours(
    bursts: list[tuple[float, int, float]], procs: int, cores: int, params: SimParams | None = None
) -> tuple[list[float], list[Proc]]:
    """Completion times of `bursts` on sim/cpu.py's Procs, and the Procs."""
    env = simpy.Environment()
    host = Host("h", cores)
    costs = CostModel(params or SimParams(), 1)
    loops = [Proc(env, host, f"p{i}", "node", i, costs) for i in range(procs)]
    done = [0.0] * len(bursts)

    def one(i: int, at: float, p: int, d: float) -> Generator[Any, Any, None]:
        yield env.timeout(at)
        yield loops[p].run(d)
        done[i] = env.now

    for i, (at, p, d) in enumerate(bursts):
        env.process(one(i, at, p, d))
    env.run()
    return done, loops


def test_same_completion_times_as_nested_resources() -> None:
    for seed, procs, cores in ((1, 3, 1), (2, 7, 2), (3, 4, 4)):
        bursts = _bursts(seed, 3000, procs)
        assert np.allclose(
            _ours(bursts, procs, cores)[0], _reference(bursts, procs, cores), rtol=0, atol=1e-12
        )


def test_action_runs_at_burst_start_and_the_waiter_resumes_before_the_next_burst() -> None:
    env = simpy.Environment()
    proc = Proc(env, Host("h", 1), "p", "node", 0, CostModel(SimParams(), 1))
    log: list[tuple[str, float]] = []

    def first() -> Generator[Any, Any, None]:
        value = yield proc.run(lambda now: (1.0, log.append(("a starts", now)) or "a"))
        log.append((f"{value} resumed", env.now))  # before b's action, though b is queued

    def second() -> Generator[Any, Any, None]:
        yield proc.run(lambda now: (1.0, log.append(("b starts", now))))

    env.process(first())
    env.process(second())
    env.run()
    assert log == [("a starts", 0.0), ("a resumed", 1.0), ("b starts", 1.0)]


def _reference(
    bursts: list[tuple[float, int, float]], procs: int, cores: int, wake: float = 0.0
) -> list[float]:
    """The nested-resource model, with wake-ups: a burst whose loop had no other burst holding or
    waiting for it when it arrived lasts `wake` longer."""
    env = simpy.Environment()
    host = simpy.Resource(env, capacity=cores)
    loops = [simpy.Resource(env, capacity=1) for _ in range(procs)]
    done = [0.0] * len(bursts)

    def one(i: int, at: float, p: int, d: float) -> Generator[Any, Any, None]:
        yield env.timeout(at)
        idle = loops[p].count == 0 and not loops[p].queue
        with loops[p].request() as loop:
            yield loop
            with host.request() as core:
                yield core
                yield env.timeout(d + (wake if idle else 0.0))
        done[i] = env.now

    for i, (at, p, d) in enumerate(bursts):
        env.process(one(i, at, p, d))
    env.run()
    return done


def test_a_sleeping_loop_pays_its_wakeup_and_a_busy_one_does_not() -> None:
    wake = 5e-4
    bursts = _bursts(7, 3000, 4)
    done, loops = _ours(bursts, 4, 2, SimParams(wakeup=Dist("constant", wake)))
    assert np.allclose(done, _reference(bursts, 4, 2, wake), rtol=0, atol=1e-12)
    woke = sum(p.wakeups for p in loops)
    assert 0 < woke < len(bursts)  # some bursts found their loop asleep, some queued behind others


def test_a_longer_sleep_costs_a_dearer_wakeup() -> None:
    env = simpy.Environment()
    params = SimParams(wakeup=Dist("constant", 1e-4), wakeup_idle=((1e-3, 1.0), (0.1, 3.0)))
    proc = Proc(env, Host("h", 1), "p", "node", 0, CostModel(params, 1))
    ends: list[float] = []

    def at(t: float) -> Generator[Any, Any, None]:
        yield env.timeout(t)
        yield proc.run(1e-3)
        ends.append(env.now)

    for t in (0.0, 0.0015, 0.2):  # asleep since 0 (start), 0.5 ms after the first ends, then ~0.2 s
        env.process(at(t))
    env.run()
    first = 1e-3 + 1e-4  # the start counts as asleep since time 0: factor 1 at 0 s of sleep
    assert ends[0] == pytest.approx(first)
    assert ends[1] == pytest.approx(0.0015 + 1e-3 + 1e-4)  # slept 0.4 ms < 1 ms: factor 1
    assert ends[2] == pytest.approx(0.2 + 1e-3 + 3e-4)  # slept ~0.197 s > 0.1 s: factor 3


def _slice_order(cpu_slice: float, b_at: float = 5e-4, b_ran: float = 0.0) -> dict[str, float]:
    """One core; process a queues three 1 ms bursts at 0, process b one at `b_at` after having run
    `b_ran` CPU seconds before: when each ends, and how long b waited for the core."""
    env = simpy.Environment()
    host = Host("h", 1, cpu_slice)
    costs = CostModel(SimParams(), 1)
    a, b = (Proc(env, host, name, "node", i, costs) for i, name in enumerate("ab"))
    b.vruntime = b_ran
    ends: dict[str, float] = {}

    def burst(proc: Proc, label: str, at: float) -> Generator[Any, Any, None]:
        yield env.timeout(at)
        yield proc.run(1e-3)
        ends[label] = env.now

    for i in range(3):
        env.process(burst(a, f"a{i}", 0.0))
    env.process(burst(b, "b", b_at))
    env.run()
    ends["b_waited"] = b.core_wait
    return ends


def test_fifo_queues_a_busy_process_again_after_every_burst() -> None:
    ends = _slice_order(0.0)  # b runs second, after a's first burst
    assert ends["b"] == pytest.approx(2e-3) and ends["a2"] == pytest.approx(4e-3)
    assert ends["b_waited"] == pytest.approx(5e-4)


def test_a_process_that_wakes_behind_takes_the_core_at_the_holders_burst_end() -> None:
    ends = _slice_order(1.0)  # b has run nothing, a 1 ms by then: b preempts at a's first burst end
    assert ends["b"] == pytest.approx(2e-3) and ends["a2"] == pytest.approx(4e-3)


def test_a_process_ahead_in_cpu_time_waits_for_the_holders_slice() -> None:
    # b has run 10 ms already: it does not preempt a, and gets the core when a's slice of 1.5 ms is over
    sliced = _slice_order(1.5e-3, b_ran=0.01)
    assert sliced["a1"] == pytest.approx(2e-3) and sliced["b"] == pytest.approx(3e-3)
    assert sliced["a2"] == pytest.approx(4e-3) and sliced["b_waited"] == pytest.approx(1.5e-3)
    unsliced = _slice_order(1.0, b_ran=0.01)  # a slice longer than a's work: b waits for all of it
    assert unsliced["a2"] == pytest.approx(3e-3) and unsliced["b"] == pytest.approx(4e-3)


def test_a_freed_core_goes_to_the_waiting_process_that_ran_least() -> None:
    env = simpy.Environment()
    host = Host("h", 1, cpu_slice=1.0)
    costs = CostModel(SimParams(), 1)
    holder, heavy, light = (Proc(env, host, n, "node", i, costs) for i, n in enumerate(("h", "x", "y")))
    order: list[str] = []

    def burst(proc: Proc, at: float, ran: float) -> Generator[Any, Any, None]:
        yield env.timeout(at)
        proc.vruntime = max(proc.vruntime, ran)
        yield proc.run(1e-3)
        order.append(proc.name)

    env.process(burst(holder, 0.0, 0.0))
    env.process(burst(heavy, 1e-4, 0.05))  # arrives first but has run far more
    env.process(burst(light, 2e-4, 0.0))  # placed at the host's floor: ahead of heavy in the heap
    env.run()
    assert order == ["h", "y", "x"]
    assert host.vfloor >= 0.0 and not host.running and host.free == 1


def test_fair_sharing_changes_nothing_without_contention() -> None:
    bursts = [(t, 0, d) for t, _, d in _bursts(4, 2000, 1)]
    env = simpy.Environment()
    proc = Proc(env, Host("h", 2, cpu_slice=4e-3), "p", "node", 0, CostModel(SimParams(), 1))
    done = [0.0] * len(bursts)

    def one(i: int, at: float, d: float) -> Generator[Any, Any, None]:
        yield env.timeout(at)
        yield proc.run(d)
        done[i] = env.now

    for i, (at, _, d) in enumerate(bursts):
        env.process(one(i, at, d))
    env.run()
    assert np.allclose(done, _reference(bursts, 1, 2), rtol=0, atol=1e-12)
    assert proc.core_wait == 0.0


def test_fair_sharing_conserves_work() -> None:
    """Whatever the order, a core is never idle while a burst waits: the last burst ends when FIFO's
    does, and every burst runs exactly once."""
    for seed, procs in ((5, 4), (6, 7)):
        bursts = _bursts(seed, 1500, procs)
        env = simpy.Environment()
        host = Host("h", 1, cpu_slice=2e-3)
        costs = CostModel(SimParams(), 1)
        loops = [Proc(env, host, f"p{i}", "node", i, costs) for i in range(procs)]
        done = [0.0] * len(bursts)
        for i, (at, p, d) in enumerate(bursts):
            env.process(_one_burst(env, loops[p], at, d, done, i))
        env.run()
        # one core, never idle while work waits: the busy periods, hence the last end, are FIFO's
        assert max(done) == pytest.approx(max(_reference(bursts, procs, 1)), abs=1e-9)
        assert sum(p.bursts for p in loops) == len(bursts)
        assert sum(p.busy_time for p in loops) == pytest.approx(sum(d for _, _, d in bursts))
        assert host.free == 1 and not host.running


def _one_burst(
    env: simpy.Environment, proc: Proc, at: float, d: float, done: list[float], i: int
) -> Generator[Any, Any, None]:
    yield env.timeout(at)
    yield proc.run(d)
    done[i] = env.now


def _woken_after_a_busy_neighbour(warm_handover: bool) -> float:
    """One core; process a runs 1 ms bursts back to back for 0.25 s while b sleeps, then b wakes at
    0.2 s (its loop slept 0.2 s) and queues for the core: when b's 1 ms burst ends."""
    env = simpy.Environment()
    params = SimParams(wakeup=Dist("constant", 1e-4), wakeup_idle=((1e-3, 1.0), (0.1, 3.0)))
    host = Host("h", 1, warm_handover=warm_handover)
    costs = CostModel(params, 1)
    a, b = (Proc(env, host, name, "node", i, costs) for i, name in enumerate("ab"))
    ends: list[float] = []

    def busy() -> Generator[Any, Any, None]:
        while env.now < 0.25:
            yield a.run(1e-3)

    def wake() -> Generator[Any, Any, None]:
        yield env.timeout(0.2)
        yield b.run(1e-3)
        ends.append(env.now)

    env.process(busy())
    env.process(wake())
    env.run()
    return ends[0] - 0.2


def test_a_loop_that_queued_for_a_core_takes_it_warm() -> None:
    """wakeup_warm_handover: a loop that waited for a core gets it straight from the process before
    it and pays the warm wake-up (factor 1), not the cold one its 0.2 s of sleep would cost (x3)."""
    cold = _woken_after_a_busy_neighbour(warm_handover=False)
    warm = _woken_after_a_busy_neighbour(warm_handover=True)
    # b waits for a's current burst (it arrived while a ran), then runs 1 ms plus its wake-up
    assert cold == pytest.approx(warm + 2e-4)  # x3 against x1 on 1e-4
    assert 1e-3 + 1e-4 <= warm <= 2e-3 + 1e-4


def test_a_loop_woken_onto_an_idle_core_pays_the_cold_wakeup() -> None:
    """wakeup_warm_handover, but b alone on a host of two cores: it never queues, and pays the cold
    wake-up of its own sleep."""
    env = simpy.Environment()
    params = SimParams(wakeup=Dist("constant", 1e-4), wakeup_idle=((1e-3, 1.0), (0.1, 3.0)))
    b = Proc(env, Host("h", 2, warm_handover=True), "b", "node", 0, CostModel(params, 1))
    ends: list[float] = []

    def at(t: float) -> Generator[Any, Any, None]:
        yield env.timeout(t)
        yield b.run(1e-3)
        ends.append(env.now)

    env.process(at(0.0))
    env.process(at(0.2))
    env.run()
    assert ends[1] == pytest.approx(0.2 + 1e-3 + 3e-4)


def _woken_beside(scope: str, a_runs: list[float]) -> float:
    """Two cores; a thread-like process a (it pays no wake-up) runs a 1 ms burst at each time of
    `a_runs` while b's loop sleeps from 1.1 ms to 0.2 s, when b runs one 1 ms burst on a free core:
    how long it lasts (1 ms + 0.1 ms x the cold factor of its scope's idle time)."""
    env = simpy.Environment()
    params = SimParams(wakeup=Dist("constant", 1e-4), wakeup_idle=((1e-3, 1.0), (0.1, 3.0)))
    host = OverlapHost(env, "h", 2) if scope == "overlap" else Host("h", 2, idle_scope_host=scope == "host")
    costs = CostModel(params, 1)
    a, b = Proc(env, host, "a", "checkpoint", 0, costs), Proc(env, host, "b", "node", 1, costs)
    ends: list[float] = []

    def at(proc: Proc, t: float) -> Generator[Any, Any, None]:
        yield env.timeout(t)
        yield proc.run(1e-3)
        if proc is b:
            ends.append(env.now)

    for t in a_runs:
        env.process(at(a, t))
    env.process(at(b, 0.0))
    env.process(at(b, 0.2))
    env.run()
    return ends[1] - 0.2


@pytest.mark.parametrize(
    ("a_runs", "factors"),
    [
        # a keeps a core busy through b's wake-up: only b's loop slept
        ([k * 1e-3 for k in range(250)], {"process": 3.0, "host": 1.0, "overlap": 1.0}),
        # a stopped at 0.19 s: the host slept the last 10 ms (log-linear: factor 2)
        ([k * 1e-3 for k in range(190)], {"process": 3.0, "host": 2.0, "overlap": 2.0}),
        # one burst of a just before: the host slept ~0.198 s of b's 0.199 s, but not the last 1 ms
        ([0.198], {"process": 3.0, "host": 1.0, "overlap": 3.0}),
    ],
)
def test_each_scope_takes_its_own_idle_time(a_runs: list[float], factors: dict[str, float]) -> None:
    """wakeup_idle_scope: b's loop slept ~0.2 s. By its process (the default) that is the cold
    factor 3 whatever its neighbour did; by its host, the time since a core last ran a burst; by the
    overlap, the part of b's sleep during which every core was free."""
    for scope, factor in factors.items():
        assert _woken_beside(scope, a_runs) == pytest.approx(1e-3 + 1e-4 * factor, rel=1e-6), scope
