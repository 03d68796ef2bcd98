"""Per-request and per-job records: one flat row each, written alike by the real load generator
and the simulator (Ciw writes one record per customer per node in the same spirit)."""

from __future__ import annotations

from dataclasses import dataclass, fields

from model.states import JobState
from model.workload import Op


@dataclass(frozen=True, slots=True)
class RequestRecord:
    client: int
    op: Op
    intended_time: float  # when the request was due (open loop: from the trace)
    start_time: float  # when it was actually sent
    end_time: float
    status: str  # gRPC status code name, "OK" on success
    job_id: str = ""

    @property
    def latency(self) -> float:
        """Measured from the intended send time, so a slow generator cannot hide queueing."""
        return self.end_time - self.intended_time

    @property
    def service_time(self) -> float:
        return self.end_time - self.start_time


@dataclass(frozen=True, slots=True)
class JobRecord:
    job_id: str
    submit_time: float  # intended send time of the SubmitJob request
    accept_time: float  # when SubmitJob returned
    end_time: float  # when the client learned the terminal state
    final_state: JobState
    attempts: int
    duration: float  # the handler's requested duration

    @property
    def completion_time(self) -> float:
        return self.end_time - self.submit_time


REQUEST_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RequestRecord))
JOB_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(JobRecord))
