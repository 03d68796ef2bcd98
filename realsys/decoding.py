"""Requests that do not parse get INVALID_ARGUMENT, not grpc's UNKNOWN.

grpc runs a method's request deserializer before any handler or interceptor sees the call, and turns
its exception into UNKNOWN ("Exception deserializing request!"). `add_servicer` registers a generated
servicer with every unary-request deserializer wrapped: bytes that do not parse become a `Malformed`
marker, and the handler's wrapper fails the call with INVALID_ARGUMENT and protobuf's reason, without
running the servicer. The wrapping happens once at registration, so a well-formed call pays only one
extra coroutine frame.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc

if TYPE_CHECKING:  # generic only in grpc-stubs
    Handler = grpc.RpcMethodHandler[Any, Any]
    _GenericHandler = grpc.GenericRpcHandler[Any, Any]
else:
    Handler = Any
    _GenericHandler = grpc.GenericRpcHandler


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


def decoding_handler(handler: Handler | None) -> Handler | None:
    """`handler` with malformed unary requests refused with INVALID_ARGUMENT (streaming requests and
    handlers without a deserializer are returned unchanged)."""
    if handler is None or handler.request_streaming or handler.request_deserializer is None:
        return handler
    deserialize = _tolerant(handler.request_deserializer)
    if handler.response_streaming:
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
    unary: Any = handler.unary_unary

    async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
        if isinstance(request, Malformed):
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.details())
        return await unary(request, context)

    return grpc.unary_unary_rpc_method_handler(
        call, request_deserializer=deserialize, response_serializer=handler.response_serializer
    )


class _DecodingGeneric(_GenericHandler):
    def __init__(self, inner: _GenericHandler) -> None:
        self._inner = inner
        self._handlers: dict[
            str, Handler | None
        ] = {}  # stable objects per method, as interceptors cache them

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> Handler | None:
        method = handler_call_details.method
        found = self._handlers.get(method)
        if found is None:
            found = decoding_handler(self._inner.service(handler_call_details))
            if found is not None:
                self._handlers[method] = found
        return found


class _DecodingRegistrar:
    """Stands in for the server in a generated add_*Servicer_to_server call and wraps what it registers."""

    def __init__(self, server: grpc.aio.Server) -> None:
        self._server = server

    def add_generic_rpc_handlers(self, handlers: Sequence[_GenericHandler]) -> None:
        self._server.add_generic_rpc_handlers(tuple(_DecodingGeneric(h) for h in handlers))

    def add_registered_method_handlers(self, service: str, handlers: Mapping[str, Handler | None]) -> None:
        wrapped = {method: decoding_handler(h) for method, h in handlers.items()}
        self._server.add_registered_method_handlers(service, wrapped)  # type: ignore[attr-defined]


def add_servicer(adder: Any, servicer: object, server: grpc.aio.Server) -> None:
    """Registers `servicer` through a generated (untyped) add_*Servicer_to_server function, with
    malformed requests refused with INVALID_ARGUMENT."""
    adder(servicer, _DecodingRegistrar(server))
