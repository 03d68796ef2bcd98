"""`dtq calibrate`: measures single operations of the real system and writes
data/calibration/<name>.json for the simulator (sim/README.md "What a calibration must measure").

Method (all microbenchmarks, one call in flight, never end-to-end curves):
- Server CPU per call: the real processes run as a local cluster (`realsys.cluster.up`, every slot
  count 0 so no worker runs and nothing but the driven calls happens). Around each call the driver
  reads the CPU time of every server process from /proc/<pid>/task/*/schedstat (nanoseconds, all
  threads: gRPC's C-core threads included), outside the timed window. A process's per-call sample is
  its CPU delta minus its idle rate (measured before) times the call's wall time. Nested calls: the
  caller's delta includes its client side of the nested RPC; `client_call` (measured on a bare echo)
  is subtracted to get `service.<role>.<method>`, and so is the mean commit of a call that saves (the
  simulator adds `commit` beside the service time). Work a measured call includes that the simulator
  charges under another name (ListJobs.merge, the job service's outbox flush) is set to 0.
- client_call: CPU of this (grpc.aio client) process per bare health-check call (process_time).
- network: one-way hop = (RTT of the bare echo - client CPU - server CPU) / 2, per call, floored at 0.
- commit / commit_per_row: realsys.storage JobRecords.save (1 row) and save_many (rows) timed in-process.
- loadgen_request: realsys.loadgen.run_load against targets.InMemoryTarget: generator CPU / request.
- measurements.scheduler_slice: how long the kernel leaves a process that never blocks on its core
  while another waits (lab.calibration.hostprobe.scheduler_slice: runs of cores + 1 spinning processes), for
  the simulator's fair-scheduler what-if (`cpu_slice`, not set here).
- The job path (realsys/calibrate_paths.py): the worker-side RPCs with the calibrator as the worker,
  and the in-process steps from per-job CPU windows on a cluster with one slot per worker; `closure`
  in the measurements compares those windows with the sums of the direct measurements.
Each distribution is kept as <= 200 empirical samples (evenly spaced quantiles of the measured ones),
with a lognormal fit and its KS statistic recorded under "measurements".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from model.results.stats import lognormal_fit

MAX_SAMPLES = 200


T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Runs the calibrator's client side on the event loop the load generator uses (uvloop when
    installed): client-side costs are then the generator's."""
    from realsys.loadgen import loop_factory

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)


# ---------------------------------------------------------------------------- CPU accounting
def per_thread_times(pid: int) -> dict[str, tuple[str, float, float]]:
    """Per thread id of `pid`: (its name, CPU seconds, run-queue wait seconds: runnable but not
    running), from /proc/<pid>/task/*/schedstat (ns) and comm; OSError when the process's task list
    is unreadable."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            fields = (task / "schedstat").read_text().split()
            name = (task / "comm").read_text().strip()
            out[task.name] = (name, int(fields[0]) / 1e9, int(fields[1]) / 1e9)
        except (OSError, ValueError, IndexError):  # a thread that just ended
            continue
    return out


def thread_times(pid: int) -> tuple[float, float]:
    """(CPU seconds, run-queue wait seconds) summed over every thread of `pid` (per_thread_times)."""
    times = per_thread_times(pid).values()
    return sum(t[1] for t in times), sum(t[2] for t in times)


def process_cpu(pid: int) -> float:
    """CPU seconds of every thread of `pid` (schedstat: ns resolution; falls back to /proc/pid/stat)."""
    try:
        return thread_times(pid)[0]
    except OSError:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def summarize_samples(samples: Sequence[float]) -> dict[str, Any]:
    """Quantiles and a lognormal fit (mean-parameterised as sim.params.Dist) with its KS statistic."""
    arr = np.asarray(samples, dtype=np.float64)
    out: dict[str, Any] = {"n": len(arr)}
    if not len(arr):
        return out
    out.update(
        mean=float(arr.mean()),
        p05=float(np.quantile(arr, 0.05)),
        p50=float(np.median(arr)),
        p95=float(np.quantile(arr, 0.95)),
        p99=float(np.quantile(arr, 0.99)),
    )
    fit = lognormal_fit(arr)
    if fit is not None:
        out["lognormal"] = {"mean": fit.mean, "sigma": fit.sigma, "ks": fit.ks}
    return out


def to_dist(samples: Sequence[float]) -> dict[str, Any]:
    """An empirical sim.params.Dist mapping of at most MAX_SAMPLES evenly spaced quantiles."""
    arr = np.clip(np.asarray(samples, dtype=np.float64), 0.0, None)
    if len(arr) > MAX_SAMPLES:
        arr = np.quantile(arr, (np.arange(MAX_SAMPLES) + 0.5) / MAX_SAMPLES)
    return {"kind": "empirical", "samples": [float(f"{x:.4g}") for x in np.sort(arr)]}


async def measure_calls(
    call: Callable[[int], Awaitable[object]],
    pids: Mapping[str, int],
    count: int,
    idle_rate: Mapping[str, float] | None = None,
    gap: float = 0.0,
) -> dict[str, list[float]]:
    """Runs `call(i)` `count` times, one in flight, `gap` seconds of sleep before each. Per call:
    "rtt", "client" (this process's CPU in the call), "gap" (the time since the previous call ended:
    how long the server slept) and, per name in `pids`, that process's CPU delta minus idle_rate x the
    call's wall time (the sleep before it is not charged)."""
    out: dict[str, list[float]] = {"rtt": [], "client": [], "gap": [], **{n: [] for n in pids}}
    idle = idle_rate or {}
    before = {n: process_cpu(p) for n, p in pids.items()}
    ended = time.perf_counter()
    for i in range(count):
        if gap:
            await asyncio.sleep(gap)
            before = {n: process_cpu(p) for n, p in pids.items()}
        w0, c0 = time.perf_counter(), time.process_time()
        out["gap"].append(w0 - ended)
        await call(i)
        c1, w1 = time.process_time(), time.perf_counter()
        after = {n: process_cpu(p) for n, p in pids.items()}
        out["rtt"].append(w1 - w0)
        out["client"].append(c1 - c0)
        for n in pids:
            out[n].append(max(after[n] - before[n] - idle.get(n, 0.0) * (w1 - w0), 0.0))
        before = after
        ended = w1  # the servers sleep from the answer on, through this bookkeeping
    return out


