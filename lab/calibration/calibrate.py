"""`dtq calibrate`: measures single operations of the real system and writes
data/calibration/<name>.json for the simulator (sim/README.md "What a calibration must measure").

Method (all microbenchmarks, one call in flight, never end-to-end curves):
- Server CPU per call: the real processes run as a local cluster (`realsys.cluster.up`, every slot
  count 0 so no worker runs and nothing but the driven calls happens). Around each call the driver
  reads the CPU time of every server process from /proc/<pid>/task/*/schedstat (nanoseconds, all
  threads: gRPC's C-core threads included), outside the timed window. A process's per-call sample is
  its CPU delta minus its idle rate (measured before) times the call's wall time. Nested calls: the
  caller's delta includes its client side of the nested RPC; `client_call` (measured on a bare echo)
  is subtracted to get `service.<role>.<method>`, and so is the mean commit of a call that saves (the
  simulator adds `commit` beside the service time). Work a measured call includes that the simulator
  charges under another name (ListJobs.merge, the job service's outbox flush) is set to 0.
- client_call: CPU of this (grpc.aio client) process per bare health-check call (process_time).
- network: one-way hop = (RTT of the bare echo - client CPU - server CPU) / 2, per call, floored at 0.
- commit / commit_per_row: realsys.storage JobRecords.save (1 row) and save_many (rows) timed in-process.
- loadgen_request: realsys.loadgen.run_load against targets.InMemoryTarget: generator CPU / request.
- measurements.scheduler_slice: how long the kernel leaves a process that never blocks on its core
  while another waits (lab.calibration.hostprobe.scheduler_slice: runs of cores + 1 spinning processes), for
  the simulator's fair-scheduler what-if (`cpu_slice`, not set here).
- per_byte (lab/calibration/payload.py): every operation that carries a payload, one at a time at
  0, 256 and 512 KiB; the slope of each process's CPU against the size.
- The job path (lab/calibration/paths.py): the worker-side RPCs with the calibrator as the worker,
  and the in-process steps from per-job CPU windows on a cluster with one slot per worker; `closure`
  in the measurements compares those windows with the sums of the direct measurements.
Each distribution is kept as <= 200 empirical samples (evenly spaced quantiles of the measured ones),
with a lognormal fit and its KS statistic recorded under "measurements".
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from lab.calibration.assemble import build_parameters, closure, pool, round_medians, unmeasured
from lab.calibration.clusters import measure_cluster
from lab.calibration.commit import measure_commit
from lab.calibration.compare import compare, format_comparison, load_doc
from lab.calibration.echo import measure_echo
from lab.calibration.generator import measure_loadgen
from lab.calibration.hostprobe import calibration_probes, scheduler_slice
from lab.calibration.measure import run_async, summarize_samples
from lab.calibration.payload import measure_payload, per_byte_parameters, summarize_payload
from model.errors import InvalidArgument
from model.results.runs import provenance
from realsys.cli_common import progress
from sim.params import CALIBRATION_DIR, load_params

DEFAULT_ROUNDS = 3


def calibrate(
    name: str, store: str, quick: bool, out_dir: Path | None = None, rounds: int = DEFAULT_ROUNDS
) -> Path:
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    count = 60 if quick else 300
    per_round = max(count // rounds, 20)
    started = time.time()
    load_before = os.getloadavg()
    progress("probing the host's speed (before)")
    probes_before = calibration_probes(store)  # the host's speed around the measurements (HostScale)
    progress("measuring the kernel's time slice")
    slice_measured = scheduler_slice()  # a fact of the kernel, not of the host's speed: measured once
    # every measurement in each of `rounds` rounds, pooled: each operation's samples span the whole
    # calibration, not one window of it (the host's speed flickers within seconds)
    measured_rounds = []
    for index in range(rounds):
        step = f"round {index + 1}/{rounds}:"
        progress(f"{step} bare echo")
        echo_round = run_async(measure_echo(per_round * 2))
        progress(f"{step} commits ({store})")
        commit_round = measure_commit(store, per_round * 2)
        progress(f"{step} load generator")
        loadgen_round = measure_loadgen((1.0 if quick else 3.0) / rounds)
        progress(f"{step} Design B cluster")
        mono_round = measure_cluster("mono", store, per_round)
        progress(f"{step} Design A cluster")
        micro_round = measure_cluster("micro", store, per_round)
        progress(f"{step} payload sizes (both designs)")
        payload_round = measure_payload(store, max(per_round // 2, 20))
        measured_rounds.append(
            {
                "echo": echo_round,
                "commit": commit_round,
                "loadgen": loadgen_round,
                "mono": mono_round,
                "micro": micro_round,
                "payload": payload_round,
            }
        )
    pooled = pool(measured_rounds)
    echo, commit, loadgen, mono, micro = (pooled[k] for k in ("echo", "commit", "loadgen", "mono", "micro"))
    progress("probing the host's speed (after)")
    probes_after = calibration_probes(store)
    params, measured = build_parameters(echo, commit, loadgen, mono, micro, store)
    params["per_byte"] = per_byte_parameters(pooled["payload"])
    measured += [f"per_byte.{k}" for k in params["per_byte"]]
    params["name"] = name
    summaries: dict[str, Any] = {
        "scheduler_slice": slice_measured,
        "echo": {k: summarize_samples(v) for k, v in echo.items()},
        "commit": {k: summarize_samples(v) for k, v in commit.items() if k != "rows"},
        "commit_rows": commit["rows"][0],
        "loadgen": loadgen,
        # other tenants' load: off-CPU waits it causes land in the RTT, hence in `network`'s tail
        "host_loadavg_1m": {"before": load_before[0], "after": os.getloadavg()[0]},
        "rounds": rounds,
        "round_medians": round_medians(measured_rounds),
        "payload": summarize_payload(pooled["payload"]),
    }
    for design, data in (("mono", mono), ("micro", micro)):
        summaries[design] = {
            m: {p: summarize_samples(s) for p, s in v.items()} for m, v in data.items() if m != "job_path"
        }
        path = data["job_path"]
        summaries[design]["job_path"] = {
            batch: {part: {p: summarize_samples(s) for p, s in v.items()} for part, v in path[batch].items()}
            for batch in ("plain", "waited")
        } | {"idle_rate": path["idle_rate"], "wall_seconds": path["wall_seconds"]}
    summaries["closure"] = closure(mono, micro)
    doc = {
        "parameters": params,
        "measured": sorted(measured),
        "unmeasured": unmeasured(measured),
        "measurements": summaries,
        "host_probe": {k: probes_before[k] + probes_after[k] for k in probes_before},
        "provenance": provenance(),
        "method": (__doc__ or "").strip(),
        "quick": quick,
        "calibration_seconds": time.time() - started,
    }
    directory = out_dir or CALIBRATION_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    load_params(path)  # it must load
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name",
        default="",
        help="data/calibration/<name>.json (default: a new name, host-<UTC date>-<time>; an existing "
        "calibration is replaced only with --force)",
    )
    parser.add_argument(
        "--force", action="store_true", help="replace data/calibration/<name>.json when it exists"
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        metavar=("A", "B"),
        help="measure nothing: compare two calibrations key by key (ratio B/A and its spread; "
        "lab/calibration/compare.py), e.g. two made back to back",
    )
    parser.add_argument("--json", default="", help="--compare: also write the comparison to this JSON file")
    parser.add_argument("--store", choices=["sqlite", "memory"], default="sqlite", help="the clusters' store")
    parser.add_argument("--quick", action="store_true", help="fewer calls per method (< 2 min)")
    parser.add_argument(
        "--rounds",
        type=int,
        default=DEFAULT_ROUNDS,
        help="measure everything this many times, interleaved, and pool the samples (default 3)",
    )


def add_parser(sub: Any) -> None:
    """`dtq calibrate` (sub is the dtq command's subparsers object)."""
    p = sub.add_parser("calibrate", help="measure single operations; write data/calibration/<name>.json")
    add_arguments(p)
    p.set_defaults(handler=calibrate_command)


def default_name(directory: Path = CALIBRATION_DIR) -> str:
    """A calibration name no file has yet: host-<UTC date>-<time> (never `local`, the paper's)."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    name, n = f"host-{stamp}", 1
    while (directory / f"{name}.json").exists():
        n += 1
        name = f"host-{stamp}-{n}"
    return name


def calibrate_command(args: argparse.Namespace) -> int:
    if args.compare:
        result = compare(load_doc(args.compare[0]), load_doc(args.compare[1]))
        print(format_comparison(result))
        if args.json:
            Path(args.json).write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
            print(f"comparison written to {args.json}")
        return 0
    name = args.name or default_name()
    if "/" in name or name in ("", ".", ".."):
        raise InvalidArgument(f"--name {name!r}: a file name under data/calibration/, without '/'")
    existing = CALIBRATION_DIR / f"{name}.json"
    if existing.exists() and not args.force:  # checked before the minutes of measuring, not after
        raise FileExistsError(
            f"calibration {existing} exists: --force replaces it, or name another (--name; "
            "without it: a new host-<date>-<time>)"
        )
    path = calibrate(name, args.store, args.quick, rounds=args.rounds)
    doc = json.loads(path.read_text())
    for role, methods in sorted(doc["parameters"]["service"].items()):
        for method, dist in sorted(methods.items()):
            print(f"service.{role}.{method}: median {np.median(dist['samples']) * 1e6:.0f} us")
    print(f"calibration written to {path}")
    return 0
