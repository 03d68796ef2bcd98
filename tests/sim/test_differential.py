"""Differential test: one event trace through the real adapters and the simulator's, for both designs,
with identical decision logs.

Both sides run the same sans-I/O drivers (model/node.py; model/job_service.py, queue_service.py,
coordinator.py, result_service.py; model/timer.py); what is compared is what the ADAPTERS do with
them: which driver calls they make, when, with which arguments, what came back (the Steps: records to
save and delete, waiters to wake, cancels, counters, re-arms), which steps they performed, and when
they armed their timers, and the storage transactions they committed (rows written or deleted; the
simulator charges a commit's time for each).

- Real side: Design B's LocalCore (MemoryJobRecords, an injected clock) with its CoreTimer wired as
  realsys/mono/node.py wires them; Design A's four stateful roles (JobRole, QueueRole, CoordinatorRole,
  ResultRole, memory stores, the injected clock) called through their gRPC servicer methods, each
  role's stubs to the others replaced by in-process calls of those servicers (the gateway holds no
  decisions and the trace plays the worker). CoreTimer's loop and wall clock are a fake loop that
  runs its handles in due order on the injected clock; background tasks (the outbox flusher, Acks,
  NotifyCancel, ReleaseWorker) run on a real asyncio loop, in zero time.
- Sim side: sim/mono.py's MonoNode and sim/micro.py's MicroCluster (SimParams.ideal: zero costs) with
  their SimTimers, in the simulator's environment; no SimWorker (the trace plays the worker).

The trace covers submits, fetches, heartbeats, reports (success, retryable failure, stale, and one
from a worker that does not hold the lease: refused, nothing stored), cancels of queued and running
jobs, status reads, lease expiry and a worker's loss, retention (jobs, and in Design A stored results,
expire and their rows are deleted), fetches cut by the byte budget (Design A: LeaseJobs sends the rest
back to the queue), a result kept out of RAM (Design B: the Step's `outputs`; Design A: the result
service's size), and a long-poll at a draining owner (UNAVAILABLE). Design A's log is kept per
service: the order of calls within a service is a decision, the interleaving of independent services
at one instant is scheduling (and where two services race by design, an Enqueue and an Ack at the
queue, the calls are compared as a set and the queue's end state must agree).
What it does not prove: anything about the gRPC layer itself, long-polls that park (this trace never
waits; test_differential_nodes.py does, with stealing between two nodes), the worker runtime's loops,
or timing when costs are non-zero (the simulator then moves calls in time by design).
"""

from __future__ import annotations

import asyncio
import dataclasses
import heapq
import inspect
import sys
import types
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import grpc
import pytest

import realsys.timer
from dtq.v1 import client_pb2, worker_pb2
from model.config import CoreConfig
from model.errors import DtqError
from model.job import Assignment, Failed, JobError, JobSpec, Outcome, Succeeded
from model.scheduler import Scheduler
from model.states import JobState
from model.workload import JobDraw, OpenLoop, WorkloadSpec
from realsys.config import NodeConfig
from realsys.convert import assignment_from_pb, outcome_to_pb, running_to_pb, spec_to_pb, to_duration
from realsys.metrics import NodeMetrics
from realsys.micro.coordinator import CoordinatorRole
from realsys.micro.job import JobRole
from realsys.micro.queue import QueueRole
from realsys.micro.result import ResultRole
from realsys.mono.core import LocalCore
from realsys.storage import MemoryJobRecords
from realsys.timer import CoreTimer
from sim.api import SimConfig, build
from sim.engine import Cluster, SimTimer, status_of
from sim.micro import MicroCluster
from sim.mono import MonoCluster, MonoNode
from sim.params import SimParams

_SMALL = CoreConfig(
    max_payload_bytes=3000, max_result_bytes=3000, max_labels=1, max_label_chars=8, max_error_chars=64
)
CONFIG = CoreConfig(
    lease_duration=3.0,
    heartbeat_interval=1.0,
    worker_ttl=2.5,
    default_initial_backoff=0.25,
    result_ttl=2.0,  # retention inside the trace
    max_payload_bytes=3000,
    max_result_bytes=3000,
    max_labels=1,
    max_label_chars=8,
    max_error_chars=64,
    # one 3000-byte payload and a small job fit a fetch (a LeaseJobs reply), two large ones do not
    max_reply_bytes=3000 + _SMALL.max_status_bytes + 1000,
    max_inline_result_bytes=100,  # Design B keeps a larger output out of RAM (StoreOutput)
)
SPEC = JobSpec.make("sleep", b'{"seconds": 0}')
LARGE = JobSpec.make("sleep", b"x" * 3000)
NODE_LOGGED = ("submit", "cancel", "heartbeat", "fetch", "steal", "report", "handle_timer", "release_worker")
NODE_DRIVER_LOGGED = ("add_done_waiter", "done_waiter_gone", "wait_ended", "start_draining")
DRIVER_LOGGED = {
    "jobs": (
        "create",
        "cancel",
        "lease",
        "renew",
        "fence",
        "complete",
        "release_worker",
        "on_timer",
        "add_waiter",
        "waiter_gone",
        "wait_ended",
        "start_draining",
    ),
    "jobs.outbox": ("take_batch", "put_back", "sweep"),
    "queue": ("new_rows", "push", "max_items", "hold", "reserve", "ack", "on_timer"),
    "coordinator": ("heartbeat", "pushed_cancels", "fetch", "leased", "report", "notify_cancel", "on_timer"),
    "result": ("stored", "on_timer"),
}
END = 80.0  # past the result service's retention (result_ttl + lease + 60 s)

