"""WorkerRuntime against a fake backend that wraps a real model.Scheduler (a fake, not mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import random
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import numpy as np
import pytest

from dtq.v1 import worker_pb2, worker_pb2_grpc
from model.config import CoreConfig
from model.errors import DtqError, NotFound, StaleAttempt, Unavailable
from model.ids import JobIdFactory
from model.job import Assignment, CancelledByWorker, Failed, Job, JobSpec, Outcome, RetryPolicy, Succeeded
from model.runtime import HeartbeatReply, Key
from model.scheduler import Scheduler
from model.states import JobState
from model.workload import attempt_uniform
from realsys.convert import (
    assignment_to_pb,
    from_duration,
    heartbeat_response,
    outcome_from_pb,
    running_from_pb,
)
from realsys.status import grpc_errors
from realsys.worker import (
    GrpcWorkerBackend,
    HandlerRegistry,
    JobContext,
    JobFailure,
    WorkerBackend,
    WorkerRuntime,
    job_type,
    registry,
)
from realsys.worker.handlers import JobCancelled, cpu_handler, fail_handler

pytestmark = pytest.mark.timeout(20)

CONFIG = CoreConfig(lease_duration=3.0, heartbeat_interval=0.1, worker_ttl=5.0, default_initial_backoff=0.01)
WORKER = "w1"
Context = grpc.aio.ServicerContext[object, object]


class SchedulerBackend:
    """Implements WorkerBackend by calling a Scheduler with time.time(), as Design B does in-process."""

    def __init__(self, config: CoreConfig = CONFIG) -> None:
        self.scheduler = Scheduler(config, JobIdFactory("t", "1"))
        self.reports: list[tuple[str, int, Outcome]] = []
        self.stale_reports = 0
        self.heartbeat_times: list[float] = []
        self.fetch_calls = 0
        self.fetch_failures = 0  # the next N fetches raise Unavailable
        self.report_failures = 0  # the next N reports raise Unavailable
        self.heartbeat_failures = 0  # the next N heartbeats raise Unavailable
        self.report_refusal: Exception | None = None  # raised by every report while set
        self.report_calls = 0
        self.down_until = 0.0  # every call raises Unavailable until this time.monotonic()
        self.tick = True  # run the scheduler's timers on each fetch poll
        self._work = asyncio.Event()

    def submit(self, job_type: str, payload: bytes = b"", **kwargs: object) -> str:
        spec = JobSpec.make(job_type, payload, **kwargs)  # type: ignore[arg-type]
        job = self.scheduler.submit(time.time(), spec).job
        self._work.set()
        return job.job_id

    def job(self, job_id: str) -> Job:
        return self.scheduler.jobs.get(job_id)

    async def heartbeat(
        self, worker_id: str, total_slots: int, free_slots: int, running: list[tuple[str, int]]
    ) -> HeartbeatReply:
        self.heartbeat_times.append(time.monotonic())
        self._outage("heartbeat")
        if self.heartbeat_failures:
            self.heartbeat_failures -= 1
            raise Unavailable("heartbeat: injected outage")
        renewal = self.scheduler.heartbeat(time.time(), worker_id, total_slots, free_slots, running)
        config = self.scheduler.config
        return HeartbeatReply(
            renewal.cancel, renewal.abandon, config.heartbeat_interval, config.lease_duration
        )

    async def fetch(self, worker_id: str, free_slots: int, wait: float) -> list[Assignment]:
        self.fetch_calls += 1
        self._outage("fetch")
        if self.fetch_failures:
            self.fetch_failures -= 1
            raise Unavailable("fetch: injected outage")
        deadline = time.monotonic() + wait
        while True:
            if self.tick:
                self.scheduler.handle_timer(time.time())
            taken = self.scheduler.fetch(time.time(), worker_id, free_slots)
            left = deadline - time.monotonic()
            if taken or left <= 0:
                return taken
            self._work.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(0.02, left)):
                    await self._work.wait()

    async def report(self, worker_id: str, job_id: str, attempt: int, outcome: Outcome) -> None:
        self.report_calls += 1
        self._outage("report")
        if self.report_failures:
            self.report_failures -= 1
            raise Unavailable("report: injected outage")
        if self.report_refusal is not None:
            raise self.report_refusal
        self.reports.append((job_id, attempt, outcome))
        try:
            self.scheduler.report(time.time(), worker_id, job_id, attempt, outcome)
        except StaleAttempt:
            self.stale_reports += 1

    def _outage(self, call: str) -> None:
        if time.monotonic() < self.down_until:
            raise Unavailable(f"{call}: the backend is down")


def _backend_is_a_worker_backend(backend: SchedulerBackend) -> WorkerBackend:
    return backend  # mypy checks the fake against the Protocol


async def until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def payload(**fields: object) -> bytes:
    return json.dumps(fields).encode()


@pytest.fixture
async def backend() -> SchedulerBackend:
    return SchedulerBackend()


def make_runtime(
    backend: SchedulerBackend, slots: int = 2, handlers: HandlerRegistry = registry
) -> WorkerRuntime:
    return WorkerRuntime(WORKER, slots, backend, handlers, heartbeat_interval=0.1, fetch_wait=0.5, seed=7)


@pytest.fixture
async def runtime(backend: SchedulerBackend) -> AsyncIterator[WorkerRuntime]:
    rt = make_runtime(backend)
    await rt.start()
    yield rt
    await rt.stop()


def done(backend: SchedulerBackend, *job_ids: str) -> Callable[[], bool]:
    return lambda: all(backend.job(j).done for j in job_ids)


# ---------------------------------------------------------------------------- built-in job types
async def test_builtin_job_types_complete_with_their_outcomes(
    backend: SchedulerBackend, runtime: WorkerRuntime
) -> None:
    once = RetryPolicy(max_attempts=1)
    echo = backend.submit("echo", b"hello")
    sleep = backend.submit("sleep", payload(seconds=0.05))
    sleep_empty = backend.submit("sleep")
    cpu = backend.submit("cpu", payload(seconds=0.05))
    fail = backend.submit("fail", payload(probability=1.0), retry=once)
    never_fail = backend.submit("fail", payload(probability=0.0, seconds=0.01))
    bad_json = backend.submit("sleep", b"{not json", retry=RetryPolicy(max_attempts=3))
    # issue 26: RecursionError in the parser was retried like a transient failure
    nested = backend.submit("sleep", b"[" * 100_000 + b"]" * 100_000, retry=RetryPolicy(max_attempts=3))
    bad_value = backend.submit("cpu", payload(seconds=-1), retry=RetryPolicy(max_attempts=3))
    unknown = backend.submit("nosuchtype", retry=RetryPolicy(max_attempts=3))
    await until(
        done(backend, echo, sleep, sleep_empty, cpu, fail, never_fail, bad_json, nested, bad_value, unknown)
    )

    assert backend.job(echo).state is JobState.SUCCEEDED
    assert backend.job(echo).output == b"hello"
    for job_id in (sleep, sleep_empty, cpu, never_fail):
        assert backend.job(job_id).state is JobState.SUCCEEDED, job_id
        assert backend.job(job_id).output == b""
    failed = backend.job(fail)
    assert failed.state is JobState.FAILED
    assert failed.error is not None and "injected failure" in failed.error.message
    assert failed.error.reason == "HANDLER_ERROR"
    for job_id in (bad_json, nested, bad_value, unknown):  # not retryable: one attempt despite 3 allowed
        job = backend.job(job_id)
        assert job.state is JobState.FAILED and job.attempt == 1, job_id
        assert job.error is not None and not job.error.retryable
    assert "not valid JSON" in backend.job(bad_json).error.message  # type: ignore[union-attr]
    assert "nests too deeply" in backend.job(nested).error.message  # type: ignore[union-attr]
    assert backend.job(unknown).error.reason == "UNKNOWN_JOB_TYPE"  # type: ignore[union-attr]


async def test_retryable_failure_runs_again(backend: SchedulerBackend, runtime: WorkerRuntime) -> None:
    job_id = backend.submit("fail", payload(probability=1.0), retry=RetryPolicy(max_attempts=3))
    await until(done(backend, job_id))
    job = backend.job(job_id)
    assert job.state is JobState.FAILED and job.attempt == 3


async def test_fail_is_reproducible_from_the_seed_and_leaves_global_random_alone() -> None:
    async def verdicts(seed: int) -> list[bool]:
        seq = np.random.SeedSequence(seed)
        out = []
        for _ in range(40):
            spec = JobSpec.make("fail", payload(probability=0.5))
            ctx = JobContext("t-1-1", 1, spec, time.time() + 9, np.random.default_rng(seq.spawn(1)[0]))
            try:
                await fail_handler(ctx)
                out.append(False)
            except JobFailure:
                out.append(True)
        return out

    np_state, py_state = np.random.get_state(), random.getstate()
    first = await verdicts(1)
    assert first == await verdicts(1)
    assert first != await verdicts(2)
    assert 5 < sum(first) < 35
    assert random.getstate() == py_state
    assert all(
        np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
        for a, b in zip(np.random.get_state(), np_state, strict=True)
    )


async def test_fail_with_a_seed_fails_the_attempts_attempt_uniform_picks() -> None:
    """The load generator's per-job seed: the real verdicts are the ones the simulator draws."""
    seed, probability = 1234567, 0.5
    for attempt in range(1, 30):
        spec = JobSpec.make("fail", payload(probability=probability, seed=seed))
        ctx = JobContext("t-1-1", attempt, spec, time.time() + 9, np.random.default_rng(0))
        try:
            await fail_handler(ctx)
            failed = False
        except JobFailure:
            failed = True
        assert failed == (attempt_uniform(seed, attempt) < probability), attempt
    bad = JobContext(
        "t-1-1", 1, JobSpec.make("fail", payload(seed=-1)), time.time() + 9, np.random.default_rng(0)
    )
    with pytest.raises(JobFailure, match="seed") as info:
        await fail_handler(bad)
    assert not info.value.retryable


