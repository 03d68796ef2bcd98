"""One fault run: a fresh cluster from a backend, the load generator on sim/faults.py's fault
workload, ONE fault injected during it, then the audit (and the run directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lab.faults.audit import RealAudit, audit, read_cluster_jobs
from lab.faults.backends import Backend, FaultCluster, LocalBackend
from lab.faults.inject import POLL, Injection, RealFault
from model.config import CoreConfig
from model.results.runs import provenance, utc_now
from model.workload import Op, WorkloadSpec
from realsys import cluster
from realsys.cli_common import progress
from realsys.loadgen import run_load, write_load_run
from realsys.targets import DtqTarget
from sim.faults import ROW_KEYS

ROW_FAULT = {"kill": "kill", "stop": "pause", "restart": "restart", "partition": "partition"}


@dataclass(frozen=True, slots=True)
class FaultRun:
    design: str
    fault: RealFault
    core: CoreConfig
    store: str
    run_id: str
    injection: Injection
    found: RealAudit
    run_dir: Path | None

    def row(self) -> dict[str, Any]:
        """sim/faults.py's ROW_KEYS, in that order."""
        out = {
            "design": self.design,
            "fault": ROW_FAULT[self.fault.action],
            "target": self.fault.target,
            "lease_s": self.core.lease_duration,
            "heartbeat_s": self.core.heartbeat_interval,
            "accepted": self.found.accepted,
            "lost": self.found.lost,
            "duplicates": self.found.duplicates,
            "recovery_s": self.found.recovery_s if math.isfinite(self.found.recovery_s) else None,
            "unavailable_s": self.found.unavailable_s,
            "store": self.store,
            "run_id": self.run_id,
        }
        assert tuple(out) == ROW_KEYS
        return out

    def extra(self) -> dict[str, Any]:
        """The CSV's columns beyond ROW_KEYS."""
        return {
            "unfinished": self.found.unfinished,
            "failed": self.found.failed,
            "unacknowledged": self.found.unacknowledged,
            "injected_at": round(self.injection.injected_at, 3),
            "down_s": self.fault.downtime,
            "restart_s": round(self.injection.restart_s, 3),
        }


def overrides_for(core: CoreConfig) -> dict[str, str]:
    return {
        "DTQ_LEASE_DURATION": repr(core.lease_duration),
        "DTQ_HEARTBEAT_INTERVAL": repr(core.heartbeat_interval),
        "DTQ_WORKER_TTL": repr(core.worker_ttl),
    }


async def _load_with_fault(
    running: FaultCluster, spec: WorkloadSpec, fault: RealFault, drain: float
) -> tuple[Any, Injection]:
    zero: list[float] = []

    async def ready() -> float:
        zero.append(time.perf_counter() + 0.2)  # the run's time zero, shared with the injector
        return zero[0]

    target = DtqTarget(running.clients, timeout=5.0, design=running.design)
    load = asyncio.create_task(run_load(target, spec, ready=ready, drain_timeout=drain))
    try:
        for _ in range(int(60 / POLL)):  # the trace is built before ready() is called
            if zero or load.done():
                break
            await asyncio.sleep(POLL)
        if not zero:
            await load  # raises what stopped it
            raise RuntimeError("the load generator never started")

        def now() -> float:
            return time.perf_counter() - zero[0]

        await asyncio.sleep(max(0.0, fault.at - now()))
        injection = await running.inject(fault, now)
        result = await load
    finally:
        if not load.done():
            load.cancel()
            with contextlib.suppress(BaseException):
                await load
        await target.close()
    return result, injection


async def run_fault(
    design: str,
    fault: RealFault,
    spec: WorkloadSpec,
    core: CoreConfig,
    *,
    store: str = "sqlite",
    slots: int = cluster.DEFAULT_TOTAL_SLOTS,
    drain: float = 15.0,
    settle: float = 30.0,
    runs_out: Path | None = None,
    run_id: str = "",
    workdir: Path | None = None,
    backend: Backend | None = None,
) -> FaultRun:
    """One fault run on a fresh cluster of `backend` (default: local processes under `workdir`; see
    the module docstring); the cluster is down on return."""
    chosen: Backend = backend or LocalBackend(workdir)
    run_id = run_id or (
        f"{chosen.run_prefix}-{design}-{fault.action}-{fault.target}-L{core.lease_duration:g}"
        f"-H{core.heartbeat_interval:g}-{spec.seed}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    )
    started_at = utc_now()
    progress(f"{run_id}: starting the cluster")
    async with chosen.open(design, fault, store, slots, overrides_for(core)) as running:
        progress(
            f"{run_id}: {spec.total_time:g} s of load, {fault.action} of {fault.target} at {fault.at:g} s"
        )
        result, injection = await _load_with_fault(running, spec, fault, drain)
        accepted = {r.job_id for r in result.requests if r.op is Op.SUBMIT and r.status == "OK"}
        progress(f"{run_id}: auditing {len(accepted)} accepted jobs (up to {settle:g} s for pending ones)")
        jobs = await read_cluster_jobs(running.clients, accepted, settle, running.client_security())
        described = running.describe()
    found = audit(result.requests, result.jobs, jobs, injection.injected_at, spec.total_time)
    run_dir = None
    if runs_out is not None:
        parameters = {
            "store": store,
            "total_slots": slots,
            "settings": overrides_for(core),
            "fault": asdict(fault),
            "injection": {k: v for k, v in asdict(injection).items() if k != "fault"},
            "cluster": described,
        }
        run_dir, _ = write_load_run(
            runs_out,
            run_id,
            result,
            spec,
            kind="real",
            design=design,
            parameters=parameters,
            started_at=started_at,
            provenance_info=provenance(),
        )
    return FaultRun(design, fault, core, store, run_id, injection, found, run_dir)
