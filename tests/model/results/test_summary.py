"""Run summaries (model/results/summary.py) against hand-computed values."""

from __future__ import annotations

import json
import math
import tracemalloc
from array import array
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.errors import InvalidArgument
from model.results.schema import JobRecord, RequestRecord
from model.results.summary import LOADGEN_KEYS, _Outcomes, histogram, latency_stats, summarize
from model.states import JobState
from model.workload import Op

LOADGEN: dict[str, Any] = {
    "processes": 1,
    "cpu_utilisation": 0.25,
    "achieved_rate": 100.0,
    "bottleneck": False,
    "bottleneck_reason": "",
}


def nearest_rank(values: list[float], p: float) -> float:
    """HdrHistogram's percentile: the value of rank max(1, round-half-up(p/100 * n))."""
    ordered = sorted(values)
    rank = max(1, int(p / 100 * len(ordered) + 0.5))
    return ordered[rank - 1]


def close(hdr_value: float, exact: float) -> bool:
    """Within HDR's 3-significant-digit precision (plus the microsecond rounding)."""
    return abs(hdr_value - exact) <= exact * 1e-3 + 1e-3


def summary(requests: list[RequestRecord], jobs: list[JobRecord], **kwargs: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "window": (1.0, 11.0),
        "run_id": "r1",
        "kind": "real",
        "design": "mono",
        "offered_rate": 100.0,
        "loadgen": LOADGEN,
    }
    options.update(kwargs)
    return summarize(requests, jobs, **options)


def req(t: float, latency: float, op: Op = Op.SUBMIT, status: str = "OK", client: int = 0) -> RequestRecord:
    return RequestRecord(client, op, t, t, t + latency, status, "j" if op is Op.SUBMIT else "")


# ---------------------------------------------------------------------------- percentiles
def test_latency_percentiles_match_hand_computed_values() -> None:
    rng = np.random.default_rng(3)
    latencies = (rng.lognormal(-5, 1, 2000)).tolist()  # seconds, ~7 ms median, long tail
    requests = [req(1.0 + i * 0.004, lat) for i, lat in enumerate(latencies)]
    out = summary(requests, [])["latency_ms"]
    assert set(out) == {"all", "submit"}
    for name in ("all", "submit"):
        stats = out[name]
        assert stats["count"] == 2000
        ms = [x * 1000 for x in latencies]
        for key, p in (("p50", 50), ("p95", 95), ("p99", 99), ("p999", 99.9)):
            assert close(stats[key], nearest_rank(ms, p)), (key, stats[key], nearest_rank(ms, p))
        assert close(stats["max"], max(ms))
        assert close(stats["mean"], sum(ms) / len(ms))


def test_small_known_data() -> None:
    # 1..10 ms: p50 is the 5th value, p95 and above the 10th
    requests = [req(2.0, k / 1000) for k in range(1, 11)]
    stats = summary(requests, [])["latency_ms"]["all"]
    expected = {"p50": 5.0, "p95": 10.0, "p99": 10.0, "p999": 10.0, "mean": 5.5, "max": 10.0}
    assert stats["count"] == 10
    for key, value in expected.items():  # HDR reports the top of each value's bucket: 10 ms -> 10.007
        assert close(stats[key], value), (key, stats[key])


def test_histogram_is_in_microseconds_with_three_digits() -> None:
    hist = histogram([0.001234567, 1.5])
    assert hist.get_total_count() == 2
    assert 1234 <= hist.get_value_at_percentile(50) <= 1235  # 1234.567 us, rounded to a whole us
    assert abs(hist.get_max_value() - 1_500_000) <= 1500  # 3 significant digits
    assert latency_stats([])["count"] == 0


def test_latency_stats_equal_hdrhistogram_own_queries() -> None:
    rng = np.random.default_rng(5)
    for sample in (rng.lognormal(-6, 2, 5000), rng.exponential(0.002, 37), np.array([0.0, 3.0]), np.ones(1)):
        hist = histogram(sample)
        stats = latency_stats(sample)
        for key, p in (("p50", 50.0), ("p95", 95.0), ("p99", 99.0), ("p999", 99.9)):
            assert stats[key] == round(hist.get_value_at_percentile(p) / 1000, 6), key
        assert stats["max"] == round(hist.get_max_value() / 1000, 6)
        assert stats["count"] == hist.get_total_count()
        assert close(stats["mean"], hist.get_mean_value() / 1000)


