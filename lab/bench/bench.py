"""`dtq bench`: how fast the real system is, as ratios against baselines measured in the same run.

Figures (each the median of `--runs` runs, targets measured round-robin so a shared machine's load
drifts over all of them alike):

1. End to end: no-op jobs per second at 16 closed-loop clients, through the load generator
   (`realsys.loadgen.run_load_processes`, the path of `dtq load` and the experiment runner) with the
   closed loop in wait mode: each client submits an `echo` job (payload `{"seconds":0.0}`), long-polls
   until it is terminal, and repeats; the figure is the run summary's completed_per_s (jobs that
   *finish* inside the window after a warm-up). Design B, Design A and Celery+Redis (the baseline's
   `BaselineCluster` + `CeleryTarget`), all driven by the same client code in `--processes` client
   processes (uvloop). Server CPU is read over the same window. The Design B client sends each
   WaitJob to the job's owner (the id prefix names it; the submit reply says which address owns which
   prefix), as DtqClient does; the `-rr` row drives the same cluster with the load generator's
   round-robin DtqTarget (5 in 6 WaitJobs forwarded). The `-sw` rows (both designs) use the
   synchronous-invocation client instead: one SubmitJob with `wait_timeout` per job, whose reply
   comes when the job has ended (no WaitJob unless the wait runs out).
2. SubmitJob alone against one Design B node process (no worker slots, so only the submit path runs),
   versus a bare grpc.aio echo server in one process (same message bytes, same client code path,
   uvloop on both sides): throughput and p50 at 16 in flight, p50 at 1 in flight.
3. RPCs per job: every node's `dtq_rpc_total` (Prometheus) before and after a fixed number of jobs,
   divided by the jobs (background RPCs such as heartbeats and steal polls included); for Celery the
   Redis commands per job (INFO commandstats).
4. With `--profile`: py-spy samples the echo server and the single submit node at 16 in flight, and
   node n1 of Design B during an end-to-end run, and prints where their time goes (realsys/profiling.py).

The child processes speak JSON over stdin/stdout (`python -m lab.bench.bench child|echo-server`).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from dtq.v1 import client_pb2, job_pb2
from model.states import JobState
from model.workload import ClosedLoop, Distribution, RequestMix, WorkloadSpec
from realsys.targets import DtqTarget, TargetError, dtq_target_spec, make_target

STORES = ("memory", "sqlite")
NOOP_TYPE = "echo"  # the built-in no-op: returns its (empty) payload
ECHO_METHOD = "/dtq.bench.Echo/Echo"
_START_DELAY = 0.5  # seconds between "go" and the common start, so every child starts together
_CHILD_TIMEOUT = 120.0
SUBMIT_WAIT = 30.0  # the -sw rows' SubmitJob wait_timeout (a no-op job ends long before)
_STATE_NAMES = {int(s): s.name for s in JobState}


# ---------------------------------------------------------------------------- client side: targets
class RoutedDtqTarget(DtqTarget):
    """DtqTarget whose WaitJob goes to the job's owner (Design B); submits stay round-robin.

    The owner is the job id's prefix; which address serves it is learnt from the submit replies
    (`job.owner_node`), so the target needs no node table and a Design A gateway works unchanged.
    """

    def __init__(
        self,
        addresses: Sequence[str] | str,
        timeout: float = 10.0,
        design: str = "",
        submit_wait: float = 0.0,
    ) -> None:
        super().__init__(addresses, timeout, design, submit_wait)
        self._owner_stub: dict[str, Any] = {}

    async def submit(self, job_type: str, payload: bytes) -> str:
        stub = self._stub()
        request = self.submit_request(job_type, payload)
        try:
            response: client_pb2.SubmitJobResponse = await stub.SubmitJob(
                request, timeout=self.submit_timeout()
            )
        except grpc.RpcError as exc:
            raise TargetError(_code(exc)) from None
        self._owner_stub.setdefault(response.job.owner_node, stub)
        self.note_submitted(response)
        return response.job_id

    async def wait(self, job_id: str, timeout: float) -> tuple[str, int]:
        ended = self.ended(job_id)
        if ended is not None:
            return ended
        stub = self._owner_stub.get(job_id.partition("-")[0]) or self._stub()
        deadline = time.monotonic() + timeout
        while True:
            poll = max(0.0, min(deadline - time.monotonic(), 30.0))
            request = client_pb2.WaitJobRequest(job_id=job_id)
            request.timeout.FromNanoseconds(int(poll * 1e9))
            try:
                job: job_pb2.Job = await stub.WaitJob(request, timeout=poll + self.timeout)
            except grpc.RpcError as exc:
                raise TargetError(_code(exc)) from None
            if job.done or time.monotonic() >= deadline:
                return _STATE_NAMES.get(job.state, "STATE_UNSPECIFIED"), job.attempt


def _code(exc: grpc.RpcError) -> str:
    code = exc.code() if isinstance(exc, grpc.aio.AioRpcError) else None
    return code.name if code is not None else "UNKNOWN"


def routed_target_spec(addresses: Sequence[str], design: str, submit_wait: float = 0.0) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"addresses": list(addresses), "timeout": 10.0, "design": design}
    if submit_wait > 0:
        kwargs["submit_wait"] = submit_wait
    return {"factory": "lab.bench.bench:RoutedDtqTarget", "kwargs": kwargs}


# ---------------------------------------------------------------------------- client side: loops
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
    from realsys.client import channel_options

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
                errors[_code(exc)] = errors.get(_code(exc), 0) + 1
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

    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        result = runner.run(main())
        result["loop"] = type(runner.get_loop()).__module__
    print(json.dumps(result), flush=True)
    return 0


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _run_children(
    jobs: Sequence[Mapping[str, Any]], server_pids: Sequence[int] = (), duration: float = 0.0
) -> tuple[list[dict[str, Any]], float]:
    """Runs client children together: all say ready, then all start at the same epoch. Returns their
    results and the CPU seconds `server_pids` used during the `duration` seconds from that start."""
    children: list[subprocess.Popen[str]] = []
    cpu = 0.0
    try:
        for job in jobs:
            children.append(
                subprocess.Popen(
                    [sys.executable, "-m", "lab.bench.bench", "child", json.dumps(job)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                )
            )
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
            cpu = process_cpu(server_pids)
            time.sleep(max(0.0, start + duration - time.time()))
            cpu = process_cpu(server_pids) - cpu
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
    from realsys import loadgen

    spec = e2e_workload(clients, warmup, window)
    window_cpu: list[float] = []
    sampler: list[threading.Thread] = []

    def started(epoch: float) -> None:
        def sample() -> None:
            time.sleep(max(0.0, epoch + warmup - time.time()))
            before = process_cpu(server_pids)
            time.sleep(max(0.0, epoch + warmup + window - time.time()))
            window_cpu.append(process_cpu(server_pids) - before)

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
        "loop": "uvloop" if loadgen.loop_factory() is not None else "asyncio",
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
    (result,), cpu = _run_children([job], [server_pid], warmup + window)
    return {
        "rate": result["count"] / window,
        "p50": result["median"],
        "errors": result["errors"],
        "server_cpu_per_call": cpu / max(1, result["total"]),
        "client_cpu_per_call": result["cpu"] / max(1, result["total"]),
    }


# ---------------------------------------------------------------------------- server CPU
def process_cpu(pids: Sequence[int]) -> float:
    """User + system CPU seconds the processes have used so far (Linux /proc; 0 where unreadable)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


