"""What a simulated service does the same way in both designs, around the driver that decides it
(model/node.py for a Design B node, model/job_service.py for Design A's job service): perform a
step's effects, and run the client calls that change a job (SubmitJob / CreateJob, CancelJob) as one
CPU burst of the process that keeps the job.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import simpy

from model.actions import Effect, Step, Wake
from model.commands import JobFinished, LeaseExpired, NotifyCancel
from model.errors import DtqError
from model.job import Job, JobSpec
from model.jobs import Submitted
from model.workload import JobDraw
from sim.cpu import Proc
from sim.engine import Cluster, status_of, wake

Reply = tuple[str, Any]
Action = Callable[[float], tuple[float, Reply]]
Perform = Callable[[Step[simpy.Event]], float]


def perform_effects(
    cluster: Cluster, effects: Sequence[Effect[simpy.Event]], notify_cancel: Callable[[NotifyCancel], None]
) -> None:
    """A step's effects, in order: waiters woken (after this burst: same loop), a job's end recorded,
    a cancel pushed to the attempt's worker (`notify_cancel`: each design's route), expiries and lost
    workers counted."""
    for effect in effects:
        match effect:  # class patterns: no isinstance calls on this hot path
            case Wake():
                for event in effect.tokens:
                    wake(event, effect.value)
            case JobFinished():
                cluster.job_finished(effect.job_id)
            case NotifyCancel():
                notify_cancel(effect)
            case LeaseExpired():
                cluster.count("lease_expired")
            case _:
                cluster.count("workers_lost")


def submit_action(
    method: str,
    cluster: Cluster,
    proc: Proc,
    submit: Callable[[float, JobSpec], tuple[Submitted, Step[simpy.Event]]],
    job: JobDraw,
    perform: Perform,
) -> Action:
    """The burst of a submit (`method`: SubmitJob at a node, CreateJob at the job service): the
    driver accepts the job or refuses it, the payload is parsed and committed, the step performed.
    The reply is ("OK", job id) or (status, "")."""

    def action(now: float) -> tuple[float, Reply]:
        cost = proc.cost(method)
        try:
            submitted, step = submit(now, cluster.spec_of(job))
        except DtqError as exc:
            return cost, (status_of(exc), "")
        job_id = submitted.job.job_id
        cluster.submit_job(job_id, job)
        size = cluster.payload_of(job_id)  # parsing it and the store writing it
        cost += proc.byte_cost(method, size) + proc.byte_cost("commit", size)
        return cost + perform(step), ("OK", job_id)

    return action


def cancel_action(
    proc: Proc, cancel: Callable[[float, str], tuple[Job, Step[simpy.Event]]], job_id: str, perform: Perform
) -> Action:
    """The burst of a CancelJob: the driver's cancel and its step. The reply is ("OK", the job's
    state after it) or (status, None)."""

    def action(now: float) -> tuple[float, Reply]:
        cost = proc.cost("CancelJob")
        try:
            job, step = cancel(now, job_id)
        except DtqError as exc:
            return cost, (status_of(exc), None)
        return cost + perform(step), ("OK", job.state)

    return action
