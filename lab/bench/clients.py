"""The bench's client processes: the end-to-end closed loop through the load generator, and one
unary method called back to back with a fixed number in flight (`python -m lab.bench.clients JOB`:
a child that says ready, takes the common start from stdin, and prints its result as JSON).
"""

from __future__ import annotations

import asyncio
import json
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import grpc

from dtq.v1 import client_pb2, job_pb2
from lab.procfs import total_cpu
from model.workload import ClosedLoop, Distribution, RequestMix, WorkloadSpec
from realsys import loadgen
from realsys.client import channel_options
from realsys.eventloop import loop_factory
from realsys.loadgen import json_child
from realsys.targets import make_target, status_name

NOOP_TYPE = "echo"  # the built-in no-op: returns its (empty) payload
ECHO_METHOD = "/dtq.bench.Echo/Echo"
_START_DELAY = 0.5  # seconds between "go" and the common start, so every child starts together
_CHILD_TIMEOUT = 120.0


async def _e2e_count(target_spec: Mapping[str, Any], clients: int, jobs: int) -> dict[str, Any]:
    """Closed loop until exactly `jobs` jobs have been submitted and have finished."""
    target = make_target(target_spec)
    left = [jobs]
    failed = [0]

    async def client() -> None:
        while left[0] > 0:
            left[0] -= 1
            job_id = await target.submit(NOOP_TYPE, b"")
            state, _ = await target.wait(job_id, 30.0)
            failed[0] += state != "SUCCEEDED"

    try:
        await asyncio.gather(*(client() for _ in range(clients)))
    finally:
        await target.close()
    return {"jobs": jobs, "not_succeeded": failed[0]}


async def _rpc_loop(
    address: str, method: str, in_flight: int, start: float, warmup: float, window: float
) -> dict[str, Any]:
    """`in_flight` tasks each calling one unary method back to back; the window's calls and latencies.

    The same code path for SubmitJob and for the echo: one channel, a multicallable from the channel,
    the same request bytes (a no-op SubmitJobRequest), a deadline on every call."""
    request = client_pb2.SubmitJobRequest(spec=job_pb2.JobSpec(job_type=NOOP_TYPE, payload=b""))
    channel = grpc.aio.insecure_channel(address, options=channel_options())
    if method == "submit":
        call = channel.unary_unary(
            "/dtq.v1.TaskQueue/SubmitJob",
            request_serializer=client_pb2.SubmitJobRequest.SerializeToString,
            response_deserializer=client_pb2.SubmitJobResponse.FromString,
        )
    else:
        call = channel.unary_unary(
            ECHO_METHOD,
            request_serializer=client_pb2.SubmitJobRequest.SerializeToString,
            response_deserializer=client_pb2.SubmitJobRequest.FromString,
        )
    begin, end = start + warmup, start + warmup + window
    latencies: list[float] = []
    errors: dict[str, int] = {}
    calls = [0]

    async def worker() -> None:
        while True:
            t0 = time.perf_counter()
            if t0 >= end:
                return
            try:
                await call(request, timeout=10.0)
            except grpc.RpcError as exc:
                errors[status_name(exc)] = errors.get(status_name(exc), 0) + 1
                continue
            t1 = time.perf_counter()
            calls[0] += 1
            if begin <= t0 and t1 < end:
                latencies.append(t1 - t0)

    try:
        await channel.channel_ready()
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        cpu0 = time.process_time()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        cpu = time.process_time() - cpu0
    finally:
        await channel.close(None)
    return {
        "count": len(latencies),
        "total": calls[0],
        "median": statistics.median(latencies),
        "errors": errors,
        "cpu": cpu,
    }


def _child_main(raw: str) -> int:
    """A client process: build, say ready, take the common start (epoch) from stdin, run, print JSON."""
    job = json.loads(raw)

    async def main() -> dict[str, Any]:
        if job["kind"] == "count":
            return await _e2e_count(job["target"], job["clients"], job["jobs"])
        print("ready", flush=True)
        line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        start = time.perf_counter() + (float(line) - time.time())
        return await _rpc_loop(
            job["address"], job["method"], job["in_flight"], start, job["warmup"], job["window"]
        )

    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        result = runner.run(main())
        result["loop"] = type(runner.get_loop()).__module__
    print(json.dumps(result), flush=True)
    return 0


