"""The held-out protocol for Q1-Q3 (data/experiments/holdout.md): predictions from the committed
calibration, written down (and committed) before the real runs they are compared with, then the real
runs, then measured beside predicted with the real run-to-run spread, apart from the tuned cases.

Stages (`python -m lab.validation.holdout STAGE`; real stages under `flock /tmp/dtq-measure.lock`):
  predict     each design's saturation for each workload, simulated (closed loop, 32 clients that do
              not wait, as the validation measures it), and every point at rho x that predicted own
              saturation: predictions-apriori.{json,md} (nothing real exists yet)
  saturation  the real saturation runs (one per workload and design, designs interleaved)
  predict-at  every point at rho x the MEASURED own saturation (holdout.md's rate), simulated:
              predictions.{json,md}, committed before the points run (the model is not changed; only
              the offered rate comes from the measurement)
  real        the real points, replications x workloads x designs interleaved (a fresh cluster per
              run); each run's load average before and after is kept in loadavg.json
  table       measured beside predicted: results.{json,md}

Predictions are simulations at the calibration's host speed (no host probe: none exists before the
runs). The simulated replication r runs the real replication r's workload (seed 23 + r), as the twins do.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import sim
from lab.experiment.plan import PlannedRun, expand
from lab.experiment.runner import ClusterFactory, local_cluster, run_experiment
from lab.experiment.spec import Experiment, experiment_from_mapping
from lab.validation.output import write_json
from lab.validation.runs import runs_of, saturation_rate
from lab.validation.semantics import (
    Case,
    Semantics,
    error_of,
    saturation_mapping,
    spread,
)
from lab.validation.spec import Saturation
from lab.validation.twins import sim_params
from model.errors import InvalidArgument
from model.results.runs import load_workload, run_exists
from model.results.stats import mean_ci
from model.results.summary import metric
from model.workload import workload_to_mapping

WORKLOADS = Path("data/workloads/holdout")
OUT = Path("data/experiments/holdout")
RUNS = Path("data/runs")
# label, workload file, rho (holdout.md)
CASES: tuple[tuple[str, str, float], ...] = (
    ("q1", "q1-flaky-retry.yaml", 0.5),
    ("q2", "q2-three-priorities.yaml", 0.8),
    ("q3", "q3-timeouts.yaml", 0.5),
)
DESIGNS = ("micro", "mono")

# holdout.md's metrics: (name, path in summary.json); shares are compared in fraction points
METRICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("throughput", ("throughput", "requests_per_s")),
    ("completed", ("throughput", "completed_per_s")),
    ("p50", ("latency_ms", "all", "p50")),
    ("p95", ("latency_ms", "all", "p95")),
    ("p99", ("latency_ms", "all", "p99")),
    ("p999", ("latency_ms", "all", "p999")),
    ("done_p50", ("completion_ms", "p50")),
    ("done_p95", ("completion_ms", "p95")),
    ("done_p99", ("completion_ms", "p99")),
    ("attempts", ("outcomes", "attempts_mean")),
    ("failed", ("outcomes", "failed")),
    ("timed_out", ("outcomes", "timed_out")),
)
SHARES = frozenset({"failed", "timed_out"})


def holdout(calibration: str = "local") -> Semantics:
    """The protocol's settings (holdout.md): both designs, 3 replications, sqlite, 12 slots, the
    validation's saturation (32 clients, 3 s + 1 s warm-up) and run options."""
    cases = []
    for label, file, rho in CASES:
        spec = load_workload(WORKLOADS / file)
        cases.append(Case(label, workload_to_mapping(spec), (rho,), description=file))
    return Semantics(
        name="holdout",
        calibration=calibration,
        replications=3,
        designs=DESIGNS,
        cases=tuple(cases),
        store="sqlite",
        slots=12,
        saturation=Saturation(clients=32, run_time=3.0, warmup=1.0, replications=1),
        options={"settle": 0.5, "drain": 5.0, "host_probe": True},
        host_scale=False,
    )


