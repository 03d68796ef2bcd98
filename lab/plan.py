"""The capacity planner (sim/plan.py) checked on real local clusters: `python -m lab.plan check`.

For each (workload, goal) pair of data/experiments/plan/pairs.yaml: plan in the simulator on the
committed calibration, then run the planner's choice and the next smaller configuration
(sim.plan.next_smaller) for real, `real_replications` times each, interleaved (choice then smaller,
smaller then choice, ...), each on a fresh local cluster (`realsys.cluster.running`: Design B with the
chosen nodes and total slots, Design A's six processes with the worker's slots) driven by the load
generator, and judge them by the planner's own rule: a configuration meets the goal when the mean over
its replications does; a replication with jobs unfinished or requests refused for overload counts as
infinitely late for a latency goal. A hit: the choice met the goal and the smaller one did not.
The command plans every pair first (no lock), then takes /tmp/dtq-measure.lock once for all the real
runs (do not wrap it in `flock`: that would hold the lock through the planning too); the host's load
average is recorded beside each run, and check.json/check.md are rewritten after each pair.

Writes <out>/check.json (every run's numbers), <out>/check.md (the table of hits and misses) and
<out>/<pair>/ (the plan: plan.json, curve.csv, points.csv, curve.png); refuses to replace them
without --force. Nothing here is tuned to pass: the pairs were fixed before the first real run.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.errors import InvalidArgument
from model.results.documents import read_document
from model.results.runs import utc_now
from model.results.stats import mean_ci
from model.results.summary import metric as summary_metric
from model.workload import WorkloadSpec, workload_from_mapping, workload_to_mapping
from realsys import cluster, loadgen
from realsys.targets import dtq_target_spec
from sim.plan import OVERLOAD_CODES, Config, Goal, PlanResult, next_smaller, parse_slo, plan

PAIRS_FILE = Path("data/experiments/plan/pairs.yaml")
OUT_DIR = Path("data/experiments/plan")
LOCK = Path("/tmp/dtq-measure.lock")
SETTLE = 0.5  # seconds between a cluster's start and the load
DRAIN = 10.0  # the load generator's drain timeout


@dataclass(frozen=True, slots=True)
class Pair:
    name: str
    about: str
    slo: str
    designs: tuple[str, ...]
    slots: tuple[int, ...]
    max_nodes: int
    workload: WorkloadSpec


@dataclass(frozen=True, slots=True)
class PairsFile:
    calibration: str
    sim_replications: int
    real_replications: int
    pairs: tuple[Pair, ...]


def load_pairs(path: Path | str) -> PairsFile:
    data = read_document(path, (".yaml", ".yml"))
    if not isinstance(data, Mapping) or not isinstance(data.get("pairs"), list) or not data["pairs"]:
        raise InvalidArgument(f"{path}: expected a mapping with a non-empty list `pairs`")
    pairs = []
    for i, p in enumerate(data["pairs"]):
        where = f"{path}: pairs[{i}]"
        if not isinstance(p, Mapping):
            raise InvalidArgument(f"{where}: expected a mapping")
        unknown = set(p) - {"name", "about", "slo", "designs", "slots", "max_nodes", "workload"}
        if unknown:
            raise InvalidArgument(f"{where}: unknown keys {sorted(unknown)}")
        try:
            parse_slo(str(p["slo"]))
            pairs.append(
                Pair(
                    name=str(p["name"]),
                    about=str(p.get("about", "")),
                    slo=str(p["slo"]),
                    designs=tuple(p["designs"]),
                    slots=tuple(int(s) for s in p["slots"]),
                    max_nodes=int(p["max_nodes"]),
                    workload=workload_from_mapping(p["workload"]),
                )
            )
        except KeyError as exc:
            raise InvalidArgument(f"{where}: missing {exc.args[0]!r}") from None
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc.message}") from None
    names = [p.name for p in pairs]
    if len(set(names)) != len(names):
        raise InvalidArgument(f"{path}: pair names repeat")
    return PairsFile(
        str(data.get("calibration", "local")),
        int(data.get("sim_replications", 3)),
        int(data.get("real_replications", 3)),
        tuple(pairs),
    )


# ------------------------------------------------------------------------------------ real runs
@contextlib.contextmanager
def measure_lock() -> Iterator[None]:
    """/tmp/dtq-measure.lock, the machine's shared measurement lock (held for every real run of a check:
    taken per run, a busy queue of other measurements would slip in between them)."""
    with open(LOCK, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def real_run(config: Config, workload: WorkloadSpec, run_id: str) -> dict[str, Any]:
    """One run of `workload` on a fresh local cluster of `config`: its summary (data/README.md). The
    caller holds the measurement lock."""
    options: dict[str, Any] = {"total_slots": config.total_slots, "store": "sqlite"}
    if config.design == "mono":
        options["nodes"] = config.nodes
    with cluster.running(config.design, prefix="dtq-plan-check-", **options) as info:
        time.sleep(SETTLE)
        result = loadgen.run(
            dtq_target_spec(info.clients, design=config.design), workload, 1, drain_timeout=DRAIN
        )
        return loadgen.summary_of(result, workload, run_id=run_id, kind="real", design=config.design)


def goal_value(summary: Mapping[str, Any], goal: Goal) -> float:
    """The planner's rule (sim/plan.py): overload makes a latency infinitely late."""
    value = summary_metric(summary, goal.path.split("."))
    x = math.nan if value is None else float(value)
    errors = summary.get("errors") or {}
    overloaded = bool(summary["jobs"]["unfinished"]) or any(errors.get(c) for c in OVERLOAD_CODES)
    return math.inf if goal.upper and overloaded else x


