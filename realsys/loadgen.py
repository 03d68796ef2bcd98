"""The load generator: replays a WorkloadSpec against a Target and records every request and job.

Open loop (wrk2-style, no coordinated omission): the pre-generated `open_loop_trace(spec)` is
replayed; each request is launched at its intended time whether or not earlier ones have finished.
At most `max_in_flight` requests are outstanding; a request held back by that bound starts late, and
its latency is still measured from its *intended* time, so a stalled system cannot hide its queue.

Closed loop: `clients` tasks each run their script from `closed_loop_scripts` (think, send, wait for
the answer, repeat) until the run time is over. A closed-loop request's intended time is when its
client finished thinking.

Closed loop with `wait_for_completion`: after an accepted submit the client also awaits that job's
waiter (below) before it thinks and sends again, so each client has at most one job in the system and
the loop settles: completed_per_s is then the end-to-end jobs/s. How it is recorded: the submit
request's record is the SubmitJob RPC alone (its latency is the submit op's latency); the wait is not
a request in the mix and leaves no request record (its WaitJob calls are load the system sees, as in
the open loop); the job's record carries submit -> terminal (submit_time is the submit's intended
time, end_time when the client learned the terminal state). The wait is bounded by the drain
deadline (run time + `drain_timeout`): a job still unfinished then is recorded with an empty end_time
and its client stops. A failed submit is not waited for. Jobs of other clients that a status/result/
cancel targets are not waited for. Wait mode waits for and records its jobs even with track_jobs=False.
With a synchronous-invocation target (`DtqTarget(submit_wait=S)`) the SubmitJob itself waits for the
job's end: its record's latency then includes the job's run, and the waiter learns the terminal state
from the submit's reply (no WaitJob unless the submit's wait ran out).

Which job a status/result/cancel is about: the trace's `target` fraction t picks job
floor(t * n) among the n jobs this generator process has had accepted so far (in acceptance order).
With no accepted job yet, the request is sent as a submit instead (a job of the workload's mean
duration), so the request count always equals the trace's; this only happens at the very start.

Job completion: each accepted submit starts a waiter that long-polls `target.wait` (one WaitJob call
per job, re-issued only when the server answers before the job ends: this is part of the load the
system sees, and the simulator must model it). The job's end_time is when the client learned its
terminal state. After the trace, outstanding requests and jobs get `drain_timeout` seconds; jobs
still unfinished then are recorded with an empty end_time, requests still outstanding (or never
sent) with status CANCELLED.

All times are seconds from the run start (time.perf_counter). Every loop is bounded in count and
time. The generator measures its own CPU: when it sends below 95% of the trace's rate in the window,
or uses more than 90% of one core, the run is flagged as generator-bottlenecked.

Several processes (`run_load_processes`): the trace is split round-robin by index (request i goes to
process i mod N), so the merged intended times are exactly the single-process trace's; closed-loop
clients are split the same way. Each child writes its records as gzip CSV into a temporary
directory (no pickling), and the parent merges and summarises. Jobs targeted by status/result/cancel
are then picked among the child's own accepted jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import grpc

from model.errors import Unavailable
from model.results.probe import take_probe
from model.results.runs import (
    JOBS_FILE,
    REQUESTS_FILE,
    check_new_run,
    load_workload,
    new_run_id,
    provenance,
    read_job_records,
    read_request_records,
    run_config,
    utc_now,
    workload_of,
    write_job_records,
    write_request_records,
    write_run,
)
from model.results.schema import JobRecord, RequestRecord, sort_jobs, sort_requests
from model.results.summary import format_summary, summarize
from model.states import TERMINAL, JobState
from model.workload import (
    ClosedLoop,
    JobDraw,
    Op,
    Trace,
    WorkloadSpec,
    closed_loop_scripts,
    job_payload,
    numeric_mean,
    open_loop_trace,
    prefill_jobs,
    workload_to_mapping,
)
from realsys import cluster
from realsys.cli_common import progress
from realsys.eventloop import loop_factory
from realsys.targets import JobTarget, Target, TargetError, dtq_target_spec, make_target

__all__ = ["job_payload"]  # realsys.loadgen.job_payload: model.workload's, where the lab imports it

BOTTLENECK_RATE = 0.95  # achieved / offered below this: the offered load was not applied
BOTTLENECK_CPU = 0.90  # of one core: the generator itself may be what limits the run
DEFAULT_DRAIN = 10.0
DEFAULT_MAX_WAITERS = 4096
CLOSED_LOOP_MAX_RATE = 5000.0  # requests/s one closed-loop client can issue at most (sizes its script)
_YIELD_EVERY = 64  # a dispatcher launching a late burst yields to the loop this often
_WAIT_RETRY = 0.05


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True, slots=True)
class LoadStats:
    processes: int
    wall_time: float  # seconds of the load phase (run start to the last request's answer)
    cpu_time: float  # CPU seconds of all generator processes over the load phase
    cpu_utilisation: float  # the busiest process: its CPU seconds / wall seconds (1.0 = one core)
    achieved_rate: float  # requests sent (started) in the window, per second
    trace_rate: float | None  # open loop: requests the trace schedules in the window, per second
    max_start_lag: float  # worst start_time - intended_time (seconds): how late the generator was
    p99_start_lag: float  # (a late start is still measured from the intended time; a large lag means
    # the generator was starved of CPU or held back by max_in_flight)
    bottleneck: bool
    bottleneck_reason: str
    held_back: int = 0  # open loop: requests that waited for a free max_in_flight slot

    def loadgen(self) -> dict[str, Any]:
        """The summary's `loadgen` block."""
        return {
            "processes": self.processes,
            "cpu_utilisation": self.cpu_utilisation,
            "achieved_rate": self.achieved_rate,
            "bottleneck": self.bottleneck,
            "bottleneck_reason": self.bottleneck_reason,
        }


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: list[RequestRecord]
    jobs: list[JobRecord]
    stats: LoadStats


