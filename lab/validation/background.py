"""The host's background load in a run's twin (issue 23): from the load a run's host probe measured to
the simulator's `background_*` keys (sim/cpu.py start_background), its one free factor fitted on
in-sample runs only, and the held-out H5-H8 predicted with and without it.

The mapping (`overrides`): the host's other runnable processes are taken as m = K x the 1-minute load
average at the run's start (the probe's `loadavg_1m`; the only load figure every in-sample run carries),
run as n = ceil(m) background processes, each running RUN_MEAN seconds (exponential) and sleeping so that
n of them are runnable m on average; the host shares its cores as the fair scheduler (`cpu_slice` = the
kernel slice the calibration measured). K is the one fitted number (`fit`).

    python -m lab.validation.background fit [--k 0.05 0.1 ...]     # in-sample: the matrix + extended
    python -m lab.validation.background predict --k K               # H5-H8, before their real runs
    python -m lab.validation.background real [--budget S]           # under flock /tmp/dtq-measure.lock
    python -m lab.validation.background table --k K                 # H5-H8 measured beside predicted

`--tag T` (real, table) makes and scores a re-run of the same H5-H8 runs under new names: experiments
`holdout_h5_T`..., the load log `loadavg-h5h8-T.json`, the scores `results-h5h8-T.{json,md}`; the
committed predictions are looked up by the untagged run id (same workload, seed and replication).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import sim
from lab.experiment.plan import PlannedRun, expand
from lab.experiment.spec import Experiment, experiment_from_mapping
from lab.validation import closed_loop, holdout
from model.results.runs import load_workload
from model.workload import workload_from_mapping, workload_to_mapping
from sim.params import load_params

CALIBRATION = "vx-before"
RUN_MEAN = 0.003  # seconds: a background process's CPU run (exponential), about one kernel slice
MIN_RUNNABLE = 0.05  # below this many background processes' worth: none
OUT = Path("data/validation/extended")
PRE = OUT / "holdout-h5h8.json"
PREDICTIONS = OUT / "predictions-h5h8.json"
FIT = OUT / "background-fit.json"
LOADAVG = "loadavg-h5h8.json"  # under data/experiments/holdout/ (holdout.run_real)
WORKLOADS = {
    "h5": "h5-sparse-wait.yaml",
    "h6": "h6-status-poll.yaml",
    "h7": "h7-mixture-wait.yaml",
    "h8": "h8-cpu-nowait.yaml",
}
# the in-sample runs the factor is fitted on: (glob under data/runs, the calibration they are twinned
# from, every n-th point kept: the matrix is large and the host shared)
IN_SAMPLE = (
    ("real-*-validation.*", "local", 10),  # the 2026-12-04 matrix (open loops, 80 points): every 10th
    ("real-*-vx_closed.*", CALIBRATION, 3),  # the extended matrix's closed loops (18 points)
    ("real-*-vx_jobs_*", CALIBRATION, 4),  # its job kinds (12 points)
    ("real-*-vx_payload16k.*", CALIBRATION, 4),  # its 16 KiB payloads (8 points)
)
METRICS = ("throughput", "p50", "p95", "p99", "width", "done_p50")


def kernel_slice(calibration: str = CALIBRATION) -> float:
    """The kernel's slice the calibration measured (seconds; measurements.scheduler_slice run_ms_p50)."""
    doc = json.loads(Path(f"data/calibration/{calibration}.json").read_text())
    measured = doc.get("measurements", {}).get("scheduler_slice")
    return float(measured["run_ms_p50"]) / 1e3 if measured else 0.003


def overrides(load: float, k: float, cpu_slice: float) -> dict[str, Any]:
    """The simulator keys for a host whose other processes are k x `load` runnable on average."""
    m = k * max(load, 0.0)
    out: dict[str, Any] = {"cpu_slice": cpu_slice}
    if m < MIN_RUNNABLE:
        return out
    n = math.ceil(m)
    duty = m / n
    sleep = RUN_MEAN * (1 - duty) / duty
    out["background_procs"] = n
    out["background_run"] = {"kind": "exponential", "mean": RUN_MEAN}
    out["background_sleep"] = (
        {"kind": "exponential", "mean": sleep} if sleep > 1e-6 else {"kind": "constant", "mean": 1e-6}
    )
    return out


