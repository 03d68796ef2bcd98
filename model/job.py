"""Job specs, job records, outcomes and assignments: the core's data types, and how many bytes a
job takes in a reply (the byte budgets of model.config)."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import TypeAlias

from model.config import JOB_FRAMING_BYTES, LABEL_FRAMING_BYTES, MAX_ERROR_REASON_CHARS, CoreConfig
from model.errors import InvalidArgument, ResourceExhausted
from model.policies import check_key
from model.states import TERMINAL, JobState

_JOB_TYPE = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,127}$")
_EMPTY_LABELS: MappingProxyType[str, str] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Zeros mean "the server default" (as in the proto)."""

    max_attempts: int = 0
    initial_backoff: float = 0.0
    max_backoff: float = 0.0
    backoff_multiplier: float = 0.0


@dataclass(frozen=True, slots=True)
class JobSpec:
    job_type: str
    payload: bytes = b""
    priority: int = 0
    retry: RetryPolicy = RetryPolicy()
    execution_timeout: float = 0.0  # 0: the server default
    labels: MappingProxyType[str, str] = field(default_factory=lambda: _EMPTY_LABELS)

    @staticmethod
    def make(
        job_type: str,
        payload: bytes = b"",
        priority: int = 0,
        retry: RetryPolicy | None = None,
        execution_timeout: float = 0.0,
        labels: dict[str, str] | None = None,
    ) -> JobSpec:
        return JobSpec(
            job_type,
            payload,
            priority,
            retry or RetryPolicy(),
            execution_timeout,
            MappingProxyType(dict(labels or {})),
        )


@dataclass(frozen=True, slots=True)
class EffectiveSpec:
    """A spec with the server defaults filled in; what the core schedules by."""

    max_attempts: int
    initial_backoff: float
    max_backoff: float
    backoff_multiplier: float
    execution_timeout: float


def validate_spec(spec: JobSpec, config: CoreConfig) -> EffectiveSpec:
    """Raises InvalidArgument (or ResourceExhausted for an oversized payload).

    Returns the spec with the server defaults applied.
    """
    if not _JOB_TYPE.fullmatch(spec.job_type):
        raise InvalidArgument(
            f"job_type {spec.job_type[:40]!r} must match {_JOB_TYPE.pattern} (letters first, at most 128)"
        )
    if len(spec.payload) > config.max_payload_bytes:
        raise ResourceExhausted(
            f"payload is {len(spec.payload)} bytes; the limit is {config.max_payload_bytes}"
        )
    if not -(2**31) <= spec.priority < 2**31:
        raise InvalidArgument("priority must fit in int32")
    if len(spec.labels) > config.max_labels:
        raise InvalidArgument(f"at most {config.max_labels} labels")
    for key, value in spec.labels.items():
        if not key or len(key) > config.max_label_chars or len(value) > config.max_label_chars:
            raise InvalidArgument(
                f"label keys must be non-empty and labels at most {config.max_label_chars} chars"
            )
    check_key(config.policy, config.policy_key, spec.labels)
    retry = spec.retry
    if retry.max_attempts < 0 or retry.max_attempts > config.max_attempts_cap:
        raise InvalidArgument(f"retry.max_attempts must be in [0, {config.max_attempts_cap}]")
    times = (retry.initial_backoff, retry.max_backoff, retry.backoff_multiplier, spec.execution_timeout)
    if not all(math.isfinite(t) for t in times):  # NaN would slip past every comparison below
        raise InvalidArgument("retry backoffs, multiplier and execution_timeout must be finite numbers")
    if retry.initial_backoff < 0 or retry.max_backoff < 0 or retry.backoff_multiplier < 0:
        raise InvalidArgument("retry backoffs and multiplier must not be negative")
    if 0 < retry.backoff_multiplier < 1:
        raise InvalidArgument("retry.backoff_multiplier must be >= 1 (or 0 for the default)")
    if spec.execution_timeout < 0 or spec.execution_timeout > config.max_execution_timeout:
        raise InvalidArgument(f"execution_timeout must be in [0, {config.max_execution_timeout}] seconds")
    initial = retry.initial_backoff or config.default_initial_backoff
    ceiling = retry.max_backoff or max(config.default_max_backoff, initial)
    if ceiling < initial:
        raise InvalidArgument("retry.max_backoff must be >= retry.initial_backoff")
    return EffectiveSpec(
        max_attempts=retry.max_attempts or config.default_max_attempts,
        initial_backoff=initial,
        max_backoff=ceiling,
        backoff_multiplier=retry.backoff_multiplier or config.default_backoff_multiplier,
        execution_timeout=spec.execution_timeout or config.default_execution_timeout,
    )


