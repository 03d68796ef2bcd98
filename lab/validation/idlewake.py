"""The held-out tests of `wakeup_idle_scope` (issue 23, data/validation/idlewake/README.md), one
registration folder each (--folder): closed loops of one client with a constant think time (0, 3, 10,
30 ms: how long the host sleeps between jobs; data/validation/idlewake, the default), and open loops at
low rate on a quiet host and beside a CPU-busy neighbour (data/validation/idlewake/overlap: an
experiment named *_busy runs beside one spin loop, its twin beside one always-running background
process). Each is predicted with the scopes from one calibration and committed, run for real, scored.

Stages (`python -m lab.validation.idlewake STAGE`; `real` under `flock /tmp/dtq-measure.lock`):
  predict  every planned run of the folder's *.yaml simulated with each scope (--scopes), at the
           calibration's host speed (no probe exists before the runs): predictions.{json,md}
  predict-late  the same for the scope thought of after the registration ("overlap"):
           predictions-overlap.{json,md}
  real     the real runs, replication-major, then think time or rate, then design, then quiet before
           busy (a fresh cluster per run, the load average before and after each in loadavg.json); no
           new run after --budget seconds
  table    per point and metric (submit p50, completion p50, jobs/s) each scope's relative error of its
           mean against the real replications' mean, beside their floor (median |x - mean| / mean),
           and, where a *_busy point has its *_quiet one, the signed contrast busy / quiet - 1, real
           against each scope: results.{json,md}
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import sim
from lab.experiment.plan import PlannedRun, expand
from lab.experiment.spec import Experiment, load_experiment
from lab.validation import holdout
from lab.validation.background import kernel_slice
from model.results.runs import load_summary
from model.workload import ClosedLoop, OpenLoop
from sim.params import calibration_path, load_params

OUT = Path("data/validation/idlewake")
RUNS = Path("data/runs")
SCOPES = ("process", "host")  # registered before the runs (predictions.json)
ALL_SCOPES = ("process", "host", "overlap")
LATE_SCOPES = ("overlap",)  # predicted after the runs, blind to them (predictions-overlap.json)
# name, where in a run's summary: submit p50 (every request is a submit), completion p50, jobs/s
METRICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("submit_p50_ms", ("latency_ms", "all", "p50")),
    ("done_p50_ms", ("completion_ms", "p50")),
    ("jobs_per_s", ("throughput", "requests_per_s")),
)


# The CPU-busy neighbour of a *_busy experiment: one pure-Python spin loop outside the cluster, started
# before the run's cluster and stopped after it; it ends by itself after NEIGHBOUR_MAX_S if we die.
BUSY_SUFFIX = "_busy"
QUIET_SUFFIX = "_quiet"
NEIGHBOUR_MAX_S = 90.0
SPIN = (
    "import sys, time\nend = time.monotonic() + float(sys.argv[1])\nwhile time.monotonic() < end:\n    pass\n"
)
# ... and its twin: one background process per host that is always runnable (1 ms bursts, no sleep)
NEIGHBOUR_TWIN: dict[str, Any] = {
    "background_procs": 1,
    "background_run": {"kind": "constant", "mean": 0.001},
    "background_sleep": {"kind": "constant", "mean": 0.0},
}


def busy(exp: Experiment) -> bool:
    return exp.name.endswith(BUSY_SUFFIX)


def start_neighbour(seconds: float = NEIGHBOUR_MAX_S) -> subprocess.Popen[bytes]:
    """One core kept busy by a process of its own, for at most `seconds` (stop it with stop_neighbour)."""
    return subprocess.Popen([sys.executable, "-c", SPIN, str(seconds)])


def stop_neighbour(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def neighbour_of(exp: Experiment) -> Iterator[None]:
    """The spinning neighbour for the duration of a run of a *_busy experiment; nothing for others."""
    if not busy(exp):
        yield
        return
    proc = start_neighbour()
    try:
        yield
    finally:
        stop_neighbour(proc)


def values_of(summary: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, path in METRICS:
        value: Any = summary
        for key in path:
            value = value[key]
        out[name] = float(value)
    return out


def experiments(folder: Path = OUT) -> list[Experiment]:
    """The folder's experiments (its *.yaml), quiet before busy."""
    return sorted((load_experiment(p) for p in sorted(folder.glob("*.yaml"))), key=busy)


def load_of(run: PlannedRun) -> float:
    """What sets how long the host sleeps: a closed loop's think time, an open loop's rate."""
    arrival = run.workload.arrival
    if isinstance(arrival, ClosedLoop):
        return arrival.think_time.mean
    if isinstance(arrival, OpenLoop):
        return arrival.rate
    raise ValueError(f"{run.run_id}: neither an open nor a closed loop")


def plan(exps: Sequence[Experiment]) -> list[tuple[Experiment, PlannedRun]]:
    """Replication-major, then think time or rate, then design, then quiet before busy: drift over the
    hold is spread over the points, and a busy run follows its quiet twin."""
    runs = [(exp, run) for exp in exps for run in expand(exp).runs]
    return sorted(runs, key=lambda er: (er[1].replication, load_of(er[1]), er[1].design, busy(er[0])))


