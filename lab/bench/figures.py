"""The bench's arithmetic: a figure measured over several rounds (median and spread), ratios of
figures paired by round, and the target lines (MET / NOT MET) printed with the baselines they use.

Rounds are interleaved (every system once per round, in turn), so a ratio is taken within each round
first and the target is judged on the median of those paired ratios: a drift of a shared machine's
load then hits both sides of each ratio alike.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


@dataclass
class Series:
    """Repeated measurements of one figure, one per round (NaN for a round that has none)."""

    values: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def _finite(self) -> list[float]:
        return [v for v in self.values if math.isfinite(v)]

    @property
    def median(self) -> float:
        finite = self._finite()
        return statistics.median(finite) if finite else math.nan

    @property
    def low(self) -> float:
        finite = self._finite()
        return min(finite) if finite else math.nan

    @property
    def high(self) -> float:
        finite = self._finite()
        return max(finite) if finite else math.nan

    def show(self, scale: float = 1.0, digits: int = 0, unit: str = "") -> str:
        """'median [min-max]unit', values times `scale` (one value: just it); 'n/a' when nothing was
        measured."""
        if not self._finite():
            return "n/a"
        m, lo, hi = (x * scale for x in (self.median, self.low, self.high))
        if len(self._finite()) == 1:
            return f"{m:.{digits}f}{unit}"
        return f"{m:.{digits}f} [{lo:.{digits}f}-{hi:.{digits}f}]{unit}"


def paired_ratios(numerator: Series, denominator: Series) -> Series:
    """numerator / denominator round by round (rounds where either is missing or 0 are left out)."""
    out = Series()
    for a, b in zip(numerator.values, denominator.values, strict=False):
        if math.isfinite(a) and math.isfinite(b) and b > 0:
            out.values.append(a / b)
    return out


@dataclass(frozen=True)
class Target:
    """One target of issue 22: `figure` compared with `bound` (>= when `at_least`, else <=)."""

    name: str
    figure: Series
    bound: float
    at_least: bool
    unit: str = "x"  # "x": the figure is a ratio; otherwise its unit, printed with `scale`
    scale: float = 1.0
    digits: int = 2
    basis: str = ""  # what the figure is made of: the run's own baselines, with their values

    @property
    def met(self) -> bool | None:
        """None when the figure could not be measured."""
        value = self.figure.median
        if not math.isfinite(value):
            return None
        return value >= self.bound if self.at_least else value <= self.bound

    def line(self) -> str:
        verdict = {True: "MET", False: "NOT MET", None: "NOT MEASURED"}[self.met]
        sign = ">=" if self.at_least else "<="
        unit = "x" if self.unit == "x" else f" {self.unit}"
        figure = self.figure.show(self.scale, self.digits, unit)
        bound = f"{self.bound * self.scale:.{self.digits}f}{unit}"
        basis = f"; {self.basis}" if self.basis else ""
        return f"  {verdict:<12} {self.name}: {figure} (target {sign} {bound}{basis})"


def best_of(named: Sequence[tuple[str, Series]]) -> tuple[str, Series] | None:
    """The series with the highest median (a baseline measured in several configurations is
    compared at its best); None when none was measured."""
    measured = [(name, s) for name, s in named if math.isfinite(s.median)]
    return max(measured, key=lambda kv: kv[1].median) if measured else None
