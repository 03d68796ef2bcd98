"""From the measurements to the simulator's parameters: nested calls' client sides and commits
subtracted, the wake-up curve, the job path's in-process steps, and what stays unmeasured.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lab.calibration.measure import IDLE_GAPS, to_dist
from sim.params import SimParams
from sim.placeholders import PLACEHOLDER_PER_ITEM, PLACEHOLDER_SERVICE


def _mean(xs: Sequence[float]) -> float:
    return float(np.mean(xs)) if len(xs) else 0.0


def _minus(xs: Sequence[float], c: float) -> list[float]:
    return [max(x - c, 0.0) for x in xs]


JOB_IDLE = 0.1  # how long a process sleeps between the phases of a windowed job (lab/calibration/paths.py)


def wakeup_curve(echo: Mapping[str, list[float]], busy_server: float) -> list[list[float]]:
    """[[idle seconds, factor on the back-to-back wake-up], ...] from the echo's sleep sweep: each
    point is (median server CPU per call after that sleep - the busy loop's) / (the same back to back),
    at the median sleep of the back-to-back calls first. Factors are made non-decreasing (a longer
    sleep does not make waking cheaper; the raw medians are kept under "measurements")."""
    base = float(np.median(echo["server"])) - busy_server
    if base <= 0 or "gap" not in echo:
        return []
    points = [[max(float(np.median(echo["gap"])), 1e-6), 1.0]]
    for gap in IDLE_GAPS:
        key = f"idle_{gap:g}_server"
        if key in echo and gap > points[-1][0]:
            factor = (float(np.median(echo[key])) - busy_server) / base
            points.append([gap, max(factor, points[-1][1])])
    return points


def _factor(curve: Sequence[Sequence[float]], idle: float) -> float:
    return SimParams(wakeup_idle=tuple((float(a), float(b)) for a, b in curve)).wakeup_factor(idle)


@dataclass(frozen=True)
class Overheads:
    """Means that measured server samples are net of: a caller's CPU per call on a busy loop
    (`client`), a sleeping loop's wake-up (`wake`, back to back: the simulator charges it to every
    burst that finds its loop idle, as every measured call at one in flight did; `cold` times it
    after a windowed job's sleeps of JOB_IDLE), and one storage commit (`commit`: the simulator adds
    commits beside service times)."""

    client: float
    wake: float
    commit: float
    cold: float = 1.0  # wakeup_idle's factor at JOB_IDLE
    thread: float = 0.0  # gRPC's threads per call served (the simulator's rpc_thread, beside the loop)

    @property
    def cold_wake(self) -> float:
        return self.wake * self.cold

    def net(self, samples: Sequence[float], wakes: int = 1, calls: int = 0, commits: int = 0) -> list[float]:
        """Samples of one process's CPU per measured call (all its threads), less the `wakes` wake-ups
        its loop had (its request arriving, and each reply to a call it made), gRPC's threads serving
        the call, the client side of its `calls` (its loop's and its threads') and its `commits`: the
        simulator's service time, the loop's part of the call."""
        return _minus(samples, wakes * self.wake + self.thread + calls * self.client + commits * self.commit)


def build_parameters(
    echo: Mapping[str, list[float]],
    commit: Mapping[str, list[float]],
    loadgen: Mapping[str, float],
    mono: Mapping[str, Any] | None,
    micro: Mapping[str, Any] | None,
    store: str,
) -> tuple[dict[str, Any], list[str]]:
    """Maps measurements onto SimParams keys; returns (parameters, measured keys).

    The bare echo gives the per-call costs of a loop that never sleeps (16 calls in flight: server
    and client CPU per call) and, against one call in flight, the extra CPU a sleeping loop spends to
    wake (the server's difference; the client's is alike, see "measurements"). A burst that finds its
    loop idle pays `wakeup` in the simulator; every measured sample below had one per wake of its
    process, which is taken out (Overheads.net)."""
    busy_server, busy_client = float(np.median(echo["busy_server"])), float(np.median(echo["busy_client"]))
    wake = [max(x - busy_server, 0.0) for x in echo["server"]]
    client_busy = _minus(echo["client"], _mean(echo["client"]) - busy_client)  # its shape, busy mean
    curve = wakeup_curve(echo, busy_server)
    # gRPC's threads beside the loops, per call (busy echo; absent from measurements made before
    # they were split: then all of a call's CPU stays on its loop, as before)
    thread_server = [max(x, 0.0) for x in echo.get("thread_server", [])]
    thread_client = [max(x, 0.0) for x in echo.get("thread_client", [])]
    costs = Overheads(
        client=busy_client,
        wake=_mean(wake),
        commit=_mean(commit["commit"]),
        cold=_factor(curve, JOB_IDLE),
        thread=_mean(thread_server),
    )
    client_loop = _minus(client_busy, _mean(thread_client))  # the caller's loop; its threads apart
    params: dict[str, Any] = {
        "store": store,
        "cores": os.cpu_count() or 1,
        "client_call": to_dist(client_loop),
        "wakeup": to_dist(wake),
        "wakeup_idle": curve,
        "network": to_dist(echo["network"]),
        "commit": to_dist(commit["commit"]),
        # the generator's own work per request (against an in-memory target) and its stub call's
        "loadgen_request": to_dist([x + loadgen["cpu_per_request"] for x in client_loop]),
    }
    if thread_server and thread_client:
        params["rpc_thread"] = to_dist(thread_server)
        params["rpc_thread_client"] = to_dist(thread_client)
    rows = commit["rows"][0]
    # medians: a few multi-millisecond stalls (WAL checkpoints, a busy host) swamp a difference of means
    slope = (float(np.median(commit["commit_many"])) - float(np.median(commit["commit"]))) / (rows - 1)
    params["commit_per_row"] = max(slope, 0.0)
    service: dict[str, dict[str, Any]] = {}
    measured = [
        "client_call",
        "wakeup",
        "wakeup_idle",
        "network",
        "commit",
        "commit_per_row",
        "loadgen_request",
        *(k for k in ("rpc_thread", "rpc_thread_client") if k in params),
    ]

    def put(role: str, method: str, samples: list[float]) -> None:
        service.setdefault(role, {})[method] = to_dist(samples)
        measured.append(f"service.{role}.{method}")

    per_item: dict[str, float] = {}
    if mono:
        _mono_client_api(mono, costs, put)
        if "job_path" in mono:
            _mono_job_path(mono, costs, put, per_item)
    if micro:
        _micro_client_api(micro, costs, put)
        if "job_path" in micro:
            _micro_job_path(micro, costs, put, per_item)
    params["service"] = service
    if per_item:
        params["per_item"] = per_item
        measured += [f"per_item.{k}" for k in per_item]
    return params, measured


Put = Callable[[str, str, list[float]], None]
SEND_FRACTION = 0.5  # sim.params.SimParams.client_send_fraction: the share of a call before it leaves


def _mono_client_api(mono: Mapping[str, Any], c: Overheads, put: Put) -> None:
    for method, saves in (("SubmitJob", 1), ("GetJobStatus", 0), ("CancelJob", 1)):
        put("node", method, c.net(mono[method]["n1"], commits=saves))
    # ListJobs: n1's own work besides the 5 ListLocalJobs calls it makes (their client side, and a
    # wake for their replies: they come back together); the merge of this small page is inside it, so
    # ListJobs.merge is set to 0 (its per-item slope stays)
    put("node", "ListJobs", c.net(mono["ListJobs"]["n1"], wakes=2, calls=5))
    put("node", "ListJobs.merge", [0.0])
    peers = [n for n in mono["ListJobs"] if n.startswith("n") and n != "n1"]
    put("node", "ListLocalJobs", c.net([x for n in peers for x in mono["ListJobs"][n]]))
    if "forward.GetJobStatus" in mono:
        put("node", "forward", c.net(mono["forward.GetJobStatus"]["n2"], wakes=2, calls=1))
    results = list(mono["GetJobResult"]["n1"])
    if "GetJobResult.done" in mono:
        # of a queued job (an error) and of a finished one, pooled: the simulator has one key
        results += list(mono["GetJobResult.done"]["n1"])
    put("node", "GetJobResult", c.net(results))


def _micro_client_api(micro: Mapping[str, Any], c: Overheads, put: Put) -> None:
    for method in ("SubmitJob", "GetJobStatus", "CancelJob", "ListJobs"):
        put("gateway", method, c.net(micro[method]["gateway"], wakes=2, calls=1))
    # CreateJob: the job service's whole share of a submit, less its commit and the Enqueue it sends
    # (one in flight: batches of one); its outbox flush is inside, so flush is 0
    put("job", "CreateJob", c.net(micro["SubmitJob"]["job"], wakes=2, calls=1, commits=1))
    put("job", "flush", [0.0])
    put("job", "GetJobStatus", c.net(micro["GetJobStatus"]["job"]))
    put("job", "CancelJob", c.net(micro["CancelJob"]["job"], commits=1))
    put("job", "ListJobs", c.net(micro["ListJobs"]["job"]))
    put("queue", "Enqueue", c.net(micro["SubmitJob"]["queue"], commits=1))
    gateway = c.net(micro["GetJobResult"]["gateway"], wakes=2, calls=1)
    job = c.net(micro["GetJobResult"]["job"])
    if "GetJobResult.done" in micro:
        # a queued job's result (an error: GetJob only) and a finished one's (GetJob, GetResult), pooled
        done = micro["GetJobResult.done"]
        gateway += c.net(done["gateway"], wakes=3, calls=2)
        job += c.net(done["job"])
        put("result", "GetResult", c.net(done["result"]))
    put("gateway", "GetJobResult", gateway)
    put("job", "GetJob", job)


def _mono_job_path(mono: Mapping[str, Any], c: Overheads, put: Put, per_item: dict[str, float]) -> None:
    """Design B's worker side (lab/calibration/paths.py). Calls a thief makes of an owner are RPCs,
    measured directly (one job each: per-item slopes 0). The node's own worker is in-process: its
    phases come from the windows at n1, the owner. Window 1 less the submit (its measured total) and
    the fetch's commit is charged to `launch` (the woken fetch and the launch run in the submit's
    loop turn: no wake of their own; `fetch` and its slope are 0); window 2 less the timer's wake
    and the report's commit to `report` (the handler's end and the next, empty, fetch pass are in
    it: `finish` is 0)."""
    put("node", "QueueDepth", c.net(mono["QueueDepth"]["n1"]))
    put("node", "StealWork", c.net(mono["StealWork"]["n1"], commits=1))
    put("node", "WorkerHeartbeat", c.net(mono["WorkerHeartbeat"]["n1"], commits=1))
    put("node", "ReportResult", c.net(mono["ReportResult"]["n1"], commits=1))
    put("node", "WaitJob", c.net(mono["WaitJob"]["n1"]))
    for key in ("StealWork", "WorkerHeartbeat", "fetch"):
        per_item[f"node.{key}"] = 0.0
    plain, waited = mono["job_path"]["plain"], mono["job_path"]["waited"]
    # the windows' submits found n1 asleep for ~JOB_IDLE: their wake is the cold one
    submit = _mean(mono["SubmitJob"]["n1"]) - c.wake + c.cold_wake
    put("node", "launch", _minus(plain["w1"]["n1"], submit + c.commit))
    put("node", "fetch", [0.0])
    put("node", "report", _minus(plain["w2"]["n1"], c.cold_wake + c.commit))  # the handler's timer wakes it
    put("node", "finish", [0.0])
    # a parked WaitJob: its look (one wake, as the measured WaitJob) and its answer at the job's end,
    # which comes in the report's loop turn
    parked = _mean(plain["total"]["n1"]) + _mean(mono["WaitJob"]["n1"])
    put("node", "WaitJob.wake", _minus(waited["total"]["n1"], parked))


def _micro_job_path(micro: Mapping[str, Any], c: Overheads, put: Put, per_item: dict[str, float]) -> None:
    """Design A's worker side: the coordinator's three Workers methods called directly (each server's
    CPU less the wakes of its loop, the client side of the calls it makes and its commits), the
    queue's Reserve and Ack alone, and from the windows the worker runtime (window 1: its FetchWork's
    reply waking it, the receive half and the launch; window 2: the handler's timer waking it, the end,
    ReportResult and the next FetchWork's send half) and the costs only a parked long-poll has (queue
    Reserve.wake, job WaitJob.wake: woken inside another call's loop turn)."""
    fetch, beat, report = micro["FetchWork"], micro["WorkerHeartbeat"], micro["ReportResult"]
    # FetchWork: Reserve, LeaseJobs, then Ack in the background; each reply wakes the coordinator
    put("coordinator", "FetchWork", c.net(fetch["coordinator"], wakes=4, calls=3))
    put("job", "LeaseJobs", c.net(fetch["job"], commits=1))
    put("queue", "Reserve", c.net(micro["queue.Reserve"]["queue"]))
    put("queue", "Ack", c.net(micro["queue.Ack"]["queue"], commits=1))
    put("coordinator", "WorkerHeartbeat", c.net(beat["coordinator"], wakes=2, calls=1))
    put("job", "RenewLeases", c.net(beat["job"], commits=1))
    put("coordinator", "ReportResult", c.net(report["coordinator"], wakes=3, calls=2))
    put("result", "PutResult", c.net(report["result"], commits=1))
    put("job", "CompleteAttempt", c.net(report["job"], commits=1))
    put("gateway", "WaitJob", c.net(micro["WaitJob"]["gateway"], wakes=2, calls=1))
    put("job", "WaitJob", c.net(micro["WaitJob"]["job"]))
    for key in ("job.LeaseJobs", "job.RenewLeases", "queue.Reserve", "queue.Ack"):
        per_item[key] = 0.0  # measured with one job per call
    plain, waited = micro["job_path"]["plain"], micro["job_path"]["waited"]
    # the worker wakes cold for its FetchWork's answer and for the handler's end, warm for ReportResult's
    put("worker", "launch", _minus(plain["w1"]["worker"], c.cold_wake + SEND_FRACTION * c.client))
    finish_overheads = c.cold_wake + c.wake + (2 - SEND_FRACTION) * c.client
    put("worker", "finish", _minus(plain["w2"]["worker"], finish_overheads))
    # the queue's share of a job less what its own calls took (Enqueue and the parked Reserve arrive
    # cold, the Ack warm; each as measured back to back otherwise): the parked Reserve's answer
    queue_calls = sum(_mean(micro[k]["queue"]) for k in ("SubmitJob", "queue.Reserve", "queue.Ack"))
    queue_calls += 2 * (c.cold_wake - c.wake)
    put("queue", "Reserve.wake", _minus(plain["total"]["queue"], queue_calls))
    parked = _mean(plain["total"]["job"]) + _mean(micro["WaitJob"]["job"])
    put("job", "WaitJob.wake", _minus(waited["total"]["job"], parked))