def _rate(rate: float) -> float:
    return float(f"{rate:.3g}")  # 3 significant digits: rates name runs (lab/validation/plan.rates_of)


def saturation_experiment(v: Semantics, case: Case) -> Experiment:
    return experiment_from_mapping(saturation_mapping(v, case))


def point_experiment(v: Semantics, case: Case, design: str, saturation: float) -> Experiment:
    """The case's point for one design at rho x that design's own saturation."""
    return experiment_from_mapping(
        {
            "name": v.experiment(case),
            "workload": dict(case.workload),
            "replications": v.replications,
            "sweep": {
                "design": [design],
                "rate": [_rate(case.fractions[0] * saturation)],
                "store": [v.store],
                "slots": [v.slots],
            },
            "options": dict(v.options),
        }
    )


# ---------------------------------------------------------------------------- simulation
def values_of(summary: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, path in METRICS:
        value = metric(summary, path)
        if value is not None:
            out[name] = value
    by_priority = summary.get("outcomes", {}).get("completion_ms_by_priority") or {}
    for priority, stats in by_priority.items():
        for stat in ("p50", "p95", "p99"):
            value = metric(stats, (stat,))
            if value is not None:
                out[f"done_{stat}@prio{priority}"] = value
    return out


def simulate_run(v: Semantics, run: PlannedRun) -> dict[str, Any]:
    """The planned run simulated from the calibration alone, at the calibration's host speed."""
    params = sim_params(v.as_validation(), int(v.options.get("processes", 1)))
    result = sim.run(
        sim.SimConfig(
            design=run.design,  # type: ignore[arg-type]
            workload=run.workload,
            params=params,
            replication=run.replication,
            run_id=f"sim-{run.run_id.partition('-')[2]}",
        )
    )
    return dict(result.summary)


def _sat_of(summary: Mapping[str, Any], case: Case) -> float:
    rate = saturation_rate(summary, case.submit_fraction)
    if rate is None or not rate > 0:
        raise InvalidArgument(f"{case.label}: no saturation rate in the summary")
    return rate


def predict(
    v: Semantics, saturation: Mapping[tuple[str, str], float] | None, log: Any = print
) -> dict[str, Any]:
    """Predicted saturation per (case, design) (simulated) and every point at rho x `saturation` (the
    measured one) or, when None, x the predicted one."""
    out: dict[str, Any] = {"saturation": {}, "points": {}}
    for case in v.cases:
        for design in v.designs:
            key = f"{case.label}.{design}"
            (sat_run,) = [r for r in expand(saturation_experiment(v, case)).runs if r.design == design]
            predicted_sat = _sat_of(simulate_run(v, sat_run), case)
            out["saturation"][key] = predicted_sat
            base = predicted_sat if saturation is None else saturation[(case.label, design)]
            exp = point_experiment(v, case, design, base)
            reps = []
            for run in expand(exp).runs:
                t0 = time.monotonic()
                reps.append({"run_id": run.run_id, "values": values_of(simulate_run(v, run))})
                log(f"predicted {run.run_id} ({time.monotonic() - t0:.1f} s)")
            rate = _rate(case.fractions[0] * base)
            out["points"][key] = {
                "case": case.label,
                "design": design,
                "rho": case.fractions[0],
                "base_saturation": base,
                "rate": rate,
                "replications": reps,
            }
    return out


# ---------------------------------------------------------------------------- real side
def measured_saturation(v: Semantics, root: Path = RUNS) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for case in v.cases:
        for run in runs_of(root, "real", v.saturation_experiment(case)):
            out[(case.label, run.design)] = _sat_of(run.summary, case)
    return out


def loadavg() -> list[float]:
    """The host's 1, 5 and 15-minute load averages, rounded: recorded beside every measuring step."""
    return [round(x, 2) for x in os.getloadavg()]


def run_real(
    plans: Sequence[tuple[Experiment, PlannedRun]],
    root: Path = RUNS,
    log_name: str = "loadavg.json",
    budget: float = 0.0,
    cluster_factory: Callable[[PlannedRun], ClusterFactory] | None = None,
    log_path: Path | None = None,
    fresh_cluster: bool | None = None,
    beside: Callable[[Experiment], AbstractContextManager[object]] | None = None,
) -> None:
    """Each run on a fresh cluster, in the given order; the load average before and after each (kept
    in `log_path`, default OUT / log_name). With a budget (s), no new run starts after it: run again
    to go on. `cluster_factory(run)`: the run's cluster (default: lab.experiment.runner.local_cluster);
    `fresh_cluster`: recorded in the run's parameters as run_experiment's; `beside(exp)`: a context
    each run of `exp` runs inside (e.g. a neighbour process, lab.validation.idlewake)."""
    log_path = log_path if log_path is not None else OUT / log_name
    loads: list[dict[str, Any]] = json.loads(log_path.read_text()) if log_path.exists() else []
    start = time.monotonic()
    for exp, run in plans:
        if run_exists(root, run.run_id):
            continue
        if budget and time.monotonic() - start > budget:
            print(f"budget of {budget:g} s spent: stopped before {run.run_id}; run again to go on")
            return
        with beside(exp) if beside is not None else contextlib.nullcontext():
            before = loadavg()
            t0 = time.monotonic()
            report = run_experiment(
                exp,
                root,
                only=f"{run.run_id}",
                fresh_cluster=fresh_cluster,
                progress=False,
                log=print,
                cluster_factory=cluster_factory(run) if cluster_factory else local_cluster,
            )
        if report.failed:
            raise SystemExit(f"{run.run_id} failed: {report.failed}")
        loads.append(
            {
                "run_id": run.run_id,
                "utc": time.strftime("%H:%M:%S", time.gmtime()),
                "before": before,
                "after": loadavg(),
                "seconds": round(time.monotonic() - t0, 1),
            }
        )
        log_path.write_text(json.dumps(loads, indent=1) + "\n")
        print(
            f"{run.run_id}: {time.monotonic() - t0:.0f} s, load {before} -> {loads[-1]['after']}", flush=True
        )


def saturation_plan(v: Semantics) -> list[tuple[Experiment, PlannedRun]]:
    out = []
    for case in v.cases:
        exp = saturation_experiment(v, case)
        runs = {r.design: r for r in expand(exp).runs}
        out += [(exp, runs[d]) for d in v.designs]
    return out


def point_plan(
    v: Semantics, saturation: Mapping[tuple[str, str], float]
) -> list[tuple[Experiment, PlannedRun]]:
    """Replication-major, then workload, then design: designs interleaved, run after run."""
    per: dict[tuple[str, str], tuple[Experiment, list[PlannedRun]]] = {}
    for case in v.cases:
        for design in v.designs:
            exp = point_experiment(v, case, design, saturation[(case.label, design)])
            per[(case.label, design)] = (exp, expand(exp).runs)
    out = []
    for r in range(v.replications):
        for case in v.cases:
            for design in v.designs:
                exp, runs = per[(case.label, design)]
                out.append((exp, runs[r]))
    return out


# ---------------------------------------------------------------------------- the table
def table(v: Semantics, predictions: Mapping[str, Any], root: Path = RUNS) -> dict[str, Any]:
    sat = measured_saturation(v, root)
    rows = []
    for key, point in predictions["points"].items():
        label, design = key.split(".")
        real: dict[str, list[float]] = {}
        for run in runs_of(root, "real", f"holdout.{label}"):
            if run.design != design or run.workload["arrival"].get("rate") != point["rate"]:
                continue
            for name, value in values_of(run.summary).items():
                real.setdefault(name, []).append(value)
        predicted: dict[str, list[float]] = {}
        for rep in point["replications"]:
            for name, value in rep["values"].items():
                predicted.setdefault(name, []).append(value)
        metrics = {}
        for name in sorted(set(real) | set(predicted), key=_order):
            r_mean, r_ci = mean_ci(real.get(name, []))
            p_mean = mean_ci(predicted.get(name, []))[0]
            devs = spread(_kind_name(name), real.get(name, []))
            metrics[name] = {
                "real": real.get(name, []),
                "real_mean": r_mean,
                "real_ci95": r_ci,
                "predicted": p_mean,
                "error": error_of(_kind_name(name), p_mean, r_mean),
                "floor": statistics.median(devs) if devs else math.nan,
                "kind": "abs" if name in SHARES else "rel",
            }
        rows.append(
            {
                "case": label,
                "design": design,
                "rate": point["rate"],
                "saturation_real": sat.get((label, design), math.nan),
                "saturation_predicted": predictions["saturation"][key],
                "n_real": max((len(x) for x in real.values()), default=0),
                "metrics": metrics,
            }
        )
    return {"points": rows}


def _kind_name(name: str) -> str:
    """A metric name lab.validation.semantics knows the error kind of (shares: abs, else rel)."""
    if name in SHARES:
        return name
    return "done_p50@prio" if "@prio" in name else "p50"


def _order(name: str) -> tuple[int, str]:
    names = [n for n, _ in METRICS]
    return (names.index(name), name) if name in names else (len(names), name)


# ---------------------------------------------------------------------------- output
def stamp(command: str) -> dict[str, Any]:
    """What every results file of the held-out tools starts with: the command, the code version, when,
    and the host's load then."""
    return {
        "command": command,
        "code_version": code_version(),
        "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg_at_start": loadavg(),
    }


def code_version() -> str:
    try:
        return subprocess.run(
            ["git", "describe", "--always", "--dirty"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _fmt(x: float | None) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def _err(name: str, x: float) -> str:
    if math.isnan(x):
        return "-"
    return f"{100 * x:+.1f}pp" if name in SHARES else f"{100 * x:+.0f}%"


def predictions_markdown(pred: Mapping[str, Any]) -> str:
    lines = [
        f"# Held-out Q1-Q3: {pred['title']}",
        "",
        f"Command: `{pred['command']}`  ",
        f"Code: `{pred['code']}`; calibration `{pred['calibration']}`; written {pred['written']}; "
        f"load average at the start {pred['loadavg']}.",
        "",
        "Predicted saturation (requests/s, closed loop of 32 clients that do not wait):",
        "",
        "| workload | design | predicted saturation |",
        "|---|---|---|",
    ]
    for key, s in pred["saturation"].items():
        label, design = key.split(".")
        lines.append(f"| {label} | {design} | {s:.1f} |")
    for warning in pred.get("warnings", ()):
        lines += ["", "Simulator warning: " + " ".join(warning.split())]
    lines += ["", "Predicted points (mean over the 3 simulated replications):", ""]
    names = [n for n, _ in METRICS]
    extra = sorted(
        {n for p in pred["points"].values() for r in p["replications"] for n in r["values"] if "@" in n}
    )
    lines.append("| workload | design | rho | rate | " + " | ".join(names + extra) + " |")
    lines.append("|---|---|---|---|" + "---|" * len(names + extra))
    for p in pred["points"].values():
        vals = {
            n: statistics.fmean([r["values"][n] for r in p["replications"] if n in r["values"]] or [math.nan])
            for n in names + extra
        }
        lines.append(
            f"| {p['case']} | {p['design']} | {p['rho']} | {p['rate']:g} | "
            + " | ".join(_fmt(vals[n]) for n in names + extra)
            + " |"
        )
    return "\n".join(lines) + "\n"


def _rate_text(rate: float | str) -> str:
    return f"rate {rate:g}/s" if isinstance(rate, int | float) else f"{rate} loop"


def results_markdown(res: Mapping[str, Any]) -> str:
    lines = [
        "# Held-out Q1-Q3: measured beside predicted (out of sample; not part of any tuned case)",
        "",
        f"Command: `{res['command']}`  ",
        f"Code: `{res['code']}`; predictions from `{res['predictions']}`; load average over the real runs: "
        f"{res['loadavg_summary']}.",
        "",
        "Per point: real mean [95% CI half-width] over the replications, predicted (mean of 3 simulated "
        "replications), error (relative; shares in fraction points), and the real run-to-run floor (median "
        "deviation of a replication from the point's mean, same units).",
        "",
    ]
    for row in res["points"]:
        lines += [
            f"## {row['case']} {row['design']}: {_rate_text(row['rate'])}; saturation real "
            f"{_fmt(row['saturation_real'])}, predicted {_fmt(row['saturation_predicted'])} "
            f"(n={row['n_real']})",
            "",
            "| metric | real | CI95 | predicted | error | floor |",
            "|---|---|---|---|---|---|",
        ]
        for name, m in row["metrics"].items():
            lines.append(
                f"| {name} | {_fmt(m['real_mean'])} | {_fmt(m['real_ci95'])} | {_fmt(m['predicted'])} | "
                f"{_err(name, m['error'])} | {_err(name, m['floor'])} |"
            )
        lines.append("")
    return "\n".join(lines)


def _write(name: str, data: Mapping[str, Any], markdown: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    write_json(OUT / f"{name}.json", data)
    (OUT / f"{name}.md").write_text(markdown)
    print(f"wrote {OUT / name}.json and .md")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lab.validation.holdout", description=__doc__.split("\n")[0])
    p.add_argument("stage", choices=["predict", "saturation", "predict-at", "real", "table"])
    p.add_argument("--calibration", default="local")
    args = p.parse_args(argv)
    v = holdout(args.calibration)
    command = "python -m lab.validation.holdout " + " ".join(sys.argv[1:] if argv is None else argv)
    stamp = {
        "command": command,
        "code": code_version(),
        "calibration": v.calibration,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg": loadavg(),
    }
    if args.stage in ("predict", "predict-at"):
        measured = None
        if args.stage == "predict-at":
            measured = measured_saturation(v)
            missing = [(c.label, d) for c in v.cases for d in v.designs if (c.label, d) not in measured]
            if missing:
                raise SystemExit(f"no real saturation for {missing}: run the saturation stage first")
        with warnings.catch_warnings(record=True) as caught:  # the placeholder costs, kept in the file
            warnings.simplefilter("always")
            pred = {**stamp, **predict(v, measured)}
        pred["warnings"] = sorted({str(w.message) for w in caught})
        if measured is None:
            pred["title"] = "predictions at rho x the PREDICTED saturation (before any real run)"
            _write("predictions-apriori", pred, predictions_markdown(pred))
        else:
            pred["title"] = "predictions at rho x the MEASURED saturation (before the real points)"
            pred["measured_saturation"] = {f"{c}.{d}": s for (c, d), s in measured.items()}
            _write("predictions", pred, predictions_markdown(pred))
    elif args.stage == "saturation":
        run_real(saturation_plan(v))
    elif args.stage == "real":
        pred = json.loads((OUT / "predictions.json").read_text())
        bases = {(p["case"], p["design"]): float(p["base_saturation"]) for p in pred["points"].values()}
        run_real(point_plan(v, bases))
    else:
        pred = json.loads((OUT / "predictions.json").read_text())
        loads = json.loads((OUT / "loadavg.json").read_text())
        one_minute = [x["before"][0] for x in loads] + [x["after"][0] for x in loads]
        res = {
            **stamp,
            "predictions": str(OUT / "predictions.json"),
            "loadavg": loads,
            "loadavg_summary": f"1-min load {min(one_minute):.1f}-{max(one_minute):.1f} "
            f"(median {statistics.median(one_minute):.1f}) on 2 cores",
            **table(v, pred),
        }
        _write("results", res, results_markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
