"""How fast the simulator runs: simulated dtq jobs per second, against a bare SimPy M/M/c model.

    python -m lab.bench.simulator                 # ratios, the 6-node cluster, the 100-node what-if (1M jobs)
    python -m lab.bench.simulator --jobs 100000   # a smaller what-if (its wall time is extrapolated to 1M)
    python -m lab.bench.simulator --profile       # plus one cProfile of the 6-node cluster near saturation

The bare model is the textbook SimPy M/M/c: a Poisson source, one process per customer, a
simpy.Resource(c) and an exponential service timeout. dtq's simulator does far more per job (every
request path, hop, burst and core call), so the target is a fraction of it: >= 1/10, measured in
the same run. Every figure is the median of `--repeats` runs. Rates are per wall second (what a
user waits for), with the per-CPU-second figure beside it (time.process_time: on a shared machine
the neighbours' load distorts wall time but not CPU time).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import statistics
import time
from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from model.workload import Distribution, OpenLoop, WorkloadSpec
from sim.api import SimConfig, SimResult, run
from sim.params import SimParams


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
    workload = WorkloadSpec(
        OpenLoop(WHATIF_RATE, max_in_flight=100_000),
        duration=Distribution("exponential", WHATIF_JOB_SECONDS),
        run_time=jobs / WHATIF_RATE,
        warmup=min(5.0, jobs / WHATIF_RATE / 10),
        seed=1,
    )
    return run(SimConfig("mono", workload, whatif_params(nodes, fanout)))


def _median(values: list[float]) -> float:
    return statistics.median(values)


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--seconds", type=float, default=30.0, help="simulated seconds per dtq run")
    parser.add_argument("--repeats", type=int, default=3, help="the median of this many runs per figure")
    parser.add_argument(
        "--jobs", type=int, default=1_000_000, help="jobs in the 100-node what-if (0: skip it)"
    )
    parser.add_argument("--whatif-repeats", type=int, default=1, help="runs of the what-if (median)")
    parser.add_argument(
        "--fanout-jobs",
        type=int,
        default=20_000,
        help="jobs of a shorter what-if run with every peer polled and with the fanout (0: skip)",
    )
    args = parser.parse_args(argv)
    reps = max(1, args.repeats)
    c, mu = 12, 100.0  # 12 slots, 10 ms jobs
    lam = 0.8 * c * mu
    bare = [bare_mmc(100_000, c, lam, mu) for _ in range(reps)]
    bare_wall, bare_cpu = _median([b[0] for b in bare]), _median([b[1] for b in bare])
    print(
        f"bare SimPy M/M/{c} (rho 0.8): {bare_wall:,.0f} customers/wall-s ({bare_cpu:,.0f}/CPU-s), "
        f"median of {reps}"
    )
    for design in ("mono", "micro"):
        ideal = SimParams.ideal(nodes=1, slots=c) if design == "mono" else SimParams.ideal(slots=c)
        placeholder = SimParams(nodes=1, slots=c)
        for label, params, rho in (("ideal costs", ideal, 0.8), ("placeholder costs", placeholder, 0.2)):
            runs = [dtq_mmc(design, c, rho * c * mu, mu, args.seconds, params) for _ in range(reps)]
            wall = _median([r.stats["jobs_per_wall_second"] for r in runs])
            cpu = _median([r.stats["jobs_per_cpu_second"] for r in runs])
            print(
                f"dtq sim {design:5} 1 node/{c} slots, {label:17}: {wall:,.0f} jobs/wall-s "
                f"= 1/{bare_wall / wall:.1f} of bare (per CPU-s {cpu:,.0f} = 1/{bare_cpu / cpu:.1f}); "
                f"sim/wall {_median([r.stats['sim_per_wall'] for r in runs]):.1f}; {_jobs_summary(runs[0])}"
            )
    for design, rate in (("mono", 1000.0), ("micro", 600.0)):
        runs = [cluster_near_saturation(design, rate, args.seconds / 3) for _ in range(reps)]
        util = runs[0].stats["host_utilisation"]["h0"]
        print(
            f"6-process {design:5} at {rate:g} submits/s (host CPU {util:.0%}): "
            f"simulated s per wall s {_median([r.stats['sim_per_wall'] for r in runs]):.2f} "
            f"(per CPU s {_median([r.stats['sim_per_cpu'] for r in runs]):.2f}), "
            f"{_median([r.stats['jobs_per_wall_second'] for r in runs]):,.0f} jobs/wall-s; "
            f"{_jobs_summary(runs[0])}"
        )
    if args.fanout_jobs > 0:
        for fanout in (0, WHATIF_FANOUT):
            r = whatif(args.fanout_jobs, fanout=fanout)
            counters = r.stats["counters"]
            print(
                f"what-if mono {WHATIF_NODES} nodes, {args.fanout_jobs:,} jobs, steal fanout "
                f"{fanout or 'all peers'}: {r.stats['jobs_per_wall_second']:,.0f} jobs/wall-s, "
                f"{counters.get('depth_asks', 0) / args.fanout_jobs:.1f} QueueDepth calls and "
                f"{counters.get('stolen', 0) / args.fanout_jobs:.2f} steals per job; {_jobs_summary(r)}"
            )
    if args.jobs > 0:
        runs = [whatif(args.jobs) for _ in range(max(1, args.whatif_repeats))]
        wall = _median([r.stats["wall_seconds"] for r in runs])
        line = (
            f"what-if mono {WHATIF_NODES} nodes x {WHATIF_SLOTS} slots (steal fanout {WHATIF_FANOUT}), "
            f"{args.jobs:,} jobs at "
            f"{WHATIF_RATE:g}/s (median of {len(runs)}): wall {wall:,.1f} s "
            f"(CPU {_median([r.stats['cpu_seconds'] for r in runs]):,.1f} s), "
            f"sim/wall {_median([r.stats['sim_per_wall'] for r in runs]):.2f}, "
            f"{_median([r.stats['jobs_per_wall_second'] for r in runs]):,.0f} jobs/wall-s; "
            f"{_jobs_summary(runs[0])}"
        )
        if args.jobs != 1_000_000:
            cpu = _median([r.stats["cpu_seconds"] for r in runs])
            scale = 1_000_000 / args.jobs
            line += (
                f"; 1M jobs extrapolated linearly (not measured): ~{wall * scale / 60:,.1f} min wall, "
                f"~{cpu * scale / 60:,.1f} min CPU"
            )
        print(line)
    if args.profile:
        for design, rate in (("mono", 1000.0), ("micro", 600.0)):
            profiler = cProfile.Profile()
            profiler.enable()
            cluster_near_saturation(design, rate, args.seconds / 6)
            profiler.disable()
            stats = pstats.Stats(profiler)
            shares, total = profile_shares(stats)
            print(f"profile: 6-process {design} at {rate:g} submits/s, {total:.1f} s of own time (cProfile):")
            for part, seconds in shares:
                print(f"  {seconds / total:6.1%}  {part}")
            out = io.StringIO()
            stats.stream = out  # type: ignore[attr-defined]
            stats.sort_stats("tottime").print_stats(12)
            print(out.getvalue())


if __name__ == "__main__":
    main()
