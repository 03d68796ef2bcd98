"""`dtq sim`: simulate a workload on a design and write a run directory, or (`dtq sim faults`) the
lease x heartbeat fault sweep. `register` adds the command to the `dtq` entry point; a flag that
only the other mode reads is refused (`_check_mode`)."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from model.errors import InvalidArgument
from model.results.probe import probe_of, take_probe
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
from sim.hostscale import HostScale
from sim.injection import Fault
from sim.mva import format_prediction, predict
from sim.params import SimParams, load_host_probe, load_params, parse_override

# realsys.cli_common.PROGRESS_LOGGER (the simulator may not import realsys): `dtq` shows its lines on
# stderr unless --quiet
PROGRESS_LOGGER = "dtq.progress"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sim_action",
        nargs="?",
        choices=("run", "faults"),
        default="run",
        help="run (default): one workload; faults: the lease x heartbeat fault sweep (sim/faults.py)",
    )
    parser.add_argument("--design", choices=DESIGNS, required=True, help="A (micro) or B (mono)")
    parser.add_argument("--nodes", type=_count, default=0, help="Design B node count (0: the params')")
    parser.add_argument("--calibration", default="", help="a name under data/calibration/ or a JSON path")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter (sim.params keys)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="simulator seed (default: the workload's; faults: 1)"
    )
    run_flags = parser.add_argument_group("dtq sim run")
    run_flags.add_argument("--workload", default="", help="run: a .yaml/.toml workload (data/workloads/)")
    run_flags.add_argument("--replication", type=_count, default=0, help="run: replication index")
    run_flags.add_argument(
        "--runs-dir", default="data/runs", metavar="DIR", help="run: root of the run directories ('': none)"
    )
    run_flags.add_argument(
        "--run-id", default="", help="run: default sim-<design>-<workload>-<seed>-r<replication>"
    )
    run_flags.add_argument(
        "--no-records", action="store_true", help="run: write only config.json and summary.json"
    )
    run_flags.add_argument(
        "--mva", action="store_true", help="run: also print the analytic (sim/mva.py) prediction"
    )
    run_flags.add_argument(
        "--host-scale",
        default="",
        metavar="RUN|PROBE|auto",
        help="run: move the calibration's costs to a host's speed, as `dtq validate` moves a twin: a "
        "real run's directory (its `dtq load --host-probe`), a probe JSON file, or `auto` (probe this "
        "host now; needs the lab extra). Needs a --calibration that took host probes",
    )
    add_fault_arguments(parser)


def params_of(args: argparse.Namespace) -> SimParams:
    """The SimParams a `dtq sim` command line names: calibration, then --nodes and --set overrides,
    then --host-scale."""
    return scaled_params_of(args)[0]


def scaled_params_of(args: argparse.Namespace) -> tuple[SimParams, HostScale | None]:
    """params_of and the host scale it applied (None without --host-scale)."""
    params = load_params(args.calibration) if args.calibration else SimParams()
    overrides = dict(parse_override(s) for s in args.set)
    if args.nodes:
        overrides["nodes"] = args.nodes
    if overrides:
        params = params.with_overrides(overrides)
    source = getattr(args, "host_scale", "")
    if not source:
        return params, None
    if source == "auto" and getattr(args, "probe_taken", None) is None:
        args.probe_taken = take_probe()  # once per command: --mva asks for the params again
    probe = args.probe_taken if source == "auto" else probe_of(source)
    scale = host_scale(probe, args.calibration, args.design)
    return params.on_host(scale), scale


def host_scale(probe: dict[str, Any], calibration: str, design: str) -> HostScale:
    """The scale from `calibration`'s host probes (those taken with `design`'s cluster up) to the host
    `probe` describes (a run's, a probe file's, or one taken now)."""
    if not calibration:
        raise InvalidArgument("--host-scale needs --calibration (the speed it moves from)")
    reference = load_host_probe(calibration, design)
    if reference is None:
        raise InvalidArgument(f"calibration {calibration} took no host probes: it cannot be moved")
    return HostScale.between(probe, reference)


def mva_text(args: argparse.Namespace, summary: dict[str, Any] | None) -> str:
    """`dtq sim --mva`: the analytic prediction beside the simulator's summary."""
    return format_prediction(predict(args.design, load_workload(args.workload), params_of(args)), summary)


def sim_command(args: argparse.Namespace) -> tuple[dict[str, Any], Path | None]:
    """Runs one simulation from parsed `dtq sim` arguments; writes it when --out is set."""
    if not args.workload:
        raise InvalidArgument("`dtq sim run` needs --workload FILE")
    workload = load_workload(args.workload)
    params, scale = scaled_params_of(args)
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
    logging.getLogger(PROGRESS_LOGGER).info(f"simulating {config.effective_run_id}")
    result = run(config)
    if not args.runs_dir:
        return result.summary, None
    run_cfg = run_config(
        run_id=config.effective_run_id,
        kind="sim",
        design=config.design,
        workload=workload,
        parameters={
            "calibration": params.name,
            "sim_seed": config.sim_seed,
            "params": params.to_mapping(),
            "host_scale": None if scale is None else scale.to_mapping(),
        },
        replication=config.replication,
        started_at=started_at,
        provenance_info=provenance(),
    )
    path = write_run(
        args.runs_dir,
        config.effective_run_id,
        run_cfg,
        result.requests,
        result.jobs,
        result.summary,
        records=not args.no_records,
        overwrite=True,
    )
    return result.summary, path


