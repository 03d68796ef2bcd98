"""A short probe of the host's speed (~1.5 s), taken around every calibration and at the start of
every real validation run, so that a simulated twin can be moved from the calibration's host to the
run's host (sim.params.HostScale).

Why: on a shared VM the same single-operation measurement drifts by up to ~2x within half an hour,
and not uniformly: a loop that never sleeps slows less than one that wakes from a sleep (the wake-up
after 10 ms of idle grew 2.3x between two calibrations 25 minutes apart, the busy echo 1.3x). So the
probe measures the bare gRPC echo (the same server as the calibration's, realsys/calibrate.py) in the
three regimes the simulator's costs come from:

- `busy_us`: server + client CPU per call with 16 calls in flight (the loops never sleep): scales
  every CPU cost of a busy loop (service times, client_call, commits, the generator's request cost);
- `wake_us`: server CPU per call one in flight back to back, less the busy server's: scales `wakeup`;
- `wake_gap_us`: the same after a PROBE_GAP sleep before each call: how the cold wake-up curve moved.

A pure-Python loop (`python_us`, process_time per iteration), the 1-minute load average and the
host's steal share during the probe are recorded beside it, not used.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import numpy as np

from realsys.calibrate import BUSY_IN_FLIGHT, echo_server, idle_rates, measure_busy, measure_calls, run_async

PROBE_BUSY_CALLS = 300  # per block; measure_busy runs BUSY_BLOCKS blocks
PROBE_CALLS = 300  # one in flight, back to back
PROBE_GAP = 0.01  # seconds slept before each call of the cold sample
PROBE_GAP_CALLS = 50
PYTHON_ITERATIONS = 2000
PYTHON_BLOCKS = 5


def _python_work(n: int) -> int:
    """A fixed mix of what the serving path does in Python: dicts, strings, JSON."""
    total = 0
    for i in range(n):
        record = {"job_id": f"job-{i:08d}", "state": "PENDING", "attempt": i % 3, "tags": [i, i + 1]}
        total += len(json.loads(json.dumps(record))["job_id"])
    return total


def python_us() -> float:
    """Median CPU microseconds per iteration of _python_work over PYTHON_BLOCKS blocks."""
    per_block = []
    for _ in range(PYTHON_BLOCKS):
        c0 = time.process_time()
        _python_work(PYTHON_ITERATIONS)
        per_block.append((time.process_time() - c0) / PYTHON_ITERATIONS)
    return float(np.median(per_block)) * 1e6


def _steal_ticks() -> tuple[int, int]:
    """(steal, total) jiffies of all CPUs from /proc/stat; (0, 0) where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    return (fields[7] if len(fields) > 7 else 0), sum(fields[:8])


async def _echo_probe() -> dict[str, float]:
    async with echo_server() as (call, pid):
        pids = {"server": pid}
        await measure_calls(call, {}, 30)  # warm-up
        idle = await idle_rates(pids, 0.1)
        busy = await measure_busy(call, pids, PROBE_BUSY_CALLS, BUSY_IN_FLIGHT)
        b2b = await measure_calls(call, pids, PROBE_CALLS, idle)
        cold = await measure_calls(call, pids, PROBE_GAP_CALLS, idle, gap=PROBE_GAP)
    busy_server = float(np.median(busy["server"]))
    return {
        "busy_us": (busy_server + float(np.median(busy["client"]))) * 1e6,
        "wake_us": max(float(np.median(b2b["server"])) - busy_server, 0.0) * 1e6,
        "wake_gap_us": max(float(np.median(cold["server"])) - busy_server, 0.0) * 1e6,
        "rtt_us": float(np.median(b2b["rtt"])) * 1e6,
    }


def probe() -> dict[str, Any]:
    """One probe: a JSON-able mapping (recorded in a run's config.json and in a calibration)."""
    t0 = time.perf_counter()
    steal0, total0 = _steal_ticks()
    out: dict[str, Any] = run_async(_echo_probe())
    out["python_us"] = python_us()
    steal1, total1 = _steal_ticks()
    out["steal_share"] = (steal1 - steal0) / (total1 - total0) if total1 > total0 else 0.0
    out["loadavg_1m"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    out["gap_s"] = PROBE_GAP
    out["seconds"] = time.perf_counter() - t0
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


CLUSTER_PROBES = 3  # per design, each time calibration_probes runs


def calibration_probes(store: str, slots: int = 12) -> dict[str, list[dict[str, Any]]]:
    """Probes as the validation's runs take them: with an idle cluster of each design up (12 slots,
    workers long-polling), so that a run's probe and the calibration's see the same neighbours;
    one bare probe beside them."""
    import tempfile
    from pathlib import Path

    from realsys import cluster

    out: dict[str, list[dict[str, Any]]] = {"bare": [probe()]}
    for design in ("mono", "micro"):
        with tempfile.TemporaryDirectory(prefix=f"dtq-probe-{design}-") as tmp:
            cluster.up(design, Path(tmp), slots, store)
            try:
                out[design] = [probe() for _ in range(CLUSTER_PROBES)]
            finally:
                cluster.down(Path(tmp))
    return out


def main() -> int:
    """`python -m realsys.hostprobe [N]`: N probes, one JSON line each."""
    for _ in range(int(sys.argv[1]) if len(sys.argv) > 1 else 1):
        print(json.dumps(probe(), sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