BUSY_IN_FLIGHT = 16  # calls kept in flight to measure a loop that never sleeps
IDLE_GAPS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)  # sleeps before a call: how waking cost grows
IDLE_SWEEP_SECONDS = 12.0  # at most this long sleeping over the whole sweep (fewer calls at long gaps)
BUSY_BLOCKS = 10


async def measure_busy(
    call: Callable[[int], Awaitable[object]], pids: Mapping[str, int], count: int, in_flight: int
) -> dict[str, list[float]]:
    """CPU per call with `in_flight` calls outstanding at all times (the loops never go idle), in
    BUSY_BLOCKS blocks of `count` calls: per block, "client" (this process) and each pid's CPU / calls."""
    out: dict[str, list[float]] = {"client": [], **{n: [] for n in pids}}
    for _ in range(BUSY_BLOCKS):
        next_index = 0

        async def lane() -> None:
            nonlocal next_index
            while next_index < count:
                i = next_index
                next_index += 1
                await call(i)

        before = {n: process_cpu(p) for n, p in pids.items()}
        c0 = time.process_time()
        await asyncio.gather(*(lane() for _ in range(in_flight)))
        out["client"].append((time.process_time() - c0) / count)
        for n, p in pids.items():
            out[n].append((process_cpu(p) - before[n]) / count)
    return out


async def idle_rates(pids: Mapping[str, int], seconds: float) -> dict[str, float]:
    c0 = {n: process_cpu(p) for n, p in pids.items()}
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    dt = time.perf_counter() - t0
    return {n: (process_cpu(p) - c0[n]) / dt for n, p in pids.items()}


# ---------------------------------------------------------------------------- bare echo (hop + client)
_ECHO_SERVER = """
import asyncio, sys
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
async def main():
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()
try:
    import uvloop  # as every dtq node runs (realsys/server.py)
    loop_factory = uvloop.new_event_loop
except ImportError:
    loop_factory = None
with asyncio.Runner(loop_factory=loop_factory) as runner:
    runner.run(main())
"""