def run_load(cfg: Mapping[str, Any]) -> float:
    """The 1-minute load average a real run's host probe recorded at its start (0 without a probe)."""
    probe = cfg.get("parameters", {}).get("host_probe") or {}
    return float(probe.get("loadavg_1m", 0.0))


def conditioned(k: float, cpu_slice: float) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """A closed_loop variant: each run's twin with the background its own probe measured."""
    return lambda cfg: overrides(run_load(cfg), k, cpu_slice)


# ---------------------------------------------------------------------------- scoring
def widths(result: Mapping[str, Any]) -> dict[str, Any]:
    """Per variant: the median |error| and signed median error of each METRICS over the points, with
    the real floor; `width` is p99/p50 (its floor from the replications' own widths)."""
    idx = {m: closed_loop.METRICS.index(m) for m in ("requests_per_s", "p50", "p95", "p99", "done_p50")}
    names = [n for n in result["points"][0] if n.endswith(" twins")] if result["points"] else []
    out: dict[str, Any] = {"points": len(result["points"])}
    floors: dict[str, list[float]] = {m: [] for m in METRICS}
    errs: dict[str, dict[str, list[float]]] = {n[: -len(" twins")]: {m: [] for m in METRICS} for n in names}
    for row in result["points"]:
        real = np.asarray(row["real"])
        reps = np.asarray(row["real_replications"])
        rep_w = reps[:, idx["p99"]] / reps[:, idx["p50"]]
        real_w = float(np.mean(rep_w))
        spread = row["spread"]
        for metric, key in (("throughput", "requests_per_s"), ("p50", "p50"), ("p95", "p95"), ("p99", "p99")):
            floors[metric].append(spread[idx[key]])
        floors["done_p50"].append(spread[idx["done_p50"]])
        floors["width"].append(float(np.median(np.abs(rep_w - real_w) / real_w)))
        for name in errs:
            twin = np.asarray(row[f"{name} twins"])
            for metric, key in (
                ("throughput", "requests_per_s"),
                ("p50", "p50"),
                ("p95", "p95"),
                ("p99", "p99"),
                ("done_p50", "done_p50"),
            ):
                errs[name][metric].append(float(twin[idx[key]] / real[idx[key]] - 1))
            errs[name]["width"].append(float((twin[idx["p99"]] / twin[idx["p50"]]) / real_w - 1))
    out["floor"] = {m: _median(v) for m, v in floors.items()}
    for name, by in errs.items():
        out[name] = {m: _median([abs(x) for x in v]) for m, v in by.items()}
        out[f"{name} bias"] = {m: _median(v) for m, v in by.items()}
    return out


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(statistics.median(finite)) if finite else math.nan


def objective(scores: Mapping[str, float]) -> float:
    """What the fit minimises: the mean of the median |errors| of throughput, p50, p99 and the width."""
    return float(np.mean([scores[m] for m in ("throughput", "p50", "p99", "width")]))