Log = list[tuple[Any, ...]]


def _wrap(owner: Any, name: str, label: str, clock: Callable[[], float], log: Log) -> None:
    """Records every call of owner.name (an instance attribute shadows the method)."""
    original = getattr(owner, name)
    signature = inspect.signature(original)

    def logged(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()  # a default passed or left out is the same call
        for key, value in bound.arguments.items():
            if hasattr(value, "__next__"):  # a generator: read it once, for the log and the call
                bound.arguments[key] = list(value)
        call = repr({k: _plain(v) for k, v in bound.arguments.items()})
        try:
            result = original(*bound.args, **bound.kwargs)
        except DtqError as exc:
            log.append((clock(), label, call, "raised", type(exc).__name__, str(exc)))
            raise
        log.append((clock(), label, call, "returned", repr(_plain(result))))
        return result

    setattr(owner, name, logged)


def _plain(value: Any) -> Any:
    """Arguments as data: an iterator (a generator of entries, a protobuf repeated field) as a list,
    and a waiter token (a future or a simpy event) as the word "token"."""
    if isinstance(value, str | bytes | int | float | bool | type(None) | tuple | dict):
        return value
    if isinstance(value, asyncio.Future) or type(value).__module__.startswith("simpy"):
        return "token"
    if hasattr(value, "__iter__") and not hasattr(value, "__dataclass_fields__"):
        return list(value)
    return value


def _log_performed(adapter: Any, clock: Callable[[], float], log: Log, label: str = "perform") -> None:
    original = adapter._perform

    def performed(step: Any) -> Any:
        log.append((clock(), label, repr(step)))
        return original(step)

    adapter._perform = performed


def _log_arms(timer: CoreTimer | SimTimer, label: str, clock: Callable[[], float], log: Log) -> None:
    original = timer.arm

    def arm() -> None:
        log.append((clock(), f"arm {label}", timer.rule.armed_for, timer.rule.delay(clock())))
        original()

    timer.arm = arm  # type: ignore[method-assign]


def _log_writes(store: Any, label: str, clock: Callable[[], float], log: Log) -> None:
    """Records a real store's writes as the rows each transaction commits (a write made inside
    another one, e.g. save_many calling save, is part of it)."""
    depth = [0]
    for name in ("save", "save_many", "put", "delete", "save_output"):
        original = getattr(store, name, None)
        if original is None:
            continue

        def write(*args: Any, _original: Any = original, _name: str = name) -> Any:
            if _name in ("save_many", "delete") or (_name == "put" and len(args) == 1):
                args = (list(args[0]), *args[1:])
                rows = len(args[0])
            else:  # save(job), Results.put(job_id, attempt, outcome), save_output(job_id, output)
                rows = 1
            if rows and not depth[0]:
                log.append((clock(), f"{label}.commit", rows))
            depth[0] += 1
            try:
                return _original(*args)
            finally:
                depth[0] -= 1

        setattr(store, name, write)


def _log_commits(proc: Any, label: str, clock: Callable[[], float], log: Log) -> None:
    """Records a simulated process's storage transactions (sim.cpu.Proc.commit) as their rows."""
    original = proc.commit

    def commit(rows: int) -> float:
        if rows > 0:
            log.append((clock(), f"{label}.commit", rows))
        return float(original(rows))

    proc.commit = commit


# ------------------------------------------------------------------------------- real-side plumbing
class _FakeLoop:
    """The two asyncio loop calls CoreTimer makes, on the injected clock."""

    def __init__(self, clock: list[float]) -> None:
        self.clock = clock
        self.heap: list[tuple[float, int, Callable[[], None], _Handle]] = []
        self.seq = 0

    def call_later(self, delay: float, callback: Callable[[], None]) -> _Handle:
        handle = _Handle()
        self.seq += 1
        heapq.heappush(self.heap, (self.clock[0] + delay, self.seq, callback, handle))
        return handle

    def next_due(self, t: float) -> float | None:
        while self.heap and self.heap[0][3].cancelled:
            heapq.heappop(self.heap)
        return self.heap[0][0] if self.heap and self.heap[0][0] <= t else None

    def fire_next(self) -> None:
        due, _, callback, _ = heapq.heappop(self.heap)
        self.clock[0] = due
        callback()


@dataclass
class _Handle:
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


def _fake_timers(monkeypatch: pytest.MonkeyPatch, clock: list[float]) -> _FakeLoop:
    loop = _FakeLoop(clock)
    monkeypatch.setattr(realsys.timer, "time", types.SimpleNamespace(time=lambda: clock[0]))
    monkeypatch.setattr(realsys.timer, "asyncio", types.SimpleNamespace(get_running_loop=lambda: loop))
    return loop


# ================================================================================ Design B
class RealNode:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.clock = [0.0]
        self.log: Log = []
        self.loop = _fake_timers(monkeypatch, self.clock)
        monkeypatch.setattr(MemoryJobRecords, "next_incarnation", lambda self: "1")  # as sim/mono.py
        self.core = LocalCore("n1", CONFIG, MemoryJobRecords(), clock=lambda: self.clock[0])
        now = lambda: self.clock[0]  # noqa: E731
        for name in NODE_LOGGED:
            _wrap(self.core.scheduler, name, f"Scheduler.{name}", now, self.log)
        _wrap(self.core.scheduler.workers, "heartbeat", "WorkerRegistry.heartbeat", now, self.log)
        _wrap(self.core.scheduler.workers, "touch", "WorkerRegistry.touch", now, self.log)
        for name in NODE_DRIVER_LOGGED:
            _wrap(self.core.driver, name, f"NodeDriver.{name}", now, self.log)
        _log_performed(self.core, now, self.log)
        _log_writes(self.core.records, "node", now, self.log)
        # as realsys/mono/node.py
        self.timer = CoreTimer(self.core.driver.timer, self.core.on_timer)
        _log_arms(self.timer, "node", now, self.log)
        self.core.rearm = self.timer.arm
        self.timer.start()

    def at(self, t: float) -> None:
        while self.loop.next_due(t) is not None:
            self.loop.fire_next()
        self.clock[0] = t

    def submit(self, spec: JobSpec = SPEC) -> str:
        return self.core.submit(spec).job.job_id

    def status(self, job_id: str) -> str:
        return self.core.get(job_id).state.name

    def wait(self, job_id: str, timeout: float) -> str:
        """TaskQueueService.WaitJob at the owner: LocalCore.wait_done (the trace waits only while
        draining: no wait then)."""
        return asyncio.run(self.core.wait_done(job_id, timeout)).state.name

    def drain(self) -> None:
        self.core.start_draining()

    def cancel(self, job_id: str) -> str:
        return self.core.cancel(job_id).state.name

    def fetch(self, worker: str, free: int) -> list[Assignment]:
        return self.core.fetch_now(worker, free)

    def heartbeat(self, worker: str, total: int, free: int, running: list[tuple[str, int]]) -> Any:
        renewal = self.core.heartbeat(worker, total, free, running)
        return list(renewal.cancel), list(renewal.abandon)  # what the worker hears, as the sim's reply

    def report(self, worker: str, job_id: str, attempt: int, outcome: Outcome) -> str:
        return self.core.report(worker, job_id, attempt, outcome).state.name


@dataclass
class _TraceWorker:
    """What the simulated drivers read of a SimWorker."""

    worker_id: str
    alive: bool = True


def _draw(cluster: Cluster, spec: JobSpec) -> JobDraw:
    """A zero-length job submitted with `spec` itself (the real driver's spec, payload too)."""
    cluster.spec_of = lambda job: spec  # type: ignore[method-assign]
    return JobDraw(spec.job_type, 0.0)


class _SimSide:
    env: Any
    log: Log

    def at(self, t: float) -> None:
        if t > self.env.now:
            self.env.run(until=t)

    def _do(self, gen: Generator[Any, Any, Any]) -> Any:
        started = self.env.now
        process = self.env.process(gen)
        self.env.run(until=process)
        assert self.env.now == started  # zero costs: no time passed
        return process.value


class SimNode(_SimSide):
    def __init__(self) -> None:
        self.log = []
        params = SimParams.ideal(nodes=1, slots=1, core=CONFIG)
        # the simulator's own environment and cluster, as sim.run builds them (not started)
        self.env, cluster, _ = build(SimConfig("mono", WorkloadSpec(OpenLoop(1.0)), params))
        assert isinstance(cluster, MonoCluster)
        self.cluster = cluster
        self.node: MonoNode = cluster.nodes[0]
        now = lambda: float(self.env.now)  # noqa: E731
        sched: Scheduler = self.node.sched
        for name in NODE_LOGGED:
            _wrap(sched, name, f"Scheduler.{name}", now, self.log)
        _wrap(sched.workers, "heartbeat", "WorkerRegistry.heartbeat", now, self.log)
        _wrap(sched.workers, "touch", "WorkerRegistry.touch", now, self.log)
        for name in NODE_DRIVER_LOGGED:
            _wrap(self.node.driver, name, f"NodeDriver.{name}", now, self.log)
        _log_performed(self.node, now, self.log)
        _log_commits(self.node.proc, "node", now, self.log)
        _log_arms(self.node.timer, "node", now, self.log)
        self.node.timer.start()  # not node.start(): no SimWorker, the trace is the worker

    def _reply(self, reply: tuple[str, Any]) -> str:
        status, value = reply
        if status != "OK":
            raise RuntimeError(status)
        if isinstance(value, tuple):  # WaitJob's (state, attempt)
            value = value[0]
        return value.name if hasattr(value, "name") else str(value)

    def submit(self, spec: JobSpec = SPEC) -> str:
        status, job_id = self._do(self.node.submit(_draw(self.cluster, spec)))
        assert status == "OK"
        return str(job_id)

    def wait(self, job_id: str, timeout: float) -> str:
        return self._reply(self._do(self.node.wait(job_id, timeout)))

    def drain(self) -> None:
        self.node.start_draining()

    def status(self, job_id: str) -> str:
        return self._reply(self._do(self.node.status(job_id)))

    def cancel(self, job_id: str) -> str:
        return self._reply(self._do(self.node.cancel(job_id)))

    def fetch(self, worker: str, free: int) -> list[Assignment]:
        return list(self._do(self.node.fetch(_TraceWorker(worker), free, 0.0)))  # type: ignore[arg-type]

    def heartbeat(self, worker: str, total: int, free: int, running: list[tuple[str, int]]) -> Any:
        return self._do(self.node.heartbeat(_TraceWorker(worker), total, free, running))  # type: ignore[arg-type]

    def report(self, worker: str, job_id: str, attempt: int, outcome: Outcome) -> str:
        status = self._do(self.node.report_here("report", worker, job_id, attempt, outcome))
        if status != "OK":
            raise RuntimeError(status)
        return self.node.sched.jobs.get(job_id).state.name


# ================================================================================ Design A
class _Aborted(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(), details)


class _Context:
    """Just enough of a ServicerContext: no deadline; abort raises as a failed call would."""

    def time_remaining(self) -> float | None:
        return None

    def set_trailing_metadata(self, metadata: Any) -> None:
        pass  # retry-after: the simulator's replies carry a status only

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise _Aborted(code, details)


class _Stub:
    """A role's stub to another role: calls its servicer method in-process."""

    def __init__(self, servicer: Any) -> None:
        self.servicer = servicer

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.servicer, name)

        async def call(request: Any, timeout: float | None = None, **_: Any) -> Any:
            return await method(request, _Context())

        return call