EchoCall = Callable[[int], Awaitable[object]]


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[tuple[EchoCall, int]]:
    """A bare grpc.aio health server in a subprocess (as a node runs: uvloop): (one Check call, its pid)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    proc = subprocess.Popen([sys.executable, "-c", _ECHO_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="")

            async def call(_: int) -> object:
                return await stub.Check(request, timeout=5.0)

            yield call, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


async def measure_echo(count: int) -> dict[str, list[float]]:
    """A bare grpc.aio health Check against a server subprocess: RTT, client CPU, server CPU."""
    async with echo_server() as (call, pid):
        await measure_calls(call, {}, max(count // 5, 5))  # warm-up
        idle = await idle_rates({"server": pid}, 0.2)
        out = await measure_calls(call, {"server": pid}, count, idle)
        busy = await measure_busy(call, {"server": pid}, count, BUSY_IN_FLIGHT)
        out["busy_server"], out["busy_client"] = busy["server"], busy["client"]
        for gap in IDLE_GAPS:  # the same call after the server slept `gap` seconds
            n = max(5, min(count // 5, int(IDLE_SWEEP_SECONDS / len(IDLE_GAPS) / gap)))
            slept = await measure_calls(call, {"server": pid}, n, idle, gap=gap)
            out[f"idle_{gap:g}_server"], out[f"idle_{gap:g}_client"] = slept["server"], slept["client"]
    out["network"] = [
        max((r - c - s) / 2, 0.0) for r, c, s in zip(out["rtt"], out["client"], out["server"], strict=True)
    ]
    return out


# ---------------------------------------------------------------------------- storage
def measure_commit(store: str, count: int, rows: int = 20) -> dict[str, list[float]]:
    """JobRecords.save (one row) and save_many(`rows`) wall times; commit_per_row from the slope."""
    from model.config import CoreConfig
    from model.ids import JobIdFactory
    from model.job import JobSpec
    from model.jobs import JobTable
    from realsys.storage import JobRecords, MemoryJobRecords, SqliteJobRecords

    table = JobTable(CoreConfig(), JobIdFactory("cal", "1"))
    spec = JobSpec.make("sleep", b'{"seconds": 0}')
    jobs = [table.submit(float(i), spec).job for i in range(count + rows)]
    tmp = Path(tempfile.mkdtemp(prefix="dtq-cal-"))
    try:
        records: JobRecords = SqliteJobRecords(tmp / "jobs.db") if store == "sqlite" else MemoryJobRecords()
        one: list[float] = []
        many: list[float] = []
        for job in jobs[:count]:
            t0 = time.perf_counter()
            records.save(job)
            one.append(time.perf_counter() - t0)
        batch = jobs[count:]
        for _ in range(max(count // 10, 3)):
            t0 = time.perf_counter()
            records.save_many(batch)
            many.append(time.perf_counter() - t0)
        records.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"commit": one, "commit_many": many, "rows": [float(rows)]}


# ---------------------------------------------------------------------------- load generator
def measure_loadgen(seconds: float, rate: float = 500.0) -> dict[str, float]:
    """Generator CPU per request: run_load against the in-process InMemoryTarget (its own tiny work is
    included), open-loop submits, no WaitJob tracking."""
    from model.workload import workload_from_mapping
    from realsys.loadgen import run_load
    from realsys.targets import InMemoryTarget

    spec = workload_from_mapping(
        {
            "arrival": {"kind": "open", "rate": rate, "max_in_flight": 256},
            "mix": {"submit": 1.0},
            "job_type": "sleep",
            "duration": {"kind": "constant", "mean": 0},
            "run_time": seconds,
            "warmup": 0,
            "seed": 1,
        }
    )

    async def go() -> Any:
        return await run_load(InMemoryTarget(), spec, track_jobs=False)

    result = run_async(go())
    n = max(len(result.requests), 1)
    return {"cpu_per_request": result.stats.cpu_time / n, "requests": float(n)}


# ---------------------------------------------------------------------------- the clusters
WorkerApi = Callable[[list[str], Mapping[str, float]], Awaitable[dict[str, Any]]]


async def _drive(
    addresses: Sequence[str], pids: Mapping[str, int], count: int, worker_api: WorkerApi | None = None
) -> dict[str, Any]:
    """Every client method alone against addresses[0]; a forward through addresses[1] if any; then
    `worker_api(pending job ids, idle rates)` (realsys/calibrate_paths.py) plays the worker."""
    from realsys.loadgen import job_payload
    from realsys.targets import DtqTarget

    target = DtqTarget([addresses[0]])
    payload = job_payload(0.0)
    out: dict[str, Any] = {}
    try:
        ids: list[str] = []

        async def submit(_: int) -> object:
            ids.append(await target.submit("sleep", payload))
            return None

        await measure_calls(submit, {}, max(count // 5, 5))  # warm-up (channels, caches)
        ids.clear()
        idle = await idle_rates(pids, 0.3)
        out["SubmitJob"] = await measure_calls(submit, pids, count, idle)
        out["GetJobStatus"] = await measure_calls(lambda i: target.status(ids[i]), pids, count, idle)

        async def result(i: int) -> object:
            try:
                return await target.result(ids[i])  # FAILED_PRECONDITION: the job is queued
            except Exception as exc:
                return exc

        out["GetJobResult"] = await measure_calls(result, pids, count, idle)
        out["ListJobs"] = await measure_calls(lambda _: target.list(10), pids, max(count // 2, 5), idle)
        if len(addresses) > 1:
            other = DtqTarget([addresses[1]])
            try:
                out["forward.GetJobStatus"] = await measure_calls(
                    lambda i: other.status(ids[i]), pids, count, idle
                )
            finally:
                await other.close()
        spare = ids  # pending jobs for CancelJob
        if worker_api is not None:
            out.update(await worker_api(list(ids), idle))
            spare = [await target.submit("sleep", payload) for _ in range(count)]  # those ran: fresh ones

        async def cancel(i: int) -> object:
            try:
                return await target.cancel(spare[i])
            except Exception as exc:  # a job that already ended: still one CancelJob served
                return exc

        out["CancelJob"] = await measure_calls(cancel, pids, count, idle)
    finally:
        await target.close()
    return out


def measure_cluster(design: str, store: str, count: int, worker_path: bool = True) -> dict[str, Any]:
    """The client API on a cluster without worker slots; with `worker_path`, also the worker-side
    RPCs (the calibrator as the worker) and, on a second cluster with one slot per worker, the job
    path in CPU windows (realsys/calibrate_paths.py)."""
    from lab.calibration import paths as calibrate_paths
    from realsys import cluster

    directory = Path(tempfile.mkdtemp(prefix=f"dtq-cal-{design}-"))
    try:
        info = cluster.up(design, directory, store=store, overrides={"DTQ_SLOTS": "0"})
        try:
            if design == "micro":  # its runtime keeps >= 1 slot: stop it, so no job runs meanwhile
                cluster.kill(directory, "worker", signal.SIGTERM)
            pids = {n.name: n.pid for n in info.nodes if n.role != "worker"}
            addresses = info.clients if design == "mono" else [info.clients[0]]
            worker_api: WorkerApi | None = None
            if worker_path and design == "mono":

                def worker_api(pending: list[str], idle: Mapping[str, float]) -> Awaitable[dict[str, Any]]:
                    return calibrate_paths.mono_worker_api(addresses[0], pending, pids, idle)

            elif worker_path:
                roles = {n.role: n.address for n in info.nodes}

                def worker_api(pending: list[str], idle: Mapping[str, float]) -> Awaitable[dict[str, Any]]:
                    return calibrate_paths.micro_worker_api(
                        roles["gateway"], roles["coordinator"], roles["queue"], len(pending), pids, idle
                    )

            out = run_async(_drive(addresses, pids, count, worker_api))
        finally:
            cluster.down(directory, grace=10.0)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    if worker_path:
        out["job_path"] = calibrate_paths.measure_job_path(design, store, count)
    return out


def _mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if len(xs) else 0.0


def _minus(xs: Sequence[float], c: float) -> list[float]:
    return [max(x - c, 0.0) for x in xs]


# ---------------------------------------------------------------------------- assembling
JOB_IDLE = 0.1  # how long a process sleeps between the phases of a windowed job (calibrate_paths)


def wakeup_curve(echo: Mapping[str, list[float]], busy_server: float) -> list[list[float]]:
    """[[idle seconds, factor on the back-to-back wake-up], ...] from the echo's sleep sweep: each
    point is (median server CPU per call after that sleep - the busy loop's) / (the same back to back),
    at the median sleep of the back-to-back calls first. Factors are made non-decreasing (a longer
    sleep does not make waking cheaper; the raw medians are kept under "measurements")."""
    base = float(np.median(echo["server"])) - busy_server
    if base <= 0 or "gap" not in echo:
        return []
    points = [[max(float(np.median(echo["gap"])), 1e-6), 1.0]]
    for gap in IDLE_GAPS:
        key = f"idle_{gap:g}_server"
        if key in echo and gap > points[-1][0]:
            factor = (float(np.median(echo[key])) - busy_server) / base
            points.append([gap, max(factor, points[-1][1])])
    return points


def _factor(curve: Sequence[Sequence[float]], idle: float) -> float:
    from sim.params import SimParams

    return SimParams(wakeup_idle=tuple((float(a), float(b)) for a, b in curve)).wakeup_factor(idle)


@dataclass(frozen=True)
class Overheads:
    """Means that measured server samples are net of: a caller's CPU per call on a busy loop
    (`client`), a sleeping loop's wake-up (`wake`, back to back: the simulator charges it to every
    burst that finds its loop idle, as every measured call at one in flight did; `cold` times it
    after a windowed job's sleeps of JOB_IDLE), and one storage commit (`commit`: the simulator adds
    commits beside service times)."""

    client: float
    wake: float
    commit: float
    cold: float = 1.0  # wakeup_idle's factor at JOB_IDLE

    @property
    def cold_wake(self) -> float:
        return self.wake * self.cold

    def net(self, samples: Sequence[float], wakes: int = 1, calls: int = 0, commits: int = 0) -> list[float]:
        """Samples of one process's CPU per measured call, less the `wakes` wake-ups its loop had (its
        request arriving, and each reply to a call it made), the client side of its `calls` and its
        `commits`: the simulator's service time."""
        return _minus(samples, wakes * self.wake + calls * self.client + commits * self.commit)