def test_cpu_fraction_burns_that_share_and_sleeps_the_rest() -> None:
    spec = JobSpec.make("cpu", payload(seconds=0.4, cpu_fraction=0.25))
    ctx = JobContext("t-1-1", 1, spec, time.time() + 9, np.random.default_rng(0))
    wall, cpu = time.monotonic(), time.thread_time()
    cpu_handler(ctx)
    wall, cpu = time.monotonic() - wall, time.thread_time() - cpu
    assert 0.1 <= cpu < 0.2, cpu  # 0.25 x 0.4 s of this thread's CPU (a little more: the last check)
    assert wall >= 0.39, wall  # and 0.3 s asleep on top
    out_of_range = JobContext(
        "t-1-1",
        1,
        JobSpec.make("cpu", payload(seconds=0.1, cpu_fraction=2)),
        time.time() + 9,
        np.random.default_rng(0),
    )
    with pytest.raises(JobFailure, match="cpu_fraction"):
        cpu_handler(out_of_range)


def test_cpu_job_asleep_stops_at_once_when_cancelled() -> None:
    spec = JobSpec.make("cpu", payload(seconds=30, cpu_fraction=0.0))
    ctx = JobContext("t-1-1", 1, spec, time.time() + 60, np.random.default_rng(0))
    threading.Timer(0.1, ctx.cancelled.set).start()
    started = time.monotonic()
    with pytest.raises(JobCancelled):
        cpu_handler(ctx)
    assert time.monotonic() - started < 2.0


