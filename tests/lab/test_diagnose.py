"""lab/diagnose.py and lab/gcprobe.py: per-request CPU, run-queue wait and GC pauses of a short real run."""

from __future__ import annotations

from lab import diagnose
from lab.gcprobe import full_collection_ms

METRICS = """\
dtq_gc_pause_seconds_bucket{generation="0",le="0.001"} 9.0
dtq_gc_pause_seconds_bucket{generation="0",le="0.005"} 10.0
dtq_gc_pause_seconds_count{generation="0"} 10.0
dtq_gc_pause_seconds_sum{generation="0"} 0.004
dtq_gc_pause_seconds_bucket{generation="2",le="0.001"} 0.0
dtq_gc_pause_seconds_bucket{generation="2",le="0.005"} 0.0
dtq_gc_pause_seconds_count{generation="2"} 1.0
dtq_gc_pause_seconds_sum{generation="2"} 0.03
"""


def test_gc_pauses_are_parsed_by_generation() -> None:
    parsed = diagnose.gc_pauses(METRICS)
    assert parsed["0"] == {"collections": 10.0, "pause_ms": 4.0, "over_1ms": 1.0, "over_5ms": 0.0}
    assert parsed["2"] == {"collections": 1.0, "pause_ms": 30.0, "over_1ms": 1.0, "over_5ms": 1.0}
    assert "1" not in parsed


def test_a_short_run_accounts_cpu_and_waits_per_request() -> None:
    out = diagnose.diagnose("mono", 40.0, "submit", 1.0, store="memory", age=20)
    assert 5 <= out["aged_jobs"] <= 60  # about 20 (a Poisson trace), submitted first, not measured
    assert out["requests"] > 10 and out["p50_ms"] > 0 and out["p99_ms"] >= out["p50_ms"]
    assert out["cpu_ms_per_request"] > 0 and out["runqueue_wait_ms_per_request"] >= 0
    assert set(out["gc_during_run"]) == {f"n{i}" for i in range(1, 7)}  # every node's histogram scraped
    assert all("0" in gens for gens in out["gc_during_run"].values())  # parsed: young collections seen
    split = out["threads_during_run"]
    assert set(split) == set(out["gc_during_run"])
    assert all(s["threads_busy"] >= 1 and 0 < s["busiest_share"] <= 1 for s in split.values()), split


def test_the_same_point_in_the_simulator() -> None:
    out = diagnose.simulated(
        "mono", 40.0, "mixed", 1.0, "tests/sim/data/calibration-2026-11-28.json", "sqlite"
    )
    assert out["p50_ms"] > 0 and out["p99_ms"] >= out["p50_ms"] and out["cpu_ms_per_request"] > 0
    assert out["runqueue_wait_ms_per_request"] >= 0 and out["cpu_slice"] == 0.0


def test_fair_sharing_with_a_time_slice_slows_design_a_near_saturation() -> None:
    """Design A at high load: when the cores are shared as the kernel does (a busy loop keeps its core
    for its slice unless a process that ran less wakes), the hand-offs between its six processes
    wait longer than FIFO per burst, and the median grows (deterministic: the same seeds)."""
    calibration = "tests/sim/data/calibration-2026-11-28.json"
    for rate in (200.0, 230.0):
        fifo = diagnose.simulated("micro", rate, "submit", 2.0, calibration, "sqlite", {"cpu_slice": 0.0})
        fair = diagnose.simulated("micro", rate, "submit", 2.0, calibration, "sqlite", {"cpu_slice": 0.004})
        assert fair["cpu_slice"] == 0.004 and fair["p50_ms"] > 1.05 * fifo["p50_ms"], (rate, fifo, fair)


def test_a_full_collection_walks_the_retained_jobs() -> None:
    rows = full_collection_ms([0, 2000], repeats=3)
    assert [r["jobs"] for r in rows] == [0, 2000]
    # finished jobs are rows of raw columns (model/terminal.py), not objects a full collection walks:
    # 2,000 of them add a few tracked objects (the columns grow), not one or more each as before
    assert rows[1]["objects"] < rows[0]["objects"] + 200
    assert all(r["full_gc_ms"] > 0 for r in rows)


def test_gc_share_sums_the_nodes_pauses() -> None:
    young = {"collections": 10.0, "pause_ms": 2.0, "over_1ms": 0.0, "over_5ms": 0.0}
    full = {"collections": 1.0, "pause_ms": 20.0, "over_1ms": 1.0, "over_5ms": 1.0}
    line = {
        "requests": 100,
        "rate": 50.0,  # no wall_s: 2 s
        "cpu_ms_per_request": 2.0,
        "gc_during_run": {"a": {"0": young, "2": full}, "b": {"0": young}},
    }
    share = diagnose.gc_share(line)
    assert share["pause_ms_per_request"] == 0.24  # (2 + 20 + 2) / 100
    assert share["share_of_cpu"] == 0.12  # 24 ms of 200 ms
    assert share["full_collections"] == 1.0 and share["full_pause_ms_per_request"] == 0.2
    assert share["full_share_of_time"] == 0.01  # 20 ms of 2 s
    assert diagnose.gc_share({**line, "wall_s": 4.0})["full_share_of_time"] == 0.005
