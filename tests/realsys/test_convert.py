"""The in-place protobuf builders (realsys.convert.fill_*) give exactly the bytes the keyword-constructor
builders gave, for any job, spec and assignment (maps compared in deterministic order: protobuf leaves
the order of map entries on the wire unspecified); and wire_time survives a Timestamp round trip."""

from __future__ import annotations

from types import MappingProxyType
from typing import cast

from google.protobuf import duration_pb2, timestamp_pb2
from google.protobuf.message import Message
from hypothesis import given, settings
from hypothesis import strategies as st

from dtq.v1 import client_pb2, job_pb2, worker_pb2
from model.eta import Estimate
from model.job import Assignment, EffectiveSpec, Job, JobError, JobSpec, RetryPolicy, assignment_bytes
from model.states import JobState
from realsys.convert import (
    assignment_to_pb,
    from_timestamp,
    job_to_pb,
    result_to_pb,
    spec_to_pb,
    status_to_pb,
    submit_response,
    to_duration,
    to_timestamp,
)
from realsys.mono.core import wire_time


# ---------------------------------------------------------------------------- the former builders
def ref_spec(spec: JobSpec, include_payload: bool = True) -> job_pb2.JobSpec:
    retry = spec.retry
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


def ref_job(job: Job, owner: str, include_payload: bool = False) -> job_pb2.Job:
    error = job.error
    return job_pb2.Job(
        job_id=job.job_id,
        spec=ref_spec(job.spec, include_payload),
        state=cast(job_pb2.JobState, int(job.state)),
        attempt=job.attempt,
        create_time=to_timestamp(job.create_time),
        start_time=to_timestamp(job.start_time),
        end_time=to_timestamp(job.end_time),
        worker_id=job.worker_id,
        owner_node=owner,
        done=job.done,
        error=None
        if error is None
        else job_pb2.JobError(message=error.message, retryable=error.retryable, reason=error.reason),
        request_id=job.request_id,
    )


def _wire(message: Message) -> bytes:
    return message.SerializeToString(deterministic=True)


# ---------------------------------------------------------------------------- strategies
seconds = st.one_of(st.just(0.0), st.floats(0, 1e6, allow_nan=False), st.floats(-5.0, 5.0))
times = st.one_of(st.just(0.0), st.floats(1.6e9, 1.9e9), st.floats(0, 10.0))
text = st.text(max_size=8)
specs = st.builds(
    JobSpec,
    job_type=st.sampled_from(["echo", "sleep", "x.y-z"]),
    payload=st.binary(max_size=16),
    priority=st.integers(-(2**31), 2**31 - 1),
    retry=st.one_of(
        st.just(RetryPolicy()),
        st.builds(RetryPolicy, st.integers(0, 100), seconds, seconds, st.floats(0, 10)),
    ),
    execution_timeout=seconds,
    labels=st.dictionaries(text, text, max_size=3).map(MappingProxyType),
)
errors = st.one_of(st.none(), st.builds(JobError, text, st.booleans(), text))


@st.composite
def jobs(draw: st.DrawFn) -> Job:
    job = Job(
        job_id=draw(st.sampled_from(["n1-abc-0000000001", "job-1-00000000ff"])),
        spec=draw(specs),
        effective=EffectiveSpec(3, 1.0, 60.0, 2.0, 300.0),
        create_time=draw(times),
        request_id=draw(text),
        state=draw(st.sampled_from(list(JobState))),
        attempt=draw(st.integers(0, 10)),
        start_time=draw(st.none() | times),
        end_time=draw(st.none() | times),
        worker_id=draw(text),
        error=draw(errors),
    )
    return job


@settings(max_examples=300, deadline=None)
@given(job=jobs(), owner=st.sampled_from(["", "n1", "job"]), include_payload=st.booleans())
def test_job_and_spec_builders_give_the_former_bytes(job: Job, owner: str, include_payload: bool) -> None:
    assert job_to_pb(job, owner, include_payload) == ref_job(job, owner, include_payload)
    assert _wire(job_to_pb(job, owner)) == _wire(ref_job(job, owner))
    assert spec_to_pb(job.spec, include_payload) == ref_spec(job.spec, include_payload)
    submitted = submit_response(job, owner, deduplicated=True)
    expected = client_pb2.SubmitJobResponse(job_id=job.job_id, job=ref_job(job, owner), deduplicated=True)
    assert _wire(submitted) == _wire(expected)
    assert result_to_pb(job, owner).job == ref_job(job, owner)


