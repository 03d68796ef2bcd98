"""A lost worker's attempts come back through the core: registry expiry -> release -> requeue."""

from __future__ import annotations

import math

import sim
from model.states import JobState
from model.workload import Distribution, OpenLoop, WorkloadSpec


def _long_jobs() -> WorkloadSpec:
    return WorkloadSpec(
        OpenLoop(20.0, max_in_flight=256),
        duration=Distribution("constant", 0.8),
        run_time=3.0,
        warmup=0.5,
        seed=5,
    )


def _core(**changes: float) -> dict[str, float]:
    return {"lease_duration": 3.0, "heartbeat_interval": 0.5, "worker_ttl": 1.5, **changes}


def test_micro_worker_loss_requeues_and_a_new_worker_finishes_them() -> None:
    params = sim.SimParams.from_mapping({"core": _core()})
    config = sim.SimConfig(
        "micro", _long_jobs(), params, faults=(sim.Fault(at=1.5, target="worker", restart_after=0.5),)
    )
    result = sim.run(config)
    assert result.stats["counters"]["workers_lost"] == 1  # the coordinator's registry noticed
    assert result.stats["core"]["requeues"] >= 1  # JobTable.release_worker requeued its attempts
    assert all(j.final_state is JobState.SUCCEEDED and math.isfinite(j.end_time) for j in result.jobs)
    assert max(j.attempts for j in result.jobs) >= 2


def test_mono_worker_loss_requeues_and_peers_steal_the_work() -> None:
    # n1 takes submits: the generator's one round-robin counter alternates submits and WaitJobs over
    # the six nodes, so at this low rate submits land on n1, n3 and n5 only (as the real one does)
    params = sim.SimParams.from_mapping({"core": _core()})
    config = sim.SimConfig("mono", _long_jobs(), params, faults=(sim.Fault(at=1.5, target="n1"),))
    result = sim.run(config)
    retried = [j for j in result.jobs if j.job_id.startswith("n1-") and j.attempts >= 2]
    assert retried, "n1's running jobs were not requeued"
    assert result.stats["core"]["requeues"] >= len(retried)
    assert result.stats["counters"]["stolen"] > 0
    # n1 has no worker any more: everything it accepted after the loss ran on its peers' workers
    assert all(j.final_state is JobState.SUCCEEDED and math.isfinite(j.end_time) for j in result.jobs)