def closure(mono: Mapping[str, Any] | None, micro: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """Checks of the calibration against itself: per process, a job's CPU as the windowed run measured
    it beside the sum of the direct single-call measurements that should make it up (means, us). Only
    processes whose windowed total was not used to derive a key are listed."""
    rows: list[dict[str, Any]] = []

    def row(design: str, proc: str, measured: Sequence[float], parts: Mapping[str, float]) -> None:
        predicted = sum(parts.values())
        rows.append(
            {
                "design": design,
                "process": proc,
                "windowed_us": _mean(measured) * 1e6,
                "direct_sum_us": predicted * 1e6,
                "ratio": _mean(measured) / predicted if predicted else math.nan,
                "parts": sorted(parts),
            }
        )

    if micro and "job_path" in micro:
        plain, waited = micro["job_path"]["plain"]["total"], micro["job_path"]["waited"]["total"]
        for proc, methods in (
            ("gateway", ("SubmitJob",)),
            ("job", ("SubmitJob", "FetchWork", "ReportResult")),
            ("coordinator", ("FetchWork", "ReportResult")),
            ("result", ("ReportResult",)),
        ):
            row("micro", proc, plain[proc], {m: _mean(micro[m][proc]) for m in methods})
        extra = [w - _mean(plain["gateway"]) for w in waited["gateway"]]
        row("micro", "gateway (WaitJob)", extra, {"WaitJob": _mean(micro["WaitJob"]["gateway"])})
    if mono and "job_path" in mono:
        plain = mono["job_path"]["plain"]["total"]
        peers = [n for n in plain if n != "n1"]
        rows.append(
            {
                "design": "mono",
                "process": "n2..n6 (not the owner)",
                "windowed_us": sum(_mean(plain[n]) for n in peers) * 1e6,
                "direct_sum_us": 0.0,
                "ratio": math.nan,
                "parts": [],
            }
        )
    return rows


def unmeasured(measured: Sequence[str]) -> list[str]:
    keys = [f"service.{r}.{m}" for r, ms in PLACEHOLDER_SERVICE.items() for m in ms]
    keys += [f"per_item.{k}" for k in PLACEHOLDER_PER_ITEM]
    return sorted(set(keys) - set(measured))


def pool(rounds: Sequence[Any]) -> Any:
    """The measurements of several rounds as one: lists concatenated (in round order, so samples of
    one call stay aligned across keys), mappings key by key (keys every round has), numbers averaged."""
    first = rounds[0]
    if isinstance(first, Mapping):
        keys = [k for k in first if all(isinstance(r, Mapping) and k in r for r in rounds)]
        return {k: pool([r[k] for r in rounds]) for k in keys}
    if isinstance(first, list):
        return [x for r in rounds for x in r]
    if isinstance(first, int | float) and not isinstance(first, bool):
        return float(np.mean(rounds))
    return first


def round_medians(rounds: Sequence[Mapping[str, Any]]) -> dict[str, list[float]]:
    """Per round, the median of each echo series and of each client method's per-process samples:
    how much the host moved within one calibration."""
    out: dict[str, list[float]] = {}
    for r in rounds:
        for key in ("server", "busy_server", "client"):
            out.setdefault(f"echo.{key}", []).append(float(np.median(r["echo"][key])))
        for design in ("mono", "micro"):
            for method, procs in r[design].items():
                if method == "job_path" or not isinstance(procs, Mapping):
                    continue
                for proc, samples in procs.items():
                    if isinstance(samples, list) and samples and proc not in ("rtt", "gap"):
                        out.setdefault(f"{design}.{method}.{proc}", []).append(float(np.median(samples)))
    return {k: v for k, v in out.items() if any(v)}  # a process a method never reaches: left out