def build_parameters(
    echo: Mapping[str, list[float]],
    commit: Mapping[str, list[float]],
    loadgen: Mapping[str, float],
    mono: Mapping[str, Any] | None,
    micro: Mapping[str, Any] | None,
    store: str,
) -> tuple[dict[str, Any], list[str]]:
    """Maps measurements onto SimParams keys; returns (parameters, measured keys).

    The bare echo gives the per-call costs of a loop that never sleeps (16 calls in flight: server
    and client CPU per call) and, against one call in flight, the extra CPU a sleeping loop spends to
    wake (the server's difference; the client's is alike, see "measurements"). A burst that finds its
    loop idle pays `wakeup` in the simulator; every measured sample below had one per wake of its
    process, which is taken out (Overheads.net)."""
    busy_server, busy_client = float(np.median(echo["busy_server"])), float(np.median(echo["busy_client"]))
    wake = [max(x - busy_server, 0.0) for x in echo["server"]]
    client_busy = _minus(echo["client"], _mean(echo["client"]) - busy_client)  # its shape, busy mean
    curve = wakeup_curve(echo, busy_server)
    costs = Overheads(
        client=busy_client, wake=_mean(wake), commit=_mean(commit["commit"]), cold=_factor(curve, JOB_IDLE)
    )
    params: dict[str, Any] = {
        "store": store,
        "cores": os.cpu_count() or 1,
        "client_call": to_dist(client_busy),
        "wakeup": to_dist(wake),
        "wakeup_idle": curve,
        "network": to_dist(echo["network"]),
        "commit": to_dist(commit["commit"]),
        # the generator's own work per request (against an in-memory target) and its stub call's
        "loadgen_request": to_dist([x + loadgen["cpu_per_request"] for x in client_busy]),
    }
    rows = commit["rows"][0]
    # medians: a few multi-millisecond stalls (WAL checkpoints, a busy host) swamp a difference of means
    slope = (float(np.median(commit["commit_many"])) - float(np.median(commit["commit"]))) / (rows - 1)
    params["commit_per_row"] = max(slope, 0.0)
    service: dict[str, dict[str, Any]] = {}
    measured = [
        "client_call",
        "wakeup",
        "wakeup_idle",
        "network",
        "commit",
        "commit_per_row",
        "loadgen_request",
    ]

    def put(role: str, method: str, samples: list[float]) -> None:
        service.setdefault(role, {})[method] = to_dist(samples)
        measured.append(f"service.{role}.{method}")

    per_item: dict[str, float] = {}
    if mono:
        _mono_client_api(mono, costs, put)
        if "job_path" in mono:
            _mono_job_path(mono, costs, put, per_item)
    if micro:
        _micro_client_api(micro, costs, put)
        if "job_path" in micro:
            _micro_job_path(micro, costs, put, per_item)
    params["service"] = service
    if per_item:
        params["per_item"] = per_item
        measured += [f"per_item.{k}" for k in per_item]
    return params, measured


