"""How fast the simulator runs: simulated dtq jobs per second, against a bare SimPy M/M/c model.

    python -m lab.bench.simulator                 # every figure, the targets, and the 1M-job what-if
    python -m lab.bench.simulator --jobs 0        # without the long what-if (no memory figure)
    python -m lab.bench.simulator --profile       # plus one cProfile of the 6-process clusters
    python -m lab.bench.simulator --ab ../main    # this tree's speed against another checkout's

The bare model is the textbook SimPy M/M/c: a Poisson source, one process per customer, a
simpy.Resource(c) and an exponential service timeout. dtq's simulator does far more per job (every
request path, hop, burst and core call), so the target is a fraction of it: >= 1/10, measured in
the same run. `--repeats` rounds each run the bare reference first and then every case, so drift
hits both sides of each ratio; figures are medians [min-max] over the rounds, ratios paired by
round; the targets of issue 22 are printed as MET / NOT MET lines. The long what-if runs once, in a
child process, for its peak RSS. Rates are per wall second (what a user waits for), with the
per-CPU-second figure beside some (time.process_time: on a shared machine the neighbours' load
distorts wall time but not CPU time).
"""

from __future__ import annotations

import argparse
import cProfile
import dataclasses
import io
import json
import os
import pstats
import resource
import subprocess
import sys
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import simpy

from lab.bench.figures import Series, Target
from model.workload import Distribution, OpenLoop, WorkloadSpec
from sim.api import SimConfig, SimResult, run
from sim.params import SimParams, load_params


def bare_mmc(customers: int, c: int, lam: float, mu: float, seed: int = 1) -> tuple[float, float, float]:
    """Runs a bare SimPy M/M/c for `customers` arrivals; returns (customers per wall second, per CPU
    second, mean wait)."""
    env = simpy.Environment()
    server = simpy.Resource(env, capacity=c)
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / lam, customers).tolist()
    services = rng.exponential(1.0 / mu, customers).tolist()
    waits: list[float] = []

    def customer(service: float) -> Generator[Any, Any, None]:
        arrived = env.now
        with server.request() as req:
            yield req
            waits.append(env.now - arrived)
            yield env.timeout(service)

    def source() -> Generator[Any, Any, None]:
        for gap, service in zip(gaps, services, strict=True):
            yield env.timeout(gap)
            env.process(customer(service))

    env.process(source())
    wall0, cpu0 = time.perf_counter(), time.process_time()
    env.run()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return customers / wall, customers / cpu, float(np.mean(waits))


def dtq_mmc(design: str, c: int, lam: float, mu: float, seconds: float, params: SimParams) -> SimResult:
    """Open-loop submits of exponential jobs on c slots, through the whole simulated system."""
    workload = WorkloadSpec(
        OpenLoop(lam, max_in_flight=1_000_000),
        duration=Distribution("exponential", 1.0 / mu),
        run_time=seconds,
        warmup=min(5.0, seconds / 10),
        seed=1,
    )
    return run(SimConfig(design, workload, params))  # type: ignore[arg-type]


def cluster_near_saturation(design: str, rate: float, seconds: float) -> SimResult:
    """The default 6-process cluster with placeholder costs, open-loop submits at `rate`."""
    workload = WorkloadSpec(
        OpenLoop(rate, max_in_flight=4096),
        duration=Distribution("exponential", 0.01),
        run_time=seconds,
        warmup=1.0,
        seed=1,
    )
    return run(SimConfig(design, workload, SimParams()))  # type: ignore[arg-type]


WHATIF_NODES = 100
WHATIF_SLOTS = 12  # per node
WHATIF_JOB_SECONDS = 0.5  # mean exponential job duration
WHATIF_RATE = 2000.0  # submits/s: 83% of the 1200 slots' 2400 jobs/s
# peers a depth round asks at 100 nodes: polling all 99 is ~10^4 QueueDepth RPCs per round of the
# cluster, which dominated the run (and would dominate a real one); d random peers find a loaded one
WHATIF_FANOUT = 4


def whatif_params(nodes: int = WHATIF_NODES, fanout: int = WHATIF_FANOUT) -> SimParams:
    """Design B at scale: `nodes` nodes, each alone on its own 2-core host, placeholder costs, and the
    load generator (4 processes) on a host of its own."""
    return SimParams(
        nodes=nodes,
        slots=nodes * WHATIF_SLOTS,
        hosts=nodes + 1,
        procs_per_host=1,
        loadgen_host=nodes,
        loadgen_processes=4,
        steal_fanout=fanout,
    )


