"""Scheduling policies validated, simulated against real: a two-tenant workload where tenant x floods
(data/experiments/policies/policies.yaml), run per policy on real local clusters and in the simulator
(the calibration only, plus the policy's settings), and each tenant's completion-time distribution
predicted beside measured.

    flock /tmp/dtq-measure.lock python -m lab.policies run [--designs mono,micro] [--replications N]
    python -m lab.policies figure        # the figure and summary from the stored records only

`run` interleaves the policies: for each design, each replication, each policy, the real run then its
simulated twin (the same trace: the workload's seed plus the replication). Each run's job records go to
records/<kind>-<design>-<policy>-r<replication>.csv (tenant, submit and completion time, state);
a stored one is skipped unless --force. `figure` writes policies.png (a CDF per tenant, measured solid,
predicted dashed, a panel per design and policy) and summary.md / summary.json (percentiles per tenant,
prediction errors, and whether the simulator predicts what each policy does to each tenant).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np

import sim
from model.errors import InvalidArgument
from model.results.documents import read_document
from model.results.runs import provenance, utc_now
from model.results.schema import JobRecord
from model.states import JobState
from model.workload import Op, WorkloadSpec, open_loop_trace, workload_from_mapping
from realsys import cluster, loadgen
from realsys.targets import dtq_target_spec
from sim.params import load_params

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DIR = ROOT / "data" / "experiments" / "policies"
FILE_NAME = "policies.yaml"
FIELDS = ("tenant", "submit_time", "completion_time", "state")
PERCENTILES = (50, 90, 99)


@dataclass(frozen=True, slots=True)
class PolicyExperiment:
    name: str
    calibration: str
    workload: Mapping[str, Any]
    slots: int
    nodes: int
    store: str
    replications: int
    drain: float
    designs: tuple[str, ...]
    key: str
    policies: Mapping[str, Mapping[str, Any]]  # name -> CoreConfig policy fields (a value may be per design)

    def spec(self, replication: int) -> WorkloadSpec:
        spec = workload_from_mapping(self.workload)
        return replace(spec, seed=spec.seed + replication)

    def settings(self, policy: str, design: str) -> dict[str, Any]:
        """The policy's CoreConfig fields for `design` (a mapping value picks per design)."""
        out: dict[str, Any] = {}
        for field, value in self.policies[policy].items():
            out[field] = value[design] if isinstance(value, Mapping) else value
        return out


def load(path: Path) -> PolicyExperiment:
    data = read_document(path)
    if not isinstance(data, Mapping):
        raise InvalidArgument(f"{path}: a mapping of settings")
    try:
        return PolicyExperiment(
            name=str(data["name"]),
            calibration=str(data["calibration"]),
            workload=data["workload"],
            slots=int(data["slots"]),
            nodes=int(data["nodes"]),
            store=str(data.get("store", "sqlite")),
            replications=int(data["replications"]),
            drain=float(data.get("drain", 20.0)),
            designs=tuple(data.get("designs", ("mono", "micro"))),
            key=str(data.get("key", "tenant")),
            policies={str(k): dict(v or {}) for k, v in data["policies"].items()},
        )
    except KeyError as exc:
        raise InvalidArgument(f"{path}: missing {exc.args[0]!r}") from None


# ---------------------------------------------------------------------------------- records
def tenants_by_time(spec: WorkloadSpec, key: str) -> list[tuple[float, str]]:
    """(intended time, tenant) of every submit of the workload's trace, in order."""
    trace = open_loop_trace(spec)
    out: list[tuple[float, str]] = []
    for i in np.flatnonzero(trace.ops == int(Op.SUBMIT)):
        labels = dict(trace.job(int(i)).labels)
        out.append((float(trace.times[i]), labels.get(key, "")))
    return out


def _nearest(times: np.ndarray, t: float) -> int:
    """The index of the time in sorted `times` nearest to `t`."""
    i = int(np.searchsorted(times, t))
    if i == len(times) or (i > 0 and t - times[i - 1] < times[i] - t):
        i -= 1
    return i


