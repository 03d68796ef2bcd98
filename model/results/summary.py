"""The summary of a run (summary.json), exactly as data/README.md specifies it (schema 1).

The real load generator, the Celery baseline and the simulator all call `summarize` on their records,
so the three kinds of run are summarised by the same code. model/results/runs.py does the file I/O.

Definitions (all restricted to the measurement window [start, end) of *intended* times, so the
warm-up and the drain after the run do not count):
- latency: end_time - intended_time of every request whatever its status (a fast error is still an
  answer the client waited for; for a request the generator gave up on, CANCELLED, it is a lower
  bound); errors are counted separately by code.
- throughput.requests_per_s: OK requests intended in the window that also ended by its end, per second
  (under overload, requests that queue past the window do not count as served in it).
- throughput.jobs_per_s: jobs submitted in the window that reached a terminal state by its end.
- throughput.completed_per_s: jobs that reached a terminal state inside the window, whenever they
  were submitted (the service rate; jobs_per_s falls towards 0 when submits outpace execution).
- completion: end_time - submit_time of jobs submitted in the window that finished (at any time).
- jobs: jobs submitted (accepted) in the window by final state; "unfinished" had no terminal state
  when the run ended.
- outcomes: over the jobs submitted in the window that finished: attempts per job (mean, max), the
  FAILED, CANCELLED and timed-out fractions (timed out: FAILED with reason TIMEOUT, i.e. its last
  attempt ran past its execution timeout), and completion (submit -> terminal) by priority.

Latencies are recorded in microseconds with 3 significant digits (HdrHistogram); percentiles are its
nearest-rank values (the highest value equivalent to the rank's bucket); the mean is exact. Output is
deterministic: the same records give the same dict, with values rounded so that JSON text is stable.
"""

from __future__ import annotations

import json
import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from hdrh.histogram import HdrHistogram

from model.errors import InvalidArgument
from model.results.schema import DESIGNS, KINDS, OP_NAMES, SCHEMA, JobRecord, RequestRecord
from model.states import TERMINAL, JobState
from model.workload import Op

