"""Held-out H1-H4 (data/experiments/holdout.md): the held-out protocol of lab.validation.holdout for
the four workloads H1-H4. H1 and H3 are open loops at rho 0.4 and 0.75 of each design's own saturation
(the validation's: 32 clients that do not wait); H2 and H4 are closed loops, simulated and run as they
are. 3 replications per point (replication r: the workload's seed + r, on both sides).

Stages (`python -m lab.validation.holdout_h STAGE`; real stages under `flock /tmp/dtq-measure.lock`):
  apriori     every point at rho x the PREDICTED saturation, before any real run:
              predictions-h-apriori.{json,md}
  saturation  the real saturation runs of H1 and H3 (one per design, designs interleaved)
  predict-at  every point at rho x the MEASURED saturation (H2, H4 as they are), simulated from the
              calibration alone: predictions-h.{json,md}, committed before the real points run
  real        the real points, replication-major, then point, then design (a fresh cluster per run);
              each run's load average before and after in loadavg-h.json
  table       measured beside predicted: results-h.{json,md} (the out-of-sample figure)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import sys
import time
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lab.experiment.plan import PlannedRun, expand
from lab.experiment.spec import Experiment, experiment_from_mapping
from lab.validation import holdout
from lab.validation.runs import runs_of
from lab.validation.semantics import Case, Semantics, error_of, spread
from model.results.runs import load_workload
from model.results.stats import mean_ci
from model.workload import workload_to_mapping

OPEN = (("h1", "h1-cpu-mixture.yaml", (0.4, 0.75)), ("h3", "h3-payload-mixture.yaml", (0.4, 0.75)))
CLOSED = (("h2", "h2-closed-reads.yaml"), ("h4", "h4-half-cpu-wait.yaml"))
NAME = "predictions-h-apriori"
PREDICTIONS = "predictions-h"
RESULTS = "results-h"
LOADAVG = "loadavg-h.json"


def _mapping(file: str) -> dict[str, Any]:
    return workload_to_mapping(load_workload(holdout.WORKLOADS / file))


def open_cases() -> tuple[Case, ...]:
    """One case per rho (h1r40, h1r75, h3r40, h3r75): each names its own points' experiment."""
    return tuple(
        Case(f"{label}r{int(rho * 100)}", _mapping(file), (rho,), description=file)
        for label, file, rhos in OPEN
        for rho in rhos
    )


def saturation_cases() -> tuple[Case, ...]:
    """One case per open workload (h1, h3): its saturation runs serve both of its rhos."""
    return tuple(Case(label, _mapping(file), rhos[:1], description=file) for label, file, rhos in OPEN)


def _base(label: str) -> str:
    return label.partition("r")[0]  # h1r40 -> h1


def predict_open(calibration: str, log: Any = print) -> dict[str, Any]:
    """H1 and H3 at rho x the PREDICTED saturation (lab.validation.holdout.predict, one case per rho)."""
    v = dataclasses.replace(holdout.holdout(calibration), cases=open_cases())
    return holdout.predict(v, None, log=log)


def predict_open_at(
    calibration: str, measured: Mapping[tuple[str, str], float], log: Any = print
) -> dict[str, Any]:
    """H1 and H3 at rho x the MEASURED saturation of their workload (h1, h3) and design."""
    v = dataclasses.replace(holdout.holdout(calibration), cases=open_cases())
    per_case = {(c.label, d): measured[(_base(c.label), d)] for c in v.cases for d in v.designs}
    return holdout.predict(v, per_case, log=log)


def closed_experiment(v: Semantics, label: str, file: str, design: str) -> Experiment:
    return experiment_from_mapping(
        {
            "name": f"holdout_{label}",
            "workload": _mapping(file),
            "replications": v.replications,
            "sweep": {"design": [design], "store": [v.store], "slots": [v.slots]},
            "options": dict(v.options),
        }
    )


def predict_closed(calibration: str, log: Any = print) -> dict[str, Any]:
    """H2 and H4 simulated as they are (closed loops: no rate to set)."""
    v = holdout.holdout(calibration)
    out: dict[str, Any] = {}
    for label, file in CLOSED:
        for design in v.designs:
            reps = []
            for run in expand(closed_experiment(v, label, file, design)).runs:
                t0 = time.monotonic()
                reps.append({"run_id": run.run_id, "values": holdout.values_of(holdout.simulate_run(v, run))})
                log(f"predicted {run.run_id} ({time.monotonic() - t0:.1f} s)")
            out[f"{label}.{design}"] = {"case": label, "design": design, "replications": reps}
    return out


