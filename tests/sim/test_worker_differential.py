"""Differential test of the worker runtime: one trace through the real adapter and the simulated one,
identical decision logs.

- Real: realsys/worker/runtime.py's WorkerRuntime (asyncio tasks, async handlers) on an event loop
  whose clock jumps to its next timer (virtual time), against a fake backend.
- Sim: sim/worker.py's SimWorker in the simulator's environment (SimParams.ideal: zero CPU costs,
  the real runtime's MIN_EMPTY_POLL), against the same fake backend written as SimPy generators.
- Both fake backends wrap one `TraceServer` each: a model.Scheduler fed the trace's submits and
  cancels, with every call taking a latency each way, FetchWork long-polling in POLL steps, outage
  windows in which every call raises Unavailable, and jobs whose reports are refused.
- The log: every call into each side's WorkerCore (model/runtime.py) with the time, its arguments
  and its result (the actions), and the Scheduler's final states.

What it proves: for this trace (slot limits, an empty fetch, fetch backoff during outages and its end
on the first successful call, heartbeat cancels, a push cancel, an abandon after a lease expired in an
outage, a run-deadline timeout, reports kept through an outage, a report given up when its lease ran
out, a refused report) both adapters feed the core the same events at the same times and perform the
same actions. The trace runs twice: with one report call per report, and with report-and-fetch
(carry_reports: reports ride FetchWork; both fake backends then take them with the fetch). What it
does not: threads (blocking handlers), gRPC, or non-zero simulated CPU costs.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import inspect
import selectors
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import pytest

from model.config import CoreConfig
from model.errors import DtqError, InvalidArgument, StaleAttempt, Unavailable
from model.ids import JobIdFactory
from model.job import Assignment, JobSpec, Outcome, RetryPolicy
from model.runtime import MIN_EMPTY_POLL, HeartbeatReply, Key, WorkerCore
from model.scheduler import Scheduler
from model.workload import JobDraw, OpenLoop, WorkloadSpec
from realsys.worker import HandlerRegistry, JobContext, WorkerRuntime
from sim.api import SimConfig, build
from sim.params import SimParams
from sim.worker import SimWorker

CONFIG = CoreConfig(
    lease_duration=0.93,
    heartbeat_interval=0.137,
    worker_ttl=9.0,
    default_initial_backoff=0.0531,
    default_max_backoff=0.2,
    default_max_attempts=3,
)
SLOTS = 2
FETCH_WAIT = 0.611
# each way; one per call so that a fetch and a report started together do not stay in lockstep
FETCH_LATENCY = 0.00313
HEARTBEAT_LATENCY = 0.00271
REPORT_LATENCY = 0.00419
POLL = 0.0173  # the fake FetchWork rechecks for work this often
END = 9.0
WORKER = "w1"


@dataclass(frozen=True, slots=True)
class TraceJob:
    at: float
    duration: float
    timeout: float = 0.0  # execution timeout; 0: the config's default
    attempts: int = 0  # max attempts; 0: the config's default


# name -> job; times chosen so that no two events of the trace coincide
JOBS = {
    "a": TraceJob(0.0113, 0.2017),
    "b": TraceJob(0.0127, 0.5071),
    "c": TraceJob(0.0511, 0.3037),  # waits for a slot
    "d": TraceJob(0.9013, 4.0, timeout=0.4019),  # runs past its run deadline
    "e": TraceJob(1.3031, 3.0),  # cancelled by a client: a heartbeat reply carries the cancel
    "f": TraceJob(1.4041, 0.1009),  # ends in the first outage: its report is kept until it is back
    "g": TraceJob(2.9017, 2.5, attempts=2),  # outlives a lease in the second outage: abandoned
    "h": TraceJob(3.0019, 0.3011),  # ends in the second outage; its lease runs out: report given up
    "i": TraceJob(6.0037, 0.2003),  # its report is refused
    "j": TraceJob(6.3011, 5.0),  # cancelled by push (NotifyCancel)
}
CLIENT_CANCELS = {"e": 1.6057, "j": 6.7013}
PUSH_CANCELS = {"j": 6.7029}  # worker.cancel(job, attempt 1): NotifyCancel reaching the worker
OUTAGES = [(1.4531, 2.3017), (3.1013, 4.6019)]
DRAINING = [(7.5013, 7.9031)]  # fetches come back empty at once (a backend that does not long-poll)
REFUSED = {"i"}


class TraceServer:
    """The backend's behaviour, as data in and out; each side wraps it in its own time."""

    def __init__(self) -> None:
        self.sched = Scheduler(CONFIG, JobIdFactory("t", "1"))
        self.ids: dict[str, str] = {}
        self.durations: dict[str, float] = {}
        self._submits = sorted(JOBS.items(), key=lambda item: item[1].at)
        self._cancels = sorted(CLIENT_CANCELS.items(), key=lambda item: item[1])

    def advance(self, now: float) -> None:
        """Applies the trace's client requests due by `now`, then the Scheduler's timers."""
        while self._submits and self._submits[0][1].at <= now:
            name, job = self._submits.pop(0)
            spec = JobSpec.make(
                "trace",
                name.encode(),
                execution_timeout=job.timeout,
                retry=RetryPolicy(max_attempts=job.attempts),
            )
            job_id = self.sched.submit(job.at, spec).job.job_id
            self.ids[name] = job_id
            self.durations[job_id] = job.duration
        while self._cancels and self._cancels[0][1] <= now:
            name, at = self._cancels.pop(0)
            self.sched.cancel(at, self.ids[name])
        self.sched.handle_timer(now)

    def _check_up(self, now: float, call: str) -> None:
        self.advance(now)
        if any(start <= now < end for start, end in OUTAGES):
            raise Unavailable(f"{call}: the backend is down")

    def fetch(self, now: float, free_slots: int) -> list[Assignment] | None:
        """None: nothing yet, poll again; [] at once while draining."""
        self._check_up(now, "fetch")
        if any(start <= now < end for start, end in DRAINING):
            return []
        return self.sched.fetch(now, WORKER, free_slots) or None

    def heartbeat(self, now: float, total: int, free: int, running: list[tuple[str, int]]) -> HeartbeatReply:
        self._check_up(now, "heartbeat")
        renewal = self.sched.heartbeat(now, WORKER, total, free, running)
        return HeartbeatReply(
            renewal.cancel, renewal.abandon, CONFIG.heartbeat_interval, CONFIG.lease_duration
        )

    def report(self, now: float, job_id: str, attempt: int, outcome: Outcome) -> None:
        self._check_up(now, "report")
        if job_id in (self.ids.get(name) for name in REFUSED):
            raise InvalidArgument("this report is refused")
        with contextlib.suppress(StaleAttempt):  # as the real backends: logged, not raised
            self.sched.report(now, WORKER, job_id, attempt, outcome)

    def reports(self, now: float, reports: tuple[tuple[Key, Outcome], ...]) -> list[DtqError | None]:
        """Report-and-fetch: the carried reports' verdicts (the whole call fails in an outage)."""
        self._check_up(now, "fetch")
        verdicts: list[DtqError | None] = []
        for (job_id, attempt), outcome in reports:
            try:
                self.report(now, job_id, attempt, outcome)
            except InvalidArgument as exc:
                verdicts.append(exc)
            else:
                verdicts.append(None)
        return verdicts

    def final_states(self) -> dict[str, tuple[str, int]]:
        out = {}
        for name, job_id in sorted(self.ids.items()):
            job = self.sched.jobs.get(job_id)
            out[name] = (job.state.name, job.attempt)
        return out


