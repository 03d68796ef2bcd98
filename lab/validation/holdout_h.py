"""Held-out H1-H4 (data/experiments/holdout.md): predictions from a calibration alone, written before
any real run of them. H1 and H3 are open loops at rho 0.4 and 0.75 of each design's predicted own
saturation (the validation's: 32 clients that do not wait), through lab.validation.holdout's
machinery; H2 and H4 are closed loops, simulated as they are. 3 simulated replications per point
(replication r: the workload's seed + r, as the real runs will be). Nothing here runs the real system.

    .venv/bin/python -m lab.validation.holdout_h [--calibration local]
      -> data/experiments/holdout/predictions-h-apriori.{json,md}
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings
from collections.abc import Sequence
from typing import Any

from lab.experiment.plan import expand
from lab.experiment.spec import experiment_from_mapping
from lab.validation import holdout
from lab.validation.semantics import Case
from model.results.runs import load_workload
from model.workload import workload_to_mapping

OPEN = (("h1", "h1-cpu-mixture.yaml", (0.4, 0.75)), ("h3", "h3-payload-mixture.yaml", (0.4, 0.75)))
CLOSED = (("h2", "h2-closed-reads.yaml"), ("h4", "h4-half-cpu-wait.yaml"))
NAME = "predictions-h-apriori"


def predict_open(calibration: str, log: Any = print) -> dict[str, Any]:
    """H1 and H3 through lab.validation.holdout.predict (one case per rho)."""
    cases = []
    for label, file, rhos in OPEN:
        mapping = workload_to_mapping(load_workload(holdout.WORKLOADS / file))
        cases += [Case(f"{label}r{int(rho * 100)}", mapping, (rho,), description=file) for rho in rhos]
    v = dataclasses.replace(holdout.holdout(calibration), cases=tuple(cases))
    return holdout.predict(v, None, log=log)


def predict_closed(calibration: str, log: Any = print) -> dict[str, Any]:
    """H2 and H4 simulated as they are (closed loops: no rate to set)."""
    v = holdout.holdout(calibration)
    out: dict[str, Any] = {}
    for label, file in CLOSED:
        mapping = workload_to_mapping(load_workload(holdout.WORKLOADS / file))
        for design in v.designs:
            exp = experiment_from_mapping(
                {
                    "name": f"holdout_{label}",
                    "workload": mapping,
                    "replications": v.replications,
                    "sweep": {"design": [design], "store": [v.store], "slots": [v.slots]},
                    "options": dict(v.options),
                }
            )
            reps = []
            for run in expand(exp).runs:
                t0 = time.monotonic()
                reps.append({"run_id": run.run_id, "values": holdout.values_of(holdout.simulate_run(v, run))})
                log(f"predicted {run.run_id} ({time.monotonic() - t0:.1f} s)")
            out[f"{label}.{design}"] = {"case": label, "design": design, "replications": reps}
    return out


def markdown(pred: dict[str, Any]) -> str:
    lines = [
        "# Held-out H1-H4: predictions before any real run",
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
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.validation.holdout_h", description=__doc__)
    parser.add_argument("--calibration", default="local")
    args = parser.parse_args(argv)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # placeholder costs: `dtq sim params` names them
        pred: dict[str, Any] = {
            "open": predict_open(args.calibration),
            "closed": predict_closed(args.calibration),
        }
    pred.update(
        command=f"python -m lab.validation.holdout_h --calibration {args.calibration}",
        code_version=holdout._git(),
        calibration=args.calibration,
        made_at=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        replications=3,
    )
    holdout._write(NAME, pred, markdown(pred))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
