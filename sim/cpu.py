"""What a machine adds around the core: processes with one event loop each, sharing a host's cores,
and the random costs those processes pay.

A `Proc` is one OS process running one asyncio loop: it executes one CPU burst at a time, in FIFO
order (the GIL and the single loop thread), and a burst also needs one of its host's cores, which
every process on the host (and the load generator) shares FIFO. This is exactly the nested-resource
model

    with proc_loop.request():          # simpy.Resource(capacity=1)
        with host_cores.request():     # simpy.Resource(capacity=cores)
            yield env.timeout(burst)

implemented with callbacks instead of resources (about a third of the events per burst: the
simulator's speed is dominated by these). tests/sim/test_cpu.py checks the equivalence.

With `cpu_slice` > 0 the host shares its cores as the kernel's fair scheduler does, at burst
granularity: a process whose loop has more bursts queued keeps its core (an asyncio loop with ready
callbacks never yields) until it has held it `cpu_slice` (the kernel takes a core back at a scheduler
tick) while others wait, or until a process that woke behind it in CPU time asks for it; a freed core
goes to the waiting process that has run least (virtual runtime: its CPU seconds, moved on waking up
to one slice behind the host's least, so sleeping earns bounded credit). 0 is the per-burst FIFO above.
`core_wait` sums the time a process's loop had work but no core, the simulated run-queue wait.

A sleeping loop pays to wake up (`wakeup`, measured by `dtq calibrate` as the bare echo's CPU per
call at one call in flight less that of a loop kept busy): a burst that finds its process's loop idle
lasts that much longer; bursts queued behind a busy loop do not. So CPU per request falls as load
rises, as in the real processes. The checkpoint thread is not a loop and never pays it. How long it
slept (the cold factor, `wakeup_idle`) is its own loop's idle time by default
(`wakeup_idle_scope` "process"); with "host" it is its host's: the time since any process on the host
(threads, the load generator and background processes included) last ran a burst on one of its cores,
0 while one runs (a what-if: the cold cost is the idle CPU's, a C-state and cold caches, not the
loop's); with "overlap" it is the part of its loop's sleep during which every core of its host was
free (`OverlapHost`: the same as "process" when the host slept whenever the loop did, as in the echo
sweep that measured the curve; near 0 when other processes kept a core busy meanwhile). Only the
factor changes scope; a burst that finds its loop busy still pays no wake-up.

A burst may carry an action `fn(now) -> (duration, value)`: it runs when the burst *starts* (the loop
picked the request up), which is when the real handler reads the clock and calls the core, and the
burst then lasts `duration` (the handler's CPU time, commits included). Actions must not raise.

The loop is released only after the process waiting on the burst has resumed and run to its next
yield, as a coroutine runs to its next await before the loop picks anything else: "the job is not
done yet" and "register a waiter for it" are one step, so no wake-up falls in between.
"""

from __future__ import annotations

import itertools
import zlib
from array import array
from collections import deque
from collections.abc import Callable, Generator, Iterator
from enum import IntEnum
from heapq import heappop, heappush
from typing import Any, TypeAlias

import numpy as np
import simpy
from simpy.events import NORMAL, PENDING

from sim.dist import Dist
from sim.params import SimParams

Action: TypeAlias = Callable[[float], tuple[float, Any]]
# consumers that never pay wakeup: threads, not loops, and the host's background processes (not ours)
THREAD_ROLES = ("checkpoint", "grpc", "background")
BACKGROUND_INDEX = 4000  # the host's background processes: stream indexes 4000 + host * 100 + k
THREAD_INDEX = 3000  # a process's gRPC threads draw from streams of index 3000 + its own
_BLOCK = 256  # draws per refill of a sampler's buffer


class Component(IntEnum):
    """The first element of every random stream's spawn key: one stream per component and process."""

    SERVICE = 0
    CLIENT = 1
    NETWORK = 2
    STORAGE = 3
    LOADGEN = 4
    CORE = 5  # the core's own random source (retry backoff jitter)
    CHECKPOINT = 6
    WAKEUP = 7
    STEAL = 8  # Design B: which peers a depth round asks (steal_fanout)
    HOST_HOP = 9  # the extra latency of a hop between hosts
    THREAD = 10  # gRPC's threads' CPU per RPC (rpc_thread, rpc_thread_client)
    BACKGROUND = 11  # the host's background processes' runs and sleeps (start_background)


