"""Differential test: one event trace through the real Design B driver and the simulator's, identical
decision logs.

- Real driver: realsys/mono/core.py's LocalCore (MemoryJobRecords, an injected clock) wired to
  realsys/timer.py's CoreTimer exactly as realsys/mono/node.py wires them, with CoreTimer's loop and
  wall clock replaced by a fake loop that runs its handles in due order on the injected clock.
- Sim driver: sim/mono.py's MonoNode (one node, SimParams.ideal: zero costs) with its SimTimer, in a
  simpy environment; the node's own SimWorker is not started (the trace plays the worker).
- The log: every call into the model (Scheduler methods, WorkerRegistry.heartbeat/touch) with the
  time, its arguments and its result or error; every command the driver performs; every reply.

What it proves: for this trace (submits, fetches, heartbeats, reports (success, retryable failure,
stale), cancels of queued and running jobs, status reads, time advancing through lease expiries and
a worker's loss), both drivers make the same core calls at the same times with the same arguments,
in the same order, and act on the same commands; their timers fire at the same deadlines.
What it does not prove: anything about the gRPC layer (servicers, forwarding, stealing between nodes,
group commit's batching, WaitJob long-polls), the worker runtime's loops (the trace replaces them), or
timing when costs are non-zero (the simulator then moves calls in time by design).
"""

from __future__ import annotations

import heapq
import inspect
import types
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import pytest

import realsys.timer
from model.config import CoreConfig
from model.errors import DtqError
from model.job import Assignment, Failed, JobError, JobSpec, Outcome, Succeeded
from model.scheduler import Scheduler
from model.workload import JobDraw, OpenLoop, WorkloadSpec
from realsys.mono.core import LocalCore
from realsys.storage import MemoryJobRecords
from realsys.timer import CoreTimer
from sim.api import SimConfig, build
from sim.engine import status_of
from sim.mono import MonoCluster, MonoNode
from sim.params import SimParams

CONFIG = CoreConfig(lease_duration=3.0, heartbeat_interval=1.0, worker_ttl=2.5, default_initial_backoff=0.25)
SPEC = JobSpec.make("sleep", b'{"seconds": 0}')
LOGGED = ("submit", "cancel", "heartbeat", "fetch", "steal", "report", "handle_timer", "release_worker")

Log = list[tuple[Any, ...]]


