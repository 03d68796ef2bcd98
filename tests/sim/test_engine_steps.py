"""SimEnv's own steps (sim/engine.py) do what simpy's do, in the same order: the burst release done by
the loop, `run(until=time)`, the shorter process resume, `gather`'s AllDone against simpy's AllOf,
and the samplers' block draws (sim/cpu.py). tests/sim/test_golden.py pins whole runs; these pin each
step against plain simpy on cases built to have ties (events at the same instant)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable, Generator
from typing import Any

import numpy as np
import pytest
import simpy

from sim.cpu import _BLOCK, CostModel, Host, Proc, sampler
from sim.dist import Dist
from sim.engine import AllDone, SimEnv
from sim.params import SimParams

Log = list[tuple[float, str]]


def _bursts_run(env: simpy.Environment, seed: int, procs: int, cores: int, fair: bool) -> list[Any]:
    """Bursts on a few processes of one host, arriving on a coarse time grid (many ties), with
    actions that log when they start; returns the log and every burst's end."""
    rng = np.random.default_rng(seed)
    host = Host("h", cores, cpu_slice=0.002 if fair else 0.0)
    costs = CostModel(SimParams(wakeup=Dist("constant", 1e-4)), 1)
    loops = [Proc(env, host, f"p{i}", "node", i, costs) for i in range(procs)]
    log: list[Any] = []

    def one(i: int, at: float, p: int, d: float, twice: bool) -> Generator[Any, Any, None]:
        def action(now: float) -> tuple[float, int]:
            log.append(("start", i, now))
            return d, i

        yield env.timeout(at)
        value = yield loops[p].run(action)
        log.append(("end", value, env.now))
        if twice:  # the next burst of the same process, issued as the first one ends
            yield loops[p].run(d / 2)
            log.append(("again", i, env.now))

    n = 400
    arrivals = np.round(np.cumsum(rng.exponential(1e-3, n)), 3)  # a 1 ms grid: simultaneous arrivals
    durations = np.round(rng.exponential(2e-3, n), 3)
    for i in range(n):
        p, twice = int(rng.integers(0, procs)), bool(rng.integers(0, 2))
        env.process(one(i, float(arrivals[i]), p, float(durations[i]), twice))
    env.run()
    log.append(("busy", [p.busy_time for p in loops], [p.wakeups for p in loops]))
    return log


@pytest.mark.parametrize("fair", [False, True])
def test_bursts_under_simenv_happen_as_under_simpy(fair: bool) -> None:
    for seed in (1, 2, 3):
        assert _bursts_run(SimEnv(), seed, 4, 2, fair) == _bursts_run(simpy.Environment(), seed, 4, 2, fair)


def _until_scenario(env: simpy.Environment) -> Log:
    log: Log = []

    def ticker(name: str, step: float) -> Generator[Any, Any, None]:
        while True:
            yield env.timeout(step)
            log.append((env.now, name))

    env.process(ticker("a", 0.5))
    env.process(ticker("b", 1.0))
    env.run(until=2.0)  # events at exactly 2.0 are not processed, in simpy and here
    log.append((env.now, "stopped"))
    env.run(until=3)
    log.append((env.now, "stopped"))
    return log


def test_run_until_a_time_stops_as_simpy_does() -> None:
    assert _until_scenario(SimEnv()) == _until_scenario(simpy.Environment())
    env = SimEnv()
    env.run(until=1.0)
    with pytest.raises(ValueError, match="greater than the current simulation time"):
        env.run(until=0.5)


def _resume_scenario(env: simpy.Environment) -> Log:
    """Values, zero-delay events, a failing child caught by its parent, an interrupt."""
    log: Log = []

    def child(k: int) -> Generator[Any, Any, int]:
        yield env.timeout(0)
        yield env.timeout(k * 0.25)
        if k == 3:
            raise KeyError(k)
        return k * 10

    def parent() -> Generator[Any, Any, None]:
        for k in range(5):
            try:
                value = yield env.process(child(k))
                log.append((env.now, f"child {k} -> {value}"))
            except KeyError as exc:
                log.append((env.now, f"child {k} raised {exc!r}"))

    def sleeper() -> Generator[Any, Any, None]:
        try:
            yield env.timeout(10)
        except simpy.Interrupt as stop:
            log.append((env.now, f"interrupted: {stop.cause}"))

    env.process(parent())
    target = env.process(sleeper())

    def interrupter() -> Generator[Any, Any, None]:
        yield env.timeout(1.0)
        target.interrupt("now")

    env.process(interrupter())
    env.run(until=20)
    return log


