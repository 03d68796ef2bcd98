"""The predicted curves of the paper's headline figures: every point of a closed-loop experiment
(data/experiments/<name>.yaml) simulated from a calibration alone, and the analytic (MVA) estimate
beside it, written to data/experiments/<name>/predicted.csv with its inputs' digests in
predicted.json.

    python -m lab.report.predict data/experiments/seed_plan.yaml [--calibration local] [--force]

Nothing here reads a real run: each point's twin has the experiment's workload (same trace seed per
replication: common random numbers), slots and store laid over the calibration, so the prediction
exists before, or without, the measurement. The simulator is deterministic, so the same inputs give
the same file; `make paper` re-simulates only when an input's digest changed (`is_stale`).

The MVA (sim/mva.py) models open loops; a closed loop of N clients in wait mode is solved here as the
open rate X at which N = X x cycle(X), the cycle being the submit's completion time for a submit and
the (submit-like) request latency for a read: Little's law over the clients, by bisection below the
network's capacity. It predicts means, so it is drawn beside the jobs/s curves, not the percentiles.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import subprocess
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

import sim
from lab.experiment.plan import PlannedRun, expand
from lab.experiment.spec import load_experiment
from model.results.summary import COLUMN_PATHS
from model.workload import ClosedLoop, OpenLoop, WorkloadSpec
from sim.api import Design
from sim.mva import MvaPrediction
from sim.mva import predict as mva_predict
from sim.params import SimParams, calibration_path, load_params

SIM_DESIGNS: dict[str, Design] = {"micro": "micro", "mono": "mono"}
# summary.json paths of the metrics predicted, by the column names of the experiment's summary.csv
METRICS = {c: path for c, path in COLUMN_PATHS.items() if c != "jobs_per_s"}
COLUMNS = ("design", "concurrency", "duration", "mix", "source", "n", *METRICS)
# the code whose change changes a prediction (git tree hashes of the committed code); and this module's
# own version, to bump when what it computes changes
CODE_DIRS = ("sim", "model")
VERSION = 1


def _get(summary: Mapping[str, Any], path: Sequence[str]) -> float:
    value: Any = summary
    for key in path:
        value = value.get(key, {}) if isinstance(value, Mapping) else {}
    return float(value) if isinstance(value, int | float) else math.nan


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def code_version(repo: Path) -> str:
    """The git tree hashes of CODE_DIRS at HEAD ('' outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", *(f"HEAD:{d}" for d in CODE_DIRS)],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return ""
    return ",".join(h[:12] for h in out.split())


def inputs_of(experiment: Path, calibration: Path, repo: Path) -> dict[str, str]:
    """What the prediction depends on: the experiment and calibration files' digests and the code."""
    return {
        "experiment": experiment.name,
        "experiment_sha256": _digest(experiment),
        "calibration": calibration.name,
        "calibration_sha256": _digest(calibration),
        "code": code_version(repo),
        "predict_version": str(VERSION),
    }


def point_of(run: PlannedRun) -> dict[str, str]:
    point = dict(run.point)
    arrival = run.workload.arrival
    if not isinstance(arrival, ClosedLoop):
        raise ValueError(f"{run.run_id}: the predicted curves are for closed-loop sweeps")
    return {
        "design": run.design,
        "concurrency": str(arrival.clients),
        "duration": point.get("duration", ""),
        "mix": point.get("mix", ""),
    }


def twin_params(base: SimParams, run: PlannedRun) -> SimParams:
    """The calibration with the experiment's own settings laid over it (slots, store)."""
    return base.with_overrides({"slots": run.slots, "store": run.store})


def simulate(runs: Sequence[PlannedRun], base: SimParams) -> list[dict[str, str]]:
    """Every micro/mono run of the plan simulated; one row per point: the mean over replications."""
    values: dict[tuple[str, ...], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        if run.design not in SIM_DESIGNS:
            continue
        config = sim.SimConfig(
            SIM_DESIGNS[run.design], run.workload, twin_params(base, run), replication=run.replication
        )
        summary = sim.run(config).summary
        key = tuple(point_of(run).values())
        for column, path in METRICS.items():
            values[key][column].append(_get(summary, path))
    rows = []
    for key, metrics in values.items():
        row = dict(zip(("design", "concurrency", "duration", "mix"), key, strict=True))
        row.update(source="sim", n=str(len(next(iter(metrics.values())))))
        row.update({c: _fmt(float(np.mean(v))) for c, v in metrics.items()})
        rows.append(row)
    return rows


def mva_closed(design: str, workload: WorkloadSpec, params: SimParams) -> dict[str, float]:
    """The MVA's jobs/s and mean submit -> done for a closed loop of N waiting clients (module doc)."""
    arrival = workload.arrival
    assert isinstance(arrival, ClosedLoop)
    clients = arrival.clients
    think = arrival.think_time.mean
    mix = workload.mix
    total = mix.submit + mix.status + mix.result + mix.list + mix.cancel
    f_submit = mix.submit / total if total else 1.0

    def at(rate: float) -> MvaPrediction:
        return mva_predict(design, replace(workload, arrival=OpenLoop(rate)), params)

    def cycle(p: MvaPrediction) -> float:
        waits = arrival.wait_for_completion
        per_submit = p.completion_time if waits else p.submit_latency
        return float(f_submit * per_submit + (1 - f_submit) * p.submit_latency + think)

    def held(rate: float) -> float:
        """Clients a rate keeps busy (infinite where a station is saturated at that rate)."""
        p = at(rate)
        return rate * cycle(p) if p.capacity > rate and math.isfinite(cycle(p)) else math.inf

    # the capacity depends on the rate (idle loops pay wake-ups), so bracket by doubling, then bisect:
    # the clients a rate holds grow with it and diverge where a station saturates
    lo, hi = 0.0, 1.0
    while held(hi) <= clients and hi < 1e7:
        lo, hi = hi, hi * 2
    for _ in range(60):
        mid = (lo + hi) / 2
        if held(mid) > clients:
            hi = mid
        else:
            lo = mid
    p = at(max(lo, 1e-6))
    return {
        "completed_per_s": f_submit * lo,
        "requests_per_s": lo,
        "latency_submit_mean_ms": p.submit_latency * 1e3,
        "completion_mean_ms": p.completion_time * 1e3,
    }


def analytic(runs: Sequence[PlannedRun], base: SimParams) -> list[dict[str, str]]:
    """One MVA row per micro/mono point (the first replication's workload: the MVA has no seed)."""
    rows = []
    seen: set[tuple[str, ...]] = set()
    for run in runs:
        key = tuple(point_of(run).values())
        if run.design not in SIM_DESIGNS or key in seen:
            continue
        seen.add(key)
        est = mva_closed(run.design, run.workload, twin_params(base, run))
        row = {**point_of(run), "source": "mva", "n": "1"}
        row.update({c: _fmt(est[c]) if c in est else "" for c in METRICS})
        rows.append(row)
    return rows


def _fmt(x: float) -> str:
    return "" if math.isnan(x) else f"{x:.6g}"


def to_csv(rows: Sequence[Mapping[str, str]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
    writer.writeheader()
    key = lambda r: (r["source"], r["design"], r["duration"], r["mix"], int(r["concurrency"]))  # noqa: E731
    for row in sorted(rows, key=key):
        writer.writerow({c: row.get(c, "") for c in COLUMNS})
    return out.getvalue()


def paths_of(experiment: Path, data: Path) -> tuple[Path, Path]:
    folder = data / "experiments" / experiment.stem
    return folder / "predicted.csv", folder / "predicted.json"


def is_stale(experiment: Path, calibration: str, data: Path, repo: Path) -> bool:
    """True when predicted.csv is missing or was made from other inputs than these."""
    csv_path, meta_path = paths_of(experiment, data)
    if not (csv_path.is_file() and meta_path.is_file()):
        return True
    made = json.loads(meta_path.read_text()).get("inputs", {})
    return bool(made != inputs_of(experiment, calibration_path(calibration), repo))


def write_predictions(experiment: Path, calibration: str, data: Path, repo: Path) -> Path:
    """Simulates and solves every micro/mono point of `experiment`; writes predicted.csv and .json."""
    exp = load_experiment(experiment)
    runs = expand(exp).runs
    base = load_params(calibration)
    rows = simulate(runs, base) + analytic(runs, base)
    csv_path, meta_path = paths_of(experiment, data)
    csv_path.parent.mkdir(parents=True, exist_ok=True)
    csv_path.write_text(to_csv(rows))
    meta = {
        "what": "simulated (source sim: mean over replications) and MVA (source mva) predictions of "
        "every micro/mono point, from the calibration alone (lab/report/predict.py)",
        "inputs": inputs_of(experiment, calibration_path(calibration), repo),
    }
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return csv_path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.report.predict", description=__doc__.split("\n")[0])
    parser.add_argument("experiment", help="a closed-loop experiment file (data/experiments/<name>.yaml)")
    parser.add_argument("--calibration", default="local", help="a name under data/calibration/ or a path")
    parser.add_argument("--data", default="data", help="the data directory the CSV goes under")
    parser.add_argument("--force", action="store_true", help="re-simulate even when nothing changed")
    args = parser.parse_args(argv)
    experiment, data = Path(args.experiment), Path(args.data)
    repo = Path(__file__).resolve().parents[2]
    if not args.force and not is_stale(experiment, args.calibration, data, repo):
        print(f"{paths_of(experiment, data)[0]} is up to date")
        return 0
    print(write_predictions(experiment, args.calibration, data, repo))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
