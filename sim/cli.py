"""`dtq sim`: simulate a workload on a design and write a run directory; `dtq sim params` lists every
parameter key with its value, unit and source; `dtq sim sweep FILE` runs a sweep file (sim/sweeps.py);
`dtq sim faults` the lease x heartbeat fault sweep. `register` adds the command to the `dtq` entry
point. Bad input (keys, values, paths) is a one-line error and a non-zero exit."""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from model.errors import InvalidArgument
from model.results.runs import fresh_path, load_workload, run_exists
from model.results.summary import format_summary
from model.workload import workload_from_mapping
from sim.api import DESIGNS, Design, PlaceholderWarning, SimConfig, placeholder_text, run
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
from sim.keys import KEYS, design_check
from sim.mva import format_prediction, predict
from sim.params import SimParams, calibration_path, load_params, parse_override
from sim.sweeps import DEFAULT_METRICS
from sim.sweeps import sweep as run_sweep

ACTIONS = ("run", "params", "sweep", "faults")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "sim_action",
        nargs="?",
        choices=ACTIONS,
        default="run",
        help="run (default): one workload; params: every parameter key, its value and source; "
        "sweep FILE: a sweep file; faults: the lease x heartbeat fault sweep (sim/faults.py)",
    )
    parser.add_argument("sweep_file", nargs="?", default="", help="sweep: the sweep file (.yaml)")
    parser.add_argument("--design", choices=DESIGNS, help="micro (Design A) or mono (Design B)")
    parser.add_argument("--workload", default="", help="a .yaml/.toml workload (data/workloads/)")
    parser.add_argument("--nodes", type=int, default=0, help="Design B node count (default: params)")
    parser.add_argument("--calibration", default="", help="a name under data/calibration/ or a JSON path")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter (`dtq sim params` lists the keys; sim/README.md their meanings)",
    )
    parser.add_argument("--seed", type=int, default=None, help="simulator seed (default: the workload's)")
    parser.add_argument("--replication", type=int, default=0)
    parser.add_argument("--out", default="data/runs", help="runs root directory ('' to not write)")
    parser.add_argument("--run-id", default="")
    parser.add_argument("--force", action="store_true", help="replace an existing run or output file")
    parser.add_argument("--no-records", action="store_true", help="write only config.json and summary.json")
    parser.add_argument("--mva", action="store_true", help="also print the analytic (sim/mva.py) prediction")
    parser.add_argument("--json", action="store_true", help="params: JSON instead of a table")
    group = parser.add_argument_group("dtq sim sweep")
    group.add_argument("--workers", type=int, default=0, help="sweep: local processes (default: cores)")
    group.add_argument("--address", default="", help="sweep: a Dask scheduler, tcp://HOST:PORT")
    group.add_argument("--table", default="", help="sweep: write the tidy table to this CSV file")
    add_fault_arguments(parser)


def _design(args: argparse.Namespace) -> Design:
    if not args.design:
        raise InvalidArgument(f"dtq sim {args.sim_action} needs --design micro|mono")
    design: Design = args.design
    return design


def _calibration(name: str) -> SimParams:
    path = calibration_path(name)
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.json")) if path.parent.is_dir() else []
        hint = f" (in {path.parent}: {', '.join(known)})" if known else ""
        raise InvalidArgument(f"no calibration {name!r}: {path} is not a file{hint}")
    return load_params(path)


def params_of(args: argparse.Namespace) -> SimParams:
    """The SimParams a `dtq sim` command line names: calibration, then --nodes and --set overrides
    (in order), checked against --design when given."""
    params = _calibration(args.calibration) if args.calibration else SimParams()
    overrides = dict(parse_override(s) for s in args.set)
    if args.nodes:
        overrides["nodes"] = args.nodes
    if overrides:
        params = params.with_overrides(overrides)
    if args.design:
        params.check_design(args.design)
    return params


def warn_placeholders(params: SimParams, design: str) -> None:
    """The placeholder costs' warning block on stderr (nothing when every cost was measured)."""
    text = placeholder_text(params, design)
    if text:
        print(text, file=sys.stderr)


