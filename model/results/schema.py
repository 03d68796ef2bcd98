"""The record schema (data/README.md, schema 1): per-request and per-job records, one flat row each,
written alike by the real load generator, the Celery baseline and the simulator, and their CSV rows."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from operator import attrgetter

from model.errors import InvalidArgument
from model.states import JobState
from model.workload import Op

SCHEMA = 1
KINDS = ("real", "sim", "baseline")
DESIGNS = ("micro", "mono", "celery")
OP_NAMES: dict[Op, str] = {op: op.name.lower() for op in Op}
OPS_BY_NAME: dict[str, Op] = {name: op for op, name in OP_NAMES.items()}
LABEL = re.compile(r"[A-Za-z0-9_.]+")


def check_label(value: str, where: str) -> str:
    """`value` if it may name an experiment or a sweep point inside run ids (ASCII letters, digits,
    '_' and '.'), else InvalidArgument naming `where`."""
    if not LABEL.fullmatch(value):
        raise InvalidArgument(f"{where}: label {value!r} may only use letters, digits, '_' and '.'")
    return value


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
    priority: int = 0  # the job's priority as submitted
    reason: str = ""  # the final error's reason (FAILED/CANCELLED: TIMEOUT, HANDLER_ERROR, CANCELLED, ...)

    @property
    def completion_time(self) -> float:
        return self.end_time - self.submit_time


def sort_requests(requests: list[RequestRecord]) -> None:
    """Sorts request records in place by (intended_time, client, start_time), the order every writer
    of requests.csv.gz uses (times are never NaN).

    Stable sorts from the least significant field up give the same order as the tuple key, ties
    included, without a key tuple per record: after a simulation (whose run defers full collections,
    sim/engine.py batched_gc) those tuples were the allocations that set off one collection of the
    whole heap, 0.3-0.9 s charged to the key lambda."""
    requests.sort(key=attrgetter("start_time"))
    requests.sort(key=attrgetter("client"))
    requests.sort(key=attrgetter("intended_time"))


def sort_jobs(jobs: list[JobRecord]) -> None:
    """Sorts job records in place by (submit_time, job_id), as sort_requests does requests."""
    jobs.sort(key=attrgetter("job_id"))
    jobs.sort(key=attrgetter("submit_time"))


REQUEST_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(RequestRecord))
JOB_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(JobRecord))
# jobs.csv files written before `priority` and `reason` existed: read with their defaults
LEGACY_JOB_FIELDS: tuple[str, ...] = JOB_FIELDS[:7]


# ---------------------------------------------------------------------------- CSV rows
def _time(x: float) -> str:
    """Shortest text that reads back as the same float: CSV round trips are exact."""
    return "" if not math.isfinite(x) else repr(float(x))


def _parse_time(text: str) -> float:
    return float(text) if text else math.nan


def request_rows(requests: Iterable[RequestRecord]) -> Iterable[list[str]]:
    """requests.csv rows (header not included; it is REQUEST_FIELDS), `op` by name."""
    for r in requests:
        yield [
            str(r.client),
            OP_NAMES[r.op],
            _time(r.intended_time),
            _time(r.start_time),
            _time(r.end_time),
            r.status,
            r.job_id,
        ]


def job_rows(jobs: Iterable[JobRecord]) -> Iterable[list[str]]:
    """jobs.csv rows (header JOB_FIELDS); end_time is empty for a job that did not finish."""
    for j in jobs:
        yield [
            j.job_id,
            _time(j.submit_time),
            _time(j.accept_time),
            _time(j.end_time),
            j.final_state.name,
            str(j.attempts),
            _time(j.duration),
            str(j.priority),
            j.reason,
        ]


def _row_dict(
    row: Sequence[str] | Mapping[str, str], fields: tuple[str, ...], legacy: tuple[str, ...] = ()
) -> Mapping[str, str]:
    if isinstance(row, Mapping):
        return row
    if legacy and len(row) == len(legacy):
        return dict(zip(legacy, row, strict=True))
    if len(row) != len(fields):
        raise InvalidArgument(f"expected {len(fields)} columns {fields}, got {len(row)}")
    return dict(zip(fields, row, strict=True))


def request_from_row(row: Sequence[str] | Mapping[str, str]) -> RequestRecord:
    """The inverse of one request_rows row (a list in REQUEST_FIELDS order, or a csv.DictReader row)."""
    d = _row_dict(row, REQUEST_FIELDS)
    try:
        return RequestRecord(
            client=int(d["client"]),
            op=OPS_BY_NAME[d["op"]],
            intended_time=_parse_time(d["intended_time"]),
            start_time=_parse_time(d["start_time"]),
            end_time=_parse_time(d["end_time"]),
            status=d["status"],
            job_id=d["job_id"],
        )
    except (KeyError, ValueError) as exc:
        raise InvalidArgument(f"bad request row {dict(d)}: {exc!r}") from None


def job_from_row(row: Sequence[str] | Mapping[str, str]) -> JobRecord:
    """The inverse of one job_rows row."""
    d = _row_dict(row, JOB_FIELDS, LEGACY_JOB_FIELDS)
    try:
        return JobRecord(
            job_id=d["job_id"],
            submit_time=_parse_time(d["submit_time"]),
            accept_time=_parse_time(d["accept_time"]),
            end_time=_parse_time(d["end_time"]),
            final_state=JobState[d["final_state"]],
            attempts=int(d["attempts"]),
            duration=_parse_time(d["duration"]),
            priority=int(d.get("priority") or 0),
            reason=d.get("reason") or "",
        )
    except (KeyError, ValueError) as exc:
        raise InvalidArgument(f"bad job row {dict(d)}: {exc!r}") from None
