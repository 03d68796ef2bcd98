"""Job types: what a worker runs for each `job_type`, and the context a handler gets.

A handler takes a `JobContext` and returns the job's output (bytes; `str` is UTF-8 encoded, `None`
means empty). Raising `JobFailure` fails the attempt with its message; `retryable=False` ends the job
at once. Any other exception fails the attempt as retryable.

Async handlers run on the worker's event loop and must not block it. Handlers registered with
`blocking=True` are plain functions run in a thread pool sized to the worker's slots, so a CPU-bound
job never stalls the heartbeats that keep its lease alive (Dramatiq #692). Blocking handlers cannot be
interrupted: they should check `ctx.cancelled` (or call `ctx.raise_if_cancelled()`) now and then.

Registering a job type::

    from realsys.worker import JobContext, JobFailure, job_type

    @job_type("resize")
    async def resize(ctx: JobContext) -> bytes:
        args = ctx.json()                      # JobFailure(retryable=False) on bad JSON
        return await do_resize(args["url"])

    @job_type("checksum", blocking=True)       # runs in a thread
    def checksum(ctx: JobContext) -> str:
        ctx.raise_if_cancelled()
        return hashlib.sha256(ctx.payload).hexdigest()

    # or, without a decorator, on a registry of your own:
    handlers = HandlerRegistry.with_builtins()
    handlers.register("checksum", checksum, blocking=True)
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeAlias, TypeVar

import numpy as np

from model.config import CoreConfig
from model.errors import InvalidArgument
from model.job import JobSpec, validate_spec
from model.workload import attempt_uniform

Output: TypeAlias = bytes | bytearray | memoryview | str | None
AsyncHandler: TypeAlias = Callable[["JobContext"], Awaitable[Output]]
BlockingHandler: TypeAlias = Callable[["JobContext"], Output]
F = TypeVar("F", bound=Callable[..., Any])

_NAME_CHECK = CoreConfig()  # only used to reuse the core's job_type rule


class JobFailure(Exception):
    """Raised by a handler to fail the attempt. `retryable=False` fails the job without more attempts."""

    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable


class JobCancelled(Exception):
    """Raised by `JobContext.raise_if_cancelled`; the runtime reports the attempt as cancelled."""


@dataclass(slots=True)
class JobContext:
    """What a handler knows about the attempt it runs."""

    job_id: str
    attempt: int
    spec: JobSpec
    deadline: float  # wall-clock (time.time()) run deadline of this attempt
    # this attempt's own stream (`rng`), never the global random state: a Generator, or a function
    # that makes it on first use (most handlers draw nothing; making one costs ~75 us per job)
    rng_source: np.random.Generator | Callable[[], np.random.Generator]
    cancelled: threading.Event = field(default_factory=threading.Event)  # set on cancel, abandon, timeout

    @property
    def rng(self) -> np.random.Generator:
        if not isinstance(self.rng_source, np.random.Generator):
            self.rng_source = self.rng_source()
        return self.rng_source

    @property
    def payload(self) -> bytes:
        return self.spec.payload

    def remaining(self) -> float:
        """Seconds left before the run deadline (may be negative)."""
        return self.deadline - time.time()

    def raise_if_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise JobCancelled(f"job {self.job_id} attempt {self.attempt} was asked to stop")

    def json(self) -> dict[str, Any]:
        """The payload as a JSON object; an empty payload is {}. Bad JSON (or JSON nested past the
        parser's recursion limit) fails the job for good."""
        if not self.payload.strip():
            return {}
        try:
            value = json.loads(self.payload)
        except (UnicodeDecodeError, ValueError) as exc:
            raise JobFailure(
                f"{self.spec.job_type}: payload is not valid JSON: {exc}", retryable=False
            ) from exc
        except RecursionError as exc:  # [[[[...: the same payload fails the same way every attempt
            raise JobFailure(
                f"{self.spec.job_type}: payload JSON nests too deeply to parse", retryable=False
            ) from exc
        if not isinstance(value, dict):
            raise JobFailure(
                f"{self.spec.job_type}: payload must be a JSON object, got {type(value).__name__}",
                retryable=False,
            )
        return value

    def number(self, args: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
        """A finite number field of a JSON payload in [low, high]; JobFailure(retryable=False) otherwise."""
        value = args.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise JobFailure(f"{self.spec.job_type}: {key!r} must be a finite number", retryable=False)
        if not low <= value <= high:
            raise JobFailure(f"{self.spec.job_type}: {key!r} must be in [{low:g}, {high:g}]", retryable=False)
        return float(value)


@dataclass(frozen=True, slots=True)
class Handler:
    name: str
    fn: Callable[[JobContext], Any]
    blocking: bool


class HandlerRegistry:
    """Job type name -> handler. `registry` (module level) holds the built-ins and `@job_type` ones."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    @classmethod
    def with_builtins(cls) -> HandlerRegistry:
        handlers = cls()
        _register_builtins(handlers)
        return handlers

    def register(self, name: str, fn: Callable[[JobContext], Any], *, blocking: bool = False) -> None:
        """Adds or replaces a job type: async functions with blocking=False, plain ones with blocking=True."""
        try:
            validate_spec(JobSpec(name), _NAME_CHECK)
        except InvalidArgument as exc:
            raise ValueError(f"bad job type name: {exc.message}") from None
        is_async = inspect.iscoroutinefunction(fn)
        if blocking and is_async:
            raise TypeError(f"job type {name!r}: an async handler cannot be blocking")
        if not blocking and not is_async:
            raise TypeError(f"job type {name!r}: a plain function must be registered with blocking=True")
        self._handlers[name] = Handler(name, fn, blocking)

    def job_type(self, name: str, blocking: bool = False) -> Callable[[F], F]:
        def decorate(fn: F) -> F:
            self.register(name, fn, blocking=blocking)
            return fn

        return decorate

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def copy(self) -> HandlerRegistry:
        other = HandlerRegistry()
        other._handlers = dict(self._handlers)
        return other

    def __contains__(self, name: object) -> bool:
        return name in self._handlers

    def __iter__(self) -> Iterator[str]:
        return iter(sorted(self._handlers))

    def __len__(self) -> int:
        return len(self._handlers)


# ---------------------------------------------------------------------------- built-in job types
_MAX_SECONDS = 24 * 3600.0


async def sleep_handler(ctx: JobContext) -> bytes:
    """`sleep` {"seconds": s}: waits s seconds. Wakes early on cancel: the runtime cancels its task."""
    seconds = ctx.number(ctx.json(), "seconds", 0.0, 0.0, _MAX_SECONDS)
    await asyncio.sleep(seconds)
    return b""


def cpu_handler(ctx: JobContext) -> bytes:
    """`cpu` {"seconds": s, "cpu_fraction": f}: burns f x s seconds of this thread's CPU time
    (time.thread_time, not wall time), then sleeps the other (1 - f) x s; f defaults to 1 (all CPU).

    The burn is a fixed amount of work, so contention (the GIL, cores shared with other processes)
    makes it take longer in wall time, as a real CPU-bound job would. Checks for a cancel about every
    0.1 ms while burning, and wakes at once from the sleep when asked to stop.
    """
    args = ctx.json()
    seconds = ctx.number(args, "seconds", 0.0, 0.0, _MAX_SECONDS)
    fraction = ctx.number(args, "cpu_fraction", 1.0, 0.0, 1.0)
    end = time.thread_time() + seconds * fraction
    x = 0
    while time.thread_time() < end:
        ctx.raise_if_cancelled()
        for i in range(2000):  # ~0.1 ms of pure-Python work between clock reads
            x ^= i * i
    rest = seconds * (1.0 - fraction)
    if rest > 0 and ctx.cancelled.wait(rest):
        ctx.raise_if_cancelled()
    return b""


async def echo_handler(ctx: JobContext) -> bytes:
    """`echo`: returns the payload."""
    return ctx.payload


async def fail_handler(ctx: JobContext) -> bytes:
    """`fail` {"probability": p, "seconds": s, "retryable": true, "seed": n}: sleeps s, then fails with
    probability p. With a `seed` (the load generator sends one per job), the verdict of attempt a is
    model.workload.attempt_uniform(seed, a) < p, the draw the simulator makes for the same job;
    without one, it comes from the attempt's own stream."""
    args = ctx.json()
    probability = ctx.number(args, "probability", 1.0, 0.0, 1.0)
    seconds = ctx.number(args, "seconds", 0.0, 0.0, _MAX_SECONDS)
    retryable = args.get("retryable", True)
    if not isinstance(retryable, bool):
        raise JobFailure("fail: 'retryable' must be a boolean", retryable=False)
    seed = args.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise JobFailure("fail: 'seed' must be a non-negative integer", retryable=False)
    # drawn first: the same stream (or seed) gives the same verdict
    draw = attempt_uniform(seed, ctx.attempt) if seed is not None else ctx.rng.random()
    fails = bool(draw < probability)
    await asyncio.sleep(seconds)
    if fails:
        raise JobFailure(f"fail: injected failure (probability {probability:g})", retryable=retryable)
    return b""


def _register_builtins(handlers: HandlerRegistry) -> None:
    handlers.register("sleep", sleep_handler)
    handlers.register("cpu", cpu_handler, blocking=True)
    handlers.register("echo", echo_handler)
    handlers.register("fail", fail_handler)


registry = HandlerRegistry.with_builtins()


def job_type(name: str, blocking: bool = False) -> Callable[[F], F]:
    """Decorator: registers a handler on the default `registry` under `name`."""
    return registry.job_type(name, blocking)


def load_job_modules(names: Iterable[str]) -> list[str]:
    """Imports the modules of DTQ_JOB_MODULES (their @job_type decorators register on `registry`);
    returns the job types registered now. Any failure is one InvalidArgument line naming the module."""
    before = set(registry)
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:  # a missing module, or one that fails while it runs
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InvalidArgument(
                f"DTQ_JOB_MODULES: cannot import {name!r}: {type(exc).__name__}: {reason}"
            ) from None
    return sorted(set(registry) - before)
