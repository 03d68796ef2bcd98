"""`dtq sim`: simulate a workload on a design and write a run directory (run); list every parameter key
with its value, unit and source (params); run a sweep file (sweep FILE, sim/sweeps.py); or the lease x
heartbeat fault sweep (faults). `dtq plan`: the capacity planner (sim/plan.py). `register` adds both
commands to the `dtq` entry point; a flag that only another mode reads is refused (`_check_mode`). Bad
keys, values and paths are one-line errors (realsys' `dtq` prints them)."""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from model.errors import InvalidArgument
from model.ids import parse_job_id
from model.results.documents import read_document
from model.results.probe import probe_of, take_probe
from model.results.runs import CONFIG_FILE, fresh_path, json_bytes, load_workload, output_file, run_exists
from model.results.summary import format_summary
from model.workload import workload_from_mapping
from sim import faults as sim_faults
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
from sim.hostscale import HostScale
from sim.injection import Fault
from sim.keys import KEYS, design_check
from sim.mva import format_prediction, predict
from sim.params import SimParams, calibration_path, load_host_probe, load_params, parse_override
from sim.plan import DEFAULT_MAX_NODES, DEFAULT_SLOTS, parse_slo, plan
from sim.sweeps import DEFAULT_METRICS
from sim.sweeps import sweep as run_sweep

# realsys.cli_common.PROGRESS_LOGGER (the simulator may not import realsys): `dtq` shows its lines on
# stderr unless --quiet
PROGRESS_LOGGER = "dtq.progress"
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
    parser.add_argument("--design", choices=DESIGNS, help="A (micro) or B (mono) (run and faults need it)")
    parser.add_argument("--nodes", type=_count, default=0, help="Design B node count (0: the params')")
    parser.add_argument("--calibration", default="", help="a name under data/calibration/ or a JSON path")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter (`dtq sim params` lists the keys; sim/README.md what each means)",
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="simulator seed (default: the workload's; faults: 1)"
    )
    parser.add_argument(
        "--force", action="store_true", help="run: replace an existing run; faults: the default rows file"
    )
    run_flags = parser.add_argument_group("dtq sim run")
    run_flags.add_argument("--workload", default="", help="run: a .yaml/.toml workload (data/workloads/)")
    run_flags.add_argument("--replication", type=_count, default=0, help="run: replication index")
    run_flags.add_argument(
        "--runs-dir", default="data/runs", metavar="DIR", help="run: root of the run directories ('': none)"
    )
    run_flags.add_argument(
        "--run-id",
        default="",
        help="run: default sim-<design>-<workload>[-w<overrides hash>]-<seed>-r<replication>",
    )
    run_flags.add_argument(
        "--no-records", action="store_true", help="run: write only config.json and summary.json"
    )
    run_flags.add_argument(
        "--mva", action="store_true", help="run: also print the analytic (sim/mva.py) prediction"
    )
    run_flags.add_argument(
        "--trace-job",
        action="append",
        type=_trace_job,
        default=None,
        metavar="N|JOB_ID",
        help="run: record the per-hop spans of the Nth submitted job (1 = the first) or of a job id, in "
        "RUN/spans.jsonl (repeatable; read with `dtq trace --file` / `--compare`)",
    )
    run_flags.add_argument(
        "--trace-jobs",
        type=_count,
        default=0,
        metavar="K",
        help="run: record the per-hop spans of the first K submitted jobs (RUN/spans.jsonl)",
    )
    run_flags.add_argument(
        "--host-scale",
        default="",
        metavar="RUN|PROBE|auto",
        help="run: move the calibration's costs to a host's speed, as `dtq validate` moves a twin: a "
        "real run's directory (its `dtq load --host-probe`), a probe JSON file, or `auto` (probe this "
        "host now; needs the lab extra). Needs a --calibration that took host probes",
    )
    params_flags = parser.add_argument_group("dtq sim params")
    params_flags.add_argument("--json", action="store_true", help="params: JSON instead of a table")
    sweep_flags = parser.add_argument_group("dtq sim sweep")
    sweep_flags.add_argument("--workers", type=_count, default=0, help="sweep: local processes (0: cores)")
    sweep_flags.add_argument("--address", default="", help="sweep: a Dask scheduler, tcp://HOST:PORT")
    sweep_flags.add_argument("--table", default="", metavar="FILE", help="sweep: write the tidy table (CSV)")
    add_fault_arguments(parser)