def _instrument(sched: Scheduler, clock: Callable[[], float], log: Log) -> None:
    """Records every call into the core (instance attributes shadow the methods)."""

    def wrap(owner: Any, name: str, label: str) -> None:
        original = getattr(owner, name)
        signature = inspect.signature(original)

        def logged(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()  # a default passed or left out is the same call
            call = repr(dict(bound.arguments))
            try:
                result = original(*args, **kwargs)
            except DtqError as exc:
                log.append((clock(), label, call, "raised", type(exc).__name__, str(exc)))
                raise
            log.append((clock(), label, call, "returned", repr(result)))
            return result

        setattr(owner, name, logged)

    for name in LOGGED:
        wrap(sched, name, f"Scheduler.{name}")
    wrap(sched.workers, "heartbeat", "WorkerRegistry.heartbeat")
    wrap(sched.workers, "touch", "WorkerRegistry.touch")


def _log_performed(driver: Any, clock: Callable[[], float], log: Log) -> None:
    original = driver._perform

    def performed(command: Any) -> None:
        log.append((clock(), "perform", repr(command)))
        original(command)

    driver._perform = performed


# ------------------------------------------------------------------------------- the real driver
class _FixedIncarnation(MemoryJobRecords):
    def next_incarnation(self) -> str:
        return "1"  # as sim/mono.py's JobIdFactory, so both drivers make the same job ids


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

    def run_until(self, t: float) -> None:
        while self.heap and self.heap[0][0] <= t:
            due, _, callback, handle = heapq.heappop(self.heap)
            if handle.cancelled:
                continue
            self.clock[0] = due
            callback()
        self.clock[0] = t


@dataclass
class _Handle:
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


class RealDriver:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.clock = [0.0]
        self.log: Log = []
        self.loop = _FakeLoop(self.clock)
        monkeypatch.setattr(realsys.timer, "time", types.SimpleNamespace(time=lambda: self.clock[0]))
        monkeypatch.setattr(
            realsys.timer, "asyncio", types.SimpleNamespace(get_running_loop=lambda: self.loop)
        )
        self.core = LocalCore("n1", CONFIG, _FixedIncarnation(), clock=lambda: self.clock[0])
        now = lambda: self.clock[0]  # noqa: E731
        _instrument(self.core.scheduler, now, self.log)
        _log_performed(self.core, now, self.log)
        # as realsys/mono/node.py
        self.timer = CoreTimer(self.core.scheduler.next_deadline, self.core.on_timer)
        self.core.poke = self.timer.poke
        self.timer.start()

    def at(self, t: float) -> None:
        self.loop.run_until(t)

    def submit(self) -> str:
        return self.core.submit(SPEC).job.job_id

    def status(self, job_id: str) -> str:
        return self.core.get(job_id).state.name

    def cancel(self, job_id: str) -> str:
        return self.core.cancel(job_id).state.name

    def fetch(self, worker: str, free: int) -> list[Assignment]:
        return self.core.fetch_now(worker, free)

    def heartbeat(self, worker: str, total: int, free: int, running: list[tuple[str, int]]) -> Any:
        renewal = self.core.heartbeat(worker, total, free, running)
        return list(renewal.cancel), list(renewal.abandon)  # what the worker hears, as the sim's reply

    def report(self, worker: str, job_id: str, attempt: int, outcome: Outcome) -> str:
        return self.core.report(worker, job_id, attempt, outcome).state.name


# ------------------------------------------------------------------------------- the sim driver
@dataclass
class _TraceWorker:
    """What MonoNode reads of its SimWorker."""

    worker_id: str
    alive: bool = True


class SimDriver:
    def __init__(self) -> None:
        self.log: Log = []
        params = SimParams.ideal(nodes=1, slots=1, core=CONFIG)
        # the simulator's own environment and cluster, as sim.run builds them (not started)
        self.env, cluster, _ = build(SimConfig("mono", WorkloadSpec(OpenLoop(1.0)), params))
        assert isinstance(cluster, MonoCluster)
        cluster.spec_of = lambda job: SPEC  # type: ignore[method-assign]  # the real driver's spec, payload too
        self.node: MonoNode = cluster.nodes[0]
        now = lambda: float(self.env.now)  # noqa: E731
        _instrument(self.node.sched, now, self.log)
        _log_performed(self.node, now, self.log)
        self.node.timer.start()  # not node.start(): no SimWorker, the trace is the worker

    def at(self, t: float) -> None:
        if t > self.env.now:
            self.env.run(until=t)

    def _do(self, gen: Generator[Any, Any, Any]) -> Any:
        process = self.env.process(gen)
        self.env.run(until=process)
        assert self.env.now == pytest.approx(self.env.now)  # zero costs: no time passed
        return process.value

    def _reply(self, reply: tuple[str, Any]) -> str:
        status, value = reply
        if status != "OK":
            raise RuntimeError(status)
        return value.name if hasattr(value, "name") else str(value)

    def submit(self) -> str:
        status, job_id = self._do(self.node.submit(JobDraw(SPEC.job_type, 0.0)))
        assert status == "OK"
        return str(job_id)

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


# ------------------------------------------------------------------------------- the trace
def play(driver: Any) -> Log:
    """One trace; replies (or errors) go into the log beside the core calls."""
    jobs: list[str] = []
    held: dict[str, dict[str, int]] = {"w1": {}, "w2": {}}  # worker -> job -> attempt it runs

    def reply(t: float, what: str, fn: Callable[[], Any]) -> None:
        driver.at(t)
        try:
            value = fn()
        except DtqError as exc:  # the real driver raises; the sim's replies carry a status
            value = ("error", status_of(exc))
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
        reply(t, f"submit {i}", lambda: jobs.append(driver.submit()) or jobs[-1])
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
    beat(4.03, "w1", 2)
    reply(4.5, "status 3", lambda: driver.status(jobs[3]))
    fetch(4.61, "w1", 2)
    report(4.73, "w2", 3, Succeeded())  # stale: w2's attempt was taken back
    beat(5.05, "w1", 2)
    for index in (1, 3):
        report(5.11 + index / 100, "w1", index, Succeeded())
    reply(6.0, "status 2", lambda: driver.status(jobs[2]))
    driver.at(12.0)  # every remaining timer: expiries of anything still leased, worker w1 lost
    return driver.log


def test_real_and_sim_drivers_make_identical_decisions(monkeypatch: pytest.MonkeyPatch) -> None:
    real = play(RealDriver(monkeypatch))
    simulated = play(SimDriver())
    assert len(real) > 40
    kinds = {entry[1] for entry in real}
    # the trace reached the paths it is meant to cover
    assert {"Scheduler.handle_timer", "Scheduler.report", "Scheduler.cancel", "perform"} <= kinds
    performed = " ".join(e[2] for e in real if e[1] == "perform")
    assert "WorkerLost" in performed and "LeaseExpired" in performed and "NotifyCancel" in performed
    for i, (a, b) in enumerate(zip(real, simulated, strict=False)):
        assert a == b, f"entry {i} differs:\nreal {a}\nsim  {b}"
    assert len(real) == len(simulated)