Log = list[tuple[Any, ...]]
LOGGED = (
    "next_fetch",
    "fetched",
    "fetch_failed",
    "carried_failed",
    "heartbeat",
    "heartbeat_replied",
    "heartbeat_failed",
    "heartbeat_wait",
    "cancel",
    "begin",
    "deadline_passed",
    "handler_ended",
    "released",
    "reported",
    "report_failed",
)


def instrument(core: WorkerCore, clock: Callable[[], float], log: Log) -> None:
    """Records every call into the core (instance attributes shadow the methods)."""

    def wrap(name: str) -> None:
        original = getattr(core, name)
        signature = inspect.signature(original)

        def logged(*args: Any, **kwargs: Any) -> Any:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            arguments.pop("now", None)
            if name == "handler_ended":  # the adapters word a stopped handler's failure differently
                arguments["outcome"] = type(arguments["outcome"]).__name__
            result = original(*args, **kwargs)
            log.append((round(clock(), 9), name, repr(arguments), repr(result)))
            return result

        setattr(core, name, logged)

    for name in LOGGED:
        wrap(name)


# ------------------------------------------------------------------------------ the real side
class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose clock, when nothing is ready, jumps to its next timer instead of waiting."""

    def __init__(self) -> None:
        self._virtual_now = 0.0
        super().__init__(_JumpingSelector(self))

    def time(self) -> float:
        return self._virtual_now


class _JumpingSelector(selectors.DefaultSelector):
    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        scheduled = self._loop._scheduled  # type: ignore[attr-defined]  # the loop's timer heap
        if not scheduled:
            raise RuntimeError("deadlock: nothing ready and no timer")
        self._loop._virtual_now = max(self._loop._virtual_now, heapq.nsmallest(1, scheduled)[0].when())
        return events


class RealBackend:
    """WorkerBackend over a TraceServer, in the loop's time."""

    def __init__(self, server: TraceServer, clock: Callable[[], float]) -> None:
        self.server = server
        self.clock = clock

    async def fetch_and_report(
        self, worker_id: str, free_slots: int, wait: float, reports: tuple[tuple[Key, Outcome], ...]
    ) -> tuple[list[Assignment], list[DtqError | None]]:
        start = self.clock()
        await asyncio.sleep(FETCH_LATENCY)
        verdicts = self.server.reports(self.clock(), reports)
        return await self._poll(start, free_slots, wait), verdicts

    async def fetch(self, worker_id: str, free_slots: int, wait: float) -> list[Assignment]:
        start = self.clock()
        await asyncio.sleep(FETCH_LATENCY)
        return await self._poll(start, free_slots, wait)

    async def _poll(self, start: float, free_slots: int, wait: float) -> list[Assignment]:
        while True:
            taken = self.server.fetch(self.clock(), free_slots)
            if taken is not None or self.clock() - start >= wait:
                await asyncio.sleep(FETCH_LATENCY)
                return taken or []
            await asyncio.sleep(POLL)

    async def heartbeat(
        self, worker_id: str, total_slots: int, free_slots: int, running: list[tuple[str, int]]
    ) -> HeartbeatReply:
        await asyncio.sleep(HEARTBEAT_LATENCY)
        reply = self.server.heartbeat(self.clock(), total_slots, free_slots, running)
        await asyncio.sleep(HEARTBEAT_LATENCY)
        return reply

    async def report(self, worker_id: str, job_id: str, attempt: int, outcome: Outcome) -> None:
        await asyncio.sleep(REPORT_LATENCY)
        self.server.report(self.clock(), job_id, attempt, outcome)
        await asyncio.sleep(REPORT_LATENCY)


