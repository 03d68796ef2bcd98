"""The statistics of results, one copy each: confidence intervals, the bootstrap, the winner of a
comparison, and distribution fits. Used by the experiment summaries, the validation, calibration and
the report; needs scipy (the `lab` extra), so nothing on a node's start-up path imports it. scipy.stats
is imported where it is used: importing it costs ~75 MB of RSS, which a simulation (sim.sweeps and
sim.plan import mean_ci) would otherwise carry for its whole run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BOOTSTRAP_RESAMPLES = 2000
MIN_FIT_SAMPLES = 5


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """(mean, half-width of the two-sided Student-t confidence interval); the half-width is NaN
    below two values, both are NaN for none."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = math.fsum(values) / n
    if n < 2:
        return mean, math.nan
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (n - 1))
    from scipy import stats as scipy_stats  # ~75 MB of RSS: kept off the simulator's imports

    return mean, float(scipy_stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / math.sqrt(n)


def bootstrap_ci(
    values: Sequence[float] | FloatArray,
    rng: np.random.Generator,
    *,
    statistic: Callable[..., Any] = np.mean,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """The bootstrap percentile interval (lo, hi) of `statistic` over `values`: the statistic of
    `resamples` resamples with replacement, drawn from `rng` (a caller's seeded stream), and the
    (1 - confidence) / 2 quantiles of those. `statistic(array, axis=1)` must reduce each row.

    The interval lies inside the range of the statistic over resamples, so it never leaves the
    samples' own range: for durations (percentiles of latency) it cannot go below zero, as a
    symmetric t-interval on a skewed statistic can. (NaN, NaN) for no values."""
    if not 0 < confidence < 1 or resamples < 1:
        raise ValueError("need 0 < confidence < 1 and resamples >= 1")
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    draws = arr[rng.integers(0, arr.size, size=(resamples, arr.size))]
    estimates = np.asarray(statistic(draws, axis=1), dtype=np.float64)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(estimates, [tail, 1 - tail])
    return float(lo), float(hi)


def percentile_ci(
    values: Sequence[float] | FloatArray,
    q: float,
    rng: np.random.Generator,
    *,
    resamples: int = BOOTSTRAP_RESAMPLES,
    confidence: float = 0.95,
) -> tuple[float, float]:
    """The bootstrap percentile interval of the `q`-th percentile (0..100) of `values`."""
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    return bootstrap_ci(
        values, rng, statistic=partial(np.percentile, q=q), resamples=resamples, confidence=confidence
    )


def winner(a: float, b: float, *, higher_is_better: bool, a_ci: float = 0.0, b_ci: float = 0.0) -> str:
    """'a', 'b' or 'tie' (the means differ by no more than the two CI half-widths together; a NaN
    half-width counts as 0), or '' when either mean is NaN."""
    if math.isnan(a) or math.isnan(b):
        return ""
    margin = (0.0 if math.isnan(a_ci) else a_ci) + (0.0 if math.isnan(b_ci) else b_ci)
    if abs(a - b) <= margin:
        return "tie"
    return "a" if (a > b) == higher_is_better else "b"


@dataclass(frozen=True, slots=True)
class LognormalFit:
    """A lognormal fitted to positive samples: log-mean `mu`, log-sd `sigma`, and the KS statistic
    of the samples against it."""

    mu: float
    sigma: float
    ks: float

    @property
    def mean(self) -> float:
        """The distribution's mean (how sim.dist.Dist parameterises a lognormal)."""
        return math.exp(self.mu + self.sigma**2 / 2)


def lognormal_fit(samples: Sequence[float] | FloatArray) -> LognormalFit | None:
    """The lognormal by the mean and sd of the logs of the positive samples, with its KS statistic;
    None when fewer than MIN_FIT_SAMPLES are positive or they do not vary."""
    arr = np.asarray(samples, dtype=np.float64)
    pos = arr[arr > 0]
    if len(pos) < MIN_FIT_SAMPLES or np.all(pos == pos[0]):  # equal samples: sigma is rounding noise
        return None
    logs = np.log(pos)
    mu, sigma = float(logs.mean()), float(logs.std(ddof=1))
    from scipy import stats as scipy_stats  # ~75 MB of RSS: kept off the simulator's imports

    ks = scipy_stats.kstest(pos, "lognorm", args=(sigma, 0, math.exp(mu)))
    return LognormalFit(mu, sigma, float(ks.statistic))


def lognormal_cdf(x: FloatArray, fit: LognormalFit) -> FloatArray:
    """The fitted lognormal's CDF at `x`."""
    from scipy import stats as scipy_stats  # ~75 MB of RSS: kept off the simulator's imports

    return np.asarray(scipy_stats.lognorm.cdf(x, fit.sigma, 0, math.exp(fit.mu)), dtype=np.float64)