def stream(seed: int, *key: int) -> np.random.Generator:
    """The generator for one component: SeedSequence(seed).spawn(...) children by a stable key.

    SeedSequence(seed, spawn_key=k) is what SeedSequence(seed).spawn() hands out as its k-th child, so
    adding a process or a method never shifts anyone else's stream (common random numbers).
    """
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def method_key(method: str) -> int:
    return zlib.crc32(method.encode())


Sampler: TypeAlias = Callable[[], float]


def sampler(dist: Dist, rng: np.random.Generator | None) -> Sampler:
    """Draws from one distribution and one stream, a block at a time (numpy per-call overhead is
    larger than the simulator's own per-event cost). The callable is an iterator's `__next__`, so a
    draw costs no Python call of its own (the simulator draws several times per burst): a constant
    repeats its value; otherwise blocks of _BLOCK draws, each drawn when the last is used up."""
    if dist.is_constant:
        return itertools.repeat(dist.mean).__next__
    assert rng is not None
    return _blocks(dist, rng).__next__


def _blocks(dist: Dist, rng: np.random.Generator) -> Iterator[float]:
    """Endless draws, a block of _BLOCK at a time: a chain over the blocks (C-level steps; Python
    runs only to draw the next block once the last is used up). A block waits as raw doubles (an
    array: 2 kB, where a list of floats is 8 kB; a 100-node run has ~1,900 samplers), each made a
    float when it is drawn, the same value as the list's."""
    return itertools.chain.from_iterable(iter(lambda: array("d", dist.sample(rng, _BLOCK).tobytes()), None))


class Host:
    """A machine's cores, shared by the processes placed on it: FIFO per burst, or (`fair`, with a
    `cpu_slice` > 0) by each process's CPU time so far, as the kernel's fair scheduler does."""

    __slots__ = (
        "_heap",
        "_seq",
        "busy_time",
        "cores",
        "cpu_slice",
        "fair",
        "free",
        "idle_scope_host",
        "name",
        "procs",
        "running",
        "vfloor",
        "waiting",
        "warm_handover",
    )

    def __init__(
        self,
        name: str,
        cores: int,
        cpu_slice: float = 0.0,
        warm_handover: bool = False,
        idle_scope_host: bool = False,
    ) -> None:
        self.name = name
        self.cores = cores
        self.free = cores
        # wakeup_idle_scope "host": a waking loop's cold factor goes by the host's idle time (idle_time)
        self.idle_scope_host = idle_scope_host
        self.procs: list[Proc] = []  # every process placed on it (Proc.__init__), threads included
        # a loop that queued for a core takes it warm from the process before it: no cold wake-up
        # (wakeup_idle's factor is 1); one woken onto an idle core pays it by its own sleep
        self.warm_handover = warm_handover
        self.cpu_slice = cpu_slice
        self.fair = cpu_slice > 0
        self.waiting: deque[Proc] = deque()  # FIFO: in arrival order
        self._heap: list[tuple[float, int, Proc]] = []  # fair: by virtual runtime, then arrival
        self._seq = 0
        self.running: list[Proc] = []  # fair: the processes holding a core
        self.vfloor = 0.0  # fair: the least virtual runtime among those that want a core (monotonic)
        self.busy_time = 0.0  # core-seconds used

    def idle_time(self, now: float) -> float:
        """Seconds since a burst last ran on any of its cores (0 while one runs). With every core
        free no process is running or waiting, so each one's loop is idle and the last burst ended
        at the latest of their idle_since. O(processes on the host), paid only by a wake-up under
        wakeup_idle_scope "host"."""
        if self.free < self.cores:
            return 0.0
        return now - max((p._idle_since for p in self.procs), default=0.0)

    def has_waiting(self) -> bool:
        return bool(self._heap) if self.fair else bool(self.waiting)

    def push(self, proc: Proc) -> None:
        if self.fair:
            self._seq += 1
            heappush(self._heap, (proc.vruntime, self._seq, proc))
        else:
            self.waiting.append(proc)

    def pop(self) -> Proc | None:
        if self.fair:
            return heappop(self._heap)[2] if self._heap else None
        return self.waiting.popleft() if self.waiting else None

    def place(self, proc: Proc) -> None:
        """Fair: a process waking up is placed no further than one slice behind the least virtual
        runtime of those running or waiting (never decreasing), so sleeping earns bounded credit."""
        least = min((p.vruntime for p in self.running), default=None)
        if self._heap and (least is None or self._heap[0][0] < least):
            least = self._heap[0][0]
        if least is not None and least > self.vfloor:
            self.vfloor = least
        proc.vruntime = max(proc.vruntime, self.vfloor - self.cpu_slice)


