"""The soak's arithmetic (the soak itself is a benchmark: `dtq soak`, see lab/soak.py)."""

from __future__ import annotations

import pytest

from lab.soak import phase_rate, slope_per_minute


def test_slope_per_minute() -> None:
    assert slope_per_minute([(0.0, 10.0), (30.0, 11.0), (60.0, 12.0)]) == pytest.approx(2.0)
    assert slope_per_minute([(5.0, 1.0)]) == 0.0


def test_phases_of_the_load() -> None:
    assert phase_rate(10.0, 90.0, 100.0, 3.0) == ("capacity", 100.0)
    assert phase_rate(40.0, 90.0, 100.0, 3.0) == ("overload", 300.0)
    assert phase_rate(70.0, 90.0, 100.0, 3.0) == ("capacity", 100.0)
