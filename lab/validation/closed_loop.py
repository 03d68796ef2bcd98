"""Closed-loop real runs against their twins, variant by variant (issue 23: the closed-loop misfit).

The seed plan's real runs (`data/runs/real-<design>-seed_plan.*`: closed loops of 1, 4 and 16 clients
in wait mode, no-op and 50 ms jobs, submit-only and mixed requests, 3 replications each) are simulated
from a calibration with each variant's overrides laid over it; per point the error of the twin against
the replications' mean, and over the points the median |error| per metric beside the real noise floor
(the median over points of the replications' median |x - mean| / mean).

    python -m lab.validation.closed_loop [--calibration local] [--variant NAME=key=value,...] ...
"""

from __future__ import annotations

import argparse
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import sim
from model.results.runs import load_config, load_summary
from model.workload import workload_from_mapping
from sim.params import load_params, parse_override

METRICS = ("requests_per_s", "p50", "p95", "p99", "p99.9", "done_p50", "done_p99")
VARIANTS: Mapping[str, Mapping[str, Any]] = {"as is": {}, "core-idle": {"wakeup_core_idle": True}}


def metrics(summary: Mapping[str, Any]) -> list[float]:
    lat, done = summary["latency_ms"]["all"], summary["completion_ms"]
    return [
        float(summary["throughput"]["requests_per_s"]),
        *(float(lat[k]) for k in ("p50", "p95", "p99", "p999")),
        float(done["p50"]),
        float(done["p99"]),
    ]


def points(runs: Path, pattern: str = "real-*-seed_plan.*") -> dict[str, list[Path]]:
    """Real runs grouped by point (the run id without its replication suffix)."""
    out: dict[str, list[Path]] = {}
    for run in sorted(runs.glob(pattern)):
        out.setdefault(run.name.rsplit("-", 2)[0], []).append(run)
    return out


def compare(
    runs: Path,
    calibration: str,
    variants: Mapping[str, Mapping[str, Any]],
    pattern: str = "real-*-seed_plan.*",
) -> dict[str, Any]:
    """Per point: the real mean, its replications' spread and each variant's error; and the medians."""
    rows: list[dict[str, Any]] = []
    for point, dirs in points(runs, pattern).items():
        real = np.array([metrics(load_summary(d)) for d in dirs])
        mean = real.mean(axis=0)
        cfg = load_config(dirs[0])
        workload = workload_from_mapping(cfg["workload"])
        row: dict[str, Any] = {
            "point": point,
            "real": mean.tolist(),
            "spread": np.median(np.abs(real - mean) / mean, axis=0).tolist(),
        }
        for name, overrides in variants.items():
            base = {"slots": 12, "store": cfg["parameters"]["store"]}
            params = load_params(calibration).with_overrides({**base, **overrides})
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # placeholder costs: named by `dtq sim params`
                twin = sim.run(sim.SimConfig(cfg["design"], workload, params))
            row[name] = ((np.array(metrics(twin.summary)) - mean) / mean).tolist()
        rows.append(row)
    medians = {
        "floor": np.median([r["spread"] for r in rows], axis=0).tolist(),
        **{name: np.median(np.abs([r[name] for r in rows]), axis=0).tolist() for name in variants},
        **{f"{name} bias": np.median([r[name] for r in rows], axis=0).tolist() for name in variants},
    }
    return {"calibration": calibration, "metrics": list(METRICS), "points": rows, "medians": medians}


def format_table(result: Mapping[str, Any]) -> str:
    n = len(result["points"])
    lines = [
        f"median |err| over {n} points against calibration {result['calibration']}; floor: the real "
        "replications' median |x - mean| / mean",
        f"{'':<16}" + "".join(f"{m:>15}" for m in result["metrics"]),
    ]
    for name, values in result["medians"].items():
        lines.append(
            f"{name:<16}" + "".join(f"{v:>+15.3f}" if "bias" in name else f"{v:>15.3f}" for v in values)
        )
    return "\n".join(lines)


def _variant(text: str) -> tuple[str, dict[str, Any]]:
    name, _, rest = text.partition("=")
    return name, dict(parse_override(part) for part in rest.split(",") if part)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.validation.closed_loop", description=__doc__)
    parser.add_argument("--calibration", default="local")
    parser.add_argument("--runs", default="data/runs")
    parser.add_argument("--variant", action="append", default=[], help="NAME=key=value,key=value")
    parser.add_argument("--json", default="", help="also write every point's errors to this file")
    args = parser.parse_args(argv)
    variants = dict(map(_variant, args.variant)) if args.variant else dict(VARIANTS)
    result = compare(Path(args.runs), args.calibration, variants)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
