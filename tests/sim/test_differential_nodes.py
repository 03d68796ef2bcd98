"""Differential test of Design B across nodes: one trace through two real nodes and two simulated ones,
identical decision logs.

What test_differential.py's one-node trace cannot reach needs a second node and time that passes:
the worker's fetch long-poll with stealing (model.stealing.fetch_loop: local first, the idle wait, a
depth round, a steal, waiting for local work), heartbeats and reports of stolen jobs at their owner,
results kept out of RAM (StoreOutput: the Step's `outputs`), fetches cut by the byte budget, and
draining (long-polls at a draining owner answer UNAVAILABLE; a draining node refuses to relay one).

- Real: per node a LocalCore (MemoryJobRecords, the loop's clock), its CoreTimer, its
  InProcessBackend (the node's own worker's backend), TaskQueueService, WorkersService and
  PeerService, on an asyncio loop whose clock jumps to its next timer (virtual time). Node-to-node
  stubs call the other node's servicers in-process (grpc_errors, metadata and trailing metadata
  included); no gRPC.
- Sim: sim/mono.py's MonoCluster with two nodes (SimParams.ideal: zero costs), its MonoNodes'
  fetch/heartbeat/report (the simulated worker's backend), wait, and the cluster's forwarding.
- The log: every NodeDriver and StealPacer call (arguments, result), every Step performed, every
  storage write (real) and commit (sim), every timer arm, and the trace's replies, with the time.
  Trace times and intervals are dyadic, so both clocks add them exactly.

Not covered: a relayed long-poll that a drain cuts while it waits (the simulator does not model the
cut; realsys tests do), retry-after values (the simulator's replies carry only a status), gRPC.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

import realsys.timer
from dtq.v1 import client_pb2
from model.ids import owner_of
from model.job import Failed, JobError, JobSpec, Outcome, Succeeded
from model.states import JobState
from model.workload import JobDraw, OpenLoop, WorkloadSpec
from realsys.convert import to_duration
from realsys.metrics import NodeMetrics
from realsys.mono.backend import InProcessBackend
from realsys.mono.core import LocalCore
from realsys.mono.services import PeerService, TaskQueueService, WorkersService
from realsys.status import retry_after_of
from realsys.storage import MemoryJobRecords
from realsys.timer import CoreTimer
from sim.api import SimConfig, build
from sim.mono import MonoCluster, MonoNode
from sim.params import SimParams
from tests.sim.test_differential import (
    CONFIG,
    Log,
    _compare,
    _log_arms,
    _log_commits,
    _log_performed,
    _log_writes,
    _wrap,
)
from tests.sim.test_worker_differential import VirtualTimeLoop

NODES = ("n1", "n2")
STEAL_INTERVAL = 1 / 16
SMALL = JobSpec.make("sleep", b'{"seconds": 0}')
LARGE = JobSpec.make("sleep", b"x" * 3000)
END = 16.0
DRIVER_LOGGED = (
    "submit",
    "cancel",
    "heartbeat",
    "fetch_now",
    "steal",
    "report",
    "release_worker",
    "on_timer",
    "start_draining",
    "add_fetcher",
    "fetcher_gone",
    "add_done_waiter",
    "done_waiter_gone",
    "wait_ended",
    "check_relay",
)
PACER_LOGGED = (
    "idle_wait",
    "needs_depths",
    "peers_to_ask",
    "record_depths",
    "plan",
    "record_steal",
    "record_failure",
)


def t(n: int) -> float:
    """Trace times in 1/256 s: dyadic, so that now + delay is exact on both clocks."""
    return n / 256


# ------------------------------------------------------------------------------- real side
class _Aborted(grpc.aio.AioRpcError):
    def __init__(self, code: grpc.StatusCode, details: str, trailing: tuple[tuple[str, str], ...]) -> None:
        super().__init__(code, grpc.aio.Metadata(), grpc.aio.Metadata(*trailing), details)


class _Context:
    """Enough of a ServicerContext: metadata in, trailing metadata and abort out; no deadline."""

    def __init__(self, metadata: Any = None) -> None:
        self._metadata = tuple(metadata or ())
        self._trailing: tuple[tuple[str, str], ...] = ()

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    def time_remaining(self) -> float | None:
        return None

    def set_trailing_metadata(self, metadata: Any) -> None:
        self._trailing = tuple(metadata)

    async def abort(self, code: grpc.StatusCode, details: str) -> None:
        raise _Aborted(code, details, self._trailing)


class _Stub:
    """Another node's servicer as a stub: each call is a task (awaitable and cancellable, as a
    grpc.aio call is)."""

    def __init__(self, servicer: Any) -> None:
        self.servicer = servicer

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.servicer, name)

        def call(request: Any, timeout: float | None = None, metadata: Any = None, **_: Any) -> Any:
            return asyncio.ensure_future(method(request, _Context(metadata)))

        return call


class _Links:
    """PeerLinks' surface, with in-process stubs."""

    def __init__(self, node: str, cluster: RealCluster) -> None:
        self.self_node = node
        self.addresses = {n: "in-process" for n in NODES if n != node}
        self.all_nodes = sorted(NODES)
        self.rpc_timeout = 5.0
        self.cluster = cluster

    @property
    def names(self) -> list[str]:
        return sorted(self.addresses)

    def timeout(self, context: Any = None, wait: float = 0.0) -> float:
        return self.rpc_timeout + max(0.0, wait)

    def suspected(self, node: str) -> bool:
        return False

    async def task_queue(self, node: str, context: Any = None) -> _Stub:
        return _Stub(self.cluster.nodes[node].task_queue)

    async def workers(self, node: str, context: Any = None) -> _Stub:
        return _Stub(self.cluster.nodes[node].workers)

    async def peer(self, node: str, context: Any = None) -> _Stub:
        return _Stub(self.cluster.nodes[node].peer)

    def peer_nowait(self, node: str) -> _Stub:
        return _Stub(self.cluster.nodes[node].peer)


