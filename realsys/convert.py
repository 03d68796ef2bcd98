"""Protobuf <-> core conversions. Protobuf stays at this edge: nothing in model/ or sim/ sees a message.

Times: the real system feeds the core wall-clock seconds (time.time()), because create times are
shown to clients and lease deadlines are persisted across restarts.
"""

from __future__ import annotations

import math
from types import MappingProxyType
from typing import cast

from google.protobuf import duration_pb2, timestamp_pb2

from dtq.v1 import client_pb2, job_pb2, worker_pb2
from model.errors import InvalidArgument
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
from model.listing import ListQuery
from model.states import JobState

_MAX_SECONDS = 10**10  # protobuf Timestamp/Duration stay far below this
_NO_LABELS: MappingProxyType[str, str] = MappingProxyType({})
_DEFAULT_RETRY = RetryPolicy()  # all zeros: the server defaults


# ---------------------------------------------------------------------------- time
def to_timestamp(seconds: float | None) -> timestamp_pb2.Timestamp | None:
    if seconds is None:
        return None
    nanos_total = round(seconds * 1e9)
    return timestamp_pb2.Timestamp(seconds=nanos_total // 10**9, nanos=nanos_total % 10**9)


def from_timestamp(ts: timestamp_pb2.Timestamp) -> float:
    return ts.seconds + ts.nanos / 1e9


def to_duration(seconds: float) -> duration_pb2.Duration:
    if seconds == 0:  # the common case (server defaults), without the arithmetic
        return duration_pb2.Duration()
    nanos_total = round(seconds * 1e9)
    whole = math.trunc(nanos_total / 10**9)
    return duration_pb2.Duration(seconds=whole, nanos=nanos_total - whole * 10**9)


def from_duration(d: duration_pb2.Duration, field: str) -> float:
    if d.seconds < 0 or d.nanos < 0:
        raise InvalidArgument(f"{field} must not be negative")
    if d.seconds > _MAX_SECONDS or d.nanos >= 10**9:
        raise InvalidArgument(f"{field} is out of range")
    return d.seconds + d.nanos / 1e9


# ---------------------------------------------------------------------------- specs and jobs
def spec_from_pb(spec: job_pb2.JobSpec) -> JobSpec:
    """Structural conversion only; the core validates values (model.job.validate_spec)."""
    if spec.HasField("retry"):
        retry = spec.retry
        policy = RetryPolicy(
            max_attempts=retry.max_attempts,
            initial_backoff=from_duration(retry.initial_backoff, "retry.initial_backoff"),
            max_backoff=from_duration(retry.max_backoff, "retry.max_backoff"),
            backoff_multiplier=_finite(retry.backoff_multiplier, "retry.backoff_multiplier"),
        )
    else:  # an absent policy reads as all zeros: the server defaults
        policy = _DEFAULT_RETRY
    return JobSpec(
        job_type=spec.job_type,
        payload=spec.payload,
        priority=spec.priority,
        retry=policy,
        execution_timeout=(
            from_duration(spec.execution_timeout, "execution_timeout")
            if spec.HasField("execution_timeout")
            else 0.0
        ),
        labels=MappingProxyType(dict(spec.labels)) if spec.labels else _NO_LABELS,
    )


# What spec_to_pb makes of an all-default retry policy; copied, not rebuilt, for most jobs.
_DEFAULT_RETRY_PB = job_pb2.RetryPolicy(
    max_attempts=0,
    initial_backoff=duration_pb2.Duration(),
    max_backoff=duration_pb2.Duration(),
    backoff_multiplier=0.0,
)


def spec_to_pb(spec: JobSpec, include_payload: bool = True) -> job_pb2.JobSpec:
    retry = spec.retry
    if retry == _DEFAULT_RETRY:
        retry_pb = _DEFAULT_RETRY_PB  # the constructor copies it: the constant is never shared
    else:
        retry_pb = job_pb2.RetryPolicy(
            max_attempts=retry.max_attempts,
            initial_backoff=to_duration(retry.initial_backoff),
            max_backoff=to_duration(retry.max_backoff),
            backoff_multiplier=retry.backoff_multiplier,
        )
    return job_pb2.JobSpec(
        job_type=spec.job_type,
        payload=spec.payload if include_payload else b"",
        priority=spec.priority,
        retry=retry_pb,
        execution_timeout=to_duration(spec.execution_timeout),
        labels=spec.labels,
    )


def error_to_pb(error: JobError | None) -> job_pb2.JobError | None:
    if error is None:
        return None
    return job_pb2.JobError(message=error.message, retryable=error.retryable, reason=error.reason)


def error_from_pb(error: job_pb2.JobError) -> JobError:
    return JobError(error.message, error.retryable, error.reason or "HANDLER_ERROR")


def job_to_pb(job: Job, owner_node: str = "", include_payload: bool = False) -> job_pb2.Job:
    """Status view of a job; the payload is left out unless asked for."""
    return job_pb2.Job(
        job_id=job.job_id,
        spec=spec_to_pb(job.spec, include_payload),
        state=cast(job_pb2.JobState, int(job.state)),
        attempt=job.attempt,
        create_time=to_timestamp(job.create_time),
        start_time=to_timestamp(job.start_time),
        end_time=to_timestamp(job.end_time),
        worker_id=job.worker_id,
        owner_node=owner_node,
        done=job.done,
        error=error_to_pb(job.error),
        request_id=job.request_id,
    )


def result_to_pb(job: Job, owner_node: str = "") -> client_pb2.GetJobResultResponse:
    response = client_pb2.GetJobResultResponse(job=job_to_pb(job, owner_node))
    if job.state is JobState.SUCCEEDED:
        response.response.output = job.output or b""
    elif job.error is not None:
        response.error.message = job.error.message
        response.error.retryable = job.error.retryable
        response.error.reason = job.error.reason
    return response


def assignment_to_pb(a: Assignment, owner_node: str = "") -> job_pb2.Assignment:
    return job_pb2.Assignment(
        job_id=a.job_id,
        attempt=a.attempt,
        spec=spec_to_pb(a.spec),
        lease_deadline=to_timestamp(a.lease_deadline),
        run_deadline=to_timestamp(a.run_deadline),
        owner_node=owner_node,
    )


def assignment_from_pb(a: job_pb2.Assignment, worker_id: str) -> Assignment:
    return Assignment(
        job_id=a.job_id,
        attempt=a.attempt,
        spec=spec_from_pb(a.spec),
        lease_deadline=from_timestamp(a.lease_deadline),
        run_deadline=from_timestamp(a.run_deadline),
        worker_id=worker_id,
    )


def outcome_from_pb(request: worker_pb2.ReportResultRequest) -> Outcome:
    kind = request.WhichOneof("outcome")
    if kind == "success":
        return Succeeded(request.success.output)
    if kind == "failure":
        return Failed(error_from_pb(request.failure))
    if kind == "cancelled" and request.cancelled:
        return CancelledByWorker()
    raise InvalidArgument("ReportResult needs an outcome: success, failure or cancelled")


def outcome_to_pb(outcome: Outcome, request: worker_pb2.ReportResultRequest) -> None:
    if isinstance(outcome, Succeeded):
        request.success.output = outcome.output
    elif isinstance(outcome, Failed):
        request.failure.message = outcome.error.message
        request.failure.retryable = outcome.error.retryable
        request.failure.reason = outcome.error.reason
    else:
        request.cancelled = True


def running_from_pb(running: list[worker_pb2.RunningJob]) -> list[tuple[str, int]]:
    return [(r.job_id, r.attempt) for r in running]


def running_to_pb(pairs: list[tuple[str, int]]) -> list[worker_pb2.RunningJob]:
    return [worker_pb2.RunningJob(job_id=j, attempt=a) for j, a in pairs]


# ---------------------------------------------------------------------------- listing
def query_from_pb(f: job_pb2.JobFilter) -> ListQuery:
    states = []
    for value in f.states:
        if value not in JobState._value2member_map_:
            raise InvalidArgument(f"filter.states has an unknown state {value}")
        states.append(JobState(value))
    return ListQuery.make(
        states=states,
        job_type=f.job_type,
        created_after=from_timestamp(f.created_after) if f.HasField("created_after") else None,
        created_before=from_timestamp(f.created_before) if f.HasField("created_before") else None,
        labels=dict(f.labels),
    )


def state_from_pb(value: int) -> JobState:
    if value not in JobState._value2member_map_:
        raise InvalidArgument(f"unknown job state {value}")
    return JobState(value)


def _finite(value: float, field: str) -> float:
    if not math.isfinite(value):
        raise InvalidArgument(f"{field} must be finite")
    return value
