"""Peak memory of a long simulated run, records streamed to disk against records kept in memory.

    flock /tmp/dtq-measure.lock .venv/bin/python -m lab.bench.memory [--jobs 1000000] [--baseline]

The run is lab.bench.simulator's 100-node what-if (Design B, 100 nodes x 12 slots, placeholder costs,
Poisson submits at 2000/s of 0.5 s jobs): `--jobs` submits. Each variant runs in a fresh child
process and reports its peak RSS (getrusage ru_maxrss): `streamed`, sim.run's default (records spill
to disk beyond 100,000 of a kind, sim/records.py), and with `--baseline` `in-memory` (chunk larger than
the run: every record held, as before records streamed). Both print the same summary digest (the
records do not change the run). A benchmark, not a test: run it under the shared lock.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import time
import warnings

import sim
import sim.records
from lab.bench.log import BenchLog
from lab.bench.simulator import WHATIF_RATE, whatif_params, whatif_workload
from sim.params import parse_override

IN_MEMORY = 10**12  # a chunk no run reaches: nothing spills


def child(jobs: int, chunk: int, overrides: dict[str, object]) -> dict[str, object]:
    warnings.simplefilter("ignore", sim.PlaceholderWarning)
    workload = whatif_workload(jobs)
    started = time.perf_counter()
    params = whatif_params().with_overrides(overrides) if overrides else whatif_params()
    result = sim.run(sim.SimConfig("mono", workload, params), chunk=chunk)
    wall = time.perf_counter() - started
    digest = hashlib.sha256(json.dumps(result.summary, sort_keys=True).encode()).hexdigest()[:12]
    return {
        "jobs": len(result.jobs),
        "requests": len(result.requests),
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "spilled": bool(result.stats["records_spilled"]),
        "summary_sha256": digest,
        "completion_p50_ms": result.summary["completion_ms"]["p50"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.bench.memory", description=__doc__)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--baseline", action="store_true", help="also the run with every record in memory")
    parser.add_argument("--out", default="", help="also write the output to this file")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="overrides for every variant"
    )
    parser.add_argument("--child", choices=["streamed", "in-memory"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        overrides = dict(parse_override(text) for text in args.set)
        chunk = IN_MEMORY if args.child == "in-memory" else sim.records.CHUNK
        print(json.dumps(child(args.jobs, chunk, overrides)))
        return 0
    say = (log := BenchLog("lab.bench.memory", sys.argv[1:])).say
    what_if = f", overrides {' '.join(args.set)}" if args.set else ""
    say(f"100-node what-if (Design B, 100 x 12 slots), {args.jobs:,} submits at {WHATIF_RATE:g}/s{what_if}")
    found = {}
    for variant in ["streamed", *(["in-memory"] if args.baseline else [])]:
        cmd = [sys.executable, "-m", "lab.bench.memory", "--child", variant, "--jobs", str(args.jobs)]
        cmd += [f"--set={text}" for text in args.set]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        found[variant] = row = json.loads(out.strip().splitlines()[-1])
        say(
            f"  {variant:<9}: peak RSS {row['peak_rss_mb']:,.0f} MB, wall {row['wall_s']:.0f} s, "
            f"{row['jobs']:,} jobs, {row['requests']:,} requests, spilled {row['spilled']}, "
            f"summary {row['summary_sha256']}, job p50 {row['completion_p50_ms']} ms"
        )
    if args.baseline:
        ratio = found["streamed"]["peak_rss_mb"] / found["in-memory"]["peak_rss_mb"]
        same = found["streamed"]["summary_sha256"] == found["in-memory"]["summary_sha256"]
        say(f"  streamed / in-memory peak RSS = {ratio:.2f}; same summary: {'yes' if same else 'NO'}")
    log.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
