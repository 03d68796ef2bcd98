"""`sim.run(config) -> SimResult`, and the `dtq sim` command's body.

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

import argparse
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import simpy

from model.audit import duplicate_jobs
from model.errors import InvalidArgument
from model.results.schema import JobRecord, RequestRecord
from model.results.summary import summarize
from model.workload import OpenLoop, WorkloadSpec, workload_from_mapping
from sim.cpu import CostModel
from sim.engine import Cluster, SimEnv
from sim.loadgen import LoadGen
from sim.micro import MicroCluster
from sim.mono import MonoCluster
from sim.params import SimParams, load_params, parse_override

Design = Literal["micro", "mono"]
DESIGNS: tuple[Design, ...] = ("micro", "mono")


@dataclass(frozen=True, slots=True)
class Fault:
    """At `at` seconds after the run start:
    - "kill_worker": kill a worker: Design A's worker process (`target` "worker"), or Design B node
      `target`'s worker runtime. With `restart_after`, a new worker (a new worker id) starts that
      much later.
    - "pause": SIGSTOP process `target` (a Design A role, or a Design B node) for `duration` seconds,
      then SIGCONT (sim/faults.py)."""

    at: float
    target: str = "worker"
    action: Literal["kill_worker", "pause"] = "kill_worker"
    restart_after: float | None = None
    duration: float = 0.0

    def __post_init__(self) -> None:
        if self.action not in ("kill_worker", "pause"):
            raise InvalidArgument(f"fault action must be kill_worker or pause, got {self.action!r}")
        if (
            not self.at >= 0
            or self.duration < 0
            or (self.restart_after is not None and self.restart_after < 0)
        ):
            raise InvalidArgument("fault at, duration and restart_after must be >= 0")
        if self.action == "pause" and not self.duration > 0:
            raise InvalidArgument("a pause needs a duration > 0")


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
    loadgen = LoadGen(cluster, config.workload, t0=config.warm_start)
    return env, cluster, loadgen


def run(config: SimConfig | Mapping[str, Any]) -> SimResult:
    if not isinstance(config, SimConfig):
        config = SimConfig.from_mapping(config)
    env, cluster, loadgen = build(config)
    cluster.start()
    loadgen.start()
    for fault in config.faults:
        _schedule_fault(env, cluster, fault, config.warm_start + fault.at)
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


def _schedule_fault(env: simpy.Environment, cluster: Cluster, fault: Fault, at: float) -> None:
    from sim.faults import schedule

    schedule(env, cluster, fault, at)


def _entropy(config: SimConfig) -> int:
    # one integer from (seed, replication), so replications get unrelated streams
    return config.sim_seed * 1_000_003 + config.replication


def _job_spec(workload: WorkloadSpec) -> Any:
    from model.job import JobSpec

    return JobSpec.make(workload.job_type, labels=dict(workload.labels))


# ---------------------------------------------------------------------------- `dtq sim`
def add_arguments(parser: argparse.ArgumentParser) -> None:
    from sim.faults import add_arguments as add_fault_arguments

    parser.add_argument(
        "sim_action",
        nargs="?",
        choices=("run", "faults"),
        default="run",
        help="run (default): one workload; faults: the lease x heartbeat fault sweep (sim/faults.py)",
    )
    parser.add_argument("--design", choices=DESIGNS, required=True)
    parser.add_argument("--workload", default="", help="a .yaml/.toml workload (data/workloads/)")
    parser.add_argument("--nodes", type=int, default=0, help="Design B node count (default: params)")
    parser.add_argument("--calibration", default="", help="a name under data/calibration/ or a JSON path")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a parameter"
    )
    parser.add_argument("--seed", type=int, default=None, help="simulator seed (default: the workload's)")
    parser.add_argument("--replication", type=int, default=0)
    parser.add_argument("--out", default="data/runs", help="runs root directory ('' to not write)")
    parser.add_argument("--run-id", default="")
    parser.add_argument("--no-records", action="store_true", help="write only config.json and summary.json")
    parser.add_argument("--mva", action="store_true", help="also print the analytic (sim/mva.py) prediction")
    add_fault_arguments(parser)


def params_of(args: argparse.Namespace) -> SimParams:
    """The SimParams a `dtq sim` command line names: calibration, then --nodes and --set overrides."""
    params = load_params(args.calibration) if args.calibration else SimParams()
    overrides = dict(parse_override(s) for s in args.set)
    if args.nodes:
        overrides["nodes"] = args.nodes
    if overrides:
        params = params.with_overrides(overrides)
    return params


def mva_text(args: argparse.Namespace, summary: dict[str, Any] | None) -> str:
    """`dtq sim --mva`: the analytic prediction beside the simulator's summary."""
    from model.results.runs import load_workload
    from sim.mva import format_prediction, predict

    return format_prediction(predict(args.design, load_workload(args.workload), params_of(args)), summary)


def sim_command(args: argparse.Namespace) -> tuple[dict[str, Any], Path | None]:
    """Runs one simulation from parsed `dtq sim` arguments; writes it when --out is set."""
    from model.results.runs import load_workload, provenance, run_config, utc_now, write_run

    if not args.workload:
        raise InvalidArgument("dtq sim needs --workload")
    workload = load_workload(args.workload)
    params = params_of(args)
    config = SimConfig(
        design=args.design,
        workload=workload,
        params=params,
        seed=args.seed,
        replication=args.replication,
        name=Path(args.workload).stem,
        run_id=args.run_id,
    )
    started_at = utc_now()
    result = run(config)
    if not args.out:
        return result.summary, None
    run_cfg = run_config(
        run_id=config.effective_run_id,
        kind="sim",
        design=config.design,
        workload=workload,
        parameters={"calibration": params.name, "sim_seed": config.sim_seed, "params": params.to_mapping()},
        replication=config.replication,
        started_at=started_at,
        provenance_info=provenance(),
    )
    path = write_run(
        args.out,
        config.effective_run_id,
        run_cfg,
        result.requests,
        result.jobs,
        result.summary,
        records=not args.no_records,
        overwrite=True,
    )
    return result.summary, path
