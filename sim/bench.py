"""How fast the simulator runs: simulated jobs per wall second, against a bare SimPy M/M/c model.

    python -m sim.bench            # both designs, ideal and placeholder costs, and the 6-node cluster
    python -m sim.bench --profile  # plus one cProfile of the 6-node cluster near saturation

The bare model is the textbook SimPy M/M/c: a Poisson source, one process per customer, a
simpy.Resource(c) and an exponential service timeout. dtq's simulator does far more per job (every
request path, hop, burst and core call), so the target is a fraction of it: >= 1/10.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
from collections.abc import Generator
from typing import Any

import numpy as np
import simpy

from model.workload import Distribution, OpenLoop, WorkloadSpec
from sim.api import SimConfig, SimResult, run
from sim.params import SimParams


def bare_mmc(customers: int, c: int, lam: float, mu: float, seed: int = 1) -> tuple[float, float]:
    """Runs a bare SimPy M/M/c for `customers` arrivals; returns (customers per wall second, mean wait)."""
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
    began = time.perf_counter()
    env.run()
    wall = time.perf_counter() - began
    return customers / wall, float(np.mean(waits))


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


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--seconds", type=float, default=30.0, help="simulated seconds per dtq run")
    args = parser.parse_args(argv)
    c, mu = 12, 100.0  # 12 slots, 10 ms jobs
    lam = 0.8 * c * mu
    bare_rate, bare_wait = bare_mmc(200_000, c, lam, mu)
    print(f"bare SimPy M/M/{c} (rho 0.8): {bare_rate:,.0f} customers/s (mean wait {bare_wait * 1e3:.3f} ms)")
    for design in ("mono", "micro"):
        ideal = SimParams.ideal(nodes=1, slots=c) if design == "mono" else SimParams.ideal(slots=c)
        for label, params in (("ideal costs", ideal), ("placeholder costs", SimParams(nodes=1, slots=c))):
            result = dtq_mmc(design, c, lam * (0.25 if label.startswith("placeholder") else 1), mu, args.seconds, params)
            rate = result.stats["jobs_per_wall_second"]
            print(
                f"dtq sim {design:5} 1 node/{c} slots, {label:17}: {rate:,.0f} jobs/s "
                f"= 1/{bare_rate / rate:.1f} of bare; sim/wall {result.stats['sim_per_wall']:.1f}"
            )
    for design, rate in (("mono", 1400.0), ("micro", 900.0)):
        result = cluster_near_saturation(design, rate, args.seconds / 3)
        util = result.stats["host_utilisation"]["h0"]
        print(
            f"6-process {design:5} at {rate:g} submits/s (host CPU {util:.0%}): "
            f"{result.stats['jobs_per_wall_second']:,.0f} jobs/s, sim/wall {result.stats['sim_per_wall']:.2f}, "
            f"p99 submit {result.summary['latency_ms']['submit']['p99']:.2f} ms"
        )
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        cluster_near_saturation("mono", 1400.0, args.seconds / 6)
        profiler.disable()
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(25)
        print(out.getvalue())


if __name__ == "__main__":
    main()
