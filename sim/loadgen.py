"""realsys/loadgen.py in simulated time: the same traces, the same rules, the same records.

Open loop: `open_loop_trace(spec)` replayed, request i by generator process i mod P, each launched at
its intended time unless `max_in_flight` requests of that process are outstanding (then it starts
late; latency still counts from the intended time). Closed loop: `closed_loop_scripts(spec, ...)`,
client c in process c mod P: think, send, wait for the answer, repeat until the run time is over.
status/result/cancel pick job floor(t * n) among the n jobs the process has had accepted so far (none
yet: the request is sent as a submit of the mean duration). Every accepted submit starts a waiter
that long-polls WaitJob until the job ends (at most `max_waiters` at a time per process): that load
is part of what the system sees. Closed loop with `wait_for_completion`: the client itself is its
submit's waiter (same WaitJob calls, same max_waiters slot), and thinks and sends again only once the job
is terminal (or the hard end came), so it has at most one job in the system; the submit's record
keeps the submit RPC's latency, the job record carries submit -> terminal. After the trace,
outstanding work gets `drain` seconds; requests still outstanding (or never sent) are CANCELLED,
jobs still unfinished have no end time.

The generator's own CPU per request (`loadgen_request`, send and receive parts) is burnt on its own
process, which shares the host's cores with the cluster. Times in records are seconds from the run
start (the trace's time zero).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import numpy.typing as npt
import simpy

from model.results.schema import JobRecord, RequestRecord
from model.states import TERMINAL, JobState
from model.workload import (
    ClosedLoop,
    JobDraw,
    Op,
    Trace,
    WorkloadSpec,
    closed_loop_scripts,
    numeric_mean,
    open_loop_trace,
    prefill_jobs,
)
from sim.engine import Cluster, LoadgenPart, SimGen, start_now, wake
from sim.idcolumns import JobIds
from sim.records import CHUNK, JOBS, REQUESTS, Records, RecordSink

BOTTLENECK_RATE = 0.95  # as realsys.loadgen
BOTTLENECK_CPU = 0.90
CLOSED_LOOP_MAX_RATE = 5000.0  # realsys.loadgen: sizes each closed-loop client's script
_WAIT_RETRY = 0.05
_OPS = {int(op): op for op in Op}


@dataclass(slots=True)
class _Watch:
    job_id: str
    submit_time: float
    accept_time: float
    job: JobDraw
    state: JobState = JobState.PENDING
    attempts: int = 0


@dataclass(slots=True)
class _Progress:
    """How far one open-loop process got through its share of the trace."""

    indices: range
    ops: npt.NDArray[Any]
    times: npt.NDArray[np.float64]
    launched: int = 0


class _Semaphore:
    """asyncio.Semaphore: FIFO waiters."""

    def __init__(self, env: simpy.Environment, value: int) -> None:
        self.env = env
        self.value = value
        self._waiters: deque[simpy.Event] = deque()

    @property
    def locked(self) -> bool:
        return self.value == 0

    def acquire(self) -> simpy.Event | None:
        """None when acquired at once; else an event that fires once acquired."""
        if self.value > 0 and not self._waiters:
            self.value -= 1
            return None
        event = simpy.Event(self.env)
        self._waiters.append(event)
        return event

    def release(self) -> None:
        if self._waiters:
            self._waiters.popleft().succeed()  # handed over: the count stays
        else:
            self.value += 1


class _Part:
    """One generator process: a LoadgenPart plus its accepted jobs and waiter bound."""

    def __init__(self, part: LoadgenPart, env: simpy.Environment, max_waiters: int) -> None:
        self.part = part
        self.accepted = JobIds()  # as codes, not strings: a long run accepts millions
        self.waiter_slots = _Semaphore(env, max_waiters)


class LoadGen:
    def __init__(
        self,
        cluster: Cluster,
        spec: WorkloadSpec,
        t0: float,
        chunk: int = CHUNK,
        spill_dir: str | None = None,
    ) -> None:
        params = cluster.params
        self.cluster = cluster
        self.env = cluster.env
        self.spec = spec
        self.t0 = t0
        self.end = t0 + spec.total_time  # sim time the trace ends
        self.hard_end = self.end + params.drain
        self.wait_poll = params.wait_poll
        self.track_jobs = params.track_jobs
        self.list_page_size = params.list_page_size
        self.send_fraction = params.client_send_fraction
        self.parts = [
            _Part(LoadgenPart(cluster.add_loadgen_proc(i), i), self.env, params.max_waiters)
            for i in range(params.loadgen_processes)
        ]
        # records go to sinks that spill to disk beyond `chunk` each (sim/records.py)
        self.requests: RecordSink[RequestRecord] = RecordSink(REQUESTS, chunk, spill_dir)
        self.jobs: RecordSink[JobRecord] = RecordSink(JOBS, chunk, spill_dir)
        self._unrecorded: dict[int, tuple[int, Op, float, float]] = {}  # token -> client, op, intended, start
        self._next_token = 0
        self._watches: dict[str, _Watch] = {}
        self._drivers = 0  # arrival processes still running
        self._open_progress: dict[int, _Progress] = {}
        self._untracked: set[str] = set()  # without waiters: accepted jobs not yet ended at their owner
        if not self.track_jobs:
            cluster.on_terminal = self._ended
        self.done = simpy.Event(self.env)
        self.env.timeout(self.hard_end).callbacks.append(lambda _: wake(self.done))

    # ------------------------------------------------------------------ set-up
    def start(self) -> None:
        spec = self.spec
        self._prefill()
        if spec.is_open:
            trace = open_loop_trace(spec)
            n = len(self.parts)
            for i, part in enumerate(self.parts):
                self._drivers += 1
                self.env.process(self._open_loop(part, trace, range(i, len(trace), n), i))
        else:
            assert isinstance(spec.arrival, ClosedLoop)
            per_client = math.ceil(spec.total_time * CLOSED_LOOP_MAX_RATE)
            scripts = closed_loop_scripts(spec, per_client)
            for c, script in enumerate(scripts):
                self._drivers += 1
                self.env.process(self._closed_client(self.parts[c % len(self.parts)], c, script))

    def _prefill(self) -> None:
        """The workload's prefill: finished jobs in the tables now, pending ones queued at time zero
        (as realsys.loadgen.age leaves a real cluster: submitted just before the trace starts)."""
        prefill = prefill_jobs(self.spec)
        if not prefill.finished and not prefill.pending:
            return
        cluster = self.cluster
        cluster.prefill(list(zip(prefill.finished, prefill.states, strict=True)), [], self.env._now)
        if prefill.pending:
            delay = max(0.0, self.t0 - self.env._now)
            self.env.timeout(delay).callbacks.append(
                lambda _: cluster.prefill([], prefill.pending, self.env._now)
            )

    def _check_done(self) -> None:
        if self._drivers == 0 and not self._unrecorded and not self._watches and not self._untracked:
            wake(self.done)

    def _ended(self, job_id: str) -> None:
        self._untracked.discard(job_id)
        self._check_done()

    # ------------------------------------------------------------------ arrivals
    def _open_loop(self, part: _Part, trace: Trace, indices: range, client: int) -> SimGen[None]:
        env = self.env
        slots = _Semaphore(env, self.spec.max_in_flight)
        # the trace's arrays, shared by every generator process and read one element at a time: a
        # list per process would hold the whole trace (~100 bytes a request) once per process
        times, ops, targets = trace.times, trace.ops, trace.targets
        progress = self._open_progress[client] = _Progress(indices, ops, times)
        for i in indices:
            at = self.t0 + times.item(i)  # item(): the element as a Python float, as float() would give
            delay = at - env._now
            if delay > 0:
                yield env.timeout(delay)
            held = slots.acquire()
            if held is not None:
                yield held  # held back by max_in_flight: starts late, measured from times[i]
            progress.launched += 1
            op = _OPS[ops.item(i)]  # Op(int(ops[i])), without the enum call
            # outstanding from now on, before the process first runs: the run is not over yet
            token = self._outstanding(client, op, at)
            # first step at once: the request's first burst queues now, not behind an Initialize
            start_now(env, self._request(token, part, op, at, trace.job(i), targets.item(i), slots))
        self._drivers -= 1
        self._check_done()

    def _closed_client(self, part: _Part, client: int, script: Trace) -> SimGen[None]:
        env = self.env
        think = script.times.tolist()
        ops = script.ops.tolist()
        targets = script.targets.tolist()
        assert isinstance(self.spec.arrival, ClosedLoop)
        waits = self.spec.arrival.wait_for_completion
        if self.t0 > env._now:
            yield env.timeout(self.t0 - env._now)  # the run (time zero) starts after the warm start
        for k in range(len(think)):
            if think[k] > 0:
                yield env.timeout(min(think[k], max(0.0, self.end - env._now)))
            intended = env._now
            if intended >= self.end:
                break
            token = self._outstanding(client, Op(ops[k]), intended)
            watch = yield from self._request(
                token, part, Op(ops[k]), intended, script.job(k), targets[k], None, client_waits=waits
            )
            if watch is not None:  # the client waits for its job's end before it thinks again
                self._watches[watch.job_id] = watch
                yield from self._wait_job(part, watch)
        self._drivers -= 1
        self._check_done()

    # ------------------------------------------------------------------ one request
    def _outstanding(self, client: int, op: Op, intended: float) -> int:
        token = self._next_token
        self._next_token += 1
        self._unrecorded[token] = (client, op, intended, self.env._now)
        return token

    def _request(
        self,
        token: int,
        part: _Part,
        op: Op,
        intended: float,
        job: JobDraw,
        target: float,
        slots: _Semaphore | None,
        client_waits: bool = False,
    ) -> SimGen[_Watch | None]:
        """One request; with `client_waits`, an accepted submit's watch is returned for the client to
        wait on instead of starting a waiter."""
        env = self.env
        cluster = self.cluster
        lg = part.part
        client = self._unrecorded[token][0]
        c = lg.proc.client()
        send = c * self.send_fraction
        job_id = ""

        def begin(now: float) -> tuple[float, float]:
            nonlocal op, job, job_id
            if op in (Op.STATUS, Op.RESULT, Op.CANCEL):
                accepted = part.accepted
                if accepted:
                    job_id = accepted[min(len(accepted) - 1, int(target * len(accepted)))]
                else:
                    op, job = Op.SUBMIT, replace(job, duration=numeric_mean(self.spec.duration))
            self._unrecorded[token] = (client, op, intended, now)
            if op is Op.SUBMIT:  # serializing the payload it sends
                return send + lg.proc.byte_cost("SubmitJob", job.payload_bytes), now
            return send, now

        start: float = yield lg.proc.run(begin)
        if op is Op.SUBMIT:
            status, value = yield from cluster.request_submit(lg, job)
        elif op is Op.STATUS:
            status, value = yield from cluster.request_status(lg, job_id)
        elif op is Op.RESULT:
            status, value = yield from cluster.request_result(lg, job_id)
        elif op is Op.CANCEL:
            status, value = yield from cluster.request_cancel(lg, job_id)
        else:
            status, value = yield from cluster.request_list(lg, self.list_page_size)
        if c - send:
            yield lg.proc.run(c - send)
        end = env._now
        if token not in self._unrecorded:
            return None  # recorded as CANCELLED at the hard end
        del self._unrecorded[token]
        watch: _Watch | None = None
        if op is Op.SUBMIT and status == "OK":
            job_id = value
            part.accepted.append(job_id)
            if client_waits:
                watch = _Watch(job_id, intended, end, job)
            elif self.track_jobs:
                self._watch(part, _Watch(job_id, intended, end, job))
            elif job_id not in cluster.terminal_at:
                self._untracked.add(job_id)
        t0 = self.t0
        self.requests.append(RequestRecord(client, op, intended - t0, start - t0, end - t0, status, job_id))
        if slots is not None:
            slots.release()
        self._check_done()
        return watch

    # ------------------------------------------------------------------ job waiters
    def _watch(self, part: _Part, watch: _Watch) -> None:
        self._watches[watch.job_id] = watch
        # behind an Initialize, not start_now: started inside the submit's step, its first send
        # would find the loop busy and pay no wake-up, which changes outputs
        # (tests/sim/test_shortcut_equivalence.py)
        self.env.process(self._wait_job(part, watch))

    def _wait_job(self, part: _Part, watch: _Watch) -> SimGen[None]:
        env = self.env
        lg = part.part
        held = part.waiter_slots.acquire()
        if held is not None:
            yield held
        end = math.nan
        for _ in range(100_000):
            remaining = self.hard_end - env._now
            if remaining <= 0:
                break
            c = lg.proc.client()
            send = c * self.send_fraction
            if send:
                yield lg.proc.run(send)
            status, value = yield from self.cluster.request_wait(
                lg, watch.job_id, min(remaining, self.wait_poll)
            )
            if c - send:
                yield lg.proc.run(c - send)
            if status != "OK":
                if status == "NOT_FOUND":
                    watch.state = JobState.STATE_UNSPECIFIED
                    break
                yield env.timeout(_WAIT_RETRY)
                continue
            watch.state, watch.attempts = value
            if watch.state in TERMINAL:
                end = env._now
                break
        part.waiter_slots.release()
        if self._watches.pop(watch.job_id, None) is None:
            return  # recorded as unfinished at the hard end
        self.jobs.append(self._job_record(watch, end))
        self._check_done()

    def _job_record(self, watch: _Watch, end: float) -> JobRecord:
        t0 = self.t0
        return JobRecord(
            watch.job_id,
            watch.submit_time - t0,
            watch.accept_time - t0,
            end - t0,
            watch.state,
            watch.attempts,
            watch.job.duration,
            watch.job.priority,
            self.cluster.job_reason(watch.job_id) if watch.state in TERMINAL else "",
        )

    # ------------------------------------------------------------------ the end
    def finish(self) -> tuple[Records[RequestRecord], Records[JobRecord]]:
        """Records what is still outstanding (as realsys.loadgen does at its hard end) and returns the
        records sorted as the real generator sorts them."""
        now = self.env._now - self.t0
        for client, progress in self._open_progress.items():
            for i in progress.indices[progress.launched :]:  # held back past the hard end: never sent
                self.requests.append(
                    RequestRecord(
                        client, Op(int(progress.ops[i])), float(progress.times[i]), now, now, "CANCELLED"
                    )
                )
        for client, op, intended, start in self._unrecorded.values():
            self.requests.append(
                RequestRecord(client, op, intended - self.t0, start - self.t0, now, "CANCELLED")
            )
        self._unrecorded.clear()
        for watch in self._watches.values():
            self.jobs.append(self._job_record(watch, math.nan))
        self._watches.clear()
        if not self.track_jobs:
            self._jobs_from_cluster()
        return self.requests.finish(), self.jobs.finish()

    def _jobs_from_cluster(self) -> None:
        """Without waiters: each job as its owner has it, ended when the owner saw it end."""
        t0 = self.t0
        accept = {r.job_id: r for r in self.requests if r.op is Op.SUBMIT and r.status == "OK"}
        for job_id, r in accept.items():
            state, attempts = self.cluster.job_state(job_id)
            end = self.cluster.terminal_at.get(job_id, math.nan)
            job = self.cluster.draws.get(job_id)
            self.jobs.append(
                JobRecord(
                    job_id,
                    r.intended_time,
                    r.end_time,
                    end - t0,
                    state,
                    attempts,
                    job.duration if job is not None else 0.0,
                    job.priority if job is not None else 0,
                    self.cluster.job_reason(job_id),
                )
            )

    def loadgen_block(self, requests: Iterable[RequestRecord], wall: float) -> dict[str, object]:
        """The summary's `loadgen` block, as realsys.loadgen.load_stats computes it, with the
        generator's simulated CPU time."""
        start, end = self.spec.warmup, self.spec.total_time
        seconds = end - start
        achieved = sum(start <= r.start_time < end for r in requests) / seconds
        utilisation = max(p.part.proc.busy_time for p in self.parts) / max(wall, 1e-9)
        reasons = []
        if self.spec.is_open:
            trace_rate = sum(start <= r.intended_time < end for r in requests) / seconds
            if trace_rate and achieved < BOTTLENECK_RATE * trace_rate:
                reasons.append(
                    f"sent {achieved:.1f} req/s, below {BOTTLENECK_RATE:.0%} of the trace's {trace_rate:.1f}"
                )
        if utilisation > BOTTLENECK_CPU:
            reasons.append(f"generator process at {utilisation:.0%} of one core")
        return {
            "processes": len(self.parts),
            "cpu_utilisation": round(utilisation, 4),
            "achieved_rate": round(achieved, 3),
            "bottleneck": bool(reasons),
            "bottleneck_reason": "; ".join(reasons),
        }