def run_real(carry: bool = False) -> tuple[Log, dict[str, tuple[str, int]]]:
    loop = VirtualTimeLoop()
    log: Log = []
    server = TraceServer()

    async def main() -> None:
        handlers = HandlerRegistry()

        async def trace(ctx: JobContext) -> bytes:
            await asyncio.sleep(server.durations[ctx.job_id])
            return b""

        handlers.register("trace", trace)
        runtime = WorkerRuntime(
            WORKER,
            SLOTS,
            RealBackend(server, loop.time),
            handlers,
            heartbeat_interval=CONFIG.heartbeat_interval,
            fetch_wait=FETCH_WAIT,
            lease_duration=CONFIG.lease_duration,
            seed=1,
            clock=loop.time,
            carry_reports=carry,
        )
        instrument(runtime.core, loop.time, log)
        for name, at in PUSH_CANCELS.items():
            loop.call_at(at, lambda name=name: runtime.cancel(server.ids[name], 1))
        await runtime.start()
        await asyncio.sleep(END)
        log.append((END, "end"))
        await runtime.stop()

    try:
        loop.run_until_complete(main())
    finally:
        loop.close()
    return log[: log.index((END, "end"))], server.final_states()


# ------------------------------------------------------------------------------- the sim side
@dataclass
class SimBackend:
    """sim.worker.WorkerBackend over a TraceServer, in simulated time."""

    server: TraceServer
    env: Any
    jobs: dict[str, JobDraw] = field(default_factory=dict)  # the cluster's: what SimWorker's handlers run
    carries_reports: bool = False

    def fetch_and_report(
        self, worker: SimWorker, free_slots: int, wait: float, reports: tuple[tuple[Key, Outcome], ...]
    ) -> Generator[Any, Any, tuple[list[Assignment], list[DtqError | None]]]:
        start = self.env.now
        yield self.env.timeout(FETCH_LATENCY)
        verdicts = self.server.reports(self.env.now, reports)
        taken = yield from self._poll(start, free_slots, wait)
        return taken, verdicts

    def fetch(self, worker: SimWorker, free_slots: int, wait: float) -> Generator[Any, Any, list[Assignment]]:
        start = self.env.now
        yield self.env.timeout(FETCH_LATENCY)
        return (yield from self._poll(start, free_slots, wait))

    def _poll(self, start: float, free_slots: int, wait: float) -> Generator[Any, Any, list[Assignment]]:
        env = self.env
        while True:
            taken = self.server.fetch(env.now, free_slots)
            self.jobs.update((k, JobDraw("sleep", d)) for k, d in self.server.durations.items())
            if taken is not None or env.now - start >= wait:
                yield env.timeout(FETCH_LATENCY)
                return taken or []
            yield env.timeout(POLL)

    def heartbeat(
        self, worker: SimWorker, total_slots: int, free_slots: int, running: list[tuple[str, int]]
    ) -> Generator[Any, Any, HeartbeatReply]:
        yield self.env.timeout(HEARTBEAT_LATENCY)
        reply = self.server.heartbeat(self.env.now, total_slots, free_slots, running)
        yield self.env.timeout(HEARTBEAT_LATENCY)
        return reply

    def report(
        self, worker: SimWorker, job_id: str, attempt: int, outcome: Outcome, pre: float = 0.0
    ) -> Generator[Any, Any, None]:
        yield self.env.timeout(REPORT_LATENCY)
        self.server.report(self.env.now, job_id, attempt, outcome)
        yield self.env.timeout(REPORT_LATENCY)


