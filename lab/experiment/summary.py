"""The summary table of an experiment (data/experiments/<name>/summary.csv): one row per sweep point
and design, with the mean and the 95% Student-t confidence half-width across replications of
throughput (requests/s, jobs/s, and completed_per_s: jobs finished in the window whenever submitted,
the end-to-end jobs/s of a closed loop in wait mode), latency p50/p95/p99 (all requests) and job
completion (submit -> terminal) p50/p95/p99 (ms); and the errors and unfinished jobs summed over the
replications.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lab.experiment.plan import PlannedRun, expand
from lab.experiment.spec import Experiment
from model.results.runs import JOBS_FILE, load_jobs, load_summary, run_exists
from model.results.stats import mean_ci
from model.results.summary import COLUMN_PATHS

_NOT_TABULATED = ("completed_per_s", "latency_submit_mean_ms", "completion_mean_ms")
METRICS: tuple[tuple[str, tuple[str, ...]], ...] = tuple(
    (c, path) for c, path in COLUMN_PATHS.items() if c not in _NOT_TABULATED
)
POINT_COLUMNS = ("design", "arrival", "concurrency", "rate", "duration", "mix", "store", "slots")


def _metric(summary: Mapping[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = summary
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None


def summary_rows(exp: Experiment, out: Path | str) -> list[dict[str, Any]]:
    """One row per (design, sweep point) with the replications found on disk."""
    root = Path(out)
    by_point: dict[tuple[str, tuple[tuple[str, str], ...]], list[PlannedRun]] = {}
    for run in expand(exp).runs:
        by_point.setdefault(run.point_key, []).append(run)
    rows = []
    for (design, point), runs in by_point.items():
        summaries = [load_summary(root / r.run_id) for r in runs if run_exists(root, r.run_id)]
        labels = dict(point)
        arrival = runs[0].workload.arrival
        row: dict[str, Any] = {
            "experiment": exp.name,
            "design": design,
            "arrival": labels.get("arrival", ""),
            "concurrency": getattr(arrival, "clients", ""),
            "rate": getattr(arrival, "rate", ""),
            "duration": labels.get("duration", ""),
            "mix": labels.get("mix", ""),
            "store": runs[0].store,
            "slots": runs[0].slots,
            "n": len(summaries),
            "planned": len(runs),
        }
        for name, path in METRICS:
            values = [v for v in (_metric(s, path) for s in summaries) if v is not None]
            row[f"{name}_mean"], row[f"{name}_ci95"] = mean_ci(values)
        completed = [_completed_per_s(root / s["run_id"], s) for s in summaries]
        row["completed_per_s_mean"], row["completed_per_s_ci95"] = mean_ci(
            [c for c in completed if c is not None]
        )
        row["errors"] = sum(sum(s.get("errors", {}).values()) for s in summaries)
        row["unfinished_jobs"] = sum(s.get("jobs", {}).get("unfinished", 0) for s in summaries)
        row["loadgen_bottlenecked"] = sum(bool(s.get("loadgen", {}).get("bottleneck")) for s in summaries)
        rows.append(row)
    return rows


def _completed_per_s(run_dir: Path, summary: Mapping[str, Any]) -> float | None:
    """Jobs that finished inside the window (whenever submitted), per second: the summary's
    throughput.completed_per_s, or for older summaries without it, from jobs.csv.gz.

    The summary's jobs_per_s counts only jobs submitted in the window: when submits outpace
    execution (a closed-loop submit-only load can), the backlog pushes them past the window's end and
    it falls towards 0, while this stays the rate at which the system completes work. In the closed
    loop's wait mode the two agree up to the jobs in flight at the window's edges."""
    recorded = _metric(summary, ("throughput", "completed_per_s"))
    if recorded is not None:
        return recorded
    if not (run_dir / JOBS_FILE).is_file():
        return None
    start, end = float(summary["window"]["start"]), float(summary["window"]["end"])
    ends = load_jobs(run_dir)["end_time"]
    return float(((ends >= start) & (ends < end)).sum()) / (end - start)


def _csv_value(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def write_summary(rows: Sequence[Mapping[str, Any]], path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0]) if rows else ["experiment", *POINT_COLUMNS]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_value(row.get(c, "")) for c in columns])
    tmp.replace(path)
    return path


def _pm(mean: float, ci: float, digits: int) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.{digits}f}" if math.isnan(ci) else f"{mean:.{digits}f}±{ci:.{digits}f}"


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The table for a terminal: mean±95% CI half-width per column."""
    header = ["design", "arrival", "duration", "mix", "store", "n", "req/s", "jobs/s", "done/s"]
    header += ["lat p50", "lat p99"]
    header += ["done p50", "done p99", "err", "unfin", "lg!"]
    lines = [header]
    for r in rows:
        lines.append(
            [
                str(r["design"]),
                str(r["arrival"]),
                str(r["duration"]),
                str(r["mix"]),
                str(r["store"]),
                f"{r['n']}/{r['planned']}",
                _pm(r["requests_per_s_mean"], r["requests_per_s_ci95"], 1),
                _pm(r["jobs_per_s_mean"], r["jobs_per_s_ci95"], 1),
                _pm(r["completed_per_s_mean"], r["completed_per_s_ci95"], 1),
                _pm(r["latency_p50_ms_mean"], r["latency_p50_ms_ci95"], 2),
                _pm(r["latency_p99_ms_mean"], r["latency_p99_ms_ci95"], 2),
                _pm(r["completion_p50_ms_mean"], r["completion_p50_ms_ci95"], 1),
                _pm(r["completion_p99_ms_mean"], r["completion_p99_ms_ci95"], 1),
                str(r["errors"]),
                str(r["unfinished_jobs"]),
                str(r["loadgen_bottlenecked"]),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(
        [
            *text,
            "(mean±95% CI half-width over replications; latencies in ms; jobs/s: jobs submitted in the window"
            " and finished in it; done/s: jobs finished in the window (end-to-end jobs/s); done p50/p99:"
            " submit -> terminal; unfin: jobs unfinished at the drain; lg! = loadgen-bottlenecked runs)",
        ]
    )


def default_summary_path(exp: Experiment) -> Path:
    return Path("data/experiments") / exp.name / "summary.csv"