def point_of(run: PlannedRun) -> str:
    """The run id less its seed and replication: one point."""
    return run.run_id.rsplit("-", 2)[0]


def simulate(
    calibration: str,
    run: PlannedRun,
    scope: str,
    neighbour: bool = False,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, float]:
    """One twin of `run` with the given wakeup scope, beside the neighbour's twin if `neighbour`, with
    the `extra` overrides (a variant: the fair host's `cpu_slice`)."""
    overrides: dict[str, Any] = {"slots": run.slots, "store": run.store, "wakeup_idle_scope": scope}
    if neighbour:
        overrides.update(NEIGHBOUR_TWIN)
    params = load_params(calibration).with_overrides({**overrides, **(extra or {})})
    config = sim.SimConfig(run.design, run.workload, params, replication=run.replication)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # placeholder costs: named by `dtq sim params`
        return values_of(sim.run(config).summary)


def _point_entry(exp: Experiment, run: PlannedRun) -> dict[str, Any]:
    closed = isinstance(run.workload.arrival, ClosedLoop)
    entry: dict[str, Any] = {"design": run.design, "think_s": load_of(run) if closed else None}
    if not closed:
        entry["rate"] = load_of(run)
    if busy(exp):
        entry["neighbour"] = True
    return {**entry, "replications": []}


def predict(
    calibration: str, scopes: Sequence[str] = SCOPES, folder: Path = OUT, cpu_slice: float | None = None
) -> dict[str, Any]:
    """Each planned run of the folder simulated with each scope; with `cpu_slice`, each also on a fair
    host with that slice (the variants named "<scope>+fair")."""
    path = calibration_path(calibration)
    variants: dict[str, tuple[str, dict[str, Any]]] = {scope: (scope, {}) for scope in scopes}
    if cpu_slice is not None:
        variants.update({f"{scope}+fair": (scope, {"cpu_slice": cpu_slice}) for scope in scopes})
    points: dict[str, Any] = {}
    for exp, run in plan(experiments(folder)):
        entry = points.setdefault(point_of(run), _point_entry(exp, run))
        twins = {
            name: simulate(calibration, run, scope, busy(exp), extra)
            for name, (scope, extra) in variants.items()
        }
        entry["replications"].append({"run_id": run.run_id, **twins})
    scopes = list(variants)
    for entry in points.values():
        for scope in scopes:
            entry[scope] = {
                m: statistics.fmean(r[scope][m] for r in entry["replications"]) for m, _ in METRICS
            }
    return {
        "made_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "commit": holdout.code_version(),
        "calibration": str(path),
        "calibration_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        "host_scale": False,
        "neighbour_twin": NEIGHBOUR_TWIN,
        "cpu_slice_fair": cpu_slice,
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
        _row(["point", "design", "load", *(f"{m} {s}" for m, _ in METRICS for s in scopes)]),
        _row(["---"] * (3 + len(METRICS) * len(scopes))),
    ]
    for name, p in pred["points"].items():
        cells = [f"{p[s][m]:.3f}" if "ms" in m else f"{p[s][m]:.0f}" for m, _ in METRICS for s in scopes]
        lines.append(_row([name, p["design"], _load_text(p), *cells]))
    return "\n".join(lines) + "\n"


def _load_text(p: Mapping[str, Any]) -> str:
    if p.get("think_s") is not None:
        return f"think {1e3 * p['think_s']:g} ms"
    return f"{p['rate']:g}/s" + (" + neighbour" if p.get("neighbour") else "")


def run_real(budget: float, root: Path = RUNS, folder: Path = OUT) -> None:
    """Each planned run on a fresh cluster, in plan order, a *_busy one beside the spinning neighbour;
    the load average before and after each (lab.validation.holdout.run_real)."""
    holdout.run_real(
        plan(experiments(folder)),
        root,
        budget=budget,
        log_path=folder / "loadavg.json",
        fresh_cluster=True,
        beside=neighbour_of,
    )


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
        row: dict[str, Any] = {
            "point": name,
            "design": p["design"],
            "think_s": p["think_s"],
            "n": len(real),
            **{k: p[k] for k in ("rate", "neighbour") if k in p},
        }
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
    return {
        "predictions_made_at": pred["made_at"],
        "scopes": list(scopes),
        "rows": rows,
        "medians": medians,
        "contrasts": contrasts(pred, rows, scopes),
    }


LATENCY = ("submit_p50_ms", "done_p50_ms")


def contrast_scores(res: Mapping[str, Any]) -> dict[str, Any]:
    """The overlap registration's rule 1 over the latency contrasts: per scope the median |real - its
    predicted contrast|, the median noise, and how many real contrasts were lower (< -noise), higher
    (> +noise) or neither."""
    cells = [c[m] for c in res.get("contrasts", []) for m in LATENCY]
    if not cells:
        return {}
    signs = {"lower": 0, "higher": 0, "no change": 0}
    for v in cells:
        signs[
            "lower" if v["real"] < -v["noise"] else "higher" if v["real"] > v["noise"] else "no change"
        ] += 1
    return {
        "n": len(cells),
        "noise": statistics.median(v["noise"] for v in cells),
        "signs": signs,
        "miss": {s: statistics.median(abs(v["real"] - v[s]) for v in cells) for s in res["scopes"]},
    }