def _micro_config(role: str, root: Path) -> NodeConfig:
    return NodeConfig(
        design="micro",
        role=role,  # type: ignore[arg-type]
        name=role,
        listen="127.0.0.1:0",
        data_dir=root / role,
        store="memory",
        slots=0,
        core=CONFIG,
        services={},
        metrics_port=-1,
        rpc_timeout=5.0,  # SimParams.rpc_timeout
    )


class RealMicro:
    """The real Design A roles, in-process, their timers on the fake loop."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
        self.clock = [0.0]
        self.log: Log = []
        self.loop = _fake_timers(monkeypatch, self.clock)
        monkeypatch.setattr(MemoryJobRecords, "next_incarnation", lambda self: "1")  # as sim/micro.py
        now = lambda: self.clock[0]  # noqa: E731
        metrics = {r: NodeMetrics(r, r, "micro") for r in ("job", "queue", "coordinator", "result")}
        self.job = JobRole(_micro_config("job", root), metrics["job"], sweep_interval=1e9, clock=now)
        self.queue = QueueRole(_micro_config("queue", root), metrics["queue"], clock=now)
        self.coord = CoordinatorRole(_micro_config("coordinator", root), metrics["coordinator"], clock=now)
        self.result = ResultRole(_micro_config("result", root), metrics["result"], clock=now)
        self.job._queue, self.job._coordinator, self.job._result = (
            _Stub(self.queue),
            _Stub(self.coord),
            _Stub(self.result),
        )
        self.coord._queue, self.coord._job = _Stub(self.queue), _Stub(self.job)
        _instrument_micro(
            self.job.jobs, self.queue.service, self.coord.coordinator, self.result.service, now, self.log
        )
        _log_performed(self.job, now, self.log, "jobs.perform")
        _log_writes(self.job.records, "jobs", now, self.log)
        _log_writes(self.queue.store, "queue", now, self.log)
        _log_writes(self.result.results, "result", now, self.log)
        for label, role in (
            ("job", self.job),
            ("queue", self.queue),
            ("coordinator", self.coord),
            ("result", self.result),
        ):
            _log_arms(role._timer, label, now, self.log)
        self.aloop = asyncio.new_event_loop()
        for role in (self.result, self.queue, self.job, self.coord):  # as realsys/cluster.py starts them
            role._timer.start()
        self.aloop.run_until_complete(self._spawn_flusher())

    async def _spawn_flusher(self) -> None:
        self.job.spawn(self.job._flush_outbox(), "enqueue")  # JobRole.start's background task

    def close(self) -> None:
        async def stop() -> None:
            for role in (self.job, self.queue, self.coord, self.result):
                for task in list(role._tasks):
                    task.cancel()
                await asyncio.gather(*role._tasks, return_exceptions=True)

        self.aloop.run_until_complete(stop())
        self.aloop.close()

    def _settle(self) -> None:
        """Runs the background tasks the last call started until none is runnable (zero time)."""

        async def drain() -> None:
            for _ in range(50):
                await asyncio.sleep(0)

        self.aloop.run_until_complete(drain())

    def at(self, t: float) -> None:
        async def fire() -> None:  # timer callbacks run on the loop (they may start tasks)
            self.loop.fire_next()

        self._settle()
        while self.loop.next_due(t) is not None:
            self.aloop.run_until_complete(fire())
            self._settle()
        self.clock[0] = t

    def _call(self, method: Any, request: Any) -> Any:
        try:
            return self.aloop.run_until_complete(method(request, _Context()))
        finally:
            self._settle()

    def submit(self, spec: JobSpec = SPEC) -> str:
        reply = self._call(self.job.CreateJob, client_pb2.SubmitJobRequest(spec=spec_to_pb(spec)))
        return str(reply.job_id)

    def wait(self, job_id: str, timeout: float) -> str:
        """JobRole.WaitJob (the trace waits only while draining: no wait then)."""
        request = client_pb2.WaitJobRequest(job_id=job_id, timeout=to_duration(timeout))
        return _state_name(self._call(self.job.WaitJob, request).state)

    def drain(self) -> None:
        self._call(lambda request, context: self.job.drain(), None)

    def status(self, job_id: str) -> str:
        return _state_name(self._call(self.job.GetJob, client_pb2.GetJobStatusRequest(job_id=job_id)).state)

    def cancel(self, job_id: str) -> str:
        return _state_name(self._call(self.job.CancelJob, client_pb2.CancelJobRequest(job_id=job_id)).state)

    def fetch(self, worker: str, free: int) -> list[Assignment]:
        request = worker_pb2.FetchWorkRequest(
            worker_id=worker, free_slots=free, wait_timeout=to_duration(0.0)
        )
        reply = self._call(self.coord.FetchWork, request)
        return [assignment_from_pb(a, worker) for a in reply.assignments]

    def heartbeat(self, worker: str, total: int, free: int, running: list[tuple[str, int]]) -> Any:
        request = worker_pb2.HeartbeatRequest(
            worker_id=worker, total_slots=total, free_slots=free, running=running_to_pb(running)
        )
        reply = self._call(self.coord.WorkerHeartbeat, request)
        return [(r.job_id, r.attempt) for r in reply.cancel], [(r.job_id, r.attempt) for r in reply.abandon]

    def report(self, worker: str, job_id: str, attempt: int, outcome: Outcome) -> str:
        request = worker_pb2.ReportResultRequest(worker_id=worker, job_id=job_id, attempt=attempt)
        outcome_to_pb(outcome, request)
        return _state_name(self._call(self.coord.ReportResult, request).state)


def _state_name(state: int) -> str:
    return JobState(state).name


def _instrument_micro(
    jobs: Any, queue: Any, coordinator: Any, result: Any, now: Callable[[], float], log: Log
) -> None:
    for owner, label in (
        (jobs, "jobs"),
        (jobs, "jobs.outbox"),
        (queue, "queue"),
        (coordinator, "coordinator"),
        (result, "result"),
    ):
        for name in DRIVER_LOGGED[label]:
            _wrap(owner, name, f"{label.split('.')[0]}.{name}", now, log)


class SimMicro(_SimSide):
    def __init__(self) -> None:
        self.log = []
        params = SimParams.ideal(slots=1, core=CONFIG, sweep_interval=1e9)
        self.env, cluster, _ = build(SimConfig("micro", WorkloadSpec(OpenLoop(1.0)), params))
        assert isinstance(cluster, MicroCluster)
        self.cluster = cluster
        now = lambda: float(self.env.now)  # noqa: E731
        _instrument_micro(cluster.jobs, cluster.queues, cluster.coordinator, cluster.results, now, self.log)
        _log_performed(cluster, now, self.log, "jobs.perform")
        for proc, label in ((cluster.jobp, "jobs"), (cluster.queuep, "queue"), (cluster.resultp, "result")):
            _log_commits(proc, label, now, self.log)
        for label, timer in (
            ("job", cluster.job_timer),
            ("queue", cluster.queue_timer),
            ("coordinator", cluster.coord_timer),
            ("result", cluster.result_timer),
        ):
            _log_arms(timer, label, now, self.log)
        # MicroCluster.start without the checkpointers, the sweep and the worker (the trace is the worker)
        for timer in (cluster.result_timer, cluster.queue_timer, cluster.job_timer, cluster.coord_timer):
            timer.start()
        cluster.spawn(cluster._flush_outbox())

    def _reply(self, reply: tuple[str, Any]) -> Any:
        status, value = reply
        if status != "OK":
            raise RuntimeError(status)
        return value

    def submit(self, spec: JobSpec = SPEC) -> str:
        return str(self._reply(self._do(self.cluster._job_create(_draw(self.cluster, spec)))))

    def wait(self, job_id: str, timeout: float) -> str:
        return str(self._reply(self._do(self.cluster._job_wait(job_id, timeout)))[0].name)

    def drain(self) -> None:
        self.cluster.job_start_draining()

    def status(self, job_id: str) -> str:
        return str(self._reply(self._do(self.cluster._job_get(job_id)))[0].name)

    def cancel(self, job_id: str) -> str:
        return str(self._reply(self._do(self.cluster._job_cancel(job_id))).name)

    def fetch(self, worker: str, free: int) -> list[Assignment]:
        return list(self._do(self.cluster._coord_fetch(worker, free, 0.0)))

    def heartbeat(self, worker: str, total: int, free: int, running: list[tuple[str, int]]) -> Any:
        return self._do(self.cluster._coord_heartbeat(worker, total, free, running))

    def report(self, worker: str, job_id: str, attempt: int, outcome: Outcome) -> str:
        status = self._do(self.cluster._coord_report(worker, job_id, attempt, outcome))
        if status != "OK":
            raise RuntimeError(status)
        return self.cluster.table.get(job_id).state.name


# ================================================================================ the trace
def play(driver: Any, tenants: bool = False) -> Log:
    """One trace; replies (or errors) go into the log beside the driver calls. `tenants`: jobs carry
    the scheduling policy's key label, tenants a and b in turn (for the policy variants)."""
    jobs: list[str] = []

    def submit(spec: JobSpec = SPEC) -> str:
        if tenants:
            spec = dataclasses.replace(spec, labels=MappingProxyType({"tenant": "ab"[len(jobs) % 2]}))
        return str(driver.submit(spec))

    held: dict[str, dict[str, int]] = {"w1": {}, "w2": {}, "w3": {}}  # worker -> job -> attempt it runs

    def reply(t: float, what: str, fn: Callable[[], Any]) -> None:
        driver.at(t)
        try:
            value = fn()
        except DtqError as exc:  # the real node raises; the sim's replies carry a status
            value = ("error", status_of(exc))
        except grpc.aio.AioRpcError as exc:  # a real Design A role aborts the call
            value = ("error", exc.code().name)
        except RuntimeError as exc:
            value = ("error", str(exc))
        driver.log.append((t, "reply", what, repr(value)))

    def fetch(t: float, worker: str, free: int) -> None:
        def go() -> list[str]:
            got = driver.fetch(worker, free)
            held[worker].update({a.job_id: a.attempt for a in got})
            return [f"{a.job_id}#{a.attempt}" for a in got]

        reply(t, f"fetch {worker}", go)

    def beat(t: float, worker: str, total: int) -> None:
        running = sorted(held[worker].items())
        reply(
            t, f"heartbeat {worker}", lambda: driver.heartbeat(worker, total, total - len(running), running)
        )

    def report(t: float, worker: str, index: int, outcome: Outcome) -> None:
        job_id = jobs[index]
        attempt = held[worker].pop(job_id, 1)
        reply(t, f"report {worker} {index}", lambda: driver.report(worker, job_id, attempt, outcome))

    for i, t in enumerate((0.11, 0.13, 0.17, 0.23, 0.29)):
        reply(t, f"submit {i}", lambda: jobs.append(submit()) or jobs[-1])
    beat(0.31, "w1", 2)
    beat(0.37, "w2", 2)
    fetch(0.41, "w1", 2)
    fetch(0.43, "w2", 2)
    reply(0.47, "status 0", lambda: driver.status(jobs[0]))
    reply(0.53, "cancel 4 (queued)", lambda: driver.cancel(jobs[4]))
    fetch(0.59, "w2", 1)
    report(0.61, "w1", 0, Succeeded(b"ok"))
    report(0.67, "w1", 1, Failed(JobError("boom", retryable=True)))
    beat(1.07, "w1", 2)
    beat(1.13, "w2", 2)
    reply(1.19, "cancel 2 (running)", lambda: driver.cancel(jobs[2]))
    beat(1.23, "w2", 2)  # hears the cancel
    fetch(1.31, "w1", 2)  # job 1 after its retry backoff
    beat(2.03, "w1", 2)
    # w2 goes silent from here: lost after worker_ttl, its leases expire
    beat(3.01, "w1", 2)
    reply(3.5, "status 0 (past its TTL)", lambda: driver.status(jobs[0]))
    beat(4.03, "w1", 2)
    reply(4.5, "status 3", lambda: driver.status(jobs[3]))
    fetch(4.61, "w1", 2)
    report(4.73, "w2", 3, Succeeded())  # stale: w2's attempt was taken back
    beat(5.05, "w1", 2)
    for index in (1, 3):
        report(5.11 + index / 100, "w1", index, Succeeded())
    reply(6.0, "status 2", lambda: driver.status(jobs[2]))
    reply(9.0, "status 3 (expired)", lambda: driver.status(jobs[3]))
    # byte budgets: two large payloads do not fit one fetch (Design A: LeaseJobs requeues the rest)
    for i, (t, spec) in enumerate(((9.1, LARGE), (9.11, LARGE), (9.13, SPEC)), start=5):
        reply(t, f"submit {i}", lambda spec=spec: jobs.append(submit(spec)) or jobs[-1])
    fetch(9.2, "w3", 3)
    fetch(9.3, "w3", 3)
    # a report from a worker that does not hold the lease: refused, nothing stored (issue 26)
    reply(9.4, "report w2 6 (forged)", lambda: driver.report("w2", jobs[6], 1, Succeeded(b"forged")))
    report(9.5, "w3", 5, Succeeded(b"r" * 200))  # Design B keeps it out of RAM; A stores 200 bytes
    reply(9.55, "status 6", lambda: driver.status(jobs[6]))
    # draining: a long-poll at the owner answers UNAVAILABLE
    reply(9.6, "submit 8", lambda: jobs.append(submit()) or jobs[-1])
    reply(9.7, "drain", driver.drain)
    reply(9.8, "wait 8 (draining)", lambda: driver.wait(jobs[8], 5.0))
    driver.at(END)  # every remaining timer: expiries, worker w1 lost, retention of jobs and results
    return driver.log


