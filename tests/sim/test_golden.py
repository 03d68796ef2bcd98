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
    "cluster-mono": "ce5564bfcde33439b753eeb31942bd662fef6bae1f8912bef3e159952fcf6d47",
    "cluster-micro": "261dbb61a68fa96aeae800b52e19a49250312ffbdb501a429e9bd4830dfe78f8",
    "many-nodes-steal": "b227c6c33cf283b29a91ffddbb7dd510ed44099eeaf8e614aab9f241b02bed30",
    "mixed-mono": "4c2fa0334651eeef89a7abc8b95c82d0c9e5a439976ccc0ff990c32da3f18bbe",
    "mixed-micro": "4efc1cabca3f149d87245ac4b57b0572900958b07bc61e62efa51b8fc2cf9c02",
    "fair-wakeup-mono": "d13407329f55dd6e34ccfbb502ebd05683036432ecc6c7f7e3c93d31ab37e2de",
    "fair-wakeup-micro": "f49859bd6a73621294c918885e9a69af3384556a3b359809df06cd15c9063f57",
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