def judge(values: Sequence[float], goals: Sequence[Goal]) -> tuple[float, float, bool]:
    """(mean, CI half-width, met) of one goal's replications (the first goal's: pairs have one)."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan, math.nan, False
    if any(math.isinf(v) for v in finite):
        return math.inf, math.inf, False
    mean, half = mean_ci(finite)
    return mean, half, goals[0].met(mean)


# --------------------------------------------------------------------------------------- check
def plan_pair(
    pair: Pair, spec: PairsFile, out: Path, *, workers: int | None, force: bool, log: Any
) -> PlanResult:
    """The simulated plan of a pair, saved under out/<pair>/."""
    log(f"plan {pair.name}: {pair.slo} ({pair.about})")
    result: PlanResult = plan(
        pair.workload,
        pair.slo,
        designs=pair.designs,
        max_nodes=pair.max_nodes,
        slots=pair.slots,
        replications=spec.sim_replications,
        calibration=spec.calibration,
        workers=workers,
        progress=log,
    )
    result.save(out / pair.name, force=force)
    log(result.text())
    return result


def real_pair(pair: Pair, spec: PairsFile, result: PlanResult, *, log: Any) -> dict[str, Any]:
    """The pair's choice and next smaller configuration run for real (the caller holds the lock)."""
    row: dict[str, Any] = {"pair": pair.name, "about": pair.about, "slo": pair.slo}
    row["workload"] = workload_to_mapping(pair.workload)
    if result.best is None:
        row["verdict"] = "no configuration in range meets the goal in the simulator: nothing to run"
        row["binding"] = result.bindings
        return row
    smaller = next_smaller(result.best, result.slots)
    roles = {"choice": result.best}
    if smaller is not None:
        roles["smaller"] = smaller
    runs: list[dict[str, Any]] = []
    for r in range(spec.real_replications):
        order = list(roles) if r % 2 == 0 else list(reversed(roles))  # interleaved, alternating order
        for role in order:
            config = roles[role]
            run_id = f"plan-{pair.name}-{role}-r{r}"
            log(f"real {run_id}: {config.label}")
            record: dict[str, Any] = {"role": role, "replication": r, "started_at": utc_now()}
            record["loadavg_1m"] = round(os.getloadavg()[0], 2)
            try:
                summary = real_run(config, pair.workload, run_id)
            except Exception as exc:  # a run that broke is reported, not hidden; the check goes on
                record["error"] = f"{type(exc).__name__}: {exc}"
                runs.append(record)
                continue
            record["value"] = goal_value(summary, result.goals[0])
            record["summary"] = {
                "completion_ms": summary["completion_ms"],
                "latency_ms.submit": summary["latency_ms"].get("submit"),
                "throughput": summary["throughput"],
                "jobs": summary["jobs"],
                "errors": summary["errors"],
                "loadgen": summary["loadgen"],
            }
            runs.append(record)
    row["runs"] = runs
    for role, config in roles.items():
        ev = result.evaluations.get(config)
        values = [r["value"] for r in runs if r["role"] == role and "value" in r]
        mean, half, met = judge(values, result.goals)
        row[role] = {
            "design": config.design,
            "nodes": config.nodes,
            "slots_per_node": config.slots,
            "label": config.label,
            "predicted": None if ev is None else [ev.mean(result.goals[0]), ev.half(result.goals[0])],
            "predicted_met": None if ev is None else ev.meets(result.goals),
            "measured": [mean, half],
            "measured_values": values,
            "replications_met": sum(result.goals[0].met(v) for v in values),
            "met": met,
        }
    choice_met = row["choice"]["met"]
    if "smaller" not in row:
        row["verdict"] = (
            f"choice {'met' if choice_met else 'MISSED'} the goal; no smaller configuration in range"
        )
    else:
        smaller_met = row["smaller"]["met"]
        row["hit"] = choice_met and not smaller_met
        row["verdict"] = (
            "hit"
            if row["hit"]
            else "miss: "
            + ", ".join(
                ([] if choice_met else ["the choice missed the goal"])
                + (["the smaller one also met it (the planner over-provisioned)"] if smaller_met else [])
            )
        )
    return row


