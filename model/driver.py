"""What both designs' drivers share around their JobTable (Design B's node, model/node.py; Design A's
job service, model/job_service.py): loading saved jobs, the jobs a heartbeat's renewal kept, and the
status estimator with its entry point. Sans-I/O, like the drivers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Generic

from model.actions import T
from model.eta import Estimate, Estimator
from model.job import Job
from model.jobs import JobTable, Renewal


class CoreDriver(Generic[T]):
    """The base of a driver over `table`; `_seen_expiries` and `_seen_requeues` are the table's lease
    expiry and requeue counts that the driver's Steps have reported so far."""

    def __init__(self, table: JobTable) -> None:
        self._core_table = table
        self._seen_expiries = table.lease_expiries
        self._seen_requeues = table.requeues
        window = table.config.estimate_window
        self.estimator = Estimator(window) if window else None  # status estimates: off at 0

    # ------------------------------------------------------------------ start-up
    def restore(self, now: float, jobs: Iterable[Job]) -> int:
        """Loads saved jobs (each as `_restore_job` says). Returns how many."""
        n = 0
        for job in jobs:
            self._restore_job(now, job)
            n += 1
        table = self._core_table
        self._seen_expiries, self._seen_requeues = table.lease_expiries, table.requeues
        return n

    def _restore_job(self, now: float, job: Job) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ heartbeats
    def _renewed(self, running: Sequence[tuple[str, int]], renewal: Renewal) -> list[Job]:
        """The jobs of a heartbeat's running attempts that its renewal kept (all but the abandoned)."""
        get = self._core_table.get
        if renewal.abandon:
            abandoned = set(renewal.abandon)
            return [get(job_id) for job_id, attempt in running if (job_id, attempt) not in abandoned]
        return [get(job_id) for job_id, _ in running]

    # ------------------------------------------------------------------ status estimates
    def estimate(self, now: float, job: Job) -> Estimate | None:
        """The estimated start and end of a PENDING or RUNNING job (see the driver's module docstring);
        None when estimates are off, for other states, before the first report, or while
        `_pending_estimate` has no slots to go on."""
        estimator = self.estimator
        return (
            None
            if estimator is None
            else estimator.of(now, job, lambda: self._pending_estimate(now, job, estimator))
        )

    def _pending_estimate(self, now: float, job: Job, estimator: Estimator) -> Estimate | None:
        raise NotImplementedError
