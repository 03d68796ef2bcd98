"""How the calibration measures one operation: calls one at a time (or many in flight) with the
CPU of every process of interest read around each (lab/procfs.py), minus its idle rate; and the
samples kept (<= MAX_SAMPLES evenly spaced quantiles) with their summary.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from lab.procfs import main_thread_cpu, process_cpu
from model.results.stats import lognormal_fit
from realsys.eventloop import loop_factory

MAX_SAMPLES = 200
T = TypeVar("T")


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Runs the calibrator's client side on the event loop the load generator uses (uvloop when
    installed): client-side costs are then the generator's."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(coro)


def summarize_samples(samples: Sequence[float]) -> dict[str, Any]:
    """Quantiles and a lognormal fit (mean-parameterised as sim.dist.Dist) with its KS statistic."""
    arr = np.asarray(samples, dtype=np.float64)
    out: dict[str, Any] = {"n": len(arr)}
    if not len(arr):
        return out
    out.update(
        mean=float(arr.mean()),
        p05=float(np.quantile(arr, 0.05)),
        p50=float(np.median(arr)),
        p95=float(np.quantile(arr, 0.95)),
        p99=float(np.quantile(arr, 0.99)),
    )
    fit = lognormal_fit(arr)
    if fit is not None:
        out["lognormal"] = {"mean": fit.mean, "sigma": fit.sigma, "ks": fit.ks}
    return out


def to_dist(samples: Sequence[float]) -> dict[str, Any]:
    """An empirical sim.dist.Dist mapping of at most MAX_SAMPLES evenly spaced quantiles."""
    arr = np.clip(np.asarray(samples, dtype=np.float64), 0.0, None)
    if len(arr) > MAX_SAMPLES:
        arr = np.quantile(arr, (np.arange(MAX_SAMPLES) + 0.5) / MAX_SAMPLES)
    return {"kind": "empirical", "samples": [float(f"{x:.4g}") for x in np.sort(arr)]}


async def measure_calls(
    call: Callable[[int], Awaitable[object]],
    pids: Mapping[str, int],
    count: int,
    idle_rate: Mapping[str, float] | None = None,
    gap: float = 0.0,
) -> dict[str, list[float]]:
    """Runs `call(i)` `count` times, one in flight, `gap` seconds of sleep before each. Per call:
    "rtt", "client" (this process's CPU in the call), "gap" (the time since the previous call ended:
    how long the server slept) and, per name in `pids`, that process's CPU delta minus idle_rate x the
    call's wall time (the sleep before it is not charged)."""
    out: dict[str, list[float]] = {"rtt": [], "client": [], "gap": [], **{n: [] for n in pids}}
    idle = idle_rate or {}
    before = {n: process_cpu(p) for n, p in pids.items()}
    ended = time.perf_counter()
    for i in range(count):
        if gap:
            await asyncio.sleep(gap)
            before = {n: process_cpu(p) for n, p in pids.items()}
        w0, c0 = time.perf_counter(), time.process_time()
        out["gap"].append(w0 - ended)
        await call(i)
        c1, w1 = time.process_time(), time.perf_counter()
        after = {n: process_cpu(p) for n, p in pids.items()}
        out["rtt"].append(w1 - w0)
        out["client"].append(c1 - c0)
        for n in pids:
            out[n].append(max(after[n] - before[n] - idle.get(n, 0.0) * (w1 - w0), 0.0))
        before = after
        ended = w1  # the servers sleep from the answer on, through this bookkeeping
    return out


BUSY_IN_FLIGHT = 16  # calls kept in flight to measure a loop that never sleeps
IDLE_GAPS = (0.001, 0.003, 0.01, 0.03, 0.1, 0.3)  # sleeps before a call: how waking cost grows
IDLE_SWEEP_SECONDS = 12.0  # at most this long sleeping over the whole sweep (fewer calls at long gaps)
BUSY_BLOCKS = 10


async def measure_busy(
    call: Callable[[int], Awaitable[object]], pids: Mapping[str, int], count: int, in_flight: int
) -> dict[str, list[float]]:
    """CPU per call with `in_flight` calls outstanding at all times (the loops never go idle), in
    BUSY_BLOCKS blocks of `count` calls: per block, "client" (this process) and each pid's CPU / calls,
    and the same of their main threads, the event loops ("client_loop", "<name>_loop"): the rest is
    gRPC's own threads (its poller and event engine)."""
    out: dict[str, list[float]] = {"client": [], "client_loop": [], **{n: [] for n in pids}}
    out.update({f"{n}_loop": [] for n in pids})
    for _ in range(BUSY_BLOCKS):
        next_index = 0

        async def lane() -> None:
            nonlocal next_index
            while next_index < count:
                i = next_index
                next_index += 1
                await call(i)

        before = {n: process_cpu(p) for n, p in pids.items()}
        loops = {n: main_thread_cpu(p) for n, p in pids.items()}
        c0, t0 = time.process_time(), time.thread_time()  # this loop runs in the main thread
        await asyncio.gather(*(lane() for _ in range(in_flight)))
        out["client_loop"].append((time.thread_time() - t0) / count)
        out["client"].append((time.process_time() - c0) / count)
        for n, p in pids.items():
            out[f"{n}_loop"].append((main_thread_cpu(p) - loops[n]) / count)
            out[n].append((process_cpu(p) - before[n]) / count)
    return out


async def idle_rates(pids: Mapping[str, int], seconds: float) -> dict[str, float]:
    c0 = {n: process_cpu(p) for n, p in pids.items()}
    t0 = time.perf_counter()
    await asyncio.sleep(seconds)
    dt = time.perf_counter() - t0
    return {n: (process_cpu(p) - c0[n]) / dt for n, p in pids.items()}
