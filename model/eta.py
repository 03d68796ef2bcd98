"""Estimated start and end times of unfinished jobs, for GetJobStatus (off unless
CoreConfig.estimate_window > 0), sans-I/O: `now` comes in, the drivers feed in completions.

The model is a queue-position x service-time estimate of an M/G/c queue in FIFO order:
- `ServiceTimes` keeps the mean of the last `window` attempts' service times (dispatch to report,
  as the owner sees them: the time a slot is held, transit included), fed by the driver at each report.
- A PENDING job with `ahead` ready jobs before it in line, on `slots` slots of which `busy` are
  taken, starts at once when a free slot is left for it (ahead < free); else it waits for
  ahead - free + 1 slot releases, which come one every mean / slots seconds while every slot is busy
  (exact in the mean for exponential service times): start = now + (ahead - free + 1) x mean / slots.
  A job in a retry backoff starts no earlier than its `not_before`. Its end is start + mean.
- A RUNNING job ends at start_time + mean, or now when that has passed.
It assumes FIFO within a priority (the queue's order today); under a policy that reorders the queue,
the position the driver passes in is the queue's own, but the rate at which jobs ahead leave it is
still the FIFO one. It knows nothing of arrivals of higher priority after the call, of stealing
(Design B: a node's own worker only), or of service times by job type (one mean for all).
What each design passes in, and so what it approximates, is in model/node.py and model/job_service.py.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from model.job import Job
from model.states import ACTIVE, JobState

# the running sum is recomputed from the window this often (in observations), so float drift stays bounded
_RESUM_EVERY = 4096


@dataclass(frozen=True, slots=True)
class Estimate:
    """Seconds since the epoch, as every time in the core."""

    start: float
    end: float


class ServiceTimes:
    """The mean of the last `window` service times (seconds)."""

    def __init__(self, window: int) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self._times: deque[float] = deque(maxlen=window)
        self._sum = 0.0
        self._since_resum = 0

    def __len__(self) -> int:
        return len(self._times)

    def observe(self, seconds: float) -> None:
        """One attempt's service time; a negative one (a clock step back) counts as 0."""
        seconds = max(0.0, seconds)
        times = self._times
        if len(times) == times.maxlen:
            self._sum -= times[0]
        times.append(seconds)
        self._sum += seconds
        self._since_resum += 1
        if self._since_resum >= _RESUM_EVERY:
            self._sum = sum(times)
            self._since_resum = 0

    @property
    def mean(self) -> float | None:
        """None before the first observation: nothing to estimate from."""
        if not self._times:
            return None
        return max(0.0, self._sum / len(self._times))


def start_time(now: float, ahead: int, slots: int, busy: int, mean: float, not_before: float = 0.0) -> float:
    """When a PENDING job with `ahead` ready jobs before it starts (see the module docstring).
    Needs slots >= 1; `busy` is clamped to [0, slots], `ahead` to >= 0."""
    if slots < 1:
        raise ValueError(f"slots must be >= 1, got {slots}")
    free = slots - min(max(busy, 0), slots)
    ahead = max(ahead, 0)
    wait = 0.0 if ahead < free else (ahead - free + 1) * mean / slots
    return max(now + wait, not_before)


class Estimator:
    """What a driver keeps to answer estimates: the service-time window."""

    def __init__(self, window: int) -> None:
        self.service = ServiceTimes(window)

    def observe(self, seconds: float) -> None:
        self.service.observe(seconds)

    def pending(
        self, now: float, ahead: int, slots: int, busy: int, not_before: float = 0.0
    ) -> Estimate | None:
        """None while no completion has been seen or no slot is known."""
        mean = self.service.mean
        if mean is None or slots < 1:
            return None
        start = start_time(now, ahead, slots, busy, mean, not_before)
        return Estimate(start, start + mean)

    def of(self, now: float, job: Job, pending: Callable[[], Estimate | None]) -> Estimate | None:
        """A RUNNING job's estimate; `pending()`, the driver's, for a PENDING one; None otherwise."""
        if job.state is JobState.RUNNING:
            return None if job.start_time is None else self.running(now, job.start_time)
        if job.state is not JobState.PENDING:
            return None
        return pending()

    def running(self, now: float, started: float) -> Estimate | None:
        mean = self.service.mean
        if mean is None:
            return None
        return Estimate(started, max(now, started + mean))


def attempt_start(job: Job | None, attempt: int, worker_id: str) -> float | None:
    """The dispatch time of the attempt a report is about, when it still holds the lease (read
    before the report changes the record): the start of its service time."""
    if job is None or job.state not in ACTIVE or job.attempt != attempt or job.worker_id != worker_id:
        return None
    return job.start_time


def is_estimable(job: Job) -> bool:
    """Only unfinished jobs get an estimate: PENDING (start and end) or RUNNING (end)."""
    return job.state is JobState.PENDING or job.state is JobState.RUNNING
