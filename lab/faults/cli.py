"""`dtq faults run`: one fault injected under load into a real cluster, then an audit.

Each run starts a fresh cluster from a BACKEND: `local` (default), six processes (realsys.cluster), or
`compose`, six containers of one Compose project (docker/compose.<design>.yml, see `ComposeBackend`).
Both use the durable sqlite store by default. The run drives it with the project's load generator
(realsys.loadgen.run_load) on sim/faults.py's `fault_workload` (submits only, constant short jobs; by
default one closed-loop waiting client per worker slot, as `dtq sim faults` does), and injects ONE
fault `--fault-at` seconds after the run start (the local backend's mechanism first):

Rows use sim/faults.py's ROW_KEYS (so data/faults/real-D.json and compose-D.json line up with
sim-D.json) and go to `--out`; a CSV beside it adds the extra columns. Every wait is bounded in count
and time.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab.faults.backends import Backend, LocalBackend
from lab.faults.compose import ComposeBackend
from lab.faults.inject import FAULTS, RealFault, plan_faults
from lab.faults.run import FaultRun, run_fault
from model.config import CoreConfig
from model.errors import InvalidArgument
from model.results.runs import fresh_path, output_file
from model.workload import WorkloadSpec
from realsys import cluster
from realsys.cli_common import (
    deprecated_alias,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
    progress,
)
from sim import faults as sim_faults
from sim.faults import ROW_KEYS, core_for, fault_table, fault_workload, point_cells, recovery_text

REAL_COLUMNS = (
    ("design", "6"),
    ("fault", "9"),
    ("target", "11"),
    ("lease", "5g"),
    ("hb", "4g"),
    ("accepted", "8d"),
    ("lost", "4d"),
    ("unfin", "5d"),
    ("failed", "6d"),
    ("dup", "4d"),
    ("recov_s", ">7"),
    ("unavail_s", "9.1f"),
    ("restart_s", "9.2f"),
)


def format_runs(runs: Sequence[FaultRun]) -> str:
    rows = []
    for run in runs:
        r, f = run.row(), run.found
        rows.append(
            [
                *point_cells(r),
                *(f.unfinished, f.failed, r["duplicates"], recovery_text(r), r["unavailable_s"]),
                run.injection.restart_s,
            ]
        )
    return fault_table(REAL_COLUMNS, rows)


def write_rows(runs: Sequence[FaultRun], out: Path, append: bool = False) -> Path:
    """The JSON rows to `out` and the same rows plus the extra columns to `out` with .csv; with
    `append`, after the rows those files already hold (one locked measurement per invocation)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    table = out.with_suffix(".csv")
    rows: list[dict[str, Any]] = []
    lines: list[list[Any]] = []
    extra_keys = list(runs[0].extra()) if runs else []
    if append and out.exists():
        rows = list(json.loads(out.read_text()))
    if append and table.exists():
        with table.open(newline="") as f:
            old = list(csv.reader(f))
        if old and old[0] != [*ROW_KEYS, *extra_keys]:
            raise InvalidArgument(f"{table} has other columns: not appending to it")
        lines = old[1:]
    rows += [r.row() for r in runs]
    lines += [[*(r.row()[k] for k in ROW_KEYS), *(r.extra()[k] for k in extra_keys)] for r in runs]
    out.write_text(json.dumps(rows, indent=1) + "\n")
    with table.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([*ROW_KEYS, *extra_keys])
        writer.writerows(lines)
    return table