def _entries(log: Log, *labels: str) -> list[tuple[Any, ...]]:
    return [e for e in log if any(str(e[1]).startswith(label) for label in labels)]


def _compare(real: Log, simulated: Log) -> None:
    for i, (a, b) in enumerate(zip(real, simulated, strict=False)):
        assert a == b, f"entry {i} differs:\nreal {a}\nsim  {b}"
    assert len(real) == len(simulated)


def _racy_instants(log: Log) -> set[float]:
    """The instants of a LeaseJobs that sent jobs back to the queue (its Step flushes the outbox): the
    job service's Enqueue of them and the coordinator's Ack of the reservation reach the queue service
    at one instant from two services, in either order (a race of the real system too; both orders
    leave the same queue, because a reservation replaced by a newer Enqueue survives its Ack)."""
    return {e[0] for e in log if e[1] == "jobs.lease" and "flush=True" in str(e[-1])}


def _compare_racy(real: Log, simulated: Log, racy: set[float]) -> None:
    """Exact outside the racy instants; at them, the same calls with the same arguments (their
    results and the commits' row counts depend on the order)."""
    _compare([e for e in real if e[0] not in racy], [e for e in simulated if e[0] not in racy])

    def calls(log: Log) -> list[tuple[Any, ...]]:
        return sorted(e[:3] for e in log if e[0] in racy and not str(e[1]).endswith("commit"))

    assert calls(real) == calls(simulated)