def _design(args: argparse.Namespace) -> Design:
    if not args.design:
        raise InvalidArgument(f"dtq sim {args.sim_action} needs --design micro|mono")
    design: Design = args.design
    return design


def _calibration(name: str) -> SimParams:
    path = calibration_path(name)
    if Path(name).is_dir():  # not <name>.json beside it, nor a listing of its parent
        raise InvalidArgument(f"--calibration {name}: a directory; give a calibration's name or .json file")
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.json")) if path.parent.is_dir() else []
        hint = f" (in {path.parent}: {', '.join(known)})" if known else ""
        raise InvalidArgument(f"no calibration {name!r}: {path} is not a file{hint}")
    return load_params(path)


def params_of(args: argparse.Namespace) -> SimParams:
    """The SimParams a `dtq sim` command line names: calibration, then --nodes and --set overrides
    (in order), checked against --design when given, then --host-scale."""
    return scaled_params_of(args)[0]


def scaled_params_of(args: argparse.Namespace) -> tuple[SimParams, HostScale | None]:
    """params_of and the host scale it applied (None without --host-scale)."""
    params = _calibration(args.calibration) if args.calibration else SimParams()
    overrides: dict[str, Any] = {}
    for text in args.set:
        key, value = parse_override(text)
        if key in overrides:  # a dict would keep the last one and drop the first without a word
            raise InvalidArgument(f"--set {key}: given twice ({overrides[key]!r} and {value!r})")
        overrides[key] = value
    if args.nodes:
        overrides["nodes"] = args.nodes
    if overrides:
        params = params.with_overrides(overrides)
    if args.design:
        params.check_design(args.design)
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


def warn_placeholders(params: SimParams, design: str) -> None:
    """The placeholder costs' warning block on stderr (nothing when every cost was measured)."""
    text = placeholder_text(params, design)
    if text:
        print(text, file=sys.stderr)


def _workload(path: str) -> Any:
    if not path:
        raise InvalidArgument("dtq sim needs --workload FILE (data/workloads/ has examples)")
    if not Path(path).exists():
        raise InvalidArgument(f"--workload {path}: No such file")
    if not Path(path).is_file():
        raise InvalidArgument(f"--workload {path}: not a file")
    return load_workload(path)


def mva_text(args: argparse.Namespace, summary: dict[str, Any] | None) -> str:
    """`dtq sim --mva`: the analytic prediction beside the simulator's summary."""
    return format_prediction(predict(_design(args), _workload(args.workload), params_of(args)), summary)


