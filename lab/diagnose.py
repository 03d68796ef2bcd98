"""`python -m lab.diagnose DESIGN RATE [--mix submit|mixed] [--seconds S]`: where a real run's time
goes beyond the CPU the simulator charges. One open-loop point (no-op jobs) on a fresh local cluster,
and per request, summed over every thread of every node process:

- CPU (/proc/<pid>/task/*/schedstat field 1): compare with the simulator's utilisation x time / requests;
- run-queue wait (field 2: runnable, not running): the OS scheduler's share, which the simulator models
  as a FIFO queue for the host's cores per CPU burst;
- the cyclic garbage collector's pauses by generation (each node's dtq_gc_pause_seconds histogram);
  `--gc freeze|off` runs the nodes with DTQ_GC set so, to see what the pauses cost end to end;
- `--age N` first submits about N no-op jobs (a Poisson trace at AGE_RATE/s, not measured), so the
  point runs on a cluster that holds as many finished jobs as one that served earlier runs (the
  validation reuses a cluster per cell): the heap the collector walks grows with them.
- `--workload FILE` runs that workload (a closed loop, say) instead of the open-loop point; `--probe`
  probes the host first, and `--calibration` then moves the simulated twin to that speed. CPU is also
  split by node process and given for the load generator, real and simulated.

A diagnostic for the validation's large errors (REPORT.md "Simulator against the real system"), not
part of any measured table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

import sim
from lab.calibration.hostprobe import probe as host_probe
from lab.procfs import cpu_and_wait, per_thread_times
from model.results.runs import load_workload
from model.workload import WorkloadSpec, workload_from_mapping
from realsys import cluster, loadgen
from realsys.cli import main as cli_main
from realsys.cli_common import progress
from realsys.targets import dtq_target_spec
from sim.hostscale import HostScale
from sim.params import load_host_probe, load_params

AGE_RATE = 200.0  # submits/s while ageing a cluster: below either design's no-op saturation
MIXES = {"submit": {"submit": 1.0}, "mixed": {"submit": 0.5, "status": 0.25, "result": 0.25}}


def gc_pauses(metrics_text: str) -> dict[str, dict[str, float]]:
    """Per generation: collections, total pause ms, and collections over 1 ms and over 5 ms, from a
    node's Prometheus text (its dtq_gc_pause_seconds histogram)."""
    counts: dict[str, float] = {}
    sums: dict[str, float] = {}
    buckets: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            gen = sample.labels.get("generation", "")
            if sample.name == "dtq_gc_pause_seconds_count":
                counts[gen] = sample.value
            elif sample.name == "dtq_gc_pause_seconds_sum":
                sums[gen] = sample.value
            elif sample.name == "dtq_gc_pause_seconds_bucket":
                buckets[(gen, sample.labels["le"])] = sample.value
    return {
        gen: {
            "collections": n,
            "pause_ms": round(sums[gen] * 1e3, 2),
            "over_1ms": n - buckets.get((gen, "0.001"), n),
            "over_5ms": n - buckets.get((gen, "0.005"), n),
        }
        for gen, n in sorted(counts.items())
        if gen in sums
    }


def gc_share(line: Mapping[str, Any]) -> dict[str, float]:
    """What the cyclic collector took in one diagnose line (its `gc_during_run`): pause ms per request,
    its share of the nodes' CPU, full (generation 2) collections and their pause ms per request, and
    the share of the run's wall time some node spent in a full collection."""
    gens: dict[str, list[float]] = {}
    for per_node in line["gc_during_run"].values():
        for gen, v in per_node.items():
            row = gens.setdefault(gen, [0.0, 0.0])
            row[0] += v["collections"]
            row[1] += v["pause_ms"]
    n = max(int(line["requests"]), 1)
    pause = sum(row[1] for row in gens.values())
    full = gens.get("2", [0.0, 0.0])
    # older lines have no wall_s: their open-loop runs lasted about requests / rate
    seconds = float(line.get("wall_s") or n / max(float(line.get("rate") or 1.0), 1e-9))
    return {
        "pause_ms_per_request": pause / n,
        "share_of_cpu": pause / (n * float(line["cpu_ms_per_request"])),
        "full_collections": full[0],
        "full_pause_ms_per_request": full[1] / n,
        "full_share_of_time": full[1] / (1e3 * seconds),
    }


def point_workload(rate: float, mix: str, seconds: float, seed: int = 11) -> Any:
    """The open-loop no-op point both sides run (model.workload.WorkloadSpec)."""
    return workload_from_mapping(
        {
            "arrival": {"kind": "open", "rate": rate, "max_in_flight": 1024},
            "mix": MIXES[mix],
            "job_type": "sleep",
            "duration": {"kind": "constant", "mean": 0},
            "run_time": seconds,
            "warmup": 0,
            "seed": seed,
        }
    )


