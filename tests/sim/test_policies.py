"""Scheduling policies in the simulator against queueing theory, every cost zero (SimParams.ideal).

- A per-key concurrency limit L on a node with more slots than L, all jobs of one key: the node is an
  M/M/L queue (Erlang C), whatever its other slots do.
- A per-key rate limit r below the offered rate: jobs start at r per second (the bucket refills on the
  owner's timer: a stalled timer would show as fewer), and the backlog grows at the difference.
"""

from __future__ import annotations

import numpy as np
import pytest

import sim
from model.config import CoreConfig
from model.errors import InvalidArgument
from model.workload import Distribution, OpenLoop, WorkloadSpec
from tests.sim.test_queueing import assert_in_ci, erlang_c_wait

REPLICATIONS = 6


def test_concurrency_limit_is_an_mmc_queue_of_the_limit() -> None:
    slots, limit, lam, mu = 4, 2, 140.0, 100.0
    core = CoreConfig(policy="concurrency", policy_limit=limit)
    waits = []
    for r in range(REPLICATIONS):
        workload = WorkloadSpec(
            OpenLoop(lam, max_in_flight=1_000_000),
            duration=Distribution("exponential", 1.0 / mu),
            run_time=30.0,
            warmup=2.0,
            seed=300 + r,
        )
        params = sim.SimParams.ideal(slots=slots, nodes=1, track_jobs=False, core=core)
        result = sim.run(sim.SimConfig("mono", workload, params))
        jobs = [j for j in result.jobs if j.submit_time >= workload.warmup]
        waits.append(float(np.mean([j.end_time - j.submit_time - j.duration for j in jobs])))
    assert_in_ci(np.array(waits), erlang_c_wait(limit, lam, mu))
    assert np.mean(waits) > 2 * erlang_c_wait(slots, lam, mu)  # the limit, not the slots, made the queue


@pytest.mark.parametrize("design", ["mono", "micro"])
def test_rate_limit_starts_jobs_at_the_rate(design: str) -> None:
    rate, lam, run_time = 30.0, 80.0, 10.0
    core = CoreConfig(policy="ratelimit", policy_rate=rate, policy_burst=1.0)
    workload = WorkloadSpec(
        OpenLoop(lam, max_in_flight=1_000_000),
        duration=Distribution("constant", 0.0),
        run_time=run_time,
        warmup=1.0,
        seed=7,
    )
    nodes = {"nodes": 1} if design == "mono" else {}
    params = sim.SimParams.ideal(slots=4, track_jobs=False, core=core, **nodes)
    result = sim.run(sim.SimConfig(design, workload, params))  # type: ignore[arg-type]
    ends = np.array(sorted(j.end_time for j in result.jobs if np.isfinite(j.end_time)))
    start = ends[0]
    window = run_time  # jobs start back to back from the first: count those ended within the window
    started = int(np.sum(ends < start + window))
    assert rate * window - 1 <= started <= rate * window + 1  # the burst, and one token per 1/rate s
    offered = sum(1 for j in result.jobs if j.submit_time < start + window)
    assert offered > 2 * started  # the limit held back the flood (it did not just follow arrivals)


def test_the_policy_settings_are_simulator_parameters() -> None:
    params = sim.SimParams.ideal().with_overrides({"core.policy": "fair", "core.policy_weights": "x=2"})
    assert (params.core.policy, params.core.policy_weights) == ("fair", "x=2")
    with pytest.raises(InvalidArgument, match="policy must be one of concurrency, fair, fifo, ratelimit"):
        sim.SimParams.ideal().with_overrides({"core.policy": "lottery"})
    with pytest.raises(InvalidArgument, match="cannot see"):  # Design A's queue never hears of ends
        sim.run(
            sim.SimConfig(
                "micro",
                WorkloadSpec(OpenLoop(1.0), run_time=0.1, warmup=0.0),
                sim.SimParams.ideal(core=CoreConfig(policy="concurrency", policy_limit=2)),
            )
        )
