"""A pre-registered held-out set named by its registration file (issue 23; e.g.
data/validation/extended/holdout-h9h12.json: per label a workload under data/workloads/holdout/, a
design and Design B's node count; the calibration; the replications). Its runs are planned, predicted a
priori from the calibration before any of them runs, run for real, and scored against the committed
predictions with lab.validation.background's scores (throughput, p50, p95, p99, p99/p50, done_p50
beside the real floor) and closed_loop's latency distance. `rescore` re-predicts runs already seen
from another calibration (labelled so: never out of sample).

    python -m lab.validation.heldout predict FILE        # -> predictions-<name>.json, commit it first
    flock /tmp/dtq-measure.lock python -m lab.validation.heldout real FILE [--budget S]
    python -m lab.validation.heldout table FILE          # -> results-<name>.{json,md}
    python -m lab.validation.heldout rescore --calibration C --pattern GLOB --name N --label TEXT
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lab.experiment.plan import PlannedRun, expand
from lab.experiment.runner import ClusterFactory, ClusterHandle, local_cluster
from lab.experiment.spec import Experiment, Options, experiment_from_mapping
from lab.validation import background, closed_loop, holdout
from model.results.runs import load_workload
from model.workload import workload_to_mapping

OUT = background.OUT
OPTIONS = {"settle": 0.5, "drain": 5.0, "records": True, "host_probe": True}


@dataclass(frozen=True)
class Point:
    label: str
    workload: str  # a file under data/workloads/holdout/
    design: str
    nodes: int = 6  # Design B's node count


@dataclass(frozen=True)
class Registration:
    name: str
    calibration: str
    points: tuple[Point, ...]
    replications: int = 3


def load(path: Path | str) -> Registration:
    """The registration file (JSON: name, calibration, points {label: {workload, design[, nodes]}})."""
    doc = json.loads(Path(path).read_text())
    points = tuple(
        Point(label, p["workload"], p["design"], int(p.get("nodes", 6))) for label, p in doc["points"].items()
    )
    for p in points:
        if p.design not in holdout.DESIGNS:
            raise ValueError(f"{path}: point {p.label}: design {p.design!r} is not one of {holdout.DESIGNS}")
        if p.design == "micro" and p.nodes != 6:
            raise ValueError(f"{path}: point {p.label}: Design A has no node count")
    return Registration(doc["name"], doc["calibration"], points, int(doc.get("replications", 3)))


def experiment(p: Point, replications: int) -> Experiment:
    """One point as registered: experiment `holdout_<label>`, sqlite, 12 slots."""
    return experiment_from_mapping(
        {
            "name": f"holdout_{p.label}",
            "workload": workload_to_mapping(load_workload(holdout.WORKLOADS / p.workload)),
            "replications": replications,
            "sweep": {"design": [p.design], "store": ["sqlite"], "slots": [12]},
            "options": OPTIONS,
        }
    )


def plan(reg: Registration) -> list[tuple[Experiment, PlannedRun, Point]]:
    """Replication-major, then point in the file's order."""
    per = [(experiment(p, reg.replications), p) for p in reg.points]
    runs = [(e, expand(e).runs, p) for e, p in per]
    return [(e, rs[r], p) for r in range(reg.replications) for e, rs, p in runs]


def pattern(p: Point) -> str:
    """The glob (under data/runs) of one point's real runs."""
    return f"real-*-holdout_{p.label}.*"


def sim_overrides(p: Point) -> dict[str, Any]:
    return {"nodes": p.nodes} if p.design == "mono" else {}


def predict(reg: Registration, log: Any = print) -> dict[str, Any]:
    """Every planned run simulated a priori: the model as it is, the registered calibration, at the
    calibration's host speed (no probe exists yet)."""
    out: dict[str, Any] = {"calibration": reg.calibration, "variant": "a priori as is", "runs": {}}
    for _exp, run, p in plan(reg):
        t0 = time.monotonic()
        out["runs"][run.run_id] = background._simulate(run, sim_overrides(p), reg.calibration)
        log(f"predicted {run.run_id} ({time.monotonic() - t0:.1f} s)")
    return out


