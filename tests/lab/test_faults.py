"""The real fault runner (lab/faults/): the auditor on synthetic records with planted faults,
the rows' layout, the plan's input checks, the compose backend's docker and compose commands (on a
fake engine: docker/test.sh runs it on a real one), and two short real runs of the local backend
(Design B: kill -9 of a node under load, restarted; a node cut off by a network partition) in which
no accepted job may be lost."""

from __future__ import annotations

import asyncio
import csv
import importlib.util
import json
import math
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from lab.faults.audit import ClusterJob, audit
from lab.faults.cli import write_rows
from lab.faults.compose import (
    ComposeBackend,
    ComposeCluster,
    Container,
    compose_fault_commands,
    compose_files,
)
from lab.faults.inject import Injection, RealFault, plan_faults
from lab.faults.run import FaultRun, run_fault
from model.config import CoreConfig
from model.errors import InvalidArgument
from model.results.runs import fresh_path, load_records
from model.results.schema import JobRecord, RequestRecord
from model.states import JobState
from model.workload import Op
from realsys import cluster
from sim.faults import ROW_KEYS, core_for, fault_workload

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


def test_plan_takes_targets_per_fault() -> None:
    runs = plan_faults(
        "micro", ["stop", "kill", "restart"], ["stop:worker", "kill:job", "kill:queue", "result"], 8, 2, 4
    )
    assert [(f.action, f.target) for f in runs] == [
        ("stop", "worker"),
        ("kill", "job"),
        ("kill", "queue"),
        ("restart", "result"),  # no restart: target of its own, so the plain one
    ]
    with pytest.raises(InvalidArgument, match="not run"):
        plan_faults("mono", ["kill"], ["stop:n1"], 8.0, 2.0, 4.0)
    with pytest.raises(InvalidArgument, match="not a node"):
        plan_faults("mono", ["kill"], ["kill:worker"], 8.0, 2.0, 4.0)


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


# ---------------------------------------------------------------------------- compose backend, fake engine
class FakeEngine:
    """Stands in for the docker and compose CLIs: records every command, answers the few whose output
    the backend reads (a project's containers, the exit code `docker wait` prints)."""

    def __init__(self, services: tuple[str, ...], exit_code: str = "137") -> None:
        self.services = services
        self.exit_code = exit_code
        self.calls: list[list[str]] = []
        self.envs: list[dict[str, str]] = []

    def __call__(
        self, args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 60.0
    ) -> str:
        args = list(args)
        self.calls.append(args)
        if env is not None:
            self.envs.append(dict(env))
        if args[:2] == ["docker", "ps"]:
            return "".join(f"id-{s}\n" for s in self.services)
        if args[:2] == ["docker", "inspect"]:
            return json.dumps(
                [
                    {
                        "Id": a,
                        "Config": {"Labels": {"com.docker.compose.service": a.removeprefix("id-")}},
                        "NetworkSettings": {
                            "Networks": {"p_default": {"Aliases": [a.removeprefix("id-"), a[:12]]}}
                        },
                    }
                    for a in args[2:]
                ]
            )
        if args[:3] == ["docker", "image", "inspect"]:
            return "sha256:feed\n"
        if args[:2] == ["docker", "version"]:
            return "20.10.24\n"
        if args[:2] == ["docker", "wait"]:
            return self.exit_code + "\n"
        return ""

    def docker(self) -> list[list[str]]:
        """The docker commands after start-up (inspect and friends left out)."""
        return [
            c for c in self.calls if c[0] == "docker" and c[1] not in ("ps", "inspect", "image", "version")
        ]


def fake_cluster(engine: FakeEngine, ready: list[str]) -> ComposeCluster:
    containers = {s: Container(s, f"id-{s}", "p_default", (s, f"id-{s}"[:12])) for s in engine.services}
    addresses = {s: f"127.0.0.1:{6000 + i}" for i, s in enumerate(engine.services)}
    return ComposeCluster(
        "mono",
        "p",
        list(addresses.values()),
        addresses,
        containers,
        engine,
        lambda address, timeout: ready.append(address),
    )


