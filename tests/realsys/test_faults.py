"""The real fault runner (realsys/faults.py): the auditor on synthetic records with planted faults,
the rows' layout, the plan's input checks, and two short real runs (Design B: kill -9 of a node under
load, restarted; a node cut off by a network partition) in which no accepted job may be lost."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from model.config import CoreConfig
from model.errors import InvalidArgument
from model.records import JobRecord, RequestRecord
from model.states import JobState
from model.workload import Op
from realsys.faults import (
    ClusterJob,
    FaultRun,
    Injection,
    RealFault,
    audit,
    plan_faults,
    run_fault,
    write_rows,
)
from sim.faults import ROW_KEYS, core_for, fault_workload
from sim.runs import load_records

FAULT_AT = 10.0
END = 20.0


def steady_run(
    gap: tuple[float, float] = (10.0, 12.0),
) -> tuple[list[RequestRecord], list[JobRecord], dict[str, ClusterJob]]:
    """Ten submits/s from 0 to 20 s, each job done 0.05 s later, none finishing inside `gap`
    (the completions there are delayed to the gap's end); every job SUCCEEDED once in the cluster."""
    requests, jobs, cluster_jobs = [], [], {}
    for i in range(200):
        t = i / 10
        job_id = f"j{i}"
        end = t + 0.05
        if gap[0] <= end < gap[1]:
            end = gap[1] + 0.01
        requests.append(RequestRecord(0, Op.SUBMIT, t, t, t + 0.001, "OK", job_id))
        jobs.append(JobRecord(job_id, t, t + 0.001, end, JobState.SUCCEEDED, 1, 0.05))
        cluster_jobs[job_id] = ClusterJob(job_id, JobState.SUCCEEDED, 1)
    return requests, jobs, cluster_jobs


def test_auditor_counts_a_clean_run_as_clean() -> None:
    requests, jobs, cluster_jobs = steady_run()
    found = audit(requests, jobs, cluster_jobs, FAULT_AT, END)
    assert (found.accepted, found.lost, found.unfinished, found.failed, found.duplicates) == (200, 0, 0, 0, 0)
    assert found.unacknowledged == 0
    assert found.unavailable_s == 0.0
    # completions stop in [10, 12): the first bin back at >= 90% of the rate starts at 12
    assert found.recovery_s == pytest.approx(2.0)


def test_auditor_finds_planted_lost_unfinished_failed_and_duplicate_jobs() -> None:
    requests, jobs, cluster_jobs = steady_run()
    del cluster_jobs["j42"]  # accepted, and the cluster no longer knows it: lost
    cluster_jobs["j43"] = ClusterJob("j43", JobState.PENDING, 0)  # still queued: unfinished, not lost
    cluster_jobs["j44"] = ClusterJob("j44", JobState.SUCCEEDED, 2)  # dispatched twice: a duplicate
    cluster_jobs["j45"] = ClusterJob("j45", JobState.FAILED, 3)  # failed after retries: also a duplicate
    cluster_jobs["x1"] = ClusterJob("x1", JobState.SUCCEEDED, 1)  # created, its submit not answered OK
    requests.append(RequestRecord(0, Op.SUBMIT, 10.6, 10.6, 10.7, "UNAVAILABLE"))
    requests.append(RequestRecord(0, Op.SUBMIT, 11.2, 11.2, 11.3, "DEADLINE_EXCEEDED"))
    found = audit(requests, jobs, cluster_jobs, FAULT_AT, END)
    assert found.accepted == 200
    assert (found.lost, found.lost_ids) == (1, ("j42",))
    assert found.unfinished == 1
    assert found.failed == 1
    assert (found.duplicates, found.duplicate_ids) == (2, ("j44", "j45"))
    assert found.unacknowledged == 1
    assert found.unavailable_s == pytest.approx(1.0)  # two failed requests, in two different 0.5 s bins


def test_auditor_refuses_an_accepted_submit_without_a_job_id() -> None:
    requests, jobs, cluster_jobs = steady_run()
    requests.append(RequestRecord(0, Op.SUBMIT, 5.0, 5.0, 5.1, "OK", ""))
    with pytest.raises(InvalidArgument):
        audit(requests, jobs, cluster_jobs, FAULT_AT, END)


def test_plan_checks_faults_and_targets() -> None:
    runs = plan_faults("micro", ["kill", "stop"], None, 8.0, 2.0, 4.0)
    assert [(f.action, f.target) for f in runs] == [
        ("kill", "gateway"),
        ("kill", "job"),
        ("kill", "queue"),
        ("kill", "coordinator"),
        ("kill", "worker"),
        ("kill", "result"),
        ("stop", "worker"),
    ]
    assert runs[-1].downtime == 4.0  # a stop lasts the pause
    assert [f.target for f in plan_faults("mono", ["kill"], ["n3"], 8.0, 2.0, 4.0)] == ["n3"]
    with pytest.raises(InvalidArgument, match="not a node"):
        plan_faults("mono", ["kill"], ["worker"], 8.0, 2.0, 4.0)
    with pytest.raises(InvalidArgument, match="unknown fault"):
        plan_faults("mono", ["explode"], None, 8.0, 2.0, 4.0)
    (cut,) = plan_faults("mono", ["partition"], None, 8.0, 2.0, 4.0, cut=3.0)
    assert (cut.target, cut.downtime) == ("n1", 3.0)
    with pytest.raises(InvalidArgument):
        plan_faults("mono", ["kill"], None, 8.0, -1.0, 4.0)


def test_rows_use_the_simulators_keys_and_append(tmp_path: Path) -> None:
    requests, jobs, cluster_jobs = steady_run()
    fault = RealFault("stop", "n1", FAULT_AT, 4.0)
    run = FaultRun(
        "mono",
        fault,
        core_for(CoreConfig(), 5.0, 1.0),
        "sqlite",
        "r1",
        Injection(fault, FAULT_AT, FAULT_AT + 4.0, 0.0),
        audit(requests, jobs, cluster_jobs, FAULT_AT, END),
        None,
    )
    row = run.row()
    assert tuple(row) == ROW_KEYS
    assert row["fault"] == "pause"  # SIGSTOP/SIGCONT is the simulator's "pause"
    assert (row["lease_s"], row["heartbeat_s"]) == (5.0, 1.0)
    out = tmp_path / "real-mono.json"
    write_rows([run], out)
    table = write_rows([run], out, append=True)
    assert [r["run_id"] for r in json.loads(out.read_text())] == ["r1", "r1"]
    lines = table.read_text().splitlines()
    assert lines[0].split(",")[: len(ROW_KEYS)] == list(ROW_KEYS)
    assert len(lines) == 3
    write_rows([run], out)  # without append: replaced
    assert len(json.loads(out.read_text())) == 1


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_real_kill_of_a_node_under_load_loses_no_accepted_job(tmp_path: Path) -> None:
    """Design B, sqlite: kill -9 of n1 seven seconds in, restarted after 1 s, 8 s of closed-loop load."""
    core = core_for(CoreConfig(), 2.0, 0.5)
    spec = fault_workload(60.0, 0.1, run_time=8.0, seed=3, clients=12)
    fault = RealFault("kill", "n1", 7.0, 1.0)
    run = await run_fault(
        "mono", fault, spec, core, drain=10.0, settle=20.0, runs_out=tmp_path / "runs", workdir=tmp_path
    )
    found = run.found
    assert found.accepted > 100, found
    assert found.lost == 0, found.lost_ids
    assert found.unfinished == 0, found  # every accepted job ended terminal in the cluster
    assert abs(run.injection.injected_at - 7.0) < 0.5
    assert run.injection.restart_s > 0
    # the run directory holds the records the auditor read
    assert run.run_dir is not None
    requests, jobs = load_records(run.run_dir)
    assert sum(r.op is Op.SUBMIT and r.status == "OK" for r in requests) == found.accepted
    assert all(
        j.final_state in (JobState.SUCCEEDED, JobState.FAILED) for j in jobs if math.isfinite(j.end_time)
    )


def _can_partition() -> bool:
    return os.geteuid() == 0 and shutil.which("ip") is not None


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.skipif(not _can_partition(), reason="the partition fault needs root and iproute2")
async def test_real_partition_of_a_node_stalls_it_and_loses_nothing(tmp_path: Path) -> None:
    """Design B, sqlite: n1 behind a veth pair in its own namespace, cut off for 1.5 s at 7 s."""
    core = core_for(CoreConfig(), 2.0, 0.5)
    spec = fault_workload(60.0, 0.1, run_time=8.0, seed=4, clients=12)
    fault = RealFault("partition", "n1", 7.0, 1.5)
    run = await run_fault("mono", fault, spec, core, drain=10.0, settle=20.0, runs_out=None, workdir=tmp_path)
    assert run.found.accepted > 100, run.found
    assert (run.found.lost, run.found.unfinished) == (0, 0), run.found
    # closed-loop clients whose calls went to n1 wait through the cut: completions dip, then recover
    assert run.found.recovery_s > 0
    assert run.injection.healed_at - run.injection.injected_at >= 1.5
    spaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert f"dtqf{20 + os.getpid() % 200}" not in spaces  # the namespace is gone
