"""The held-out test of `wakeup_idle_scope` (issue 23, data/validation/idlewake/README.md): closed loops
of one client with a constant think time (0, 3, 10, 30 ms: how long the host sleeps between jobs),
predicted with both scopes from one calibration and committed, then run for real, then scored.

Stages (`python -m lab.validation.idlewake STAGE`; `real` under `flock /tmp/dtq-measure.lock`):
  predict  every planned run of data/validation/idlewake/think*.yaml simulated with each scope, at the
           calibration's host speed (no probe exists before the runs): predictions.{json,md}
  predict-late  the same for the scope thought of after the registration ("overlap"):
           predictions-overlap.{json,md}
  real     the real runs, replication-major, then think time, then design (a fresh cluster per run, the
           load average before and after each in loadavg.json); no new run after --budget seconds
  table    per point and metric (submit p50, completion p50, jobs/s) each scope's relative error of its
           mean against the real replications' mean, beside their floor (median |x - mean| / mean):
           results.{json,md}
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import sim
from lab.experiment.plan import PlannedRun, expand
from lab.experiment.runner import run_experiment
from lab.experiment.spec import Experiment, load_experiment
from lab.validation.holdout import loadavg
from model.results.runs import load_summary, run_exists
from sim.params import calibration_path, load_params

OUT = Path("data/validation/idlewake")
RUNS = Path("data/runs")
SCOPES = ("process", "host")  # registered before the runs (predictions.json)
LATE_SCOPES = ("overlap",)  # predicted after the runs, blind to them (predictions-overlap.json)
# name, where in a run's summary: submit p50 (every request is a submit), completion p50, jobs/s
METRICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("submit_p50_ms", ("latency_ms", "all", "p50")),
    ("done_p50_ms", ("completion_ms", "p50")),
    ("jobs_per_s", ("throughput", "requests_per_s")),
)


def values_of(summary: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, path in METRICS:
        value: Any = summary
        for key in path:
            value = value[key]
        out[name] = float(value)
    return out


def experiments(folder: Path = OUT) -> list[Experiment]:
    """The think-time experiments, by think time."""
    exps = [load_experiment(p) for p in sorted(folder.glob("think*.yaml"))]
    return sorted(exps, key=lambda e: float(e.base["arrival"]["think_time"]["mean"]))


def plan(exps: Sequence[Experiment]) -> list[tuple[Experiment, PlannedRun]]:
    """Replication-major, then think time, then design: drift over the hold is spread over the points."""
    runs = [(exp, run) for exp in exps for run in expand(exp).runs]
    return sorted(runs, key=lambda er: (er[1].replication, exps.index(er[0]), er[1].design))


def point_of(run: PlannedRun) -> str:
    """The run id less its seed and replication: one point."""
    return run.run_id.rsplit("-", 2)[0]


def simulate(calibration: str, run: PlannedRun, scope: str) -> dict[str, float]:
    params = load_params(calibration).with_overrides(
        {"slots": run.slots, "store": run.store, "wakeup_idle_scope": scope}
    )
    config = sim.SimConfig(run.design, run.workload, params, replication=run.replication)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # placeholder costs: named by `dtq sim params`
        return values_of(sim.run(config).summary)


def _git() -> str:
    return subprocess.run(
        ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()


def predict(calibration: str, scopes: Sequence[str] = SCOPES) -> dict[str, Any]:
    path = calibration_path(calibration)
    points: dict[str, Any] = {}
    for _, run in plan(experiments()):
        entry = points.setdefault(
            point_of(run),
            {"design": run.design, "think_s": run.workload.arrival.think_time.mean, "replications": []},  # type: ignore[union-attr]
        )
        entry["replications"].append(
            {"run_id": run.run_id, **{scope: simulate(calibration, run, scope) for scope in scopes}}
        )
    for entry in points.values():
        for scope in scopes:
            entry[scope] = {
                m: statistics.fmean(r[scope][m] for r in entry["replications"]) for m, _ in METRICS
            }
    return {
        "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": _git(),
        "calibration": str(path),
        "calibration_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "host_scale": False,
        "scopes": list(scopes),
        "points": points,
    }


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def predictions_markdown(pred: Mapping[str, Any]) -> str:
    scopes = pred.get("scopes", SCOPES)
    lines = [
        f"Predictions made {pred['made_at']} at commit {pred['commit'][:10]} from {pred['calibration']} "
        f"(sha256 {pred['calibration_sha256'][:12]}), at the calibration's host speed; mean of the "
        "replications' twins (same workload and seed as the real replication r).",
        "",
        _row(["point", "design", "think ms", *(f"{m} {s}" for m, _ in METRICS for s in scopes)]),
        _row(["---"] * (3 + len(METRICS) * len(scopes))),
    ]
    for name, p in pred["points"].items():
        cells = [f"{p[s][m]:.3f}" if "ms" in m else f"{p[s][m]:.0f}" for m, _ in METRICS for s in scopes]
        lines.append(_row([name, p["design"], f"{1e3 * p['think_s']:g}", *cells]))
    return "\n".join(lines) + "\n"


def run_real(budget: float, root: Path = RUNS) -> None:
    """Each planned run on a fresh cluster, in plan order; the load average before and after each."""
    log_path = OUT / "loadavg.json"
    loads: list[dict[str, Any]] = json.loads(log_path.read_text()) if log_path.exists() else []
    start = time.monotonic()
    for exp, run in plan(experiments()):
        if run_exists(root, run.run_id):
            continue
        if time.monotonic() - start > budget:
            print(f"budget of {budget:g} s spent: stopped before {run.run_id}", flush=True)
            return
        before, t0 = loadavg(), time.monotonic()
        report = run_experiment(exp, root, only=run.run_id, fresh_cluster=True, progress=False, log=print)
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
        print(f"{run.run_id}: {loads[-1]['seconds']} s, load {before} -> {loads[-1]['after']}", flush=True)


def _err(sim_value: float, real: float) -> float:
    return (sim_value - real) / real


def merged(pred: Mapping[str, Any], late: Mapping[str, Any] | None) -> tuple[dict[str, Any], list[str]]:
    """The registered predictions with the late ones' scopes added per point, and the scopes."""
    scopes = list(pred.get("scopes", SCOPES))
    points = {name: dict(p) for name, p in pred["points"].items()}
    if late is not None:
        for scope in late["scopes"]:
            scopes.append(scope)
            for name, p in late["points"].items():
                points[name][scope] = p[scope]
    return {**pred, "points": points, "scopes": scopes}, scopes


