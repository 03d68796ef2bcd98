"""Domain errors. Each carries the name of the gRPC status code that the edge maps it to.

The core does not import grpc; realsys/ turns `code` into a grpc.StatusCode.
"""

from __future__ import annotations

from enum import Enum


class Code(Enum):
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    UNAVAILABLE = "UNAVAILABLE"


class DtqError(Exception):
    code: Code = Code.FAILED_PRECONDITION

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DtqError):
    code = Code.INVALID_ARGUMENT


class NotFound(DtqError):
    code = Code.NOT_FOUND


class FailedPrecondition(DtqError):
    code = Code.FAILED_PRECONDITION


class StaleAttempt(DtqError):
    """A report or renewal under an attempt that no longer holds the lease (fencing)."""

    code = Code.ABORTED


class ResourceExhausted(DtqError):
    code = Code.RESOURCE_EXHAUSTED


class Unavailable(DtqError):
    """Transient: try again. `retry_after` (seconds), when set, is how long the caller should wait
    first; 0 means at once, on another node (the edge sends it as metadata, realsys/status.py)."""

    code = Code.UNAVAILABLE

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# The error each code stands for, where an answer carries only the code and message (a gRPC status
# at the client, realsys/status.py; one item of a batched reply, realsys/coalesce.py)
ERROR_FOR_CODE: dict[Code, type[DtqError]] = {
    Code.INVALID_ARGUMENT: InvalidArgument,
    Code.NOT_FOUND: NotFound,
    Code.FAILED_PRECONDITION: FailedPrecondition,
    Code.ABORTED: StaleAttempt,
    Code.RESOURCE_EXHAUSTED: ResourceExhausted,
    Code.UNAVAILABLE: Unavailable,
}