class OverlapHost(Host):
    """A host that keeps the time all its cores were free (wakeup_idle_scope "overlap"): `free` is a
    property here, so the default Host's hot path is untouched."""

    __slots__ = ("_env", "_free", "_idle_from", "idle_total")

    def __init__(self, env: simpy.Environment, name: str, cores: int, *args: Any, **kw: Any) -> None:
        self._env = env
        self.idle_total = 0.0  # seconds with every core free, up to _idle_from
        self._idle_from = 0.0  # when every core last became free
        self._free = cores
        super().__init__(name, cores, *args, **kw)

    @property
    def free(self) -> int:
        return self._free

    @free.setter
    def free(self, value: int) -> None:
        cores = self.cores if hasattr(self, "cores") else value  # Host.__init__ sets free after cores
        if self._free == cores and value < cores:
            self.idle_total += self._env._now - self._idle_from
        elif value == cores and self._free < cores:
            self._idle_from = self._env._now
        self._free = value

    def idle_accumulated(self, now: float) -> float:
        """Seconds since the start with every core free, up to `now`."""
        if self._free == self.cores:
            return self.idle_total + now - self._idle_from
        return self.idle_total


class Proc:
    """One OS process with one event loop. See the module docstring."""

    def __init__(
        self, env: simpy.Environment, host: Host, name: str, role: str, index: int, costs: CostModel
    ) -> None:
        self.env = env
        self._env_finishes: bool = getattr(env, "finishes_bursts", False)
        self.host = host
        host.procs.append(self)
        self.name = name
        self.role = role
        self.index = index
        self._costs = costs
        self._queue: deque[tuple[_Burst, Action | float]] = deque()
        self._busy = False  # the loop is taken: running a burst or waiting for a core
        self.busy_time = 0.0
        self.bursts = 0
        self._service: dict[str, Sampler] = {}
        self._items: dict[str, float] = {}
        self._bytes: dict[str, float] = {}
        self.client = costs.client_sampler(self)
        self.net = costs.network_sampler(self)
        self.host_hop = costs.host_hop_sampler(self)
        self._commit = costs.commit_sampler(self)
        self._commit_per_row = costs.params.commit_per_row
        wakeup = costs.params.wakeup
        # None: waking costs nothing (the default), so the fast paths below stay as they were
        self._wake: Sampler | None = (
            None if wakeup.is_zero or role in THREAD_ROLES else costs.wakeup_sampler(self)
        )
        # gRPC's threads of this process (threads()): None while rpc_thread and rpc_thread_client are 0
        self.io: Proc | None = None
        self._thread_in: Sampler | None = None
        self._thread_out: Sampler | None = None
        self._waking = False  # the loop was idle when its current first queued burst arrived
        self._idle_since = 0.0  # when the loop last ran out of work
        self._handed = False  # its core came straight from another process (Host.warm_handover)
        self._wake_factor = costs.params.wakeup_factor if costs.params.wakeup_idle else None
        if host.idle_scope_host:
            self._wakeup_cost = self._host_wakeup_cost  # type: ignore[method-assign]
        self._host_mark = 0.0  # overlap: the host's accumulated idle when this loop last went idle
        if isinstance(host, OverlapHost):
            self._wakeup_cost = self._overlap_wakeup_cost  # type: ignore[method-assign]
            self._finish = self._finish_marking  # type: ignore[method-assign]
        self.wakeups = 0
        self._slice_start = 0.0  # when this process's current time slice on its core began
        self.vruntime = 0.0  # CPU seconds run, moved up to the host's floor when it wakes (fair)
        self._preempted = False  # a process that woke behind it wants its core at this burst's end
        self.core_wait = 0.0  # seconds its loop had work but waited for a core (the run-queue wait)
        self._waiting_since = 0.0

    def threads(self) -> Proc:
        """This process's gRPC threads, made on first use: a consumer that needs one of the host's cores
        but not this process's loop (its own FIFO: the poller and event-engine threads that read a
        call's bytes and hand it over, measured as CPU per RPC beside the loop by dtq calibrate)."""
        if self.io is None:
            name, index = f"{self.name}-grpc", THREAD_INDEX + self.index
            self.io = Proc(self.env, self.host, name, "grpc", index, self._costs)
            self._thread_in = self._costs.thread_sampler(self, server=True)
            self._thread_out = self._costs.thread_sampler(self, server=False)
        return self.io

    def rpc_in(self) -> simpy.Event | None:
        """gRPC's threads taking a call this process serves (None: they cost nothing)."""
        if self.io is None or self._thread_in is None:
            return None
        cost = self._thread_in()
        return self.io.run(cost) if cost else None

    def rpc_out(self) -> simpy.Event | None:
        """gRPC's threads taking the reply to a call this process made (None: they cost nothing)."""
        if self.io is None or self._thread_out is None:
            return None
        cost = self._thread_out()
        return self.io.run(cost) if cost else None

    # ------------------------------------------------------------------ costs
    def cost(self, method: str, items: int = 0) -> float:
        """Server-side CPU of one call of `method` handling `items` items."""
        sampler = self._service.get(method)
        if sampler is None:
            sampler = self._service[method] = self._costs.service_sampler(self, method)
        if not items:
            return sampler()
        per = self._items.get(method)
        if per is None:
            per = self._items[method] = self._costs.params.item_cost(self.role, method)
        return sampler() + per * items

    def byte_cost(self, method: str, nbytes: int) -> float:
        """CPU of `method` moving a payload of `nbytes` bytes (per_byte; "commit": the store writing it)."""
        if nbytes <= 0:
            return 0.0
        per = self._bytes.get(method)
        if per is None:
            key = method if method == "commit" else f"{self.role}.{method}"
            per = self._bytes[method] = self._costs.params.per_byte.get(key, 0.0)
        return per * nbytes

    def commit(self, rows: int) -> float:
        """One storage transaction of `rows` rows; none (free) when there is nothing to write."""
        if rows <= 0:
            return 0.0
        return self._commit() + self._commit_per_row * rows

    # ------------------------------------------------------------------ bursts
    def run(self, work: Action | float) -> simpy.Event:
        """Queues a CPU burst on this process's loop; the event fires (with the action's value) when
        the burst ends."""
        env = self.env
        burst = _Burst.__new__(_Burst)  # _Burst's fields set here: one Python frame fewer per burst
        burst.env = env
        # under SimEnv the loop calls _finish after the burst's callbacks (SimEnv.finishes_bursts);
        # under another environment the first callback appends it behind them (_Burst._release)
        if self._env_finishes:
            burst.callbacks = []
        else:
            burst._callbacks = burst.callbacks = [burst._release]
        burst._value = PENDING
        burst._proc = self
        if not self._busy and self.host.free:
            now = env._now
            if callable(work):
                duration, value = work(now)
            else:
                duration, value = work, None
            self._handed = False  # an idle core
            if self._wake is not None:
                duration += self._wakeup_cost()
            if not duration:
                # starts and ends now on an idle loop: hand back an already processed event, which
                # simpy resumes the waiter on at once (nothing to schedule, nothing to release)
                self.bursts += 1
                burst._ok, burst._value = True, value
                burst.callbacks = None  # type: ignore[assignment]  # simpy's mark of a processed event
                return burst
            self._busy = True
            host = self.host
            host.free -= 1
            if host.fair:
                host.place(self)
                host.running.append(self)
            self._slice_start = now
            # _schedule, inlined (the commonest path of a burst)
            self.vruntime += duration
            self.busy_time += duration
            host.busy_time += duration
            self.bursts += 1
            burst._ok = True
            burst._value = value
            heappush(env._queue, (now + duration, NORMAL, next(env._eid), burst))
        else:
            self._queue.append((burst, work))
            if not self._busy:
                self._busy = True
                self._waking = self._wake is not None  # idle loop, no core free: it wakes once it runs
                host = self.host
                self._waiting_since = env._now  # no core is free (else it had started above): wait
                if host.fair:
                    self._wake_behind()
                    host.push(self)
                else:
                    host.waiting.append(self)  # Host.push without the call
        return burst

    def _wake_behind(self) -> None:
        """Fair: a process that wakes while every core is taken is placed at most one slice behind
        the host's floor (the kernel's sleeper credit), and takes the core of the holder furthest
        ahead of it at that holder's next burst end (the kernel preempts on wake-up a task that has
        run more: lab.calibration.hostprobe.scheduler_slice measures how fast)."""
        host = self.host
        host.place(self)
        if host.free or not host.running:
            return
        ahead = max(host.running, key=lambda p: p.vruntime)
        if ahead.vruntime > self.vruntime:
            ahead._preempted = True

    def _begin(self) -> None:
        """Its loop's next queued burst starts, on a core it just got: a fresh time slice."""
        burst, work = self._queue.popleft()
        env = self.env
        now = env._now
        self._slice_start = now
        if callable(work):
            duration, value = work(now)
        else:
            duration, value = work, None
        if self._waking:
            self._waking = False
            duration += self._wakeup_cost()
        # _schedule, inlined
        self.vruntime += duration
        self.busy_time += duration
        self.host.busy_time += duration
        self.bursts += 1
        burst._ok = True
        burst._value = value
        heappush(env._queue, (now + duration, NORMAL, next(env._eid), burst))

    def _continue(self, burst: _Burst, work: Action | float) -> None:
        if callable(work):
            duration, value = work(self.env._now)
        else:
            duration, value = work, None
        if self._waking:
            self._waking = False
            duration += self._wakeup_cost()
        self._schedule(burst, duration, value)

    def _wakeup_cost(self) -> float:
        assert self._wake is not None
        self.wakeups += 1
        cost = self._wake()
        if self._wake_factor is not None and not (self._handed and self.host.warm_handover):
            cost *= self._wake_factor(self.env._now - self._idle_since)  # else a warm core: factor 1
        return cost

    def _host_wakeup_cost(self) -> float:
        """_wakeup_cost with the cold factor by the host's idle time (wakeup_idle_scope "host"; set
        as this process's _wakeup_cost in __init__, so the default path is not touched)."""
        assert self._wake is not None
        self.wakeups += 1
        cost = self._wake()
        host = self.host
        if self._wake_factor is not None and not (self._handed and host.warm_handover):
            cost *= self._wake_factor(host.idle_time(self.env._now))  # else a warm core: factor 1
        return cost

    def _overlap_wakeup_cost(self) -> float:
        """_wakeup_cost with the cold factor by the part of this loop's sleep that its whole host
        slept too (wakeup_idle_scope "overlap"; bound in __init__)."""
        assert self._wake is not None
        self.wakeups += 1
        cost = self._wake()
        host = self.host
        if self._wake_factor is not None and not (self._handed and host.warm_handover):
            assert isinstance(host, OverlapHost)
            cost *= self._wake_factor(host.idle_accumulated(self.env._now) - self._host_mark)
        return cost

    def _finish_marking(self, _: simpy.Event) -> None:
        """_finish, then (overlap) the host's accumulated idle if the loop went idle."""
        Proc._finish(self, _)
        if not self._busy:
            host = self.host
            assert isinstance(host, OverlapHost)
            self._host_mark = host.idle_accumulated(self.env._now)

    def _schedule(self, burst: _Burst, duration: float, value: Any) -> None:
        self.vruntime += duration
        self.busy_time += duration
        self.host.busy_time += duration
        self.bursts += 1
        # Event.succeed, but at now + duration: one scheduled event per burst, as a Timeout would be
        burst._ok = True
        burst._value = value
        env = self.env  # env.schedule(burst, NORMAL, duration), without the method call
        heappush(env._queue, (env._now + duration, NORMAL, next(env._eid), burst))

    def _finish(self, _: simpy.Event) -> None:
        host = self.host
        if host.fair and self._queue:
            # more work: the loop runs on, unless its slice is over or a process that woke behind it
            # asked for the core, and someone waits for one
            held = self.env._now - self._slice_start
            if not host.has_waiting():
                self._preempted = False
                if held >= host.cpu_slice:
                    self._slice_start = self.env._now  # nobody waited: a fresh slice
                self._continue(*self._queue.popleft())
                return
            if held < host.cpu_slice and not self._preempted:
                self._continue(*self._queue.popleft())
                return
        self._preempted = False
        if host.fair:
            host.running.remove(self)
            waiting = host.pop()  # the one that ran least
        else:
            fifo = host.waiting  # Host.pop without the call: the process waiting longest
            waiting = fifo.popleft() if fifo else None
        if waiting is not None:
            waiting.core_wait += self.env._now - waiting._waiting_since
            waiting._handed = True  # the core passes straight from this process to it
            if host.fair:
                host.running.append(waiting)
            waiting._begin()
        else:
            host.free += 1
        if self._queue:
            # back of the core queue, as a fresh request would be
            if host.free:
                host.free -= 1
                self._handed = False  # an idle core
                if host.fair:
                    host.running.append(self)
                self._begin()
            else:
                self._waiting_since = self.env._now
                if host.fair:
                    host.push(self)
                else:
                    host.waiting.append(self)
        else:
            self._busy = False
            self._idle_since = self.env._now