SIGNIFICANT_DIGITS = 3
HIGHEST_US = 24 * 3600 * 1_000_000  # values above one day are clamped (and would mean a broken run)
PERCENTILES = (("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("p999", 99.9))
LOADGEN_KEYS = ("processes", "cpu_utilisation", "achieved_rate", "bottleneck", "bottleneck_reason")
_DIGITS = 6  # rounding of floats in the summary: microseconds, and stable JSON text


def _round(x: float) -> float:
    return round(float(x), _DIGITS)


def _micros(seconds: Iterable[float] | npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Whole microseconds, clipped to the histogram's range. Raw doubles (an array('d')) are read in
    place, and the steps run in one scratch array: 16 bytes a value at the peak (24 before)."""
    if isinstance(seconds, array):
        values: npt.NDArray[np.float64] = np.frombuffer(seconds, dtype=np.float64)
    elif isinstance(seconds, np.ndarray):
        values = seconds
    else:
        values = np.fromiter(seconds, dtype=np.float64)
    scratch = values * 1e6
    np.rint(scratch, out=scratch)
    np.clip(scratch, 0, HIGHEST_US, out=scratch)
    return scratch.astype(np.int64)


def histogram(seconds: Iterable[float] | npt.NDArray[np.float64]) -> HdrHistogram:
    """An HdrHistogram of durations given in seconds, recorded in whole microseconds (e.g. to merge
    or encode). latency_stats gives the same percentiles without filling one."""
    hist = HdrHistogram(1, HIGHEST_US, SIGNIFICANT_DIGITS)
    distinct, counts = np.unique(_micros(seconds), return_counts=True)  # one record_value per value
    for value, count in zip(distinct.tolist(), counts.tolist(), strict=True):
        hist.record_value(value, count)
    return hist


# Only its bucket arithmetic is used: walking a filled histogram's ~40k counts in Python takes ~0.2 s
# per percentile query, and the simulator summarises many runs.
_BUCKETS = HdrHistogram(1, HIGHEST_US, SIGNIFICANT_DIGITS)


def _top_of_bucket_ms(us: int) -> float:
    return _round(_BUCKETS.get_highest_equivalent_value(us) / 1000.0)


def latency_stats(seconds: Iterable[float] | npt.NDArray[np.float64]) -> dict[str, Any]:
    """count, p50, p95, p99, p999, mean and max in milliseconds (zeros when empty).

    The percentiles and max are exactly HdrHistogram's (value of rank max(1, round(p/100 * n)),
    reported as the highest value of its 3-digit bucket); the mean is the exact mean of the
    microsecond values (HdrHistogram's would be an approximation of it)."""
    us = _micros(seconds)
    us.sort()  # in place: _micros's result is this call's own
    count = int(us.size)
    if not count:
        return {"count": 0, **{name: 0.0 for name, _ in PERCENTILES}, "mean": 0.0, "max": 0.0}
    out: dict[str, Any] = {"count": count}
    for name, p in PERCENTILES:
        rank = max(int(p * count / 100 + 0.5), 1)  # HdrHistogram.get_target_count_at_percentile
        out[name] = _top_of_bucket_ms(int(us[rank - 1]))
    out["mean"] = _round(float(us.mean()) / 1000.0)
    out["max"] = _top_of_bucket_ms(int(us[-1]))
    return out


def _in_window(t: float, window: tuple[float, float]) -> bool:
    return window[0] <= t < window[1]


def _check_window(window: tuple[float, float]) -> float:
    start, end = window
    if not (math.isfinite(start) and math.isfinite(end) and end > start >= 0):
        raise InvalidArgument(f"window must satisfy 0 <= start < end, got {window}")
    return end - start


def _loadgen_block(loadgen: Mapping[str, Any]) -> dict[str, Any]:
    missing = [k for k in LOADGEN_KEYS if k not in loadgen]
    extra = sorted(set(loadgen) - set(LOADGEN_KEYS))
    if missing or extra:
        raise InvalidArgument(f"loadgen needs exactly {LOADGEN_KEYS}; missing {missing}, unknown {extra}")
    return {
        "processes": int(loadgen["processes"]),
        "cpu_utilisation": _round(loadgen["cpu_utilisation"]),
        "achieved_rate": _round(loadgen["achieved_rate"]),
        "bottleneck": bool(loadgen["bottleneck"]),
        "bottleneck_reason": str(loadgen["bottleneck_reason"]),
    }


def summarize(
    requests: Sequence[RequestRecord],
    jobs: Sequence[JobRecord],
    *,
    window: tuple[float, float],
    run_id: str,
    kind: str,
    design: str,
    offered_rate: float | None,
    loadgen: Mapping[str, Any],
) -> dict[str, Any]:
    """The summary.json dict of data/README.md (see the module docstring for the definitions)."""
    if kind not in KINDS:
        raise InvalidArgument(f"kind must be one of {KINDS}, got {kind!r}")
    if design not in DESIGNS:
        raise InvalidArgument(f"design must be one of {DESIGNS}, got {design!r}")
    seconds = _check_window(window)
    start, end = window

    # raw doubles (8 bytes a value, where a list holds a 32-byte float object): a run has millions
    latencies: dict[Op, array[float]] = {op: array("d") for op in Op}
    errors: dict[str, int] = {}
    served = 0
    for r in requests:
        if not _in_window(r.intended_time, window):
            continue
        latencies[r.op].append(r.latency)
        if r.status == "OK":
            served += r.end_time <= end
        else:
            errors[r.status] = errors.get(r.status, 0) + 1

    completions = array("d")
    finished = _Outcomes()  # not the records: a summary of a million jobs must not hold them all
    counts = {"submitted": 0, "succeeded": 0, "failed": 0, "cancelled": 0, "unfinished": 0}
    completed_in_window = 0
    finished_in_window = 0
    for j in jobs:
        if j.final_state in TERMINAL and math.isfinite(j.end_time) and _in_window(j.end_time, window):
            finished_in_window += 1
        if not _in_window(j.submit_time, window):
            continue
        counts["submitted"] += 1
        if j.final_state in TERMINAL and math.isfinite(j.end_time):
            counts[j.final_state.name.lower()] += 1
            completions.append(j.completion_time)
            finished.add(j)
            completed_in_window += j.end_time <= end
        else:
            counts["unfinished"] += 1

    every = array("d")
    for op in Op:
        every.extend(latencies[op])
    latency = {"all": latency_stats(every)}
    del every
    for op in Op:
        if latencies[op]:
            latency[OP_NAMES[op]] = latency_stats(latencies[op])

    return {
        "schema": SCHEMA,
        "run_id": run_id,
        "kind": kind,
        "design": design,
        "window": {"start": _round(start), "end": _round(end), "seconds": _round(seconds)},
        "offered_rate": None if offered_rate is None else _round(offered_rate),
        "throughput": {
            "requests_per_s": _round(served / seconds),
            "jobs_per_s": _round(completed_in_window / seconds),
            "completed_per_s": _round(finished_in_window / seconds),
        },
        "latency_ms": latency,
        "completion_ms": latency_stats(completions),
        "errors": dict(sorted(errors.items())),
        "jobs": counts,
        "outcomes": finished.block(),
        "loadgen": _loadgen_block(loadgen),
    }


class _Outcomes:
    """The `outcomes` block gathered one finished job at a time (counts, sums and the completion
    times by priority), so that no record needs to be kept for it."""

    def __init__(self) -> None:
        self.n = 0
        self.attempts = 0
        self.attempts_max = 0
        self.failed = 0
        self.cancelled = 0
        self.timed_out = 0
        self.by_priority: dict[int, array[float]] = {}  # raw doubles: 8 bytes a job, not 32

    def add(self, j: JobRecord) -> None:
        self.n += 1
        times = self.by_priority.get(j.priority)
        if times is None:
            times = self.by_priority[j.priority] = array("d")
        times.append(j.completion_time)
        self.attempts += j.attempts
        self.attempts_max = max(self.attempts_max, j.attempts)
        self.failed += j.final_state is JobState.FAILED
        self.cancelled += j.final_state is JobState.CANCELLED
        self.timed_out += j.final_state is JobState.FAILED and j.reason == "TIMEOUT"

    def block(self) -> dict[str, Any]:
        n, by_priority = self.n, self.by_priority
        return {
            "finished": n,
            "attempts_mean": _round(self.attempts / n) if n else 0.0,
            "attempts_max": self.attempts_max,
            "failed": _round(self.failed / n) if n else 0.0,
            "cancelled": _round(self.cancelled / n) if n else 0.0,
            "timed_out": _round(self.timed_out / n) if n else 0.0,
            "completion_ms_by_priority": {str(p): latency_stats(by_priority[p]) for p in sorted(by_priority)},
        }


def outcomes(finished: Iterable[JobRecord]) -> dict[str, Any]:
    """The `outcomes` block of finished jobs (see the module docstring)."""
    gathered = _Outcomes()
    for j in finished:
        gathered.add(j)
    return gathered.block()


# summary.json paths of the metrics that the experiments' summary.csv, the predictions and the paper
# tabulate, by their column names, in the predictions' column order
COLUMN_PATHS: dict[str, tuple[str, ...]] = {
    "completed_per_s": ("throughput", "completed_per_s"),
    "requests_per_s": ("throughput", "requests_per_s"),
    "jobs_per_s": ("throughput", "jobs_per_s"),
    "latency_p50_ms": ("latency_ms", "all", "p50"),
    "latency_p95_ms": ("latency_ms", "all", "p95"),
    "latency_p99_ms": ("latency_ms", "all", "p99"),
    "completion_p50_ms": ("completion_ms", "p50"),
    "completion_p95_ms": ("completion_ms", "p95"),
    "completion_p99_ms": ("completion_ms", "p99"),
    "latency_submit_mean_ms": ("latency_ms", "submit", "mean"),
    "completion_mean_ms": ("completion_ms", "mean"),
}


def metric(summary: Mapping[str, Any], path: Sequence[str]) -> float | None:
    """The number at `path` in a summary.json mapping (e.g. ("latency_ms", "all", "p99")), or None
    when it is missing, not a number, or not finite."""
    value: Any = summary
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def format_summary(summary: Mapping[str, Any]) -> str:
    """A few lines: throughput, latency per op, completion, errors, jobs and the generator's health."""
    lines = [
        f"{summary['run_id']}: {summary['kind']} {summary['design']}, window "
        f"{summary['window']['seconds']:g}s, offered {summary['offered_rate']} req/s, served "
        f"{summary['throughput']['requests_per_s']:g} req/s, jobs {summary['throughput']['jobs_per_s']:g}/s, "
        f"completed {summary['throughput'].get('completed_per_s', float('nan')):g}/s"
    ]
    for name, row in [*summary["latency_ms"].items(), ("completion", summary["completion_ms"])]:
        lines.append(
            f"  {name:<10} n={row['count']:<7} p50={row['p50']:.3f} p95={row['p95']:.3f} "
            f"p99={row['p99']:.3f} p999={row['p999']:.3f} mean={row['mean']:.3f} max={row['max']:.3f} ms"
        )
    lines.append(f"  errors {json.dumps(summary['errors'])}  jobs {json.dumps(summary['jobs'])}")
    out = summary.get("outcomes")
    if out and out["finished"]:
        by_priority = ", ".join(
            f"{p}: {row['p50']:.1f}/{row['p99']:.1f}" for p, row in out["completion_ms_by_priority"].items()
        )
        lines.append(
            f"  outcomes attempts/job {out['attempts_mean']:.3f} (max {out['attempts_max']}), failed "
            f"{out['failed']:.1%}, cancelled {out['cancelled']:.1%}, timed out {out['timed_out']:.1%}; "
            f"completion p50/p99 ms by priority {by_priority}"
        )
    lines.append(f"  loadgen {json.dumps(summary['loadgen'])}")
    return "\n".join(lines)