def test_compose_fault_commands_map_each_fault_to_the_engine() -> None:
    c = Container("n2", "abc", "p_default", ("n2", "abc"))
    kill, stop, restart, partition = (
        compose_fault_commands(RealFault(a, "n2", 8.0, 2.0), c)
        for a in ("kill", "stop", "restart", "partition")
    )
    assert kill == (
        [["docker", "kill", "--signal", "KILL", "abc"], ["docker", "wait", "abc"]],
        [["docker", "start", "abc"]],
    )
    assert stop == ([["docker", "pause", "abc"]], [["docker", "unpause", "abc"]])  # the cgroup freezer
    assert restart == (
        [["docker", "stop", "--time", "30", "abc"]],
        [["docker", "start", "abc"]],
    )  # SIGTERM: drains
    # reconnected under its service name, so the other containers resolve it again
    assert partition == (
        [["docker", "network", "disconnect", "p_default", "abc"]],
        [["docker", "network", "connect", "--alias", "n2", "--alias", "abc", "p_default", "abc"]],
    )


async def test_compose_kill_restarts_the_container_and_waits_for_its_health() -> None:
    engine, ready = FakeEngine(("n1", "n2")), list[str]()
    running = fake_cluster(engine, ready)
    clock = iter([8.0, 8.9])
    injection = await running.inject(RealFault("kill", "n2", 8.0, 0.01), lambda: next(clock))
    assert engine.docker() == [
        ["docker", "kill", "--signal", "KILL", "id-n2"],
        ["docker", "wait", "id-n2"],
        ["docker", "start", "id-n2"],
    ]
    assert ready == ["127.0.0.1:6001"]  # n2's published port, asked after the start
    assert (injection.injected_at, injection.healed_at) == (8.0, 8.9)
    assert injection.restart_s >= 0


async def test_compose_kill_refuses_an_exit_that_is_not_sigkill() -> None:
    engine = FakeEngine(("n1",), exit_code="0")
    with pytest.raises(RuntimeError, match="not 137"):
        await fake_cluster(engine, []).inject(RealFault("kill", "n1", 8.0, 0.01), lambda: 8.0)


async def test_compose_pause_is_undone_when_the_run_is_interrupted() -> None:
    engine, ready = FakeEngine(("n1",)), list[str]()
    task = asyncio.create_task(
        fake_cluster(engine, ready).inject(RealFault("stop", "n1", 8.0, 30.0), lambda: 8.0)
    )
    for _ in range(100):  # until the pause is in force
        await asyncio.sleep(0.01)
        if engine.docker():
            break
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert engine.docker() == [["docker", "pause", "id-n1"], ["docker", "unpause", "id-n1"]]
    assert ready == []  # a pause keeps the process: no restart to wait for


async def test_compose_backend_brings_up_a_fresh_project_and_always_takes_it_down(tmp_path: Path) -> None:
    engine, ready = FakeEngine(cluster.MICRO_ROLES), list[str]()
    backend = ComposeBackend(
        image="dtq:test",
        project="p",
        root=tmp_path,
        runner=engine,
        ready=lambda address, timeout: ready.append(address),
        compose=("docker-compose",),
    )
    settings = {"DTQ_LEASE_DURATION": "5.0"}
    fault = RealFault("stop", "worker", 8.0, 4.0)
    with pytest.raises(ValueError, match="the run failed"):
        async with backend.open("micro", fault, "sqlite", 12, settings) as running:
            assert len(running.clients) == 1  # Design A: clients reach the gateway only
            assert running.describe()["image_id"] == "sha256:feed"
            raise ValueError("the run failed")
    files = [
        "-f",
        str(tmp_path / "docker/compose.micro.yml"),
        "-f",
        str(tmp_path / "docker/compose.micro.ports.yml"),
    ]
    compose = [c for c in engine.calls if c[0] == "docker-compose"]
    down = ["docker-compose", "-p", "p", *files, "down", "--volumes", "--remove-orphans", "--timeout", "20"]
    assert compose == [down, ["docker-compose", "-p", "p", *files, "up", "--detach", "--no-build"], down]
    env = engine.envs[1]  # up's
    ports = {role: env[f"DTQ_{role.upper()}_PORT"] for role in cluster.MICRO_ROLES}
    assert len(set(ports.values())) == 6  # six fixed, distinct host ports
    assert sorted(ready) == sorted(f"127.0.0.1:{p}" for p in ports.values())  # every role's health asked
    assert (env["DTQ_IMAGE"], env["DTQ_STORE"], env["DTQ_WORKER_SLOTS"]) == ("dtq:test", "sqlite", "12")
    assert env["DTQ_LEASE_DURATION"] == "5.0"
    assert ["docker", "unpause", "id-worker"] in engine.calls  # a stop run never leaves a frozen container