def start_background(env: simpy.Environment, hosts: list[Host], costs: CostModel) -> list[Proc]:
    """The host's background load: `background_procs` processes per host that are not the cluster's
    (other builds, tests, helpers on the same machine), each alternating a CPU run drawn from
    `background_run` and a sleep from `background_sleep`, starting at a random point of a sleep. A run
    is queued as bursts of at most `background_chunk`, so the host's scheduler can take the core back
    between them: with `cpu_slice` > 0 at its slice's end or when a process that woke behind it asks
    (the preemption stalls of an oversubscribed host); with FIFO bursts, core by core in turn. None
    when background_procs is 0 (the default): nothing is added, every other output unchanged."""
    params = costs.params
    out: list[Proc] = []
    if not params.background_procs:
        return out
    for h, host in enumerate(hosts):
        for k in range(params.background_procs):
            index = BACKGROUND_INDEX + 100 * h + k
            proc = Proc(env, host, f"background-{host.name}-{k}", "background", index, costs)
            run = costs._sampler(params.background_run, Component.BACKGROUND, index, 0)
            pause = costs._sampler(params.background_sleep, Component.BACKGROUND, index, 1)
            first = float(stream(costs.seed, Component.BACKGROUND, index, 2).uniform()) * (
                params.background_sleep.mean
            )
            env.process(_background(env, proc, run, pause, params.background_chunk, first))
            out.append(proc)
    return out