def sim_command(args: argparse.Namespace) -> tuple[dict[str, Any], Path | None]:
    """Runs one simulation from parsed `dtq sim` arguments; writes it when --runs-dir is set (an
    existing run of the same id only with --force)."""
    design = _design(args)
    workload = _workload(args.workload)
    params, scale = scaled_params_of(args)
    trace = [*range(1, args.trace_jobs + 1), *(args.trace_job or ())]
    if trace and not args.runs_dir:
        raise InvalidArgument("--trace-job/--trace-jobs write RUN/spans.jsonl: they need a --runs-dir")
    config = SimConfig(
        design=design,
        workload=workload,
        params=params,
        seed=args.seed,
        replication=args.replication,
        name=Path(args.workload).stem,
        run_id=args.run_id,
        trace=tuple(trace),
    )
    if args.runs_dir and run_exists(args.runs_dir, config.effective_run_id) and not args.force:
        raise InvalidArgument(
            f"run {Path(args.runs_dir) / config.effective_run_id} exists: --force replaces it, --run-id "
            "names another"
        )
    warn_placeholders(params, design)
    logging.getLogger(PROGRESS_LOGGER).info(f"simulating {config.effective_run_id}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlaceholderWarning)  # printed above, once
        result = run(config)
    if not args.runs_dir:
        return result.summary, None
    path = result.save(args.runs_dir, records=not args.no_records, overwrite=args.force)
    for chosen in result.stats.get("trace_missing", ()):  # the run is written: said, not an error
        what = f"job {chosen!r}" if isinstance(chosen, str) else f"submitted job #{chosen}"
        made = result.stats["trace_submitted"]
        print(f"dtq sim: --trace-job: {what} has no spans (the submits made {made} jobs)", file=sys.stderr)
    if scale is not None:  # config.json records the host scale the costs were moved by
        config_file = path / CONFIG_FILE
        recorded = json.loads(config_file.read_text())
        recorded["parameters"]["host_scale"] = scale.to_mapping()
        config_file.write_bytes(json_bytes(recorded))
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
        raise InvalidArgument(f"sweep file {path}: {'a directory' if path.is_dir() else 'no such file'}")
    data = read_document(path, (".yaml", ".yml"))
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
    try:
        df = _run_sweep_file(path, spec, args)
    except InvalidArgument as exc:  # what is wrong is in this file (or a file it names): say which
        message = exc.message if exc.message.startswith(str(path)) else f"{path}: {exc.message}"
        raise InvalidArgument(message) from None
    print(format_sweep(df))
    if args.table:
        table_path = Path(args.table)
        table_path.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(table_path, index=False)
        print(f"table written to {table_path}")
    return 0


def _run_sweep_file(path: Path, spec: Mapping[str, Any], args: argparse.Namespace) -> Any:
    """The sweep file's table (a DataFrame); its placeholder warnings on stderr, once each."""
    raw = spec["workload"]
    if isinstance(raw, str):
        wl_path = (
            (path.parent / raw) if not Path(raw).is_absolute() and not Path(raw).is_file() else Path(raw)
        )
        if not wl_path.is_file():  # _workload's message names --workload, which was not given here
            raise InvalidArgument(f"workload {raw!r}: no such file ({wl_path})")
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
    metrics = spec.get("metrics") or DEFAULT_METRICS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PlaceholderWarning)
        df = run_sweep(
            base,
            grid,
            spec.get("replications", 5),  # checked by sim/sweeps.py's plan (an integer >= 1)
            metrics=metrics,
            workers=args.workers or None,
            address=args.address,
        )
    for text in dict.fromkeys(str(w.message) for w in caught if issubclass(w.category, PlaceholderWarning)):
        print(text, file=sys.stderr)
    return df


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


def _count(text: str) -> int:
    """argparse type: an integer >= 0."""
    value = int(text)  # ValueError: argparse says "invalid _count value"
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}")
    return value


def _trace_job(text: str) -> int | str:
    """argparse type: an ordinal >= 1 (the Nth submitted job), or a job id."""
    if text.isdigit():
        if int(text) < 1:
            raise argparse.ArgumentTypeError(f"job ordinals count from 1, got {text!r}")
        return int(text)
    try:  # a misspelt id would simulate the whole run and then find no such job
        parse_job_id(text)
    except InvalidArgument:
        raise argparse.ArgumentTypeError(
            "expected a job ordinal (1 = the first submitted) or a job id (e.g. n1-1-0000000001), "
            f"got {text!r}"
        ) from None
    return text


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
        "--downtime",
        type=_seconds,
        default=1.0,
        metavar="S",
        help="faults: kill_worker: seconds until it restarts",
    )
    group.add_argument("--restart-after", type=_seconds, help=argparse.SUPPRESS)  # deprecated: --downtime
    sim_faults.add_scenario_flags(group.add_argument, _seconds, _count, prefix="faults: ")
    group.add_argument(
        "--after", type=_seconds, default=25.0, help="faults: trace seconds after the injection"
    )
    group.add_argument(
        "--out",
        default="",
        metavar="FILE",
        help="faults: rows (default data/faults/sim-<design>.json; when it exists, a new file beside it "
        "unless --force)",
    )
    group.add_argument("--faults-out", help=argparse.SUPPRESS)  # deprecated: --out DIR/sim-<design>.json


def faults_command(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[FaultAudit], Path | None]:
    design = _design(args)
    # a file the user named is theirs to replace; the default is committed data: a new file beside it
    named = args.out or (Path(args.faults_out) / f"sim-{design}.json" if args.faults_out else None)
    out = output_file(
        Path(named) if named else fresh_path(Path("data/faults") / f"sim-{design}.json", args.force)
    )
    params = params_of(args)
    warn_placeholders(params, design)  # after --out is known to be writable
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
    if args.sweep_file and args.sim_action != "sweep":
        raise InvalidArgument(f"dtq sim {args.sim_action}: unexpected argument {args.sweep_file!r}")
    if args.sim_action == "params":
        return params_command(args)
    if args.sim_action == "sweep":
        return sweep_command(args)
    if args.sim_action == "faults":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PlaceholderWarning)  # faults_command prints it, once
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