def contrasts(
    pred: Mapping[str, Any], rows: Sequence[Mapping[str, Any]], scopes: Sequence[str]
) -> list[dict[str, Any]]:
    """Per *_busy point with its *_quiet point and metric: busy / quiet - 1 of the real means, its noise
    (the two points' floors added) and each scope's predicted busy / quiet - 1."""
    by_name = {r["point"]: r for r in rows}
    out: list[dict[str, Any]] = []
    for name, row in by_name.items():
        exp = name.split("-", 2)[2].split(".", 1)[0]
        if not exp.endswith(BUSY_SUFFIX):
            continue
        quiet_name = name.replace(exp, exp[: -len(BUSY_SUFFIX)] + QUIET_SUFFIX, 1)
        quiet = by_name.get(quiet_name)
        if quiet is None:
            continue
        entry: dict[str, Any] = {"busy": name, "quiet": quiet_name}
        for m, _ in METRICS:
            entry[m] = {
                "real": row[m]["real"] / quiet[m]["real"] - 1,
                "noise": row[m]["floor"] + quiet[m]["floor"],
                **{s: pred["points"][name][s][m] / pred["points"][quiet_name][s][m] - 1 for s in scopes},
            }
        out.append(entry)
    return out


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
    if res.get("contrasts"):
        lines += [
            "",
            "With / without the neighbour: busy / quiet - 1 of the means (noise: the two floors added).",
            "",
            _row(["busy point", "metric", "real", "noise", *scopes]),
            _row(["---"] * (4 + len(scopes))),
        ]
        for c in res["contrasts"]:
            for m, _ in METRICS:
                v = c[m]
                cells = [f"{v['real']:+.3f}", f"{v['noise']:.3f}", *(f"{v[s]:+.3f}" for s in scopes)]
                lines.append(_row([c["busy"], m, *cells]))
        score = contrast_scores(res)
        lines += [
            "",
            f"Latency contrasts ({score['n']}): real lower / higher / no change beyond the noise: "
            f"{score['signs']['lower']} / {score['signs']['higher']} / {score['signs']['no change']}; "
            f"median noise {score['noise']:.3f}; median |real - predicted| contrast: "
            + ", ".join(f"{s} {v:.3f}" for s, v in score["miss"].items()),
        ]
    return "\n".join(lines) + "\n"


def _write(folder: Path, name: str, data: Mapping[str, Any], markdown: str) -> None:
    (folder / f"{name}.json").write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    (folder / f"{name}.md").write_text(markdown)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.validation.idlewake", description=__doc__)
    parser.add_argument("stage", choices=("predict", "predict-late", "real", "table"))
    parser.add_argument("--calibration", default="vx-fixed", help="a name under data/calibration or a path")
    parser.add_argument(
        "--budget", type=float, default=540.0, help="real: no new run after this many seconds (0: no limit)"
    )
    parser.add_argument("--force", action="store_true", help="predict: overwrite committed predictions")
    parser.add_argument(
        "--folder", type=Path, default=OUT, help="the registration folder: its *.yaml, predictions, results"
    )
    parser.add_argument(
        "--fair",
        action="store_true",
        help="predict: each scope also on a fair host (cpu_slice: the calibration's measured slice)",
    )
    parser.add_argument(
        "--scopes",
        nargs="+",
        choices=ALL_SCOPES,
        default=list(SCOPES),
        help="predict: the scopes to simulate",
    )
    args = parser.parse_args(argv)
    folder: Path = args.folder
    if args.stage == "predict":
        if (folder / "predictions.json").exists() and not args.force:
            raise SystemExit(f"{folder / 'predictions.json'} exists (registered): --force to overwrite")
        cpu_slice = kernel_slice(args.calibration) if args.fair else None
        pred = predict(args.calibration, args.scopes, folder, cpu_slice)
        _write(folder, "predictions", pred, predictions_markdown(pred))
        print(predictions_markdown(pred))
    elif args.stage == "predict-late":  # the scopes thought of after the registration
        if (folder / "predictions-overlap.json").exists() and not args.force:
            raise SystemExit("predictions-overlap.json exists: --force to overwrite")
        pred = predict(args.calibration, LATE_SCOPES, folder)
        _write(folder, "predictions-overlap", pred, predictions_markdown(pred))
        print(predictions_markdown(pred))
    elif args.stage == "real":
        run_real(args.budget, folder=folder)
    else:
        late_path = folder / "predictions-overlap.json"
        late = json.loads(late_path.read_text()) if late_path.exists() else None
        res = table(merged(json.loads((folder / "predictions.json").read_text()), late)[0])
        _write(folder, "results", res, results_markdown(res))
        print(results_markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