# ---------------------------------------------------------------------------- real side
def saturation_semantics(calibration: str) -> Semantics:
    return dataclasses.replace(holdout.holdout(calibration), cases=saturation_cases())


def measured_saturation(calibration: str, root: Path = holdout.RUNS) -> dict[tuple[str, str], float]:
    return holdout.measured_saturation(saturation_semantics(calibration), root)


def point_plan(pred: Mapping[str, Any], calibration: str) -> list[tuple[Experiment, PlannedRun]]:
    """Every predicted point's real runs: replication-major, then point, then design (interleaved)."""
    v = dataclasses.replace(holdout.holdout(calibration), cases=open_cases())
    per: dict[str, tuple[Experiment, list[PlannedRun]]] = {}
    for case in v.cases:
        for design in v.designs:
            point = pred["open"]["points"][f"{case.label}.{design}"]
            exp = holdout.point_experiment(v, case, design, float(point["base_saturation"]))
            per[f"{case.label}.{design}"] = (exp, expand(exp).runs)
    for label, file in CLOSED:
        for design in v.designs:
            exp = closed_experiment(v, label, file, design)
            per[f"{label}.{design}"] = (exp, expand(exp).runs)
    return [(exp, runs[r]) for r in range(v.replications) for exp, runs in per.values()]


def _real_values(key: str, point: Mapping[str, Any], root: Path) -> dict[str, list[float]]:
    """The real replications' values of one predicted point (open: its rate; closed: its experiment)."""
    label, design = key.split(".")
    experiment = f"holdout.{label}" if "rate" in point else f"holdout_{label}"
    real: dict[str, list[float]] = {}
    for run in runs_of(root, "real", experiment):
        if run.design != design:
            continue
        if "rate" in point and run.workload["arrival"].get("rate") != point["rate"]:
            continue
        for name, value in holdout.values_of(run.summary).items():
            real.setdefault(name, []).append(value)
    return real


def table(pred: Mapping[str, Any], root: Path = holdout.RUNS) -> dict[str, Any]:
    """Per point: each metric's real mean, CI, predicted mean, error and real run-to-run floor."""
    sat = measured_saturation(pred["calibration"], root)
    points = {**pred["open"]["points"], **pred["closed"]}
    rows = []
    for key, point in points.items():
        label, design = key.split(".")
        real = _real_values(key, point, root)
        predicted: dict[str, list[float]] = {}
        for rep in point["replications"]:
            for name, value in rep["values"].items():
                predicted.setdefault(name, []).append(value)
        metrics = {}
        for name in sorted(set(real) | set(predicted), key=holdout._order):
            r_mean, r_ci = mean_ci(real.get(name, []))
            p_mean = mean_ci(predicted.get(name, []))[0]
            devs = spread(holdout._kind_name(name), real.get(name, []))
            metrics[name] = {
                "real": real.get(name, []),
                "real_mean": r_mean,
                "real_ci95": r_ci,
                "predicted": p_mean,
                "error": error_of(holdout._kind_name(name), p_mean, r_mean),
                "floor": statistics.median(devs) if devs else math.nan,
                "kind": "abs" if name in holdout.SHARES else "rel",
            }
        rows.append(
            {
                "case": label,
                "design": design,
                "rate": point.get("rate", "closed"),
                "saturation_real": sat.get((_base(label), design), math.nan),
                "saturation_predicted": pred["open"]["saturation"].get(key, math.nan),
                "n_real": max((len(x) for x in real.values()), default=0),
                "metrics": metrics,
            }
        )
    return {"points": rows}


