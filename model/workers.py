"""Workers as the coordinator sees them: liveness from heartbeats, free slots, and who gets work.

A worker silent for `worker_ttl` is declared lost; the driver then releases its leases
(JobTable.release_worker), so its jobs are requeued without waiting for each lease to run out.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from model.commands import WorkerLost
from model.config import MAX_WORKER_ID_CHARS, CoreConfig
from model.errors import InvalidArgument

K = TypeVar("K", bound=Hashable)


@dataclass(slots=True)
class WorkerInfo:
    worker_id: str
    total_slots: int
    free_slots: int
    last_seen: float
    held_work: bool = False  # ever given work, or named running attempts in a heartbeat


def validate_worker_id(worker_id: str) -> str:
    if not worker_id or len(worker_id) > MAX_WORKER_ID_CHARS or not worker_id.isprintable():
        raise InvalidArgument(f"worker_id must be 1-{MAX_WORKER_ID_CHARS} printable characters")
    return worker_id


def validate_slots(total_slots: int, free_slots: int, max_slots: int) -> None:
    if total_slots < 0 or free_slots < 0 or (total_slots and free_slots > total_slots):
        raise InvalidArgument("slots must be non-negative, with free_slots <= total_slots")
    if max(total_slots, free_slots) > max_slots:
        # a worker claiming huge free slots would make its owner keep every ready job for it
        raise InvalidArgument(f"a worker may claim at most {max_slots} slots (max_worker_slots)")


class WorkerRegistry:
    def __init__(self, config: CoreConfig) -> None:
        self.config = config
        self.workers: dict[str, WorkerInfo] = {}
        self._expiry: list[tuple[float, str]] = []  # (last_seen + ttl, worker_id), lazily checked

    def heartbeat(
        self, now: float, worker_id: str, total_slots: int, free_slots: int, holds_work: bool = False
    ) -> None:
        validate_worker_id(worker_id)
        validate_slots(total_slots, free_slots, self.config.max_worker_slots)
        info = self.workers.get(worker_id)
        if info is None:
            self.workers[worker_id] = WorkerInfo(worker_id, total_slots, free_slots, now, holds_work)
            heapq.heappush(self._expiry, (now + self.config.worker_ttl, worker_id))
        else:
            info.total_slots, info.free_slots, info.last_seen = total_slots, free_slots, now
            info.held_work = info.held_work or holds_work

    def note_work(self, worker_id: str) -> None:
        """The worker was handed work: when it is lost, its attempts must be released."""
        info = self.workers.get(worker_id)
        if info is not None:
            info.held_work = True

    def touch(self, now: float, worker_id: str) -> None:
        """Any call from a worker proves it alive (FetchWork, ReportResult)."""
        info = self.workers.get(worker_id)
        if info is not None:
            info.last_seen = now

    def next_deadline(self) -> float | None:
        return self._expiry[0][0] if self._expiry else None

    def handle_timer(self, now: float) -> list[WorkerLost]:
        lost: list[WorkerLost] = []
        while self._expiry and self._expiry[0][0] <= now:
            _, worker_id = heapq.heappop(self._expiry)
            info = self.workers.get(worker_id)
            if info is None:
                continue
            due = info.last_seen + self.config.worker_ttl
            if due > now:
                heapq.heappush(self._expiry, (due, worker_id))
                continue
            del self.workers[worker_id]
            lost.append(WorkerLost(worker_id, info.held_work))
        return lost

    def forget(self, worker_id: str) -> bool:
        """A worker that said goodbye (graceful drain)."""
        return self.workers.pop(worker_id, None) is not None


def pick_waiter(waiting: Iterable[K], free_slots: Mapping[K, int]) -> K | None:
    """Which long-polling worker gets newly ready work: the one with the most free slots; ties go to
    the one waiting longest (`waiting` is in arrival order). Spreading work keeps all slots busy."""
    best: K | None = None
    best_free = 0
    for worker_id in waiting:
        free = free_slots.get(worker_id, 0)
        if free > best_free:
            best, best_free = worker_id, free
    return best
