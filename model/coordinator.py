"""Design A's coordinator driver, sans-I/O: the WorkerRegistry (who is alive) and the cancels waiting
for a worker's next heartbeat, written once for the real service (realsys/micro/coordinator.py) and
the simulated one (sim/micro.py). Jobs belong to the job service and ready entries to the queue
service; dispatch is reserve -> lease -> ack, a report stores the outcome in the result service
before completing the attempt in the job service (the adapters make those calls).
"""

from __future__ import annotations

from collections.abc import Iterable

from model.commands import WorkerLost
from model.config import CoreConfig
from model.errors import InvalidArgument
from model.ids import parse_job_id
from model.job import Outcome, bounded_outcome
from model.timer import TimerRule
from model.workers import WorkerRegistry, validate_worker_id

MAX_FETCH = 1000  # jobs per FetchWork
# Push cancels kept per worker until its next heartbeat; more than this means the worker is not listening.
MAX_PENDING_CANCELS = 10_000


def fetch_limit(free_slots: int) -> int:
    """How many jobs a FetchWork reserves for a worker with `free_slots`."""
    return min(free_slots, MAX_FETCH)


class Coordinator:
    def __init__(self, config: CoreConfig) -> None:
        self.config = config
        self.registry = WorkerRegistry(config)
        self.timer = TimerRule(self.registry.next_deadline)
        self.workers_lost = 0
        # worker -> cancels learned from NotifyCancel, delivered with its next heartbeat response
        self._cancels: dict[str, dict[tuple[str, int], None]] = {}

    def heartbeat(
        self, now: float, worker_id: str, total_slots: int, free_slots: int, holds_work: bool
    ) -> bool:
        """WorkerHeartbeat (before RenewLeases); `holds_work`: it names running attempts. Returns
        whether to re-arm the timer."""
        self.registry.heartbeat(now, worker_id, total_slots, free_slots, holds_work=holds_work)
        return self.timer.poke()

    def pushed_cancels(self, worker_id: str, told: Iterable[tuple[str, int]]) -> list[tuple[str, int]]:
        """The cancels NotifyCancel left for the worker that RenewLeases did not already tell it. Taken
        only once the renewal went through, so a failed heartbeat does not lose them."""
        pushed = self._cancels.pop(worker_id, None)
        if not pushed:
            return []
        have = set(told)
        return [key for key in pushed if key not in have]

    def fetch(self, now: float, worker_id: str, free_slots: int) -> int:
        """FetchWork: the worker is alive; returns how many jobs to reserve for it."""
        validate_worker_id(worker_id)
        if free_slots < 0:
            raise InvalidArgument("free_slots must not be negative")
        self.registry.touch(now, worker_id)
        return fetch_limit(free_slots)

    def leased(self, worker_id: str) -> None:
        """FetchWork handed the worker jobs: when it is lost, its attempts need a release."""
        self.registry.note_work(worker_id)

    def report(self, now: float, worker_id: str, job_id: str, attempt: int, outcome: Outcome) -> Outcome:
        """ReportResult: refuses what the coordinator can tell is malformed before anything is
        stored; the worker is alive. Returns the outcome as the owner keeps it: an output over
        max_result_bytes fails the job for good, an error message is cut (model.job.bounded_outcome,
        as the job table applies it)."""
        validate_worker_id(worker_id)
        if attempt < 1:
            raise InvalidArgument("attempt must be >= 1")
        parse_job_id(job_id)
        self.registry.touch(now, worker_id)
        return bounded_outcome(outcome, self.config)

    def notify_cancel(self, job_id: str, attempt: int, worker_id: str) -> None:
        """NotifyCancel from the job service: kept for the worker's next heartbeat. A worker we do not
        know is dead or not yet registered: RenewLeases tells it anyway."""
        if not job_id:
            raise InvalidArgument("job_id is required")
        validate_worker_id(worker_id)
        if worker_id in self.registry.workers:
            cancels = self._cancels.setdefault(worker_id, {})
            if len(cancels) < MAX_PENDING_CANCELS:
                cancels[(job_id, attempt)] = None

    def on_timer(self, now: float) -> tuple[list[WorkerLost], list[str]]:
        """The workers found lost (for logs and counters), and the ones the adapter asks the job
        service to release: those that ever held work (a stray heartbeat's worker has nothing to
        release and is no news)."""
        lost = self.registry.handle_timer(now)
        for worker in lost:
            self._cancels.pop(worker.worker_id, None)
        self.workers_lost += len(lost)
        return lost, [worker.worker_id for worker in lost if worker.held_work]
