"""How servicers are registered: requests that do not parse get INVALID_ARGUMENT (not grpc's UNKNOWN),
every unary call is timed and counted, and every method is served as a generic handler.

grpc runs a method's request deserializer before any handler or interceptor sees the call, and turns
its exception into UNKNOWN ("Exception deserializing request!"). A `ServingRegistrar` stands in for the
server when a generated add_*Servicer_to_server function registers a servicer: it wraps every
unary-request deserializer so bytes that do not parse become a `Malformed` marker, and wraps each
unary-unary handler once in one coroutine that refuses a Malformed request with INVALID_ARGUMENT and
protobuf's reason (without running the servicer) and, given NodeMetrics, records the call's latency
and status code (realsys.metrics.RpcRecorder). All wrapping happens at registration; a call pays one
extra coroutine frame, and no more for a method decorated with realsys.status.grpc_errors: that
wrapper is taken off and its error mapping done in this one (unless the node traces).

Generic handlers only: generated code registers each service twice, as a generic handler and as
"registered methods". grpc.aio keeps one pending request-call future per registered method and runs
asyncio.wait over all of them for every call that arrives (~17 on a Design B node), so the registrar
keeps only the generic handler (same handlers, same status codes; an unknown method is UNIMPLEMENTED
either way). `add_servicer` gives roles this without them knowing; server.py passes a registrar with
the node's metrics to `role.add_to_server`.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

from realsys.metrics import NodeMetrics, RpcRecorder
from realsys.status import MAPPED_ERRORS, abort_with, unwrap_errors

if TYPE_CHECKING:  # generic only in grpc-stubs
    Handler = grpc.RpcMethodHandler[Any, Any]
    _GenericHandler = grpc.GenericRpcHandler[Any, Any]
else:
    Handler = Any
    _GenericHandler = grpc.GenericRpcHandler

# (request, context) -> awaitable response; grpc-stubs types handlers as synchronous, hence Any
Behavior = Callable[[Any, Any], Any]


@dataclass(frozen=True, slots=True)
class Malformed:
    """What a wrapped deserializer returns for bytes that do not parse."""

    message_type: str
    reason: str

    def details(self) -> str:
        return f"request is not a valid {self.message_type}: {self.reason}"


def _tolerant(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    owner = getattr(parse, "__self__", None)
    name = getattr(owner, "__name__", "message")

    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except Exception as exc:  # protobuf's DecodeError, or a string field that is not UTF-8
            return Malformed(name, str(exc) or type(exc).__name__)

    return deserialize


def _code_of(context: grpc.aio.ServicerContext[Any, Any]) -> grpc.StatusCode | None:
    """The status code a handler set (via abort or set_code), if any."""
    code: Any = context.code()
    return code if isinstance(code, grpc.StatusCode) else None


def serve_unary(behavior: Behavior, recorder: RpcRecorder | None, map_errors: bool = False) -> Behavior:
    """`behavior` refusing Malformed requests with INVALID_ARGUMENT, and with `recorder`, timed and
    counted by status code (the code a handler aborted or set with, else OK; CANCELLED when the call
    was cancelled, UNKNOWN when it raised). `map_errors`: DtqErrors and relayed call errors become
    their status (realsys.status.abort_with), as @grpc_errors does, so an undecorated servicer
    method is served in this one frame."""
    mapped = MAPPED_ERRORS if map_errors else ()
    if recorder is None:

        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            if isinstance(request, Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.details())
            try:
                return await behavior(request, context)
            except mapped as exc:
                await abort_with(context, exc)

        return call

    record = recorder.record
    clock = time.perf_counter
    unknown, ok, cancelled = grpc.StatusCode.UNKNOWN, grpc.StatusCode.OK, grpc.StatusCode.CANCELLED

    async def timed(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        start = clock()
        code = unknown
        try:
            if isinstance(request, Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.details())
            try:
                response = await behavior(request, context)
            except mapped as exc:
                await abort_with(context, exc)
            code = _code_of(context) or ok
            return response
        except grpc.aio.AbortError:
            code = _code_of(context) or unknown
            raise
        except asyncio.CancelledError:
            code = cancelled
            raise
        finally:
            record(code, clock() - start)

    return timed


def serving_handler(
    handler: Handler | None,
    recorder: RpcRecorder | None = None,
    trace: Callable[[Behavior], Behavior] | None = None,
) -> Handler | None:
    """`handler` with malformed unary requests refused with INVALID_ARGUMENT and, with `recorder`,
    unary-unary calls timed (streaming calls are not: their duration is a connection's lifetime).
    Streaming requests are returned unchanged. `trace` wraps a unary-unary servicer method (a
    tracing node's realsys.tracing.NodeTracer.wrap, bound to the method)."""
    if handler is None or handler.request_streaming:
        return handler
    deserialize = handler.request_deserializer
    if deserialize is not None:
        deserialize = _tolerant(deserialize)
    if handler.response_streaming:
        if deserialize is None:
            return handler
        stream: Any = handler.unary_stream  # an aio servicer's method (grpc-stubs types the sync one)

        async def streaming(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> AsyncIterator[Any]:
            if isinstance(request, Malformed):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.details())
            result = stream(request, context)
            if inspect.isasyncgen(result):
                async for item in result:
                    yield item
            else:
                await result

        return grpc.unary_stream_rpc_method_handler(
            streaming, request_deserializer=deserialize, response_serializer=handler.response_serializer
        )
    if deserialize is None and recorder is None and trace is None:
        return handler
    unary: Any = handler.unary_unary
    inner = unwrap_errors(unary) if trace is None else None  # a tracer wraps the decorated method
    if inner is not None:
        unary = inner
    if trace is not None:
        unary = trace(unary)
    return grpc.unary_unary_rpc_method_handler(
        serve_unary(unary, recorder, map_errors=inner is not None),
        request_deserializer=deserialize,
        response_serializer=handler.response_serializer,
    )


class _ServingGeneric(_GenericHandler):
    """A generic handler whose method handlers are wrapped once each (stable objects per method)."""

    def __init__(self, inner: _GenericHandler, wrap: Callable[[str, Handler | None], Handler | None]) -> None:
        self._inner = inner
        self._wrap = wrap
        self._handlers: dict[str, Handler] = {}  # method -> wrapped handler

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        method = handler_call_details.method
        found = self._handlers.get(method)
        if found is None:
            # misses are not cached: a client must not grow this with made-up method names
            found = self._wrap(method, self._inner.service(handler_call_details))
            if found is not None:
                self._handlers[method] = found
        return found


class ServingRegistrar:
    """Stands in for the server in generated add_*Servicer_to_server calls (module docstring).
    Other attributes are the server's."""

    def __init__(
        self,
        server: grpc.aio.Server,
        metrics: NodeMetrics | None = None,
        tracer: Callable[[str, Behavior], Behavior] | None = None,
    ) -> None:
        """`tracer(method, behavior)`: wraps each unary method (realsys.tracing), when the node traces."""
        self._server = server
        self._metrics = metrics
        self._tracer = tracer
        self._services: set[str] = set()  # services already served by a generic handler

    def _wrap(self, method: str, handler: Handler | None) -> Handler | None:
        metrics, tracer = self._metrics, self._tracer
        trace = None if tracer is None else functools.partial(tracer, method)
        return serving_handler(handler, metrics.recorder(method) if metrics is not None else None, trace)

    def add_generic_rpc_handlers(self, handlers: Sequence[_GenericHandler]) -> None:
        for handler in handlers:
            name = getattr(handler, "service_name", None)
            if callable(name):
                self._services.add(name())
        self._server.add_generic_rpc_handlers(tuple(_ServingGeneric(h, self._wrap) for h in handlers))

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Handler | None]) -> None:
        if service in self._services:
            return  # generated code registered the same handlers generically just before
        self._services.add(service)
        generic = grpc.method_handlers_generic_handler(service, dict(handlers))  # type: ignore[arg-type]
        self._server.add_generic_rpc_handlers((_ServingGeneric(generic, self._wrap),))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


def add_servicer(adder: Any, servicer: object, server: grpc.aio.Server | ServingRegistrar) -> None:
    """Registers `servicer` through a generated (untyped) add_*Servicer_to_server function, with
    malformed requests refused with INVALID_ARGUMENT (and timed, when `server` is server.py's
    registrar)."""
    adder(servicer, server if isinstance(server, ServingRegistrar) else ServingRegistrar(server))
