"""`dtq soak`: memory of every node process under a long open-loop load, with a short result TTL.

For each (design, store) it starts a local six-process cluster (realsys.cluster), offers `sleep` jobs
open-loop in three phases of equal length — at capacity, above it (x overload), at capacity again —
and samples VmRSS of every node process from /proc/<pid>/status once a second. It prints per node and
in total: RSS at start, middle and end, the maximum, and the least-squares slope per minute over the
second half of the run (after the first TTL has passed, when retention is deleting as fast as jobs end),
plus how the submits were answered (OK, RESOURCE_EXHAUSTED, ...). A benchmark that prints figures: it
asserts nothing. Capacity is total_slots / job_seconds (each job sleeps job_seconds).
Every loop is bounded: the run lasts `duration` seconds, and at most `max_in_flight` submits are
outstanding (an intended submit beyond that is counted as skipped, not queued in the generator).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.procfs import rss_mib
from model.errors import DtqError
from realsys import cluster
from realsys.cli_common import deprecated_alias, non_negative_float, positive_float, positive_int, progress
from realsys.client import DtqClient

SAMPLE_INTERVAL = 1.0
PROGRESS_EVERY = 30.0  # seconds between progress lines (the total RSS so far)


@dataclass
class SoakResult:
    design: str
    store: str
    duration: float
    offered: dict[str, float]  # phase -> jobs/s
    answers: Counter[str] = field(default_factory=Counter)  # status code name -> submits
    skipped: int = 0  # intended submits not sent: max_in_flight outstanding
    samples: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # node -> (t, RSS MiB)


def slope_per_minute(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (t, value), in value units per minute (0 with fewer than 2 points)."""
    n = len(points)
    if n < 2:
        return 0.0
    mean_t = sum(t for t, _ in points) / n
    mean_v = sum(v for _, v in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return 0.0
    cov = sum((t - mean_t) * (v - mean_v) for t, v in points)
    return 60.0 * cov / var


def phase_rate(elapsed: float, duration: float, rate: float, overload: float) -> tuple[str, float]:
    third = duration / 3
    if third <= elapsed < 2 * third:
        return "overload", rate * overload
    return "capacity", rate


async def _sample(result: SoakResult, pids: dict[str, int], start: float, stop: asyncio.Event) -> None:
    shown = 0.0
    while not stop.is_set():
        now = time.monotonic() - start
        total = 0.0
        for name, pid in pids.items():
            value = rss_mib(pid)
            if value is not None:
                result.samples.setdefault(name, []).append((now, value))
                total += value
        if now >= shown + PROGRESS_EVERY:
            shown = now
            progress(
                f"{result.design}/{result.store}: {now:.0f} of {result.duration:g} s, "
                f"RSS total {total:.0f} MiB"
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_INTERVAL)


async def _load(
    result: SoakResult,
    addresses: list[str],
    rate: float,
    overload: float,
    job_seconds: float,
    max_in_flight: int,
) -> None:
    payload = json.dumps({"seconds": job_seconds}).encode()
    in_flight: set[asyncio.Task[None]] = set()

    async def one(client: DtqClient) -> None:
        try:
            await client.submit("sleep", payload)
            result.answers["OK"] += 1
        except DtqError as exc:
            result.answers[exc.code.value] += 1

    async with DtqClient(addresses, timeout=10.0) as client:
        start = time.monotonic()
        intended = start
        while True:
            elapsed = intended - start
            if elapsed >= result.duration:
                break
            _, current = phase_rate(elapsed, result.duration, rate, overload)
            delay = intended - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= max_in_flight:
                result.skipped += 1
            else:
                task = asyncio.create_task(one(client))
                in_flight.add(task)
                task.add_done_callback(in_flight.discard)
            intended += 1.0 / current  # open loop: the schedule does not wait for answers
        if in_flight:
            await asyncio.wait(in_flight, timeout=15.0)


async def _soak_one(
    design: str,
    store: str,
    duration: float,
    rate: float,
    overload: float,
    job_seconds: float,
    overrides: dict[str, str],
    max_in_flight: int,
    directory: Path | None,
) -> SoakResult:
    result = SoakResult(design, store, duration, {"capacity": rate, "overload": rate * overload})
    with cluster.running(
        design,
        directory,
        store=store,
        overrides=overrides,
        timeout=60,
        grace=10,
        prefix=f"dtq-soak-{design}-{store}-",
    ) as info:
        pids = {node.name: node.pid for node in info.nodes}
        stop = asyncio.Event()
        start = time.monotonic()
        sampler = asyncio.create_task(_sample(result, pids, start, stop))
        await _load(result, info.clients, rate, overload, job_seconds, max_in_flight)
        stop.set()
        await sampler
    return result


def _at(points: list[tuple[float, float]], t: float) -> float:
    return min(points, key=lambda p: abs(p[0] - t))[1]


def report(result: SoakResult) -> str:
    lines = [
        f"== {result.design} / {result.store}: {result.duration:g}s; offered "
        f"{result.offered['capacity']:g} jobs/s, {result.offered['overload']:g} jobs/s in the middle third",
        "submits: "
        + ", ".join(f"{code} {n}" for code, n in sorted(result.answers.items()))
        + f"; skipped (generator at max in flight) {result.skipped}",
        f"{'node':<12}{'start':>9}{'middle':>9}{'end':>9}{'max':>9}{'slope/min (2nd half)':>23}  MiB",
    ]
    total: dict[float, float] = {}
    for name, points in sorted(result.samples.items()):
        end = points[-1][0]
        second_half = [p for p in points if p[0] >= end / 2]
        lines.append(
            f"{name:<12}{points[0][1]:>9.1f}{_at(points, end / 2):>9.1f}{points[-1][1]:>9.1f}"
            f"{max(v for _, v in points):>9.1f}{slope_per_minute(second_half):>+23.2f}"
        )
        for t, v in points:
            key = round(t)
            total[key] = total.get(key, 0.0) + v
    if total:
        series = sorted(total.items())
        end = series[-1][0]
        lines.append(
            f"{'TOTAL':<12}{series[0][1]:>9.1f}{_at(series, end / 2):>9.1f}{series[-1][1]:>9.1f}"
            f"{max(v for _, v in series):>9.1f}"
            f"{slope_per_minute([p for p in series if p[0] >= end / 2]):>+23.2f}"
        )
    return "\n".join(lines)


def add_parser(sub: Any) -> None:
    p = sub.add_parser("soak", help="RSS of every node under a long open-loop load with a short result TTL")
    p.add_argument("--design", action="append", choices=("micro", "mono"), help="default: both")
    p.add_argument("--store", action="append", choices=("memory", "sqlite"), help="default: both")
    p.add_argument("--duration", type=positive_float, default=180.0, help="seconds per (design, store)")
    p.add_argument(
        "--rate",
        type=non_negative_float,
        default=0.0,
        help="jobs/s at capacity (default: slots/job duration)",
    )
    p.add_argument(
        "--overload", type=positive_float, default=2.0, help="factor above capacity in the middle third"
    )
    p.add_argument(
        "--job-duration", type=positive_float, default=0.1, metavar="S", help="each job sleeps this long (s)"
    )
    deprecated_alias(p, "--job-seconds", "--job-duration", "job_duration", type=positive_float)
    p.add_argument(
        "--result-ttl", type=non_negative_float, default=10.0, help="DTQ_RESULT_TTL of the cluster"
    )
    p.add_argument("--max-pending", type=positive_int, default=500, help="DTQ_MAX_PENDING, per job owner")
    p.add_argument(
        "--max-in-flight", type=positive_int, default=256, help="outstanding submits of the generator"
    )
    p.add_argument(
        "--clusters-dir",
        default="",
        metavar="DIR",
        help="the clusters' directories go here (default: temporary)",
    )
    deprecated_alias(p, "--dir", "--clusters-dir", "clusters_dir")
    p.set_defaults(handler=soak_command)


def soak_command(args: argparse.Namespace) -> int:
    if args.overload < 1:
        raise ValueError("need --overload >= 1")
    rate = args.rate or cluster.DEFAULT_TOTAL_SLOTS / args.job_duration
    overrides = {"DTQ_RESULT_TTL": repr(args.result_ttl), "DTQ_MAX_PENDING": str(args.max_pending)}
    for design in args.design or ["micro", "mono"]:
        for store in args.store or ["memory", "sqlite"]:
            directory = Path(args.clusters_dir) / f"{design}-{store}" if args.clusters_dir else None
            progress(f"{design}/{store}: starting the cluster; then {args.duration:g} s of load")
            result = asyncio.run(
                _soak_one(
                    design,
                    store,
                    args.duration,
                    rate,
                    args.overload,
                    args.job_duration,
                    overrides,
                    args.max_in_flight,
                    directory,
                )
            )
            print(report(result), flush=True)
    return 0
