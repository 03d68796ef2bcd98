"""Stall witnesses beside a load run: was the client, its process or the host late when the tail happened?

`dtq load` measures each request on the load generator's own event loop, so a stall of that loop,
of its process (a GC pause holds the GIL) or of the whole host lengthens the measured latency as much
as a slow server does. This runs the same load (realsys.loadgen.run_load, one process) against a
cluster with three witnesses on the run's clock (time.perf_counter - the run's t0; CLOCK_MONOTONIC, one
clock for every process on the host):

* `loop`: a task on the load generator's loop sleeping 2 ms; an event when it wakes >= 5 ms late
  (the loop did not run: busy, or the process stopped);
* `thread`: a thread of the same process doing the same (it needs the GIL to see the time: late with
  the loop = the process stopped or a GC pause held the GIL; the loop alone late = the loop was busy);
* `gc`: the load generator's own collector pauses (gc.callbacks), with their generation;
* `host`: a separate process doing the same (late = the host did not run it: CPU oversubscribed);
* `sched`: every 20 ms, for each cluster process and the load generator, from /proc/PID/task/*/
  schedstat, by thread kind (`NAME` its main thread, the event loop; `NAME/event_engine` gRPC's
  EventEngine I/O threads; `NAME/grpc` gRPC's others; `NAME/py` Python threads), summed: the ns
  they have run on a CPU and waited runnable in a run queue, and their timeslices (cumulative).

The run is written like `dtq load`'s (config.json's parameters say `witness: true`), the events
into RUN/witness.json; `python -m lab.validation.tails RUN SPANS --witness` then says which witness
was late over each tail episode.

    python -m lab.validation.stalls --dir CLUSTER --workload W --run-id ID
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from model.results.probe import take_probe
from model.results.runs import load_workload, provenance, utc_now
from realsys.eventloop import loop_factory
from realsys.loadgen import design_parameters, run_load, write_load_run
from realsys.targets import dtq_target_spec, make_target

PERIOD = 0.002  # s: each witness sleeps this long
LATE = 0.005  # s: a wake this late (past the period) is an event
WITNESS_FILE = "witness.json"
SCHED_PERIOD = 0.02  # s: the schedstat sampler's period
LEAD = 0.2  # s: the witnesses start this long before the run's t0

# the host witness: a separate interpreter; prints "start lateness" lines until its stdin closes
_HOST_SCRIPT = """
import sys, threading, time
stop = threading.Event()
threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
P, L = {period}, {late}
while not stop.is_set():
    t = time.perf_counter(); time.sleep(P); late = time.perf_counter() - t - P
    if late >= L:
        print(f"{{t!r}} {{late!r}}", flush=True)
"""


def thread_kind(main: bool, comm: str) -> str:
    """A process's thread by what it does: its event loop's (`main`), gRPC's EventEngine I/O
    threads (`event_engine`), gRPC's other threads (`grpc`), or other Python threads (`py`)."""
    if main:
        return "main"
    if comm.startswith("event_engine"):
        return "event_engine"
    if comm.startswith(("python", "Thread")):
        return "py"
    return "grpc"