def test_process_resume_as_simpy() -> None:
    assert _resume_scenario(SimEnv()) == _resume_scenario(simpy.Environment())


def test_a_yield_of_a_non_event_is_a_clear_error() -> None:
    env = SimEnv()

    def bad() -> Generator[Any, Any, None]:
        yield 5

    with pytest.raises(RuntimeError, match='Invalid yield value "5"'):
        env.run(until=env.process(bad()))


def _gather_scenario(env: simpy.Environment, all_of: Callable[[list[simpy.Process]], simpy.Event]) -> Log:
    """Parents waiting for children that end at the same instants as each other and as other
    events (ties broken by schedule order), one group with a failing child."""
    log: Log = []

    def child(name: str, delay: float, fail: bool = False) -> Generator[Any, Any, str]:
        yield env.timeout(delay)
        log.append((env.now, f"{name} ends"))
        if fail:
            raise ValueError(name)
        return name

    def parent(tag: str, delays: list[float], fail_at: int = -1) -> Generator[Any, Any, None]:
        procs = [env.process(child(f"{tag}{i}", d, i == fail_at)) for i, d in enumerate(delays)]
        try:
            yield all_of(procs)
            log.append((env.now, f"{tag} gathered {[p.value for p in procs]}"))
        except ValueError as exc:
            log.append((env.now, f"{tag} failed {exc!r}"))

    def other() -> Generator[Any, Any, None]:
        for _ in range(4):
            yield env.timeout(0.5)
            log.append((env.now, "other"))

    env.process(parent("x", [0.5, 1.0, 1.0]))
    env.process(other())
    env.process(parent("y", [1.0, 0.5]))
    env.process(parent("z", [0.5, 1.0, 1.5], fail_at=1))
    env.run(until=5)
    return log


def test_all_done_fires_and_fails_as_all_of() -> None:
    ours = SimEnv()
    reference = simpy.Environment()
    got = _gather_scenario(ours, lambda procs: AllDone(ours, procs))
    assert got == _gather_scenario(reference, reference.all_of)
    assert (1.0, "z failed ValueError('z1')") in got


def test_a_sampler_draws_its_distributions_blocks_in_order() -> None:
    dist = Dist.of({"kind": "lognormal", "mean": 0.001, "sigma": 0.5})
    draw = sampler(dist, np.random.default_rng(7))
    got = [draw() for _ in range(2 * _BLOCK + 3)]  # across two refills
    rng = np.random.default_rng(7)
    want = [x for _ in range(3) for x in dist.sample(rng, _BLOCK).tolist()][: len(got)]
    assert got == want and all(type(x) is float for x in got)
    assert sampler(Dist("constant", 0.25), None)() == 0.25


def test_a_sampler_holds_its_block_as_raw_doubles() -> None:
    """A 100-node run has ~1,900 samplers, each holding a block: 8 bytes a draw waiting (a list of
    float objects was 32, ~15 MB in all)."""
    dist = Dist.of({"kind": "exponential", "mean": 0.001})
    rngs = [np.random.default_rng(i) for i in range(200)]
    gc.collect()
    tracemalloc.start()
    try:
        draws = [sampler(dist, rng) for rng in rngs]
        first = [draw() for draw in draws]  # each draws its first block
        per_sampler = tracemalloc.get_traced_memory()[0] / len(draws)
    finally:
        tracemalloc.stop()
    assert len(first) == 200 and per_sampler <= 8 * _BLOCK + 1200  # 2.8 kB measured, 8.7 kB as a list
