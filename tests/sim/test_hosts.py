"""A hop between hosts (`host_hop`): added to `network` only when caller and callee are on different hosts."""

from __future__ import annotations

import dataclasses

import pytest

import sim
from model.ids import owner_of
from model.workload import Distribution, OpenLoop, RequestMix, WorkloadSpec
from sim.params import Dist, SimParams
from tests.sim.conftest import mixed_workload

HOP = 0.002  # one way, seconds


def submits(rate: float = 50.0, duration: float = 0.0) -> WorkloadSpec:
    return WorkloadSpec(
        OpenLoop(rate, max_in_flight=64),
        RequestMix(submit=1.0),
        duration=Distribution("constant", duration),
        run_time=2.0,
        warmup=0.0,
        seed=3,
    )


def test_each_submit_pays_the_round_trip_to_its_nodes_host_and_no_more() -> None:
    """Ideal costs (every CPU cost and `network` zero): six nodes two per host on three hosts, the
    generator on host 0; a submit to a node on host 0 takes no time, one to another host exactly
    two host hops (there and back)."""
    params = SimParams.ideal(hosts=3, procs_per_host=2, host_hop=Dist("constant", HOP))
    result = sim.run(sim.SimConfig("mono", submits(), params))
    latency = {}
    for r in result.requests:
        assert r.status == "OK"
        latency.setdefault(owner_of(r.job_id), set()).add(round(r.end_time - r.start_time, 9))
    assert latency == {
        "n1": {0.0},
        "n2": {0.0},
        **{n: {2 * HOP} for n in ("n3", "n4", "n5", "n6")},
    }


@pytest.mark.parametrize("design", ["mono", "micro"])
def test_a_hop_between_hosts_is_never_paid_on_one_host(design: str) -> None:
    """Every process on one host (the default): a host hop set changes nothing, so the default
    (host_hop 0) is the simulator as it was."""
    base = sim.SimConfig(design, mixed_workload(run_time=1.5))  # type: ignore[arg-type]
    first = sim.run(base)
    hop = dataclasses.replace(base.params, host_hop=Dist("constant", HOP))
    again = sim.run(dataclasses.replace(base, params=hop))
    assert again.requests == first.requests and again.jobs == first.jobs


@pytest.mark.parametrize("design", ["mono", "micro"])
def test_hosts_apart_are_slower_and_still_deterministic(design: str) -> None:
    spread = SimParams(hosts=3, procs_per_host=2, host_hop=Dist("lognormal", HOP, 0.3))
    config = sim.SimConfig(design, submits(30.0, 0.01), spread)  # type: ignore[arg-type]  # light load
    first, again = sim.run(config), sim.run(config)
    assert first.requests == again.requests
    near = sim.run(dataclasses.replace(config, params=dataclasses.replace(spread, host_hop=Dist())))
    # a job's path crosses hosts in both designs (Design A: job, queue, coordinator, worker and result
    # are spread; Design B: the generator reaches nodes on other hosts): it takes longer than with the
    # same placement and no hop cost, by more than one hop
    slower = first.summary["completion_ms"]["p50"] - near.summary["completion_ms"]["p50"]
    assert slower > HOP * 1000, slower
    assert SimParams.from_mapping(spread.to_mapping()) == spread  # the parameter round-trips
