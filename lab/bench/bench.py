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
   node n1 of Design B during an end-to-end run, and prints where their time goes (lab/bench/profiling.py).

The child processes speak JSON over stdin/stdout (lab/bench/clients.py, lab/bench/servers.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.baseline.runner import BaselineCluster
from lab.bench import profiling
from lab.bench.clients import NOOP_TYPE, e2e_once, rpc_once
from lab.bench.counts import count_redis_commands, count_rpcs, metrics_ports
from lab.bench.servers import Processes, start_echo, start_single_node
from lab.bench.targets import routed_target_spec
from realsys import cluster
from realsys.cli_common import progress
from realsys.targets import dtq_target_spec

STORES = ("memory", "sqlite")
SUBMIT_WAIT = 30.0  # the -sw rows' SubmitJob wait_timeout (a no-op job ends long before)


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
    progress(message.strip())  # stderr, silent under --quiet


@contextlib.contextmanager
def _bench_resources(bench: Bench, root: Path) -> Iterator[None]:
    """Every system the bench drives, up for the block; on exit the clusters down, then Celery, then
    the processes the bench started itself."""
    args = bench.args
    with contextlib.ExitStack() as stack:
        stack.callback(bench.procs.stop)
        stack.callback(_stop_celery, bench)
        for store in args.store:
            for design in args.design:
                if design == "celery":
                    continue
                directory = root / f"{design}-{store}"
                _say(f"starting {design} cluster ({store}) ...")
                info = stack.enter_context(
                    cluster.running(design, directory, total_slots=args.slots, store=store)
                )
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
        try:
            yield
        finally:
            _say("stopping ...")


def _stop_celery(bench: Bench) -> None:
    if bench.celery is not None:
        with contextlib.suppress(Exception):
            bench.celery.down()


def _start_celery(bench: Bench, root: Path) -> None:
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
    p.add_argument("--clients", type=int, default=16, help="closed-loop clients of the end-to-end runs")
    p.add_argument("--processes", type=int, default=2, help="client processes for the end-to-end runs")
    p.add_argument("--slots", type=int, default=12, help="total worker slots of each system")
    p.add_argument("--warmup", type=float, default=1.5, help="end-to-end: seconds before measuring")
    p.add_argument("--window", type=float, default=4.0, help="end-to-end: seconds measured")
    p.add_argument("--rpc-warmup", type=float, default=1.0, help="SubmitJob vs echo: s before measuring")
    p.add_argument("--rpc-window", type=float, default=3.0, help="SubmitJob vs echo: seconds measured")
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
    p.set_defaults(handler=bench_command)


def bench_command(args: argparse.Namespace) -> int:
    args.store = args.store or list(STORES)
    args.design = args.design or ["mono", "micro", "celery"]
    if args.runs < 1 or args.clients < 1 or args.processes < 1 or args.window <= 0:
        raise ValueError("--runs, --clients, --processes must be >= 1 and --window > 0")
    print(run_bench(args), flush=True)
    return 0