def window_of(spec: WorkloadSpec) -> tuple[float, float]:
    return (spec.warmup, spec.total_time)


def offered_rate(spec: WorkloadSpec) -> float | None:
    return spec.offered_rate()


def load_stats(
    requests: Sequence[RequestRecord],
    spec: WorkloadSpec,
    *,
    processes: int,
    wall_time: float,
    cpu_time: float,
    cpu_utilisation: float,
    held_back: int = 0,
) -> LoadStats:
    """Whether the generator applied the load: achieved vs the trace's own rate (not the nominal one,
    which a short Poisson window misses by a few percent by chance alone), and its CPU."""
    start, end = window_of(spec)
    seconds = end - start
    achieved = sum(start <= r.start_time < end for r in requests) / seconds
    trace_rate = None
    if spec.is_open:
        trace_rate = sum(start <= r.intended_time < end for r in requests) / seconds
    lags = sorted(r.start_time - r.intended_time for r in requests)
    lag = lags[-1] if lags else 0.0
    p99_lag = lags[min(len(lags) - 1, int(0.99 * len(lags)))] if lags else 0.0
    reasons = []
    if trace_rate and achieved < BOTTLENECK_RATE * trace_rate:
        reasons.append(
            f"sent {achieved:.1f} req/s, below {BOTTLENECK_RATE:.0%} of the trace's {trace_rate:.1f} "
            f"(worst start lag {lag * 1000:.1f} ms)"
        )
    if cpu_utilisation > BOTTLENECK_CPU:
        reasons.append(f"generator process at {cpu_utilisation:.0%} of one core")
    return LoadStats(
        processes=processes,
        wall_time=round(wall_time, 6),
        cpu_time=round(cpu_time, 6),
        cpu_utilisation=round(cpu_utilisation, 4),
        achieved_rate=round(achieved, 3),
        trace_rate=None if trace_rate is None else round(trace_rate, 3),
        max_start_lag=round(lag, 6),
        p99_start_lag=round(p99_lag, 6),
        held_back=held_back,
        bottleneck=bool(reasons),
        bottleneck_reason="; ".join(reasons),
    )


