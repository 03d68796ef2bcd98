"""Design A's result service driver, sans-I/O: which stored outcomes retention drops, written once
for the real service (realsys/micro/result.py) and the simulated one (sim/micro.py).

Outcomes are keyed by (job, attempt), so a stale attempt cannot overwrite the winning one; the job
service decides which attempt won. Retention is the job table's policy (model.jobs.Retention), timed
from when each outcome was stored: dropped result_ttl + lease + RETENTION_GRACE after it, and the
oldest first beyond 2 x max_retained_jobs outcomes or 2 x max_retained_bytes of outputs (outcomes of
lost attempts count too). The grace covers the gap between storing an outcome and the job service
recording the job as finished, so a result never disappears before its job does (only the byte bound
may drop it sooner). After a restart, stored outcomes are timed from the restart.
"""

from __future__ import annotations

from collections.abc import Iterable

from model.config import CoreConfig
from model.errors import InvalidArgument
from model.jobs import Retention
from model.timer import TimerRule

RETENTION_GRACE = 60.0  # seconds past the job's own TTL (plus a lease): see the module docstring

Key = tuple[str, int]  # (job_id, attempt)


def check_key(job_id: str, attempt: int) -> None:
    if not job_id or len(job_id) > 128:
        raise InvalidArgument("job_id must be 1-128 characters")
    if attempt < 1:
        raise InvalidArgument("attempt must be >= 1")


class ResultService:
    def __init__(self, config: CoreConfig) -> None:
        ttl = config.result_ttl + config.lease_duration + RETENTION_GRACE if config.result_ttl > 0 else 0.0
        self.retention: Retention[Key] = Retention(
            ttl, 2 * config.max_retained_jobs, max_bytes=2 * config.max_retained_bytes
        )
        self.timer = TimerRule(self.retention.next_deadline)
        self.expired = 0

    def restore(self, now: float, stored: Iterable[tuple[Key, int]]) -> None:
        """The outcomes in the store at start-up, with their output sizes."""
        for key, size in stored:
            self.retention.add(now, key, size)

    def stored(self, now: float, key: Key, size: int) -> bool:
        """An outcome was stored (PutResult; `size`: its output's bytes). Returns whether to re-arm
        the timer."""
        self.retention.add(now, key, size)
        return self.timer.poke()

    def on_timer(self, now: float) -> list[Key]:
        """The outcomes to delete."""
        expired = self.retention.expire(now)
        self.expired += len(expired)
        return expired