# ---------------------------------------------------------------------------- window, throughput, errors
def test_only_requests_intended_in_the_window_count() -> None:
    requests = [
        req(0.5, 0.001),  # warm-up
        req(1.0, 0.002),  # window start is inclusive
        req(5.0, 0.003, Op.STATUS, "NOT_FOUND"),
        req(6.0, 0.004, Op.RESULT, "FAILED_PRECONDITION"),
        req(7.0, 0.005, Op.LIST),
        req(10.999, 0.5),  # intended in the window, answered after it: latency yes, throughput no
        req(11.0, 0.001),  # window end is exclusive
    ]
    out = summary(requests, [])
    assert out["latency_ms"]["all"]["count"] == 5
    assert {k: v["count"] for k, v in out["latency_ms"].items()} == {
        "all": 5,
        "submit": 2,
        "status": 1,
        "result": 1,
        "list": 1,
    }
    assert out["errors"] == {"FAILED_PRECONDITION": 1, "NOT_FOUND": 1}
    assert out["throughput"]["requests_per_s"] == pytest.approx(2 / 10)  # the t=1.0 submit and the list
    assert out["window"] == {"start": 1.0, "end": 11.0, "seconds": 10.0}
    assert out["offered_rate"] == 100.0


def test_latency_is_measured_from_the_intended_time() -> None:
    late = RequestRecord(0, Op.SUBMIT, intended_time=2.0, start_time=2.5, end_time=2.501, status="OK")
    out = summary([late], [])
    assert close(out["latency_ms"]["all"]["p50"], 501.0)


def test_jobs_and_completion() -> None:
    nan = math.nan
    jobs = [
        JobRecord("a", 2.0, 2.01, 2.1, JobState.SUCCEEDED, 1, 0.05),  # 100 ms
        JobRecord("b", 3.0, 3.01, 3.3, JobState.SUCCEEDED, 2, 0.05),  # 300 ms
        JobRecord("c", 4.0, 4.01, 4.2, JobState.FAILED, 3, 0.05),  # 200 ms
        JobRecord("d", 5.0, 5.01, 5.4, JobState.CANCELLED, 1, 0.05),  # 400 ms
        JobRecord("e", 10.9, 10.91, 11.5, JobState.SUCCEEDED, 1, 0.05),  # finished after the window
        JobRecord("f", 6.0, 6.01, nan, JobState.RUNNING, 1, 0.05),  # never finished
        JobRecord("g", 0.5, 0.51, 0.6, JobState.SUCCEEDED, 1, 0.05),  # warm-up
        JobRecord("h", 7.0, 7.01, nan, JobState.STATE_UNSPECIFIED, 0, 0.05),  # lost
        JobRecord("i", 0.9, 0.91, 1.5, JobState.SUCCEEDED, 1, 0.05),  # submitted in warm-up, done in window
    ]
    out = summary([], jobs)
    assert out["jobs"] == {"submitted": 7, "succeeded": 3, "failed": 1, "cancelled": 1, "unfinished": 2}
    completion = out["completion_ms"]
    assert completion["count"] == 5
    assert close(completion["p50"], 300.0) and close(completion["max"], 600.0)
    assert close(completion["mean"], (100 + 300 + 200 + 400 + 600) / 5)
    assert out["throughput"]["jobs_per_s"] == pytest.approx(4 / 10)  # e ended after the window
    assert out["throughput"]["completed_per_s"] == pytest.approx(5 / 10)  # a-d and i ended inside it


def test_empty_run_and_closed_loop() -> None:
    out = summary([], [], offered_rate=None)
    assert out["offered_rate"] is None
    assert out["latency_ms"] == {"all": latency_stats([])}
    assert out["jobs"]["submitted"] == 0 and out["errors"] == {}
    assert out["throughput"] == {"requests_per_s": 0.0, "jobs_per_s": 0.0, "completed_per_s": 0.0}


def test_schema_fields_and_loadgen_block() -> None:
    out = summary([req(2.0, 0.001)], [])
    assert list(out) == [
        "schema",
        "run_id",
        "kind",
        "design",
        "window",
        "offered_rate",
        "throughput",
        "latency_ms",
        "completion_ms",
        "errors",
        "jobs",
        "outcomes",
        "loadgen",
    ]
    assert out["schema"] == 1 and out["run_id"] == "r1" and out["kind"] == "real" and out["design"] == "mono"
    assert tuple(out["loadgen"]) == LOADGEN_KEYS and out["loadgen"] == LOADGEN


