"""Every client method of a design, measured alone on a local cluster without worker slots, and the
worker side (lab/calibration/paths.py) with the calibrator as the worker.
"""

from __future__ import annotations

import signal
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from lab.calibration import paths
from lab.calibration.measure import idle_rates, measure_calls, run_async
from realsys import cluster
from realsys.loadgen import job_payload
from realsys.targets import DtqTarget

WorkerApi = Callable[[list[str], Mapping[str, float]], Awaitable[dict[str, Any]]]


async def _drive(
    addresses: Sequence[str], pids: Mapping[str, int], count: int, worker_api: WorkerApi | None = None
) -> dict[str, Any]:
    """Every client method alone against addresses[0]; a forward through addresses[1] if any; then
    `worker_api(pending job ids, idle rates)` (lab/calibration/paths.py) plays the worker."""
    target = DtqTarget([addresses[0]])
    payload = job_payload(0.0)
    out: dict[str, Any] = {}
    try:
        ids: list[str] = []

        async def submit(_: int) -> object:
            ids.append(await target.submit("sleep", payload))
            return None

        await measure_calls(submit, {}, max(count // 5, 5))  # warm-up (channels, caches)
        ids.clear()
        idle = await idle_rates(pids, 0.3)
        out["SubmitJob"] = await measure_calls(submit, pids, count, idle)
        out["GetJobStatus"] = await measure_calls(lambda i: target.status(ids[i]), pids, count, idle)

        async def result(i: int) -> object:
            try:
                return await target.result(ids[i])  # FAILED_PRECONDITION: the job is queued
            except Exception as exc:
                return exc

        out["GetJobResult"] = await measure_calls(result, pids, count, idle)
        out["ListJobs"] = await measure_calls(lambda _: target.list(10), pids, max(count // 2, 5), idle)
        if len(addresses) > 1:
            other = DtqTarget([addresses[1]])
            try:
                out["forward.GetJobStatus"] = await measure_calls(
                    lambda i: other.status(ids[i]), pids, count, idle
                )
            finally:
                await other.close()
        spare = ids  # pending jobs for CancelJob
        if worker_api is not None:
            out.update(await worker_api(list(ids), idle))
            spare = [await target.submit("sleep", payload) for _ in range(count)]  # those ran: fresh ones

        async def cancel(i: int) -> object:
            try:
                return await target.cancel(spare[i])
            except Exception as exc:  # a job that already ended: still one CancelJob served
                return exc

        out["CancelJob"] = await measure_calls(cancel, pids, count, idle)
    finally:
        await target.close()
    return out


def measure_cluster(design: str, store: str, count: int, worker_path: bool = True) -> dict[str, Any]:
    """The client API on a cluster without worker slots; with `worker_path`, also the worker-side
    RPCs (the calibrator as the worker) and, on a second cluster with one slot per worker, the job
    path in CPU windows (lab/calibration/paths.py)."""
    with cluster.running(
        design, store=store, overrides={"DTQ_SLOTS": "0"}, grace=10.0, prefix=f"dtq-cal-{design}-"
    ) as info:
        if design == "micro":  # its runtime keeps >= 1 slot: stop it, so no job runs meanwhile
            cluster.kill(info.directory, "worker", signal.SIGTERM)
        pids = {n.name: n.pid for n in info.nodes if n.role != "worker"}
        addresses = info.clients if design == "mono" else [info.clients[0]]
        worker_api: WorkerApi | None = None
        if worker_path and design == "mono":

            def worker_api(pending: list[str], idle: Mapping[str, float]) -> Awaitable[dict[str, Any]]:
                return paths.mono_worker_api(addresses[0], pending, pids, idle)

        elif worker_path:
            roles = {n.role: n.address for n in info.nodes}

            def worker_api(pending: list[str], idle: Mapping[str, float]) -> Awaitable[dict[str, Any]]:
                return paths.micro_worker_api(
                    roles["gateway"], roles["coordinator"], roles["queue"], len(pending), pids, idle
                )

        out = run_async(_drive(addresses, pids, count, worker_api))
    if worker_path:
        out["job_path"] = paths.measure_job_path(design, store, count)
    return out