def fit(ks: Sequence[float], log: Any = print) -> dict[str, Any]:
    """Every in-sample group twinned as is, on the fair scheduler alone, and with the background at
    each k (every n-th point of each group, IN_SAMPLE)."""
    cpu_slice = kernel_slice()
    out: dict[str, Any] = {"ks": list(ks), "cpu_slice": cpu_slice, "groups": {}}
    for pattern, calibration, stride in IN_SAMPLE:
        points = closed_loop.points(holdout.RUNS, pattern)
        keep = sorted(points)[::stride]
        variants: dict[str, closed_loop.Overrides] = {"as is": {}, "fair only": {"cpu_slice": cpu_slice}}
        for k in ks:
            variants[f"k={k:g}"] = conditioned(k, cpu_slice)
        t0 = time.monotonic()
        result = _compare(calibration, variants, {p: points[p] for p in keep})
        scores = widths(result)
        scores["loadavg_1m"] = [
            run_load(json.loads((d / "config.json").read_text())) for p in keep for d in points[p]
        ]
        out["groups"][pattern] = scores
        log(f"{pattern}: {len(keep)} points, {time.monotonic() - t0:.0f} s")
        for name in variants:
            log(f"  {name:<10} objective {objective(scores[name]):.3f} " + _line(scores[name]))
        log(f"  {'floor':<10}                   " + _line(scores["floor"]))
    totals = {
        name: float(np.mean([objective(g[name]) for g in out["groups"].values()]))
        for name in ["as is", "fair only", *(f"k={k:g}" for k in ks)]
    }
    out["objective"] = totals
    best = min((k for k in ks), key=lambda k: totals[f"k={k:g}"])
    out["best_k"] = best
    return out


def _line(scores: Mapping[str, float]) -> str:
    return " ".join(f"{m} {scores[m]:.2f}" for m in METRICS)


def _compare(
    calibration: str, variants: Mapping[str, closed_loop.Overrides], points: Mapping[str, list[Path]]
) -> dict[str, Any]:
    """closed_loop.compare over the given points only (no distances: the W1 needs records)."""
    rows = []
    for point, dirs in points.items():
        real = np.array([closed_loop.metrics(json.loads((d / "summary.json").read_text())) for d in dirs])
        mean = real.mean(axis=0)
        row: dict[str, Any] = {
            "point": point,
            "real": mean.tolist(),
            "real_replications": real.tolist(),
            "spread": np.median(np.abs(real - mean) / mean, axis=0).tolist(),
        }
        for name, over in variants.items():
            twins = [closed_loop.metrics(_twin(calibration, d, over).summary) for d in dirs]
            row[f"{name} twins"] = np.array(twins).mean(axis=0).tolist()
        rows.append(row)
    return {"points": rows}