def whatif(jobs: int, nodes: int = WHATIF_NODES, fanout: int = WHATIF_FANOUT) -> SimResult:
    """`jobs` submits at WHATIF_RATE to a `nodes`-node Design B cluster (about jobs / rate simulated
    seconds, plus the drain)."""
    return run(SimConfig("mono", whatif_workload(jobs), whatif_params(nodes, fanout)))


def whatif_workload(jobs: int) -> WorkloadSpec:
    """The what-if's load: `jobs` Poisson submits at WHATIF_RATE of exponential WHATIF_JOB_SECONDS jobs."""
    return WorkloadSpec(
        OpenLoop(WHATIF_RATE, max_in_flight=100_000),
        duration=Distribution("exponential", WHATIF_JOB_SECONDS),
        run_time=jobs / WHATIF_RATE,
        warmup=min(5.0, jobs / WHATIF_RATE / 10),
        seed=1,
    )


def _jobs_summary(result: SimResult) -> str:
    s = result.summary
    done = s["throughput"]["completed_per_s"]
    submit, job = s["latency_ms"]["submit"], s["completion_ms"]
    return (
        f"completed {done:,.0f}/s, submit p50/p99 {submit['p50']:.2f}/{submit['p99']:.2f} ms, "
        f"job p50/p99 {job['p50']:.1f}/{job['p99']:.1f} ms"
    )


# where a function's own time goes, by the file it is in (first match wins)
PROFILE_PARTS = (
    ("event loop (sim/engine.py SimEnv: dispatch, scheduling)", ("sim/engine.py",)),
    ("CPU bursts (sim/cpu.py: cores, loops, costs)", ("sim/cpu.py",)),
    ("SimPy events and processes", ("/simpy/",)),
    ("core decisions (model/)", ("/model/",)),
    ("design drivers, load generator, records (sim/ rest)", ("/sim/",)),
)


BUILTINS = "builtins (heapq, generator send, containers)"