Put = Callable[[str, str, list[float]], None]
SEND_FRACTION = 0.5  # sim.params.SimParams.client_send_fraction: the share of a call before it leaves


def _mono_client_api(mono: Mapping[str, Any], c: Overheads, put: Put) -> None:
    for method, saves in (("SubmitJob", 1), ("GetJobStatus", 0), ("CancelJob", 1)):
        put("node", method, c.net(mono[method]["n1"], commits=saves))
    # ListJobs: n1's own work besides the 5 ListLocalJobs calls it makes (their client side, and a
    # wake for their replies: they come back together); the merge of this small page is inside it, so
    # ListJobs.merge is set to 0 (its per-item slope stays)
    put("node", "ListJobs", c.net(mono["ListJobs"]["n1"], wakes=2, calls=5))
    put("node", "ListJobs.merge", [0.0])
    peers = [n for n in mono["ListJobs"] if n.startswith("n") and n != "n1"]
    put("node", "ListLocalJobs", c.net([x for n in peers for x in mono["ListJobs"][n]]))
    if "forward.GetJobStatus" in mono:
        put("node", "forward", c.net(mono["forward.GetJobStatus"]["n2"], wakes=2, calls=1))
    results = list(mono["GetJobResult"]["n1"])
    if "GetJobResult.done" in mono:
        # of a queued job (an error) and of a finished one, pooled: the simulator has one key
        results += list(mono["GetJobResult.done"]["n1"])
    put("node", "GetJobResult", c.net(results))