def _workload(path: str) -> Any:
    if not path:
        raise InvalidArgument("dtq sim needs --workload FILE (data/workloads/ has examples)")
    if not Path(path).is_file():
        raise InvalidArgument(f"--workload {path}: not a file")
    return load_workload(path)


def mva_text(args: argparse.Namespace, summary: dict[str, Any] | None) -> str:
    """`dtq sim --mva`: the analytic prediction beside the simulator's summary."""
    return format_prediction(predict(_design(args), _workload(args.workload), params_of(args)), summary)


def sim_command(args: argparse.Namespace) -> tuple[dict[str, Any], Path | None]:
    """Runs one simulation from parsed `dtq sim` arguments; writes it when --out is set (an existing
    run of the same id only with --force)."""
    design = _design(args)
    workload = _workload(args.workload)
    params = params_of(args)
    config = SimConfig(
        design=design,
        workload=workload,
        params=params,
        seed=args.seed,
        replication=args.replication,
        name=Path(args.workload).stem,
        run_id=args.run_id,
    )
    if args.out and run_exists(args.out, config.effective_run_id) and not args.force:
        raise InvalidArgument(
            f"run {Path(args.out) / config.effective_run_id} exists: --force replaces it, --run-id names "
            "another"
        )
    warn_placeholders(params, design)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlaceholderWarning)  # printed above, once
        result = run(config)
    if not args.out:
        return result.summary, None
    path = result.save(args.out, records=not args.no_records, overwrite=args.force)
    return result.summary, path


