"""Seeded golden values: the digest of every record, the summary and the simulator's counters of a
few fixed runs, pinned. A speed-up of the simulator (sim/engine.py, sim/cpu.py, the adapters, the
load generator) must leave them byte-identical; a change that is meant to alter the simulated
outcome updates the digests in the same commit and says why.

The cases cover the six-process clusters of both designs near saturation (lab/bench/simulator.py's
cases, shortened), a what-if of many Design B nodes on hosts of their own with stealing, every
request kind, the measured wake-up cost, and the fair host scheduler (cpu_slice > 0)."""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Callable
from typing import Any

import pytest

import sim
from model.results.schema import job_rows, request_rows
from model.workload import Distribution, OpenLoop, WorkloadSpec
from sim.dist import Dist
from sim.params import SimParams
from tests.sim.conftest import mixed_workload

# a measured-looking wake-up cost: a burst on an idle loop pays it (sim/cpu.py)
WAKEUP = Dist.of({"kind": "lognormal", "mean": 0.00015, "sigma": 0.0001})
HOST_HOP = Dist.of({"kind": "lognormal", "mean": 0.0002, "sigma": 0.5})


def _open(rate: float, run_time: float, mean: float = 0.01) -> WorkloadSpec:
    return WorkloadSpec(
        OpenLoop(rate, max_in_flight=4096),
        duration=Distribution("exponential", mean),
        run_time=run_time,
        warmup=0.5,
        seed=1,
    )


def _many_nodes() -> SimParams:
    return SimParams(
        nodes=12,
        slots=12 * 4,
        hosts=13,
        procs_per_host=1,
        loadgen_host=12,
        loadgen_processes=2,
        steal_fanout=3,
        host_hop=HOST_HOP,  # every node on a host of its own: every hop crosses hosts
    )


CASES: dict[str, Callable[[], sim.SimConfig]] = {
    "cluster-mono": lambda: sim.SimConfig("mono", _open(1000.0, 1.5)),
    "cluster-micro": lambda: sim.SimConfig("micro", _open(600.0, 1.5)),
    "many-nodes-steal": lambda: sim.SimConfig("mono", _open(150.0, 3.0, mean=0.3), _many_nodes()),
    "mixed-mono": lambda: sim.SimConfig("mono", mixed_workload(run_time=1.5)),
    "mixed-micro": lambda: sim.SimConfig("micro", mixed_workload(run_time=1.5)),
    "fair-wakeup-mono": lambda: sim.SimConfig(
        "mono", _open(800.0, 1.5), SimParams(cpu_slice=0.004, wakeup=WAKEUP)
    ),
    "fair-wakeup-micro": lambda: sim.SimConfig(
        "micro", _open(500.0, 1.5), SimParams(cpu_slice=0.004, wakeup=WAKEUP)
    ),
}

GOLDEN = {
    "cluster-mono": "5df1a718e7c7f6e08aeef339f27e57cd812b737e7c98e366243e6a3ef7720996",
    "cluster-micro": "4941d0b517a52968d41956d3f179d08b526eeb0afb03bf83e5d6f27d835316a6",
    "many-nodes-steal": "af2af540f6c02658585ef0c65760b62e701111636c597c6c396aca857af5098e",
    "mixed-mono": "84b2af18ca4ed79f6fefd8ded6683ce3fb80f5cda1aa8466da7a2c2aed4060e0",
    "mixed-micro": "2b40e55166fbb1543d57466d91cd5873e6bddb13b8abe2ff307cf2b4452aa4c5",
    "fair-wakeup-mono": "1ed4c00688cbb09b822569b0982fd711769836566498e9fb1a250572da541fd5",
    "fair-wakeup-micro": "c2cdae66945cd2862ad93557b0b01de829ac5c1c889ebc04acd07d3f2e26c1bd",
}

SPEED = {
    "wall_seconds",
    "cpu_seconds",
    "sim_per_wall",
    "sim_per_cpu",
    "jobs_per_wall_second",
    "jobs_per_cpu_second",
}


def digest(result: sim.SimResult) -> str:
    h = hashlib.sha256()
    for row in request_rows(result.requests):
        h.update((",".join(row) + "\n").encode())
    for row in job_rows(result.jobs):
        h.update((",".join(row) + "\n").encode())
    h.update(json.dumps(result.summary, sort_keys=True, default=str).encode())
    stats: dict[str, Any] = {k: v for k, v in result.stats.items() if k not in SPEED}
    h.update(json.dumps(stats, sort_keys=True, default=str).encode())
    return h.hexdigest()


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_digest(name: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # placeholder costs: the point is the digest
        result = sim.run(CASES[name]())
    assert len(result.jobs) > 100
    assert digest(result) == GOLDEN[name]
