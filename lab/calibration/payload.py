"""What a payload's size costs, for `dtq calibrate`: every operation that carries a payload measured
one at a time at each of PAYLOAD_SIZES, and its CPU per process fitted against the size (least
squares over the per-size medians): the slope is the simulator's `per_byte.<role>.<method>`.

- The store (in-process, as commit.py): JobRecords.save of a job whose payload has each size: `commit`.
- The client API, on a cluster without worker slots: SubmitJob (the calibrator's own CPU is the
  generator's `loadgen.SubmitJob`; the entry's is B's `node.SubmitJob` and A's `gateway.SubmitJob`;
  A's job service's is `job.CreateJob`; both less the store's slope).
- The job's way to a worker, with the calibrator as the worker: B's Peer.StealWork at the owner (as a
  thief node asks: `node.StealWork`); A's Workers.FetchWork at the coordinator (its relay:
  `coordinator.FetchWork`; the job service's LeaseJobs: `job.LeaseJobs`). The leased jobs are
  reported done (not measured), so none comes back to a later size's fetch.
- The launch: window 1 of windowed jobs (paths.job_windows: the submit, dispatch and launch of a
  `sleep` job whose handler parses the payload) on a cluster with one slot per worker, at each size:
  A's worker process (`worker.launch`), and B's owner n1 less its SubmitJob slope (`node.launch`).
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import grpc
import numpy as np

from dtq.v1 import internal_pb2, internal_pb2_grpc, worker_pb2, worker_pb2_grpc
from lab.calibration import paths
from lab.calibration.commit import measure_commit
from lab.calibration.measure import idle_rates, measure_calls, run_async
from realsys import cluster
from realsys.client import make_stub
from realsys.convert import to_duration
from realsys.loadgen import job_payload
from realsys.mono.peers import FORWARDED
from realsys.targets import DtqTarget

# bytes the {"seconds": 0} JSON is padded to (realsys.loadgen.job_payload); 128 KiB steps were lost in
# the per-call noise of a loaded 2-core host, 256 KiB steps were not
PAYLOAD_SIZES = (0, 256 << 10, 512 << 10)


def _payload(size: int) -> bytes:
    return job_payload(0.0, size)


def _sizes_key(size: int) -> str:
    return str(size)


async def _report(workers: Any, jobs: Sequence[tuple[str, int]], worker_id: str, metadata: Any) -> None:
    for job_id, attempt in jobs:
        request = worker_pb2.ReportResultRequest(worker_id=worker_id, job_id=job_id, attempt=attempt)
        request.success.output = b""
        await workers.ReportResult(request, timeout=paths.RPC_TIMEOUT, metadata=metadata)


async def _direct(
    design: str,
    addresses: Mapping[str, str],
    pids: Mapping[str, int],
    count: int,
    sizes: Sequence[int],
) -> dict[str, dict[str, dict[str, list[float]]]]:
    """Per size: SubmitJob, then the submitted jobs' way to a worker (B: StealWork at their owner;
    A: FetchWork at the coordinator), each one call at a time with every process's CPU."""
    entry = addresses["entry"]
    target = DtqTarget([entry])
    channel = grpc.aio.insecure_channel(addresses["workers"])
    out: dict[str, dict[str, dict[str, list[float]]]] = {"SubmitJob": {}, "lease": {}}
    try:
        workers = make_stub(worker_pb2_grpc.WorkersStub, channel)
        peer = make_stub(internal_pb2_grpc.PeerStub, channel)
        worker_id = paths.THIEF_WORKER if design == "mono" else paths.CAL_WORKER
        metadata = FORWARDED if design == "mono" else None
        if design == "micro":
            await workers.WorkerHeartbeat(
                worker_pb2.HeartbeatRequest(worker_id=worker_id, total_slots=1, free_slots=1),
                timeout=paths.RPC_TIMEOUT,
            )
        await measure_calls(lambda _: target.submit("sleep", _payload(0)), {}, 5)  # warm-up
        idle = await idle_rates(pids, 0.3)
        wait = to_duration(1.0)
        for size in sizes:
            payload = _payload(size)

            def submit(_: int, payload: bytes = payload) -> Awaitable[str]:
                return target.submit("sleep", payload)

            out["SubmitJob"][_sizes_key(size)] = await measure_calls(submit, pids, count, idle)
            if design == "mono":

                def lease() -> Any:
                    request = internal_pb2.StealWorkRequest(thief_node="n2", worker_id=worker_id, max_jobs=1)
                    return peer.StealWork(request, timeout=paths.RPC_TIMEOUT)

            else:

                def lease() -> Any:
                    request = worker_pb2.FetchWorkRequest(
                        worker_id=worker_id, free_slots=1, wait_timeout=wait
                    )
                    return workers.FetchWork(request, timeout=paths.RPC_TIMEOUT)

            samples, leased = await paths.leasing(lease, count, pids, idle, f"lease of {size}-byte jobs")
            out["lease"][_sizes_key(size)] = samples
            await _report(workers, leased, worker_id, metadata)
    finally:
        await target.close()
        await channel.close(None)
    return out