# ---------------------------------------------------------------------------- slots
async def test_slots_bound_concurrency(backend: SchedulerBackend) -> None:
    handlers = HandlerRegistry.with_builtins()
    running = 0
    peak = 0
    lock = threading.Lock()

    async def tracked(ctx: JobContext) -> bytes:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.05)
        finally:
            running -= 1
        return b""

    def tracked_blocking(ctx: JobContext) -> bytes:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return b""

    handlers.register("tracked", tracked)
    handlers.register("tracked.blocking", tracked_blocking, blocking=True)
    rt = make_runtime(backend, slots=3, handlers=handlers)
    await rt.start()
    try:
        ids = [backend.submit("tracked" if i % 2 else "tracked.blocking") for i in range(12)]
        await until(done(backend, *ids))
    finally:
        await rt.stop()
    assert all(backend.job(j).state is JobState.SUCCEEDED for j in ids)
    assert peak == 3  # all slots were used, and never more
    assert rt.max_busy_seen == 3


# ---------------------------------------------------------------------------- cancel and abandon
async def test_heartbeat_cancel_stops_sleep(backend: SchedulerBackend, runtime: WorkerRuntime) -> None:
    job_id = backend.submit("sleep", payload(seconds=30))
    await until(lambda: backend.job(job_id).state is JobState.RUNNING and bool(runtime.running))
    started = time.monotonic()
    assert backend.scheduler.cancel(time.time(), job_id).job.state is JobState.CANCELLING
    await until(done(backend, job_id))  # nobody pushes: the next heartbeat carries the cancel
    assert time.monotonic() - started < 1.0
    assert backend.job(job_id).state is JobState.CANCELLED
    assert backend.reports == [(job_id, 1, CancelledByWorker())]
    await until(lambda: runtime.free_slots == runtime.slots)