def diagnose(
    design: str,
    rate: float,
    mix: str,
    seconds: float,
    store: str = "sqlite",
    gc_mode: str = "default",
    age: int = 0,
    workload: WorkloadSpec | None = None,
    probe: bool = False,
) -> dict[str, Any]:
    """One real run (the open-loop point, or `workload`) on a fresh cluster; `probe`: the host's speed
    first (lab.calibration.hostprobe), for its simulated twin."""
    workload = workload or point_workload(rate, mix, seconds)
    host = host_probe() if probe else None
    progress(f"starting a {design} cluster")
    with cluster.running(
        design, total_slots=12, store=store, overrides={"DTQ_GC": gc_mode}, prefix=f"dtq-diagnose-{design}-"
    ) as info:
        pids = [n.pid for n in info.nodes]
        aged = 0
        if age > 0:
            progress(f"ageing the cluster: about {age} jobs at {AGE_RATE:g}/s")
            ageing = point_workload(AGE_RATE, "submit", age / AGE_RATE, seed=12)
            spec = dtq_target_spec(info.clients, design=design)
            aged = len(loadgen.run(spec, ageing, 1, drain_timeout=30).jobs)
        gc_before = _scrape_gc(info.directory)
        cpu0, wait0 = cpu_and_wait(pids)
        wall0 = time.perf_counter()
        threads0 = {node.name: _threads(node.pid) for node in info.nodes}
        progress(f"measuring {workload.total_time:g} s of load")
        per_node0 = {n.name: cpu_and_wait([n.pid])[0] for n in info.nodes}
        result = loadgen.run(dtq_target_spec(info.clients, design=design), workload, 1, drain_timeout=5)
        cpu1, wait1 = cpu_and_wait(pids)
        wall = time.perf_counter() - wall0
        per_node = {n.name: cpu_and_wait([n.pid])[0] - per_node0[n.name] for n in info.nodes}
        threads = {n.name: _thread_split(threads0[n.name], _threads(n.pid)) for n in info.nodes}
        gc_after = _scrape_gc(info.directory)
    summary = loadgen.summary_of(result, workload, run_id="diagnose", kind="real", design=design)
    n = max(len(result.requests), 1)
    gc = {
        node: {
            gen: {k: round(v - gc_before.get(node, {}).get(gen, {}).get(k, 0.0), 2) for k, v in stats.items()}
            for gen, stats in gens.items()
        }
        for node, gens in gc_after.items()
    }
    out = {
        "design": design,
        "rate": rate,
        "mix": mix,
        "gc_mode": gc_mode,
        "aged_jobs": aged,
        "requests": len(result.requests),
        "wall_s": wall,  # the measured span: load, then the drain
        "p50_ms": summary["latency_ms"]["all"]["p50"],
        "p99_ms": summary["latency_ms"]["all"]["p99"],
        "served_per_s": summary["throughput"]["requests_per_s"],
        "latency_ms": summary["latency_ms"],  # by kind of request: p50 ... p99.9
        "completion_ms": summary["completion_ms"],
        "cpu_ms_per_request": 1e3 * (cpu1 - cpu0) / n,
        "cpu_ms_per_request_by_node": {k: round(1e3 * v / n, 4) for k, v in per_node.items()},
        "loadgen_cpu_ms_per_request": 1e3 * result.stats.cpu_time / n,
        "runqueue_wait_ms_per_request": 1e3 * (wait1 - wait0) / n,
        "gc_during_run": gc,
        "threads_during_run": threads,
    }
    if host is not None:
        out["host_probe"] = host
    return out


def _threads(pid: int) -> dict[str, tuple[str, float, float]]:
    try:
        return per_thread_times(pid)
    except OSError:
        return {}


def _thread_split(
    before: dict[str, tuple[str, float, float]], after: dict[str, tuple[str, float, float]]
) -> dict[str, Any]:
    """How a node's CPU during the run split over its threads: how many ran, and the busiest one's
    name and share (the simulator gives each process one loop, hence one share of the cores)."""
    used = {tid: (name, cpu - before.get(tid, (name, 0.0, 0.0))[1]) for tid, (name, cpu, _) in after.items()}
    busy = {tid: v for tid, v in used.items() if v[1] > 0}
    total = sum(cpu for _, cpu in busy.values())
    if not busy or total <= 0:
        return {"threads_busy": 0, "busiest": "", "busiest_share": 0.0}
    name, cpu = max(busy.values(), key=lambda v: v[1])
    return {"threads_busy": len(busy), "busiest": name, "busiest_share": round(cpu / total, 3)}


