"""Faults in the simulator, their audit, and `dtq sim faults` (a lease x heartbeat sweep).

Faults (sim.Fault, scheduled at `warm_start + at`):
- "kill_worker": the worker-bearing runtime dies (Design A: the worker process; Design B: node
  `target`'s in-process worker runtime, the node's core and store keep serving). Its attempts stop
  silently; the core finds out through the worker registry's TTL or the lease's expiry and requeues
  (model/: WorkerRegistry, JobTable/Scheduler). `restart_after`: a new worker (new id) starts.
- "pause": SIGSTOP then SIGCONT of process `target` (a Design A role, or a Design B node) for
  `duration` seconds: one burst of that length on the process's loop, so nothing else of that
  process runs meanwhile (its heartbeats, reports, request handlers, timers queue behind it) while
  the rest of the cluster runs on. Its leases expire at their owners; after the resume its late
  reports reach the core, which fences them (StaleAttempt -> ABORTED, counted as stale_reports).
  Model limit: the burst also holds one host core, which a stopped process would not, so the sweep
  below gives every process its own core.

Audit (model/audit.py, the definitions the real auditor imports): accepted submits, lost jobs
(accepted, never terminal by the hard end), duplicates (jobs whose execution started more than
once), fenced late reports, recovery time and unavailable time.
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import simpy

from model.audit import recovery_time, unavailable_time
from model.config import CoreConfig
from model.errors import InvalidArgument
from model.results.schema import JobRecord, RequestRecord
from model.states import TERMINAL
from model.workload import ClosedLoop, Distribution, OpenLoop, RequestMix, WorkloadSpec
from sim.api import Design, Fault, SimConfig, SimResult, run
from sim.engine import Cluster
from sim.params import SimParams

ROW_KEYS = (
    "design",
    "fault",
    "target",
    "lease_s",
    "heartbeat_s",
    "accepted",
    "lost",
    "duplicates",
    "recovery_s",
    "unavailable_s",
    "store",
    "run_id",
)


# ---------------------------------------------------------------------------- injection
def check(cluster: Cluster, fault: Fault) -> None:
    """Refuses a fault whose target this cluster does not have (before the run, not mid-way)."""
    names = {p.name for p in cluster.procs if not p.name.startswith("lg")}
    if fault.action == "pause" and fault.target not in names:
        raise InvalidArgument(
            f"pause target {fault.target!r} is not a process of this cluster {sorted(names)}"
        )
    if fault.action == "kill_worker":
        workers = {"worker"} if cluster.design == "micro" else names
        if fault.target not in workers:
            raise InvalidArgument(f"kill_worker target {fault.target!r} is not one of {sorted(workers)}")


def inject(cluster: Cluster, fault: Fault) -> None:
    if fault.action == "kill_worker":
        cluster.kill_worker(fault.target, fault.restart_after)
        return
    proc = next(p for p in cluster.procs if p.name == fault.target)
    cluster.counters["paused"] = cluster.counters.get("paused", 0) + 1
    proc.run(fault.duration)  # SIGSTOP: the loop is held until SIGCONT


def schedule(env: simpy.Environment, cluster: Cluster, fault: Fault, at: float) -> None:
    check(cluster, fault)
    env.timeout(at).callbacks.append(lambda _: inject(cluster, fault))


# ---------------------------------------------------------------------------- audit
@dataclass(frozen=True, slots=True)
class FaultAudit:
    accepted: int
    lost: int
    duplicates: int
    fenced: int  # late reports the core refused (stale attempts)
    recovery_s: float  # inf: the completion rate never came back before the trace's end
    unavailable_s: float


def audit(
    requests: Sequence[RequestRecord],
    jobs: Sequence[JobRecord],
    stats: dict[str, Any],
    fault_at: float,
    end: float,
) -> FaultAudit:
    """The fault measures of one run; `fault_at` and `end` in record time (seconds from the run start)."""
    accepted = sum(r.op.name == "SUBMIT" and r.status == "OK" for r in requests)
    lost = sum(not (math.isfinite(j.end_time) and j.final_state in TERMINAL) for j in jobs)
    return FaultAudit(
        accepted=accepted,
        lost=lost,
        duplicates=int(stats["duplicate_jobs"]),
        fenced=int(stats["counters"].get("stale_reports", 0)),
        recovery_s=recovery_time([j.end_time for j in jobs], fault_at, end),
        unavailable_s=unavailable_time(
            [r.start_time for r in requests], [r.status == "OK" for r in requests], fault_at, end
        ),
    )


def audit_result(result: SimResult) -> FaultAudit:
    (fault,) = result.config.faults
    return audit(result.requests, result.jobs, result.stats, fault.at, result.config.workload.total_time)


# ---------------------------------------------------------------------------- the sweep
def core_for(base: CoreConfig, lease: float, heartbeat: float) -> CoreConfig:
    """Lease and heartbeat as given; the worker TTL as the defaults relate them (3 heartbeats), kept
    below the lease (model/config.py: a lost worker is noticed before its leases lapse)."""
    return replace(
        base, lease_duration=lease, heartbeat_interval=heartbeat, worker_ttl=min(3 * heartbeat, 0.6 * lease)
    )


def fault_workload(
    rate: float, duration: float, run_time: float, seed: int, clients: int = 0
) -> WorkloadSpec:
    """Submits only, constant jobs: a steady completion rate for the 0.5 s bins to compare against.
    `clients` > 0: a closed loop in wait mode instead of Poisson submits at `rate`: no new work
    arrives while a client's job is stuck, so the rate shows how long the core takes to requeue."""
    arrival: OpenLoop | ClosedLoop = (
        ClosedLoop(clients, wait_for_completion=True) if clients > 0 else OpenLoop(rate, max_in_flight=4096)
    )
    return WorkloadSpec(
        arrival,
        RequestMix(submit=1.0),
        duration=Distribution("constant", duration),
        run_time=run_time,
        warmup=2.0,
        seed=seed,
    )


