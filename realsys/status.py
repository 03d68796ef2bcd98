"""Maps the core's errors to gRPC status codes at the edge, and back for clients."""

from __future__ import annotations

import functools
import types
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from model.errors import ERROR_FOR_CODE, Code, DtqError, Unavailable

GRPC_CODE: dict[Code, grpc.StatusCode] = {
    Code.INVALID_ARGUMENT: grpc.StatusCode.INVALID_ARGUMENT,
    Code.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    Code.FAILED_PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    Code.ABORTED: grpc.StatusCode.ABORTED,
    Code.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    Code.UNAVAILABLE: grpc.StatusCode.UNAVAILABLE,
}

_ERROR_FOR_CODE: dict[grpc.StatusCode, type[DtqError]] = {
    GRPC_CODE[code]: error for code, error in ERROR_FOR_CODE.items()
}

Handler = TypeVar("Handler", bound=Callable[..., Awaitable[Any]])

# Trailing metadata of an UNAVAILABLE answer: how many milliseconds the caller should wait before it
# tries again (0: at once, on another node). Relayed unchanged by a node that forwarded the call.
RETRY_AFTER_KEY = "dtq-retry-after-ms"


def retry_after_metadata(seconds: float) -> tuple[tuple[str, str], ...]:
    return ((RETRY_AFTER_KEY, str(max(0, round(seconds * 1000)))),)


def retry_after_of(metadata: Any) -> float | None:
    """The retry-after (seconds) in a call's trailing metadata, if any."""
    for key, value in metadata or ():
        if key == RETRY_AFTER_KEY:
            try:
                return max(0.0, int(value) / 1000)
            except (TypeError, ValueError):
                return None
    return None


# What abort_with maps to a status code; the rest propagates (UNKNOWN, or an abort already made).
MAPPED_ERRORS: tuple[type[Exception], ...] = (DtqError, grpc.aio.AioRpcError)


async def abort_with(context: grpc.aio.ServicerContext[Any, Any], exc: Exception) -> NoReturn:
    """Aborts the call with the status of one of MAPPED_ERRORS: a DtqError's code and message (with
    its retry-after); a relayed call's code (DEADLINE_EXCEEDED and CANCELLED as UNAVAILABLE: the
    hop failed, not the caller's call) with its details and retry-after."""
    if isinstance(exc, DtqError):
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            context.set_trailing_metadata(retry_after_metadata(retry_after))
        await context.abort(GRPC_CODE[exc.code], exc.message)
    assert isinstance(exc, grpc.aio.AioRpcError)
    code = exc.code()
    if code in (grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED):
        code = grpc.StatusCode.UNAVAILABLE
    relayed = retry_after_of(exc.trailing_metadata())
    if relayed is not None:
        context.set_trailing_metadata(retry_after_metadata(relayed))
    await context.abort(code, exc.details() or code.name)
    raise AssertionError("context.abort returned")  # it raises AbortError


def grpc_errors(method: Handler) -> Handler:
    """Decorates an async servicer method: a DtqError becomes its status code and message.

    Errors relayed from another service (grpc.aio.AioRpcError) keep their code, so a hop does not
    turn NOT_FOUND into UNKNOWN. The undecorated method is the wrapper's `errors_mapped` attribute:
    realsys.decoding serves it with the same mapping inside its own wrapper (one frame per call).
    """

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        try:
            return await method(self, request, context)
        except MAPPED_ERRORS as exc:
            await abort_with(context, exc)

    wrapper.errors_mapped = method  # type: ignore[attr-defined]
    return wrapper  # type: ignore[return-value]


def unwrap_errors(behavior: Callable[..., Any]) -> Callable[..., Any] | None:
    """The undecorated method of a bound @grpc_errors method (bound to the same servicer), or None."""
    inner = getattr(getattr(behavior, "__func__", None), "errors_mapped", None)
    if inner is None:
        return None
    bound: Callable[..., Any] = types.MethodType(inner, behavior.__self__)  # type: ignore[attr-defined]
    return bound


def error_from_rpc(exc: grpc.RpcError) -> DtqError:
    """For clients and internal callers: a core error from a failed call (UNAVAILABLE if unmapped)."""
    # grpc.aio.AioRpcError is not a grpc.Call, but carries the same code() and details()
    is_call = isinstance(exc, grpc.Call | grpc.aio.AioRpcError)
    code = exc.code() if is_call else grpc.StatusCode.UNKNOWN
    details = exc.details() if is_call else str(exc)
    error_type = _ERROR_FOR_CODE.get(code, Unavailable)
    error = error_type(details or code.name)
    if isinstance(error, Unavailable) and is_call:
        error.retry_after = retry_after_of(exc.trailing_metadata())
    return error