@contextlib.contextmanager
def _nodes_cluster(
    nodes: int, design: str, store: str, slots: int, options: Options
) -> Iterator[ClusterHandle]:
    with local_cluster(design, store, slots, options, nodes=nodes) as handle:
        yield handle


def cluster_factory(points: Mapping[str, Point]) -> Any:
    """run -> its cluster factory: Design B on the point's node count."""

    def of(run: PlannedRun) -> ClusterFactory:
        label = run.run_id.split("-", 2)[2].split(".")[0].removeprefix("holdout_")
        return functools.partial(_nodes_cluster, points[label].nodes)

    return of


def real(reg: Registration, budget: float = 0.0) -> None:
    plans = [(e, r) for e, r, _p in plan(reg)]
    points = {p.label: p for p in reg.points}
    holdout.run_real(
        plans, log_name=f"loadavg-{reg.name}.json", budget=budget, cluster_factory=cluster_factory(points)
    )


def _rows(
    calibration: str, patterns: Sequence[str], variants: Mapping[str, closed_loop.Overrides], host_scale: bool
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for glob in patterns:
        rows += closed_loop.compare(holdout.RUNS, calibration, variants, glob, host_scale)["points"]
    return rows


def score(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """background.widths over the rows, plus per variant the median latency distance beside its floor."""
    out = background.widths({"points": list(rows)})
    names = [n.removesuffix(" twins") for n in rows[0] if n.endswith(" twins")] if rows else []
    out["distance"] = {
        "floor": background._median([r["distance_spread"] for r in rows if "distance_spread" in r]),
        **{n: background._median([r[f"{n} distance"] for r in rows if f"{n} distance" in r]) for n in names},
    }
    return out


def table(reg: Registration, predictions: Mapping[str, Any]) -> dict[str, Any]:
    """The registered points measured beside the a priori predictions and the same model conditioned on
    each run's own host probe."""
    patterns = [pattern(p) for p in reg.points]
    rows = _rows(reg.calibration, patterns, {"conditioned as is": {}}, True)
    if not rows:
        raise SystemExit(f"no runs {holdout.RUNS}/{patterns}")
    for row in rows:
        dirs = sorted(holdout.RUNS.glob(row["point"] + "-*"))
        twins = [predictions["runs"][d.name] for d in dirs if (d / "summary.json").is_file()]
        row["a priori as is twins"] = np.array(twins).mean(axis=0).tolist()
        row["loadavg_1m"] = [background.run_load(json.loads((d / "config.json").read_text())) for d in dirs]
    return {"calibration": reg.calibration, "runs": patterns, "scores": score(rows), "points": rows}


def rescore(calibration: str, patterns: Sequence[str], label: str) -> dict[str, Any]:
    """Runs already seen re-simulated from `calibration` (at its host speed; and moved to each run's
    probe): labelled `label`, never out of sample."""
    rows = _rows(calibration, patterns, {label: {}}, False)
    moved = _rows(calibration, patterns, {f"{label}, conditioned": {}}, True)
    for row, other in zip(rows, moved, strict=True):
        row.update({k: v for k, v in other.items() if k.startswith(f"{label}, conditioned")})
    return {"calibration": calibration, "runs": list(patterns), "scores": score(rows), "points": rows}


def markdown(res: Mapping[str, Any], title: str) -> str:
    scores = res["scores"]
    metrics = background.METRICS
    lines = [
        f"# {title}",
        "",
        f"`{res['command']}` at code {res['code_version']}, {res['made_at']}; calibration "
        f"{res['calibration']}; {scores['points']} points, real runs `{', '.join(res['runs'])}`. Median over "
        "the points of |error| (signed median in brackets); floor: the real replications' median "
        "|x - mean| / mean; W1: Wasserstein-1 of the request latency distribution over the real mean.",
        "",
        "| prediction | " + " | ".join(metrics) + " | W1 |",
        "|---|" + "---|" * (len(metrics) + 1),
    ]
    names = [n for n in scores if n not in ("points", "floor", "distance") and not n.endswith(" bias")]
    for name in names:
        bias = scores[f"{name} bias"]
        cells = [f"{scores[name][m]:.0%} ({bias[m]:+.0%})" for m in metrics]
        lines.append(
            f"| {name} | " + " | ".join(cells) + f" | {scores['distance'].get(name, float('nan')):.2f} |"
        )
    floor = scores["floor"]
    lines.append(
        "| real floor | "
        + " | ".join(f"{floor[m]:.0%}" for m in metrics)
        + f" | {scores['distance']['floor']:.2f} |"
    )
    lines += ["", "Per point (real mean; twins' mean per prediction):", ""]
    idx = {m: closed_loop.METRICS.index(m) for m in ("requests_per_s", "p50", "p99", "done_p50")}
    lines += [
        "| point | source | req/s | p50 ms | p99 ms | p99/p50 | done_p50 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in res["points"]:
        for source in ["real", *(f"{n} twins" for n in names)]:
            v = row[source]
            lines.append(
                f"| {row['point'].removeprefix('real-')} | {source.removesuffix(' twins')} | "
                f"{v[idx['requests_per_s']]:.0f} | {v[idx['p50']]:.1f} | {v[idx['p99']]:.1f} | "
                f"{v[idx['p99']] / v[idx['p50']]:.2f} | {v[idx['done_p50']]:.1f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.validation.heldout", description=__doc__)
    parser.add_argument("stage", choices=["predict", "real", "table", "rescore"])
    parser.add_argument("file", nargs="?", default="", help="the registration file (predict, real, table)")
    parser.add_argument("--budget", type=float, default=0.0, help="real: start no new run after this many s")
    parser.add_argument("--calibration", default="", help="rescore: the calibration")
    parser.add_argument("--pattern", nargs="*", default=[], help="rescore: the runs (globs under data/runs)")
    parser.add_argument("--name", default="", help="rescore: writes results-<name>.{json,md}")
    parser.add_argument("--label", default="re-predicted", help="rescore: the prediction's name")
    args = parser.parse_args(argv)
    command = "python -m lab.validation.heldout " + " ".join(sys.argv[1:] if argv is None else argv)
    stamp = holdout.stamp(command)
    if args.stage == "rescore":
        if not (args.calibration and args.pattern and args.name):
            parser.error("rescore needs --calibration, --pattern and --name")
        res = {**stamp, **rescore(args.calibration, args.pattern, args.label)}
        _write(f"results-{args.name}", res, f"{args.label} (NOT out of sample)")
        return 0
    if not args.file:
        parser.error(f"{args.stage} needs the registration file")
    try:
        reg = load(args.file)
    except (OSError, ValueError, KeyError) as exc:
        parser.error(f"{args.file}: {exc!r}")
    predictions = OUT / f"predictions-{reg.name}.json"
    if args.stage == "predict":
        if predictions.exists():
            parser.error(f"{predictions} exists: the registered predictions are never replaced")
        predictions.write_text(json.dumps({**stamp, **predict(reg)}, indent=1, sort_keys=True) + "\n")
    elif args.stage == "real":
        if not predictions.exists():
            parser.error(f"{predictions} is missing: predict (and commit) before the real runs")
        real(reg, args.budget)
    else:
        res = {**stamp, **table(reg, json.loads(predictions.read_text()))}
        _write(f"results-{reg.name}", res, f"Held-out {reg.name}: measured beside predicted (OUT OF SAMPLE)")
    return 0


def _write(name: str, res: Mapping[str, Any], title: str) -> None:
    (OUT / f"{name}.json").write_text(json.dumps(res, indent=1, sort_keys=True) + "\n")
    (OUT / f"{name}.md").write_text(markdown(res, title))
    print(markdown(res, title))


if __name__ == "__main__":
    raise SystemExit(main())