async def test_push_cancel_stops_cpu_thread(backend: SchedulerBackend, runtime: WorkerRuntime) -> None:
    job_id = backend.submit("cpu", payload(seconds=30))
    await until(lambda: bool(runtime.running))
    backend.scheduler.cancel(time.time(), job_id)
    runtime.cancel(job_id, 1)
    await until(done(backend, job_id), timeout=2.0)
    assert backend.job(job_id).state is JobState.CANCELLED
    assert backend.reports == [(job_id, 1, CancelledByWorker())]
    await until(lambda: runtime.free_slots == runtime.slots)  # the thread really stopped


async def test_cancel_of_an_unknown_attempt_is_ignored(runtime: WorkerRuntime) -> None:
    runtime.cancel("t-1-0000000099", 1)


async def test_abandon_stops_the_handler_without_a_report(backend: SchedulerBackend) -> None:
    handlers = HandlerRegistry.with_builtins()
    stopped = asyncio.Event()

    async def forever(ctx: JobContext) -> bytes:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped.set()
            raise
        return b""

    handlers.register("forever", forever)
    rt = make_runtime(backend, slots=1, handlers=handlers)
    backend.tick = False  # the test moves the scheduler's clock itself
    await rt.start()
    try:
        job_id = backend.submit("forever")
        await until(lambda: bool(rt.running))
        # the lease runs out on the server: the attempt is requeued and no longer held by this worker
        backend.scheduler.handle_timer(time.time() + CONFIG.lease_duration + 1)
        assert backend.job(job_id).state is JobState.PENDING
        await asyncio.wait_for(stopped.wait(), timeout=2.0)  # the next heartbeat says abandon
        await until(lambda: not rt.running)
        await asyncio.sleep(0.2)
        assert backend.reports == []
    finally:
        await rt.stop()


# ---------------------------------------------------------------------------- heartbeats and deadlines
async def test_cpu_job_keeps_heartbeats(backend: SchedulerBackend, runtime: WorkerRuntime) -> None:
    job_id = backend.submit("cpu", payload(seconds=1.0))
    await until(lambda: bool(runtime.running))
    started = time.monotonic()
    await until(done(backend, job_id), timeout=10.0)
    ended = time.monotonic()
    assert backend.job(job_id).state is JobState.SUCCEEDED
    during = [t for t in backend.heartbeat_times if started <= t <= ended]
    # 0.1 s interval over >= 1 s of burning: allow for scheduling jitter, not for a stalled loop
    assert len(during) >= 7, (len(during), ended - started)


async def test_run_deadline_reports_timeout(backend: SchedulerBackend) -> None:
    backend.tick = False  # so the report, not the scheduler's own timer, ends the attempt
    rt = make_runtime(backend, slots=2)
    await rt.start()
    try:
        once = RetryPolicy(max_attempts=1)
        slow = backend.submit("sleep", payload(seconds=30), execution_timeout=0.3, retry=once)
        burn = backend.submit("cpu", payload(seconds=30), execution_timeout=0.3, retry=once)
        started = time.monotonic()
        await until(done(backend, slow, burn))
        assert time.monotonic() - started < 1.5
        for job_id in (slow, burn):
            job = backend.job(job_id)
            assert job.state is JobState.FAILED
            assert job.error is not None and job.error.reason == "TIMEOUT" and job.error.retryable
        reported = {job_id: outcome for job_id, _, outcome in backend.reports}
        assert all(isinstance(o, Failed) and o.error.reason == "TIMEOUT" for o in reported.values())
        await until(lambda: rt.free_slots == 2)  # the cpu thread saw ctx.cancelled and returned
    finally:
        await rt.stop()