def _micro_client_api(micro: Mapping[str, Any], c: Overheads, put: Put) -> None:
    for method in ("SubmitJob", "GetJobStatus", "CancelJob", "ListJobs"):
        put("gateway", method, c.net(micro[method]["gateway"], wakes=2, calls=1))
    # CreateJob: the job service's whole share of a submit, less its commit and the Enqueue it sends
    # (one in flight: batches of one); its outbox flush is inside, so flush is 0
    put("job", "CreateJob", c.net(micro["SubmitJob"]["job"], wakes=2, calls=1, commits=1))
    put("job", "flush", [0.0])
    put("job", "GetJobStatus", c.net(micro["GetJobStatus"]["job"]))
    put("job", "CancelJob", c.net(micro["CancelJob"]["job"], commits=1))
    put("job", "ListJobs", c.net(micro["ListJobs"]["job"]))
    put("queue", "Enqueue", c.net(micro["SubmitJob"]["queue"], commits=1))
    gateway = c.net(micro["GetJobResult"]["gateway"], wakes=2, calls=1)
    job = c.net(micro["GetJobResult"]["job"])
    if "GetJobResult.done" in micro:
        # a queued job's result (an error: GetJob only) and a finished one's (GetJob, GetResult), pooled
        done = micro["GetJobResult.done"]
        gateway += c.net(done["gateway"], wakes=3, calls=2)
        job += c.net(done["job"])
        put("result", "GetResult", c.net(done["result"]))
    put("gateway", "GetJobResult", gateway)
    put("job", "GetJob", job)


def _mono_job_path(mono: Mapping[str, Any], c: Overheads, put: Put, per_item: dict[str, float]) -> None:
    """Design B's worker side (realsys/calibrate_paths.py). Calls a thief makes of an owner are RPCs,
    measured directly (one job each: per-item slopes 0). The node's own worker is in-process: its
    phases come from the windows at n1, the owner. Window 1 less the submit (its measured total) and
    the fetch's commit is charged to `launch` (the woken fetch and the launch run in the submit's
    loop turn: no wake of their own; `fetch` and its slope are 0); window 2 less the timer's wake
    and the report's commit to `report` (the handler's end and the next, empty, fetch pass are in
    it: `finish` is 0)."""
    put("node", "QueueDepth", c.net(mono["QueueDepth"]["n1"]))
    put("node", "StealWork", c.net(mono["StealWork"]["n1"], commits=1))
    put("node", "WorkerHeartbeat", c.net(mono["WorkerHeartbeat"]["n1"], commits=1))
    put("node", "ReportResult", c.net(mono["ReportResult"]["n1"], commits=1))
    put("node", "WaitJob", c.net(mono["WaitJob"]["n1"]))
    for key in ("StealWork", "WorkerHeartbeat", "fetch"):
        per_item[f"node.{key}"] = 0.0
    plain, waited = mono["job_path"]["plain"], mono["job_path"]["waited"]
    # the windows' submits found n1 asleep for ~JOB_IDLE: their wake is the cold one
    submit = _mean(mono["SubmitJob"]["n1"]) - c.wake + c.cold_wake
    put("node", "launch", _minus(plain["w1"]["n1"], submit + c.commit))
    put("node", "fetch", [0.0])
    put("node", "report", _minus(plain["w2"]["n1"], c.cold_wake + c.commit))  # the handler's timer wakes it
    put("node", "finish", [0.0])
    # a parked WaitJob: its look (one wake, as the measured WaitJob) and its answer at the job's end,
    # which comes in the report's loop turn
    parked = _mean(plain["total"]["n1"]) + _mean(mono["WaitJob"]["n1"])
    put("node", "WaitJob.wake", _minus(waited["total"]["n1"], parked))