def _queue_state(queue: Any) -> list[str]:
    """A ReadyQueue's entries (job, slot), for comparing the end state of both sides."""
    return sorted(f"{job_id} {entry.slot.name}" for job_id, entry in queue._entries.items())


def test_design_b_real_and_sim_adapters_make_identical_decisions(monkeypatch: pytest.MonkeyPatch) -> None:
    real = play(RealNode(monkeypatch))
    simulated = play(SimNode())
    assert len(real) > 60
    kinds = {entry[1] for entry in real}
    # the trace reached the paths it is meant to cover
    assert {"Scheduler.handle_timer", "Scheduler.report", "Scheduler.cancel", "perform", "arm node"} <= kinds
    assert "node.commit" in kinds
    performed = " ".join(e[2] for e in real if e[1] == "perform")
    assert "WorkerLost" in performed and "LeaseExpired" in performed
    assert "NotifyCancel" in " ".join(e[-1] for e in real if e[1] == "Scheduler.cancel")
    assert "delete=['n1-1-" in performed  # retention deleted rows
    assert "NOT_FOUND" in " ".join(e[3] for e in real if e[1] == "reply")  # an expired job is gone
    replies = {e[2]: e[3] for e in real if e[1] == "reply"}
    assert replies["fetch w3"] == repr(["n1-1-0000000007#1", "n1-1-0000000008#1"])  # after the budget
    assert (
        replies["report w2 6 (forged)"] == repr(("error", "ABORTED")) and replies["status 6"] == "'RUNNING'"
    )
    assert "outputs=['n1-1-0000000006']" in performed  # the 200-byte result, out of RAM
    assert replies["wait 8 (draining)"] == repr(("error", "UNAVAILABLE"))
    _compare(real, simulated)