async def test_heartbeat_carries_running_attempts_and_keeps_leases(
    backend: SchedulerBackend, runtime: WorkerRuntime
) -> None:
    job_id = backend.submit("sleep", payload(seconds=0.5))
    await until(lambda: bool(runtime.running))
    first = backend.job(job_id).lease_deadline
    await asyncio.sleep(0.3)
    assert backend.job(job_id).lease_deadline > first  # renewed by heartbeats
    assert backend.scheduler.workers.workers[WORKER].total_slots == 2
    await until(done(backend, job_id))


# ---------------------------------------------------------------------------- failures of the backend
async def test_fetch_and_report_outages_are_retried(backend: SchedulerBackend) -> None:
    backend.fetch_failures = 3
    backend.report_failures = 2
    rt = make_runtime(backend)
    await rt.start()
    try:
        job_id = backend.submit("echo", b"x")
        await until(done(backend, job_id))
        assert backend.job(job_id).state is JobState.SUCCEEDED
        assert rt.reports_dropped == 0
    finally:
        await rt.stop()


async def test_a_report_is_kept_until_the_backend_is_back(backend: SchedulerBackend) -> None:
    """Issue 24: a finished attempt's report outlives a short outage (it was dropped after four tries,
    ~0.35 s, and the job ran again once its lease expired)."""
    backend.report_failures = 5  # 0.05 + 0.1 + 0.2 + 0.4 + 0.8 s of retries; heartbeats still renew
    rt = make_runtime(backend)
    await rt.start()
    try:
        job_id = backend.submit("echo", b"x")
        await until(done(backend, job_id))
        job = backend.job(job_id)
        assert job.state is JobState.SUCCEEDED and job.attempt == 1
        assert backend.report_calls == 6 and rt.reports_dropped == 0
        assert not rt.running
    finally:
        await rt.stop()


async def test_a_report_is_dropped_once_its_lease_is_gone() -> None:
    """Neither reports nor heartbeats get through: the worker gives the report up when its estimate of
    the lease runs out (the assignment's deadline; no heartbeat renewed it), not before."""
    config = dataclasses.replace(CONFIG, lease_duration=0.6)
    backend = SchedulerBackend(config)
    backend.report_failures = backend.heartbeat_failures = 1000
    rt = make_runtime(backend, slots=1)
    await rt.start()
    try:
        job_id = backend.submit("echo", b"x", retry=RetryPolicy(max_attempts=1))
        await until(lambda: backend.job(job_id).state is JobState.RUNNING)
        lease_deadline = backend.job(job_id).lease_deadline
        await until(lambda: rt.reports_dropped == 1)
        assert time.time() >= lease_deadline - 0.05  # retried for the whole lease
        assert backend.report_calls >= 4 and not rt.running
    finally:
        await rt.stop()


async def test_a_refused_report_is_not_retried(backend: SchedulerBackend) -> None:
    backend.report_refusal = NotFound("no such job")
    rt = make_runtime(backend, slots=1)
    await rt.start()
    try:
        backend.submit("echo", b"x")
        await until(lambda: backend.report_calls == 1 and not rt.running)
        await asyncio.sleep(0.3)
        assert backend.report_calls == 1 and rt.reports_dropped == 0
    finally:
        await rt.stop()


