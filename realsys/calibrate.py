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
Each distribution is kept as <= 200 empirical samples (evenly spaced quantiles of the measured ones),
with a lognormal fit and its KS statistic recorded under "measurements".
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

MAX_SAMPLES = 200


# ---------------------------------------------------------------------------- CPU accounting
def process_cpu(pid: int) -> float:
    """CPU seconds of every thread of `pid` (schedstat: ns resolution; falls back to /proc/pid/stat)."""
    total = 0
    task_dir = Path(f"/proc/{pid}/task")
    try:
        for task in task_dir.iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
        return total / 1e9
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
    pos = arr[arr > 0]
    if len(pos) >= 5:
        from scipy import stats

        logs = np.log(pos)
        mu, sigma = float(logs.mean()), float(logs.std(ddof=1))
        if sigma > 0:
            ks = stats.kstest(pos, "lognorm", args=(sigma, 0, math.exp(mu)))
            out["lognormal"] = {
                "mean": math.exp(mu + sigma**2 / 2),
                "sigma": sigma,
                "ks": float(ks.statistic),
            }
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
) -> dict[str, list[float]]:
    """Runs `call(i)` `count` times, one in flight. Per call: "rtt", "client" (this process's CPU in the
    call) and, per name in `pids`, that process's CPU delta minus idle_rate * wall."""
    out: dict[str, list[float]] = {"rtt": [], "client": [], **{n: [] for n in pids}}
    idle = idle_rate or {}
    before = {n: process_cpu(p) for n, p in pids.items()}
    for i in range(count):
        w0, c0 = time.perf_counter(), time.process_time()
        await call(i)
        c1, w1 = time.process_time(), time.perf_counter()
        after = {n: process_cpu(p) for n, p in pids.items()}
        out["rtt"].append(w1 - w0)
        out["client"].append(c1 - c0)
        for n in pids:
            out[n].append(max(after[n] - before[n] - idle.get(n, 0.0) * (w1 - w0), 0.0))
        before = after
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
asyncio.run(main())
"""


async def measure_echo(count: int) -> dict[str, list[float]]:
    """A bare grpc.aio health Check against a server subprocess: RTT, client CPU, server CPU."""
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

            await measure_calls(call, {}, max(count // 5, 5))  # warm-up
            idle = await idle_rates({"server": proc.pid}, 0.2)
            out = await measure_calls(call, {"server": proc.pid}, count, idle)
    finally:
        proc.terminate()
        proc.wait(10)
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

    result = asyncio.run(go())
    n = max(len(result.requests), 1)
    return {"cpu_per_request": result.stats.cpu_time / n, "requests": float(n)}


# ---------------------------------------------------------------------------- the clusters
async def _drive(addresses: Sequence[str], pids: Mapping[str, int], count: int) -> dict[str, Any]:
    """Every client method alone against addresses[0]; a forward through addresses[1] if any."""
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

        async def cancel(i: int) -> object:
            try:
                return await target.cancel(ids[i])
            except Exception as exc:  # a job that already ended: still one CancelJob served
                return exc

        out["CancelJob"] = await measure_calls(cancel, pids, count, idle)
    finally:
        await target.close()
    return out


def measure_cluster(design: str, store: str, count: int) -> dict[str, Any]:
    from realsys import cluster

    directory = Path(tempfile.mkdtemp(prefix=f"dtq-cal-{design}-"))
    try:
        info = cluster.up(design, directory, store=store, overrides={"DTQ_SLOTS": "0"})
        try:
            if design == "micro":  # its runtime keeps >= 1 slot: stop it, so no job runs meanwhile
                cluster.kill(directory, "worker", signal.SIGTERM)
            pids = {n.name: n.pid for n in info.nodes if n.role != "worker"}
            addresses = info.clients if design == "mono" else [info.clients[0]]
            return asyncio.run(_drive(addresses, pids, count))
        finally:
            cluster.down(directory, grace=10.0)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if len(xs) else 0.0


def _minus(xs: Sequence[float], c: float) -> list[float]:
    return [max(x - c, 0.0) for x in xs]


# ---------------------------------------------------------------------------- assembling
def build_parameters(
    echo: Mapping[str, list[float]],
    commit: Mapping[str, list[float]],
    loadgen: Mapping[str, float],
    mono: Mapping[str, Any] | None,
    micro: Mapping[str, Any] | None,
    store: str,
) -> tuple[dict[str, Any], list[str]]:
    """Maps measurements onto SimParams keys; returns (parameters, measured service keys)."""
    client = _mean(echo["client"])
    params: dict[str, Any] = {
        "store": store,
        "cores": os.cpu_count() or 1,
        "client_call": to_dist(echo["client"]),
        "network": to_dist(echo["network"]),
        "commit": to_dist(commit["commit"]),
        "loadgen_request": {"kind": "constant", "mean": loadgen["cpu_per_request"]},
    }
    rows = commit["rows"][0]
    # medians: a few multi-millisecond stalls (WAL checkpoints, a busy host) swamp a difference of means
    slope = (float(np.median(commit["commit_many"])) - float(np.median(commit["commit"]))) / (rows - 1)
    params["commit_per_row"] = max(slope, 0.0)
    service: dict[str, dict[str, Any]] = {}
    measured: list[str] = []

    def put(role: str, method: str, samples: list[float]) -> None:
        service.setdefault(role, {})[method] = to_dist(samples)
        measured.append(f"service.{role}.{method}")

    commit_mean = _mean(commit["commit"])
    if mono:
        # the simulator charges the commit beside the service time: take it out of methods that save
        for method, saves in (("SubmitJob", 1), ("GetJobStatus", 0), ("GetJobResult", 0), ("CancelJob", 1)):
            put("node", method, _minus(mono[method]["n1"], saves * commit_mean))
        # ListJobs: n1's own work besides the 5 ListLocalJobs calls it makes (their client side); the
        # merge of this small page is inside it, so ListJobs.merge is set to 0 (its per-item slope stays)
        put("node", "ListJobs", _minus(mono["ListJobs"]["n1"], 5 * client))
        put("node", "ListJobs.merge", [0.0])
        peers = [n for n in mono["ListJobs"] if n.startswith("n") and n != "n1"]
        put("node", "ListLocalJobs", [x for n in peers for x in mono["ListJobs"][n]])
        if "forward.GetJobStatus" in mono:
            put("node", "forward", _minus(mono["forward.GetJobStatus"]["n2"], client))
    if micro:
        for method in ("SubmitJob", "GetJobStatus", "CancelJob", "ListJobs"):
            put("gateway", method, _minus(micro[method]["gateway"], client))
        # CreateJob: the job service's whole share of a submit, less its commit and the client side of
        # the Enqueue it sends (one in flight: batches of one); its outbox flush is inside, so flush is 0
        put("job", "CreateJob", _minus(micro["SubmitJob"]["job"], commit_mean + client))
        put("job", "flush", [0.0])
        put("job", "GetJobStatus", micro["GetJobStatus"]["job"])
        put("job", "CancelJob", _minus(micro["CancelJob"]["job"], commit_mean))
        put("job", "ListJobs", micro["ListJobs"]["job"])
        put("queue", "Enqueue", _minus(micro["SubmitJob"]["queue"], commit_mean))
        put("gateway", "GetJobResult", _minus(micro["GetJobResult"]["gateway"], client))
        put("job", "GetJob", micro["GetJobResult"]["job"])
    params["service"] = service
    return params, measured


def unmeasured(measured: Sequence[str]) -> list[str]:
    from sim.params import PLACEHOLDER_PER_ITEM, PLACEHOLDER_SERVICE

    keys = [f"service.{r}.{m}" for r, ms in PLACEHOLDER_SERVICE.items() for m in ms]
    keys += [f"per_item.{k}" for k in PLACEHOLDER_PER_ITEM]
    return sorted(set(keys) - set(measured))


def calibrate(name: str, store: str, quick: bool, out_dir: Path | None = None) -> Path:
    from sim.params import CALIBRATION_DIR, load_params
    from sim.runs import provenance

    count = 60 if quick else 300
    started = time.time()
    load_before = os.getloadavg()
    echo = asyncio.run(measure_echo(count * 2))
    commit = measure_commit(store, count * 2)
    loadgen = measure_loadgen(1.0 if quick else 3.0)
    mono = measure_cluster("mono", store, count)
    micro = measure_cluster("micro", store, count)
    params, measured = build_parameters(echo, commit, loadgen, mono, micro, store)
    params["name"] = name
    summaries: dict[str, Any] = {
        "echo": {k: summarize_samples(v) for k, v in echo.items()},
        "commit": {k: summarize_samples(v) for k, v in commit.items() if k != "rows"},
        "commit_rows": commit["rows"][0],
        "loadgen": loadgen,
        # other tenants' load: off-CPU waits it causes land in the RTT, hence in `network`'s tail
        "host_loadavg_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
    }
    for design, data in (("mono", mono), ("micro", micro)):
        summaries[design] = {m: {p: summarize_samples(s) for p, s in v.items()} for m, v in data.items()}
    doc = {
        "parameters": params,
        "measured": sorted(measured),
        "unmeasured": unmeasured(measured),
        "measurements": summaries,
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


def calibrate_command(args: argparse.Namespace) -> int:
    path = calibrate(args.name, args.store, args.quick)
    doc = json.loads(path.read_text())
    for role, methods in sorted(doc["parameters"]["service"].items()):
        for method, dist in sorted(methods.items()):
            print(f"service.{role}.{method}: median {np.median(dist['samples']) * 1e6:.0f} us")
    print(f"calibration written to {path}")
    return 0