# ---------------------------------------------------------------------------- dtq plan (sim/plan.py)
def _int_list(text: str) -> list[int]:
    """argparse type: comma-separated integers >= 1."""
    try:
        values = [int(p) for p in text.split(",") if p.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers separated by commas, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected integers >= 1 separated by commas, got {text!r}")
    return values


def _designs(text: str) -> list[str]:
    values = [p.strip() for p in text.split(",") if p.strip()]
    bad = [v for v in values if v not in DESIGNS]
    if not values or bad:
        raise argparse.ArgumentTypeError(f"expected micro, mono or micro,mono, got {text!r}")
    return values


def _positive(text: str) -> int:
    value = int(text)  # ValueError: argparse says "invalid _positive value"
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def add_plan_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--workload", required=True, help="a .yaml/.toml workload (data/workloads/)")
    p.add_argument(
        "--slo",
        required=True,
        help="the goal, e.g. 'p99<50ms' (submit -> done), 'submit.p99<5ms', 'throughput>=100/s'; "
        "several joined by ',' all hold",
    )
    p.add_argument("--designs", type=_designs, default=list(DESIGNS), help="micro, mono or both")
    p.add_argument(
        "--max-nodes", type=_positive, default=DEFAULT_MAX_NODES, help="Design B nodes searched: 1..N"
    )
    p.add_argument(
        "--slots", type=_int_list, default=list(DEFAULT_SLOTS), help="slots per node (Design A: the worker's)"
    )
    p.add_argument("--replications", type=_positive, default=3, help="simulations per configuration")
    p.add_argument("--calibration", default="local", help="a name under data/calibration/ or a JSON path")
    p.add_argument("--dask", default="", metavar="ADDR", help="a Dask scheduler, tcp://HOST:PORT")
    p.add_argument("--workers", type=_positive, default=None, help="local processes (default: cores)")
    p.add_argument("--grid", action="store_true", help="evaluate every node count, not a bisection")
    p.add_argument("--no-curve", action="store_true", help="skip filling in each design's curve")
    p.add_argument("--out", default="", metavar="DIR", help="write plan.json, curve.csv/png, points.csv")
    p.add_argument("--force", action="store_true", help="replace the files of an earlier --out")


def plan_command(args: argparse.Namespace) -> int:
    goals = parse_slo(args.slo)  # a bad SLO fails before anything is loaded
    if not Path(args.workload).is_file():
        raise InvalidArgument(f"--workload {args.workload}: not a file")
    workload = load_workload(args.workload)
    params = _calibration(args.calibration)
    out = Path(args.out) if args.out else None
    if out is not None and not args.force:
        clash = [n for n in ("plan.json", "curve.csv", "points.csv", "curve.png") if (out / n).exists()]
        if clash:
            raise InvalidArgument(f"--out {out}: {', '.join(clash)} exist (--force replaces them)")
    for design in args.designs:
        text = placeholder_text(params, design)
        if text:
            logging.getLogger(PROGRESS_LOGGER).warning(text)
    log = logging.getLogger(PROGRESS_LOGGER).info
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlaceholderWarning)  # said above, once
        result = plan(
            workload,
            goals,
            designs=args.designs,
            max_nodes=args.max_nodes,
            slots=args.slots,
            replications=args.replications,
            calibration=params,
            address=args.dask,
            workers=args.workers,
            grid=args.grid,
            curve=not args.no_curve,
            progress=log,
        )
    print(result.text())
    if out is not None:
        for path in result.save(out, force=args.force):
            print(f"wrote {path}")
    return 0


def register(sub: Any) -> None:
    """`dtq sim` (run, params, sweep, faults) and `dtq plan` on the `dtq` command's subparsers."""
    p = sub.add_parser(
        "sim", help="simulate a workload on a design (run), list parameters (params), sweep, faults"
    )
    add_arguments(p)
    p.set_defaults(handler=lambda args: _sim(args, p))
    planner = sub.add_parser(
        "plan", help="the cheapest design x nodes x slots meeting a latency/throughput goal (simulated)"
    )
    add_plan_arguments(planner)
    planner.set_defaults(handler=plan_command)