async def test_fetch_resumes_at_once_when_the_backend_is_back(backend: SchedulerBackend) -> None:
    """Issue 24: after an outage the first successful call (here a heartbeat, every 0.1 s) ends the
    fetch backoff, which by then had grown to 1.6 s."""
    rt = make_runtime(backend)
    backend.down_until = time.monotonic() + 2.0  # fetch backoff: 0.05 ... 0.8, then 1.6 s from ~1.55 s
    await rt.start()
    try:
        job_id = backend.submit("echo", b"x")
        await until(done(backend, job_id), timeout=5.0)
        assert time.monotonic() - backend.down_until < 0.6
        assert backend.job(job_id).state is JobState.SUCCEEDED
    finally:
        await rt.stop()


# ---------------------------------------------------------------------------- drain
async def test_drain_waits_for_running_jobs(backend: SchedulerBackend) -> None:
    rt = make_runtime(backend, slots=2)
    await rt.start()
    ids = [backend.submit("sleep", payload(seconds=0.3)) for _ in range(2)]
    await until(lambda: len(rt.running) == 2)
    late = backend.submit("echo", b"late")
    started = time.monotonic()
    await rt.drain(timeout=5.0)
    assert time.monotonic() - started >= 0.2
    assert all(backend.job(j).state is JobState.SUCCEEDED for j in ids)
    await asyncio.sleep(0.1)
    assert backend.job(late).state is JobState.PENDING  # no fetch after drain began


async def test_drain_timeout_leaves_jobs_to_lease_expiry(backend: SchedulerBackend) -> None:
    rt = make_runtime(backend, slots=1)
    await rt.start()
    job_id = backend.submit("sleep", payload(seconds=30))
    await until(lambda: bool(rt.running))
    started = time.monotonic()
    await rt.drain(timeout=0.2)
    assert time.monotonic() - started < 1.0
    assert backend.job(job_id).state is JobState.RUNNING
    assert backend.reports == []


# ---------------------------------------------------------------------------- custom job types
async def test_custom_job_types(backend: SchedulerBackend) -> None:
    handlers = HandlerRegistry.with_builtins()

    @handlers.job_type("upper")
    async def upper(ctx: JobContext) -> str:
        return ctx.payload.decode().upper()

    @handlers.job_type("sum", blocking=True)
    def add(ctx: JobContext) -> bytes:
        numbers = ctx.json()["numbers"]
        if not isinstance(numbers, list):
            raise JobFailure("numbers must be a list", retryable=False)
        return str(sum(numbers)).encode()

    rt = make_runtime(backend, handlers=handlers)
    await rt.start()
    try:
        a = backend.submit("upper", b"abc")
        b = backend.submit("sum", payload(numbers=[1, 2, 3]))
        c = backend.submit("sum", payload(numbers=7))
        await until(done(backend, a, b, c))
    finally:
        await rt.stop()
    assert backend.job(a).output == b"ABC"
    assert backend.job(b).output == b"6"
    assert backend.job(c).state is JobState.FAILED
    assert backend.job(c).error.message == "numbers must be a list"  # type: ignore[union-attr]


def test_job_type_decorator_registers_on_the_default_registry() -> None:
    @job_type("test.worker.noop")
    async def noop(ctx: JobContext) -> None:
        return None

    assert "test.worker.noop" in registry
    assert {"sleep", "cpu", "echo", "fail"} <= set(registry)


def test_registry_rejects_bad_registrations() -> None:
    handlers = HandlerRegistry()

    def plain(ctx: JobContext) -> bytes:
        return b""

    async def coroutine(ctx: JobContext) -> bytes:
        return b""

    with pytest.raises(TypeError):
        handlers.register("plain", plain)  # a plain function must say blocking=True
    with pytest.raises(TypeError):
        handlers.register("coro", coroutine, blocking=True)
    with pytest.raises(ValueError):
        handlers.register("9 bad name", coroutine)
    assert len(handlers) == 0


def test_job_context_payload_helpers() -> None:
    def ctx(data: bytes) -> JobContext:
        return JobContext("t-1-1", 1, JobSpec.make("sleep", data), time.time() + 1, np.random.default_rng(0))

    assert ctx(b"").json() == {}
    assert ctx(b'{"seconds": 2}').json() == {"seconds": 2}
    # the deep payload's decode ends in a RecursionError: earlier tests' cyclic garbage is collected
    # here, not by a collection at the bottom of that stack, where a finalizer's warning cannot even
    # be formatted (pytest then fails this test with "Failed to process unraisable exception")
    gc.collect()
    gc.disable()
    try:
        for bad in (b"[1]", b"{", b"\xff", b'{"a":' * 50_000):
            with pytest.raises(JobFailure) as info:
                ctx(bad).json()
            assert not info.value.retryable
    finally:
        gc.enable()
    c = ctx(b"")
    c.cancelled.set()
    with pytest.raises(Exception, match="asked to stop"):
        c.raise_if_cancelled()
    assert 0 < c.remaining() <= 1


