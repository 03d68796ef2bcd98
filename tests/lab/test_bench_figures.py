"""`dtq bench`'s arithmetic (lab/bench/figures.py): medians with their spread, ratios paired by round,
the better of two baseline configurations, and the MET / NOT MET lines of the targets."""

from __future__ import annotations

import math

from lab.bench.figures import Series, Target, best_of, paired_ratios


def test_series_median_and_spread_skip_missing_rounds() -> None:
    s = Series([300.0, 100.0, math.nan, 200.0])
    assert (s.median, s.low, s.high) == (200.0, 100.0, 300.0)
    assert s.show() == "200 [100-300]"
    assert Series([0.0011, 0.0009, 0.0010]).show(1e3, 2, " ms") == "1.00 [0.90-1.10] ms"
    assert Series().show() == "n/a" and math.isnan(Series([math.nan]).median)
    assert Series([9.44]).show(digits=2, unit=" RPCs") == "9.44 RPCs"  # one count: no spread to show


def test_ratios_are_paired_by_round_not_taken_of_medians() -> None:
    # a machine that slows down in round 2 slows both systems: the paired ratio stays 2
    a, b = Series([200.0, 100.0, 210.0]), Series([100.0, 50.0, 105.0])
    assert paired_ratios(a, b).values == [2.0, 2.0, 2.0]
    # rounds missing on either side, or a zero baseline, are left out
    assert paired_ratios(Series([1.0, math.nan, 3.0]), Series([1.0, 1.0, 0.0])).values == [1.0]


def test_best_of_picks_the_higher_median_and_ignores_unmeasured() -> None:
    durable, default = Series([400.0, 420.0, 380.0]), Series([500.0, 450.0, 520.0])
    assert best_of([("celery/durable", durable), ("celery/default", default)]) == ("celery/default", default)
    assert best_of([("x", Series())]) is None


def test_target_lines_say_met_not_met_and_not_measured() -> None:
    at_least = Target("A >= 1.0x Celery", Series([0.9, 1.1, 1.05]), 1.0, True, basis="A 1 vs C 1")
    assert at_least.met is True
    assert (
        at_least.line() == "  MET          A >= 1.0x Celery: 1.05 [0.90-1.10]x (target >= 1.00x; A 1 vs C 1)"
    )
    at_most = Target("CPU <= 0.7 ms", Series([0.0008, 0.0009, 0.0007]), 0.7e-3, False, unit="ms", scale=1e3)
    assert at_most.met is False
    assert at_most.line() == "  NOT MET      CPU <= 0.7 ms: 0.80 [0.70-0.90] ms (target <= 0.70 ms)"
    # on the bound counts as met, both ways
    assert Target("x", Series([1.2]), 1.2, False).met is True
    assert Target("x", Series([0.75]), 0.75, True).met is True
    assert Target("x", Series(), 1.0, True).met is None
    assert Target("x", Series(), 1.0, True).line().startswith("  NOT MEASURED")
