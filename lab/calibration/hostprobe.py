"""A short probe of the host's speed (~1.5 s), taken around every calibration and at the start of
every real validation run, so that a simulated twin can be moved from the calibration's host to the
run's host (sim.hostscale.HostScale).

It measures the bare gRPC echo (the same server as the calibration's, lab/calibration/echo.py) in the
three regimes the simulator's costs come from (lab/README.md says why three):

- `busy_us`: server + client CPU per call with 16 calls in flight (the loops never sleep): scales
  every CPU cost of a busy loop (service times, client_call, commits, the generator's request cost);
- `wake_us`: server CPU per call one in flight back to back, less the busy server's: scales `wakeup`;
- `wake_gap_us`: the same after a PROBE_GAP sleep before each call: how the cold wake-up curve moved.

`scheduler_slice()` (`python -m lab.calibration.hostprobe --slice [--into CALIBRATION.json]`) measures a
different fact of the host: how long the kernel lets a process that never blocks keep a core while
others wait for one (the simulator's `cpu_slice`, for its fair-scheduler what-if), and how soon a
process waking from a short sleep gets a core from such spinners (the kernel's wake-up preemption).
One more spinning process than there are cores, each recording the gaps in its own clock
(descheduled): the runs between gaps are its slices; then a napping process beside one spinner per
core, recording how late it wakes.

A pure-Python loop (`python_us`, process_time per iteration), the 1-minute load average and the
host's steal share during the probe are recorded beside it, not used by the host scale.

`background()` measures what else the host runs (the simulator's `background_*` keys, issue 23):
/proc/stat's procs_running sampled every BACKGROUND_INTERVAL, less the sampler itself
(`runnable_mean`, `runnable_p90`: processes on or waiting for a core that are not this probe; with an
idle cluster up, as a validation run's probe is taken, that is nearly all background), and how late
the sampler wakes from each of those short sleeps (`wake_late_ms_p50/p90/p99`: the run-queue stall a
waking process meets). Part of every probe.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from lab.calibration.echo import echo_server
from lab.calibration.measure import BUSY_IN_FLIGHT, idle_rates, measure_busy, measure_calls, run_async
from lab.procfs import steal_ticks
from realsys import cluster

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


BACKGROUND_SAMPLES = 250
BACKGROUND_INTERVAL = 0.002  # seconds between samples (a sleep: the sampler does not hold a core)


def procs_running() -> int:
    """The host's runnable processes now (on a core or waiting for one), from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("procs_running"):
            return int(line.split()[1])
    raise OSError("no procs_running in /proc/stat")


def background(samples: int = BACKGROUND_SAMPLES, interval: float = BACKGROUND_INTERVAL) -> dict[str, float]:
    """The host's other runnable processes (procs_running less this sampler) and how late this
    sampler wakes from `interval` sleeps, over `samples` samples (~0.5 s)."""
    runnable: list[int] = []
    late: list[float] = []
    for _ in range(samples):
        runnable.append(max(procs_running() - 1, 0))
        t0 = time.perf_counter()
        time.sleep(interval)
        late.append(max(time.perf_counter() - t0 - interval, 0.0))
    counts = np.asarray(runnable, dtype=float)
    l50, l90, l99 = (float(x) * 1e3 for x in np.quantile(late, [0.5, 0.9, 0.99]))
    return {
        "runnable_mean": float(counts.mean()),
        "runnable_p90": float(np.quantile(counts, 0.9)),
        "wake_late_ms_p50": l50,
        "wake_late_ms_p90": l90,
        "wake_late_ms_p99": l99,
    }


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
    steal0, total0 = steal_ticks()
    bg = background()  # first: before the probe's own echo server starts
    out: dict[str, Any] = run_async(_echo_probe())
    out["python_us"] = python_us()
    out.update(bg)
    steal1, total1 = steal_ticks()
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
    out: dict[str, list[dict[str, Any]]] = {"bare": [probe()]}
    for design in ("mono", "micro"):
        with cluster.running(design, total_slots=slots, store=store, prefix=f"dtq-probe-{design}-"):
            out[design] = [probe() for _ in range(CLUSTER_PROBES)]
    return out


SLICE_SECONDS = 1.0  # each spinner's run
SLICE_GAP_NS = 30_000  # a clock step this long means the spinner was off its core
SLICE_REPEATS = 3
SLICE_NAP = 0.001  # the sleeper's nap: it wakes this often while every core spins


