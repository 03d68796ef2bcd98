"""Real runs of any experiment against their twins, variant by variant (issue 23: the closed-loop
misfit, and the extended validation of data/experiments/validation-extended/).

Real runs (default: the seed plan's, `data/runs/real-<design>-seed_plan.*`, closed loops of 1, 4 and
16 clients in wait mode; `--pattern` picks others) are grouped by point (the run id less its
replication) and simulated from a calibration with each variant's overrides laid over it, replication
by replication (the same workload and trace seed), moved to the run's host speed when it carries a host
probe and the calibration took them (sim.hostscale, as `dtq validate` moves twins). Per point: the
error of the twins' mean against the replications' mean per metric, and, where the real runs kept
their records, the distance between the latency distributions (Wasserstein-1 over the mean latency,
real pooled against twins pooled); over the points, per metric the median |error| beside the real
noise floor (the median over points of the replications' median |x - mean| / mean; for the distance,
of the replications' median distance to the others pooled).

    python -m lab.validation.closed_loop [--calibration local] [--pattern 'real-*-vx_closed*']
        [--variant NAME=key=value,...] [--json FILE] [--no-host-scale]
"""

from __future__ import annotations

import argparse
import json
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
from scipy.stats import wasserstein_distance

import sim
from model.results.runs import REQUESTS_FILE, SUMMARY_FILE, load_config, load_records, load_summary
from model.workload import workload_from_mapping
from sim.hostscale import HostScale
from sim.params import SimParams, load_host_probe, load_params, parse_override

METRICS = ("requests_per_s", "p50", "p95", "p99", "p99.9", "done_p50", "done_p99")
VARIANTS: Mapping[str, Mapping[str, Any]] = {"as is": {}, "warm-handover": {"wakeup_warm_handover": True}}


def metrics(summary: Mapping[str, Any]) -> list[float]:
    lat, done = summary["latency_ms"]["all"], summary["completion_ms"]
    return [
        float(summary["throughput"]["requests_per_s"]),
        *(float(lat[k]) for k in ("p50", "p95", "p99", "p999")),
        float(done["p50"]),
        float(done["p99"]),
    ]


def points(runs: Path, pattern: str = "real-*-seed_plan.*") -> dict[str, list[Path]]:
    """Real runs grouped by point (the run id without its replication suffix: `-<n>-r<k>` or `-r<k>`)."""
    out: dict[str, list[Path]] = {}
    for run in sorted(runs.glob(pattern)):
        if (run / SUMMARY_FILE).is_file():  # the replication suffix: -r<k>, after the run's number if any
            out.setdefault(re.sub(r"(-\d+)?-r\d+$", "", run.name), []).append(run)
    return out


def _latencies(requests: Sequence[Any]) -> np.ndarray:
    """Latencies (ms) of the OK requests."""
    return np.array([1e3 * (r.end_time - r.start_time) for r in requests if r.status == "OK"], dtype=float)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Wasserstein-1 between two latency samples, over the first one's mean (0: the same)."""
    if not len(a) or not len(b):
        return float("nan")
    return float(wasserstein_distance(a, b) / max(float(np.mean(a)), 1e-12))


Overrides: TypeAlias = Mapping[str, Any] | Callable[[Mapping[str, Any]], Mapping[str, Any]]


def _params(
    calibration: str, cfg: Mapping[str, Any], overrides: Overrides, host_scale: bool = True
) -> SimParams:
    base = {"slots": 12, "store": cfg["parameters"].get("store", "sqlite")}
    if "nodes" in cfg["parameters"]:  # Design B on other than 6 nodes (lab.experiment.runner.local_cluster)
        base["nodes"] = int(cfg["parameters"]["nodes"])
    if callable(overrides):  # a variant that depends on the run (lab/validation/background.py)
        overrides = overrides(cfg)
    params = load_params(calibration).with_overrides({**base, **overrides})
    probe = cfg["parameters"].get("host_probe") if host_scale else None
    reference = load_host_probe(calibration, cfg["design"]) if probe else None
    needed = ("busy_us", "wake_us", "wake_gap_us")  # what HostScale.between reads; other fields may be 0
    if probe and reference and all(float(probe.get(k, 0) or 0) > 0 for k in needed):
        params = params.on_host(HostScale.between(probe, reference))
    return params