def profile_shares(stats: pstats.Stats) -> tuple[list[tuple[str, float]], float]:
    """Own (tottime) seconds per part of the simulator; builtins (heapq, generator sends, dicts) are
    one part of their own, as cProfile cannot say who they work for."""
    parts: dict[str, float] = {}
    total = 0.0
    for (file, _, _), (_, _, own, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        total += own
        part = next((name for name, keys in PROFILE_PARTS if any(k in file for k in keys)), BUILTINS)
        parts[part] = parts.get(part, 0.0) + own
    return sorted(parts.items(), key=lambda kv: -kv[1]), total


def one_node_params(design: str, costs: str, c: int, calibration: str) -> SimParams:
    """One node (Design B) or the six processes (Design A) with `c` slots: ideal costs, or the real
    ones (the calibration `calibration`, or sim/placeholders.py's round numbers when it is "")."""
    if costs == "ideal":
        return SimParams.ideal(nodes=1, slots=c) if design == "mono" else SimParams.ideal(slots=c)
    base = load_params(calibration) if calibration else SimParams()
    return dataclasses.replace(base, nodes=1, slots=c)


def _whatif_child(jobs: int) -> None:
    """`--whatif-child N`: the what-if alone in this process; prints its speed and the process's peak
    RSS (the heap of one run, records included, not that of the runs before it) as JSON."""
    r = whatif(jobs)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    out = {k: r.stats[k] for k in ("wall_seconds", "cpu_seconds", "sim_per_wall", "jobs_per_wall_second")}
    print(json.dumps({**out, "peak_rss_mib": peak_mib, "summary": _jobs_summary(r)}), flush=True)


def whatif_in_child(jobs: int) -> dict[str, Any]:
    """The what-if of `jobs` jobs in a fresh interpreter (its peak RSS is its own)."""
    done = subprocess.run(
        [sys.executable, "-m", "lab.bench.simulator", "--whatif-child", str(jobs)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the what-if child failed: {done.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


C, MU = 12, 100.0  # the one-node model: 12 slots, 10 ms exponential jobs
CLUSTERS = (("mono", 1000.0), ("micro", 600.0))  # six-process clusters near saturation: submits/s


@dataclass
class SimBench:
    bare: Series = field(default_factory=Series)  # bare SimPy customers per wall second
    bare_cpu: Series = field(default_factory=Series)
    node: dict[str, Series] = field(default_factory=dict)  # "design/costs" -> jobs per wall second
    node_cpu: dict[str, Series] = field(default_factory=dict)
    node_vs_bare: dict[str, Series] = field(default_factory=dict)  # paired by round
    cluster: dict[str, Series] = field(default_factory=dict)  # design -> simulated s per wall s
    cluster_jobs: dict[str, Series] = field(default_factory=dict)
    whatif: Series = field(default_factory=Series)  # simulated s per wall s
    whatif_jobs: Series = field(default_factory=Series)
    summaries: dict[str, str] = field(default_factory=dict)  # one run's latency line per case


def _round(b: SimBench, args: argparse.Namespace, index: int) -> None:
    """One round: the bare reference first, then every measured case, so that a drift of the host's
    speed hits the reference and the cases of the round alike."""
    wall, cpu, _ = bare_mmc(args.customers, C, 0.8 * C * MU, MU)
    b.bare.values.append(wall)
    b.bare_cpu.values.append(cpu)
    for design in ("mono", "micro"):
        for costs, rho in (("ideal", 0.8), ("real", 0.2)):
            name = f"{design}/{costs}"
            params = one_node_params(design, costs, C, args.calibration)
            r = dtq_mmc(design, C, rho * C * MU, MU, args.seconds, params)
            b.node.setdefault(name, Series()).values.append(r.stats["jobs_per_wall_second"])
            b.node_cpu.setdefault(name, Series()).values.append(r.stats["jobs_per_cpu_second"])
            b.node_vs_bare.setdefault(name, Series()).values.append(r.stats["jobs_per_wall_second"] / wall)
            b.summaries.setdefault(name, _jobs_summary(r))
    for design, rate in CLUSTERS:
        r = cluster_near_saturation(design, rate, args.seconds / 3)
        b.cluster.setdefault(design, Series()).values.append(r.stats["sim_per_wall"])
        b.cluster_jobs.setdefault(design, Series()).values.append(r.stats["jobs_per_wall_second"])
        util = r.stats["host_utilisation"]["h0"]
        b.summaries.setdefault(f"cluster/{design}", f"host CPU {util:.0%}; {_jobs_summary(r)}")
    if args.whatif_jobs > 0:
        r = whatif(args.whatif_jobs)
        b.whatif.values.append(r.stats["sim_per_wall"])
        b.whatif_jobs.values.append(r.stats["jobs_per_wall_second"])
        b.summaries.setdefault("whatif", _jobs_summary(r))
    print(f"  round {index + 1} done", file=sys.stderr, flush=True)


def _fanout_lines(jobs: int) -> list[str]:
    lines = []
    for fanout in (0, WHATIF_FANOUT):
        r = whatif(jobs, fanout=fanout)
        counters = r.stats["counters"]
        lines.append(
            f"  what-if, {jobs:,} jobs, steal fanout {fanout or 'all peers'}: "
            f"{r.stats['jobs_per_wall_second']:,.0f} jobs/wall-s, "
            f"{counters.get('depth_asks', 0) / jobs:.1f} QueueDepth calls and "
            f"{counters.get('stolen', 0) / jobs:.2f} steals per job; {_jobs_summary(r)}"
        )
    return lines


def _profile_lines(seconds: float) -> list[str]:
    lines = []
    for design, rate in CLUSTERS:
        profiler = cProfile.Profile()
        profiler.enable()
        r = cluster_near_saturation(design, rate, seconds)
        profiler.disable()
        stats = pstats.Stats(profiler)
        shares, total = profile_shares(stats)
        calls = stats.total_calls / max(1, r.stats["jobs_submitted"])  # type: ignore[attr-defined]
        lines.append(
            f"profile: 6-process {design} at {rate:g} submits/s, {total:.1f} s of own time (cProfile), "
            f"{calls:,.0f} Python calls per simulated job:"
        )
        lines += [f"  {sec / total:6.1%}  {part}" for part, sec in shares]
        out = io.StringIO()
        stats.stream = out  # type: ignore[attr-defined]
        stats.sort_stats("tottime").print_stats(12)
        lines.append(out.getvalue())
    return lines


def report(b: SimBench, args: argparse.Namespace, big: dict[str, Any] | None, load: tuple[float, ...]) -> str:
    costs = f"calibration {args.calibration}" if args.calibration else "sim/placeholders.py round numbers"
    end = os.getloadavg()
    lines = [
        "simulator bench (python -m lab.bench.simulator)",
        f"  machine: {os.cpu_count()} CPUs; load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
        f"at end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}",
        f"  {args.repeats} rounds, each: the bare SimPy reference first, then every case; figures: "
        "median [min-max] over the rounds; ratios paired by round",
        "",
        f"bare SimPy M/M/{C} (rho 0.8, {args.customers:,} customers): {b.bare.show()} customers/wall-s "
        f"({b.bare_cpu.show()}/CPU-s)",
        f"one node, {C} slots, {1e3 / MU:g} ms exponential jobs ({args.seconds:g} simulated s; ideal "
        f"costs at rho 0.8, real costs ({costs}) at rho 0.2):",
    ]
    for name, series in b.node.items():
        ratio = b.node_vs_bare[name]
        lines.append(
            f"  {name:<12} {series.show():<22} jobs/wall-s = {ratio.show(1.0, 3)} of bare "
            f"(1/{1 / ratio.median:.1f}); per CPU-s {b.node_cpu[name].show()}; {b.summaries[name]}"
        )
    lines.append(
        f"six-process clusters near saturation ({args.seconds / 3:g} simulated s, placeholder costs):"
    )
    for design, rate in CLUSTERS:
        lines.append(
            f"  {design:<6} at {rate:g} submits/s: simulated s per wall s {b.cluster[design].show(1.0, 2)}, "
            f"{b.cluster_jobs[design].show()} jobs/wall-s; {b.summaries[f'cluster/{design}']}"
        )
    if b.whatif.values:
        lines.append(
            f"what-if: Design B, {WHATIF_NODES} nodes x {WHATIF_SLOTS} slots, steal fanout {WHATIF_FANOUT}, "
            f"{args.whatif_jobs:,} jobs at {WHATIF_RATE:g}/s: simulated s per wall s "
            f"{b.whatif.show(1.0, 2)}, "
            f"{b.whatif_jobs.show()} jobs/wall-s; {b.summaries['whatif']}"
        )
    if big is not None:
        lines.append(
            f"what-if, {args.jobs:,} jobs, once, in a child process: wall {big['wall_seconds']:,.1f} s "
            f"(CPU {big['cpu_seconds']:,.1f} s), simulated s per wall s {big['sim_per_wall']:.2f}, "
            f"{big['jobs_per_wall_second']:,.0f} jobs/wall-s, peak RSS {big['peak_rss_mib']:,.0f} MiB "
            f"(records included); {big['summary']}"
        )
    targets = [
        *(
            Target(
                f"six-process {design} near saturation >= 10x real time",
                b.cluster[design],
                10.0,
                True,
                basis=f"{rate:g} submits/s",
            )
            for design, rate in CLUSTERS
        ),
        Target(
            f"100-node what-if >= 10x real time ({args.whatif_jobs:,}-job runs)",
            b.whatif,
            10.0,
            True,
            basis=f"the {args.jobs:,}-job run: {big['sim_per_wall']:.2f}x" if big else "",
        ),
        *(
            Target(
                f"real-cost one-node {design} >= 1/10 of bare SimPy customers per wall-s",
                b.node_vs_bare[f"{design}/real"],
                0.1,
                True,
                unit="of bare",
                digits=3,
                basis=f"bare {b.bare.show()} customers/wall-s, "
                f"this {b.node[f'{design}/real'].show()} jobs/wall-s",
            )
            for design in ("mono", "micro")
        ),
        Target(
            f"memory, peak RSS of a {args.jobs:,}-job run <= ~500 MB",
            Series([big["peak_rss_mib"] * 1.048576]) if big else Series(),
            500.0,
            False,
            unit="MB",
            digits=0,
            basis="the what-if, in a process of its own, records included",
        ),
    ]
    lines += ["", "Targets (issue 22)", *(t.line() for t in targets)]
    return "\n".join(lines)


# the --ab child: the cases, timed in CPU seconds, from whichever tree is first on sys.path (the
# functions it imports exist with these names and meanings on main too)
_AB_CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
from lab.bench.simulator import CLUSTERS, cluster_near_saturation, whatif
seconds, jobs = float(sys.argv[1]), int(sys.argv[2])
out = {}
for design, rate in CLUSTERS:
    r = cluster_near_saturation(design, rate, seconds)
    out[design] = r.stats["sim_seconds"] / r.stats["cpu_seconds"]
r = whatif(jobs)
out["whatif"] = r.stats["sim_seconds"] / r.stats["cpu_seconds"]
print(json.dumps(out))
"""


def ab(other: str, pairs: int, seconds: float, jobs: int) -> str:
    """This tree against the tree at `other` (e.g. a worktree of main): `pairs` pairs of child
    processes, one per tree, in alternating order (drift hits both sides), each running the
    six-process clusters and the what-if; simulated seconds per CPU second of each side, and their
    ratio paired by pair, as median [min-max]."""
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    trees = {"this": here, "other": os.path.abspath(other)}
    speed: dict[str, dict[str, Series]] = {side: {} for side in trees}
    ratio: dict[str, Series] = {}
    for i in range(pairs):
        got: dict[str, dict[str, float]] = {}
        for side in ("this", "other") if i % 2 == 0 else ("other", "this"):
            tree = trees[side]
            env = {**os.environ, "PYTHONPATH": tree}
            done = subprocess.run(
                [sys.executable, "-c", _AB_CHILD, str(seconds), str(jobs)],
                cwd=tree,
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode != 0:
                raise RuntimeError(f"the --ab child in {tree} failed: {done.stderr[-2000:]}")
            got[side] = json.loads(done.stdout.strip().splitlines()[-1])
        for case, value in got["this"].items():
            for side in trees:
                speed[side].setdefault(case, Series()).values.append(got[side][case])
            ratio.setdefault(case, Series()).values.append(value / got["other"][case])
        print(f"  pair {i + 1} done", file=sys.stderr, flush=True)
    lines = [
        f"A/B: this tree ({here}) against {trees['other']}, {pairs} pairs of child processes in "
        f"alternating order; simulated s per CPU s, median [min-max]; six-process clusters "
        f"{seconds:g} simulated s, what-if {jobs:,} jobs",
    ]
    for case, paired in ratio.items():
        this, that = speed["this"][case].show(1.0, 2), speed["other"][case].show(1.0, 2)
        lines.append(f"  {case:<6} this {this}, other {that}; this/other {paired.show(1.0, 3)}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--seconds", type=float, default=30.0, help="simulated seconds per one-node run")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; every figure is their median")
    parser.add_argument("--customers", type=int, default=100_000, help="customers of the bare reference")
    parser.add_argument(
        "--calibration",
        default="local",
        help="the real-cost one-node model's calibration (name under data/calibration/; '' for the "
        "placeholders)",
    )
    parser.add_argument(
        "--whatif-jobs", type=int, default=100_000, help="jobs of the what-if run in every round (0: skip)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1_000_000,
        help="jobs of the one long what-if: speed and peak RSS (0: skip)",
    )
    parser.add_argument(
        "--fanout-jobs",
        type=int,
        default=0,
        help="jobs of a what-if with every peer polled and with the fanout, once each (0: skip)",
    )
    parser.add_argument(
        "--ab",
        metavar="TREE",
        default="",
        help="only compare this tree's simulator with the checkout at TREE (e.g. a worktree of main): "
        "--repeats pairs of child processes, CPU time, paired ratios",
    )
    parser.add_argument("--whatif-child", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.whatif_child > 0:
        _whatif_child(args.whatif_child)
        return
    if args.ab:
        if not os.path.isdir(os.path.join(args.ab, "sim")):
            parser.error(f"--ab {args.ab}: not a dtq checkout (no sim/ folder)")
        load = os.getloadavg()
        print(f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
        print(ab(args.ab, args.repeats, args.seconds / 3, args.whatif_jobs))
        end = os.getloadavg()
        print(f"load average at end {end[0]:.2f} {end[1]:.2f} {end[2]:.2f}")
        return
    if args.repeats < 1 or args.seconds <= 0 or args.customers < 1:
        parser.error("--repeats and --customers must be >= 1 and --seconds > 0")
    load = os.getloadavg()
    b = SimBench()
    for i in range(args.repeats):
        _round(b, args, i)
    big = None
    if args.jobs > 0:
        print(f"  the {args.jobs:,}-job what-if ...", file=sys.stderr, flush=True)
        big = whatif_in_child(args.jobs)
    print(report(b, args, big, load))
    if args.fanout_jobs > 0:
        print("\n".join(_fanout_lines(args.fanout_jobs)))
    if args.profile:
        print("\n".join(_profile_lines(args.seconds / 6)))


if __name__ == "__main__":
    main()
