"""Peak memory of a long simulated run, records streamed to disk against records kept in memory.

    nice -n 19 .venv/bin/python -m lab.bench.memory [--jobs 1000000] [--baseline]

The run is lab.bench.simulator's 100-node what-if (Design B, 100 nodes x 12 slots, placeholder costs,
Poisson submits at 2000/s of 0.5 s jobs): `--jobs` submits. Each variant runs in a fresh child
process and reports its peak RSS (getrusage ru_maxrss): `streamed`, sim.run's default (records spill
to disk beyond 20,000 of a kind, sim/records.py), and with `--baseline` `in-memory` (chunk larger than
the run: every record held, as before records streamed). Both print the same summary digest (the
records do not change the run). Every minute the child's RSS is sampled with its progress (job records
spilled so far), so a long run shows how memory grows with jobs, and a run stopped early still leaves
measured points.

What grows with the run is what a real memory-store node keeps: every finished job, for result_ttl
(24 h) and up to max_retained_jobs (1,000,000) per node, as the API can still read it (sim/README.md,
"Memory"): a row of columns in the core (model/terminal.py), plus the simulator's per-job columns
(sim/idcolumns.py). The first line printed is the core's bytes per retained job (tracemalloc, one
JobTable in this process). A benchmark, not a test. Peak RSS does not depend on the CPU share, so it
needs no measurement lock: run it under nice, since a long CPU-bound run slows everyone else's.

Measured (data/bench/memory-2026-12-07.txt, its 2026-12-08 block): 1M submits peak at 350 MB (548
before that stop's changes), ~210 bytes of RSS a job over the run and ~31 MB in the end phase; 100k
submits at 129 MB (301 before).
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

import sim
import sim.records
from lab.bench.log import BenchLog
from lab.bench.simulator import WHATIF_RATE, whatif_params, whatif_workload
from model.config import CoreConfig
from model.ids import JobIdFactory
from model.job import JobSpec, RetryPolicy, Succeeded
from model.jobs import JobTable
from sim.params import parse_override

IN_MEMORY = 10**12  # a chunk no run reaches: nothing spills
SAMPLE_SECONDS = 60.0  # how often the child's RSS is sampled
CORE_JOBS = 20_000  # jobs of the in-process census of one JobTable


def child(jobs: int, chunk: int, overrides: dict[str, object], spill_dir: str | None) -> dict[str, object]:
    warnings.simplefilter("ignore", sim.PlaceholderWarning)
    workload = whatif_workload(jobs)
    started = time.perf_counter()
    params = whatif_params().with_overrides(overrides) if overrides else whatif_params()
    result = sim.run(sim.SimConfig("mono", workload, params), chunk=chunk, spill_dir=spill_dir)
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


def core_bytes_per_job(n: int, fresh_specs: bool) -> float:
    """Bytes one JobTable keeps per retained job (tracemalloc: what is allocated, not RSS), after
    `n` jobs through submit, lease and success with the default retention (all kept): each with
    a new spec and worker name, as a real node decodes them per request, or (`fresh_specs`
    False) one spec object for all, as the simulator submits them."""
    table = JobTable(CoreConfig(), JobIdFactory("n1", "1"))
    shared = JobSpec.make("sleep")

    def spec_of(i: int) -> JobSpec:
        if fresh_specs:  # new objects for every field, payload included
            return JobSpec("".join(["sl", "eep"]), b"x" * 64, 0, RetryPolicy(), 0.0, MappingProxyType({}))
        return shared

    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        run_finished_jobs(table, n, 1000.0, spec_of)
        gc.collect()
        return (tracemalloc.get_traced_memory()[0] - start) / n
    finally:
        tracemalloc.stop()


def run_finished_jobs(table: JobTable, n: int, now: float, spec_of: Callable[[int], JobSpec]) -> float:
    """`n` jobs through submit, lease and success, the i-th with `spec_of(i)` on worker n1/w<i % 12>
    (a new name string each time, as a real node decodes it), 0.5 ms apart from `now`; the timer
    handled every 1000 jobs and at the end, when every lease's entry is due. Returns the last submit
    time (tests/model/test_retained_jobs.py runs the same jobs)."""
    for i in range(n):
        now += 0.0005
        job = table.submit(now, spec_of(i)).job
        a = table.lease(now + 0.001, job.job_id, "".join(["n1/w", str(i % 12)]))
        table.complete(now + 0.5, job.job_id, a.attempt, a.worker_id, Succeeded(b""))
        if i % 1000 == 0:
            table.handle_timer(now)
    table.handle_timer(now + 60.0)  # every lease's timer entry due and gone
    return now


def rss_mb(pid: int) -> float | None:
    """A live process's resident set (Linux /proc), None where that cannot be read."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return None