# ---------------------------------------------------------------------------- dtq sim params
def params_rows(params: SimParams, calibration: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Every key (sim/keys.py): value, unit, source, the designs that read it, what it is."""
    return [
        {
            "key": name,
            "value": params.value_text(name),
            "unit": key.unit,
            "source": params.source(name, calibration),
            "designs": "+".join("A" if d == "micro" else "B" for d in key.designs),
            "about": key.doc + (" (label: recorded, read by no design)" if key.label else ""),
        }
        for name, key in KEYS.items()
    ]


def params_command(args: argparse.Namespace) -> int:
    params = params_of(args)
    doc = json.loads(calibration_path(args.calibration).read_text()) if args.calibration else None
    rows = params_rows(params, doc)
    if args.design:
        rows = [r for r in rows if ("A" if args.design == "micro" else "B") in r["designs"]]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{'key':<36} {'value':<64} {'unit':<9} {'source':<11} designs")
        for r in rows:
            print(f"{r['key']:<36} {r['value']:<64} {r['unit']:<9} {r['source']:<11} {r['designs']}")
        counts: dict[str, int] = {}
        for r in rows:
            counts[r["source"]] = counts.get(r["source"], 0) + 1
        print(f"{len(rows)} keys ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))}); calibration "
              f"{params.name!r}. Meanings of overrides (X.scale, X.shift, ...): sim/README.md")  # fmt: skip
    return 0


# ---------------------------------------------------------------------------- dtq sim sweep FILE
SWEEP_KEYS = frozenset(
    {
        "design",
        "workload",
        "calibration",
        "set",
        "grid",
        "replications",
        "metrics",
        "seed",
        "name",
        "warm_start",
    }
)


def load_sweep(path: Path) -> dict[str, Any]:
    """A sweep file: {design, workload (a file, relative to the sweep file, or a mapping), calibration,
    set (base overrides), grid, replications, metrics}; checked, nothing run."""
    if not path.is_file():
        raise InvalidArgument(f"sweep file {path}: no such file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, Mapping):
        raise InvalidArgument(f"{path}: a sweep file holds one mapping")
    unknown = sorted(set(data) - SWEEP_KEYS)
    if unknown:
        raise InvalidArgument(f"{path}: unknown keys {unknown} (known: {', '.join(sorted(SWEEP_KEYS))})")
    for key in ("design", "workload", "grid"):
        if key not in data:
            raise InvalidArgument(f"{path}: needs {key}")
    return dict(data)


def sweep_command(args: argparse.Namespace) -> int:
    if not args.sweep_file:
        raise InvalidArgument("dtq sim sweep needs a sweep file (dtq sim sweep FILE.yaml)")
    path = Path(args.sweep_file)
    spec = load_sweep(path)
    raw = spec["workload"]
    if isinstance(raw, str):
        wl_path = (
            (path.parent / raw) if not Path(raw).is_absolute() and not Path(raw).is_file() else Path(raw)
        )
        workload = _workload(str(wl_path))
        name = wl_path.stem
    else:
        workload = workload_from_mapping(raw)
        name = str(spec.get("name", path.stem))
    params = _calibration(str(spec["calibration"])) if spec.get("calibration") else SimParams()
    base_set = spec.get("set") or {}
    if not isinstance(base_set, Mapping):
        raise InvalidArgument(f"{path}: set must be a mapping of key -> value")
    params = params.with_overrides(base_set)
    base = SimConfig(spec["design"], workload, params, seed=spec.get("seed"), name=name)
    grid = spec["grid"]
    if isinstance(grid, Mapping):
        design_check([k for k in grid if k != "design" and not k.startswith("workload.")],
                     grid.get("design", [base.design]))  # fmt: skip
    table_path = Path(args.table) if args.table else None
    metrics = spec.get("metrics") or DEFAULT_METRICS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PlaceholderWarning)
        df = run_sweep(
            base,
            grid,
            int(spec.get("replications", 5)),
            metrics=metrics,
            workers=args.workers or None,
            address=args.address,
        )
    for text in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, PlaceholderWarning)):
        print(text, file=sys.stderr)
    print(format_sweep(df))
    if table_path is not None:
        table_path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(table_path, index=False)
        print(f"table written to {table_path}")
    return 0


def format_sweep(df: Any) -> str:
    """One line per point and metric: the mean and its confidence interval over the replications."""
    keys = [c for c in df.columns if c not in ("point", "replication", "seed", "sim_seed", "metric",
                                                "value", "mean", "ci_low", "ci_high", "n")]  # fmt: skip
    firsts = df[df["replication"] == df["replication"].min()]
    lines = []
    for _, row in firsts.iterrows():
        point = " ".join(f"{k}={row[k]}" for k in keys)
        lines.append(
            f"{point:<50} {row['metric']:<28} {row['mean']:>11.4g} "
            f"[{row['ci_low']:.4g}, {row['ci_high']:.4g}] n={row['n']}"
        )
    return "\n".join(lines)


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
    group.add_argument(
        "--faults-out",
        default="data/faults",
        help="faults: writes <dir>/sim-<design>.json (when it exists: a new file beside it, unless --force)",
    )


def faults_command(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[FaultAudit], Path | None]:
    design = _design(args)
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
    out = fresh_path(Path(args.faults_out) / f"sim-{design}.json", args.force)
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
    if args.sweep_file and args.sim_action != "sweep":
        raise InvalidArgument(f"dtq sim {args.sim_action}: unexpected argument {args.sweep_file!r}")
    if args.sim_action == "params":
        return params_command(args)
    if args.sim_action == "sweep":
        return sweep_command(args)
    if args.sim_action == "faults":
        warn_placeholders(params_of(args), _design(args))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlaceholderWarning)  # printed above, once
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


def one_line_errors(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """File system and parse errors of the command's own inputs as one line (InvalidArgument)."""

    @functools.wraps(handler)
    def wrapped(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except BrokenPipeError:  # `dtq sim params | head`: the reader left; not an error of ours
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return 0
        except (IsADirectoryError, PermissionError, NotADirectoryError, UnicodeDecodeError) as exc:
            raise InvalidArgument(str(exc)) from None
        except json.JSONDecodeError as exc:
            raise InvalidArgument(f"not JSON: {exc}") from None
        except yaml.YAMLError as exc:
            raise InvalidArgument(f"not YAML: {str(exc).splitlines()[0]}") from None

    return wrapped


def register(sub: Any) -> None:
    """`dtq sim` (run, params, sweep, faults) on the `dtq` command's subparsers."""
    p = sub.add_parser(
        "sim", help="simulate a workload on a design (run), list parameters (params), sweep, faults"
    )
    add_arguments(p)
    p.set_defaults(handler=one_line_errors(_sim))
