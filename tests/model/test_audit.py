"""model/audit.py: the recovery, unavailability and duplicate measures on hand-made records."""

from __future__ import annotations

import math

import numpy as np
import pytest

from model.audit import duplicate_jobs, recovery_time, unavailable_time
from model.errors import InvalidArgument


def _steady(rate: float, start: float, end: float) -> np.ndarray:
    return np.arange(start, end, 1.0 / rate)


def test_no_dip_is_zero() -> None:
    times = _steady(20.0, 0.0, 20.0)
    assert recovery_time(times, fault_at=10.0, end=20.0) == 0.0


def test_gap_then_back_is_the_gap_rounded_to_bins() -> None:
    # 20/s, nothing completes in [10, 12.2), then 20/s again: the bin [12.0, 12.5) has 6 of 10
    times = np.concatenate([_steady(20.0, 0.0, 10.0), _steady(20.0, 12.2, 20.0)])
    assert recovery_time(times, fault_at=10.0, end=20.0) == 2.5
    # a lower bar: the partly refilled bin counts
    assert recovery_time(times, fault_at=10.0, end=20.0, fraction=0.5) == 2.0


def test_a_later_dip_counts_from_the_injection() -> None:
    times = np.concatenate([_steady(20.0, 0.0, 13.0), _steady(20.0, 14.0, 20.0)])
    assert recovery_time(times, fault_at=10.0, end=20.0) == 4.0


def test_never_back_is_inf_and_half_rate_is_not_back() -> None:
    times = np.concatenate([_steady(20.0, 0.0, 10.0), _steady(10.0, 10.0, 20.0)])
    assert recovery_time(times, fault_at=10.0, end=20.0) == math.inf
    nan_padded = np.concatenate([times, [math.nan]])  # unfinished jobs have no end time
    assert recovery_time(nan_padded, fault_at=10.0, end=20.0) == math.inf


def test_bad_windows_are_rejected() -> None:
    with pytest.raises(InvalidArgument):
        recovery_time([1.0], fault_at=2.0, end=10.0)  # the baseline starts before the run
    with pytest.raises(InvalidArgument):
        recovery_time(_steady(5.0, 0.0, 10.0), fault_at=9.8, end=10.0)  # no whole bin after it
    with pytest.raises(InvalidArgument):
        recovery_time([], fault_at=6.0, end=10.0)  # nothing to recover to


def test_unavailable_time_counts_bins_with_failures() -> None:
    starts = [9.0, 10.1, 10.2, 11.7, 13.0]
    ok = [False, False, True, False, True]
    # the failure before the fault does not count; 10.1 and 11.7 fall in two different bins
    assert unavailable_time(starts, ok, fault_at=10.0, end=14.0) == 1.0
    assert unavailable_time(starts, [True] * 5, fault_at=10.0, end=14.0) == 0.0
    with pytest.raises(InvalidArgument):
        unavailable_time(starts, ok[:2], fault_at=10.0, end=14.0)


def test_duplicates() -> None:
    assert duplicate_jobs(["a", "b", "a", "c", "c", "c"]) == ["a", "c"]
    assert duplicate_jobs([]) == []
