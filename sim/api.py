"""`sim.run(config) -> SimResult`: one simulated run of a design under a workload.

    import sim
    from model.workload import OpenLoop, WorkloadSpec
    result = sim.run(sim.SimConfig("mono", WorkloadSpec(OpenLoop(300.0))))
    result.summary["latency_ms"]["submit"]["p99"]

Determinism: the same config gives identical records. The workload's seed drives the trace (shared
with the real load generator: common random numbers); `seed` (default: the workload's) and
`replication` drive the simulator's own streams (service times, network, commits), one per
component and process (sim/cpu.py).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import simpy

from model.audit import duplicate_jobs
from model.errors import InvalidArgument
from model.job import JobSpec
from model.results.schema import JobRecord, RequestRecord
from model.results.summary import summarize
from model.workload import OpenLoop, WorkloadSpec, workload_from_mapping
from sim.cpu import CostModel
from sim.engine import Cluster, SimEnv
from sim.injection import Fault, schedule
from sim.loadgen import LoadGen
from sim.micro import MicroCluster
from sim.mono import MonoCluster
from sim.params import SimParams

Design = Literal["micro", "mono"]
DESIGNS: tuple[Design, ...] = ("micro", "mono")


@dataclass(frozen=True, slots=True)
class SimConfig:
    design: Design
    workload: WorkloadSpec
    params: SimParams = field(default_factory=SimParams)
    seed: int | None = None  # the simulator's streams; None: the workload's seed
    replication: int = 0
    faults: tuple[Fault, ...] = ()
    name: str = "workload"  # the workload's name in the run id
    run_id: str = ""  # default: sim-<design>-<name>-<seed>-r<replication> (the runner's scheme)
    warm_start: float = 0.5  # seconds the cluster runs (heartbeats, timers) before the trace starts

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise InvalidArgument(f"design must be micro or mono, got {self.design!r}")
        if self.replication < 0 or (self.seed is not None and self.seed < 0) or self.warm_start < 0:
            raise InvalidArgument("seed, replication and warm_start must be >= 0")

    @property
    def sim_seed(self) -> int:
        return self.workload.seed if self.seed is None else self.seed

    @property
    def effective_run_id(self) -> str:
        return self.run_id or f"sim-{self.design}-{self.name}-{self.workload.seed}-r{self.replication}"

    @staticmethod
    def from_mapping(data: Mapping[str, Any]) -> SimConfig:
        """{"design", "workload": {...}, "params": {...}, "seed", "replication", "faults": [...], ...}"""
        known = {
            "design",
            "workload",
            "params",
            "seed",
            "replication",
            "faults",
            "name",
            "run_id",
            "warm_start",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidArgument(f"unknown SimConfig keys {unknown}")
        return SimConfig(
            design=data["design"],
            workload=workload_from_mapping(data["workload"]),
            params=SimParams.from_mapping(data.get("params", {})),
            seed=data.get("seed"),
            replication=int(data.get("replication", 0)),
            faults=tuple(Fault(**f) for f in data.get("faults", ())),
            name=str(data.get("name", "workload")),
            run_id=str(data.get("run_id", "")),
            warm_start=float(data.get("warm_start", 0.5)),
        )


@dataclass(slots=True)
class SimResult:
    config: SimConfig
    requests: list[RequestRecord]
    jobs: list[JobRecord]
    summary: dict[str, Any]  # summary.json (data/README.md), kind "sim"
    stats: dict[str, Any]  # simulator-side facts: speed, utilisation, core counters


def build(config: SimConfig) -> tuple[simpy.Environment, Cluster, LoadGen]:
    """The environment, cluster and load generator of a run, not yet started (tests poke at them)."""
    env = SimEnv()
    params = config.params
    costs = CostModel(params, _entropy(config))
    cluster: Cluster = (
        MonoCluster(env, params, costs) if config.design == "mono" else MicroCluster(env, params, costs)
    )
    cluster.spec = _job_spec(config.workload)
    cluster.payload_bytes = config.workload.payload_bytes
    loadgen = LoadGen(cluster, config.workload, t0=config.warm_start)
    return env, cluster, loadgen


def run(config: SimConfig | Mapping[str, Any]) -> SimResult:
    if not isinstance(config, SimConfig):
        config = SimConfig.from_mapping(config)
    env, cluster, loadgen = build(config)
    cluster.start()
    loadgen.start()
    for fault in config.faults:
        schedule(env, cluster, fault, config.warm_start + fault.at)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    env.run(until=loadgen.done)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    requests, jobs = loadgen.finish()
    executions: list[tuple[str, int]] = cluster.__dict__.get("executions", [])
    sim_seconds = env.now - config.warm_start
    workload = config.workload
    summary = summarize(
        requests,
        jobs,
        window=(workload.warmup, workload.total_time),
        run_id=config.effective_run_id,
        kind="sim",
        design=config.design,
        offered_rate=workload.arrival.rate if isinstance(workload.arrival, OpenLoop) else None,
        loadgen=loadgen.loadgen_block(requests, sim_seconds),
    )
    # speed per CPU second of this process: on a shared machine, wall time measures the neighbours
    stats = {
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "sim_seconds": sim_seconds,
        "sim_per_wall": sim_seconds / wall if wall > 0 else float("inf"),
        "sim_per_cpu": sim_seconds / cpu if cpu > 0 else float("inf"),
        "jobs_submitted": len(jobs),
        "jobs_per_wall_second": len(jobs) / wall if wall > 0 else float("inf"),
        "jobs_per_cpu_second": len(jobs) / cpu if cpu > 0 else float("inf"),
        "requests": len(requests),
        # busy share since the cluster started (warm start included: the processes ran then too)
        "utilisation": {p.name: p.busy_time / env.now for p in cluster.procs} if env.now > 0 else {},
        "core_wait": {p.name: p.core_wait for p in cluster.procs},  # seconds with work but no core
        "host_utilisation": {h.name: h.busy_time / (h.cores * env.now) for h in cluster.hosts}
        if env.now > 0
        else {},
        "counters": dict(sorted(cluster.counters.items())),
        "core": cluster.core_counters(),
        "executions": len(executions),
        "duplicate_jobs": len(duplicate_jobs(job_id for job_id, _ in executions)),
    }
    return SimResult(config, requests, jobs, summary, stats)


def _entropy(config: SimConfig) -> int:
    # one integer from (seed, replication), so replications get unrelated streams
    return config.sim_seed * 1_000_003 + config.replication


def _job_spec(workload: WorkloadSpec) -> Any:
    return JobSpec.make(workload.job_type, labels=dict(workload.labels))