@dataclass
class RealNode:
    core: LocalCore
    timer: CoreTimer
    backend: InProcessBackend
    task_queue: TaskQueueService
    workers: WorkersService
    peer: PeerService


class RealCluster:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.loop = VirtualTimeLoop()
        self.log: Log = []
        clock = self.loop.time
        monkeypatch.setattr(realsys.timer, "time", types.SimpleNamespace(time=clock))
        monkeypatch.setattr(MemoryJobRecords, "next_incarnation", lambda self: "1")  # as sim/mono.py
        self.nodes: dict[str, RealNode] = {}
        for name in NODES:
            metrics = NodeMetrics(name, "node", "mono")
            core = LocalCore(name, CONFIG, MemoryJobRecords(), metrics, clock=clock)
            core.local_worker_id = f"{name}-w"
            links: Any = _Links(name, self)
            timer = CoreTimer(core.driver.timer, core.on_timer)
            _log_arms(timer, name, clock, self.log)
            core.rearm = timer.arm  # as realsys/mono/node.py wires it (after the logging wrapper)
            self.nodes[name] = RealNode(
                core,
                timer,
                InProcessBackend(core, links, metrics, STEAL_INTERVAL),
                TaskQueueService(core, links, metrics, None),  # type: ignore[arg-type]  # no request ids
                WorkersService(core, links, metrics),
                PeerService(core, None),  # type: ignore[arg-type]
            )
            _instrument(name, core.driver, self.nodes[name].backend.pacer, clock, self.log)
            _log_performed(core, clock, self.log, f"{name} perform")
            _log_writes(core.records, name, clock, self.log)

    def run(self, trace: list[tuple[float, str, Callable[[Trace], Any]]]) -> Log:
        async def main() -> None:
            for node in self.nodes.values():
                node.timer.start()
            tasks = []
            for at, what, op in trace:
                await asyncio.sleep(at - self.loop.time())
                tasks.append(asyncio.ensure_future(self._reply(what, op)))
            await asyncio.sleep(END - self.loop.time())
            await asyncio.gather(*tasks)
            for node in self.nodes.values():
                node.timer.stop()

        try:
            self.loop.run_until_complete(main())
        finally:
            self.loop.close()
        return self.log

    async def _reply(self, what: str, op: Callable[[Trace], Any]) -> None:
        try:
            value = await op(RealTrace(self))
        except _Aborted as exc:
            retry = retry_after_of(exc.trailing_metadata())
            assert exc.code() is not grpc.StatusCode.UNAVAILABLE or retry is not None, what
            value = ("error", exc.code().name)
        self.log.append((round(self.loop.time(), 9), "reply", what, repr(value)))