def tenant_rows(spec: WorkloadSpec, key: str, jobs: Iterable[JobRecord]) -> list[dict[str, Any]]:
    """The measured window's jobs with their tenant. Records keep the trace's intended times (up to
    rounding) shifted by the run's start: the shift is the one that matches most records to a submit."""
    submits = tenants_by_time(spec, key)
    times = np.array([t for t, _ in submits])
    records = sorted(jobs, key=lambda j: j.submit_time)
    if not records or not submits:
        return []
    first = records[0].submit_time
    best: tuple[int, float] = (-1, 0.0)
    for k in range(min(8, len(times))):
        shift = first - times[k]
        hits = 0
        for r in records[:50]:
            t = r.submit_time - shift
            hits += abs(times[_nearest(times, t)] - t) < 1e-6
        if hits > best[0]:
            best = (hits, shift)
    shift = best[1]
    start, end = spec.warmup, spec.warmup + spec.run_time
    rows: list[dict[str, Any]] = []
    for r in records:
        t = r.submit_time - shift
        i = _nearest(times, t)
        if abs(times[i] - t) > 1e-6:
            raise InvalidArgument(f"job {r.job_id}: no submit of the trace at {t:.6f} s")
        if start <= t < end:
            rows.append(
                {
                    "tenant": submits[i][1],
                    "submit_time": float(times[i]),
                    "completion_time": r.completion_time,
                    "state": r.final_state.name,
                }
            )
    return rows