def run_children(
    jobs: Sequence[Mapping[str, Any]], server_pids: Sequence[int] = (), duration: float = 0.0
) -> tuple[list[dict[str, Any]], float]:
    """Runs client children together: all say ready, then all start at the same epoch. Returns their
    results and the CPU seconds `server_pids` used during the `duration` seconds from that start."""
    children: list[subprocess.Popen[str]] = []
    cpu = 0.0
    try:
        for job in jobs:
            children.append(json_child("lab.bench.clients", job))
        if jobs[0]["kind"] != "count":
            for child in children:
                assert child.stdout is not None
                line = child.stdout.readline().strip()
                if line != "ready":
                    raise RuntimeError(f"bench client {child.pid} failed to start ({line!r})")
            start = time.time() + _START_DELAY
            for child in children:
                assert child.stdin is not None
                child.stdin.write(f"{start!r}\n")
                child.stdin.flush()
            time.sleep(max(0.0, start - time.time()))
            cpu = total_cpu(server_pids)
            time.sleep(max(0.0, start + duration - time.time()))
            cpu = total_cpu(server_pids) - cpu
        results = []
        for child in children:
            out, _ = child.communicate(timeout=_CHILD_TIMEOUT)
            if child.returncode != 0:
                raise RuntimeError(f"bench client {child.pid} exited with {child.returncode}")
            results.append(json.loads(out.strip().splitlines()[-1]))
        return results, cpu
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()


def e2e_workload(clients: int, warmup: float, window: float, seed: int = 1) -> WorkloadSpec:
    """The end-to-end figure's workload: a closed loop in wait mode (submit a no-op, long-poll until
    it is terminal, repeat; no think time), so each client has one job in the system at a time."""
    return WorkloadSpec(
        ClosedLoop(clients, wait_for_completion=True),
        mix=RequestMix(submit=1.0),
        job_type=NOOP_TYPE,
        duration=Distribution("constant", 0.0),
        payload_bytes=0,
        run_time=window,
        warmup=warmup,
        seed=seed,
    )


def e2e_once(
    target_spec: Mapping[str, Any],
    clients: int,
    processes: int,
    warmup: float,
    window: float,
    server_pids: Sequence[int] = (),
) -> dict[str, Any]:
    """One end-to-end measurement through the load generator (realsys.loadgen, the same path as
    `dtq load` and the experiment runner): completed_per_s over the window, i.e. jobs that ended in
    it, summed over the `processes` client processes. Server CPU is read over the same window."""
    spec = e2e_workload(clients, warmup, window)
    window_cpu: list[float] = []
    sampler: list[threading.Thread] = []

    def started(epoch: float) -> None:
        def sample() -> None:
            time.sleep(max(0.0, epoch + warmup - time.time()))
            before = total_cpu(server_pids)
            time.sleep(max(0.0, epoch + warmup + window - time.time()))
            window_cpu.append(total_cpu(server_pids) - before)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        sampler.append(thread)

    result = loadgen.run_load_processes(target_spec, spec, processes, started=started, drain_timeout=10.0)
    for thread in sampler:
        thread.join(timeout=warmup + window + 5.0)
    # not written anywhere: only its figures are used, so the design label does not matter
    summary = loadgen.summary_of(result, spec, run_id="bench", kind="real", design="mono")
    errors = dict(summary["errors"])
    for state, n in summary["jobs"].items():
        if state in ("failed", "cancelled", "unfinished") and n:
            errors[state.upper()] = n
    completed = summary["throughput"]["completed_per_s"] * window
    cpu = window_cpu[0] if window_cpu else 0.0
    return {
        "rate": summary["throughput"]["completed_per_s"],
        "errors": errors,
        "client_cpu": result.stats.cpu_time / max(result.stats.wall_time, 1e-9),
        "server_cpu": cpu / window,
        "server_cpu_per_job": cpu / max(1.0, completed),
        "client_cpu_per_job": result.stats.cpu_time / max(1.0, len(result.jobs)),
        "completion_p50_ms": summary["completion_ms"].get("p50", float("nan")),
        "completion_p99_ms": summary["completion_ms"].get("p99", float("nan")),
        "loop": "uvloop" if loop_factory() is not None else "asyncio",
    }


def rpc_once(
    address: str, method: str, in_flight: int, warmup: float, window: float, server_pid: int
) -> dict[str, Any]:
    job = {
        "kind": "rpc",
        "address": address,
        "method": method,
        "in_flight": in_flight,
        "warmup": warmup,
        "window": window,
    }
    (result,), cpu = run_children([job], [server_pid], warmup + window)
    return {
        "rate": result["count"] / window,
        "p50": result["median"],
        "errors": result["errors"],
        "server_cpu_per_call": cpu / max(1, result["total"]),
        "client_cpu_per_call": result["cpu"] / max(1, result["total"]),
    }


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