class Trace:
    """What the trace asks of a side: each a coroutine on the real side, a generator in the sim."""

    def submit(self, node: str, spec: JobSpec) -> Any:
        raise NotImplementedError

    def fetch(self, node: str, free: int, wait: float) -> Any:
        raise NotImplementedError

    def heartbeat(self, node: str, total: int, running: list[tuple[str, int]]) -> Any:
        raise NotImplementedError

    def report(self, node: str, job_id: str, attempt: int, outcome: Outcome) -> Any:
        raise NotImplementedError

    def wait(self, node: str, job_id: str, timeout: float) -> Any:
        raise NotImplementedError

    def drain(self, node: str) -> Any:
        raise NotImplementedError


class RealTrace(Trace):
    def __init__(self, cluster: RealCluster) -> None:
        self.c = cluster

    async def submit(self, node: str, spec: JobSpec) -> str:
        return self.c.nodes[node].core.submit(spec).job.job_id

    async def fetch(self, node: str, free: int, wait: float) -> list[str]:
        got = await self.c.nodes[node].backend.fetch(f"{node}-w", free, wait)
        return [f"{a.job_id}#{a.attempt}" for a in got]

    async def heartbeat(self, node: str, total: int, running: list[tuple[str, int]]) -> Any:
        reply = await self.c.nodes[node].backend.heartbeat(f"{node}-w", total, total - len(running), running)
        return sorted(reply.cancel), sorted(reply.abandon)

    async def report(self, node: str, job_id: str, attempt: int, outcome: Outcome) -> str:
        await self.c.nodes[node].backend.report(f"{node}-w", job_id, attempt, outcome)
        return self._state(job_id)

    async def wait(self, node: str, job_id: str, timeout: float) -> str:
        request = client_pb2.WaitJobRequest(job_id=job_id, timeout=to_duration(timeout))
        job = await self.c.nodes[node].task_queue.WaitJob(request, _Context())
        return JobState(job.state).name

    async def drain(self, node: str) -> None:
        self.c.nodes[node].core.start_draining()
        self.c.nodes[node].task_queue.start_draining()

    def _state(self, job_id: str) -> str:
        return self.c.nodes[owner_of(job_id)].core.get(job_id).state.name


# ------------------------------------------------------------------------------- sim side
@dataclass
class _TraceWorker:
    worker_id: str
    alive: bool = True


class SimCluster:
    def __init__(self) -> None:
        self.log: Log = []
        params = SimParams.ideal(nodes=2, slots=2, core=CONFIG, steal_interval=STEAL_INTERVAL)
        self.env, cluster, _ = build(SimConfig("mono", WorkloadSpec(OpenLoop(1.0)), params))
        assert isinstance(cluster, MonoCluster)
        self.cluster = cluster
        clock = lambda: float(self.env.now)  # noqa: E731
        for node in cluster.nodes:
            _instrument(node.name, node.driver, node.pacer, clock, self.log)
            _log_performed(node, clock, self.log, f"{node.name} perform")
            _log_commits(node.proc, node.name, clock, self.log)
            _log_arms(node.timer, node.name, clock, self.log)

    def run(self, trace: list[tuple[float, str, Callable[[Trace], Any]]]) -> Log:
        for node in self.cluster.nodes:  # not node.start(): no SimWorker, the trace is the worker
            node.timer.start()
        for at, what, op in trace:
            self.env.process(self._at(at, what, op))
        self.env.run(until=END)
        return self.log

    def _at(self, at: float, what: str, op: Callable[[Trace], Any]) -> Generator[Any, Any, None]:
        yield self.env.timeout(at)
        value = yield from op(SimTrace(self))
        self.log.append((round(float(self.env.now), 9), "reply", what, repr(value)))