def table(pred: Mapping[str, Any], root: Path = RUNS) -> dict[str, Any]:
    scopes = pred.get("scopes", SCOPES)
    rows: list[dict[str, Any]] = []
    for name, p in pred["points"].items():
        real = [
            values_of(load_summary(root / r["run_id"]))
            for r in p["replications"]
            if (root / r["run_id"]).is_dir()
        ]
        if not real:
            continue
        row: dict[str, Any] = {"point": name, "design": p["design"], "think_s": p["think_s"], "n": len(real)}
        for m, _ in METRICS:
            xs = [r[m] for r in real]
            mean = statistics.fmean(xs)
            row[m] = {
                "real": mean,
                "real_min": min(xs),
                "real_max": max(xs),
                "floor": statistics.median(abs(x - mean) / mean for x in xs),
                **{s: _err(p[s][m], mean) for s in scopes},
            }
        rows.append(row)
    medians = {
        m: {
            "floor": statistics.median(r[m]["floor"] for r in rows),
            **{s: statistics.median(abs(r[m][s]) for r in rows) for s in scopes},
        }
        for m, _ in METRICS
    }
    return {"predictions_made_at": pred["made_at"], "scopes": list(scopes), "rows": rows, "medians": medians}


def results_markdown(res: Mapping[str, Any]) -> str:
    scopes = res.get("scopes", SCOPES)
    lines = [
        "Relative error (sim - real) / real of each scope's registered prediction against the real "
        "replications' mean; floor: their median |x - mean| / mean.",
        "",
        _row(["point", "n", "metric", "real mean [min-max]", "floor", *scopes]),
        _row(["---"] * (5 + len(scopes))),
    ]
    for r in res["rows"]:
        for m, _ in METRICS:
            c = r[m]
            fmt = "{:.3f}" if "ms" in m else "{:.0f}"
            real = f"{fmt.format(c['real'])} [{fmt.format(c['real_min'])}-{fmt.format(c['real_max'])}]"
            lines.append(
                _row(
                    [r["point"], str(r["n"]), m, real, f"{c['floor']:.3f}", *(f"{c[s]:+.3f}" for s in scopes)]
                )
            )
    lines += ["", _row(["median over points", "floor", *(f"|err| {s}" for s in scopes)])]
    lines.append(_row(["---"] * (2 + len(scopes))))
    for m, v in res["medians"].items():
        lines.append(_row([m, f"{v['floor']:.3f}", *(f"{v[s]:.3f}" for s in scopes)]))
    return "\n".join(lines) + "\n"


def _write(name: str, data: Mapping[str, Any], markdown: str) -> None:
    (OUT / f"{name}.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    (OUT / f"{name}.md").write_text(markdown)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.validation.idlewake", description=__doc__)
    parser.add_argument("stage", choices=("predict", "predict-late", "real", "table"))
    parser.add_argument("--calibration", default="vx-fixed", help="a name under data/calibration or a path")
    parser.add_argument(
        "--budget", type=float, default=540.0, help="real: no new run after this many seconds"
    )
    parser.add_argument("--force", action="store_true", help="predict: overwrite committed predictions")
    args = parser.parse_args(argv)
    if args.stage == "predict":
        if (OUT / "predictions.json").exists() and not args.force:
            raise SystemExit("predictions.json exists (registered): --force to overwrite")
        pred = predict(args.calibration)
        _write("predictions", pred, predictions_markdown(pred))
        print(predictions_markdown(pred))
    elif args.stage == "predict-late":  # the scopes thought of after the registration
        if (OUT / "predictions-overlap.json").exists() and not args.force:
            raise SystemExit("predictions-overlap.json exists: --force to overwrite")
        pred = predict(args.calibration, LATE_SCOPES)
        _write("predictions-overlap", pred, predictions_markdown(pred))
        print(predictions_markdown(pred))
    elif args.stage == "real":
        run_real(args.budget)
    else:
        late_path = OUT / "predictions-overlap.json"
        late = json.loads(late_path.read_text()) if late_path.exists() else None
        res = table(merged(json.loads((OUT / "predictions.json").read_text()), late)[0])
        _write("results", res, results_markdown(res))
        print(results_markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