def _direct_cluster(design: str, store: str, count: int, sizes: Sequence[int]) -> dict[str, Any]:
    with cluster.running(
        design, store=store, overrides={"DTQ_SLOTS": "0"}, grace=10.0, prefix=f"dtq-cal-bytes-{design}-"
    ) as info:
        if design == "micro":  # its runtime keeps >= 1 slot: stop it (the calibrator is the worker)
            cluster.kill(info.directory, "worker", signal.SIGTERM)
            roles = {n.role: n.address for n in info.nodes}
            addresses = {"entry": roles["gateway"], "workers": roles["coordinator"]}
        else:
            addresses = {"entry": info.clients[0], "workers": info.clients[0]}
        pids = {n.name: n.pid for n in info.nodes if n.role != "worker"}
        return run_async(_direct(design, addresses, pids, count, sizes))


def _windows(design: str, store: str, count: int, sizes: Sequence[int]) -> dict[str, Any]:
    """Window 1 of windowed jobs at each size (plain batches only), on one windowed cluster."""
    out: dict[str, Any] = {}
    with paths.windowed_cluster(design, store) as (address, pids):
        for size in sizes:
            batch = run_async(paths.run_job_windows(address, pids, count, payload_bytes=size, waited=False))
            out[_sizes_key(size)] = batch["plain"]["w1"]
    return out


def measure_payload(store: str, count: int, sizes: Sequence[int] = PAYLOAD_SIZES) -> dict[str, Any]:
    """One round of every payload measurement (pooled over rounds by calibrate.py)."""
    if len(set(sizes)) < 2:
        raise ValueError("per-byte costs need at least two payload sizes")
    out: dict[str, Any] = {
        "commit": {
            _sizes_key(s): measure_commit(store, max(count, 20), payload=_payload(s))["commit"] for s in sizes
        },
    }
    for design in ("mono", "micro"):
        out[design] = {
            **_direct_cluster(design, store, count, sizes),
            "w1": _windows(design, store, max(count // 2, 10), sizes),  # 0.15 s each
        }
    return out


def slope(by_size: Mapping[str, Sequence[float]]) -> float:
    """Least-squares slope of the per-size medians against the size (seconds per byte), >= 0."""
    sizes = sorted(by_size, key=float)
    x = np.asarray([float(s) for s in sizes])
    y = np.asarray([float(np.median(by_size[s])) for s in sizes])
    if len(x) < 2 or np.ptp(x) == 0:
        return 0.0
    return max(float(np.polyfit(x, y, 1)[0]), 0.0)


def _proc(series: Mapping[str, Mapping[str, Sequence[float]]], proc: str) -> dict[str, Sequence[float]]:
    """{size: samples} of one process from {size: {process: samples}}."""
    return {size: procs[proc] for size, procs in series.items()}


def per_byte_parameters(measured: Mapping[str, Any]) -> dict[str, float]:
    """The simulator's per_byte keys from measure_payload's (pooled) measurements."""
    store = slope(measured["commit"])
    mono, micro = measured["mono"], measured["micro"]
    mono_submit = slope(_proc(mono["SubmitJob"], "n1"))
    out = {
        "commit": store,
        "loadgen.SubmitJob": slope(_proc(mono["SubmitJob"], "client")),
        "node.SubmitJob": max(mono_submit - store, 0.0),
        "node.StealWork": slope(_proc(mono["lease"], "n1")),
        "node.launch": max(slope(_proc(mono["w1"], "n1")) - mono_submit, 0.0),
        "gateway.SubmitJob": slope(_proc(micro["SubmitJob"], "gateway")),
        "job.CreateJob": max(slope(_proc(micro["SubmitJob"], "job")) - store, 0.0),
        "job.LeaseJobs": slope(_proc(micro["lease"], "job")),
        "coordinator.FetchWork": slope(_proc(micro["lease"], "coordinator")),
        "worker.launch": slope(_proc(micro["w1"], "worker")),
    }
    return out


def summarize_payload(measured: Mapping[str, Any]) -> dict[str, Any]:
    """Per operation and process, the median at each size (microseconds), for the calibration file."""

    def medians(series: Mapping[str, Mapping[str, Sequence[float]]]) -> dict[str, dict[str, float]]:
        procs = sorted({p for by_proc in series.values() for p in by_proc if p not in ("rtt", "gap")})
        return {
            p: {s: round(float(np.median(by[p])) * 1e6, 2) for s, by in series.items() if p in by}
            for p in procs
        }

    out: dict[str, Any] = {
        "sizes": sorted((int(s) for s in measured["commit"]), key=int),
        "commit_us": {s: round(float(np.median(v)) * 1e6, 2) for s, v in measured["commit"].items()},
    }
    for design in ("mono", "micro"):
        out[design] = {op: medians(measured[design][op]) for op in ("SubmitJob", "lease", "w1")}
    return out