def _micro_job_path(micro: Mapping[str, Any], c: Overheads, put: Put, per_item: dict[str, float]) -> None:
    """Design A's worker side: the coordinator's three Workers methods called directly (each server's
    CPU less the wakes of its loop, the client side of the calls it makes and its commits), the
    queue's Reserve and Ack alone, and from the windows the worker runtime (window 1: its FetchWork's
    reply waking it, the receive half and the launch; window 2: the handler's timer waking it, the end,
    ReportResult and the next FetchWork's send half) and the costs only a parked long-poll has (queue
    Reserve.wake, job WaitJob.wake: woken inside another call's loop turn)."""
    fetch, beat, report = micro["FetchWork"], micro["WorkerHeartbeat"], micro["ReportResult"]
    # FetchWork: Reserve, LeaseJobs, then Ack in the background; each reply wakes the coordinator
    put("coordinator", "FetchWork", c.net(fetch["coordinator"], wakes=4, calls=3))
    put("job", "LeaseJobs", c.net(fetch["job"], commits=1))
    put("queue", "Reserve", c.net(micro["queue.Reserve"]["queue"]))
    put("queue", "Ack", c.net(micro["queue.Ack"]["queue"], commits=1))
    put("coordinator", "WorkerHeartbeat", c.net(beat["coordinator"], wakes=2, calls=1))
    put("job", "RenewLeases", c.net(beat["job"], commits=1))
    put("coordinator", "ReportResult", c.net(report["coordinator"], wakes=3, calls=2))
    put("result", "PutResult", c.net(report["result"], commits=1))
    put("job", "CompleteAttempt", c.net(report["job"], commits=1))
    put("gateway", "WaitJob", c.net(micro["WaitJob"]["gateway"], wakes=2, calls=1))
    put("job", "WaitJob", c.net(micro["WaitJob"]["job"]))
    for key in ("job.LeaseJobs", "job.RenewLeases", "queue.Reserve", "queue.Ack"):
        per_item[key] = 0.0  # measured with one job per call
    plain, waited = micro["job_path"]["plain"], micro["job_path"]["waited"]
    # the worker wakes cold for its FetchWork's answer and for the handler's end, warm for ReportResult's
    put("worker", "launch", _minus(plain["w1"]["worker"], c.cold_wake + SEND_FRACTION * c.client))
    finish_overheads = c.cold_wake + c.wake + (2 - SEND_FRACTION) * c.client
    put("worker", "finish", _minus(plain["w2"]["worker"], finish_overheads))
    # the queue's share of a job less what its own calls took (Enqueue and the parked Reserve arrive
    # cold, the Ack warm; each as measured back to back otherwise): the parked Reserve's answer
    queue_calls = sum(_mean(micro[k]["queue"]) for k in ("SubmitJob", "queue.Reserve", "queue.Ack"))
    queue_calls += 2 * (c.cold_wake - c.wake)
    put("queue", "Reserve.wake", _minus(plain["total"]["queue"], queue_calls))
    parked = _mean(plain["total"]["job"]) + _mean(micro["WaitJob"]["job"])
    put("job", "WaitJob.wake", _minus(waited["total"]["job"], parked))


