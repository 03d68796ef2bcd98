"""Per-point intervals from the replications' own summaries (data/runs/<run_id>/summary.json).

The summary CSVs carry mean ± Student-t half-widths; on tail percentiles with 3-5 replications those
are symmetric about a skewed statistic and can go below zero. The figures instead draw the bootstrap
percentile interval of the mean over the replications (model.results.stats.bootstrap_ci), which lies
inside the replications' own range and so never below zero. Each point's resampling stream is seeded
from the point's key, so the same data draw the same intervals.
"""

from __future__ import annotations

import json
import math
import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from model.results.stats import bootstrap_ci

SEED = 20261207  # the bootstrap streams' root seed (one child per point key)


@dataclass(frozen=True, slots=True)
class Interval:
    mean: float
    lo: float
    hi: float
    n: int

    @property
    def errors(self) -> tuple[float, float]:
        """(below, above) the mean, for matplotlib's asymmetric yerr; (0, 0) when unknown."""
        if math.isnan(self.lo) or math.isnan(self.mean):
            return 0.0, 0.0
        return max(0.0, self.mean - self.lo), max(0.0, self.hi - self.mean)


def get(summary: Mapping[str, Any], path: Sequence[str]) -> float:
    value: Any = summary
    for key in path:
        value = value.get(key, {}) if isinstance(value, Mapping) else {}
    return float(value) if isinstance(value, int | float) else math.nan


def rng_for(key: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([SEED, zlib.crc32(key.encode())]))


def interval(values: Iterable[float], key: str) -> Interval:
    """Mean and 95% bootstrap interval of the mean of `values` (NaNs dropped)."""
    arr = np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    if arr.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0)
    lo, hi = bootstrap_ci(arr, rng_for(key))
    return Interval(float(arr.mean()), lo, hi, int(arr.size))


def load_summaries(runs: Path, run_ids: Iterable[str]) -> list[dict[str, Any]]:
    """The summary.json of each run id that has one under `runs`."""
    out = []
    for run_id in run_ids:
        path = runs / run_id / "summary.json"
        if path.is_file():
            loaded = json.loads(path.read_text())
            if isinstance(loaded, dict):
                out.append(loaded)
    return out


def summaries_matching(runs: Path, pattern: str) -> list[dict[str, Any]]:
    """Summaries of the run directories whose name matches the glob `pattern`."""
    return load_summaries(runs, sorted(p.name for p in runs.glob(pattern)))


def point_interval(summaries: Sequence[Mapping[str, Any]], path: Sequence[str], key: str) -> Interval:
    return interval((get(s, path) for s in summaries), key)
