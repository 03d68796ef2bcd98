"""What every Design A role shares: channels to peer services, per-hop deadlines, long-poll budgets,
wake-ups for long-polls, and background tasks that outlive a request.

Deadlines: every internal call gets `min(rpc_timeout + wait, caller's remaining time)`, where `wait` is
the long-poll the callee may spend waiting (0 for plain calls). Long-polls end `poll_margin` before the
call's own deadline, so the reply still gets back in time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

import grpc

from dtq.v1 import job_pb2
from model.errors import InvalidArgument
from model.job import JobError
from realsys.config import RECONNECT_OPTIONS, NodeConfig, grpc_options
from realsys.logs import get_logger
from realsys.metrics import NodeMetrics
from realsys.security import internal_channel_security, open_aio_channel
from realsys.timer import CoreTimer

# grpc.aio.ServicerContext is generic in the stubs; the roles never look at its type parameters
Context = grpc.aio.ServicerContext[Any, Any]
Clock = Callable[[], float]

# The longest a single internal long-poll may run, whatever the caller asks: bounds parked calls.
MAX_POLL = 60.0


def open_channel(config: NodeConfig, service: str) -> grpc.aio.Channel:
    """One long-lived channel per peer service, with dtq's message limits and keepalives; TLS and the
    internal token when the node has them (the CA file is read here, at start)."""
    address = config.services.get(service)
    if not address:
        raise InvalidArgument(f"DTQ_SERVICES has no address for the {service} service")
    return open_aio_channel(
        address, [*grpc_options(), *RECONNECT_OPTIONS], internal_channel_security(config.security)
    )


def remaining(context: Context | None) -> float | None:
    if context is None:
        return None
    left = context.time_remaining()
    return None if left is None else max(0.0, left)


def hop_timeout(config: NodeConfig, context: Context | None, wait: float = 0.0) -> float:
    """The deadline for one internal call made while serving `context`."""
    budget = config.rpc_timeout + wait
    left = remaining(context)
    if left is not None:
        budget = min(budget, left)
    # a zero timeout would mean "no deadline" to some stubs; an expired budget must fail fast instead
    return max(budget, 0.001)


def poll_margin(left: float) -> float:
    """Time kept back from a long-poll to answer before the caller's deadline."""
    return min(0.5, 0.1 * left + 0.02)


def poll_budget(requested: float, context: Context | None, reserve: float = 0.0) -> float:
    """How long a long-poll may wait: what was asked, capped below the call deadline (minus `reserve`,
    time still needed after the wait) and by MAX_POLL."""
    budget = min(requested, MAX_POLL)
    left = remaining(context)
    if left is not None:
        budget = min(budget, left - poll_margin(left) - reserve)
    return max(0.0, budget)


def settle(future: asyncio.Future[bool], value: bool) -> None:
    if not future.done():
        future.set_result(value)


async def park(future: asyncio.Future[bool], timeout: float) -> bool:
    """Awaits a long-poll waiter's future (registered with a driver as its token) for at most
    `timeout` seconds: True if a driver's step woke it, False on timeout. A future and a loop timer
    per waiter, not asyncio.wait_for, which costs a Task per wait in Python 3.11."""
    timer = asyncio.get_running_loop().call_later(max(0.0, timeout), settle, future, False)
    try:
        return await future
    finally:
        timer.cancel()


class MicroRole:
    """Peer channels and background tasks for one role; subclasses name the services they call.
    `clock` is the one source of the core's `now` (wall-clock seconds) in every Design A service."""

    calls: tuple[str, ...] = ()
    service_names: tuple[str, ...] = ()

    def __init__(self, config: NodeConfig, clock: Clock = time.time) -> None:
        self.config = config
        self.clock = clock
        self.log = get_logger(f"dtq.micro.{config.role}")
        self.channels: dict[str, grpc.aio.Channel] = {}
        self.draining = False
        self._tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        for service in self.calls:
            if service not in self.channels:
                self.channels[service] = open_channel(self.config, service)
        self.on_channels(self.channels)

    def on_channels(self, channels: Mapping[str, grpc.aio.Channel]) -> None:
        """Builds the stubs once the channels exist."""

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A background task the role keeps a reference to (and cancels on close)."""
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.config.name}-{name}")
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    async def drain(self) -> None:
        self.draining = True

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in self.channels.values():
            with contextlib.suppress(Exception):
                await channel.close(None)
        self.channels.clear()


class _Store(Protocol):
    def close(self) -> None: ...


class StoredRole(MicroRole):
    """A role whose core has a timer and whose state sits in a store of its own (job, queue, result):
    the timer runs from start to close, and the store closes after the role's tasks and channels.
    Subclasses set `_timer` and `_store` in their __init__."""

    _timer: CoreTimer
    _store: _Store

    def __init__(self, config: NodeConfig, metrics: NodeMetrics, clock: Clock = time.time) -> None:
        super().__init__(config, clock)
        self.metrics = metrics

    async def start(self) -> None:
        await super().start()
        self._timer.start()

    async def close(self) -> None:
        self._timer.stop()
        await super().close()
        self._store.close()


class _WaitForReady:
    """Calls through a stub wait (up to their deadline) for the channel to connect: a peer that is
    restarting is absorbed by the deadline instead of failing at once; a peer that stays down still
    ends in UNAVAILABLE (DEADLINE_EXCEEDED is relayed as UNAVAILABLE by grpc_errors)."""

    def __init__(self, stub: Any) -> None:
        self._stub = stub

    def __getattr__(self, name: str) -> Any:
        return functools.partial(getattr(self._stub, name), wait_for_ready=True)


def make_stub(factory: Any, channel: grpc.aio.Channel) -> Any:
    """A generated stub (untyped: there is no *_grpc.pyi) whose calls wait for the channel to be ready."""
    return _WaitForReady(factory(channel))


def job_error_pb(error: JobError) -> job_pb2.JobError:
    return job_pb2.JobError(message=error.message, retryable=error.retryable, reason=error.reason)


def rpc_code(exc: BaseException) -> str:
    """The status code name of a failed call, for logs."""
    if isinstance(exc, grpc.aio.AioRpcError):
        return exc.code().name
    return type(exc).__name__
