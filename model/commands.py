"""Decisions the core hands to its driver, as data. The driver performs the I/O."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from model.states import JobState


@dataclass(frozen=True, slots=True)
class Enqueue:
    """The job is pending: put it on the ready queue (after `not_before`)."""

    job_id: str
    priority: int
    not_before: float
    key: str = ""  # the scheduling policy's key (Design A's job service fills it in for its queue)


@dataclass(frozen=True, slots=True)
class Unqueue:
    """The job left PENDING without being dispatched (cancelled): drop its queue entry."""

    job_id: str


@dataclass(frozen=True, slots=True)
class NotifyCancel:
    """Tell the worker running this attempt to stop now (it will also hear it in its next heartbeat)."""

    job_id: str
    attempt: int
    worker_id: str


@dataclass(frozen=True, slots=True)
class LeaseExpired:
    """The attempt lost its lease (timer, execution timeout or a lost worker).

    The job was requeued or ended.
    """

    job_id: str
    attempt: int
    worker_id: str
    reason: str
    requeued: bool


@dataclass(frozen=True, slots=True)
class JobFinished:
    """The job reached a terminal state: wake whoever waits on it."""

    job_id: str
    state: JobState


@dataclass(frozen=True, slots=True)
class JobsExpired:
    """These terminal jobs passed their retention (result_ttl or max_retained_jobs) and were dropped
    from the table: delete their stored records and results. Unknown to clients from now on."""

    job_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StoreOutput:
    """Keep this result in the store, not in RAM (it is over max_inline_result_bytes): the job record
    holds only its size. Durable before the record that says SUCCEEDED."""

    job_id: str
    output: bytes


@dataclass(frozen=True, slots=True)
class WorkerLost:
    """A worker went silent past worker_ttl. `held_work`: it was ever given work or named running
    attempts; a worker that never did needs no release and no more than a debug line."""

    worker_id: str
    held_work: bool = False


@dataclass(frozen=True, slots=True)
class WorkAvailable:
    """Ready work appeared: wake long-polling fetchers."""

    count: int


Command: TypeAlias = (
    Enqueue
    | Unqueue
    | NotifyCancel
    | LeaseExpired
    | JobFinished
    | JobsExpired
    | StoreOutput
    | WorkerLost
    | WorkAvailable
)
