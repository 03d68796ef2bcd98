"""Faults injected into a simulated run: the `Fault` a SimConfig carries, and how it is applied to a
running cluster at its time (sim/faults.py has the audit and the lease x heartbeat sweep).

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
  gives every process its own core.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import simpy

from model.errors import InvalidArgument
from sim.engine import Cluster


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
