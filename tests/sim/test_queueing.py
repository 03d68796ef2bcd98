"""With every cost zero, the simulated system is a textbook queue, and must agree with the theory.

One Design B node with c slots under Poisson submits of exponential jobs is M/M/c (FCFS): the wait is
the time from submit to dispatch, made only by the core's queue and the worker runtime's fetch loop.
The same holds for Design A's single worker process. Each check runs independent replications (the
workload seed changes the trace) and requires the theoretical mean inside the 99% t interval of the
replication means.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import sim
from model.workload import Distribution, OpenLoop, WorkloadSpec

REPLICATIONS = 6


def erlang_c_wait(c: int, lam: float, mu: float) -> float:
    """Mean waiting time in queue of M/M/c (Erlang C)."""
    a = lam / mu
    rho = a / c
    top = a**c / math.factorial(c) / (1 - rho)
    p_wait = top / (sum(a**k / math.factorial(k) for k in range(c)) + top)
    return p_wait / (c * mu - lam)


def replicate(design: str, c: int, lam: float, mu: float, run_time: float) -> tuple[np.ndarray, np.ndarray]:
    """Per replication: mean wait and mean sojourn of jobs submitted after the warm-up."""
    waits, sojourns = [], []
    for r in range(REPLICATIONS):
        workload = WorkloadSpec(
            OpenLoop(lam, max_in_flight=1_000_000),
            duration=Distribution("exponential", 1.0 / mu),
            run_time=run_time,
            warmup=2.0,
            seed=100 + r,
        )
        nodes = {"nodes": 1} if design == "mono" else {}
        params = sim.SimParams.ideal(slots=c, track_jobs=False, **nodes)
        result = sim.run(sim.SimConfig(design, workload, params))  # type: ignore[arg-type]
        jobs = [j for j in result.jobs if j.submit_time >= workload.warmup]
        assert jobs and all(math.isfinite(j.end_time) for j in jobs)
        sojourn = np.array([j.end_time - j.submit_time for j in jobs])
        service = np.array([j.duration for j in jobs])
        waits.append(float(np.mean(sojourn - service)))
        sojourns.append(float(np.mean(sojourn)))
    return np.array(waits), np.array(sojourns)


def assert_in_ci(samples: np.ndarray, expected: float) -> None:
    half = stats.t.ppf(0.995, len(samples) - 1) * samples.std(ddof=1) / math.sqrt(len(samples))
    mean = samples.mean()
    assert abs(mean - expected) <= half, f"mean {mean:.6f} +- {half:.6f} does not cover {expected:.6f}"
    assert half < 0.25 * expected, "the interval is too wide to mean anything"


def test_mm1_mean_wait_and_sojourn() -> None:
    lam, mu = 50.0, 100.0
    waits, sojourns = replicate("mono", 1, lam, mu, run_time=40.0)
    rho = lam / mu
    assert_in_ci(waits, rho / (mu - lam))
    assert_in_ci(sojourns, 1 / (mu - lam))


@pytest.mark.parametrize("design", ["mono", "micro"])
def test_mmc_mean_wait_matches_erlang_c(design: str) -> None:
    c, lam, mu = 3, 210.0, 100.0
    waits, _ = replicate(design, c, lam, mu, run_time=10.0)
    assert_in_ci(waits, erlang_c_wait(c, lam, mu))
