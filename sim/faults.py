"""The simulator's fault sweep: each fault (sim/injection.py) at each lease x heartbeat setting, and
its audit (model/audit.py, the definitions the real auditor imports): accepted submits, lost jobs
(accepted, never terminal by the hard end), duplicates (jobs whose execution started more than
once), fenced late reports, recovery time and unavailable time. `dtq sim faults` (sim/cli.py) runs it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from model.audit import recovery_time, unavailable_time
from model.config import CoreConfig
from model.results.schema import JobRecord, RequestRecord
from model.states import TERMINAL
from model.workload import ClosedLoop, Distribution, OpenLoop, RequestMix, WorkloadSpec
from sim.api import Design, SimConfig, SimResult, run
from sim.injection import Fault
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
# The fault scenario's defaults, one place for the simulated (`dtq sim faults`) and the real (`dtq faults
# run`) runs so that their rows compare: injection time (s from the run start), pause length (s), the
# Poisson submit rate when no closed loop is asked for, and the constant job duration (s)
FAULT_AT = 8.0
PAUSE = 4.0
RATE = 60.0
JOB_DURATION = 0.1


def add_scenario_flags(
    add: Callable[..., Any], number: Callable[[str], float], count: Callable[[str], int], prefix: str = ""
) -> None:
    """The scenario's flags that `dtq sim faults` and `dtq faults run` share, with the defaults above:
    `add` is a parser's or an argument group's add_argument; `number`/`count` parse seconds and rates /
    client counts; `prefix` starts each help text."""
    add(
        "--fault-at",
        type=number,
        default=FAULT_AT,
        metavar="S",
        help=f"{prefix}injection time (s from the run start)",
    )
    add("--pause", type=number, default=PAUSE, metavar="S", help=f"{prefix}stop/pause: seconds paused")
    add(
        "--clients",
        type=count,
        help=f"{prefix}closed-loop waiting clients (default: one per slot; 0: --rate)",
    )
    add("--rate", type=number, default=RATE, help=f"{prefix}Poisson submits/s when --clients 0")
    add(
        "--job-duration",
        type=number,
        default=JOB_DURATION,
        metavar="S",
        help=f"{prefix}constant job duration (s)",
    )


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
    on_run: Callable[[str], None] = lambda run_id: None,
) -> tuple[list[dict[str, Any]], list[FaultAudit]]:
    """One run per (fault, lease, heartbeat) with heartbeat < lease; rows in that order. `on_run`
    hears each run's id as it starts (`dtq sim faults`' progress lines)."""
    rows, audits = [], []
    for fault in faults:
        for lease in leases:
            for heartbeat in heartbeats:
                if heartbeat >= lease:
                    continue  # CoreConfig refuses it: the lease would lapse between heartbeats
                core = core_for(params.core, lease, heartbeat)
                run_id = f"sim-faults-{design}-{fault.action}-L{lease:g}-H{heartbeat:g}-{workload.seed}"
                on_run(run_id)
                config = SimConfig(
                    design, workload, replace(params, core=core), faults=(fault,), run_id=run_id
                )
                result = run(config)
                found = audit_result(result)
                rows.append(row(design, fault, core, params.store, run_id, found))
                audits.append(found)
    return rows, audits


def point_cells(row: Mapping[str, Any]) -> list[Any]:
    """A row's first columns in a fault table: the point and what was accepted and lost."""
    return [row[k] for k in ("design", "fault", "target", "lease_s", "heartbeat_s", "accepted", "lost")]


def recovery_text(row: Mapping[str, Any]) -> str:
    """A row's recovery time for a terminal: 'never' when the rate never came back."""
    return "never" if row["recovery_s"] is None else f"{row['recovery_s']:.1f}"


def fault_table(columns: Sequence[tuple[str, str]], rows: Iterable[Sequence[Any]]) -> str:
    """Fault rows as fixed-width text (`dtq sim faults`, `dtq faults run`): each column is (header,
    format spec of its values); a header takes its spec's width, right-aligned over numbers."""
    head = []
    for header, spec in columns:
        width = re.match(r"[<>]?(\d+)", spec)
        right = spec.startswith(">") or spec[-1] in "dfg"
        head.append(f"{header:{'>' if right else '<'}{width.group(1) if width else ''}}")
    lines = [" ".join(head)]
    lines += [" ".join(f"{v:{spec}}" for v, (_, spec) in zip(row, columns, strict=True)) for row in rows]
    return "\n".join(lines)