def jobs_spilled(spill_dir: Path) -> int:
    """Job records the child has spilled so far: its progress, in whole chunks."""
    return len(list(spill_dir.glob("dtq-sim-jobs-*/chunk*.csv"))) * sim.records.CHUNK


Sample = tuple[float, int, float]  # (wall minutes, job records spilled so far, RSS MB)


def run_sampled(cmd: list[str], spill_dir: Path, every: float = SAMPLE_SECONDS) -> tuple[str, list[Sample]]:
    """Runs a child to its end, sampling its RSS every `every` wall seconds with its progress (job
    records spilled to `spill_dir`): how memory grows over a long run, and a measured trend to show
    if a run cannot finish. Returns its stdout and the samples. Each sample also goes to stderr."""
    samples: list[Sample] = []
    started = time.monotonic()
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as child_process:
        while True:
            try:
                out, _ = child_process.communicate(timeout=every)
                break
            except subprocess.TimeoutExpired:
                mb = rss_mb(child_process.pid)
                if mb is not None:
                    minutes = round((time.monotonic() - started) / 60, 1)
                    done = jobs_spilled(spill_dir)
                    samples.append((minutes, done, mb))
                    line = f"    ... {minutes:g} min, {done:,} jobs: RSS {mb:,.0f} MB"
                    print(line, file=sys.stderr, flush=True)
    if child_process.returncode:
        raise subprocess.CalledProcessError(child_process.returncode, cmd)
    return out, samples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.bench.memory", description=__doc__)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--baseline", action="store_true", help="also the run with every record in memory")
    parser.add_argument("--out", default="", help="also write the output to this file")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="overrides for every variant"
    )
    parser.add_argument("--child", choices=["streamed", "in-memory"], help=argparse.SUPPRESS)
    parser.add_argument("--spill-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        overrides = dict(parse_override(text) for text in args.set)
        chunk = IN_MEMORY if args.child == "in-memory" else sim.records.CHUNK
        print(json.dumps(child(args.jobs, chunk, overrides, args.spill_dir)))
        return 0
    say = (log := BenchLog("lab.bench.memory", sys.argv[1:])).say
    per_job = {fresh: core_bytes_per_job(CORE_JOBS, fresh) for fresh in (False, True)}
    say(
        f"core: {per_job[False]:.0f} bytes a retained job in one JobTable (the simulator's shared spec), "
        f"{per_job[True]:.0f} with a new spec and worker name per job (a real node); tracemalloc, "
        f"{CORE_JOBS:,} jobs"
    )
    what_if = f", overrides {' '.join(args.set)}" if args.set else ""
    say(f"100-node what-if (Design B, 100 x 12 slots), {args.jobs:,} submits at {WHATIF_RATE:g}/s{what_if}")
    found = {}
    for variant in ["streamed", *(["in-memory"] if args.baseline else [])]:
        cmd = [sys.executable, "-m", "lab.bench.memory", "--child", variant, "--jobs", str(args.jobs)]
        cmd += [f"--set={text}" for text in args.set]
        with tempfile.TemporaryDirectory(prefix="dtq-bench-memory-") as spill_dir:
            out, samples = run_sampled([*cmd, "--spill-dir", spill_dir], Path(spill_dir))
        found[variant] = row = json.loads(out.strip().splitlines()[-1])
        say(
            f"  {variant:<9}: peak RSS {row['peak_rss_mb']:,.0f} MB, wall {row['wall_s']:.0f} s, "
            f"{row['jobs']:,} jobs, {row['requests']:,} requests, spilled {row['spilled']}, "
            f"summary {row['summary_sha256']}, job p50 {row['completion_p50_ms']} ms"
        )
        if samples:
            say(
                "    RSS by wall minute (min, job records spilled, MB): "
                + ", ".join(f"{m:g} {done // 1000}k {mb:,.0f}" for m, done, mb in samples)
            )
    if args.baseline:
        ratio = found["streamed"]["peak_rss_mb"] / found["in-memory"]["peak_rss_mb"]
        same = found["streamed"]["summary_sha256"] == found["in-memory"]["summary_sha256"]
        say(f"  streamed / in-memory peak RSS = {ratio:.2f}; same summary: {'yes' if same else 'NO'}")
    log.write(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