class SimTrace(Trace):
    def __init__(self, cluster: SimCluster) -> None:
        self.c = cluster.cluster
        self.env = cluster.env

    def submit(self, node: str, spec: JobSpec) -> Generator[Any, Any, str]:
        self.c.spec_of = lambda job: spec  # type: ignore[method-assign]  # the real side's spec, payload too
        status, job_id = yield from self.c.by_name[node].submit(JobDraw(spec.job_type, 0.0))
        assert status == "OK"
        return str(job_id)

    def fetch(self, node: str, free: int, wait: float) -> Generator[Any, Any, list[str]]:
        worker: Any = _TraceWorker(f"{node}-w")
        got = yield from self.c.by_name[node].fetch(worker, free, wait)
        return [f"{a.job_id}#{a.attempt}" for a in got]

    def heartbeat(self, node: str, total: int, running: list[tuple[str, int]]) -> Generator[Any, Any, Any]:
        worker: Any = _TraceWorker(f"{node}-w")
        reply = yield from self.c.by_name[node].heartbeat(worker, total, total - len(running), running)
        assert reply is not None
        cancel, abandon = reply
        return sorted(cancel), sorted(abandon)

    def report(self, node: str, job_id: str, attempt: int, outcome: Outcome) -> Generator[Any, Any, str]:
        worker: Any = _TraceWorker(f"{node}-w")
        yield from self.c.by_name[node].report(worker, job_id, attempt, outcome)
        return self._state(job_id)

    def wait(self, node: str, job_id: str, timeout: float) -> Generator[Any, Any, Any]:
        entry = self.c.by_name[node]
        status, value = yield from self.c._routed(entry, job_id, lambda n: n.wait(job_id, timeout), timeout)
        if status != "OK":
            return ("error", status)
        return value[0].name

    def drain(self, node: str) -> Generator[Any, Any, None]:
        self.c.by_name[node].start_draining()
        yield from ()

    def _state(self, job_id: str) -> str:
        return self.c.by_name[owner_of(job_id)].sched.jobs.get(job_id).state.name


def _instrument(node: str, driver: Any, pacer: Any, clock: Callable[[], float], log: Log) -> None:
    def rounded() -> float:
        return round(clock(), 9)

    for name in DRIVER_LOGGED:
        _wrap(driver, name, f"{node} {name}", rounded, log)
    for name in PACER_LOGGED:
        _wrap(pacer, name, f"{node} pacer.{name}", rounded, log)


# ------------------------------------------------------------------------------- the trace
def trace() -> list[tuple[float, str, Callable[[Trace], Any]]]:
    """(time, what, op): op(side) is the side's coroutine or generator. Job ids are known in advance
    (each node numbers its jobs from 1)."""

    def job(node: str, n: int) -> str:
        return f"{node}-1-{n:010d}"

    def submit(node: str, spec: JobSpec) -> Callable[[Trace], Any]:
        return lambda side: side.submit(node, spec)

    ok, big = Succeeded(b"ok"), Succeeded(b"r" * 200)  # big: kept out of RAM at its owner
    return [
        # n1 has four small jobs and no worker asking; n2's idle worker steals two after its idle wait
        *[(t(20 + i), f"submit n1 {i}", submit("n1", SMALL)) for i in range(4)],
        (t(25), "heartbeat n2-w", lambda s: s.heartbeat("n2", 2, [])),
        (t(30), "fetch n2-w (steals)", lambda s: s.fetch("n2", 2, 1.0)),
        (
            t(50),
            "heartbeat n2-w (stolen)",
            lambda s: s.heartbeat("n2", 2, [(job("n1", 1), 1), (job("n1", 2), 1)]),
        ),
        (t(55), "report stolen 2 (big)", lambda s: s.report("n2", job("n1", 2), 1, big)),
        (t(60), "fetch n1-w", lambda s: s.fetch("n1", 2, 0.5)),
        # large payloads at n2: the byte budget cuts its fetches
        (t(70), "submit n2 large 1", submit("n2", LARGE)),
        (t(71), "submit n2 large 2", submit("n2", LARGE)),
        (t(72), "submit n2 small", submit("n2", SMALL)),
        (t(80), "fetch n2-w (budget)", lambda s: s.fetch("n2", 3, 1.0)),
        (t(85), "fetch n2-w (rest)", lambda s: s.fetch("n2", 2, 1.0)),
        (
            t(90),
            "report stolen 1 (retry)",
            lambda s: s.report("n2", job("n1", 1), 1, Failed(JobError("boom", retryable=True))),
        ),
        (t(95), "heartbeat n1-w", lambda s: s.heartbeat("n1", 2, [(job("n1", 3), 1), (job("n1", 4), 1)])),
        (t(100), "report n1 3", lambda s: s.report("n1", job("n1", 3), 1, ok)),
        (t(101), "report n1 4 (big)", lambda s: s.report("n1", job("n1", 4), 1, big)),
        # n2's worker long-polls with nothing anywhere: waits, depth rounds back off; job 1 comes back
        # from its retry backoff at n1 and n2 steals it
        (t(110), "fetch n2-w (idle)", lambda s: s.fetch("n2", 1, 2.0)),
        # long-polls: at the owner, and relayed by n2 to n1
        (t(300), "submit n1 5", submit("n1", SMALL)),
        (t(310), "wait n1 5 at n1", lambda s: s.wait("n1", job("n1", 5), 0.5)),
        (t(330), "wait n1 5 via n2", lambda s: s.wait("n2", job("n1", 5), 0.25)),
        # draining: n1's own long-poll answers UNAVAILABLE, and so does one relayed to it;
        # then n2 drains and refuses to relay another
        (t(600), "wait n1 5 at n1 (drain)", lambda s: s.wait("n1", job("n1", 5), 4.0)),
        (t(640), "drain n1", lambda s: s.drain("n1")),
        (t(650), "wait n1 5 via n2 (owner drains)", lambda s: s.wait("n2", job("n1", 5), 4.0)),
        (t(660), "drain n2", lambda s: s.drain("n2")),
        (t(670), "wait n1 5 via n2 (n2 drains)", lambda s: s.wait("n2", job("n1", 5), 4.0)),
        (t(680), "fetch n2-w (draining)", lambda s: s.fetch("n2", 1, 1.0)),
    ]


