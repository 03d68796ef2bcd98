import datetime

from dtq.v1 import job_pb2 as _job_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ReportResultsRequest(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[ReportResultRequest]
    def __init__(self, reports: _Optional[_Iterable[_Union[ReportResultRequest, _Mapping]]] = ...) -> None: ...

class ReportResultItem(_message.Message):
    __slots__ = ("state", "code", "message")
    STATE_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    state: _job_pb2.JobState
    code: str
    message: str
    def __init__(self, state: _Optional[_Union[_job_pb2.JobState, str]] = ..., code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class ReportResultsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ReportResultItem]
    def __init__(self, results: _Optional[_Iterable[_Union[ReportResultItem, _Mapping]]] = ...) -> None: ...

class RunningJob(_message.Message):
    __slots__ = ("job_id", "attempt")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class HeartbeatRequest(_message.Message):
    __slots__ = ("worker_id", "total_slots", "free_slots", "running")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SLOTS_FIELD_NUMBER: _ClassVar[int]
    FREE_SLOTS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    total_slots: int
    free_slots: int
    running: _containers.RepeatedCompositeFieldContainer[RunningJob]
    def __init__(self, worker_id: _Optional[str] = ..., total_slots: _Optional[int] = ..., free_slots: _Optional[int] = ..., running: _Optional[_Iterable[_Union[RunningJob, _Mapping]]] = ...) -> None: ...

class HeartbeatResponse(_message.Message):
    __slots__ = ("cancel", "abandon", "heartbeat_interval", "lease_duration")
    CANCEL_FIELD_NUMBER: _ClassVar[int]
    ABANDON_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    LEASE_DURATION_FIELD_NUMBER: _ClassVar[int]
    cancel: _containers.RepeatedCompositeFieldContainer[RunningJob]
    abandon: _containers.RepeatedCompositeFieldContainer[RunningJob]
    heartbeat_interval: _duration_pb2.Duration
    lease_duration: _duration_pb2.Duration
    def __init__(self, cancel: _Optional[_Iterable[_Union[RunningJob, _Mapping]]] = ..., abandon: _Optional[_Iterable[_Union[RunningJob, _Mapping]]] = ..., heartbeat_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., lease_duration: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class FetchWorkRequest(_message.Message):
    __slots__ = ("worker_id", "free_slots", "wait_timeout", "reports")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    FREE_SLOTS_FIELD_NUMBER: _ClassVar[int]
    WAIT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    free_slots: int
    wait_timeout: _duration_pb2.Duration
    reports: _containers.RepeatedCompositeFieldContainer[ReportResultRequest]
    def __init__(self, worker_id: _Optional[str] = ..., free_slots: _Optional[int] = ..., wait_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., reports: _Optional[_Iterable[_Union[ReportResultRequest, _Mapping]]] = ...) -> None: ...

class FetchWorkResponse(_message.Message):
    __slots__ = ("assignments", "report_results")
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    REPORT_RESULTS_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[_job_pb2.Assignment]
    report_results: _containers.RepeatedCompositeFieldContainer[ReportResultItem]
    def __init__(self, assignments: _Optional[_Iterable[_Union[_job_pb2.Assignment, _Mapping]]] = ..., report_results: _Optional[_Iterable[_Union[ReportResultItem, _Mapping]]] = ...) -> None: ...

class ReportResultRequest(_message.Message):
    __slots__ = ("worker_id", "job_id", "attempt", "success", "failure", "cancelled")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    FAILURE_FIELD_NUMBER: _ClassVar[int]
    CANCELLED_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    job_id: str
    attempt: int
    success: _job_pb2.JobResult
    failure: _job_pb2.JobError
    cancelled: bool
    def __init__(self, worker_id: _Optional[str] = ..., job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., success: _Optional[_Union[_job_pb2.JobResult, _Mapping]] = ..., failure: _Optional[_Union[_job_pb2.JobError, _Mapping]] = ..., cancelled: _Optional[bool] = ...) -> None: ...

class ReportResultResponse(_message.Message):
    __slots__ = ("state",)
    STATE_FIELD_NUMBER: _ClassVar[int]
    state: _job_pb2.JobState
    def __init__(self, state: _Optional[_Union[_job_pb2.JobState, str]] = ...) -> None: ...