def compare(
    runs: Path,
    calibration: str,
    variants: Mapping[str, Overrides],
    pattern: str = "real-*-seed_plan.*",
    host_scale: bool = True,
) -> dict[str, Any]:
    """Per point: the real mean, its replications' spread, each variant's error (and distribution
    distance where records exist); and the medians over points. A variant is overrides, or a function
    of a run's config.json giving that run's overrides (lab/validation/background.py)."""
    rows: list[dict[str, Any]] = []
    for point, dirs in points(runs, pattern).items():
        real = np.array([metrics(load_summary(d)) for d in dirs])
        mean = real.mean(axis=0)
        with_records = all((d / REQUESTS_FILE).is_file() for d in dirs)
        samples = [_latencies(load_records(d)[0]) for d in dirs] if with_records else []
        row: dict[str, Any] = {
            "point": point,
            "replications": len(dirs),
            "real": mean.tolist(),
            "real_replications": real.tolist(),
            "submit_fraction": float(load_config(dirs[0])["workload"]["mix"].get("submit", 0.0)),
            "completed_per_s": float(
                np.mean([load_summary(d)["throughput"].get("completed_per_s", np.nan) for d in dirs])
            ),
            "spread": np.median(np.abs(real - mean) / mean, axis=0).tolist(),
        }
        if len(samples) > 1:  # each replication against the others pooled
            row["distance_spread"] = float(
                np.median(
                    [
                        distance(np.concatenate(samples[:i] + samples[i + 1 :]), s)
                        for i, s in enumerate(samples)
                    ]
                )
            )
        for name, overrides in variants.items():
            twins, simulated = [], []
            for d in dirs:
                cfg = load_config(d)
                config = sim.SimConfig(
                    cfg["design"],
                    workload_from_mapping(cfg["workload"]),
                    _params(calibration, cfg, overrides, host_scale),
                    replication=int(cfg.get("replication", 0)),
                )
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # placeholder costs: named by `dtq sim params`
                    twin = sim.run(config)
                twins.append(metrics(twin.summary))
                if samples:
                    simulated.append(_latencies(list(twin.requests)))
            row[name] = ((np.array(twins).mean(axis=0) - mean) / mean).tolist()
            row[f"{name} twins"] = np.array(twins).mean(axis=0).tolist()
            if samples:
                row[f"{name} distance"] = distance(np.concatenate(samples), np.concatenate(simulated))
        rows.append(row)
    medians: dict[str, Any] = {"floor": np.median([r["spread"] for r in rows], axis=0).tolist()}
    for name in variants:
        medians[name] = np.median(np.abs([r[name] for r in rows]), axis=0).tolist()
        medians[f"{name} bias"] = np.median([r[name] for r in rows], axis=0).tolist()
    distances = {
        "floor": [r["distance_spread"] for r in rows if "distance_spread" in r],
        **{name: [r[f"{name} distance"] for r in rows if f"{name} distance" in r] for name in variants},
    }
    out: dict[str, Any] = {
        "calibration": calibration,
        "pattern": pattern,
        "host_scale": host_scale,
        "metrics": list(METRICS),
    }
    out["points"], out["medians"] = rows, medians
    out["distance"] = {k: float(np.median(v)) for k, v in distances.items() if v}
    return out


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
    if result.get("distance"):
        lines.append(
            "latency distribution, Wasserstein-1 / real mean latency (median over points with records): "
            + ", ".join(f"{k} {v:.3f}" for k, v in result["distance"].items())
        )
    return "\n".join(lines)


def _variant(text: str) -> tuple[str, dict[str, Any]]:
    name, _, rest = text.partition("=")
    return name, dict(parse_override(part) for part in rest.split(",") if part)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.validation.closed_loop", description=__doc__)
    parser.add_argument("--calibration", default="local")
    parser.add_argument("--runs", default="data/runs")
    parser.add_argument("--pattern", default="real-*-seed_plan.*", help="the real runs (a glob under --runs)")
    parser.add_argument("--variant", action="append", default=[], help="NAME=key=value,key=value")
    parser.add_argument("--json", default="", help="also write every point's errors to this file")
    parser.add_argument(
        "--no-host-scale",
        action="store_true",
        help="simulate at the calibration's host speed, not moved to each run's probe",
    )
    args = parser.parse_args(argv)
    variants = dict(map(_variant, args.variant)) if args.variant else dict(VARIANTS)
    result = compare(Path(args.runs), args.calibration, variants, args.pattern, not args.no_host_scale)
    print(format_table(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