def test_design_a_real_and_sim_adapters_make_identical_decisions(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    micro = RealMicro(monkeypatch, tmp_path)
    try:
        real = play(micro)
    finally:
        micro.close()
    sim_micro = SimMicro()
    simulated = play(sim_micro)
    queues = [_queue_state(micro.queue.service.queue), _queue_state(sim_micro.cluster.queue)]
    assert len(real) > 100
    performed = " ".join(e[2] for e in real if e[1] == "jobs.perform")
    assert "LeaseExpired" in performed and "NotifyCancel" in performed and "delete=['job-1-" in performed
    calls = {e[1] for e in real}
    assert {"jobs.release_worker", "coordinator.notify_cancel", "queue.reserve", "queue.ack"} <= calls
    assert {"jobs.commit", "queue.commit", "result.commit"} <= calls
    assert any(e[1] == "result.on_timer" and e[4] != "[]" for e in real)  # stored results expired
    assert "NOT_FOUND" in " ".join(e[3] for e in real if e[1] == "reply")
    replies = {e[2]: e[3] for e in real if e[1] == "reply"}
    assert (
        replies["report w2 6 (forged)"] == repr(("error", "ABORTED")) and replies["status 6"] == "'RUNNING'"
    )
    assert replies["wait 8 (draining)"] == repr(("error", "UNAVAILABLE"))
    assert any(e[1] == "result.stored" and "'size': 200" in e[2] for e in real)  # the large output
    assert any(e[1] == "jobs.fence" and e[0] == 9.4 and e[3] == "raised" for e in real)
    assert not any(e[1] == "result.stored" and e[0] == 9.4 for e in real)  # the forged one: nothing
    # per service (and the replies): calls within one service keep their order, except where two
    # services race by design (below)
    racy = _racy_instants(real)
    assert racy == _racy_instants(simulated) and racy  # the trace's LeaseJobs that requeued
    _compare_services(real, simulated, racy, ("result", "arm result"))
    assert queues[0] == queues[1]  # and the race leaves the same queue


def _compare_services(real: Log, simulated: Log, racy: set[float], *extra: tuple[str, ...]) -> None:
    """Design A's logs, per service (and the replies): calls within one service keep their order,
    except the queue's at the `racy` instants, where two services race by design."""
    for labels in (
        ("reply",),
        ("jobs", "arm job"),
        ("queue", "arm queue"),
        ("coordinator", "arm coordinator"),
        *extra,
    ):
        mine_real, mine_sim = _entries(real, *labels), _entries(simulated, *labels)
        if labels[0] == "queue":
            _compare_racy(mine_real, mine_sim, racy)
        else:
            _compare(mine_real, mine_sim)


# ================================================================================ under a policy
POLICY_CONFIGS = {
    # tenant b weighs 3: at 0.43 w2's fetch takes b's submit 3 before a's submit 2 (fifo: 2, 3)
    "fair": dataclasses.replace(CONFIG, policy="fair", policy_weights="b=3"),
    # 3 jobs/s per tenant: at 0.43 both tenants wait for a token (fifo: submits 2 and 3), and the
    # timer wakes for it (token times clear of the trace's instants: no tie of a timer and a call)
    "ratelimit": dataclasses.replace(CONFIG, policy="ratelimit", policy_rate=3.0, policy_burst=1.0),
}
EXPECTED_W2_FETCH = {"fair": ["4#1", "3#1"], "ratelimit": []}  # job i+1 is submit i


def _fetch_w2(log: Log) -> list[str]:
    reply = next(e[3] for e in log if e[1] == "reply" and e[2] == "fetch w2")
    return [job.rsplit("-", 1)[1].lstrip("0") for job in eval(reply)]


@pytest.mark.parametrize("policy", sorted(POLICY_CONFIGS))
def test_design_b_adapters_agree_under_a_policy(monkeypatch: pytest.MonkeyPatch, policy: str) -> None:
    monkeypatch.setattr(sys.modules[__name__], "CONFIG", POLICY_CONFIGS[policy])
    real = play(RealNode(monkeypatch), tenants=True)
    simulated = play(SimNode(), tenants=True)
    assert _fetch_w2(real) == EXPECTED_W2_FETCH[policy]  # the policy decided
    _compare(real, simulated)


@pytest.mark.parametrize("policy", sorted(POLICY_CONFIGS))
def test_design_a_adapters_agree_under_a_policy(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, policy: str
) -> None:
    monkeypatch.setattr(sys.modules[__name__], "CONFIG", POLICY_CONFIGS[policy])
    micro = RealMicro(monkeypatch, tmp_path)
    try:
        real = play(micro, tenants=True)
    finally:
        micro.close()
    sim_micro = SimMicro()
    simulated = play(sim_micro, tenants=True)
    assert _fetch_w2(real) == EXPECTED_W2_FETCH[policy]
    racy = _racy_instants(real)
    assert racy == _racy_instants(simulated)
    _compare_services(real, simulated, racy)
    assert _queue_state(micro.queue.service.queue) == _queue_state(sim_micro.cluster.queue)
