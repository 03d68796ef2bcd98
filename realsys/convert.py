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
from model.eta import Estimate
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


# The fill_* functions below write into a message in place: building nested messages with keyword
# constructors copies every sub-message once more (a SubmitJob reply took ~15 us that way, ~6 us so).
# They produce exactly the bytes the constructors did (tests/realsys/test_convert.py).
def _fill_duration(pb: duration_pb2.Duration, seconds: float) -> None:
    pb.SetInParent()  # present even when zero, as a constructor argument is
    if seconds:
        nanos_total = round(seconds * 1e9)
        whole = math.trunc(nanos_total / 10**9)
        pb.seconds = whole
        pb.nanos = nanos_total - whole * 10**9


def _fill_timestamp(pb: timestamp_pb2.Timestamp, seconds: float) -> None:
    nanos_total = round(seconds * 1e9)
    if nanos_total == 0:
        pb.SetInParent()
    pb.seconds = nanos_total // 10**9
    pb.nanos = nanos_total % 10**9


def fill_spec_pb(pb: job_pb2.JobSpec, spec: JobSpec, include_payload: bool = True) -> None:
    pb.job_type = spec.job_type
    if include_payload:
        pb.payload = spec.payload
    pb.priority = spec.priority
    retry = spec.retry
    if retry == _DEFAULT_RETRY:
        pb.retry.CopyFrom(_DEFAULT_RETRY_PB)
    else:
        r = pb.retry
        r.max_attempts = retry.max_attempts
        _fill_duration(r.initial_backoff, retry.initial_backoff)
        _fill_duration(r.max_backoff, retry.max_backoff)
        r.backoff_multiplier = retry.backoff_multiplier
    _fill_duration(pb.execution_timeout, spec.execution_timeout)
    if spec.labels:
        pb.labels.update(spec.labels)


def spec_to_pb(spec: JobSpec, include_payload: bool = True) -> job_pb2.JobSpec:
    pb = job_pb2.JobSpec()
    fill_spec_pb(pb, spec, include_payload)
    return pb


def error_to_pb(error: JobError | None) -> job_pb2.JobError | None:
    if error is None:
        return None
    return job_pb2.JobError(message=error.message, retryable=error.retryable, reason=error.reason)


def error_from_pb(error: job_pb2.JobError) -> JobError:
    return JobError(error.message, error.retryable, error.reason or "HANDLER_ERROR")


def fill_job_pb(pb: job_pb2.Job, job: Job, owner_node: str = "", include_payload: bool = False) -> None:
    """Writes the status view of a job into `pb` (a fresh message); the payload only if asked for."""
    pb.job_id = job.job_id
    fill_spec_pb(pb.spec, job.spec, include_payload)
    pb.state = cast(job_pb2.JobState, int(job.state))
    pb.attempt = job.attempt
    _fill_timestamp(pb.create_time, job.create_time)
    if job.start_time is not None:
        _fill_timestamp(pb.start_time, job.start_time)
    if job.end_time is not None:
        _fill_timestamp(pb.end_time, job.end_time)
    pb.worker_id = job.worker_id
    pb.owner_node = owner_node
    pb.done = job.done
    error = job.error
    if error is not None:
        e = pb.error
        e.SetInParent()
        e.message = error.message
        e.retryable = error.retryable
        e.reason = error.reason
    pb.request_id = job.request_id


def job_to_pb(job: Job, owner_node: str = "", include_payload: bool = False) -> job_pb2.Job:
    """Status view of a job; the payload is left out unless asked for."""
    pb = job_pb2.Job()
    fill_job_pb(pb, job, owner_node, include_payload)
    return pb


def status_to_pb(job: Job, owner_node: str, estimate: Estimate | None) -> job_pb2.Job:
    """GetJobStatus's reply: the status view, with the estimated start and end when there is one
    (model/eta.py; RUNNING jobs get the end only: their start is start_time)."""
    pb = job_to_pb(job, owner_node)
    if estimate is not None:
        if job.state is JobState.PENDING:
            _fill_timestamp(pb.estimated_start_time, estimate.start)
        _fill_timestamp(pb.estimated_end_time, estimate.end)
    return pb


def submit_response(job: Job, owner_node: str, deduplicated: bool) -> client_pb2.SubmitJobResponse:
    response = client_pb2.SubmitJobResponse(job_id=job.job_id, deduplicated=deduplicated)
    fill_job_pb(response.job, job, owner_node)
    return response


def result_to_pb(
    job: Job, owner_node: str = "", output: bytes | None = None
) -> client_pb2.GetJobResultResponse:
    """`output`: the result when the job holds only its size (Job.output None; the store has it)."""
    response = client_pb2.GetJobResultResponse()
    fill_job_pb(response.job, job, owner_node)
    if job.state is JobState.SUCCEEDED:
        response.response.output = (job.output if output is None else output) or b""
    elif job.error is not None:
        response.error.message = job.error.message
        response.error.retryable = job.error.retryable
        response.error.reason = job.error.reason
    return response


def fill_assignment_pb(pb: job_pb2.Assignment, a: Assignment, owner_node: str = "") -> None:
    pb.job_id = a.job_id
    pb.attempt = a.attempt
    fill_spec_pb(pb.spec, a.spec)
    _fill_timestamp(pb.lease_deadline, a.lease_deadline)
    _fill_timestamp(pb.run_deadline, a.run_deadline)
    pb.owner_node = owner_node


def assignment_to_pb(a: Assignment, owner_node: str = "") -> job_pb2.Assignment:
    pb = job_pb2.Assignment()
    fill_assignment_pb(pb, a, owner_node)
    return pb


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


def heartbeat_response(
    cancel: list[tuple[str, int]], abandon: list[tuple[str, int]], interval: float, lease: float
) -> worker_pb2.HeartbeatResponse:
    """A heartbeat's answer: the attempts to stop now and to give up, the heartbeat interval and the
    lease duration."""
    return worker_pb2.HeartbeatResponse(
        cancel=running_to_pb(cancel),
        abandon=running_to_pb(abandon),
        heartbeat_interval=to_duration(interval),
        lease_duration=to_duration(lease),
    )


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