def _twin(calibration: str, run: Path, over: closed_loop.Overrides, host_scale: bool = True) -> sim.SimResult:
    cfg = json.loads((run / "config.json").read_text())
    config = sim.SimConfig(
        cfg["design"],
        workload_from_mapping(cfg["workload"]),
        closed_loop._params(calibration, cfg, over, host_scale),
        replication=int(cfg.get("replication", 0)),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # placeholder costs: named by `dtq sim params`
        return sim.run(config)


# ---------------------------------------------------------------------------- held-out H5-H8
TAG = re.compile(r"[a-z0-9]+")


def _name(label: str, tag: str = "") -> str:
    """The experiment's name: `holdout_<label>`, `holdout_<label>_<tag>` for a tagged re-run."""
    if tag and not TAG.fullmatch(tag):
        raise ValueError(f"tag {tag!r}: only lower-case letters and digits")
    return f"holdout_{label}_{tag}" if tag else f"holdout_{label}"


def predicted_id(run_name: str, tag: str = "") -> str:
    """The run id the a priori predictions were made for (predictions-h5h8.json): the tag removed."""
    return re.sub(rf"-(holdout_h[5-8])_{tag}\.", r"-\1.", run_name) if tag else run_name


def pattern(tag: str = "") -> str:
    """The glob (under data/runs) of the H5-H8 runs, or of their re-run with this tag."""
    return f"real-*-{_name('h[5-8]', tag)}.*"


def experiment(label: str, design: str, tag: str = "") -> Experiment:
    """One H5-H8 workload for one design, as pre-registered (holdout-h5h8.json); a tag only renames it."""
    spec = load_workload(holdout.WORKLOADS / WORKLOADS[label])
    return experiment_from_mapping(
        {
            "name": _name(label, tag),
            "workload": workload_to_mapping(spec),
            "replications": 3,
            "sweep": {"design": [design], "store": ["sqlite"], "slots": [12]},
            "options": {"settle": 0.5, "drain": 5.0, "records": True, "host_probe": True},
        }
    )


def plan(tag: str = "") -> list[tuple[Experiment, PlannedRun]]:
    """Replication-major, then workload, then design (a fresh cluster per run)."""
    per = [
        (e, expand(e).runs)
        for label in WORKLOADS
        for design in holdout.DESIGNS
        for e in [experiment(label, design, tag)]
    ]
    return [(exp, runs[r]) for r in range(3) for exp, runs in per]


def _simulate(run: PlannedRun, over: Mapping[str, Any], calibration: str = CALIBRATION) -> list[float]:
    """The planned run simulated from the calibration at its own host speed (no probe exists yet)."""
    params = load_params(calibration).with_overrides({"slots": 12, "store": "sqlite", **over})
    config = sim.SimConfig(run.design, run.workload, params, replication=run.replication)  # type: ignore[arg-type]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # placeholder costs: named by `dtq sim params`
        return closed_loop.metrics(sim.run(config).summary)


def predict(k: float, load: float, log: Any = print) -> dict[str, Any]:
    """Every H5-H8 run predicted as the model is on main and with the background at `load` (a priori)."""
    cpu_slice = kernel_slice()
    variants = {
        "as is": {},
        "fair only": {"cpu_slice": cpu_slice},
        "background": overrides(load, k, cpu_slice),
    }
    out: dict[str, Any] = {"k": k, "load": load, "cpu_slice": cpu_slice, "variants": variants, "runs": {}}
    for _exp, run in plan():
        t0 = time.monotonic()
        out["runs"][run.run_id] = {name: _simulate(run, over) for name, over in variants.items()}
        log(f"predicted {run.run_id} ({time.monotonic() - t0:.1f} s)")
    return out


def table(k: float, log: Any = print, tag: str = "", runs: Path = holdout.RUNS) -> dict[str, Any]:
    """H5-H8 (or their re-run with `tag`) measured beside: the a priori predictions (committed before
    the runs), and the frozen model conditioned on each run's own host probe (host speed; host speed
    and background)."""
    pred = json.loads(PREDICTIONS.read_text())
    cpu_slice = kernel_slice()
    points = closed_loop.points(runs, pattern(tag))
    if not points:
        raise SystemExit(f"no runs {runs / pattern(tag)}")
    variants: dict[str, closed_loop.Overrides] = {
        "conditioned as is": {},
        "conditioned fair only": {"cpu_slice": cpu_slice},
        "conditioned background": conditioned(k, cpu_slice),
    }
    result = _compare(CALIBRATION, variants, points)
    for row, (point, dirs) in zip(result["points"], points.items(), strict=True):
        for name in pred["variants"]:
            twins = [pred["runs"][predicted_id(d.name, tag)][name] for d in dirs]
            row[f"a priori {name} twins"] = np.array(twins).mean(axis=0).tolist()
        row["loadavg_1m"] = [run_load(json.loads((d / "config.json").read_text())) for d in dirs]
        row["runnable_mean"] = [
            json.loads((d / "config.json").read_text())["parameters"]["host_probe"].get("runnable_mean")
            for d in dirs
        ]
        log(point)
    return {
        "k": k,
        "predictions": str(PREDICTIONS),
        "runs": pattern(tag),
        "scores": widths(result),
        "points": result["points"],
    }


POST_HOC = (
    ("H1-H4", "real-*-holdout[._]h[1-4]*", CALIBRATION),
    ("Q1-Q3", "real-*-holdout.q*", "local"),
)


def post_hoc(k: float, log: Any = print) -> dict[str, Any]:
    """H1-H4 and Q1-Q3 re-simulated AFTER they were seen (POST HOC, never out of sample), each twin moved
    to its run's own probe: as on main, the fair scheduler alone, and the background at K."""
    cpu_slice = kernel_slice()
    variants: dict[str, closed_loop.Overrides] = {
        "post hoc as is": {},
        "post hoc fair only": {"cpu_slice": cpu_slice},
        "post hoc background": conditioned(k, cpu_slice),
    }
    out: dict[str, Any] = {"k": k, "groups": {}}
    for label, pattern, calibration in POST_HOC:
        points = closed_loop.points(holdout.RUNS, pattern)
        out["groups"][label] = widths(_compare(calibration, variants, points))
        log(f"{label}: {len(points)} points")
    return out


def markdown(res: Mapping[str, Any]) -> str:
    """The H5-H8 scores: per prediction, the median |error| over the points of each metric (signed
    median in brackets), and the real floor."""
    scores = res["scores"]
    lines = [
        f"# Held-out H5-H8: measured beside predicted (OUT OF SAMPLE; K = {res['k']:g})",
        "",
        f"`{res['command']}` at code {res['code_version']}, {res['made_at']}; {scores['points']} points "
        "(4 workloads x 2 designs), 3 real replications each. Median over the points of |error| "
        "(signed median in brackets); floor: the real replications' median |x - mean| / mean. "
        "`a priori`: predicted before the runs at the calibration's host speed (predictions-h5h8.json); "
        "`conditioned`: the model frozen, each twin moved to its run's own probe (host speed; "
        "background from its loadavg_1m).",
        "",
        *([f"Real runs: `data/runs/{res['runs']}`.", ""] if res.get("runs", pattern()) != pattern() else []),
        "| prediction | " + " | ".join(METRICS) + " |",
        "|---|" + "---|" * len(METRICS),
    ]
    for name in [n for n in scores if n not in ("points", "floor") and not n.endswith(" bias")]:
        bias = scores[f"{name} bias"]
        cells = [f"{scores[name][m]:.0%} ({bias[m]:+.0%})" for m in METRICS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines.append("| real floor | " + " | ".join(f"{scores['floor'][m]:.0%}" for m in METRICS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.validation.background", description=__doc__)
    parser.add_argument("stage", choices=["fit", "predict", "real", "table", "posthoc"])
    parser.add_argument("--k", type=float, nargs="*", default=[0.1, 0.25, 0.5])
    parser.add_argument("--load", type=float, default=-1.0, help="predict: the load (default: now)")
    parser.add_argument("--budget", type=float, default=0.0, help="real: start no new run after this many s")
    parser.add_argument(
        "--tag", default="", help="real, table: a re-run under new names (run ids, load log, results file)"
    )
    args = parser.parse_args(argv)
    if args.tag and not TAG.fullmatch(args.tag):
        parser.error(f"--tag {args.tag!r}: only lower-case letters and digits")
    suffix = f"-{args.tag}" if args.tag else ""
    command = "python -m lab.validation.background " + " ".join(sys.argv[1:] if argv is None else argv)
    stamp = holdout.stamp(command)
    if args.stage == "fit":
        FIT.write_text(json.dumps({**stamp, **fit(args.k)}, indent=1, sort_keys=True) + "\n")
    elif args.stage == "predict":
        load = args.load if args.load >= 0 else holdout.loadavg()[0]
        PREDICTIONS.write_text(
            json.dumps({**stamp, **predict(args.k[0], load)}, indent=1, sort_keys=True) + "\n"
        )
    elif args.stage == "posthoc":
        res = {**stamp, **post_hoc(args.k[0])}
        (OUT / "posthoc" / "background-h1h4-q1q3.json").write_text(
            json.dumps(res, indent=1, sort_keys=True) + "\n"
        )
    elif args.stage == "real":
        log_name = LOADAVG.replace(".json", f"{suffix}.json")
        holdout.run_real(plan(args.tag), log_name=log_name, budget=args.budget)
    else:
        res = {**stamp, **table(args.k[0], tag=args.tag)}
        (OUT / f"results-h5h8{suffix}.json").write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
        (OUT / f"results-h5h8{suffix}.md").write_text(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