def summary_of(
    result: LoadResult, spec: WorkloadSpec, *, run_id: str, kind: str, design: str
) -> dict[str, Any]:
    return summarize(
        result.requests,
        result.jobs,
        window=window_of(spec),
        run_id=run_id,
        kind=kind,
        design=design,
        offered_rate=offered_rate(spec),
        loadgen=result.stats.loadgen(),
    )


def json_child(module: str, job: Mapping[str, Any]) -> subprocess.Popen[str]:
    """`python -m module JOB_JSON` with text pipes on stdin and stdout: a load generator process
    (and the lab's bench clients) that says "ready", takes its start from stdin and prints JSON."""
    return subprocess.Popen(
        [sys.executable, "-m", module, json.dumps(job)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def write_load_run(
    out: Path | str,
    run_id: str,
    result: LoadResult,
    spec: WorkloadSpec,
    *,
    kind: str,
    design: str,
    parameters: Mapping[str, Any],
    started_at: str,
    provenance_info: Mapping[str, Any],
    replication: int = 0,
    records: bool = True,
) -> tuple[Path, dict[str, Any]]:
    """A run the load generator drove, written as a run directory (model/results/runs.py): its
    config.json, records and summary. Returns the directory and the summary."""
    summary = summary_of(result, spec, run_id=run_id, kind=kind, design=design)
    config = run_config(
        run_id=run_id,
        kind=kind,
        design=design,
        workload=spec,
        parameters=parameters,
        replication=replication,
        started_at=started_at,
        provenance_info=provenance_info,
    )
    path = write_run(out, run_id, config, result.requests, result.jobs, summary, records=records)
    return path, summary


# ---------------------------------------------------------------------------- aging (prefill)
PREFILL_CONCURRENCY = 256  # calls in flight while a cluster is aged
PREFILL_WAIT = 120.0  # seconds one finished prefill job may take to end


async def send_job(target: Target, job: JobDraw) -> str:
    """Submits the job's own spec and payload (type and payload alone when it has no other setting)."""
    if job.plain:
        return await target.submit(job.job_type, job.payload())
    if not isinstance(target, JobTarget):
        raise TargetError("INVALID_ARGUMENT", "this target takes no per-job settings")
    return await target.submit_job(job.spec(job.payload()))


def _ends_as(job: JobDraw, state: str) -> JobDraw:
    """A prefill job that reaches `state` at once, with the drawn job's priority, labels and size."""
    if state == "failed":
        return replace(
            job, job_type="fail", duration=0.0, params=(("probability", 1.0),), max_attempts=1, seed=0
        )
    seconds = 3600.0 if state == "cancelled" else 0.0  # cancelled: long enough to be cancelled first
    return replace(job, job_type="sleep", duration=seconds, params=(), cpu_fraction=None, seed=0)


async def age(target: Target, spec: WorkloadSpec) -> dict[str, int]:
    """The workload's prefill on a real cluster: its finished jobs submitted (as jobs that end SUCCEEDED,
    FAILED or CANCELLED at once) and waited for, then its pending jobs submitted as drawn (not waited
    for: they are queued when the trace starts). Bounded in calls in flight and in time; raises
    RuntimeError when any call fails (the cluster would not be in the state asked for)."""
    prefill = prefill_jobs(spec)
    slots = asyncio.Semaphore(PREFILL_CONCURRENCY)
    errors: list[str] = []
    ended: dict[str, int] = {}

    async def finished(job: JobDraw, state: str) -> None:
        async with slots:
            try:
                job_id = await send_job(target, _ends_as(job, state))
                if state == "cancelled":
                    await target.cancel(job_id)
                name, _ = await target.wait(job_id, PREFILL_WAIT)
            except TargetError as exc:
                errors.append(exc.code)
                return
            ended[name] = ended.get(name, 0) + 1

    async def pending(job: JobDraw) -> None:
        async with slots:
            try:
                await send_job(target, job)
            except TargetError as exc:
                errors.append(exc.code)

    await asyncio.gather(*(finished(j, s) for j, s in zip(prefill.finished, prefill.states, strict=True)))
    wanted = {s.upper(): prefill.states.count(s) for s in set(prefill.states)}
    if not errors and ended != wanted:
        errors.append(f"ended {ended}, wanted {wanted}")
    await asyncio.gather(*(pending(j) for j in prefill.pending))
    if errors:
        raise RuntimeError(f"prefill: {len(errors)} calls failed or ended wrong (first: {errors[0]})")
    return {"finished": len(prefill.finished), "pending": len(prefill.pending)}


# ---------------------------------------------------------------------------- one process
@dataclass
class _Run:
    target: Target
    spec: WorkloadSpec
    t0: float
    hard_end: float  # seconds from the start: nothing runs past it
    max_waiters: int
    track_jobs: bool
    list_page_size: int
    requests: list[RequestRecord] = field(default_factory=list)
    jobs: list[JobRecord] = field(default_factory=list)
    accepted: list[str] = field(default_factory=list)
    # launched open-loop requests that have not recorded themselves yet: a task cancelled before its
    # first step never runs its body, and must still leave a record
    unrecorded: dict[int, tuple[int, Op, float]] = field(default_factory=dict)
    held_back: int = 0
    waiters: set[asyncio.Task[None]] = field(default_factory=set)
    waiter_slots: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.waiter_slots = asyncio.Semaphore(self.max_waiters)

    def now(self) -> float:
        return time.perf_counter() - self.t0

    async def request(
        self,
        client: int,
        op: Op,
        intended: float,
        job: JobDraw,
        target: float,
        token: int = -1,
        waiter: list[asyncio.Task[None]] | None = None,
    ) -> None:
        """Sends one request (`job`: the row's job, sent when the request is a submit) and records it.
        With `waiter` (a list), an accepted submit's job waiter task is appended to it, for a
        closed-loop client that waits for its job."""
        self.unrecorded.pop(token, None)
        start = self.now()
        job_id = ""
        if op in (Op.STATUS, Op.RESULT, Op.CANCEL):
            if self.accepted:
                job_id = self.accepted[min(len(self.accepted) - 1, int(target * len(self.accepted)))]
            else:
                op, job = Op.SUBMIT, replace(job, duration=numeric_mean(self.spec.duration))
        status = "OK"
        try:
            if op is Op.SUBMIT:
                job_id = await send_job(self.target, job)
                self.accepted.append(job_id)
                if self.track_jobs or waiter is not None:
                    task = self._watch(job_id, intended, self.now(), job)
                    if waiter is not None:
                        waiter.append(task)
            elif op is Op.STATUS:
                await self.target.status(job_id)
            elif op is Op.RESULT:
                await self.target.result(job_id)
            elif op is Op.CANCEL:
                await self.target.cancel(job_id)
            else:
                await self.target.list(self.list_page_size)
        except TargetError as exc:
            status = exc.code
        except asyncio.CancelledError:
            self.requests.append(RequestRecord(client, op, intended, start, self.now(), "CANCELLED", job_id))
            raise
        except Exception:
            status = "UNKNOWN"  # a bug in a Target must not stop the run; it shows up in `errors`
        self.requests.append(RequestRecord(client, op, intended, start, self.now(), status, job_id))

    def _watch(self, job_id: str, submit_time: float, accept_time: float, job: JobDraw) -> asyncio.Task[None]:
        task = asyncio.create_task(self._wait_job(job_id, submit_time, accept_time, job))
        self.waiters.add(task)
        task.add_done_callback(self.waiters.discard)
        return task

    async def _wait_job(self, job_id: str, submit_time: float, accept_time: float, job: JobDraw) -> None:
        state, attempts, end = JobState.PENDING, 0, math.nan
        try:
            async with self.waiter_slots:
                for _ in range(100_000):  # bounded; each pass long-polls or backs off
                    remaining = self.hard_end - self.now()
                    if remaining <= 0:
                        break
                    try:
                        name, attempts = await self.target.wait(job_id, remaining)
                    except TargetError as exc:
                        if exc.code == "NOT_FOUND":  # the system lost an accepted job
                            state = JobState.STATE_UNSPECIFIED
                            break
                        await asyncio.sleep(min(_WAIT_RETRY, max(0.0, remaining)))
                        continue
                    state = JobState.__members__.get(name, JobState.STATE_UNSPECIFIED)
                    if state in TERMINAL:
                        end = self.now()
                        break
        finally:  # also when cancelled at the hard end: the job is recorded as unfinished
            reason = self.target.end_reason(job_id) if isinstance(self.target, JobTarget) else ""
            self.jobs.append(
                JobRecord(
                    job_id, submit_time, accept_time, end, state, attempts, job.duration, job.priority, reason
                )
            )

    async def open_loop(self, trace: Trace, indices: range, client: int) -> None:
        slots = asyncio.Semaphore(self.spec.max_in_flight)
        in_flight: set[asyncio.Task[None]] = set()
        times, ops, targets = trace.times.tolist(), trace.ops.tolist(), trace.targets.tolist()
        launched = 0
        for n, i in enumerate(indices):
            delay = times[i] - self.now()
            if delay > 0:
                # libuv (uvloop) timers have millisecond resolution and may fire early: sleep again
                for _ in range(4):
                    await asyncio.sleep(delay)
                    delay = times[i] - self.now()
                    if delay <= 0:
                        break
            elif n % _YIELD_EVERY == 0:
                await asyncio.sleep(0)
            if slots.locked():  # held back by max_in_flight: it will start late, measured from times[i]
                self.held_back += 1
                try:
                    await asyncio.wait_for(slots.acquire(), max(0.0, self.hard_end - self.now()))
                except TimeoutError:
                    break
            else:
                await slots.acquire()  # free: returns at once
            self.unrecorded[i] = (client, Op(ops[i]), times[i])
            task = asyncio.create_task(
                self.request(client, Op(ops[i]), times[i], trace.job(i), targets[i], token=i)
            )
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            task.add_done_callback(lambda _: slots.release())
            launched = n + 1
        # never sent: the in-flight bound held them past the hard end
        now = self.now()
        for i in list(indices)[launched:]:
            self.requests.append(RequestRecord(client, Op(ops[i]), times[i], now, now, "CANCELLED"))
        await _finish(in_flight, self.hard_end - self.now())
        now = self.now()
        for client_, op, intended in self.unrecorded.values():  # cancelled before they ran
            self.requests.append(RequestRecord(client_, op, intended, now, now, "CANCELLED"))
        self.unrecorded.clear()

    async def closed_client(self, client: int, script: Trace) -> None:
        assert isinstance(self.spec.arrival, ClosedLoop)
        wait_for_job = self.spec.arrival.wait_for_completion
        end = self.spec.total_time
        think, ops, targets = script.times.tolist(), script.ops.tolist(), script.targets.tolist()
        for k in range(len(think)):
            if think[k] > 0:
                await asyncio.sleep(min(think[k], max(0.0, end - self.now())))
            intended = self.now()
            if intended >= end:
                return
            if not wait_for_job:
                await self.request(client, Op(ops[k]), intended, script.job(k), targets[k])
                continue
            waiter: list[asyncio.Task[None]] = []
            await self.request(client, Op(ops[k]), intended, script.job(k), targets[k], waiter=waiter)
            for task in waiter:  # bounded by the drain deadline; it records the job itself
                await asyncio.shield(task)


async def _finish(tasks: set[asyncio.Task[None]], timeout: float) -> None:
    """Waits for the tasks up to `timeout`, then cancels the rest (they record themselves)."""
    pending = set(tasks)
    if pending and timeout > 0:
        _, pending = await asyncio.wait(pending, timeout=timeout)
    for task in pending:
        task.cancel()
    if pending:
        await asyncio.gather(*pending, return_exceptions=True)


async def run_load(
    target: Target,
    spec: WorkloadSpec,
    *,
    clients_offset: int = 0,
    part: tuple[int, int] = (0, 1),
    ready: Callable[[], Awaitable[float]] | None = None,
    drain_timeout: float = DEFAULT_DRAIN,
    max_waiters: int = DEFAULT_MAX_WAITERS,
    track_jobs: bool = True,
    list_page_size: int = 100,
    max_requests_per_client: int | None = None,
) -> LoadResult:
    """Runs the workload against `target` in this process and returns its records and stats.

    `part=(i, n)` runs only share i of n (requests i, i+n, ... of the trace; or closed-loop clients
    i, i+n, ...). `ready`, when given, is awaited once the traces are built and returns the
    time.perf_counter() value to treat as time zero (the run sleeps until then), so processes started
    together share one clock origin. `clients_offset` is added to the recorded client numbers (open
    loop: process i records client clients_offset + i; closed loop: client c records clients_offset + c).
    """
    index, parts = part
    if not 0 <= index < parts:
        raise ValueError(f"part {part} is not (i, n) with 0 <= i < n")
    if drain_timeout < 0 or max_waiters < 1:
        raise ValueError("drain_timeout must be >= 0 and max_waiters >= 1")
    if spec.has_job_settings and not isinstance(target, JobTarget):
        raise ValueError(
            f"{type(target).__name__} takes no per-job settings (priority, retries, timeout, labels)"
        )
    if spec.prefill is not None and index == 0:  # aged by one process, before the run's clock starts
        await age(target, spec)
    # traces are made before the clock starts: generating them is not load
    trace = open_loop_trace(spec) if spec.is_open else None
    scripts: list[Trace] = []
    if isinstance(spec.arrival, ClosedLoop):
        per_client = max_requests_per_client or math.ceil(spec.total_time * CLOSED_LOOP_MAX_RATE)
        scripts = closed_loop_scripts(spec, per_client)
    if ready is not None:
        start_at = await ready()
        await asyncio.sleep(max(0.0, start_at - time.perf_counter()))
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    run = _Run(
        target=target,
        spec=spec,
        t0=t0,
        hard_end=spec.total_time + drain_timeout,
        max_waiters=max_waiters,
        track_jobs=track_jobs,
        list_page_size=list_page_size,
    )
    if trace is not None:
        await run.open_loop(trace, range(index, len(trace), parts), clients_offset + index)
    else:
        clients = [
            asyncio.create_task(run.closed_client(clients_offset + c, scripts[c]))
            for c in range(index, len(scripts), parts)
        ]
        await _finish(set(clients), run.hard_end - run.now())
    wall = run.now()
    cpu = time.process_time() - cpu0
    await _finish(set(run.waiters), run.hard_end - run.now())
    requests, jobs = list(run.requests), list(run.jobs)
    sort_requests(requests)
    sort_jobs(jobs)
    stats = load_stats(
        requests,
        spec,
        processes=1,
        wall_time=wall,
        cpu_time=cpu,
        cpu_utilisation=cpu / max(wall, 1e-9),
        held_back=run.held_back,
    )
    return LoadResult(requests, jobs, stats)


# ---------------------------------------------------------------------------- several processes
async def _run_with_target(target_spec: Mapping[str, Any], spec: WorkloadSpec, **options: Any) -> LoadResult:
    target = make_target(target_spec)
    try:
        return await run_load(target, spec, **options)
    finally:
        await target.close()


def run_load_sync(target_spec: Mapping[str, Any], spec: WorkloadSpec, **options: Any) -> LoadResult:
    """run_load in a fresh event loop (uvloop when installed), with a target built by make_target."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(_run_with_target(target_spec, spec, **options))


def run_load_processes(
    target_spec: Mapping[str, Any],
    spec: WorkloadSpec,
    processes: int,
    *,
    startup_timeout: float = 60.0,
    started: Callable[[float], None] | None = None,
    **options: Any,
) -> LoadResult:
    """Runs the workload from `processes` child processes (see the module docstring) and merges them.

    Children get JSON on the command line and stdin, and hand back gzip CSV and JSON files.
    `options` are run_load's keyword options (JSON-able values only). `started`, when given, is
    called with the run's time zero as a time.time() epoch once the children have been told it
    (for measuring the servers over the same window, e.g. `dtq bench`)."""
    if processes < 1:
        raise ValueError("processes must be >= 1")
    drain = float(options.get("drain_timeout", DEFAULT_DRAIN))
    with tempfile.TemporaryDirectory(prefix="dtq-load-") as tmp:
        children: list[subprocess.Popen[str]] = []
        try:
            for i in range(processes):
                job = {
                    "target": dict(target_spec),
                    "workload": workload_to_mapping(spec),
                    "part": [i, processes],
                    "out": str(Path(tmp) / f"part-{i}"),
                    "options": options,
                }
                children.append(json_child("realsys.loadgen", job))
            for child in children:  # each says "ready" once its trace is built and target made
                assert child.stdout is not None
                line = child.stdout.readline().strip()
                if line != "ready":
                    raise RuntimeError(f"load generator child {child.pid} failed to start ({line!r})")
            start_epoch = time.time() + 0.5
            for child in children:
                assert child.stdin is not None
                child.stdin.write(f"{start_epoch!r}\n")
                child.stdin.close()
            if started is not None:
                started(start_epoch)
            deadline = time.monotonic() + spec.total_time + drain * 2 + startup_timeout
            for child in children:
                code = child.wait(timeout=max(1.0, deadline - time.monotonic()))
                if code != 0:
                    raise RuntimeError(f"load generator child {child.pid} exited with {code}")
        finally:
            for child in children:
                if child.poll() is None:
                    child.kill()
                    child.wait()
        requests: list[RequestRecord] = []
        jobs: list[JobRecord] = []
        cpu_times, utilisations, walls, held_back = [], [], [], 0
        for i in range(processes):
            out = Path(tmp) / f"part-{i}"
            requests.extend(read_request_records(out / REQUESTS_FILE))
            jobs.extend(read_job_records(out / JOBS_FILE))
            child_stats = json.loads((out / "stats.json").read_text())
            cpu_times.append(float(child_stats["cpu_time"]))
            utilisations.append(float(child_stats["cpu_utilisation"]))
            walls.append(float(child_stats["wall_time"]))
            held_back += int(child_stats["held_back"])
    sort_requests(requests)
    sort_jobs(jobs)
    stats = load_stats(
        requests,
        spec,
        processes=processes,
        wall_time=max(walls),
        cpu_time=sum(cpu_times),
        cpu_utilisation=max(utilisations),
        held_back=held_back,
    )
    return LoadResult(requests, jobs, stats)


def _child_main(raw: str) -> int:
    """One child of run_load_processes: build, say ready, wait for the start time, run, write files."""
    job = json.loads(raw)
    spec = workload_of(job["workload"])
    out = Path(job["out"])
    out.mkdir(parents=True)
    index, parts = job["part"]
    options = dict(job["options"])

    async def ready() -> float:
        """Tells the parent this child is ready; the parent answers with the common start time."""
        print("ready", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        return time.perf_counter() + (float(line) - time.time())

    async def main() -> LoadResult:
        target = make_target(job["target"])
        try:
            return await run_load(target, spec, part=(index, parts), ready=ready, **options)
        finally:
            await target.close()

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        result = runner.run(main())
    write_request_records(out / REQUESTS_FILE, result.requests)
    write_job_records(out / JOBS_FILE, result.jobs)
    (out / "stats.json").write_text(json.dumps(asdict(result.stats), sort_keys=True))
    return 0


def run(target_spec: Mapping[str, Any], spec: WorkloadSpec, processes: int = 1, **options: Any) -> LoadResult:
    """In this process when processes == 1, otherwise from child processes."""
    if processes == 1:
        return run_load_sync(target_spec, spec, **options)
    return run_load_processes(target_spec, spec, processes, **options)


# ---------------------------------------------------------------------------- `dtq load`
def design_parameters(cluster_dir: Path) -> tuple[str, list[str], dict[str, Any]]:
    """(design, client addresses, parameters) of a local cluster, from its cluster.json."""
    info = cluster.load(cluster_dir)
    per_node = {"DTQ_NAME", "DTQ_LISTEN", "DTQ_DATA_DIR", "DTQ_ROLE", "DTQ_PEERS", "DTQ_SERVICES"}
    per_node |= {"DTQ_SLOTS", "DTQ_METRICS_PORT", "DTQ_DESIGN"}
    shared: dict[str, str] | None = None
    for node in info.nodes:
        env = {k: v for k, v in node.env.items() if k.startswith("DTQ_") and k not in per_node}
        shared = env if shared is None else {k: v for k, v in shared.items() if env.get(k) == v}
    slots = {n.name: int(n.env.get("DTQ_SLOTS", "0")) for n in info.nodes}
    parameters: dict[str, Any] = {
        "store": (shared or {}).pop("DTQ_STORE", "unknown"),
        "total_slots": sum(slots.values()),
        "slots": slots,
        "settings": dict(sorted((shared or {}).items())),
    }
    return info.design, info.clients, parameters


HEALTH_WAIT = 5.0  # seconds `dtq load` waits for each address to answer gRPC health before the run


def unavailable(message: str) -> Unavailable:
    """An UNAVAILABLE error as a call to the cluster raises it (its status code in `.grpc_code`)."""
    error = Unavailable(message)
    error.grpc_code = grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    return error


def load_command(args: argparse.Namespace) -> int:
    """`dtq load`: one run against a cluster, written under --runs-dir in the data/README.md layout."""
    spec = load_workload(args.workload)
    if args.dir:
        design, addresses, parameters = design_parameters(Path(args.dir))
    else:
        if not args.design:
            raise ValueError("--design is required with --addr")
        design, addresses, parameters = args.design, list(args.addr), {}
    run_id = args.run_id or new_run_id("real", design, Path(args.workload).stem, spec.seed)
    check_new_run(args.runs_dir, run_id)  # before the load: after it, its records would be lost
    for address in addresses:  # else a dead address makes a run of nothing but UNAVAILABLE
        try:
            cluster.wait_healthy(address, min(args.timeout, HEALTH_WAIT))
        except TimeoutError as exc:
            raise unavailable(f"{exc}: nothing was measured") from None
    submit_wait = getattr(args, "submit_wait", 0.0)
    parameters = {**parameters, "processes": args.processes, "timeout": args.timeout}
    if submit_wait > 0:  # the client mode is part of what was measured
        parameters["submit_wait"] = submit_wait
    started_at, stamp = utc_now(), provenance()
    if getattr(args, "host_probe", False):  # before the load, as the experiment runner takes it
        parameters["host_probe"] = take_probe()
    progress(
        f"{run_id}: {spec.total_time:g} s of load on {len(addresses)} address(es), then up to "
        f"{args.drain:g} s for jobs to finish"
    )
    result = run(
        dtq_target_spec(addresses, args.timeout, submit_wait=submit_wait),
        spec,
        args.processes,
        drain_timeout=args.drain,
    )
    progress("writing the run")
    path, summary = write_load_run(
        args.runs_dir,
        run_id,
        result,
        spec,
        kind="real",
        design=design,
        parameters=parameters,
        started_at=started_at,
        provenance_info=stamp,
        replication=args.replication,
        records=not args.no_records,
    )
    print(format_summary(summary))
    print(
        f"  generator start lag p99 {result.stats.p99_start_lag * 1000:.1f} ms, "
        f"max {result.stats.max_start_lag * 1000:.1f} ms; {result.stats.held_back} requests held back by "
        "max_in_flight (latency counts from the intended time anyway)"
    )
    print(f"run written to {path}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        print("usage: python -m realsys.loadgen JOB_JSON  (a child of run_load_processes)", file=sys.stderr)
        sys.exit(2)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(_child_main(sys.argv[1]))