def run_sim(carry: bool = False) -> tuple[Log, dict[str, tuple[str, int]]]:
    params = SimParams.ideal(core=CONFIG, fetch_wait=FETCH_WAIT, min_empty_poll=MIN_EMPTY_POLL)
    env, cluster, _ = build(SimConfig("micro", WorkloadSpec(OpenLoop(1.0)), params))  # not started
    server = TraceServer()
    backend = SimBackend(server, env, cluster.draws, carries_reports=carry)
    proc = next(p for p in cluster.procs if p.role == "worker")
    worker = SimWorker(cluster, WORKER, SLOTS, proc, backend)
    log: Log = []
    instrument(worker.core, lambda: float(env.now), log)
    for name, at in PUSH_CANCELS.items():
        env.timeout(at).callbacks.append(lambda _, name=name: worker.cancel(server.ids[name], 1))
    worker.start()
    env.run(until=END)
    return log, server.final_states()


# ------------------------------------------------------------------------------------ the test
@pytest.fixture(scope="module")
def logs() -> tuple[tuple[Log, dict[str, tuple[str, int]]], tuple[Log, dict[str, tuple[str, int]]]]:
    return run_real(), run_sim()


@pytest.fixture(scope="module")
def carried_logs() -> tuple[tuple[Log, dict[str, tuple[str, int]]], tuple[Log, dict[str, tuple[str, int]]]]:
    return run_real(carry=True), run_sim(carry=True)


def test_both_adapters_make_the_same_decisions(logs: Any) -> None:
    (real_log, real_states), (sim_log, sim_states) = logs
    assert len(real_log) > 200
    for i, (real, sim) in enumerate(zip(real_log, sim_log, strict=False)):
        assert real == sim, f"first difference at entry {i}:\nreal {real}\nsim  {sim}"
    assert len(real_log) == len(sim_log)
    assert real_states == sim_states


def test_the_trace_exercises_every_rule(logs: Any) -> None:
    """The log shows each rule at work (else the comparison above would prove less than it says)."""
    (log, states), _ = logs
    text = "\n".join(map(repr, log))
    for shown in (
        "AwaitSlot()",  # more jobs than slots
        f"Sleep(seconds={MIN_EMPTY_POLL}, wakeable=False)",  # empty fetches that came back at once
        "'fetch_failed'",  # outages: the fetch backs off ...
        "wakeable=True",
        "WakeFetch()",  # ... until a slot frees or a call succeeds
        "Interrupt(key=",
        "reason='cancel'",
        "reason='abandon'",
        "reason='timeout'",
        "RetryReport(",  # reports kept through an outage
        "reason='lease lost'",
        "reason='refused'",
    ):
        assert shown in text, shown
    assert states == {
        "a": ("SUCCEEDED", 1),
        "b": ("SUCCEEDED", 1),
        "c": ("SUCCEEDED", 1),
        "d": ("FAILED", 3),  # ran past its run deadline on every attempt
        "e": ("CANCELLED", 1),  # a heartbeat reply carried the cancel
        "f": ("SUCCEEDED", 1),  # its report waited out the first outage
        "g": ("SUCCEEDED", 2),  # its lease expired in the second outage: abandoned, then ran again
        "h": ("SUCCEEDED", 2),  # its report was given up with the lease; it ran again
        "i": ("RUNNING", 3),  # every report refused: attempts end by lease expiry
        "j": ("CANCELLED", 1),  # the push cancel stopped it before any heartbeat
    }


def test_both_adapters_make_the_same_decisions_with_report_and_fetch(carried_logs: Any) -> None:
    test_both_adapters_make_the_same_decisions(carried_logs)


def test_report_and_fetch_carries_reports_and_ends_as_one_call_per_report_does(
    logs: Any, carried_logs: Any
) -> None:
    (log, states), _ = carried_logs
    text = "\n".join(map(repr, log))
    for shown in ("carried=True", "reports=((", "'carried_failed'", "RetryReport(", "reason='refused'"):
        assert shown in text, shown
    assert states == logs[0][1]  # the same final states as with one report call per report
