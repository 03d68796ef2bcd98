import datetime

from dtq.v1 import client_pb2 as _client_pb2
from dtq.v1 import job_pb2 as _job_pb2
from dtq.v1 import worker_pb2 as _worker_pb2
from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WatchJobsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class JobNotice(_message.Message):
    __slots__ = ("job_id", "job")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    job: _job_pb2.Job
    def __init__(self, job_id: _Optional[str] = ..., job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ...) -> None: ...

class JobNotices(_message.Message):
    __slots__ = ("notices",)
    NOTICES_FIELD_NUMBER: _ClassVar[int]
    notices: _containers.RepeatedCompositeFieldContainer[JobNotice]
    def __init__(self, notices: _Optional[_Iterable[_Union[JobNotice, _Mapping]]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message", "retry_after")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRY_AFTER_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    retry_after: float
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ..., retry_after: _Optional[float] = ...) -> None: ...

class CreateJobsRequest(_message.Message):
    __slots__ = ("requests",)
    REQUESTS_FIELD_NUMBER: _ClassVar[int]
    requests: _containers.RepeatedCompositeFieldContainer[_client_pb2.SubmitJobRequest]
    def __init__(self, requests: _Optional[_Iterable[_Union[_client_pb2.SubmitJobRequest, _Mapping]]] = ...) -> None: ...

class CreateJobResult(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: _client_pb2.SubmitJobResponse
    error: ItemError
    def __init__(self, response: _Optional[_Union[_client_pb2.SubmitJobResponse, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class CreateJobsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CreateJobResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CreateJobResult, _Mapping]]] = ...) -> None: ...

class CompleteAttemptsRequest(_message.Message):
    __slots__ = ("reports",)
    REPORTS_FIELD_NUMBER: _ClassVar[int]
    reports: _containers.RepeatedCompositeFieldContainer[_worker_pb2.ReportResultRequest]
    def __init__(self, reports: _Optional[_Iterable[_Union[_worker_pb2.ReportResultRequest, _Mapping]]] = ...) -> None: ...

class CompleteAttemptResult(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: _worker_pb2.ReportResultResponse
    error: ItemError
    def __init__(self, response: _Optional[_Union[_worker_pb2.ReportResultResponse, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class CompleteAttemptsResponse(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[CompleteAttemptResult]
    def __init__(self, results: _Optional[_Iterable[_Union[CompleteAttemptResult, _Mapping]]] = ...) -> None: ...

class LeaseJobsRequest(_message.Message):
    __slots__ = ("worker_id", "job_ids", "completes")
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    COMPLETES_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    completes: _containers.RepeatedCompositeFieldContainer[_worker_pb2.ReportResultRequest]
    def __init__(self, worker_id: _Optional[str] = ..., job_ids: _Optional[_Iterable[str]] = ..., completes: _Optional[_Iterable[_Union[_worker_pb2.ReportResultRequest, _Mapping]]] = ...) -> None: ...

class LeaseJobsResponse(_message.Message):
    __slots__ = ("assignments", "completed")
    ASSIGNMENTS_FIELD_NUMBER: _ClassVar[int]
    COMPLETED_FIELD_NUMBER: _ClassVar[int]
    assignments: _containers.RepeatedCompositeFieldContainer[_job_pb2.Assignment]
    completed: _containers.RepeatedCompositeFieldContainer[CompleteAttemptResult]
    def __init__(self, assignments: _Optional[_Iterable[_Union[_job_pb2.Assignment, _Mapping]]] = ..., completed: _Optional[_Iterable[_Union[CompleteAttemptResult, _Mapping]]] = ...) -> None: ...

class ReleaseWorkerRequest(_message.Message):
    __slots__ = ("worker_id",)
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    worker_id: str
    def __init__(self, worker_id: _Optional[str] = ...) -> None: ...

class ReleaseWorkerResponse(_message.Message):
    __slots__ = ("requeued",)
    REQUEUED_FIELD_NUMBER: _ClassVar[int]
    requeued: int
    def __init__(self, requeued: _Optional[int] = ...) -> None: ...

class QueueEntry(_message.Message):
    __slots__ = ("job_id", "priority", "not_before", "key")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    PRIORITY_FIELD_NUMBER: _ClassVar[int]
    NOT_BEFORE_FIELD_NUMBER: _ClassVar[int]
    KEY_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    priority: int
    not_before: _timestamp_pb2.Timestamp
    key: str
    def __init__(self, job_id: _Optional[str] = ..., priority: _Optional[int] = ..., not_before: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., key: _Optional[str] = ...) -> None: ...

class EnqueueRequest(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[QueueEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[QueueEntry, _Mapping]]] = ...) -> None: ...

class EnqueueResponse(_message.Message):
    __slots__ = ("depth",)
    DEPTH_FIELD_NUMBER: _ClassVar[int]
    depth: int
    def __init__(self, depth: _Optional[int] = ...) -> None: ...

class ReserveRequest(_message.Message):
    __slots__ = ("max_items", "hold", "wait_timeout", "ack_job_ids")
    MAX_ITEMS_FIELD_NUMBER: _ClassVar[int]
    HOLD_FIELD_NUMBER: _ClassVar[int]
    WAIT_TIMEOUT_FIELD_NUMBER: _ClassVar[int]
    ACK_JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    max_items: int
    hold: _duration_pb2.Duration
    wait_timeout: _duration_pb2.Duration
    ack_job_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, max_items: _Optional[int] = ..., hold: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., wait_timeout: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ..., ack_job_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ReserveResponse(_message.Message):
    __slots__ = ("entries",)
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    entries: _containers.RepeatedCompositeFieldContainer[QueueEntry]
    def __init__(self, entries: _Optional[_Iterable[_Union[QueueEntry, _Mapping]]] = ...) -> None: ...

class AckRequest(_message.Message):
    __slots__ = ("job_ids",)
    JOB_IDS_FIELD_NUMBER: _ClassVar[int]
    job_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, job_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class AckResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QueueStatsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QueueStats(_message.Message):
    __slots__ = ("ready", "delayed", "reserved", "oldest_enqueue_time")
    READY_FIELD_NUMBER: _ClassVar[int]
    DELAYED_FIELD_NUMBER: _ClassVar[int]
    RESERVED_FIELD_NUMBER: _ClassVar[int]
    OLDEST_ENQUEUE_TIME_FIELD_NUMBER: _ClassVar[int]
    ready: int
    delayed: int
    reserved: int
    oldest_enqueue_time: _timestamp_pb2.Timestamp
    def __init__(self, ready: _Optional[int] = ..., delayed: _Optional[int] = ..., reserved: _Optional[int] = ..., oldest_enqueue_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class PutResultsRequest(_message.Message):
    __slots__ = ("results",)
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PutResultRequest]
    def __init__(self, results: _Optional[_Iterable[_Union[PutResultRequest, _Mapping]]] = ...) -> None: ...

class PutResultsResponse(_message.Message):
    __slots__ = ("errors",)
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    errors: _containers.RepeatedCompositeFieldContainer[ItemError]
    def __init__(self, errors: _Optional[_Iterable[_Union[ItemError, _Mapping]]] = ...) -> None: ...

class PutResultRequest(_message.Message):
    __slots__ = ("job_id", "attempt", "response", "error")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    response: _job_pb2.JobResult
    error: _job_pb2.JobError
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., response: _Optional[_Union[_job_pb2.JobResult, _Mapping]] = ..., error: _Optional[_Union[_job_pb2.JobError, _Mapping]] = ...) -> None: ...

class PutResultResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetResultRequest(_message.Message):
    __slots__ = ("job_id", "attempt")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ...) -> None: ...

class GetResultResponse(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: _job_pb2.JobResult
    error: _job_pb2.JobError
    def __init__(self, response: _Optional[_Union[_job_pb2.JobResult, _Mapping]] = ..., error: _Optional[_Union[_job_pb2.JobError, _Mapping]] = ...) -> None: ...

class NotifyCancelRequest(_message.Message):
    __slots__ = ("job_id", "attempt", "worker_id")
    JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    job_id: str
    attempt: int
    worker_id: str
    def __init__(self, job_id: _Optional[str] = ..., attempt: _Optional[int] = ..., worker_id: _Optional[str] = ...) -> None: ...

class NotifyCancelResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class FindRequestRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...

class FindRequestResponse(_message.Message):
    __slots__ = ("found",)
    FOUND_FIELD_NUMBER: _ClassVar[int]
    found: bool
    def __init__(self, found: _Optional[bool] = ...) -> None: ...

class RecordRequestRequest(_message.Message):
    __slots__ = ("request_id", "job")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    JOB_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    job: _job_pb2.Job
    def __init__(self, request_id: _Optional[str] = ..., job: _Optional[_Union[_job_pb2.Job, _Mapping]] = ...) -> None: ...

class RecordRequestResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StealWorkRequest(_message.Message):
    __slots__ = ("thief_node", "worker_id", "max_jobs")
    THIEF_NODE_FIELD_NUMBER: _ClassVar[int]
    WORKER_ID_FIELD_NUMBER: _ClassVar[int]
    MAX_JOBS_FIELD_NUMBER: _ClassVar[int]
    thief_node: str
    worker_id: str
    max_jobs: int
    def __init__(self, thief_node: _Optional[str] = ..., worker_id: _Optional[str] = ..., max_jobs: _Optional[int] = ...) -> None: ...

class QueueDepthRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class QueueDepthResponse(_message.Message):
    __slots__ = ("node", "ready")
    NODE_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    node: str
    ready: int
    def __init__(self, node: _Optional[str] = ..., ready: _Optional[int] = ...) -> None: ...