@dataclass(frozen=True, slots=True)
class JobError:
    message: str
    retryable: bool = False
    reason: str = "HANDLER_ERROR"  # HANDLER_ERROR, TIMEOUT, LEASE_EXPIRED, WORKER_LOST, CANCELLED


@dataclass(frozen=True, slots=True)
class Succeeded:
    output: bytes = b""


@dataclass(frozen=True, slots=True)
class Failed:
    error: JobError


@dataclass(frozen=True, slots=True)
class CancelledByWorker:
    """The handler stopped because it was asked to."""


Outcome: TypeAlias = Succeeded | Failed | CancelledByWorker


def bounded_outcome(outcome: Outcome, config: CoreConfig) -> Outcome:
    """A worker's outcome as the owner keeps it: an output over max_result_bytes fails the job for
    good (its GetJobResult reply could not be sent), and an error message is cut to max_error_chars."""
    if isinstance(outcome, Succeeded):
        if len(outcome.output) <= config.max_result_bytes:
            return outcome
        return Failed(
            JobError(
                f"the output is {len(outcome.output)} bytes; the limit is {config.max_result_bytes}",
                retryable=False,
                reason="RESULT_TOO_LARGE",
            )
        )
    if isinstance(outcome, Failed):
        error = outcome.error
        if len(error.message) <= config.max_error_chars and len(error.reason) <= MAX_ERROR_REASON_CHARS:
            return outcome
        return Failed(
            replace(
                error,
                message=error.message[: config.max_error_chars],
                reason=error.reason[:MAX_ERROR_REASON_CHARS],
            )
        )
    return outcome


def _text_bytes(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


def spec_bytes(spec: JobSpec, include_payload: bool) -> int:
    """An upper bound on the bytes of a spec (with or without its payload) inside a reply's job."""
    size = JOB_FRAMING_BYTES + len(spec.job_type)
    if include_payload:
        size += len(spec.payload)
    for key, value in spec.labels.items():
        size += _text_bytes(key) + _text_bytes(value) + LABEL_FRAMING_BYTES
    return size


def assignment_bytes(job_id: str, spec: JobSpec) -> int:
    """An upper bound on one assignment's bytes in a FetchWork/StealWork/LeaseJobs reply."""
    return spec_bytes(spec, include_payload=True) + len(job_id)


@dataclass(slots=True)
class Job:
    """The owner's record of one job. Mutated only by JobTable."""

    job_id: str
    spec: JobSpec
    effective: EffectiveSpec
    create_time: float
    request_id: str = ""
    state: JobState = JobState.STATE_UNSPECIFIED
    attempt: int = 0  # the fencing token; incremented at each dispatch
    update_time: float = 0.0
    start_time: float | None = None
    end_time: float | None = None
    worker_id: str = ""
    lease_deadline: float = 0.0
    run_deadline: float = 0.0
    not_before: float = 0.0
    error: JobError | None = None
    # the result: in RAM when at most max_inline_result_bytes, else None here and kept by the
    # driver's store (StoreOutput); output_size is its length either way
    output: bytes | None = None
    output_size: int = 0

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    @property
    def status_bytes(self) -> int:
        """An upper bound on this job's status view (no payload, no output) in a reply."""
        size = spec_bytes(self.spec, include_payload=False) + len(self.job_id)
        size += _text_bytes(self.worker_id) + _text_bytes(self.request_id)
        if self.error is not None:
            size += _text_bytes(self.error.message) + _text_bytes(self.error.reason)
        return size

    @property
    def sort_key(self) -> tuple[float, str]:
        return (self.create_time, self.job_id)


@dataclass(frozen=True, slots=True)
class Assignment:
    """A job leased to a worker. `attempt` is the fencing token for reports."""

    job_id: str
    attempt: int
    spec: JobSpec
    lease_deadline: float
    run_deadline: float
    worker_id: str