def add_parser(sub: Any) -> None:
    """`dtq faults run` (sub is the dtq command's subparsers object)."""
    p = sub.add_parser("faults", help="fault injection under load into a real cluster, and an audit")
    fsub = p.add_subparsers(dest="faults_command", required=True)
    r = fsub.add_parser("run", help="one run per (fault, target); rows to --out (ROW_KEYS of sim/faults.py)")
    r.add_argument("--design", choices=["micro", "mono"], required=True, help="A (micro) or B (mono)")
    r.add_argument(
        "--backend",
        choices=["local", "compose"],
        default="local",
        help="local processes or Compose containers",
    )
    r.add_argument("--image", default="dtq:latest", help="compose: the dtq image to run (not built here)")
    r.add_argument("--project", default="", help="compose: project name (default dtq-faults-<design>)")
    r.add_argument("--store", choices=["sqlite", "memory"], default="sqlite", help="where jobs are kept")
    r.add_argument("--faults", default="kill,stop", help=f"comma-separated, of {','.join(FAULTS)}")
    r.add_argument(
        "--targets",
        default="",
        help="comma-separated node names, or FAULT:NAME for one fault (default: per fault)",
    )
    r.add_argument(
        "--out",
        default="",
        metavar="FILE",
        help="JSON rows (default data/faults/real-<design>.json; compose: compose-<design>.json; when "
        "the default exists, a new file beside it unless --force or --append)",
    )
    r.add_argument("--append", action="store_true", help="add the rows to --out's instead of replacing")
    r.add_argument("--force", action="store_true", help="replace the default --out when it exists")
    r.add_argument(
        "--runs-dir", default="data/runs", metavar="DIR", help="root of the run directories ('': none)"
    )
    deprecated_alias(r, "--runs-out", "--runs-dir", "runs_dir")
    r.add_argument("--lease", type=positive_float, default=5.0, metavar="S", help="lease duration (s)")
    r.add_argument(
        "--heartbeat", type=positive_float, default=1.0, metavar="S", help="heartbeat interval (s)"
    )
    r.add_argument(
        "--after", type=positive_float, default=10.0, metavar="S", help="trace seconds after the injection"
    )
    r.add_argument(
        "--downtime", type=non_negative_float, default=2.0, metavar="S", help="kill/restart: seconds down"
    )
    r.add_argument("--cut", type=positive_float, default=4.0, metavar="S", help="partition: seconds cut off")
    sim_faults.add_scenario_flags(r.add_argument, positive_float, non_negative_int)
    r.add_argument(
        "--slots", type=positive_int, default=cluster.DEFAULT_TOTAL_SLOTS, help="total worker slots"
    )
    r.add_argument("--seed", type=int, default=1, help="the workload's seed")
    r.add_argument(
        "--drain", type=non_negative_float, default=15.0, metavar="S", help="load generator drain timeout (s)"
    )
    r.add_argument(
        "--settle",
        type=non_negative_float,
        default=30.0,
        metavar="S",
        help="auditor: wait for pending jobs (s)",
    )
    r.set_defaults(handler=faults_command)


def run_with_flags(
    args: argparse.Namespace,
    fault: RealFault,
    spec: WorkloadSpec,
    core: CoreConfig,
    backend: Backend,
    **extra: Any,
) -> FaultRun:
    """One run_fault with the flags the fault front ends share: --design, --slots, --drain, --settle and
    --runs-dir ('': no run directories); `extra` are run_fault's other keywords."""
    runs_out = Path(args.runs_dir) if args.runs_dir else None
    return asyncio.run(
        run_fault(
            args.design,
            fault,
            spec,
            core,
            slots=args.slots,
            drain=args.drain,
            settle=args.settle,
            runs_out=runs_out,
            backend=backend,
            **extra,
        )
    )


def faults_command(args: argparse.Namespace) -> int:
    actions = [a.strip() for a in args.faults.split(",") if a.strip()]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()] or None
    faults = plan_faults(args.design, actions, targets, args.fault_at, args.downtime, args.pause, args.cut)
    if args.fault_at < 2.0 + 5.0:  # warm-up, then model/audit.py's 5 s baseline before the fault
        raise InvalidArgument("--fault-at must be >= 7 s (2 s warm-up + the 5 s recovery baseline)")
    core = core_for(CoreConfig(), args.lease, args.heartbeat)
    clients = args.slots if args.clients is None else args.clients
    spec = fault_workload(args.rate, args.job_duration, args.fault_at - 2.0 + args.after, args.seed, clients)
    backend: Backend = (
        ComposeBackend(image=args.image, project=args.project)
        if args.backend == "compose"
        else LocalBackend()
    )
    default = Path(f"data/faults/{'compose' if args.backend == 'compose' else 'real'}-{args.design}.json")
    # a file the user named is theirs to replace; the default is committed data: a new file beside it
    out = output_file(
        Path(args.out) if args.out else fresh_path(default, args.force or args.append), beside=".csv"
    )
    runs: list[FaultRun] = []
    for number, fault in enumerate(faults, 1):
        progress(
            f"run {number}/{len(faults)}: {fault.action} of {fault.target} ({args.design}, {args.backend})"
        )
        run = run_with_flags(args, fault, spec, core, backend, store=args.store)
        runs.append(run)
        progress(format_runs([run]).splitlines()[-1])  # the table on stdout follows at the end
    print(format_runs(runs))
    table = write_rows(runs, out, args.append)
    print(f"rows written to {out} and {table}")
    return 0