def simulated(
    design: str,
    rate: float,
    mix: str,
    seconds: float,
    calibration: str,
    store: str,
    overrides: Mapping[str, Any] | None = None,
    workload: WorkloadSpec | None = None,
    host: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The same point (or `workload`) in the simulator from `calibration` (and `overrides`, sim.params
    dotted keys), moved to the speed a `host` probe measured: latency, and node CPU and run-queue wait
    (time with work but no core) per request."""
    workload = workload or point_workload(rate, mix, seconds)
    params = load_params(calibration).with_overrides({"slots": 12, "store": store, **(overrides or {})})
    reference = load_host_probe(calibration, design) if host else None
    if host and reference:
        params = params.on_host(HostScale.between(host, reference))
    result = sim.run(sim.SimConfig(design, workload, params))  # type: ignore[arg-type]
    used = {
        n: u for n, u in result.stats["utilisation"].items() if not n.startswith(("loadgen", "checkpoint"))
    }
    busy = sum(used.values())
    loops = sum(u for n, u in used.items() if not n.endswith(("-grpc", "-checkpoint")))
    waited = sum(w for name, w in result.stats["core_wait"].items() if not name.startswith("loadgen"))
    n = max(len(result.requests), 1)
    seconds_run = float(result.stats["sim_seconds"])
    by_node: dict[str, float] = {}
    for name, u in used.items():
        node = name.split("-")[0]
        by_node[node] = by_node.get(node, 0.0) + 1e3 * u * seconds_run / n
    loadgen_cpu = sum(u for name, u in result.stats["utilisation"].items() if name.startswith("loadgen"))
    return {
        "calibration": calibration,
        "cpu_slice": params.cpu_slice,
        "p50_ms": result.summary["latency_ms"]["all"]["p50"],
        "p99_ms": result.summary["latency_ms"]["all"]["p99"],
        "served_per_s": result.summary["throughput"]["requests_per_s"],
        "latency_ms": result.summary["latency_ms"],
        "completion_ms": result.summary["completion_ms"],
        "cpu_ms_per_request": 1e3 * busy * seconds_run / n,
        "cpu_ms_per_request_by_node": {k: round(v, 4) for k, v in sorted(by_node.items())},
        "loadgen_cpu_ms_per_request": 1e3 * loadgen_cpu * seconds_run / n,
        "runqueue_wait_ms_per_request": 1e3 * waited / n,
        # the nodes' loops' share of their CPU (the real side: threads_during_run's busiest share)
        "loop_share": loops / busy if busy > 0 else 1.0,
    }


def _scrape_gc(directory: Path) -> dict[str, dict[str, dict[str, float]]]:
    out = {}
    for path in sorted(directory.glob("*/*.metrics")):
        port = int(path.read_text().strip())
        if port <= 0:
            continue
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            out[path.stem] = gc_pauses(response.read().decode())
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("design", choices=["micro", "mono"], help="A (micro) or B (mono)")
    parser.add_argument("rate", type=float, nargs="?", default=0.0, help="open-loop requests/s")
    parser.add_argument("--workload", default="", help="a workload file to run, not the open-loop point")
    parser.add_argument("--probe", action="store_true", help="probe the host first; its twin is moved to it")
    parser.add_argument("--mix", choices=sorted(MIXES), default="submit", help="the requests' kinds")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds (at most 120)")
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite", help="where jobs are kept")
    parser.add_argument(
        "--gc", choices=["default", "freeze", "off"], default="default", help="the nodes' DTQ_GC"
    )
    parser.add_argument(
        "--age", type=int, default=0, help="about this many no-op jobs submitted first, not measured"
    )
    parser.add_argument("--calibration", help="also simulate the point from this calibration (name or path)")


def diagnose_command(args: argparse.Namespace) -> int:
    workload = load_workload(args.workload) if args.workload else None
    if not ((args.rate > 0 or workload) and 0 < args.seconds <= 120 and 0 <= args.age <= 100_000):
        raise ValueError("need rate > 0 (or --workload), 0 < seconds <= 120 and 0 <= age <= 100000")
    out = diagnose(
        args.design, args.rate, args.mix, args.seconds, args.store, args.gc, args.age, workload, args.probe
    )
    if args.calibration:
        out["sim"] = simulated(
            args.design,
            args.rate,
            args.mix,
            args.seconds,
            args.calibration,
            args.store,
            workload=workload,
            host=out.get("host_probe"),
        )
    print(json.dumps(out, sort_keys=True))
    return 0


def add_parser(sub: Any) -> None:
    """`dtq diagnose` (sub is the dtq command's subparsers object)."""
    p = sub.add_parser("diagnose", help="one real point: CPU, run-queue wait and GC pauses per request")
    add_arguments(p)
    p.set_defaults(handler=diagnose_command)


if __name__ == "__main__":  # python -m lab.diagnose ARGS = dtq diagnose ARGS
    cli_main(["diagnose", *sys.argv[1:]])