def _count(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)  # ValueError: argparse says "invalid _count value"
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _seconds(text: str) -> float:
    """argparse type: seconds > 0, one value (a list goes to --leases / --heartbeats)."""
    try:
        value = float(text)
    except ValueError:
        hint = " (lists: --leases, --heartbeats)" if "," in text else ""
        raise argparse.ArgumentTypeError(f"expected one number of seconds > 0, got {text!r}{hint}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected one number of seconds > 0, got {text!r}")
    return value


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
    group.add_argument(
        "--leases", default="2,5,10", metavar="S,S,...", help="faults: lease durations (s) swept"
    )
    group.add_argument(
        "--heartbeats", default="0.5,1,2", metavar="S,S,...", help="faults: heartbeat intervals (s)"
    )
    group.add_argument(
        "--lease", type=_seconds, metavar="S", help="faults: one lease duration (s), not --leases"
    )
    group.add_argument(
        "--heartbeat", type=_seconds, metavar="S", help="faults: one heartbeat interval (s), not --heartbeats"
    )
    group.add_argument(
        "--fault", action="append", choices=["kill_worker", "pause"], help="faults: which (default both)"
    )
    group.add_argument("--target", default="", help="faults: process or node (default: worker / n1)")
    group.add_argument(
        "--fault-at", type=_seconds, default=8.0, help="faults: injection time (s from the run start)"
    )
    group.add_argument("--pause", type=_seconds, default=4.0, help="faults: pause length (s)")
    group.add_argument(
        "--downtime",
        type=_seconds,
        default=1.0,
        metavar="S",
        help="faults: kill_worker: seconds until it restarts",
    )
    group.add_argument("--restart-after", type=_seconds, help=argparse.SUPPRESS)  # deprecated: --downtime
    group.add_argument(
        "--clients",
        type=_count,
        help="faults: closed-loop waiting clients (default: one per slot; 0: --rate)",
    )
    group.add_argument(
        "--rate", type=_seconds, default=60.0, help="faults: Poisson submits/s when --clients 0"
    )
    group.add_argument("--job-duration", type=_seconds, default=0.1, help="faults: constant job duration (s)")
    group.add_argument(
        "--after", type=_seconds, default=25.0, help="faults: trace seconds after the injection"
    )
    group.add_argument(
        "--out", default="", metavar="FILE", help="faults: rows (default data/faults/sim-<design>.json)"
    )
    group.add_argument("--faults-out", help=argparse.SUPPRESS)  # deprecated: --out DIR/sim-<design>.json


def faults_command(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[FaultAudit], Path | None]:
    design: Design = args.design
    params = params_of(args)
    # the pause burst holds a core (see the module docstring): give every process its own
    procs = (params.nodes if design == "mono" else 6) + params.loadgen_processes
    params = replace(params, cores=max(params.cores, procs))
    target = args.target or default_target(design)
    chosen = args.fault or ["kill_worker", "pause"]
    faults = [
        Fault(at=args.fault_at, target=target, action="kill_worker", restart_after=args.downtime)
        if action == "kill_worker"
        else Fault(at=args.fault_at, target=target, action="pause", duration=args.pause)
        for action in chosen
    ]
    seed = 1 if args.seed is None else args.seed
    clients = params.slots if args.clients is None else args.clients
    workload = fault_workload(args.rate, args.job_duration, args.fault_at - 2.0 + args.after, seed, clients)
    leases = [args.lease] if args.lease else _floats(args.leases)
    heartbeats = [args.heartbeat] if args.heartbeat else _floats(args.heartbeats)
    out = Path(args.out or Path(args.faults_out or "data/faults") / f"sim-{design}.json")
    if not (args.out or args.faults_out) and out.exists():  # the committed rows: only when named
        raise InvalidArgument(f"{out} exists: give --out FILE for new rows, or --out {out} to replace them")
    log = logging.getLogger(PROGRESS_LOGGER)
    runs = len(faults) * sum(h < lease for lease in leases for h in heartbeats)
    started = iter(range(1, runs + 1))
    rows, audits = sweep(
        design,
        leases,
        heartbeats,
        faults,
        workload,
        params,
        lambda run_id: log.info(f"{next(started)}/{runs}: {run_id}"),
    )
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


def _check_mode(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """InvalidArgument for a flag given that only another mode reads (the modes' argument groups are
    titled "dtq sim MODE"); then the deprecated spellings, said on stderr."""
    chosen = f"dtq sim {args.sim_action}"
    for group in parser._action_groups:
        if not (group.title or "").startswith("dtq sim ") or group.title == chosen:
            continue  # the flags of every mode, or of the chosen one
        for action in group._group_actions:
            if getattr(args, action.dest) not in (action.default, None):
                flag = action.option_strings[-1]
                hint = " (a run's directory root is --runs-dir)" if flag == "--out" else ""
                raise InvalidArgument(f"{flag} is for `{group.title}`; `{chosen}` does not read it{hint}")
    if args.faults_out is not None:
        print("dtq sim: --faults-out DIR is deprecated: use --out DIR/sim-<design>.json", file=sys.stderr)
        if args.out:
            raise InvalidArgument("give --out FILE, not --faults-out as well")
    if args.restart_after is not None:
        print("dtq sim: --restart-after is deprecated: use --downtime", file=sys.stderr)
        args.downtime = args.restart_after


def _sim(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    _check_mode(args, parser)
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
    p.set_defaults(handler=lambda args: _sim(args, p))