class Witnesses:
    """The loop, thread and GC witnesses of this process, and the host witness process."""

    def __init__(self, pids: Mapping[str, int] | None = None) -> None:
        self.events: dict[str, list[tuple[float, float]]] = {"loop": [], "thread": [], "gc": [], "host": []}
        self.pids = {"loadgen": os.getpid(), **(pids or {})}
        self.sched: dict[str, list[tuple[float, int, int, int]]] = {name: [] for name in self.pids}
        self._sched_thread = threading.Thread(target=self._sched_sampler, daemon=True)
        self.gc_generation: list[int] = []
        self._stop = threading.Event()
        self._gc_start = 0.0
        self._thread = threading.Thread(target=self._thread_witness, daemon=True)
        self._host: subprocess.Popen[str] | None = None

    def _thread_witness(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            time.sleep(PERIOD)
            late = time.perf_counter() - t - PERIOD
            if late >= LATE:
                self.events["thread"].append((t, late))

    def _sched_sampler(self) -> None:
        while not self._stop.wait(SCHED_PERIOD):
            t = time.perf_counter()
            for name, pid in self.pids.items():
                sums: dict[str, list[int]] = {}  # kind -> [run ns, wait ns, timeslices]
                try:
                    tids = os.listdir(f"/proc/{pid}/task")
                except OSError:  # gone
                    continue
                for tid in tids:
                    try:
                        with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as fh:
                            run_ns, wait_ns, slices = fh.read().split()
                        with open(f"/proc/{pid}/task/{tid}/comm", encoding="ascii") as fh:
                            comm = fh.read().strip()
                    except (OSError, ValueError):  # a thread that ended, or no schedstat
                        continue
                    kind = thread_kind(int(tid) == pid, comm)
                    acc = sums.setdefault(kind, [0, 0, 0])
                    acc[0] += int(run_ns)
                    acc[1] += int(wait_ns)
                    acc[2] += int(slices)
                for kind, (run, wait, n) in sums.items():
                    key = name if kind == "main" else f"{name}/{kind}"
                    self.sched.setdefault(key, []).append((t, run, wait, n))

    async def loop_witness(self) -> None:
        while not self._stop.is_set():
            t = time.perf_counter()
            await asyncio.sleep(PERIOD)
            late = time.perf_counter() - t - PERIOD
            if late >= LATE:
                self.events["loop"].append((t, late))

    def _gc(self, phase: str, info: Mapping[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
        else:
            self.events["gc"].append((self._gc_start, time.perf_counter() - self._gc_start))
            self.gc_generation.append(int(info.get("generation", -1)))

    def start(self) -> None:
        script = _HOST_SCRIPT.format(period=PERIOD, late=LATE)
        self._host = subprocess.Popen(
            [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self._thread.start()
        self._sched_thread.start()
        gc.callbacks.append(self._gc)

    def halt(self) -> None:
        """Ends the witness loops (the event loop's and the threads'); stop() then collects them."""
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()
        gc.callbacks.remove(self._gc)
        self._thread.join(timeout=1.0)
        self._sched_thread.join(timeout=1.0)
        if self._host is not None:
            out, _ = self._host.communicate(input="", timeout=10)
            pairs = out.split()
            self.events["host"] = [(float(a), float(b)) for a, b in zip(pairs[::2], pairs[1::2], strict=True)]

    def relative(self, t0: float) -> dict[str, Any]:
        """The events as (start s from t0, lateness ms), and GC generations."""
        out: dict[str, Any] = {
            k: [[round(t - t0, 6), round(late * 1e3, 3)] for t, late in v] for k, v in self.events.items()
        }
        out["gc_generation"] = self.gc_generation
        out["t0_monotonic"] = t0  # the run's t0 on CLOCK_MONOTONIC, to align outside traces (perf -k mono)
        out["sched"] = {
            name: [[round(t - t0, 6), run, wait, n] for t, run, wait, n in rows]
            for name, rows in self.sched.items()
        }
        return out


async def _run(target_spec: Mapping[str, Any], spec: Any, drain: float, w: Witnesses) -> tuple[Any, float]:
    target = make_target(target_spec)
    t0_box: list[float] = []

    async def ready() -> float:
        t0_box.append(time.perf_counter() + LEAD)
        return t0_box[0]

    task = asyncio.create_task(w.loop_witness())
    try:
        result = await run_load(target, spec, ready=ready, drain_timeout=drain)
    finally:
        w.halt()
        await task
        await target.close()
    return result, t0_box[0]


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lab.validation.stalls", description=__doc__.split("\n")[0])
    ap.add_argument("--dir", required=True, help="a cluster directory (dtq cluster up)")
    ap.add_argument("--workload", required=True)
    ap.add_argument("--run-id", required=True)
    ap.add_argument("--runs-dir", default="data/runs")
    ap.add_argument("--drain", type=float, default=5.0)
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args(argv)
    if (Path(args.runs_dir) / args.run_id).exists():
        print(f"stalls: run {args.run_id} exists in {args.runs_dir}", file=sys.stderr)
        return 2
    spec = load_workload(args.workload)
    design, addresses, parameters = design_parameters(Path(args.dir))
    parameters = {**parameters, "processes": 1, "timeout": args.timeout, "witness": True}
    parameters["host_probe"] = take_probe()
    started_at, stamp = utc_now(), provenance()
    info = json.loads((Path(args.dir) / "cluster.json").read_text(encoding="utf-8"))
    w = Witnesses({n["name"]: int(n["pid"]) for n in info.get("nodes", []) if n.get("pid")})
    w.start()
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            result, t0 = runner.run(_run(dtq_target_spec(addresses, args.timeout), spec, args.drain, w))
    finally:
        w.stop()
    path, _ = write_load_run(
        args.runs_dir,
        args.run_id,
        result,
        spec,
        kind="real",
        design=design,
        parameters=parameters,
        started_at=started_at,
        provenance_info=stamp,
    )
    events = w.relative(t0)
    (path / WITNESS_FILE).write_text(json.dumps(events) + "\n", encoding="utf-8")
    counts = {k: len(v) for k, v in events.items() if k not in ("gc_generation", "sched", "t0_monotonic")}
    print(f"run written to {path}; witness events {counts}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
