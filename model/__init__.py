"""dtq's shared, sans-I/O scheduling and job state-machine core.

Imports no clock, randomness, event loop, simulator, RPC or protobuf (tests/model/test_purity.py
checks). Time comes in as `now`; randomness as a generator; decisions go out as commands.
"""

from model.commands import (
    Command,
    Enqueue,
    JobFinished,
    LeaseExpired,
    NotifyCancel,
    Unqueue,
    WorkAvailable,
    WorkerLost,
)
from model.config import CoreConfig
from model.errors import (
    Code,
    DtqError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    StaleAttempt,
    Unavailable,
)
from model.ids import JobIdFactory, owner_of, parse_job_id, route, split_by_owner
from model.job import (
    Assignment,
    CancelledByWorker,
    Failed,
    Job,
    JobError,
    JobSpec,
    Outcome,
    RetryPolicy,
    Succeeded,
)
from model.jobs import JobTable, Renewal, Submitted, Transition
from model.listing import ListQuery, Page, merge_pages
from model.queue import ReadyQueue
from model.scheduler import Scheduler
from model.states import TERMINAL, TRANSITIONS, Event, IllegalTransition, JobState, next_state
from model.stealing import StealPacer, StealPlan, grant_steal, plan_steal
from model.workers import WorkerRegistry, pick_waiter

__all__ = [
    "TERMINAL",
    "TRANSITIONS",
    "Assignment",
    "CancelledByWorker",
    "Code",
    "Command",
    "CoreConfig",
    "DtqError",
    "Enqueue",
    "Event",
    "Failed",
    "FailedPrecondition",
    "IllegalTransition",
    "InvalidArgument",
    "Job",
    "JobError",
    "JobFinished",
    "JobIdFactory",
    "JobSpec",
    "JobState",
    "JobTable",
    "LeaseExpired",
    "ListQuery",
    "NotFound",
    "NotifyCancel",
    "Outcome",
    "Page",
    "ReadyQueue",
    "Renewal",
    "ResourceExhausted",
    "RetryPolicy",
    "Scheduler",
    "StaleAttempt",
    "StealPacer",
    "StealPlan",
    "Submitted",
    "Succeeded",
    "Transition",
    "Unavailable",
    "Unqueue",
    "WorkAvailable",
    "WorkerLost",
    "WorkerRegistry",
    "grant_steal",
    "merge_pages",
    "next_state",
    "owner_of",
    "parse_job_id",
    "pick_waiter",
    "plan_steal",
    "route",
    "split_by_owner",
]
