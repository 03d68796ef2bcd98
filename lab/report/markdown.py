"""The paper's formatting: numbers, mean ± CI, percentages and Markdown tables."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence


def fmt(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def pm(mean: float, ci: float, digits: int = 1) -> str:
    """mean ± 95% CI half-width as the summary table holds them."""
    if math.isnan(mean):
        return "-"
    return fmt(mean, digits) if math.isnan(ci) else f"{mean:.{digits}f} ± {ci:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.0f}%"