# ---------------------------------------------------------------------------- output
def markdown(pred: dict[str, Any]) -> str:
    lines = [
        f"# Held-out H1-H4: {pred.get('title', 'predictions before any real run')}",
        "",
        f"`{pred['command']}` at code {pred['code_version']}, calibration `{pred['calibration']}`, "
        f"{pred['made_at']}. Means over {pred['replications']} simulated replications.",
        "",
        "| point | design | rate req/s | throughput | p50 ms | p95 ms | p99 ms | p99.9 ms | done p50 ms |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    points = {**pred["open"]["points"], **pred["closed"]}
    for _key, point in sorted(points.items()):
        reps = [r["values"] for r in point["replications"]]

        def mean(name: str, reps: list[dict[str, float]] = reps) -> str:
            values = [r[name] for r in reps if name in r]
            return f"{sum(values) / len(values):.1f}" if values else "-"

        rate = f"{point['rate']:g}" if "rate" in point else "closed"
        lines.append(
            f"| {point['case']} | {point['design']} | {rate} | {mean('throughput')} | {mean('p50')} | "
            f"{mean('p95')} | {mean('p99')} | {mean('p999')} | {mean('done_p50')} |"
        )
    lines += [
        "",
        "Predicted saturation (req/s, 32 clients not waiting): "
        + ", ".join(f"{k} {v:.0f}" for k, v in sorted(pred["open"]["saturation"].items())),
    ]
    if pred.get("measured_saturation"):
        lines += [
            "",
            "Measured saturation (req/s, the real runs `holdout_sat.*`), the base of the rates above: "
            + ", ".join(f"{k} {v:.1f}" for k, v in sorted(pred["measured_saturation"].items())),
        ]
    return "\n".join(lines) + "\n"


def results_markdown(res: Mapping[str, Any]) -> str:
    text = holdout.results_markdown(res)
    return text.replace("# Held-out Q1-Q3:", "# Held-out H1-H4:", 1)


def _stamp(calibration: str, command: str) -> dict[str, Any]:
    return {**holdout.stamp(command), "calibration": calibration, "replications": 3}


def _predictions(calibration: str, measured: Mapping[tuple[str, str], float] | None) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # placeholder costs: `dtq sim params` names them
        return {
            "open": predict_open(calibration) if measured is None else predict_open_at(calibration, measured),
            "closed": predict_closed(calibration),
        }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.validation.holdout_h", description=__doc__)
    parser.add_argument(
        "stage",
        nargs="?",
        default="apriori",
        choices=["apriori", "saturation", "predict-at", "real", "table"],
    )
    parser.add_argument("--calibration", default="local")
    parser.add_argument(
        "--budget", type=float, default=0.0, help="real: start no new run after this many s (0: none)"
    )
    args = parser.parse_args(argv)
    command = "python -m lab.validation.holdout_h " + " ".join(sys.argv[1:] if argv is None else argv)
    if args.stage == "apriori":
        pred = {**_predictions(args.calibration, None), **_stamp(args.calibration, command)}
        holdout._write(NAME, pred, markdown(pred))
    elif args.stage == "saturation":
        holdout.run_real(holdout.saturation_plan(saturation_semantics(args.calibration)), log_name=LOADAVG)
    elif args.stage == "predict-at":
        measured = measured_saturation(args.calibration)
        missing = [
            (c.label, d) for c in saturation_cases() for d in holdout.DESIGNS if (c.label, d) not in measured
        ]
        if missing:
            raise SystemExit(f"no real saturation for {missing}: run the saturation stage first")
        pred = {**_predictions(args.calibration, measured), **_stamp(args.calibration, command)}
        pred["title"] = "predictions at rho x the MEASURED saturation (before the real points)"
        pred["measured_saturation"] = {f"{c}.{d}": s for (c, d), s in measured.items()}
        holdout._write(PREDICTIONS, pred, markdown(pred))
    else:
        pred = json.loads((holdout.OUT / f"{PREDICTIONS}.json").read_text())
        if args.stage == "real":
            holdout.run_real(point_plan(pred, pred["calibration"]), log_name=LOADAVG, budget=args.budget)
            return 0
        loads = json.loads((holdout.OUT / LOADAVG).read_text())
        one_minute = [x["before"][0] for x in loads] + [x["after"][0] for x in loads]
        res = {
            **_stamp(pred["calibration"], command),
            "code": holdout.code_version(),
            "predictions": str(holdout.OUT / f"{PREDICTIONS}.json"),
            "loadavg": loads,
            "loadavg_summary": f"1-min load {min(one_minute):.1f}-{max(one_minute):.1f} "
            f"(median {statistics.median(one_minute):.1f}) on 2 cores",
            **table(pred),
        }
        holdout._write(RESULTS, res, results_markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