def test_outcomes_by_hand() -> None:
    jobs = [
        JobRecord("a", 2.0, 2.1, 2.5, JobState.SUCCEEDED, 1, 0.1, priority=9),
        JobRecord("b", 2.0, 2.1, 4.0, JobState.FAILED, 4, 0.1, reason="HANDLER_ERROR"),
        JobRecord("c", 3.0, 3.1, 4.0, JobState.FAILED, 2, 0.1, reason="TIMEOUT"),
        JobRecord("d", 3.0, 3.1, 3.5, JobState.CANCELLED, 1, 0.1, priority=9, reason="CANCELLED"),
        JobRecord("e", 3.0, 3.1, math.nan, JobState.RUNNING, 1, 0.1),  # unfinished: not counted
        JobRecord("f", 0.5, 0.6, 3.0, JobState.FAILED, 3, 0.1),  # submitted before the window
    ]
    out = summary([], jobs)["outcomes"]
    assert out["finished"] == 4
    assert out["attempts_mean"] == 2.0 and out["attempts_max"] == 4
    assert out["failed"] == 0.5 and out["cancelled"] == 0.25 and out["timed_out"] == 0.25
    by_priority = out["completion_ms_by_priority"]
    assert list(by_priority) == ["0", "9"]
    assert by_priority["9"]["count"] == 2 and close(by_priority["9"]["max"], 500.0)
    assert by_priority["0"]["count"] == 2 and close(by_priority["0"]["p50"], 1000.0)
    empty = summary([], [])["outcomes"]
    assert empty["finished"] == 0 and empty["attempts_mean"] == 0.0
    assert empty["completion_ms_by_priority"] == {}


@pytest.mark.parametrize(
    "kwargs",
    [
        {"kind": "fake"},
        {"design": "both"},
        {"window": (2.0, 1.0)},
        {"window": (-1.0, 1.0)},
        {"loadgen": {"processes": 1}},
        {"loadgen": {**LOADGEN, "extra": 1}},
    ],
)
def test_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(InvalidArgument):
        summary([], [], **kwargs)


def test_deterministic() -> None:
    rng = np.random.default_rng(9)
    requests = [req(1 + i / 100, float(x), Op(i % 5)) for i, x in enumerate(rng.exponential(0.01, 800))]
    jobs = [
        JobRecord(f"j{i}", 1 + i / 10, 1 + i / 10, 1.5 + i / 10, JobState.SUCCEEDED, 1, 0.1)
        for i in range(50)
    ]
    a = json.dumps(summary(requests, jobs), sort_keys=True)
    b = json.dumps(summary(list(reversed(requests)), list(reversed(jobs))), sort_keys=True)
    assert a == b


@given(st.lists(st.floats(-1.0, 5000.0, allow_nan=False), max_size=300))
def test_latency_stats_are_the_same_from_a_list_raw_doubles_or_numpy(seconds: list[float]) -> None:
    """summarize hands latency_stats raw doubles (array('d'), read in place); a list or a numpy
    array of the same values gives the same statistics."""
    want = latency_stats(seconds)
    assert latency_stats(array("d", seconds)) == want
    assert latency_stats(np.asarray(seconds, dtype=np.float64)) == want


def test_latency_stats_of_raw_doubles_peak_at_two_scratch_arrays() -> None:
    """A size census (tracemalloc's peak, not time) of the statistics of 500,000 latencies held as
    raw doubles: the microseconds are worked out in one scratch array and sorted in place, about
    16 bytes a value at the peak (24 before: a copy in, the steps' temporaries, a sorted copy)."""
    values = array("d", np.random.default_rng(1).exponential(0.01, 500_000).tobytes())
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        stats = latency_stats(values)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert stats["count"] == len(values)
    assert peak / len(values) <= 17, f"{peak / len(values):.1f} bytes a value at the peak"


def test_outcomes_hold_completion_times_as_raw_doubles() -> None:
    """The outcomes block's completion times by priority, gathered over a run's jobs: 8 bytes a job
    (a list of float objects was 32: a million-job run's summary held 32 MB in it)."""
    done = JobState.SUCCEEDED
    jobs = [JobRecord(f"j{i}", i, i + 0.5, i + 1.5 + i * 1e-6, done, 1, 0.0, i % 3) for i in range(100_000)]
    gathered = _Outcomes()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for j in jobs:
            gathered.add(j)
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert held / len(jobs) <= 10, f"{held / len(jobs):.1f} bytes a job"
    by_priority = gathered.block()["completion_ms_by_priority"]
    assert sorted(by_priority) == ["0", "1", "2"]
    for p in (0, 1, 2):
        assert by_priority[str(p)] == latency_stats([j.completion_time for j in jobs if j.priority == p])
