"""`dtq sim`: simulate a workload on a design and write a run directory, or (`dtq sim faults`) the
lease x heartbeat fault sweep. `register` adds the command to the `dtq` entry point."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from model.errors import InvalidArgument
from model.results.runs import load_workload, provenance, run_config, utc_now, write_run
from model.results.summary import format_summary
from sim.api import DESIGNS, Design, SimConfig, run
from sim.faults import (
    FaultAudit,
    default_target,
    fault_table,
    fault_workload,
    point_cells,
    recovery_text,
    sweep,
)
from sim.injection import Fault
from sim.mva import format_prediction, predict
from sim.params import SimParams, load_params, parse_override


def add_arguments(parser: argparse.ArgumentParser) -> None:
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
    return format_prediction(predict(args.design, load_workload(args.workload), params_of(args)), summary)


def sim_command(args: argparse.Namespace) -> tuple[dict[str, Any], Path | None]:
    """Runs one simulation from parsed `dtq sim` arguments; writes it when --out is set."""
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


def _floats(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise InvalidArgument(f"expected comma-separated seconds, got {text!r}") from exc
    if not values or not all(math.isfinite(v) and v > 0 for v in values):
        raise InvalidArgument(f"expected positive seconds, got {text!r}")
    return values


def add_fault_arguments(parser: argparse.ArgumentParser) -> None:
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


SIM_COLUMNS = (
    ("design", "6"),
    ("fault", "11"),
    ("target", "6"),
    ("lease", "5g"),
    ("hb", "4g"),
    ("accepted", "8d"),
    ("lost", "4d"),
    ("dup", "4d"),
    ("fenced", "6d"),
    ("recov_s", ">7"),
    ("unavail_s", "9.1f"),
)


def format_rows(rows: Sequence[dict[str, Any]], audits: Sequence[FaultAudit]) -> str:
    return fault_table(
        SIM_COLUMNS,
        (
            [
                *point_cells(r),
                *(r["duplicates"], a.fenced, recovery_text(r), r["unavailable_s"]),
            ]
            for r, a in zip(rows, audits, strict=True)
        ),
    )


def _sim(args: argparse.Namespace) -> int:
    if args.sim_action == "faults":
        rows, audits, written = faults_command(args)
        print(format_rows(rows, audits))
        if written is not None:
            print(f"rows written to {written}")
        return 0
    summary, path = sim_command(args)
    print(format_summary(summary))
    if args.mva:
        print(mva_text(args, summary))
    if path is not None:
        print(f"run written to {path}")
    return 0


def register(sub: Any) -> None:
    """`dtq sim` (run and faults) on the `dtq` command's subparsers."""
    p = sub.add_parser("sim", help="simulate a workload on a design; write a run directory")
    add_arguments(p)
    p.set_defaults(handler=_sim)
