"""`dtq bench`: how fast the real system is, as ratios against baselines measured in the same run.

Figures (each the median of `--runs` runs, targets measured round-robin so a shared machine's load
drifts over all of them alike):

1. End to end: no-op jobs per second at 16 closed-loop clients, through the load generator
   (`realsys.loadgen.run_load_processes`, the path of `dtq load` and the experiment runner) with the
   closed loop in wait mode: each client submits an `echo` job (payload `{"seconds":0.0}`), long-polls
   until it is terminal, and repeats; the figure is the run summary's completed_per_s (jobs that
   *finish* inside the window after a warm-up). Design B, Design A and two peer baselines, all
   driven by the same client code in `--processes` client processes (uvloop): Celery + Redis
   (`BaselineCluster` + `CeleryTarget`) in two settings profiles of lab/baseline/celery_app.py
   ("durable": acks late and STARTED, dtq's guarantees; "lean": acks late, no STARTED, prefetch 4),
   and Dramatiq + Redis (`DramatiqCluster` + `DramatiqTarget`: results middleware on, 2 processes x
   8 threads). Server CPU (every server process and its children) and client CPU are read over the
   same window and divided by the jobs. The Design B client sends each
   WaitJob to the job's owner (the id prefix names it; the submit reply says which address owns which
   prefix), as DtqClient does; the `-rr` row drives the same cluster with the load generator's
   round-robin DtqTarget (5 in 6 WaitJobs forwarded). The `-sw` rows (both designs) use the
   synchronous-invocation client instead: one SubmitJob with `wait_timeout` per job, whose reply
   comes when the job has ended (no WaitJob unless the wait runs out). Design A runs twice
   (`--micro-batching both`): `micro` with one call per job on every internal hop (DTQ_BATCHING=off,
   the default, what sim/micro.py models) and `micro+b` with the hops coalesced (DTQ_BATCHING=on).
2. SubmitJob alone against one Design B node process (no worker slots, so only the submit path runs),
   versus a bare grpc.aio echo server in one process (same message bytes, same client code path,
   uvloop on both sides): throughput and p50 at 16 in flight, p50 at 1 in flight.
3. RPCs per job: every node's `dtq_rpc_total` (Prometheus) before and after a fixed number of jobs,
   divided by the jobs (background RPCs such as heartbeats and steal polls included); for the
   baselines the Redis commands per job (INFO commandstats).
4. The targets of issue 22, each a line with MET / NOT MET and the run's own baselines
   (lab/bench/figures.py: ratios are paired by round; a baseline measured in two configurations is
   compared at its better one).
5. With `--profile`: py-spy samples the echo server and the single submit node at 16 in flight, and
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
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.baseline.celery_app import PROFILES
from lab.baseline.dramatiq_runner import DramatiqCluster
from lab.baseline.runner import BaselineCluster
from lab.bench import profiling
from lab.bench.clients import NOOP_TYPE, e2e_once, rpc_once
from lab.bench.counts import count_redis_commands, count_rpcs, metrics_ports
from lab.bench.figures import Series, Target, best_of, paired_ratios
from lab.bench.servers import Processes, start_echo, start_single_node
from lab.bench.targets import routed_target_spec
from realsys import cluster
from realsys.cli_common import progress
from realsys.targets import dtq_target_spec

STORES = ("memory", "sqlite")
DESIGNS = ("mono", "micro", "celery", "dramatiq")
BASELINES = ("celery", "dramatiq")
# the two plausible best Celery configurations (lab/baseline/celery_app.py); the targets use the better
BENCH_CELERY_PROFILES = ("durable", "lean")
SUBMIT_WAIT = 30.0  # the -sw rows' SubmitJob wait_timeout (a no-op job ends long before)
# Design A's transports (DTQ_BATCHING): row prefix -> the setting
MICRO_VARIANTS = {"micro": "off", "micro+b": "on"}


@dataclass
class Bench:
    args: argparse.Namespace
    procs: Processes = field(default_factory=Processes)
    e2e: dict[str, Series] = field(default_factory=dict)
    rpc: dict[str, Series] = field(default_factory=dict)
    p50: dict[str, Series] = field(default_factory=dict)
    cpu: dict[str, Series] = field(default_factory=dict)  # server CPU seconds per job or per call
    client_cpu: dict[str, Series] = field(default_factory=dict)  # client CPU seconds per job or call
    completion: dict[str, Series] = field(default_factory=dict)  # end to end: p50 submit -> end, s
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    pids: dict[str, list[int]] = field(default_factory=dict)  # server processes of each target
    clusters: dict[str, Path] = field(default_factory=dict)
    singles: dict[str, tuple[str, int]] = field(default_factory=dict)
    baselines: list[BaselineCluster] = field(default_factory=list)  # every one started, to stop
    redis_urls: dict[str, str] = field(default_factory=dict)  # baseline row -> its Redis
    notes: dict[str, str] = field(default_factory=dict)  # a baseline that could not run: why
    echo: tuple[str, int] = ("", 0)
    root: Path = Path()  # the bench's scratch directory
    profiles: dict[str, Any] = field(default_factory=dict)  # name -> lab.bench.profiling.Profile
    loops: set[str] = field(default_factory=set)


def _say(message: str) -> None:
    progress(message.strip())  # stderr, silent under --quiet


@contextlib.contextmanager
def _bench_resources(bench: Bench, root: Path) -> Iterator[None]:
    """Every system the bench drives, up for the block; on exit the clusters down, then the
    baselines, then the processes the bench started itself."""
    args = bench.args
    with contextlib.ExitStack() as stack:
        stack.callback(bench.procs.stop)
        stack.callback(_stop_baselines, bench)
        for store in args.store:
            for design in args.design:
                if design in BASELINES:
                    continue
                variants = {design: ""} if design != "micro" else _micro_variants(args.micro_batching)
                for row, batching in variants.items():
                    _start_dtq(bench, stack, root, design, row, store, batching)
        if "celery" in args.design:
            for profile in args.celery_profile:

                def celery(directory: Path, profile: str = profile) -> BaselineCluster:
                    return BaselineCluster(directory, slots=args.slots, profile=profile)

                _start_baseline(bench, f"celery/{profile}", celery)
        if "dramatiq" in args.design:
            _start_baseline(bench, "dramatiq", DramatiqCluster)
        if not args.no_submit:
            _say("starting echo server and single submit nodes ...")
            bench.echo = start_echo(bench.procs)
            for store in args.store:
                bench.singles[store] = start_single_node(bench.procs, root / f"single-{store}", store)
        try:
            yield
        finally:
            _say("stopping ...")


def _micro_variants(choice: str) -> dict[str, str]:
    return {row: batching for row, batching in MICRO_VARIANTS.items() if choice in ("both", batching)}


def _start_dtq(
    bench: Bench,
    stack: contextlib.ExitStack,
    root: Path,
    design: str,
    row: str,
    store: str,
    batching: str,
) -> None:
    """One dtq cluster for the block (`row`: its rows' prefix; `batching`: DTQ_BATCHING, "" unset)."""
    args = bench.args
    directory = root / f"{row.replace('+', '-')}-{store}"
    _say(f"starting {row} cluster ({store}) ...")
    overrides = {"DTQ_BATCHING": batching} if batching else None
    info = stack.enter_context(
        cluster.running(design, directory, total_slots=args.slots, store=store, overrides=overrides)
    )
    bench.clusters[f"{row}/{store}"] = directory
    bench.targets[f"{row}/{store}"] = routed_target_spec(info.clients, design)
    bench.pids[f"{row}/{store}"] = [n.pid for n in info.nodes]
    if not args.no_sw and batching != "on":  # batching leaves SubmitJob with a wait as it is
        name = f"{row}/{store}-sw"  # submit-with-wait: one RPC per job
        bench.clusters[name] = directory
        bench.targets[name] = routed_target_spec(info.clients, design, SUBMIT_WAIT)
        bench.pids[name] = bench.pids[f"{row}/{store}"]
    if design == "mono" and store == args.store[0] and not args.no_rr:
        # the stock load-generator target: WaitJob round-robin, so 5 in 6 are forwarded
        name = f"mono/{store}-rr"
        bench.clusters[name] = directory
        bench.targets[name] = dtq_target_spec(info.clients, design=design)
        bench.pids[name] = bench.pids[f"{row}/{store}"]


def _stop_baselines(bench: Bench) -> None:
    for baseline in bench.baselines:
        with contextlib.suppress(Exception):
            baseline.down()


def _start_baseline(bench: Bench, name: str, make: Callable[[Path], BaselineCluster]) -> None:
    """Starts one peer baseline (its own redis-server and workers) as the row `name`; when it cannot
    run here, the report says why instead."""
    if shutil.which("redis-server") is None:
        bench.notes[name] = "not available (no redis-server)"
        return
    _say(f"starting {name} + redis ...")
    baseline = make(bench.root / name.replace("/", "-"))
    bench.baselines.append(baseline)
    try:
        baseline.up()
    except Exception as exc:
        bench.notes[name] = f"not available ({type(exc).__name__}: {exc})"
        return
    bench.targets[name] = baseline.target_spec()
    bench.pids[name] = baseline.server_pids()  # redis-server, the workers and their children
    bench.redis_urls[name] = baseline.redis_url


def _measure_round(bench: Bench, index: int) -> None:
    args = bench.args
    for name, spec in bench.targets.items():
        _say(f"  round {index + 1}: end to end {name} ...")
        result = e2e_once(
            spec, args.clients, args.processes, args.warmup, args.window, bench.pids.get(name, [])
        )
        bench.e2e.setdefault(name, Series()).values.append(result["rate"])
        bench.cpu.setdefault(name, Series()).values.append(result["server_cpu_per_job"])
        bench.client_cpu.setdefault(name, Series()).values.append(result["client_cpu_per_job"])
        bench.completion.setdefault(name, Series()).values.append(result["completion_p50_ms"] / 1e3)
        bench.loops.add(result["loop"])
        if result["errors"]:
            bench.e2e[name].notes.append(json.dumps(result["errors"]))
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
            bench.client_cpu.setdefault(key, Series()).values.append(r["client_cpu_per_call"])


def _e2e_rows(bench: Bench) -> list[str]:
    args = bench.args
    lines = [
        f"End to end: no-op ({NOOP_TYPE}) jobs/s at {args.clients} closed-loop clients in wait mode "
        f"(realsys.loadgen: submit, wait for the end, repeat) in {args.processes} client process(es); "
        f"{args.warmup:g}s warm-up, {args.window:g}s window; {args.slots} worker slots per dtq design "
        "and per Celery, Dramatiq 2 processes x 8 threads",
        "  rows: DESIGN/STORE = SubmitJob + WaitJob to the owner; -rr = the same, WaitJob round-robin; "
        f"-sw = one SubmitJob with wait_timeout {SUBMIT_WAIT:g}s (synchronous invocation); "
        "celery/durable = acks late + STARTED + prefetch 1, celery/lean = acks late, prefetch 4 "
        "(lab/baseline/celery_app.py); "
        "figures: median [min-max] over the rounds",
        f"  {'row':<16} {'jobs/s':<20} {'server CPU ms/job':<20} {'client CPU ms/job':<20} "
        "job p50 ms (submit -> end known)",
    ]
    for name, series in bench.e2e.items():
        notes = f"   errors {'; '.join(series.notes)}" if series.notes else ""
        lines.append(
            f"  {name:<16} {series.show():<20} {bench.cpu[name].show(1e3, 2):<20} "
            f"{bench.client_cpu[name].show(1e3, 2):<20} {bench.completion[name].show(1e3, 1)}{notes}"
        )
    for name, note in bench.notes.items():
        lines.append(f"  {name:<16} {note}")
    return lines


def _rpc_rows(bench: Bench) -> list[str]:
    args = bench.args
    lines = [
        "SubmitJob on one Design B node process (0 worker slots) vs a bare grpc.aio echo process "
        f"(same request bytes, same client path); {args.rpc_warmup:g}s warm-up, {args.rpc_window:g}s window",
        f"  {'server':<14} {'in flight':<10} {'calls/s':<20} {'p50 ms':<22} {'server CPU us/call':<20} "
        "client CPU us/call",
    ]
    for in_flight in (16, 1):
        for name in ["echo", *(f"submit/{s}" for s in args.store)]:
            key = f"{name}@{in_flight}"
            lines.append(
                f"  {name:<14} {in_flight:<10} {bench.rpc[key].show():<20} {bench.p50[key].show(1e3, 3):<22} "
                f"{bench.cpu[key].show(1e6):<20} {bench.client_cpu[key].show(1e6)}"
            )
    return lines


def _rpc_count_rows(bench: Bench, rpcs: Mapping[str, Any]) -> list[str]:
    lines = [f"RPCs per job ({bench.args.count_jobs} no-op jobs at 16 clients; all servers' counters)"]
    for name, counts in rpcs.items():
        if isinstance(counts, str):
            lines.append(f"  {name:<16} {counts}")
            continue
        per_method = {m: v for m, v in counts.items() if m != "_not_succeeded"}
        failed = int(counts.get("_not_succeeded", 0))
        total = sum(per_method.values())
        unit = "Redis commands" if name.split("/")[0] in BASELINES else "RPCs"
        detail = ", ".join(f"{m} {v:.2f}" for m, v in per_method.items())
        failures = f"  ({failed} not SUCCEEDED)" if failed else ""
        lines.append(f"  {name:<16} {total:5.2f} {unit}/job: {detail}{failures}")
    return lines


def targets(bench: Bench, rpcs: Mapping[str, Any]) -> list[Target]:
    """Issue 22's targets, from this run's figures (every store measured gets its lines)."""
    out: list[Target] = []
    e2e = bench.e2e
    celery = best_of([(n, s) for n, s in e2e.items() if n.startswith("celery/")])
    dramatiq = e2e.get("dramatiq")
    for store in bench.args.store:
        mono = e2e.get(f"mono/{store}")
        for row, batching in MICRO_VARIANTS.items():
            micro = e2e.get(f"{row}/{store}")
            if micro is None:
                continue
            figure, basis = Series(), "Celery not measured"
            if celery is not None:
                figure = paired_ratios(micro, celery[1])
                basis = (
                    f"A (batching {batching}) {micro.show()} jobs/s vs {celery[0]} {celery[1].show()} "
                    "jobs/s, the better Celery"
                )
            name = f"A{row.removeprefix('micro')}/{store} end to end >= 1.0x Celery"
            out.append(Target(name, figure, 1.0, True, basis=basis))
        if mono is not None:
            figure, basis = Series(), "Dramatiq not measured"
            if dramatiq is not None:
                figure = paired_ratios(mono, dramatiq)
                basis = f"B {mono.show()} jobs/s vs dramatiq {dramatiq.show()} jobs/s"
            name = f"B/{store} (submit + WaitJob) end to end >= 1.0x Dramatiq"
            out.append(Target(name, figure, 1.0, True, basis=basis))
        if f"submit/{store}@16" in bench.rpc:
            submit, echo = bench.rpc[f"submit/{store}@16"], bench.rpc["echo@16"]
            out.append(
                Target(
                    f"SubmitJob/{store} throughput at 16 in flight >= 0.75x echo",
                    paired_ratios(submit, echo),
                    0.75,
                    True,
                    basis=f"submit {submit.show()} vs echo {echo.show()} calls/s",
                )
            )
            p50, echo_p50 = bench.p50[f"submit/{store}@1"], bench.p50["echo@1"]
            out.append(
                Target(
                    f"SubmitJob/{store} p50 at 1 in flight <= 1.2x echo",
                    paired_ratios(p50, echo_p50),
                    1.2,
                    False,
                    basis=f"submit {p50.show(1e3, 3)} vs echo {echo_p50.show(1e3, 3)} ms",
                )
            )
        if mono is not None:
            out.append(
                Target(
                    f"B/{store} server CPU per job (submit + WaitJob) <= 0.7 ms",
                    bench.cpu[f"mono/{store}"],
                    0.7e-3,
                    False,
                    unit="ms",
                    scale=1e3,
                    basis="all node processes, over the end-to-end window",
                )
            )
        for row in MICRO_VARIANTS:
            counts = rpcs.get(f"{row}/{store}")
            if not isinstance(counts, Mapping):
                continue
            total = sum(v for m, v in counts.items() if m != "_not_succeeded")
            out.append(
                Target(
                    f"A{row.removeprefix('micro')}/{store} RPCs per job <= 4 (issue: 'at most about 4')",
                    Series([total]),
                    4.0,
                    False,
                    unit="RPCs",
                    basis=f"one count over {bench.args.count_jobs} jobs (stream messages counted as RPCs)",
                )
            )
    return out


def _report(bench: Bench, load_start: tuple[float, float, float], rpcs: Mapping[str, Any]) -> str:
    args = bench.args
    load_end = os.getloadavg()
    lines = [
        "dtq bench",
        f"  machine: {os.cpu_count()} CPUs, {platform.machine()}, Python {platform.python_version()}; "
        f"load average at start {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}, "
        f"at end {load_end[0]:.2f} {load_end[1]:.2f} {load_end[2]:.2f}",
        f"  stores: {', '.join(args.store)} (Design A and B run on each; the baselines use Redis, no "
        "persistence)",
        f"  client event loop: {', '.join(sorted(bench.loops)) or '?'}; {args.runs} rounds, every system "
        "once per round in turn; each figure: median [min-max] over the rounds",
        "",
        *_e2e_rows(bench),
    ]
    if bench.rpc:
        lines += ["", *_rpc_rows(bench)]
    if rpcs:
        lines += ["", *_rpc_count_rows(bench, rpcs)]
    lines += [
        "",
        "Targets (issue 22; ratios are paired by round, their median [min-max]; MET on the median)",
        *(t.line() for t in targets(bench, rpcs)),
    ]
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
    with tempfile.TemporaryDirectory(prefix="dtq-bench-") as tmp:
        bench.root = Path(tmp)
        with _bench_resources(bench, Path(tmp)):
            _measure(bench, rpcs)
    return _report(bench, load_start, rpcs)


def _measure(bench: Bench, rpcs: dict[str, Any]) -> None:
    """The rounds, then the RPC counts, then (`--profile`) the samples: nothing is timed while
    another of them runs."""
    args = bench.args
    for i in range(args.runs):
        _measure_round(bench, i)
    if args.count_jobs > 0:
        for name, spec in bench.targets.items():
            _say(f"  counting RPCs per job: {name} ...")
            if name in bench.redis_urls:
                rpcs[name] = count_redis_commands(spec, bench.redis_urls[name], args.count_jobs)
            else:
                rpcs[name] = count_rpcs(spec, metrics_ports(bench.clusters[name]), args.count_jobs)
    if args.profile:
        profile_servers(bench, bench.root)


def add_parser(sub: Any) -> None:
    """`dtq bench` arguments (sub is the dtq command's subparsers object)."""
    p = sub.add_parser(
        "bench", help="throughput/latency benchmark vs Celery+Redis, Dramatiq+Redis and a bare gRPC echo"
    )
    p.add_argument("--runs", type=int, default=3, help="runs per figure; the median is reported")
    p.add_argument("--store", action="append", choices=STORES, help="default: both")
    p.add_argument("--design", action="append", choices=DESIGNS, help="default: all four")
    p.add_argument(
        "--celery-profile",
        action="append",
        choices=sorted(PROFILES),
        help="Celery settings profile(s) to run (lab/baseline/celery_app.py); default: durable and lean",
    )
    p.add_argument(
        "--micro-batching",
        choices=("off", "on", "both"),
        default="both",
        help="Design A's transport (DTQ_BATCHING): micro rows off, micro+b rows on",
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
    args.design = args.design or list(DESIGNS)
    args.celery_profile = args.celery_profile or list(BENCH_CELERY_PROFILES)
    if args.runs < 1 or args.clients < 1 or args.processes < 1 or args.window <= 0:
        raise ValueError("--runs, --clients, --processes must be >= 1 and --window > 0")
    print(run_bench(args), flush=True)
    return 0
