"""The host's background load (sim/cpu.py start_background, the `background_*` keys): off by default
and then adds nothing; with b always-runnable background processes on c cores a CPU-bound process gets
about c / (b + 1) of a core (fair sharing); and background processes widen the latency tail."""

from __future__ import annotations

import warnings
from collections.abc import Generator
from typing import Any

import pytest
import simpy

import sim
from model.errors import InvalidArgument
from model.results.schema import request_rows
from sim.cpu import CostModel, Host, Proc, start_background
from sim.params import SimParams
from tests.sim.conftest import submits

BUSY = {  # always runnable, runs of three whole chunks
    "background_run": {"kind": "constant", "mean": 0.003},
    "background_sleep": {"kind": "constant", "mean": 1e-6},
}


def _share(cores: int, procs: int, cpu_slice: float, seconds: float = 20.0) -> float:
    """The share of a core a process with bursts always queued gets beside `procs` background hogs.
    FIFO bursts share the cores burst by burst, so there its bursts are as long as the hogs'
    (background_chunk); the fair scheduler shares them by time, so there they are half as long."""
    burst = 0.0005 if cpu_slice else 0.001
    params = SimParams().with_overrides({"background_procs": procs, "cpu_slice": cpu_slice, **BUSY})
    env = simpy.Environment()
    host = Host("h", cores, params.cpu_slice)
    costs = CostModel(params, 3)
    start_background(env, [host], costs)
    proc = Proc(env, host, "svc", "node", 0, costs)

    def spin() -> Generator[Any, Any, None]:
        while True:
            proc.run(burst)
            yield proc.run(burst)

    env.process(spin())
    env.run(until=seconds)
    return proc.busy_time / seconds


@pytest.mark.parametrize(("cores", "procs"), [(1, 1), (2, 1), (2, 3), (2, 7)])
@pytest.mark.parametrize("cpu_slice", [0.0, 0.003])
def test_a_cpu_bound_process_gets_its_fair_share(cores: int, procs: int, cpu_slice: float) -> None:
    expected = min(1.0, cores / (procs + 1))
    assert _share(cores, procs, cpu_slice) == pytest.approx(expected, rel=0.1)


def test_background_takes_the_duty_share_of_the_cores() -> None:
    # 2 processes, runs 3 ms, sleeps 3 ms: 1 core's worth on average, 2 cores' host half busy with them
    params = SimParams().with_overrides({"background_procs": 2, "cpu_slice": 0.003})
    env = simpy.Environment()
    host = Host("h", 2, params.cpu_slice)
    start_background(env, [host], CostModel(params, 5))
    env.run(until=30.0)
    assert host.busy_time / 30.0 == pytest.approx(1.0, rel=0.1)


def _run(**overrides: Any) -> sim.SimResult:
    params = SimParams().with_overrides({"cpu_slice": 0.003, **overrides})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # placeholder costs
        return sim.run(sim.SimConfig("mono", submits(run_time=4.0), params))


def _width(result: sim.SimResult) -> float:
    lat = result.summary["latency_ms"]["all"]
    return float(lat["p99"]) / float(lat["p50"])


def test_background_widens_the_tail_and_zero_changes_nothing() -> None:
    base = _run()
    zero = _run(background_procs=0)
    assert list(request_rows(zero.requests)) == list(request_rows(base.requests))
    assert zero.summary["latency_ms"] == base.summary["latency_ms"]
    loaded = _run(background_procs=3)
    assert _width(loaded) > 1.3 * _width(base)
    assert loaded.summary["latency_ms"]["all"]["p50"] >= base.summary["latency_ms"]["all"]["p50"]


def test_off_by_default_adds_no_process() -> None:
    env = simpy.Environment()
    host = Host("h", 2)
    assert start_background(env, [host], CostModel(SimParams(), 1)) == []


def test_background_keys_are_checked() -> None:
    with pytest.raises(InvalidArgument, match="background_procs"):
        SimParams().with_overrides({"background_procs": -1})
    with pytest.raises(InvalidArgument, match="no background processes"):
        SimParams().with_overrides({"background_run.mean": 0.01})
    with pytest.raises(InvalidArgument, match="background_run"):
        SimParams().with_overrides({"background_procs": 1, "background_run": 0})
