"""A lost worker's attempts come back through the core: registry expiry -> release -> requeue."""

from __future__ import annotations

import math

import pytest

import sim
from model.audit import BIN_S
from model.config import CoreConfig
from model.errors import InvalidArgument
from model.states import JobState
from model.workload import ClosedLoop, Distribution, OpenLoop, RequestMix, WorkloadSpec
from sim.faults import (
    ROW_KEYS,
    audit,
    audit_result,
    core_for,
    fault_table,
    fault_workload,
    recovery_text,
    sweep,
)


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


# ---------------------------------------------------------------------------- audited faults (sim/faults.py)
def _one_job_per_slot(slots: int, duration: float, run_time: float) -> WorkloadSpec:
    """Closed loop in wait mode, one client per slot: no new work arrives while jobs are stuck, so the
    completion rate comes back only when the core requeues the killed attempts."""
    return WorkloadSpec(
        ClosedLoop(slots, wait_for_completion=True),
        RequestMix(submit=1.0),
        duration=Distribution("constant", duration),
        run_time=run_time,
        warmup=1.0,
        seed=9,
    )


@pytest.mark.parametrize("design", ["micro", "mono"])
def test_kill_loses_nothing_and_recovers_once_the_core_requeues(design: str) -> None:
    lease, heartbeat, duration = 4.0, 0.5, 0.4
    core = core_for(CoreConfig(), lease, heartbeat)
    slots = 6
    nodes = {"nodes": 1} if design == "mono" else {}
    params = sim.SimParams(slots=slots, core=core, cores=8, **nodes)
    target = "worker" if design == "micro" else "n1"
    fault = sim.Fault(at=7.0, target=target, restart_after=0.2)
    result = sim.run(sim.SimConfig(design, _one_job_per_slot(slots, duration, 20.0), params, faults=(fault,)))  # type: ignore[arg-type]
    found = audit_result(result)
    assert found.lost <= slots  # at most each client's last job, still running at the hard end
    assert all(j.final_state is JobState.SUCCEEDED for j in result.jobs if math.isfinite(j.end_time))
    assert found.accepted > 100 and found.duplicates >= 1 and found.fenced == 0
    # nothing completes until the registry (TTL) or the lease gives the attempts back; the 0.5 s bins
    # and one job duration bound it above
    low = min(core.worker_ttl, core.lease_duration)
    assert low <= found.recovery_s <= core.lease_duration + duration + 2 * BIN_S, found


@pytest.mark.parametrize("design", ["micro", "mono"])
def test_pause_longer_than_the_lease_gives_fenced_duplicates(design: str) -> None:
    core = core_for(CoreConfig(), 2.0, 0.5)
    nodes = {"nodes": 2, "slots": 8} if design == "mono" else {"slots": 4}
    params = sim.SimParams(core=core, cores=10, **nodes)  # type: ignore[arg-type]
    workload = fault_workload(rate=5.0, duration=0.5, run_time=14.0, seed=4)  # 2.5 slots busy
    # Design B: a paused node's own core is paused with its worker, so its own jobs cannot expire
    # meanwhile; the attempts at risk are those it runs for a peer. n2 loses its worker first, so n1
    # runs (steals) all of n2's work; the duplicates that kill causes are the baseline.
    before = () if design == "micro" else (sim.Fault(at=1.0, target="n2"),)
    target = "worker" if design == "micro" else "n1"
    base = sim.run(sim.SimConfig(design, workload, params, faults=before))  # type: ignore[arg-type]
    for pause_s, duplicated in ((core.lease_duration + 1.5, True), (0.8 * core.heartbeat_interval, False)):
        pause = sim.Fault(at=6.0, target=target, action="pause", duration=pause_s)
        result = sim.run(sim.SimConfig(design, workload, params, faults=(*before, pause)))  # type: ignore[arg-type]
        found = audit(result.requests, result.jobs, result.stats, 6.0, workload.total_time)
        extra = found.duplicates - base.stats["duplicate_jobs"]
        if duplicated:
            assert extra >= 1 and found.fenced >= 1, found
        else:
            assert extra == 0 and found.fenced == 0, found
        assert found.lost == 0
        assert all(j.final_state is JobState.SUCCEEDED for j in result.jobs)


def test_bad_fault_targets_are_refused_before_the_run() -> None:
    with pytest.raises(InvalidArgument):
        sim.run(
            sim.SimConfig(
                "micro", _long_jobs(), faults=(sim.Fault(at=1.0, target="n9", action="pause", duration=1.0),)
            )
        )
    with pytest.raises(InvalidArgument):
        sim.Fault(at=1.0, action="pause")  # no duration


def test_sweep_rows_have_the_shared_keys_and_skip_invalid_pairs() -> None:
    workload = fault_workload(rate=20.0, duration=0.2, run_time=9.0, seed=2)
    fault = sim.Fault(at=6.0, target="worker", restart_after=0.5)
    rows, audits = sweep("micro", [1.0, 3.0], [0.5, 1.0], [fault], workload, sim.SimParams(cores=8))
    assert [(r["lease_s"], r["heartbeat_s"]) for r in rows] == [(1.0, 0.5), (3.0, 0.5), (3.0, 1.0)]
    assert all(tuple(r) == ROW_KEYS and r["store"] == "sqlite" for r in rows)
    assert all(r["duplicates"] == a.duplicates for r, a in zip(rows, audits, strict=True))


def test_mono_steal_fanout_asks_fewer_peers_and_still_steals() -> None:
    """20 nodes, submits landing on a few of them: with steal_fanout 3 each depth round asks 3 random
    peers instead of 19, and idle nodes still find the loaded ones."""
    workload = WorkloadSpec(
        OpenLoop(100.0, max_in_flight=1000),
        duration=Distribution("exponential", 0.5),
        run_time=3.0,
        warmup=0.5,
        seed=1,
    )
    counters: dict[int, dict[str, int]] = {}
    for fanout in (0, 3):
        params = sim.SimParams(
            nodes=20, slots=80, hosts=21, procs_per_host=1, loadgen_host=20, steal_fanout=fanout
        )
        result = sim.run(sim.SimConfig("mono", workload, params))
        assert all(j.final_state is JobState.SUCCEEDED for j in result.jobs)
        counters[fanout] = result.stats["counters"]
    every, sampled = counters[0], counters[3]
    assert every["depth_asks"] == 19 * every["depth_rounds"]
    assert sampled["depth_asks"] == 3 * sampled["depth_rounds"]
    assert sampled["stolen"] > 0
    assert sampled["depth_asks"] < every["depth_asks"] / 3


def test_fault_table_aligns_names_left_and_numbers_right() -> None:
    columns = (("design", "6"), ("lease", "5g"), ("recov_s", ">7"), ("unavail_s", "9.1f"))
    row = {"design": "mono", "recovery_s": None}
    text = fault_table(columns, [["mono", 2.0, recovery_text(row), 1.25], ["micro", 10.0, "3.2", 0.0]])
    assert text.splitlines() == [
        "design lease recov_s unavail_s",
        "mono       2   never       1.2",
        "micro     10     3.2       0.0",
    ]
    assert recovery_text({"recovery_s": 3.25}) == "3.2"