# ---------------------------------------------------------------------------- the gRPC backend
class FakeWorkers(worker_pb2_grpc.WorkersServicer):
    """The Workers service over a SchedulerBackend, as Design A's coordinator serves it (in short)."""

    def __init__(self, inner: SchedulerBackend) -> None:
        self.inner = inner

    @grpc_errors
    async def WorkerHeartbeat(
        self, request: worker_pb2.HeartbeatRequest, context: Context
    ) -> worker_pb2.HeartbeatResponse:
        reply = await self.inner.heartbeat(
            request.worker_id, request.total_slots, request.free_slots, running_from_pb(list(request.running))
        )
        return heartbeat_response(
            list(reply.cancel), list(reply.abandon), reply.interval, reply.lease_duration
        )

    @grpc_errors
    async def FetchWork(
        self, request: worker_pb2.FetchWorkRequest, context: Context
    ) -> worker_pb2.FetchWorkResponse:
        wait = from_duration(request.wait_timeout, "wait_timeout")
        taken = await self.inner.fetch(request.worker_id, request.free_slots, wait)
        return worker_pb2.FetchWorkResponse(assignments=[assignment_to_pb(a) for a in taken])

    @grpc_errors
    async def ReportResult(
        self, request: worker_pb2.ReportResultRequest, context: Context
    ) -> worker_pb2.ReportResultResponse:
        transition = self.inner.scheduler.report(
            time.time(), request.worker_id, request.job_id, request.attempt, outcome_from_pb(request)
        )
        return worker_pb2.ReportResultResponse(state=int(transition.job.state))  # type: ignore[arg-type]


@pytest.fixture
async def workers_address(backend: SchedulerBackend) -> AsyncIterator[str]:
    server = grpc.aio.server()
    add_servicer: Any = worker_pb2_grpc.add_WorkersServicer_to_server  # generated code is untyped
    add_servicer(FakeWorkers(backend), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}"
    await server.stop(None)


async def test_grpc_backend_runs_jobs_end_to_end(backend: SchedulerBackend, workers_address: str) -> None:
    grpc_backend = GrpcWorkerBackend(workers_address, timeout=2.0)
    rt = WorkerRuntime(WORKER, 2, grpc_backend, heartbeat_interval=0.1, fetch_wait=0.3)
    await rt.start()
    try:
        echo = backend.submit("echo", b"over grpc")
        sleeper = backend.submit("sleep", payload(seconds=30))
        await until(lambda: backend.job(echo).done and backend.job(sleeper).state is JobState.RUNNING)
        assert backend.job(echo).output == b"over grpc"
        backend.scheduler.cancel(time.time(), sleeper)  # reaches the worker in a heartbeat response
        await until(done(backend, sleeper))
        assert backend.job(sleeper).state is JobState.CANCELLED
        assert len(backend.heartbeat_times) >= 2
    finally:
        await rt.stop()
        await grpc_backend.close()


async def test_grpc_backend_stale_report_is_logged_not_raised(
    backend: SchedulerBackend, workers_address: str, caplog: pytest.LogCaptureFixture
) -> None:
    grpc_backend = GrpcWorkerBackend(workers_address, timeout=2.0)
    try:
        job_id = backend.submit("echo")
        (assignment,) = await grpc_backend.fetch(WORKER, 1, 0.0)
        assert assignment.job_id == job_id and assignment.worker_id == WORKER
        await grpc_backend.report(WORKER, job_id, 1, Succeeded(b"first"))
        with caplog.at_level(logging.INFO, logger="dtq.worker"):
            await grpc_backend.report(WORKER, job_id, 1, Succeeded(b"again"))  # ABORTED: not raised
        assert "stale" in caplog.text
        with pytest.raises(NotFound):
            await grpc_backend.report(WORKER, "t-1-00000000ff", 1, Succeeded())
    finally:
        await grpc_backend.close()