def _spin(seconds: float, queue: Any) -> None:
    clock = time.perf_counter_ns
    end = clock() + int(seconds * 1e9)
    last = start = clock()
    runs: list[int] = []
    while last < end:
        now = clock()
        if now - last > SLICE_GAP_NS:
            runs.append(last - start)
            start = now
        last = now
    queue.put(("spin", runs[1:]))  # the first run began before the others were spinning


def _nap(seconds: float, queue: Any) -> None:
    late: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        time.sleep(SLICE_NAP)
        late.append(time.perf_counter() - t0 - SLICE_NAP)
    queue.put(("nap", late))


def _processes(context: Any, targets: list[Any], seconds: float) -> list[tuple[str, list[Any]]]:
    """Starts one process per target(seconds, queue) and returns the (kind, values) each put."""
    queue = context.Queue()
    procs = [context.Process(target=t, args=(seconds, queue)) for t in targets]
    for proc in procs:
        proc.start()
    out = [queue.get(timeout=seconds + 30) for _ in procs]
    for proc in procs:
        proc.join()
    return out


def scheduler_slice(cores: int | None = None, seconds: float = SLICE_SECONDS) -> dict[str, Any]:
    """Run lengths (ms) of cores + 1 spinning processes, SLICE_REPEATS times: the median is how long
    the kernel leaves a runnable process on a core while another waits (its slice, rounded up to the
    scheduler tick). Then one process napping SLICE_NAP beside `cores` spinners: how late it wakes
    (ms), i.e. whether a waking process takes a core from a spinner at once or waits for a tick."""
    cores = cores or os.cpu_count() or 1
    context = multiprocessing.get_context("spawn")  # no forked copy of a caller's threads
    runs: list[int] = []
    for _ in range(SLICE_REPEATS):
        for _kind, spinner_runs in _processes(context, [_spin] * (cores + 1), seconds):
            runs.extend(spinner_runs)
    if not runs:
        raise RuntimeError("no spinner was ever descheduled: cannot measure the scheduler's slice")
    late = [
        x
        for kind, values in _processes(context, [_nap] + [_spin] * cores, seconds)
        if kind == "nap"
        for x in values
    ]
    ms = np.asarray(runs, dtype=float) / 1e6
    q10, q50, q90 = (round(float(x), 3) for x in np.quantile(ms, [0.1, 0.5, 0.9]))
    w50, w90, w99 = (round(float(x) * 1e3, 3) for x in np.quantile(late, [0.5, 0.9, 0.99]))
    return {
        "processes": cores + 1,
        "cores": cores,
        "runs": len(runs),
        "run_ms_p10": q10,
        "run_ms_p50": q50,
        "run_ms_p90": q90,
        "wake_late_ms_p50": w50,
        "wake_late_ms_p90": w90,
        "wake_late_ms_p99": w99,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def add_slice(path: Path, measured: dict[str, Any]) -> None:
    """Records a scheduler_slice() result in a calibration file as measurements.scheduler_slice (with
    when it was measured; sim.params.load_scheduler_slice reads it). Its parameters stay as they are."""
    doc = json.loads(path.read_text())
    doc.setdefault("measurements", {})["scheduler_slice"] = measured
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def main(argv: list[str] | None = None) -> int:
    """`python -m lab.calibration.hostprobe [N]`: N probes, one JSON line each; `--slice`: the scheduler's
    slice instead (`--into FILE ...`: also recorded in these calibration files)."""
    parser = argparse.ArgumentParser(prog="python -m lab.calibration.hostprobe", description=main.__doc__)
    parser.add_argument("probes", nargs="?", type=int, default=1)
    parser.add_argument("--slice", action="store_true", help="measure the scheduler's slice")
    parser.add_argument("--into", nargs="*", type=Path, default=[], help="calibration files to update")
    args = parser.parse_args(argv)
    if args.into and not args.slice:
        parser.error("--into needs --slice")
    if args.slice:
        measured = scheduler_slice()
        for path in args.into:
            add_slice(path, measured)
        print(json.dumps(measured, sort_keys=True), flush=True)
        return 0
    for _ in range(args.probes):
        print(json.dumps(probe(), sort_keys=True), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