def _cell(pair: Mapping[str, Any], role: str, key: str) -> str:
    part = pair.get(role)
    if not part:
        return "-"
    mean, half = part[key] if part[key] is not None else (math.nan, math.nan)
    text = _fmt(mean) + ("" if not math.isfinite(half) else f" ± {_fmt(half)}")
    return text


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "overload"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def table(rows: Sequence[Mapping[str, Any]]) -> str:
    head = (
        "| pair | goal | choice | predicted | measured (reps met) | next smaller | predicted | "
        "measured (reps met) | verdict |\n|---|---|---|---|---|---|---|---|---|"
    )
    lines = [head]
    for row in rows:
        if "choice" not in row:
            lines.append(f"| {row['pair']} | `{row['slo']}` | - | - | - | - | - | - | {row['verdict']} |")
            continue
        cells = [row["pair"], f"`{row['slo']}`"]
        for role in ("choice", "smaller"):
            part = row.get(role)
            if part is None:
                cells += ["none in range", "-", "-"]
                continue
            n = len(part["measured_values"])
            cells += [
                part["label"],
                _cell(row, role, "predicted"),
                f"{_cell(row, role, 'measured')} ({part['replications_met']}/{n})",
            ]
        cells.append(row["verdict"])
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, Mapping):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return value


def check(
    pairs_file: Path = PAIRS_FILE,
    out: Path = OUT_DIR,
    *,
    only: Sequence[str] = (),
    workers: int | None = 1,
    force: bool = False,
    log: Any = print,
) -> list[dict[str, Any]]:
    spec = load_pairs(pairs_file)
    pairs = [p for p in spec.pairs if not only or p.name in only]
    missing = sorted(set(only) - {p.name for p in spec.pairs})
    if missing:
        raise InvalidArgument(f"no pair named {', '.join(missing)} in {pairs_file}")
    if not force:
        clash = [out / n for n in ("check.json", "check.md") if (out / n).exists()]
        clash += [out / p.name for p in pairs if (out / p.name).exists()]
        if clash:
            raise InvalidArgument(f"{', '.join(map(str, clash))} exist (--force replaces them)")
    started = utc_now()
    plans = [plan_pair(p, spec, out, workers=workers, force=force, log=log) for p in pairs]
    rows: list[dict[str, Any]] = []
    log(f"waiting for {LOCK} (other measurements first)")
    with measure_lock():
        log(f"holding {LOCK}")
        for pair, result in zip(pairs, plans, strict=True):
            rows.append(real_pair(pair, spec, result, log=log))
            write(out, spec, pairs_file, started, rows)  # each pair as it is done: a cut run keeps them
    return rows


def write(
    out: Path, spec: PairsFile, pairs_file: Path, started: str, rows: Sequence[Mapping[str, Any]]
) -> None:
    """check.json and check.md of the pairs done so far."""
    doc = {
        "started_at": started,
        "finished_at": utc_now(),
        "pairs_file": str(pairs_file),
        "calibration": spec.calibration,
        "sim_replications": spec.sim_replications,
        "real_replications": spec.real_replications,
        "host_cpus": os.cpu_count(),
        "rows": list(rows),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "check.json").write_text(json.dumps(_json_safe(doc), indent=1, sort_keys=True) + "\n")
    hits = sum(bool(r.get("hit")) for r in rows)
    judged = sum("hit" in r for r in rows)
    md = [
        "# The capacity planner on real local clusters (`python -m lab.plan check`)",
        "",
        f"{started} .. {doc['finished_at']} UTC; calibration `{spec.calibration}`; planner "
        f"{spec.sim_replications} simulated replications per configuration; real runs "
        f"{spec.real_replications} per configuration, interleaved, each on a fresh local cluster, all "
        f"under {LOCK}; host of {os.cpu_count()} CPUs shared with other work "
        "(load averages per run in check.json).",
        "",
        "Predicted and measured: the goal's metric, mean ± 95% CI half-width over the replications "
        "(ms for latency goals); `overload`: a replication left jobs unfinished or had requests refused. "
        "A configuration meets the goal when its mean does.",
        "",
        table(rows),
        "",
        f"**{hits} hit(s) of {judged} pair(s) judged** (a hit: the choice met the goal and the next smaller "
        "configuration did not).",
        "",
    ]
    (out / "check.md").write_text("\n".join(md))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.plan", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="action", required=True)
    p = sub.add_parser("check", help="plan each pair, then run the choice and the next smaller for real")
    p.add_argument("--pairs", type=Path, default=PAIRS_FILE, help="the pairs file")
    p.add_argument("--out", type=Path, default=OUT_DIR, help="where check.json, check.md and the plans go")
    p.add_argument("--only", action="append", default=[], metavar="NAME", help="only this pair (repeatable)")
    p.add_argument("--workers", type=int, default=1, help="simulations at once while planning")
    p.add_argument("--force", action="store_true", help="replace an earlier check's files")
    args = parser.parse_args(argv)
    try:
        rows = check(args.pairs, args.out, only=args.only, workers=args.workers, force=args.force)
    except (InvalidArgument, FileNotFoundError) as exc:
        print(f"lab.plan: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