@settings(max_examples=100, deadline=None)
@given(spec=specs, lease=times, run=times, owner=st.sampled_from(["", "n2"]))
def test_assignment_builder_gives_the_former_bytes(
    spec: JobSpec, lease: float, run: float, owner: str
) -> None:
    a = Assignment("n1-abc-0000000001", 2, spec, lease, run, "w")
    expected = job_pb2.Assignment(
        job_id=a.job_id,
        attempt=a.attempt,
        spec=ref_spec(spec),
        lease_deadline=to_timestamp(lease),
        run_deadline=to_timestamp(run),
        owner_node=owner,
    )
    assert _wire(assignment_to_pb(a, owner)) == _wire(expected)


def test_zero_times_and_durations_stay_present() -> None:
    job = Job("n1-abc-0000000001", JobSpec("echo"), EffectiveSpec(3, 1.0, 60.0, 2.0, 300.0), create_time=0.0)
    pb = job_to_pb(job)
    assert pb.HasField("create_time") and not pb.HasField("start_time") and not pb.HasField("error")
    assert pb.spec.HasField("retry") and pb.spec.HasField("execution_timeout")
    assert pb.spec.retry.HasField("initial_backoff")
    assert isinstance(pb.create_time, timestamp_pb2.Timestamp)
    assert isinstance(pb.spec.execution_timeout, duration_pb2.Duration)


def test_wire_time_survives_a_timestamp_round_trip() -> None:
    for _ in range(1000):
        t = wire_time()
        stamp = to_timestamp(t)
        assert stamp is not None and from_timestamp(stamp) == t


# ---------------------------------------------------------------------------- byte budgets (issue 26)
long_text = st.text(max_size=256)  # label keys and values at their limit, any characters


@st.composite
def sized_jobs(draw: st.DrawFn) -> Job:
    job = draw(jobs())
    labels = draw(st.dictionaries(long_text, long_text, max_size=4))
    spec = JobSpec(
        job.spec.job_type,
        draw(st.binary(max_size=300)),
        job.spec.priority,
        job.spec.retry,
        job.spec.execution_timeout,
        MappingProxyType(labels),
    )
    job.spec = spec
    job.job_id = draw(st.sampled_from([job.job_id, "n" + "9" * 31 + "-" + "f" * 16 + "-" + "f" * 16]))
    job.request_id = draw(st.text(max_size=128))
    job.worker_id = draw(st.text(max_size=128))
    job.error = draw(
        st.none() | st.builds(JobError, st.text(max_size=600), st.booleans(), st.text(max_size=64))
    )
    job.attempt = draw(st.sampled_from([0, 2**31 - 1]))
    return job


@settings(max_examples=300, deadline=None)
@given(job=sized_jobs(), owner=st.sampled_from(["", "n1", "n" + "9" * 31]))
def test_size_estimates_bound_the_bytes_in_a_reply(job: Job, owner: str) -> None:
    """model's estimates are upper bounds of a job's bytes in a reply (its repeated field's tag and
    length prefix included), so the byte budgets hold on the wire."""
    assert client_pb2.ListJobsResponse(jobs=[job_to_pb(job, owner)]).ByteSize() <= job.status_bytes
    assignment = Assignment(job.job_id, 2**31 - 1, job.spec, 4e9, 4e9, "w")
    fetched = worker_pb2.FetchWorkResponse(assignments=[assignment_to_pb(assignment, owner)])
    assert fetched.ByteSize() <= assignment_bytes(job.job_id, job.spec)


def test_status_carries_the_estimate_by_state() -> None:
    """GetJobStatus's view: a PENDING job gets both estimated times, a RUNNING one the end only (its
    start is start_time), and without an estimate neither field is set."""
    job = Job("n1-abc-0000000001", JobSpec("echo"), EffectiveSpec(3, 1.0, 60.0, 2.0, 300.0), create_time=0.0)
    job.state = JobState.PENDING
    assert not status_to_pb(job, "n1", None).HasField("estimated_start_time")
    pb = status_to_pb(job, "n1", Estimate(12.5, 14.0))
    assert from_timestamp(pb.estimated_start_time) == 12.5 and from_timestamp(pb.estimated_end_time) == 14.0
    job.state, job.start_time = JobState.RUNNING, 10.0
    pb = status_to_pb(job, "n1", Estimate(10.0, 14.0))
    assert not pb.HasField("estimated_start_time") and from_timestamp(pb.estimated_end_time) == 14.0
    plain = job_to_pb(job, "n1")
    assert not plain.HasField("estimated_start_time") and not plain.HasField("estimated_end_time")
