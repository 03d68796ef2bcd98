"""How fast sim.sweep runs a sweep of many points, and that every engine gives the same bytes.

    flock /tmp/dtq-measure.lock .venv/bin/python -m lab.bench.sweeps [--rounds 3] [--out data/bench/sweep.txt]

A grid of >= 200 points (design x offered rate x network.scale x service SubmitJob scale, one
replication each, short open-loop runs on the local calibration) is run once serially in this
process (the reference table), then in `--rounds` interleaved rounds on: a local process pool of 1
and of 2 workers, and a real Dask cluster (sim.local_cluster: `dask scheduler` + `dask worker`
processes on loopback) of 1 and of 2 workers. Each run's wall time gives points per minute; the
figures are medians over the rounds with their range, and the 2-worker/1-worker ratio per engine.
Every table is compared byte for byte (CSV text) with the serial one. Both clusters are started
before the rounds and warmed by a small sweep, so imports are not timed.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import sim
from lab.bench.log import BenchLog
from model.workload import workload_from_mapping
from sim.sweeps import DEFAULT_METRICS, plan, run_task, table

RATES = [50.0, 100.0, 150.0, 200.0, 250.0, 300.0, 350.0, 400.0, 450.0, 500.0]
NETWORK = [0.5, 1.0, 2.0, 4.0, 8.0]
SUBMIT = [1.0, 2.0]


def base_config(run_time: float) -> sim.SimConfig:
    workload = workload_from_mapping(
        {
            "arrival": {"kind": "open", "rate": 100.0, "max_in_flight": 512},
            "mix": {"submit": 0.6, "status": 0.2, "result": 0.2},
            "duration": {"kind": "exponential", "mean": 0.02},
            "run_time": run_time,
            "warmup": 0.1,
            "seed": 1,
        }
    )
    return sim.SimConfig("mono", workload, sim.load_params("local"))


def grid(points: int) -> list[dict[str, Any]]:
    """`points` points (at most 200) of design x rate x network.scale x SubmitJob scale; each design's
    own SubmitJob key (service.node for B, service.gateway for A)."""
    out = []
    for design in ("micro", "mono"):
        role = "node" if design == "mono" else "gateway"
        for rate in RATES:
            for net in NETWORK:
                for scale in SUBMIT:
                    out.append(
                        {
                            "design": design,
                            "workload.arrival.rate": rate,
                            "network.scale": net,
                            f"service.{role}.SubmitJob.scale": scale,
                        }
                    )
    return out[:points]


def pool_sweep(base: sim.SimConfig, points: list[dict[str, Any]], workers: int) -> Any:
    """sim.sweep's local pool with exactly `workers` processes (sim.sweep runs workers=1 in-process)."""
    planned, tasks = plan(base, points, 1)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        summaries = [json.loads(s) for s in pool.map(run_task, [t.text for t in tasks], chunksize=1)]
    return table(planned, tasks, summaries, DEFAULT_METRICS)


def timed(run: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = run()
    return time.perf_counter() - started, value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.bench.sweeps", description=__doc__)
    parser.add_argument("--points", type=int, default=200, help="grid points (<= 200)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median and range)")
    parser.add_argument("--run-time", type=float, default=0.5, help="simulated seconds per point")
    parser.add_argument("--out", default="", help="also write the output to this file")
    args = parser.parse_args(argv)
    if not 1 <= args.points <= 200 or args.rounds < 1:
        parser.error("need 1 <= --points <= 200 and --rounds >= 1")
    warnings.simplefilter("ignore", sim.PlaceholderWarning)
    say = (log := BenchLog("lab.bench.sweeps", argv or sys.argv[1:])).say
    base = base_config(args.run_time)
    points = grid(args.points)
    say(f"sweep: {len(points)} points x 1 replication, {args.run_time:g} simulated s each (+0.1 s warm-up)")
    serial_s, reference = timed(lambda: sim.sweep(base, points, 1, workers=1).to_csv(index=False))
    say(f"serial (this process): {len(points) / serial_s * 60:.1f} points/min ({serial_s:.1f} s)")
    times: dict[str, list[float]] = {}
    identical: dict[str, bool] = {}
    with contextlib.ExitStack() as stack:
        clusters = {n: stack.enter_context(sim.local_cluster(workers=n)) for n in (1, 2)}
        for address in clusters.values():  # warm the workers: imports and the calibration are not timed
            sim.sweep(base, points[:4], 1, address=address)
        engines: dict[str, Callable[[], Any]] = {
            "pool 1 worker": lambda: pool_sweep(base, points, 1),
            "pool 2 workers": lambda: pool_sweep(base, points, 2),
            "dask 1 worker": lambda: sim.sweep(base, points, 1, address=clusters[1]),
            "dask 2 workers": lambda: sim.sweep(base, points, 1, address=clusters[2]),
        }
        for r in range(args.rounds):
            for name, run in engines.items():
                seconds, df = timed(run)
                times.setdefault(name, []).append(seconds)
                identical[name] = identical.get(name, True) and df.to_csv(index=False) == reference
                per_min = len(points) / seconds * 60
                say(f"  round {r + 1} {name:<15} {per_min:7.1f} points/min ({seconds:.1f} s)")
    rate = {name: [len(points) / s * 60 for s in values] for name, values in times.items()}
    say(f"points per minute, median of {args.rounds} rounds [range]:")
    for name, values in rate.items():
        say(
            f"  {name:<15} {statistics.median(values):7.1f} [{min(values):.1f}, {max(values):.1f}]"
            f"   same bytes as serial: {'yes' if identical[name] else 'NO'}"
        )
    for engine in ("pool", "dask"):
        one = statistics.median(rate[f"{engine} 1 worker"])
        two = statistics.median(rate[f"{engine} 2 workers"])
        say(f"  {engine}: 2 workers / 1 worker = {two / one:.2f}x")
    say(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} cores")
    log.write(args.out)
    return 0 if all(identical.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
