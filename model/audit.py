"""Fault audit measures, one definition shared by the simulator and the real fault runs.

Pure numpy on record times (seconds from the run start); no I/O, no clock.

- `recovery_time`: from the fault's injection until job completions per `bin_s` bin are back at
  >= `fraction` of the pre-fault rate. The pre-fault rate is completions/s over the `baseline_s`
  seconds before the fault. Bins start at the fault: [f, f + b), [f + b, f + 2b), ... up to `end`
  (only whole bins). If no bin falls below the threshold, the fault cost nothing visible: 0.0.
  Otherwise it is the start of the first bin at or above the threshold that follows the first bin
  below it, minus f; inf when the rate never returns before `end`.
- `unavailable_time`: total length of the bins after the fault in which a request started and
  failed (a status other than OK): how long clients saw errors.
- `duplicate_jobs`: jobs whose execution was started more than once.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np
import numpy.typing as npt

from model.errors import InvalidArgument

BIN_S = 0.5
RECOVERY_FRACTION = 0.9
BASELINE_S = 5.0


def _bins(fault_at: float, end: float, bin_s: float) -> npt.NDArray[np.float64]:
    count = math.floor((end - fault_at) / bin_s + 1e-9)
    return fault_at + bin_s * np.arange(count + 1, dtype=np.float64)


def recovery_time(
    completion_times: Sequence[float] | npt.NDArray[np.float64],
    fault_at: float,
    end: float,
    *,
    bin_s: float = BIN_S,
    fraction: float = RECOVERY_FRACTION,
    baseline_s: float = BASELINE_S,
) -> float:
    """Seconds from `fault_at` until completions/s (in `bin_s` bins) is back at >= `fraction` of the
    rate in the `baseline_s` seconds before the fault (see the module docstring)."""
    if not (bin_s > 0 and baseline_s > 0 and 0 < fraction <= 1):
        raise InvalidArgument("need bin_s > 0, baseline_s > 0 and 0 < fraction <= 1")
    if end - fault_at < bin_s or fault_at - baseline_s < 0:
        raise InvalidArgument("need a whole bin after the fault and the baseline before it inside the run")
    times = np.asarray(completion_times, dtype=np.float64)
    times = times[np.isfinite(times)]
    baseline = np.count_nonzero((times >= fault_at - baseline_s) & (times < fault_at)) / baseline_s
    if baseline == 0:
        raise InvalidArgument("no completions before the fault: nothing to recover to")
    edges = _bins(fault_at, end, bin_s)
    rates = np.histogram(times, bins=edges)[0] / bin_s
    low = rates < fraction * baseline
    if not low.any():
        return 0.0
    first_low = int(np.argmax(low))
    back = np.nonzero(~low[first_low:])[0]
    if len(back) == 0:
        return math.inf
    return float(edges[first_low + int(back[0])] - fault_at)


def unavailable_time(
    start_times: Sequence[float] | npt.NDArray[np.float64],
    ok: Sequence[bool] | npt.NDArray[np.bool_],
    fault_at: float,
    end: float,
    *,
    bin_s: float = BIN_S,
) -> float:
    """Seconds (whole bins from the fault to `end`) in which at least one request started and failed."""
    if not bin_s > 0 or end < fault_at:
        raise InvalidArgument("need bin_s > 0 and end >= fault_at")
    starts = np.asarray(start_times, dtype=np.float64)
    failed = ~np.asarray(ok, dtype=bool)
    if starts.shape != failed.shape:
        raise InvalidArgument("start_times and ok differ in length")
    edges = _bins(fault_at, end, bin_s)
    if len(edges) < 2:
        return 0.0
    counts = np.histogram(starts[failed], bins=edges)[0]
    return float(np.count_nonzero(counts) * bin_s)


def duplicate_jobs(started_job_ids: Iterable[str]) -> list[str]:
    """Job ids started more than once (one id per execution start), sorted."""
    return sorted(job_id for job_id, n in Counter(started_job_ids).items() if n > 1)