def _background(
    env: simpy.Environment, proc: Proc, run: Sampler, pause: Sampler, chunk: float, first: float
) -> Generator[simpy.Event, Any, None]:
    """One background process: sleep, run (in bursts of at most `chunk`), sleep, ... for ever (the
    run ends when the load generator is done: sim.api runs until then)."""
    yield env.timeout(first)
    while True:
        left = run()
        last = None
        while left > 1e-12:
            burst = min(chunk, left)
            last = proc.run(burst)
            left -= burst
        if last is not None:
            yield last
        yield env.timeout(pause())


class _Burst(simpy.Event):
    """A burst's end. The process's release (`_proc._finish`) runs behind the callbacks (the waiter's
    resume): SimEnv's loop calls it after them (SimEnv.finishes_bursts); under another environment the
    burst's first callback, `_release`, appends it behind those that follow (simpy iterates the very
    list it took from the event). Made only by Proc.run, which sets its fields (env, callbacks and
    _callbacks: one list, [] or [_release]; _value PENDING, _proc) without an __init__ call."""

    _callbacks: list[Callable[[Any], None]]
    _proc: Proc

    def _release(self, _: simpy.Event) -> None:
        self._callbacks.append(self._proc._finish)


class CostModel:
    """Builds each process's samplers from the params, one stream per (component, process, method)."""

    def __init__(self, params: SimParams, seed: int) -> None:
        self.params = params
        self.seed = seed

    def _sampler(self, dist: Dist, *key: int) -> Sampler:
        return sampler(dist, None if dist.is_constant else stream(self.seed, *key))

    def service_sampler(self, proc: Proc, method: str) -> Sampler:
        dist = self.params.service_dist(proc.role, method)
        return self._sampler(dist, Component.SERVICE, proc.index, method_key(method))

    def client_sampler(self, proc: Proc) -> Sampler:
        if proc.role == "loadgen":
            return self._sampler(self.params.loadgen_request, Component.LOADGEN, proc.index)
        return self._sampler(self.params.client_call, Component.CLIENT, proc.index)

    def wakeup_sampler(self, proc: Proc) -> Sampler:
        return self._sampler(self.params.wakeup, Component.WAKEUP, proc.index)

    def network_sampler(self, proc: Proc) -> Sampler:
        return self._sampler(self.params.network, Component.NETWORK, proc.index)

    def host_hop_sampler(self, proc: Proc) -> Sampler:
        return self._sampler(self.params.host_hop, Component.HOST_HOP, proc.index)

    def commit_sampler(self, proc: Proc) -> Sampler:
        return self._sampler(self.params.commit, Component.STORAGE, proc.index)

    def checkpoint_sampler(self, proc: Proc) -> Sampler:
        return self._sampler(self.params.checkpoint, Component.CHECKPOINT, proc.index)

    def thread_sampler(self, proc: Proc, server: bool) -> Sampler:
        dist = self.params.rpc_thread if server else self.params.rpc_thread_client
        return self._sampler(dist, Component.THREAD, proc.index, int(server))