def default_target(design: Design) -> str:
    return "worker" if design == "micro" else "n1"


def row(
    design: Design, fault: Fault, core: CoreConfig, store: str, run_id: str, found: FaultAudit
) -> dict[str, Any]:
    out = {
        "design": design,
        "fault": fault.action,
        "target": fault.target,
        "lease_s": core.lease_duration,
        "heartbeat_s": core.heartbeat_interval,
        "accepted": found.accepted,
        "lost": found.lost,
        "duplicates": found.duplicates,
        "recovery_s": found.recovery_s if math.isfinite(found.recovery_s) else None,
        "unavailable_s": found.unavailable_s,
        "store": store,
        "run_id": run_id,
    }
    assert tuple(out) == ROW_KEYS
    return out


def sweep(
    design: Design,
    leases: Sequence[float],
    heartbeats: Sequence[float],
    faults: Sequence[Fault],
    workload: WorkloadSpec,
    params: SimParams,
) -> tuple[list[dict[str, Any]], list[FaultAudit]]:
    """One run per (fault, lease, heartbeat) with heartbeat < lease; rows in that order."""
    rows, audits = [], []
    for fault in faults:
        for lease in leases:
            for heartbeat in heartbeats:
                if heartbeat >= lease:
                    continue  # CoreConfig refuses it: the lease would lapse between heartbeats
                core = core_for(params.core, lease, heartbeat)
                run_id = f"sim-faults-{design}-{fault.action}-L{lease:g}-H{heartbeat:g}-{workload.seed}"
                config = SimConfig(
                    design, workload, replace(params, core=core), faults=(fault,), run_id=run_id
                )
                result = run(config)
                found = audit_result(result)
                rows.append(row(design, fault, core, params.store, run_id, found))
                audits.append(found)
    return rows, audits


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise InvalidArgument(f"expected comma-separated seconds, got {text!r}") from exc
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise InvalidArgument(f"expected positive seconds, got {text!r}")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`dtq sim faults` flags (the `sim` parser's; --design, --calibration, --set, --seed are shared)."""
    group = parser.add_argument_group("dtq sim faults")
    group.add_argument("--lease", default="2,5,10", help="faults: lease durations (s), comma-separated")
    group.add_argument("--heartbeat", default="0.5,1,2", help="faults: heartbeat intervals (s)")
    group.add_argument(
        "--fault", action="append", choices=["kill_worker", "pause"], help="faults: which (default both)"
    )
    group.add_argument("--target", default="", help="faults: process or node (default: worker / n1)")
    group.add_argument(
        "--fault-at", type=float, default=8.0, help="faults: injection time (s from the run start)"
    )
    group.add_argument("--pause", type=float, default=4.0, help="faults: pause length (s)")
    group.add_argument("--restart-after", type=float, default=1.0, help="faults: worker restart delay (s)")
    group.add_argument(
        "--clients",
        type=int,
        default=-1,
        help="faults: closed-loop waiting clients (default: one per slot; 0: --rate)",
    )
    group.add_argument("--rate", type=float, default=60.0, help="faults: Poisson submits/s when --clients 0")
    group.add_argument("--job-duration", type=float, default=0.1, help="faults: constant job duration (s)")
    group.add_argument("--after", type=float, default=25.0, help="faults: trace seconds after the injection")
    group.add_argument("--faults-out", default="data/faults", help="faults: writes <dir>/sim-<design>.json")


def faults_command(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[FaultAudit], Path | None]:
    from sim.api import params_of

    design: Design = args.design
    params = params_of(args)
    # the pause burst holds a core (see the module docstring): give every process its own
    procs = (params.nodes if design == "mono" else 6) + params.loadgen_processes
    params = replace(params, cores=max(params.cores, procs))
    target = args.target or default_target(design)
    chosen = args.fault or ["kill_worker", "pause"]
    faults = [
        Fault(at=args.fault_at, target=target, action="kill_worker", restart_after=args.restart_after)
        if action == "kill_worker"
        else Fault(at=args.fault_at, target=target, action="pause", duration=args.pause)
        for action in chosen
    ]
    seed = 1 if args.seed is None else args.seed
    clients = params.slots if args.clients < 0 else args.clients
    workload = fault_workload(args.rate, args.job_duration, args.fault_at - 2.0 + args.after, seed, clients)
    rows, audits = sweep(design, _floats(args.lease), _floats(args.heartbeat), faults, workload, params)
    if not args.faults_out:
        return rows, audits, None
    out = Path(args.faults_out) / f"sim-{design}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rows, indent=1) + "\n")
    return rows, audits, out


def format_rows(rows: Sequence[dict[str, Any]], audits: Sequence[FaultAudit]) -> str:
    head = (
        f"{'design':6} {'fault':11} {'target':6} {'lease':>5} {'hb':>4} {'accepted':>8} {'lost':>4} "
        f"{'dup':>4} {'fenced':>6} {'recov_s':>7} {'unavail_s':>9}"
    )
    lines = [head]
    for r, a in zip(rows, audits, strict=True):
        recovery = "never" if r["recovery_s"] is None else f"{r['recovery_s']:.1f}"
        lines.append(
            f"{r['design']:6} {r['fault']:11} {r['target']:6} {r['lease_s']:5g} {r['heartbeat_s']:4g} "
            f"{r['accepted']:8d} {r['lost']:4d} {r['duplicates']:4d} {a.fenced:6d} {recovery:>7} "
            f"{r['unavailable_s']:9.1f}"
        )
    return "\n".join(lines)