def write_rows(path: Path, rows: Sequence[Mapping[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (repr(v) if isinstance(v, float) else v) for k, v in row.items()})
    tmp.replace(path)


def read_rows(path: Path) -> list[dict[str, Any]]:
    with path.open(newline="") as f:
        return [
            {
                **row,
                "submit_time": float(row["submit_time"]),
                "completion_time": float(row["completion_time"]),
            }
            for row in csv.DictReader(f)
        ]


def record_path(out: Path, kind: str, design: str, policy: str, replication: int) -> Path:
    return out / "records" / f"{kind}-{design}-{policy}-r{replication}.csv"


# ---------------------------------------------------------------------------------- running
def core_env(settings: Mapping[str, Any]) -> dict[str, str]:
    return {f"DTQ_{field.upper()}": str(value) for field, value in settings.items()}


def run_real(exp: PolicyExperiment, design: str, policy: str, replication: int) -> list[JobRecord]:
    spec = exp.spec(replication)
    options: dict[str, Any] = {"total_slots": exp.slots, "store": exp.store, "prefix": f"dtq-pol-{design}-"}
    if design == "mono":
        options["nodes"] = exp.nodes
    overrides = core_env(exp.settings(policy, design))
    with cluster.running(design, overrides=overrides, **options) as info:
        result = loadgen.run(dtq_target_spec(info.clients, design=design), spec, 1, drain_timeout=exp.drain)
    return list(result.jobs)


def run_sim(exp: PolicyExperiment, design: str, policy: str, replication: int) -> list[JobRecord]:
    spec = exp.spec(replication)
    overrides: dict[str, Any] = {f"core.{k}": v for k, v in exp.settings(policy, design).items()}
    overrides["slots"] = exp.slots
    if design == "mono":
        overrides["nodes"] = exp.nodes
    params = load_params(exp.calibration).with_overrides(overrides)
    name = f"policies_{policy}"
    result = sim.run(sim.SimConfig(design, spec, params, replication=replication, name=name))  # type: ignore[arg-type]
    return list(result.jobs)


def run(
    exp: PolicyExperiment,
    out: Path,
    designs: Sequence[str],
    force: bool,
    quiet: bool,
    kinds: Sequence[str] = ("real", "sim"),
) -> int:
    """Every missing run, interleaved; returns how many ran. Each appends a line to runs.jsonl: when,
    the load average before and after, the code version."""
    ran = 0
    code = provenance()["code_version"]
    for design in designs:  # the first design complete first (Design B: the file lists it first)
        for replication in range(exp.replications):
            for policy in exp.policies:
                for kind, runner in (("real", run_real), ("sim", run_sim)):
                    if kind not in kinds:
                        continue
                    path = record_path(out, kind, design, policy, replication)
                    if path.exists() and not force:
                        continue
                    if not quiet:
                        print(
                            f"policies: {kind} {design} {policy} r{replication}", file=sys.stderr, flush=True
                        )
                    started, load = utc_now(), os.getloadavg()
                    jobs = runner(exp, design, policy, replication)
                    rows = tenant_rows(exp.spec(replication), exp.key, jobs)
                    write_rows(path, rows)
                    log = {
                        "run": path.stem,
                        "started_at": started,
                        "ended_at": utc_now(),
                        "load_before": [round(x, 2) for x in load],
                        "load_after": [round(x, 2) for x in os.getloadavg()],
                        "jobs": len(jobs),
                        "in_window": len(rows),
                        "code_version": code,
                    }
                    with (out / "runs.jsonl").open("a") as f:
                        f.write(json.dumps(log) + "\n")
                    ran += 1
    return ran


# ---------------------------------------------------------------------------------- analysis
def collect(out: Path, exp: PolicyExperiment) -> dict[tuple[str, str, str, str], list[list[float]]]:
    """(kind, design, policy, tenant) -> completion times of succeeded jobs, one list per replication."""
    data: dict[tuple[str, str, str, str], list[list[float]]] = {}
    for path in sorted((out / "records").glob("*.csv")):
        kind, design, rest = path.stem.split("-", 2)
        policy, _, _ = rest.rpartition("-r")
        by_tenant: dict[str, list[float]] = {}
        for row in read_rows(path):
            if row["state"] == JobState.SUCCEEDED.name:
                by_tenant.setdefault(row["tenant"], []).append(row["completion_time"])
        for tenant, times in by_tenant.items():
            data.setdefault((kind, design, policy, tenant), []).append(times)
    return data


def percentiles(times: Sequence[float]) -> dict[str, float]:
    if not times:
        return {f"p{p}": math.nan for p in PERCENTILES}
    values = np.percentile(np.asarray(times), PERCENTILES)
    return {f"p{p}": float(v) for p, v in zip(PERCENTILES, values, strict=True)}


def summarize(data: Mapping[tuple[str, str, str, str], list[list[float]]]) -> list[dict[str, Any]]:
    """Per design, policy and tenant: measured and predicted percentiles (pooled over replications,
    with the spread of the per-replication p90), and the prediction's relative error."""
    rows: list[dict[str, Any]] = []
    keys = sorted({(d, p, t) for (_, d, p, t) in data})
    for design, policy, tenant in keys:
        real = data.get(("real", design, policy, tenant), [])
        simulated = data.get(("sim", design, policy, tenant), [])
        if not real or not simulated:
            continue
        measured = percentiles([x for rep in real for x in rep])
        predicted = percentiles([x for rep in simulated for x in rep])
        p90s = [percentiles(rep)["p90"] for rep in real]
        row: dict[str, Any] = {
            "design": design,
            "policy": policy,
            "tenant": tenant,
            "jobs_real": sum(map(len, real)),
            "jobs_sim": sum(map(len, simulated)),
            "replications": len(real),
            **{f"measured_{k}": v for k, v in measured.items()},
            **{f"predicted_{k}": v for k, v in predicted.items()},
            "measured_p90_min": min(p90s),
            "measured_p90_max": max(p90s),
        }
        for p in PERCENTILES:
            m, s = measured[f"p{p}"], predicted[f"p{p}"]
            row[f"error_p{p}"] = (s - m) / m if m > 0 else math.nan
        rows.append(row)
    return rows


def effects(rows: Sequence[Mapping[str, Any]], baseline: str = "fifo") -> list[dict[str, Any]]:
    """What each policy does to each tenant's p90 against the baseline, measured and predicted, and
    whether the simulator gets the direction right (a change under 10% counts as none)."""
    index = {(r["design"], r["policy"], r["tenant"]): r for r in rows}
    out: list[dict[str, Any]] = []
    for (design, policy, tenant), row in sorted(index.items()):
        base = index.get((design, baseline, tenant))
        if policy == baseline or base is None:
            continue

        def direction(ratio: float) -> str:
            return "faster" if ratio < 0.9 else "slower" if ratio > 1.1 else "same"

        measured = row["measured_p90"] / base["measured_p90"]
        predicted = row["predicted_p90"] / base["predicted_p90"]
        out.append(
            {
                "design": design,
                "policy": policy,
                "tenant": tenant,
                "measured_p90_ratio": measured,
                "predicted_p90_ratio": predicted,
                "measured": direction(measured),
                "predicted": direction(predicted),
                "hit": direction(measured) == direction(predicted),
            }
        )
    return out


def summary_markdown(rows: Sequence[Mapping[str, Any]], effect_rows: Sequence[Mapping[str, Any]]) -> str:
    lines = [
        "# Scheduling policies: tenant x floods, predicted beside measured",
        "",
        "Completion times (submit to the client learning the end) of succeeded jobs in the measured window,",
        "pooled over replications; `p90 range` is the spread of the per-replication measured p90.",
        "",
        "| design | policy | tenant | jobs real/sim | measured p50 / p90 / p99 (s) "
        "| predicted p50 / p90 / p99 (s) | error p50 / p90 | measured p90 range (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['design']} | {r['policy']} | {r['tenant']} | {r['jobs_real']}/{r['jobs_sim']} | "
            f"{r['measured_p50']:.3f} / {r['measured_p90']:.3f} / {r['measured_p99']:.3f} | "
            f"{r['predicted_p50']:.3f} / {r['predicted_p90']:.3f} / {r['predicted_p99']:.3f} | "
            f"{r['error_p50']:+.0%} / {r['error_p90']:+.0%} | "
            f"{r['measured_p90_min']:.3f}-{r['measured_p90_max']:.3f} |"
        )
    lines += [
        "",
        "What each policy does to each tenant's p90, against fifo (x0.9-x1.1 counts as the same):",
        "",
        "| design | policy | tenant | measured | predicted | hit |",
        "|---|---|---|---|---|---|",
    ]
    for e in effect_rows:
        lines.append(
            f"| {e['design']} | {e['policy']} | {e['tenant']} "
            f"| {e['measured']} (x{e['measured_p90_ratio']:.2f}) "
            f"| {e['predicted']} (x{e['predicted_p90_ratio']:.2f}) | {'hit' if e['hit'] else 'MISS'} |"
        )
    hits = sum(e["hit"] for e in effect_rows)
    lines += ["", f"Directions predicted right: {hits} of {len(effect_rows)}.", ""]
    return "\n".join(lines)


def figure(
    data: Mapping[tuple[str, str, str, str], list[list[float]]], policies: Sequence[str], path: Path
) -> None:
    designs = sorted({d for (_, d, _, _) in data})
    tenants = sorted({t for (_, _, _, t) in data})
    colours = dict(zip(tenants, ("tab:red", "tab:blue", "tab:green", "tab:purple"), strict=False))
    fig, axes = plt.subplots(
        len(designs),
        len(policies),
        figsize=(3.2 * len(policies), 2.6 * len(designs)),
        squeeze=False,
        sharex=True,
    )
    for row, design in enumerate(designs):
        for col, policy in enumerate(policies):
            ax = axes[row][col]
            for tenant in tenants:
                for kind, style in (("real", "-"), ("sim", "--")):
                    times = sorted(x for rep in data.get((kind, design, policy, tenant), []) for x in rep)
                    if not times:
                        continue
                    y = np.arange(1, len(times) + 1) / len(times)
                    label = f"{tenant} {'measured' if kind == 'real' else 'predicted'}"
                    ax.step(times, y, style, where="post", color=colours[tenant], label=label, linewidth=1.2)
            ax.set_xscale("log")
            ax.set_title(f"{'Design B' if design == 'mono' else 'Design A'}: {policy}", fontsize=9)
            ax.grid(alpha=0.3)
            if row == len(designs) - 1:
                ax.set_xlabel("completion time (s)", fontsize=8)
            if col == 0:
                ax.set_ylabel("fraction of jobs", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0][0].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_figure(out: Path, exp: PolicyExperiment) -> list[dict[str, Any]]:
    data = collect(out, exp)
    if not data:
        raise InvalidArgument(f"{out / 'records'}: no records (python -m lab.policies run)")
    policies = [p for p in exp.policies if any(k[2] == p for k in data)]
    figure(data, policies, out / "policies.png")
    rows = summarize(data)
    effect_rows = effects(rows)
    (out / "summary.json").write_text(json.dumps({"rows": rows, "effects": effect_rows}, indent=1) + "\n")
    (out / "summary.md").write_text(summary_markdown(rows, effect_rows))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.policies", description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=("run", "figure"))
    parser.add_argument(
        "--dir", type=Path, default=DEFAULT_DIR, help="the experiment's folder (its policies.yaml)"
    )
    parser.add_argument("--designs", default="", help="comma-separated, e.g. mono (default: the file's)")
    parser.add_argument("--replications", type=int, default=0, help="at most this many (default: the file's)")
    parser.add_argument(
        "--kinds", default="real,sim", help="sim: the predictions alone (before any real run), real: ..."
    )
    parser.add_argument("--force", action="store_true", help="run again what is stored")
    parser.add_argument("-q", "--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        exp = load(args.dir / FILE_NAME)
        if args.replications:
            exp = replace(exp, replications=min(args.replications, exp.replications))
        if args.command == "run":
            designs = [d for d in args.designs.split(",") if d] or list(exp.designs)
            kinds = [k for k in args.kinds.split(",") if k]
            if not kinds or set(kinds) - {"real", "sim"}:
                raise InvalidArgument(f"--kinds is real, sim or real,sim, got {args.kinds!r}")
            ran = run(exp, args.dir, designs, args.force, args.quiet, kinds)
            print(f"policies: {ran} runs written to {args.dir / 'records'}", file=sys.stderr)
        write_figure(args.dir, exp)
        print((args.dir / "summary.md").read_text())
    except InvalidArgument as exc:
        print(f"lab.policies: {exc.message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