# ---------------------------------------------------------------------------- servers we start
async def _echo_serve(listen: str) -> None:
    """The bare RPC: a grpc.aio server (dtq's channel options, uvloop) whose one method returns its
    request bytes unparsed. No interceptor, health, or logging: what any gRPC service costs at least."""
    from realsys.config import grpc_options

    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    server = grpc.aio.server(options=grpc_options())
    handler = grpc.method_handlers_generic_handler(
        "dtq.bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(listen)
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


def _echo_main(listen: str) -> int:
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        runner.run(_echo_serve(listen))
    return 0


@dataclass
class Processes:
    """Every server process the bench started, stopped (only these) at the end."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def start_echo(procs: Processes) -> tuple[str, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.bench.bench", "echo-server", "127.0.0.1:0"], stdout=subprocess.PIPE
    )
    procs.procs.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        raise RuntimeError(f"echo server did not start ({line!r})")
    return f"127.0.0.1:{int(line)}", proc.pid


def start_single_node(procs: Processes, directory: Path, store: str) -> tuple[str, int]:
    """One Design B node with no worker slots: a SubmitJob costs only the submit path."""
    from realsys import cluster

    (port,) = cluster.free_ports(1)
    address = f"127.0.0.1:{port}"
    env = {
        **os.environ,
        "DTQ_DESIGN": "mono",
        "DTQ_ROLE": "node",
        "DTQ_NAME": "n1",
        "DTQ_LISTEN": address,
        "DTQ_DATA_DIR": str(directory),
        "DTQ_STORE": store,
        "DTQ_SLOTS": "0",
        "DTQ_PEERS": f"n1={address}",
        "DTQ_METRICS_PORT": "-1",
    }
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "node.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "realsys", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    procs.procs.append(proc)
    cluster.wait_healthy(address, 30.0, proc.pid)
    return address, proc.pid


# ---------------------------------------------------------------------------- RPC counts
def _rpc_totals(metrics_ports: Mapping[str, int]) -> dict[str, float]:
    """Sum of dtq_rpc_total over the nodes, by method (short name)."""
    from prometheus_client.parser import text_string_to_metric_families

    totals: dict[str, float] = {}
    for port in metrics_ports.values():
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
        for family in text_string_to_metric_families(text):
            if family.name != "dtq_rpc":
                continue
            for sample in family.samples:
                if sample.name == "dtq_rpc_total":
                    method = sample.labels["method"].rsplit("/", 1)[-1]
                    totals[method] = totals.get(method, 0.0) + sample.value
    return totals


def metrics_ports(cluster_dir: Path) -> dict[str, int]:
    from realsys import cluster

    info = cluster.load(cluster_dir)
    return {
        n.name: int((Path(n.env["DTQ_DATA_DIR"]) / f"{n.name}.metrics").read_text())
        for n in info.nodes
        if int((Path(n.env["DTQ_DATA_DIR"]) / f"{n.name}.metrics").read_text()) > 0
    }


def _count_job(target_spec: Mapping[str, Any], jobs: int) -> dict[str, Any]:
    return {"kind": "count", "target": dict(target_spec), "clients": 16, "jobs": jobs}


def count_rpcs(target_spec: Mapping[str, Any], ports: Mapping[str, int], jobs: int) -> dict[str, float]:
    """RPCs per job by method, over `jobs` no-op jobs at 16 clients (one client process)."""
    before = _rpc_totals(ports)
    (result,), _ = _run_children([_count_job(target_spec, jobs)])
    time.sleep(0.3)  # counters tick when an RPC ends: let the last reports finish
    after = _rpc_totals(ports)
    per_job = {m: (after.get(m, 0.0) - before.get(m, 0.0)) / jobs for m in after}
    return {m: v for m, v in sorted(per_job.items(), key=lambda kv: -kv[1]) if v > 0} | {
        "_not_succeeded": result["not_succeeded"]
    }


def count_redis_commands(target_spec: Mapping[str, Any], redis_url: str, jobs: int) -> dict[str, float]:
    import redis

    client = redis.Redis.from_url(redis_url)

    def stats() -> dict[str, float]:
        raw = client.info("commandstats")
        return {k.removeprefix("cmdstat_"): float(v["calls"]) for k, v in raw.items()}

    before = stats()
    _run_children([_count_job(target_spec, jobs)])
    time.sleep(0.3)
    after = stats()
    client.close()
    per_job = {m: (after.get(m, 0.0) - before.get(m, 0.0)) / jobs for m in after}
    return {m: v for m, v in sorted(per_job.items(), key=lambda kv: -kv[1]) if v > 0.005}


# ---------------------------------------------------------------------------- the whole bench
@dataclass
class Series:
    """Repeated measurements of one figure."""

    values: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else float("nan")

    def spread(self, scale: float = 1.0, digits: int = 0) -> str:
        return "[" + ", ".join(f"{v * scale:.{digits}f}" for v in self.values) + "]"


@dataclass
class Bench:
    args: argparse.Namespace
    procs: Processes = field(default_factory=Processes)
    e2e: dict[str, Series] = field(default_factory=dict)
    rpc: dict[str, Series] = field(default_factory=dict)
    p50: dict[str, Series] = field(default_factory=dict)
    cpu: dict[str, Series] = field(default_factory=dict)  # server CPU seconds per job or per call
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    pids: dict[str, list[int]] = field(default_factory=dict)  # server processes of each target
    clusters: dict[str, Path] = field(default_factory=dict)
    singles: dict[str, tuple[str, int]] = field(default_factory=dict)
    celery: Any = None
    celery_note: str = ""
    echo: tuple[str, int] = ("", 0)
    profiles: dict[str, Any] = field(default_factory=dict)  # name -> lab.bench.profiling.Profile
    loops: set[str] = field(default_factory=set)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@contextlib.contextmanager
def _bench_resources(bench: Bench, root: Path) -> Iterator[None]:
    from realsys import cluster

    args = bench.args
    try:
        for store in args.store:
            for design in args.design:
                if design == "celery":
                    continue
                directory = root / f"{design}-{store}"
                _say(f"starting {design} cluster ({store}) ...")
                info = cluster.up(design, directory, args.slots, store)
                bench.clusters[f"{design}/{store}"] = directory
                bench.targets[f"{design}/{store}"] = routed_target_spec(info.clients, design)
                bench.pids[f"{design}/{store}"] = [n.pid for n in info.nodes]
                if not args.no_sw:
                    name = f"{design}/{store}-sw"  # submit-with-wait: one RPC per job
                    bench.clusters[name] = directory
                    bench.targets[name] = routed_target_spec(info.clients, design, SUBMIT_WAIT)
                    bench.pids[name] = bench.pids[f"{design}/{store}"]
                if design == "mono" and store == args.store[0] and not args.no_rr:
                    # the stock load-generator target: WaitJob round-robin, so 5 in 6 are forwarded
                    name = f"mono/{store}-rr"
                    bench.clusters[name] = directory
                    bench.targets[name] = dtq_target_spec(info.clients, design=design)
                    bench.pids[name] = bench.pids[f"{design}/{store}"]
        if "celery" in args.design:
            _start_celery(bench, root)
        if not args.no_submit:
            _say("starting echo server and single submit nodes ...")
            bench.echo = start_echo(bench.procs)
            for store in args.store:
                bench.singles[store] = start_single_node(bench.procs, root / f"single-{store}", store)
        yield
    finally:
        _say("stopping ...")
        for directory in bench.clusters.values():
            with contextlib.suppress(Exception):
                cluster.down(directory)
        if bench.celery is not None:
            with contextlib.suppress(Exception):
                bench.celery.down()
        bench.procs.stop()


def _start_celery(bench: Bench, root: Path) -> None:
    try:
        from lab.baseline.runner import BaselineCluster
    except ImportError as exc:
        bench.celery_note = f"not available (lab.baseline: {exc})"
        return
    if shutil.which("redis-server") is None:
        bench.celery_note = "not available (no redis-server)"
        return
    _say("starting celery + redis ...")
    try:
        celery = BaselineCluster(root / "celery", slots=bench.args.slots)
        celery.up()
    except Exception as exc:
        bench.celery_note = f"not available ({type(exc).__name__}: {exc})"
        return
    bench.celery = celery
    bench.targets["celery"] = celery.target_spec()
    # redis-server and the worker process(es): what serves Celery's jobs
    servers = [getattr(celery, "_redis", None), *getattr(celery, "_workers", [])]
    bench.pids["celery"] = [proc.pid for proc in servers if proc is not None]


def _measure_round(bench: Bench, index: int) -> None:
    args = bench.args
    for name, spec in bench.targets.items():
        _say(f"  round {index + 1}: end to end {name} ...")
        result = e2e_once(
            spec, args.clients, args.processes, args.warmup, args.window, bench.pids.get(name, [])
        )
        bench.e2e.setdefault(name, Series()).values.append(result["rate"])
        bench.cpu.setdefault(name, Series()).values.append(result["server_cpu_per_job"])
        bench.loops.add(result["loop"])
        if result["errors"]:
            bench.e2e[name].notes.append(json.dumps(result["errors"]))
        bench.e2e.setdefault(f"{name}#cpu", Series()).values.append(result["client_cpu"])
    if args.no_submit:
        return
    servers = {"echo": (*bench.echo, "echo")} | {
        f"submit/{store}": (address, pid, "submit") for store, (address, pid) in bench.singles.items()
    }
    for in_flight in (16, 1):
        for name, (address, pid, method) in servers.items():
            _say(f"  round {index + 1}: {name} at {in_flight} in flight ...")
            r = rpc_once(address, method, in_flight, args.rpc_warmup, args.rpc_window, pid)
            key = f"{name}@{in_flight}"
            bench.rpc.setdefault(key, Series()).values.append(r["rate"])
            bench.p50.setdefault(key, Series()).values.append(r["p50"])
            bench.cpu.setdefault(key, Series()).values.append(r["server_cpu_per_call"])
            bench.cpu.setdefault(f"{key}#client", Series()).values.append(r["client_cpu_per_call"])


def _met(ok: bool) -> str:
    return "MET" if ok else "NOT MET"


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "n/a"


def _report(bench: Bench, load_start: tuple[float, float, float], rpcs: Mapping[str, Any]) -> str:
    args = bench.args
    load_end = os.getloadavg()
    lines = [
        "dtq bench",
        f"  machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}; "
        f"load average at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}, "
        f"at end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f} (shared machine)",
        f"  stores: {', '.join(args.store)} (Design A and B run on each; Celery uses Redis, no persistence)",
        f"  client event loop: {', '.join(sorted(bench.loops)) or '?'}; each figure: median of {args.runs} "
        f"runs [the runs in brackets]",
        "",
        f"End to end: no-op ({NOOP_TYPE}) jobs/s at {args.clients} closed-loop clients in wait mode "
        f"(realsys.loadgen: submit, wait for the end, repeat) in {args.processes} client process(es); "
        f"{args.warmup:g}s warm-up, {args.window:g}s window; {args.slots} worker slots per system",
        "  rows: DESIGN/STORE = SubmitJob + WaitJob to the owner; -rr = the same, WaitJob round-robin; "
        f"-sw = one SubmitJob with wait_timeout {SUBMIT_WAIT:g}s (synchronous invocation)",
    ]
    celery = bench.e2e.get("celery")
    for name, series in bench.e2e.items():
        if name.endswith("#cpu"):
            continue
        cpu = bench.e2e[f"{name}#cpu"].median
        ratio = f"  {_ratio(series.median, celery.median)} Celery" if celery and name != "celery" else ""
        notes = f"   errors {'; '.join(series.notes)}" if series.notes else ""
        server = bench.cpu[name].median * 1e3
        lines.append(
            f"  {name:<15} {series.median:6.0f} jobs/s {series.spread():<22}{ratio:<16}"
            f" server CPU {server:5.2f} ms/job, client CPU {cpu:.2f} cores{notes}"
        )
    if celery is None:
        lines.append(f"  celery: {bench.celery_note or 'not measured'}")
    for store in args.store:
        for suffix, mode in (("", "submit + WaitJob"), ("-sw", "submit-with-wait")):
            mono = bench.e2e.get(f"mono/{store}{suffix}")
            if mono is not None and celery is not None:
                ok = mono.median >= 3 * celery.median and mono.median > 1000
                lines.append(
                    f"  target B/{store}{suffix} ({mode}) >= 3x Celery and > 1000 jobs/s: {_met(ok)} "
                    f"({mono.median:.0f} vs {3 * celery.median:.0f} and 1000)"
                )
    if bench.rpc:
        lines += [
            "",
            "SubmitJob on one Design B node process (0 worker slots) vs a bare grpc.aio echo process "
            f"(same request bytes, same client path); {args.rpc_warmup:g}s warm-up, "
            f"{args.rpc_window:g}s window",
        ]
        echo16, echo1 = bench.rpc["echo@16"].median, bench.p50["echo@1"].median
        for in_flight in (16, 1):
            for name in ["echo", *(f"submit/{s}" for s in args.store)]:
                key = f"{name}@{in_flight}"
                rate, p50 = bench.rpc[key], bench.p50[key]
                vs = ""
                if name != "echo":
                    vs = (
                        f"   throughput {_ratio(rate.median, echo16)} of echo"
                        if in_flight == 16
                        else f"   p50 {_ratio(p50.median, echo1)} echo's"
                    )
                server = bench.cpu[key].median * 1e6
                client = bench.cpu[f"{key}#client"].median * 1e6
                lines.append(
                    f"  {name:<14} {in_flight:>2} in flight: {rate.median:6.0f} calls/s {rate.spread():<20} "
                    f"p50 {p50.median * 1e3:6.3f} ms {p50.spread(1e3, 3):<24} "
                    f"CPU/call server {server:4.0f} us client {client:4.0f} us{vs}"
                )
        for store in args.store:
            thr = bench.rpc[f"submit/{store}@16"].median / echo16
            lat = bench.p50[f"submit/{store}@1"].median / echo1
            lines.append(
                f"  target B/{store}: throughput >= 70% of echo: {_met(thr >= 0.7)} ({thr:.0%}); "
                f"p50 at 1 in flight <= 1.3x echo: {_met(lat <= 1.3)} ({lat:.2f}x)"
            )
    if rpcs:
        lines += ["", f"RPCs per job ({args.count_jobs} no-op jobs at 16 clients; all servers' counters)"]
        for name, counts in rpcs.items():
            if isinstance(counts, str):
                lines.append(f"  {name:<15} {counts}")
                continue
            failed = int(counts.pop("_not_succeeded", 0))
            total = sum(counts.values())
            unit = "Redis commands" if name == "celery" else "RPCs"
            detail = ", ".join(f"{m} {v:.2f}" for m, v in counts.items())
            failures = f"  ({failed} not SUCCEEDED)" if failed else ""
            lines.append(f"  {name:<15} {total:5.2f} {unit}/job: {detail}{failures}")
    if bench.profiles:
        lines += ["", "Where the time goes (py-spy, Python frames; C time is charged to its caller)"]
        for label, profile in bench.profiles.items():
            lines.append(f"  {label}:")
            lines += [f"    {profile}"] if isinstance(profile, str) else profile.lines(indent="    ")
    return "\n".join(lines)


def profile_servers(bench: Bench, root: Path) -> None:
    """py-spy on each server while the load of its figure runs (after the measured rounds: sampling
    costs the target a little CPU, so no figure above is taken under it)."""
    from lab.bench import profiling

    args = bench.args
    runs: list[tuple[str, int, Callable[[], object], float]] = []
    if not args.no_submit:
        servers = {"echo": (*bench.echo, "echo")} | {
            f"submit/{store}": (address, pid, "submit") for store, (address, pid) in bench.singles.items()
        }
        for name, (address, pid, method) in servers.items():

            def rpc(address: str = address, pid: int = pid, method: str = method) -> object:
                return rpc_once(address, method, 16, args.rpc_warmup, args.rpc_window, pid)

            runs.append((f"{name} at 16 in flight", pid, rpc, args.rpc_warmup + args.rpc_window))
    for name, spec in bench.targets.items():
        if name.startswith("mono/") and "-" not in name:
            pid = bench.pids[name][0]

            def e2e(spec: dict[str, Any] = spec) -> object:
                return e2e_once(spec, args.clients, args.processes, args.warmup, args.window, [])

            runs.append((f"{name} end to end, node n1", pid, e2e, args.warmup + args.window))
    for label, pid, load, seconds in runs:
        _say(f"  profiling {label} ...")
        out = root / f"profile-{len(bench.profiles)}.raw"
        sampler = profiling.start_sampling(pid, seconds, out)
        try:
            load()
        finally:
            try:
                bench.profiles[label] = profiling.finish_sampling(sampler, out)
            except RuntimeError as exc:
                bench.profiles[label] = str(exc)


def run_bench(args: argparse.Namespace) -> str:
    load_start = os.getloadavg()
    bench = Bench(args)
    rpcs: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="dtq-bench-") as tmp, _bench_resources(bench, Path(tmp)):
        for i in range(args.runs):
            _measure_round(bench, i)
        if args.count_jobs > 0:
            for name, spec in bench.targets.items():
                _say(f"  counting RPCs per job: {name} ...")
                if name == "celery":
                    rpcs[name] = count_redis_commands(spec, bench.celery.redis_url, args.count_jobs)
                else:
                    ports = metrics_ports(bench.clusters[name])
                    rpcs[name] = count_rpcs(spec, ports, args.count_jobs)
        if args.profile:
            profile_servers(bench, Path(tmp))
    return _report(bench, load_start, rpcs)


def add_parser(sub: Any) -> None:
    """`dtq bench` arguments (sub is the dtq command's subparsers object)."""
    p = sub.add_parser("bench", help="throughput/latency benchmark vs Celery+Redis and a bare gRPC echo")
    p.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported")
    p.add_argument("--store", action="append", choices=STORES, help="default: both")
    p.add_argument(
        "--design", action="append", choices=["mono", "micro", "celery"], help="default: all three"
    )
    p.add_argument("--clients", type=int, default=16)
    p.add_argument("--processes", type=int, default=2, help="client processes for the end-to-end runs")
    p.add_argument("--slots", type=int, default=12, help="total worker slots of each system")
    p.add_argument("--warmup", type=float, default=1.5)
    p.add_argument("--window", type=float, default=4.0)
    p.add_argument("--rpc-warmup", type=float, default=1.0)
    p.add_argument("--rpc-window", type=float, default=3.0)
    p.add_argument("--count-jobs", type=int, default=2000, help="jobs for the RPCs-per-job count (0: skip)")
    p.add_argument("--no-submit", action="store_true", help="skip the SubmitJob vs echo figures")
    p.add_argument(
        "--no-rr", action="store_true", help="skip Design B driven by the round-robin DtqTarget (-rr row)"
    )
    p.add_argument(
        "--no-sw", action="store_true", help="skip the submit-with-wait client (-sw rows, both designs)"
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="after the figures, sample the servers with py-spy and print where their time goes",
    )


def bench_command(args: argparse.Namespace) -> int:
    args.store = args.store or list(STORES)
    args.design = args.design or ["mono", "micro", "celery"]
    if args.runs < 1 or args.clients < 1 or args.processes < 1 or args.window <= 0:
        raise ValueError("--runs, --clients, --processes must be >= 1 and --window > 0")
    print(run_bench(args), flush=True)
    return 0


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "child":
        sys.exit(_child_main(sys.argv[2]))
    if len(sys.argv) >= 2 and sys.argv[1] == "echo-server":
        sys.exit(_echo_main(sys.argv[2]))
    print("usage: python -m lab.bench.bench child JOB_JSON | echo-server LISTEN", file=sys.stderr)
    sys.exit(2)