def _run_both(monkeypatch: pytest.MonkeyPatch) -> tuple[Log, Log]:
    real = RealCluster(monkeypatch).run(trace())
    simulated = SimCluster().run(trace())
    return real, simulated


def test_design_b_nodes_real_and_sim_adapters_make_identical_decisions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real, simulated = _run_both(monkeypatch)
    text = "\n".join(map(repr, real))
    # the trace reached what it is meant to cover
    assert "n2 steal" not in text and "n1 steal" in text  # n2's worker stole from n1
    assert "StealPlan(victim='n1'" in text and "pacer.record_steal" in text
    assert "n2 add_fetcher" in text and "n2 fetcher_gone" in text  # waited for local work
    assert "outputs=['n1-1-0000000002']" in text and "outputs=['n1-1-0000000004']" in text
    replies = {e[2]: e[3] for e in real if e[1] == "reply"}
    assert replies["fetch n2-w (steals)"] == repr(["n1-1-0000000001#1", "n1-1-0000000002#1"])
    assert replies["fetch n2-w (budget)"] == repr(["n2-1-0000000001#1"])  # the second large one did not fit
    assert replies["fetch n2-w (rest)"] == repr(["n2-1-0000000002#1", "n2-1-0000000003#1"])
    assert replies["fetch n2-w (idle)"] == repr(["n1-1-0000000001#2"])
    for what in (
        "wait n1 5 at n1 (drain)",
        "wait n1 5 via n2 (owner drains)",
        "wait n1 5 via n2 (n2 drains)",
    ):
        assert replies[what] == repr(("error", "UNAVAILABLE")), what
    assert replies["fetch n2-w (draining)"] == repr([])
    _compare(real, simulated)


def _sim_drops_stored_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated node performs a Step without its `outputs` (charges no commit for them)."""
    perform = MonoNode._perform

    def deviant(self: MonoNode, step: Any) -> float:
        step.outputs = ()
        return perform(self, step)

    monkeypatch.setattr(MonoNode, "_perform", deviant)


def _sim_waits_too_long_for_local_work(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated fetch waits twice the loop's WaitForWork timeout."""
    wait = MonoNode._wait_for_work

    def deviant(self: MonoNode, worker: Any, free_slots: int, timeout: float) -> Any:
        return wait(self, worker, free_slots, 2 * timeout)

    monkeypatch.setattr(MonoNode, "_wait_for_work", deviant)


def _real_node_ignores_the_drain_in_long_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real node answers a long-poll the drain ended with the unfinished job (as before step 4)."""

    async def deviant(self: LocalCore, job_id: str, timeout: float) -> Any:
        job = self.get(job_id)
        if not job.done and timeout > 0:
            await self.wait_end(job, timeout)
        return self.get(job_id)

    monkeypatch.setattr(LocalCore, "wait_done", deviant)


@pytest.mark.parametrize(
    "deviate",
    [
        _sim_drops_stored_outputs,
        _sim_waits_too_long_for_local_work,
        _real_node_ignores_the_drain_in_long_polls,
    ],
)
def test_a_deliberate_adapter_deviation_is_caught(
    monkeypatch: pytest.MonkeyPatch, deviate: Callable[[pytest.MonkeyPatch], None]
) -> None:
    """The comparison has teeth: one adapter performing the drivers' decisions differently (a
    mutation of either side) makes the logs differ."""
    deviate(monkeypatch)
    real, simulated = _run_both(monkeypatch)
    with pytest.raises(AssertionError):
        _compare(real, simulated)
