"""The parts both designs share: processes on hosts, RPC hops, core timers, long-poll wake-ups.

Every scheduling and state decision is made by the core objects (model/) the real services run, fed
`now = env.now`. This module only adds time: CPU bursts on processes (sim/cpu.py), network hops,
storage commits, and the waits of long-polls and timers.

An RPC `call(caller, server, to=callee)` is what a grpc.aio unary call costs: the caller's client-side
CPU (send part), one hop, the server-side generator (its bursts on the callee, maybe nested calls and
waits), one hop back, the caller's client-side CPU (receive part). A hop is `network`, plus `host_hop`
when caller and callee are on different hosts. With rpc_thread* > 0, gRPC's threads of the callee
take the call as it arrives, and the caller's the reply, on a core beside the loop (Proc.threads).
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from heapq import heappop, heappush
from typing import Any, TypeAlias, TypeVar, cast

import simpy
from simpy.core import StopSimulation
from simpy.events import NORMAL, PENDING, URGENT, EventPriority, Initialize, Process, Timeout

from model.errors import DtqError
from model.job import Job, JobError, JobSpec, validate_spec
from model.jobs import JobTable
from model.states import JobState
from model.timer import TimerRule
from model.workload import JobDraw
from sim.cpu import CostModel, Host, OverlapHost, Proc, _Burst
from sim.draws import Draws
from sim.idcolumns import JobFloats
from sim.params import SimParams

T = TypeVar("T")
SimGen: TypeAlias = Generator[Any, Any, T]

# Collector thresholds while a simulation runs (Python's defaults: 700, 10, 10). A run keeps a
# growing heap of jobs and records; with the defaults the full (oldest-generation) collection re-walks
# it every ~70k allocations (cProfile charged those pauses to whichever core call happened to allocate:
# model/jobs.py `complete` looked like 27% of the time). The young generations keep their defaults
# (raising gen0 to 50k made short runs slower); a full collection comes 100x less often, which costs
# memory: cyclic garbage (finished generator processes) waits for it (measured peak RSS of the 100-node
# what-if: 5k jobs 245 MB instead of 96 MB, 20k jobs 538 MB instead of 171 MB; each full collection
# frees it, so it should not grow with run length, but a 1M-job run was not measured).
GC_THRESHOLDS = (700, 10, 1000)


@contextmanager
def batched_gc() -> Iterator[None]:
    """Raises the collector's thresholds for the duration, then restores them (no effect on the
    simulated outcome: nothing in sim/ or model/ uses finalizers or weak references)."""
    old = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*old)


def status_of(error: DtqError) -> str:
    """The gRPC status code name the edge would answer with (realsys.status maps the same codes)."""
    return error.code.value


class _Process(Process):
    """simpy's Process with its `_resume` for the common step kept short: the generator's `send`
    bound once, the environment read once. The same steps in the same order as simpy's (the value
    sent or the exception thrown, the end scheduled, the callback registered)."""

    _send: Callable[[Any], Any]

    def _resume(self, event: simpy.Event) -> None:
        env = self.env
        env._active_proc = self
        while True:
            try:
                if event._ok:
                    event = self._send(event._value)
                else:
                    event._defused = True
                    exc = type(event._value)(*event._value.args)
                    exc.__cause__ = event._value
                    event = self._generator.throw(exc)
            except StopIteration as e:
                event = None  # type: ignore[assignment]
                self._ok = True
                self._value = e.args[0] if e.args else None
                if self.callbacks:  # SimEnv.schedule, inlined: an end nobody waits for is not scheduled
                    heappush(env._queue, (env._now, NORMAL, next(env._eid), self))
                else:
                    self.callbacks = None  # type: ignore[assignment]  # simpy's mark of a processed event
                break
            except BaseException as e:
                event = None  # type: ignore[assignment]
                self._ok = False
                e.__traceback__ = e.__traceback__.tb_next  # type: ignore[union-attr]
                self._value = e
                env.schedule(self)
                break
            try:
                callbacks = event.callbacks
            except AttributeError:
                if hasattr(event, "callbacks"):
                    raise
                raise RuntimeError(f'Invalid yield value "{event}"') from None
            if callbacks is not None:
                callbacks.append(self._resume)
                break
        self._target = event
        env._active_proc = None


class _Started:
    """What `SimEnv.start` resumes a new process with: an event that succeeded with None."""

    _ok = True
    _value = None


_STARTED = _Started()


def start_now(env: simpy.Environment, generator: SimGen[Any]) -> Process:
    """`SimEnv.start` under the simulator's environment; simpy's `process` under another."""
    if isinstance(env, SimEnv):
        return env.start(generator)
    return env.process(generator)


class SimEnv(simpy.Environment):
    """simpy.Environment with a tighter event loop and one event fewer per fire-and-forget process.

    - A process that ends with no one waiting for it (a spawned request, a supervisor) is marked
      processed at once instead of scheduling its (callback-less) end event: nothing observes the
      difference but the event count. A failed process is still scheduled, so its error crashes the
      run as in simpy.
    - `run(until=event)` and `run(until=time)` step in one loop without a method call per event;
      the semantics are simpy's Environment.step/run (failed, undefused events raise;
      StopSimulation ends the run).
    - The loop releases a CPU burst's process (sim/cpu.py `_Burst`: `_proc._finish`) after the
      burst's callbacks, where simpy would need one more callback per burst to put it there
      (`finishes_bursts`; a Proc under plain simpy still adds that callback).
    - `timeout` and `process` build simpy's own Timeout / Process (and its Initialize) and schedule
      them as their constructors do, the same entries in the same order, without the bound-class
      lookup (simpy binds those only for Environment itself, not for a subclass) and the nested
      constructor and `schedule` calls: two of the commonest steps per simulated job. Its
      processes resume through `_Process._resume`, simpy's steps with fewer lookups.
    - `start` begins a process inside its caller's step, without an Initialize event, where that
      cannot be told apart (the open-loop generator's requests; tests/sim/test_shortcut_equivalence.py).
    """

    def timeout(self, delay: float = 0, value: Any = None) -> Timeout:
        if delay < 0:
            raise ValueError(f"Negative delay {delay}")
        event = Timeout.__new__(Timeout)
        event.env = self
        event.callbacks = []
        event._value = value
        event._delay = delay
        event._ok = True
        heappush(self._queue, (self._now + delay, NORMAL, next(self._eid), event))
        return event

    def process(self, generator: SimGen[Any]) -> Process:
        if not hasattr(generator, "throw"):
            raise ValueError(f"{generator} is not a generator.")
        proc = _Process.__new__(_Process)
        proc.env = self
        proc.callbacks = []
        proc._generator = generator
        proc._send = generator.send
        init = Initialize.__new__(Initialize)
        init.env = self
        init.callbacks = [proc._resume]
        init._value = None
        init._ok = True
        heappush(self._queue, (self._now, URGENT, next(self._eid), init))
        proc._target = init
        return proc

    # Processes started by `start` take their first step at once (False: as `process`, behind an
    # Initialize event; tests/sim/test_shortcut_equivalence.py runs both ways).
    inline_start = True

    def start(self, generator: SimGen[Any]) -> Process:
        """A process whose first step runs now, inside the caller's step, instead of behind an
        Initialize event at the same instant: one scheduled event fewer. For a caller that yields
        right after (or does nothing the child's first step could observe). One consequence beyond
        the order of same-instant steps: a burst the child queues finds its process's loop still busy
        with the caller's burst, so it pays no wake-up (sim/cpu.py `wakeup`), where behind an
        Initialize the loop would have gone idle for zero seconds and woken again (an asyncio task
        created in a step runs before its loop sleeps). With wake-ups free the two are the same."""
        if not self.inline_start:
            return self.process(generator)
        proc = _Process.__new__(_Process)
        proc.env = self
        proc.callbacks = []
        proc._generator = generator
        proc._send = generator.send
        active = self._active_proc
        proc._resume(_STARTED)  # type: ignore[arg-type]
        self._active_proc = active
        return proc

    def schedule(self, event: simpy.Event, priority: EventPriority = NORMAL, delay: float = 0) -> None:
        if type(event) is _Process and not event.callbacks and event._ok:
            event.callbacks = None  # type: ignore[assignment]  # simpy's mark of a processed event
            return
        heappush(self._queue, (self._now + delay, priority, next(self._eid), event))

    finishes_bursts = True  # _loop releases a CPU burst's loop after its callbacks (sim/cpu.py _Burst)

    def run(self, until: float | simpy.Event | None = None) -> Any:
        if until is not None and not isinstance(until, simpy.Event):
            # simpy's Environment.run(until=time): an event at that time, before anything else then
            at = until if isinstance(until, int) else float(until)
            if at <= self._now:
                raise ValueError(f"until ({at}) must be greater than the current simulation time")
            until = simpy.Event(self)
            until._ok = True
            until._value = None
            self.schedule(until, URGENT, at - self._now)
        if until is not None:
            if until.callbacks is None:
                return until.value
            until.callbacks.append(StopSimulation.callback)
        with batched_gc():
            return self._loop(until)

    def _loop(self, until: simpy.Event | None) -> Any:
        queue: list[Any] = self._queue
        try:
            while queue:
                self._now, _, _, event = heappop(queue)
                callbacks, event.callbacks = event.callbacks, None
                try:
                    for callback in callbacks:
                        callback(event)
                    if type(event) is _Burst:
                        event._proc._finish(event)
                except StopSimulation:
                    event.callbacks = callbacks[callbacks.index(callback) + 1 :]
                    heappush(queue, (self._now, URGENT - 1, next(self._eid), event))
                    raise
                if not event._ok and not hasattr(event, "_defused"):
                    exc = type(event._value)(*event._value.args)
                    exc.__cause__ = event._value
                    raise exc
        except StopSimulation as stop:
            return stop.args[0]
        if until is not None:
            raise RuntimeError(f'No scheduled events left but "until" event was not triggered: {until}')
        return None


class Cluster:
    """Base of both designs: the environment, hosts, processes and the client-facing interface."""

    design = ""

    def __init__(self, env: simpy.Environment, params: SimParams, costs: CostModel) -> None:
        self.env = env
        self.params = params
        self.costs = costs
        scope = params.wakeup_idle_scope
        self.hosts = [
            OverlapHost(env, f"h{i}", params.cores, params.cpu_slice, params.wakeup_warm_handover)
            if scope == "overlap"
            else Host(f"h{i}", params.cores, params.cpu_slice, params.wakeup_warm_handover, scope == "host")
            for i in range(params.hosts)
        ]
        self._host_hops = params.hosts > 1 and not params.host_hop.is_zero
        self.procs: list[Proc] = []
        self._placed = 0
        self.draws = Draws()  # job id -> the job as the trace drew it (what its handler does)
        # job id -> when its owner saw it end: kept only for a load generator without waiters, the one
        # reader (it sets on_terminal)
        self.terminal_at = JobFloats()  # job id -> when it ended (first seen)
        self.on_terminal: Callable[[str], None] | None = None
        self.counters: dict[str, int] = {}
        self._specs: dict[str, JobSpec] = {}  # job type -> the spec of jobs with no other setting
        self._wheel = TimeoutWheel(env)

    # ------------------------------------------------------------------ set-up
    def add_proc(self, name: str, role: str, index: int) -> Proc:
        """A server process, placed on hosts in creation order."""
        per = self.params.procs_per_host
        host = self.hosts[min(len(self.hosts) - 1, self._placed // per)] if per else self.hosts[0]
        self._placed += 1
        proc = Proc(self.env, host, name, role, index, self.costs)
        self.procs.append(proc)
        self._add_threads(proc)
        return proc

    def add_loadgen_proc(self, index: int) -> Proc:
        proc = Proc(
            self.env,
            self.hosts[self.params.loadgen_host],
            f"loadgen{index}",
            "loadgen",
            1000 + index,
            self.costs,
        )
        self.procs.append(proc)
        self._add_threads(proc)
        return proc

    def _add_threads(self, proc: Proc) -> None:
        """gRPC's threads beside the process's loop, when they cost anything (rpc_thread*)."""
        if not (self.params.rpc_thread.is_zero and self.params.rpc_thread_client.is_zero):
            self.procs.append(proc.threads())

    def start(self) -> None:
        raise NotImplementedError

    def start_checkpointer(self, owner: Proc) -> None:
        """realsys/storage.py's WAL checkpoint thread for a store `owner` keeps: every
        checkpoint_interval a burst on the host's cores but not on the owner's loop (sqlite releases
        the GIL while it checkpoints). Off while `checkpoint` costs nothing."""
        if self.params.checkpoint.is_zero:
            return
        thread = Proc(
            self.env, owner.host, f"{owner.name}-checkpoint", "checkpoint", 500 + owner.index, self.costs
        )
        self.procs.append(thread)
        sample = self.costs.checkpoint_sampler(owner)
        interval = self.params.checkpoint_interval

        def loop() -> SimGen[None]:
            while True:
                yield self.env.timeout(interval)
                yield thread.run(sample())

        self.env.process(loop())

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def job_finished(self, job_id: str) -> None:
        if self.on_terminal is not None and job_id not in self.terminal_at:
            self.terminal_at[job_id] = self.env._now
            self.on_terminal(job_id)

    # ------------------------------------------------------------------ time
    def hop(self, src: Proc, dst: Proc | None) -> float:
        """One way from `src` to `dst`: `network`, plus `host_hop` when they are on different hosts
        (`dst` None: a peer on src's host). Both from src's streams."""
        d: float = src.net()
        if self._host_hops and dst is not None and dst.host is not src.host:
            d += src.host_hop()
        return d

    def call(
        self,
        caller: Proc,
        server: SimGen[T],
        pre: float | Callable[[float], float] = 0.0,
        to: Proc | None = None,
    ) -> SimGen[T]:
        """One unary RPC from `caller` to the process `to`: client CPU, hop, the server side, hop back,
        client CPU.

        `pre` is the caller's own work in the same loop step before the stub call (a handler up to its
        first await): CPU seconds, or an action `(now) -> CPU seconds` run when the step starts. It
        shares one burst with the send, as it shares the real step."""
        env = self.env
        c = caller.client()
        send = c * self.params.client_send_fraction
        if callable(pre):
            action = pre
            yield caller.run(lambda now: (send + action(now), None))
        elif send + pre:
            yield caller.run(send + pre)
        # self.hop(caller, to) there and back, without the calls
        far = self._host_hops and to is not None and to.host is not caller.host
        d = caller.net() + caller.host_hop() if far else caller.net()
        if d:
            yield env.timeout(d)
        taken = to.rpc_in() if to is not None and to.io is not None else None  # io: gRPC threads
        if taken is not None:
            yield taken  # the callee's gRPC threads read the call before its loop does
        value = yield from server
        d = caller.net() + caller.host_hop() if far else caller.net()
        if d:
            yield env.timeout(d)
        taken = caller.rpc_out() if caller.io is not None else None
        if taken is not None:
            yield taken
        if c - send:
            yield caller.run(c - send)
        return value

    def entry_hops(self, src: Proc, dst: Proc, server: SimGen[T]) -> SimGen[T]:
        """A client's request at its entry process: the hop from the load generator's `src` to `dst`,
        `server` there, and the hop back on `dst`'s streams (self.hop(src, dst) there and
        self.hop(dst, src) back, without the calls)."""
        far = self._host_hops and dst.host is not src.host
        d = src.net() + src.host_hop() if far else src.net()
        if d:
            yield self.env.timeout(d)
        taken = dst.rpc_in() if dst.io is not None else None  # gRPC's threads (rpc_thread)
        if taken is not None:
            yield taken
        value = yield from server
        d = dst.net() + dst.host_hop() if far else dst.net()
        if d:
            yield self.env.timeout(d)
        taken = src.rpc_out() if src.io is not None else None
        if taken is not None:
            yield taken
        return value

    def gather(self, calls: list[SimGen[T]]) -> SimGen[list[T]]:
        """asyncio.gather of concurrent calls, in order."""
        procs = [self.env.process(c) for c in calls]
        if procs:
            yield AllDone(self.env, procs)
        return [cast(T, p.value) for p in procs]

    def spawn(self, gen: SimGen[Any]) -> None:
        """A background task (asyncio.create_task / MicroRole.spawn)."""
        self.env.process(gen)

    def waitable(
        self, timeout: float, on_timeout: Callable[[simpy.Event], None] | None = None
    ) -> simpy.Event:
        """An event that fires by itself after `timeout` unless `wake` fired it first: a long-poll's
        wait (asyncio.wait_for(event.wait(), timeout)) without simpy's AnyOf machinery. `on_timeout`
        is told the moment it times out (a driver that must not pick it for a wake-up any more)."""
        event = simpy.Event(self.env)
        self._wheel.add(event, max(0.0, timeout), on_timeout)
        return event

    # ------------------------------------------------------------------ client API (one request)
    def request_submit(self, lg: LoadgenPart, job: JobDraw) -> SimGen[tuple[str, str]]:
        raise NotImplementedError

    def request_status(self, lg: LoadgenPart, job_id: str) -> SimGen[tuple[str, Any]]:
        raise NotImplementedError

    def request_result(self, lg: LoadgenPart, job_id: str) -> SimGen[tuple[str, Any]]:
        raise NotImplementedError

    def request_cancel(self, lg: LoadgenPart, job_id: str) -> SimGen[tuple[str, Any]]:
        raise NotImplementedError

    def request_list(self, lg: LoadgenPart, page_size: int) -> SimGen[tuple[str, Any]]:
        raise NotImplementedError

    def request_wait(self, lg: LoadgenPart, job_id: str, poll: float) -> SimGen[tuple[str, Any]]:
        """WaitJob: returns ("OK", (state, attempts)) when the job ended or the poll ran out."""
        raise NotImplementedError

    # ------------------------------------------------------------------ faults and inspection
    def kill_worker(self, target: str, restart_after: float | None) -> None:
        raise NotImplementedError

    def job_state(self, job_id: str) -> tuple[JobState, int]:
        """The owner's current (state, attempt) of a job."""
        raise NotImplementedError

    def core_counters(self) -> dict[str, int]:
        raise NotImplementedError

    def find_job(self, job_id: str) -> Job | None:
        """The owner's record of a job (None: unknown)."""
        raise NotImplementedError

    def job_reason(self, job_id: str) -> str:
        """The error reason of a job that ended FAILED or CANCELLED, as WaitJob's reply carries it."""
        job = self.find_job(job_id)
        return job.error.reason if job is not None and job.done and job.error is not None else ""

    def spec_of(self, job: JobDraw) -> JobSpec:
        """The spec a job is submitted with (no payload: the simulator carries sizes, not bytes)."""
        if not job.plain:
            return job.spec()
        spec = self._specs.get(job.job_type)
        if spec is None:
            spec = self._specs[job.job_type] = JobSpec.make(job.job_type)
        return spec

    def submit_job(self, job_id: str, job: JobDraw) -> None:
        self.draws[job_id] = job

    def payload_of(self, job_id: str) -> int:
        """A job's payload size in bytes (per_byte costs on the paths that carry it; 0: unknown)."""
        job = self.draws.get(job_id)
        return job.payload_bytes if job is not None else 0

    def prefill(
        self, finished: Sequence[tuple[JobDraw, str]], pending: Sequence[JobDraw], now: float
    ) -> None:
        """A table state to start from (the workload's prefill): `finished` jobs restored as a store
        loads them (state "succeeded", "failed" or "cancelled"), `pending` ones submitted to the core,
        spread over the owners as the load generator's submits are. No simulated time passes."""
        raise NotImplementedError


def finished_record(table: JobTable, now: float, spec: JobSpec, state: str) -> Job:
    """The record of a job that ended in `state` at `now`, as a store would hold it (JobTable.restore)."""
    final = JobState[state.upper()]
    error = None
    if final is JobState.FAILED:
        error = JobError("prefill: failed", False, "HANDLER_ERROR")
    elif final is JobState.CANCELLED:
        error = JobError("cancelled by client", reason="CANCELLED")
    spec = replace(spec, payload=b"")
    ran = final is not JobState.CANCELLED
    return Job(
        table.ids.new_id(),
        spec,
        validate_spec(spec, table.config),
        create_time=now,
        state=final,
        attempt=1 if ran else 0,
        update_time=now,
        start_time=now if ran else None,
        end_time=now,
        error=error,
    )


class AllDone(simpy.Event):
    """simpy's AllOf for `gather`, without its ConditionValue: fires (value None) when every event
    has, or fails with the first failure, at the same points and in the same order as AllOf (its
    `_check` is AllOf's, its callbacks are the waiter's alone)."""

    def __init__(self, env: simpy.Environment, events: Sequence[simpy.Event]) -> None:
        self.env = env
        self.callbacks = []
        self._value = PENDING
        self._left = len(events)
        check = self._check
        for event in events:
            if event.callbacks is None:
                check(event)
            else:
                event.callbacks.append(check)

    def _check(self, event: simpy.Event) -> None:
        if self._value is not PENDING:
            return
        if not event._ok:
            event._defused = True
            self.fail(event._value)
            return
        self._left -= 1
        if not self._left:
            self.succeed()


def wake(event: simpy.Event, value: Any = True) -> None:
    """Fires a waitable event unless it already fired (asyncio.Event.set on a set event is a no-op)."""
    if event._value is PENDING:  # not event.triggered, without the property
        event.succeed(value)


class _Wait:
    """One long-poll wait in its duration's FIFO: its deadline, its event and what to tell when it
    times out. It is also a callback of its event: woken early, it lets go of the event and the
    callable at once (the wait stays a 48-byte shell in the FIFO until compaction or its deadline)."""

    __slots__ = ("deadline", "event", "on_timeout")

    def __init__(
        self, deadline: float, event: simpy.Event, on_timeout: Callable[[simpy.Event], None] | None
    ) -> None:
        self.deadline = deadline
        self.event: simpy.Event | None = event
        self.on_timeout = on_timeout

    def __call__(self, _: simpy.Event) -> None:
        self.event = self.on_timeout = None

    def pending(self) -> bool:
        return self.event is not None and self.event._value is PENDING


class _Fifo:
    """The waits of one duration, in the order they began (a list and the index of its head), and
    the wheel's armed timer for the oldest pending one: this object itself is the entry in the event
    queue (what simpy's Timeout would be, at the same time and with the same priority and sequence
    number), so a duration costs no Timeout, closure or deque of its own."""

    __slots__ = ("armed", "callbacks", "head", "limit", "timeout", "waits", "wheel")
    _ok = True  # an event that succeeded (what the event loop checks after its callbacks)

    def __init__(self, wheel: TimeoutWheel, timeout: float) -> None:
        self.wheel = wheel
        self.timeout = timeout
        self.waits: list[_Wait] = []
        self.head = 0  # waits[:head] are done
        self.limit = _COMPACT_MIN  # compact the waits when this many are held
        self.armed = False
        self.callbacks: Sequence[Callable[[_Fifo], None]] | None = None

    def __len__(self) -> int:
        return len(self.waits) - self.head

    def compact(self) -> None:
        """Drops the waits already woken or done (amortised: the next compaction comes once as many
        again are held), so a FIFO holds about the waits still pending, not every wait of the last
        `timeout` seconds."""
        self.waits = [w for w in self.waits[self.head :] if w.pending()]
        self.head = 0
        self.limit = max(_COMPACT_MIN, 2 * len(self.waits))


def _fire(fifo: _Fifo) -> None:
    fifo.wheel._fire(fifo)


_FIRE = (_fire,)  # every armed FIFO's callbacks (the event loop reads them and sets None)
_COMPACT_MIN = 64


class TimeoutWheel:
    """Timeouts of long-poll waits, one armed timer per distinct duration.

    Waits of one duration end in the order they began, so each duration keeps a FIFO and arms a
    timer only for its oldest wait still pending; waits woken early are skipped when they come up.
    Almost every wait is woken early (a WaitJob by its job's end), so this saves the simulator
    one useless event per wait, and every wait still ends exactly at its deadline. A woken wait
    lets go of its event at once, and a FIFO drops its woken waits when they make up half of it
    (`_Fifo.compact`), so the wheel holds about the pending waits, not every wait of the last poll
    period. The armed timers are the same entries of the event queue, at the same times and in the
    same order, as simpy timeouts would be.
    """

    def __init__(self, env: simpy.Environment) -> None:
        self.env = env
        self._fifos: dict[float, _Fifo] = {}

    def add(
        self, event: simpy.Event, timeout: float, on_timeout: Callable[[simpy.Event], None] | None = None
    ) -> None:
        if timeout == math.inf:
            return
        fifo = self._fifos.get(timeout)
        if fifo is None:
            fifo = self._fifos[timeout] = _Fifo(self, timeout)
        wait = _Wait(self.env._now + timeout, event, on_timeout)
        event.callbacks.append(wait)
        fifo.waits.append(wait)
        if not fifo.armed:
            self._arm(fifo)
        elif len(fifo.waits) >= fifo.limit:
            fifo.compact()

    def _arm(self, fifo: _Fifo) -> None:
        waits, head = fifo.waits, fifo.head
        while head < len(waits) and not waits[head].pending():
            head += 1
        if head == len(waits):
            fifo.armed = False
            fifo.waits, fifo.head = [], 0
            if self._fifos.get(fifo.timeout) is fifo:  # most durations occur once: keep no empty FIFO
                del self._fifos[fifo.timeout]
            return
        if head > _COMPACT_MIN and 2 * head > len(waits):
            del waits[:head]
            head = 0
        fifo.head = head
        fifo.armed = True
        fifo.callbacks = _FIRE
        env = self.env
        now = env._now
        queue: list[Any] = env._queue  # the event loop's heap: the FIFO is an event in it
        heappush(queue, (now + max(0.0, waits[head].deadline - now), NORMAL, next(env._eid), fifo))

    def _fire(self, fifo: _Fifo) -> None:
        now = self.env._now + 1e-9  # the armed delay was deadline - now: it may land an ulp short
        waits = fifo.waits
        while fifo.head < len(waits) and waits[fifo.head].deadline <= now:
            wait = waits[fifo.head]
            fifo.head += 1
            event = wait.event
            if event is not None and event._value is PENDING:
                if wait.on_timeout is not None:
                    wait.on_timeout(event)
                event.succeed(False)
            waits = fifo.waits  # on_timeout may have added a wait (and compacted the list)
        self._arm(fifo)


class LoadgenPart:
    """One load generator process: its loop, and its target's round-robin counter over addresses."""

    def __init__(self, proc: Proc, index: int) -> None:
        self.proc = proc
        self.index = index
        self.rr: dict[str, int] = {}

    def pick(self, n: int, method: str) -> int:
        """DtqTarget._stub: one round-robin counter per method over the addresses."""
        turn = self.rr.get(method, 0)
        self.rr[method] = turn + 1
        return turn % n


class SimTimer:
    """realsys/timer.py's CoreTimer in simulated time: performs model/timer.py's TimerRule with simpy
    timeouts, waking a core object at its next deadline.

    The firing runs on the owning process's loop like any callback (a burst that queues behind the
    loop's current work); like a loop.call_later handle, the timer stays armed until the loop gets
    round to running it. A stale armed timeout is ignored through a generation number (simpy cannot
    cancel a timeout).
    """

    def __init__(
        self,
        env: simpy.Environment,
        proc: Proc,
        next_deadline: Callable[[], float | None] | TimerRule,
        on_timer: Callable[[float], float],
    ) -> None:
        self.env = env
        self.proc = proc
        # a driver that decides its own re-arms (model/node.py) hands over its rule
        self.rule = next_deadline if isinstance(next_deadline, TimerRule) else TimerRule(next_deadline)
        self._on_timer = on_timer  # (now) -> CPU seconds the firing took
        self._generation = 0
        self.firings = 0

    @property
    def armed_for(self) -> float | None:
        return self.rule.armed_for

    def start(self) -> None:
        if self.rule.start():
            self.arm()

    def stop(self) -> None:
        self.rule.stop()
        self._generation += 1

    def poke(self) -> None:
        if self.rule.poke():
            self.arm()

    def arm(self) -> None:
        """(Re-)arms at the rule's deadline (the rule said to)."""
        self._generation += 1
        generation = self._generation
        self.env.timeout(self.rule.delay(self.env._now)).callbacks.append(lambda _: self._fire(generation))

    def _fire(self, generation: int) -> None:
        if generation != self._generation or not self.rule.running:
            return
        self.proc.run(self._action)

    def _action(self, now: float) -> tuple[float, None]:
        if not self.rule.fired(now):
            self.arm()  # early by an ulp of the armed delay: wait out the rest
            return 0.0, None
        self._generation += 1
        self.firings += 1
        cost = self._on_timer(now)
        if self.rule.rearm():
            self.arm()
        else:
            self._generation += 1
        return cost, None