async def test_grpc_backend_unreachable_raises_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        address = f"127.0.0.1:{s.getsockname()[1]}"
    grpc_backend = GrpcWorkerBackend(address, timeout=1.0)
    try:
        with pytest.raises(Unavailable):
            await grpc_backend.fetch(WORKER, 1, 0.0)
    finally:
        await grpc_backend.close()


# ---------------------------------------------------------------------------- report-and-fetch
class ReportingBackend(SchedulerBackend):
    """SchedulerBackend whose fetch can carry reports (model/runtime.py: carry_reports)."""

    def __init__(self) -> None:
        super().__init__()
        self.carried = 0  # reports that went on a fetch
        self.carrying_fetch_failures = 0  # the next N fetches that carry reports raise Unavailable

    async def fetch_and_report(
        self, worker_id: str, free_slots: int, wait: float, reports: tuple[tuple[Key, Outcome], ...]
    ) -> tuple[list[Assignment], list[DtqError | None]]:
        if self.carrying_fetch_failures:
            self.carrying_fetch_failures -= 1
            raise Unavailable("fetch: injected outage, reports not delivered")
        verdicts: list[DtqError | None] = []
        for (job_id, attempt), outcome in reports:
            self.carried += 1
            try:
                self.scheduler.report(time.time(), worker_id, job_id, attempt, outcome)
            except StaleAttempt:
                self.stale_reports += 1
                verdicts.append(None)
            except DtqError as exc:
                verdicts.append(exc)
            else:
                verdicts.append(None)
        return await self.fetch(worker_id, free_slots, wait), verdicts


async def test_reports_ride_the_next_fetch_and_a_failed_one_resends_them_alone() -> None:
    backend = ReportingBackend()
    rt = WorkerRuntime(
        WORKER, 4, backend, registry, heartbeat_interval=0.1, fetch_wait=0.5, seed=7, carry_reports=True
    )
    await rt.start()
    try:
        first = [backend.submit("echo", str(i).encode()) for i in range(12)]
        await until(done(backend, *first))
        assert all(backend.job(j).state is JobState.SUCCEEDED for j in first)
        # echo ends at once: its report rides the fetch that asks for the next job
        assert backend.carried >= 8 and backend.report_calls <= 4, (backend.carried, backend.report_calls)
        backend.carrying_fetch_failures = 1
        alone = backend.report_calls
        second = [backend.submit("echo") for _ in range(3)]
        await until(done(backend, *second))
        assert all(backend.job(j).state is JobState.SUCCEEDED for j in second)
        assert backend.report_calls > alone  # the reports of the failed call went on their own
        await until(lambda: rt.running == [])  # the last report's reply may still be on its way
        assert backend.stale_reports == 0
    finally:
        await rt.stop()


def test_carry_reports_needs_a_backend_that_can_carry_them(backend: SchedulerBackend) -> None:
    with pytest.raises(ValueError, match="fetch_and_report"):
        WorkerRuntime(WORKER, 1, backend, carry_reports=True)


async def test_grpc_backend_carrying_reports_to_an_older_server_still_completes(
    backend: SchedulerBackend, workers_address: str
) -> None:
    """FakeWorkers ignores FetchWork's reports (as a server built before the field): no verdicts come
    back, so the runtime sends each report again on its own and nothing is lost."""
    grpc_backend = GrpcWorkerBackend(workers_address, timeout=2.0)
    rt = WorkerRuntime(WORKER, 2, grpc_backend, heartbeat_interval=0.1, fetch_wait=0.3, carry_reports=True)
    await rt.start()
    try:
        jobs = [backend.submit("echo", b"old server") for _ in range(6)]
        await until(done(backend, *jobs))
        assert all(backend.job(j).output == b"old server" for j in jobs)
        # the server marks a job done before its reply reaches the runtime, which then lets the job go
        await until(lambda: rt.running == [])
    finally:
        await rt.stop()
        await grpc_backend.close()