async def test_compose_backend_of_design_b_serves_clients_on_every_node(tmp_path: Path) -> None:
    engine = FakeEngine(cluster.MONO_NODES)
    backend = ComposeBackend(
        project="q",
        root=tmp_path,
        runner=engine,
        ready=lambda address, timeout: None,
        compose=("docker", "compose"),
    )
    async with backend.open("mono", RealFault("kill", "n1", 8.0, 2.0), "sqlite", 12, {}) as running:
        assert len(running.clients) == 6
    env = engine.envs[1]
    assert env["DTQ_NODE_SLOTS"] == "2"
    assert all(f"DTQ_N{i}_PORT" in env for i in range(1, 7))
    assert not any("compose.micro.ports.yml" in a for c in engine.calls for a in c)
    assert not any(c[:2] == ["docker", "unpause"] for c in engine.calls)


def test_docker_check_faults_reads_the_rows_the_runner_writes(tmp_path: Path) -> None:
    """docker/test.sh's checker (standard library only) against write_rows' CSV: columns agree."""
    spec = importlib.util.spec_from_file_location(
        "check_faults", Path(__file__).parents[2] / "docker/check_faults.py"
    )
    assert spec is not None and spec.loader is not None
    checker = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(checker)
    requests, jobs, cluster_jobs = steady_run()
    fault = RealFault("stop", "worker", FAULT_AT, 2.0)
    clean = audit(requests, jobs, cluster_jobs, FAULT_AT, END)
    del cluster_jobs["j42"]
    lossy = audit(requests, jobs, cluster_jobs, FAULT_AT, END)
    core = core_for(CoreConfig(), 5.0, 1.0)
    runs = [
        FaultRun("micro", fault, core, "sqlite", f"r{i}", Injection(fault, FAULT_AT, 12.0, 0.0), found, None)
        for i, found in enumerate((clean, lossy))
    ]
    with write_rows(runs, tmp_path / "rows.json").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert checker.problems(rows[:1], 1, 100, ["pause:worker"]) == []
    assert checker.problems(rows, 2, 100, []) == ["pause:worker: 1 accepted jobs lost"]
    assert checker.problems(rows[:1], 1, 500, ["kill:job"]) == [
        "pause:worker: only 200 jobs accepted, expected at least 500",
        "kill:job: no row",
    ]


def test_default_rows_go_to_a_new_file_beside_committed_ones(tmp_path: Path) -> None:
    """`dtq faults run` (and `dtq sim faults`) never replace a default output that exists."""
    default = tmp_path / "real-mono.json"
    assert fresh_path(default) == default  # nothing there yet: the default
    default.write_text("[]\n")
    new = fresh_path(default)
    assert new != default and new.parent == tmp_path and new.name.startswith("real-mono-")
    assert new.suffix == ".json" and not new.exists()
    assert fresh_path(default, force=True) == default


@pytest.mark.parametrize("design", ["micro", "mono"])
def test_the_compose_backend_finds_the_committed_compose_files(design: str) -> None:
    """Its default root is the checkout (it once pointed into lab/ after the harness moved there)."""
    root = ComposeBackend.__dataclass_fields__["root"].default
    files = compose_files(root, design)
    assert files and all(path.is_file() for path in files)