def closure(mono: Mapping[str, Any] | None, micro: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Checks of the calibration against itself: per process, a job's CPU as the windowed run measured
    it beside the sum of the direct single-call measurements that should make it up (means, us). Only
    processes whose windowed total was not used to derive a key are listed."""
    rows: list[dict[str, Any]] = []

    def row(design: str, proc: str, measured: Sequence[float], parts: Mapping[str, float]) -> None:
        predicted = sum(parts.values())
        rows.append(
            {
                "design": design,
                "process": proc,
                "windowed_us": _mean(measured) * 1e6,
                "direct_sum_us": predicted * 1e6,
                "ratio": _mean(measured) / predicted if predicted else math.nan,
                "parts": sorted(parts),
            }
        )

    if micro and "job_path" in micro:
        plain, waited = micro["job_path"]["plain"]["total"], micro["job_path"]["waited"]["total"]
        for proc, methods in (
            ("gateway", ("SubmitJob",)),
            ("job", ("SubmitJob", "FetchWork", "ReportResult")),
            ("coordinator", ("FetchWork", "ReportResult")),
            ("result", ("ReportResult",)),
        ):
            row("micro", proc, plain[proc], {m: _mean(micro[m][proc]) for m in methods})
        extra = [w - _mean(plain["gateway"]) for w in waited["gateway"]]
        row("micro", "gateway (WaitJob)", extra, {"WaitJob": _mean(micro["WaitJob"]["gateway"])})
    if mono and "job_path" in mono:
        plain = mono["job_path"]["plain"]["total"]
        peers = [n for n in plain if n != "n1"]
        rows.append(
            {
                "design": "mono",
                "process": "n2..n6 (not the owner)",
                "windowed_us": sum(_mean(plain[n]) for n in peers) * 1e6,
                "direct_sum_us": 0.0,
                "ratio": math.nan,
                "parts": [],
            }
        )
    return rows


def unmeasured(measured: Sequence[str]) -> list[str]:
    from sim.params import PLACEHOLDER_PER_ITEM, PLACEHOLDER_SERVICE

    keys = [f"service.{r}.{m}" for r, ms in PLACEHOLDER_SERVICE.items() for m in ms]
    keys += [f"per_item.{k}" for k in PLACEHOLDER_PER_ITEM]
    return sorted(set(keys) - set(measured))


def pool(rounds: Sequence[Any]) -> Any:
    """The measurements of several rounds as one: lists concatenated (in round order, so samples of
    one call stay aligned across keys), mappings key by key (keys every round has), numbers averaged."""
    first = rounds[0]
    if isinstance(first, Mapping):
        keys = [k for k in first if all(isinstance(r, Mapping) and k in r for r in rounds)]
        return {k: pool([r[k] for r in rounds]) for k in keys}
    if isinstance(first, list):
        return [x for r in rounds for x in r]
    if isinstance(first, int | float) and not isinstance(first, bool):
        return float(np.mean(rounds))
    return first


def round_medians(rounds: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Per round, the median of each echo series and of each client method's per-process samples:
    how much the host moved within one calibration."""
    out: dict[str, list[float]] = {}
    for r in rounds:
        for key in ("server", "busy_server", "client"):
            out.setdefault(f"echo.{key}", []).append(float(np.median(r["echo"][key])))
        for design in ("mono", "micro"):
            for method, procs in r[design].items():
                if method == "job_path" or not isinstance(procs, Mapping):
                    continue
                for proc, samples in procs.items():
                    if isinstance(samples, list) and samples and proc not in ("rtt", "gap"):
                        out.setdefault(f"{design}.{method}.{proc}", []).append(float(np.median(samples)))
    return {k: v for k, v in out.items() if any(v)}  # a process a method never reaches: left out


DEFAULT_ROUNDS = 3


def calibrate(
    name: str, store: str, quick: bool, out_dir: Path | None = None, rounds: int = DEFAULT_ROUNDS
) -> Path:
    from lab.calibration.hostprobe import calibration_probes, scheduler_slice
    from model.results.runs import provenance
    from sim.params import CALIBRATION_DIR, load_params

    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    count = 60 if quick else 300
    per_round = max(count // rounds, 20)
    started = time.time()
    load_before = os.getloadavg()
    probes_before = calibration_probes(store)  # the host's speed around the measurements (HostScale)
    slice_measured = scheduler_slice()  # a fact of the kernel, not of the host's speed: measured once
    # every measurement in each of `rounds` rounds, pooled: each operation's samples span the whole
    # calibration, not one window of it (the host's speed flickers within seconds)
    measured_rounds = []
    for _ in range(rounds):
        measured_rounds.append(
            {
                "echo": run_async(measure_echo(per_round * 2)),
                "commit": measure_commit(store, per_round * 2),
                "loadgen": measure_loadgen((1.0 if quick else 3.0) / rounds),
                "mono": measure_cluster("mono", store, per_round),
                "micro": measure_cluster("micro", store, per_round),
            }
        )
    pooled = pool(measured_rounds)
    echo, commit, loadgen, mono, micro = (pooled[k] for k in ("echo", "commit", "loadgen", "mono", "micro"))
    probes_after = calibration_probes(store)
    params, measured = build_parameters(echo, commit, loadgen, mono, micro, store)
    params["name"] = name
    summaries: dict[str, Any] = {
        "scheduler_slice": slice_measured,
        "echo": {k: summarize_samples(v) for k, v in echo.items()},
        "commit": {k: summarize_samples(v) for k, v in commit.items() if k != "rows"},
        "commit_rows": commit["rows"][0],
        "loadgen": loadgen,
        # other tenants' load: off-CPU waits it causes land in the RTT, hence in `network`'s tail
        "host_loadavg_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
        "rounds": rounds,
        "round_medians": round_medians(measured_rounds),
    }
    for design, data in (("mono", mono), ("micro", micro)):
        summaries[design] = {
            m: {p: summarize_samples(s) for p, s in v.items()} for m, v in data.items() if m != "job_path"
        }
        path = data["job_path"]
        summaries[design]["job_path"] = {
            batch: {part: {p: summarize_samples(s) for p, s in v.items()} for part, v in path[batch].items()}
            for batch in ("plain", "waited")
        } | {"idle_rate": path["idle_rate"], "wall_seconds": path["wall_seconds"]}
    summaries["closure"] = closure(mono, micro)
    doc = {
        "parameters": params,
        "measured": sorted(measured),
        "unmeasured": unmeasured(measured),
        "measurements": summaries,
        "host_probe": {k: probes_before[k] + probes_after[k] for k in probes_before},
        "provenance": provenance(),
        "method": (__doc__ or "").strip(),
        "quick": quick,
        "calibration_seconds": time.time() - started,
    }
    directory = out_dir or CALIBRATION_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    load_params(path)  # it must load
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default="local", help="data/calibration/<name>.json")
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    parser.add_argument("--quick", action="store_true", help="fewer calls per method (< 2 min)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help="measure everything this many times, interleaved, and pool the samples (default 3)",
    )


def calibrate_command(args: argparse.Namespace) -> int:
    path = calibrate(args.name, args.store, args.quick, rounds=args.rounds)
    doc = json.loads(path.read_text())
    for role, methods in sorted(doc["parameters"]["service"].items()):
        for method, dist in sorted(methods.items()):
            print(f"service.{role}.{method}: median {np.median(dist['samples']) * 1e6:.0f} us")
    print(f"calibration written to {path}")
    return 0
