"""An analytic cross-check of the simulator: an open queueing network from the same SimParams.

`predict(design, workload, params) -> MvaPrediction`, printed beside the simulator by `dtq sim --mva`.

Model (an open Jackson-style network, means only):
- Service demand per request type and per process: the mean CPU of each burst on the request's path
  (sim/README.md "Hops per request"): `service.<role>.<method>` means, `client_call` for every nested
  RPC a process makes, `commit + commit_per_row` where a call saves, `loadgen_request` at the generator.
  Job-path demands (fetch, launch, finish, report, the WaitJob a tracked job costs) are added per job.
- Stations: each process's event loop is an M/M/1 station (utilisation U_p = sum of rate x demand);
  the host's `cores` are one M/M/c station shared by all processes (utilisation U_h = total demand
  rate / cores). A burst of mean s at process p resides s x max(1 / (1 - U_p), F_h), where F_h = 1 +
  ErlangC(c, U_h c) / (c (1 - U_h)) is the M/M/c response-to-service ratio of the host: the two waits
  overlap (a burst queued behind its loop is not queued for a core meanwhile), so the larger one is
  taken (sim/README.md "The analytic cross-check" says why, and how close it comes). Hops
  (`network`) are pure delays. A burst finds its loop asleep with probability 1 - U_p and then
  costs `wakeup` more (as in the simulator, scaled by `wakeup_idle` at the station's mean idle period,
  1 / its burst rate); U_p is solved as a fixed point. Each path entry counts as
  one burst here, though some stand for several (a parked Reserve's two halves): where loops idle, the
  MVA charges fewer wake-ups than the simulator does.
- Jobs: Design A's job path adds its one-way hops (9, to CompleteAttempt); Design B's is in-process.
  Slots form one M/M/c station (Design B's per-node slots pooled, i.e. stealing is assumed to
  balance perfectly), service = job duration + the per-job CPU residences on the worker path;
  completion time = submit latency + Erlang-C wait + service.
- Throughput: the offered rate when every station is below 1, else the bottleneck's capacity
  (1 / max per-request-mix demand at a loop, cores / total demand, slots / job service).
Design B's demand is spread evenly over its nodes (round-robin entry, owners uniform).
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from model.workload import OpenLoop, WorkloadSpec
from sim.params import SimParams


def erlang_c(c: int, a: float) -> float:
    """Probability of waiting in an M/M/c queue with offered load a = lambda / mu (< c)."""
    if a <= 0:
        return 0.0
    if a >= c:
        return 1.0
    term, total = 1.0, 1.0
    for k in range(1, c):
        term *= a / k
        total += term
    last = term * a / c * c / (c - a)
    return last / (total + last)


def mmc_response(lam: float, mean_service: float, c: int) -> float:
    """Mean response time of M/M/c (infinite when unstable)."""
    if mean_service <= 0:
        return 0.0
    a = lam * mean_service
    if a >= c:
        return math.inf
    mu = 1.0 / mean_service
    return erlang_c(c, a) / (c * mu - lam) + mean_service


@dataclass
class MvaPrediction:
    design: str
    offered_rate: float
    throughput: float
    capacity: float  # requests/s of this mix the network can carry
    bottleneck: str
    submit_latency: float  # seconds, mean
    completion_time: float  # seconds, mean (submit sent -> job ended)
    utilisation: dict[str, float] = field(default_factory=dict)

    def to_mapping(self) -> dict[str, Any]:
        return {
            "design": self.design,
            "offered_rate": self.offered_rate,
            "throughput": self.throughput,
            "capacity": self.capacity,
            "bottleneck": self.bottleneck,
            "submit_latency_ms": self.submit_latency * 1e3,
            "completion_time_ms": self.completion_time * 1e3,
            "utilisation": dict(self.utilisation),
        }


# A path: list of (process, cpu seconds) bursts and a count of hops; the lg's own CPU is "lg".
Path = tuple[list[tuple[str, float]], float]


class _Costs:
    def __init__(self, params: SimParams) -> None:
        self.p = params

    def s(self, role: str, method: str, items: int = 0) -> float:
        return self.p.service_dist(role, method).mean + self.p.item_cost(role, method) * items

    @property
    def client(self) -> float:
        return self.p.client_call.mean

    def commit(self, rows: int) -> float:
        return self.p.commit.mean + self.p.commit_per_row * rows if rows else 0.0

    @property
    def lg(self) -> float:
        return self.p.loadgen_request.mean


def _mono_paths(params: SimParams, page: int) -> tuple[dict[str, Path], Path]:
    c = _Costs(params)
    n = params.nodes
    fwd = (n - 1) / n  # a job-targeted request reaches a non-owner with this probability

    def targeted(method: str, rows: int = 0) -> Path:
        own = c.s("node", method) + c.commit(rows)
        relay = c.s("node", "forward") + c.client
        return [("lg", c.lg), ("node", own + fwd * relay)], 2 + 2 * fwd

    lst = (
        c.s("node", "ListJobs") + (n - 1) * c.client + c.s("node", "ListJobs.merge", page),
        (n - 1) * c.s("node", "ListLocalJobs", page),
    )
    paths = {
        "submit": ([("lg", c.lg), ("node", c.s("node", "SubmitJob") + c.commit(1))], 2.0),
        "status": targeted("GetJobStatus"),
        "result": targeted("GetJobResult"),
        "cancel": targeted("CancelJob", 1),
        "list": ([("lg", c.lg), ("node", lst[0] + lst[1])], 4.0 if n > 1 else 2.0),
    }
    # per job: in-process fetch (commit), launch, finish, report (commit), and its WaitJob when tracked
    job: list[tuple[str, float]] = [
        ("node", c.s("node", "fetch", 1) + c.commit(1)),
        ("node", c.s("node", "launch")),
        ("node", c.s("node", "finish") + c.s("node", "report") + c.commit(1)),
    ]
    if params.track_jobs:
        job.append(("lg", c.lg))
        job.append(
            ("node", c.s("node", "WaitJob") + c.s("node", "WaitJob.wake") + fwd * c.s("node", "forward"))
        )
    return paths, (job, 0.0)


def _micro_paths(params: SimParams, page: int) -> tuple[dict[str, Path], Path]:
    c = _Costs(params)

    def via_gateway(method: str, job_method: str, rows: int = 0) -> Path:
        return [
            ("lg", c.lg),
            ("gateway", c.s("gateway", method) + c.client),
            ("job", c.s("job", job_method) + c.commit(rows)),
        ], 4.0

    submit_bursts, hops = via_gateway("SubmitJob", "CreateJob", 1)
    paths = {
        "submit": (submit_bursts, hops),
        "status": via_gateway("GetJobStatus", "GetJobStatus"),
        "result": via_gateway("GetJobResult", "GetJob"),
        "cancel": via_gateway("CancelJob", "CancelJob", 1),
        "list": (
            [
                ("lg", c.lg),
                ("gateway", c.s("gateway", "ListJobs") + c.client + c.s("gateway", "ListJobs.relay", page)),
                ("job", c.s("job", "ListJobs", page)),
            ],
            4.0,
        ),
    }
    # per job, off the submit path: outbox flush -> Enqueue (batch of one at low load), the fetch chain,
    # the report chain (sim/README.md), and the tracked WaitJob
    job: list[tuple[str, float]] = [
        ("job", c.s("job", "flush", 1) + c.client),
        ("queue", c.s("queue", "Enqueue", 1) + c.commit(1)),
        ("worker", c.client),
        ("coordinator", c.s("coordinator", "FetchWork") + 3 * c.client),
        (
            "queue",
            c.s("queue", "Reserve", 1) + c.s("queue", "Reserve.wake") + c.s("queue", "Ack", 1) + c.commit(1),
        ),
        ("job", c.s("job", "LeaseJobs", 1) + c.commit(1)),
        ("worker", c.s("worker", "launch") + c.s("worker", "finish") + c.client),
        ("coordinator", c.s("coordinator", "ReportResult") + c.client),
        ("job", c.s("job", "CompleteAttempt") + c.client + c.commit(1)),  # the fence, PutResult, the end
        ("result", c.s("result", "PutResult") + c.commit(1)),
    ]
    if params.track_jobs:
        job.append(("lg", c.lg))
        job.append(("gateway", c.s("gateway", "WaitJob") + c.client))
        job.append(("job", c.s("job", "WaitJob") + c.s("job", "WaitJob.wake")))
    # one-way hops from the job's creation to its end (CompleteAttempt): job->queue (Enqueue), queue->
    # coordinator (Reserve answers), coordinator<->job (LeaseJobs), coordinator->worker, worker->
    # coordinator (ReportResult), coordinator->job (CompleteAttempt), job<->result (PutResult)
    return paths, (job, 9.0)


def predict(design: str, workload: WorkloadSpec, params: SimParams) -> MvaPrediction:
    if not isinstance(workload.arrival, OpenLoop):
        raise ValueError("the MVA cross-check models open-loop workloads only")
    lam = workload.arrival.rate
    page = params.list_page_size
    paths, (job_path, job_hops) = (_mono_paths if design == "mono" else _micro_paths)(params, page)
    mix = workload.mix
    fractions = {"submit": mix.submit, "status": mix.status, "result": mix.result, "list": mix.list}
    fractions["cancel"] = mix.cancel
    total = sum(fractions.values()) or 1.0
    fractions = {k: v / total for k, v in fractions.items()}
    submit_rate = lam * fractions["submit"]
    copies = {"node": params.nodes} if design == "mono" else {}
    wake = params.wakeup.mean

    # bursts per second at each station; its mean idle period (M/M/1: 1 / rate) sets the wake-up factor
    burst_rate: dict[str, float] = defaultdict(float)
    for kind, frac in fractions.items():
        for proc, _ in paths[kind][0]:
            burst_rate[proc] += lam * frac / copies.get(proc, 1)
    for proc, _ in job_path:
        burst_rate[proc] += submit_rate / copies.get(proc, 1)
    wake_at = {p: wake * params.wakeup_factor(1.0 / r) for p, r in burst_rate.items() if r > 0}

    def with_wakeups(bursts: list[tuple[str, float]], util: dict[str, float]) -> list[tuple[str, float]]:
        # a burst finds its loop asleep with probability 1 - U (Poisson arrivals see time averages)
        return [(p, cpu + wake_at.get(p, wake) * max(0.0, 1.0 - util.get(p, 0.0))) for p, cpu in bursts]

    def utilisation(util: dict[str, float]) -> dict[str, float]:
        """Demand (CPU seconds per second) per station; Design B's node demand is shared by `nodes`."""
        load: dict[str, float] = defaultdict(float)
        for kind, frac in fractions.items():
            for proc, cpu in with_wakeups(paths[kind][0], util):
                load[proc] += lam * frac * cpu
        for proc, cpu in with_wakeups(job_path, util):
            load[proc] += submit_rate * cpu
        return {p: d / copies.get(p, 1) for p, d in load.items()}

    util = utilisation({})
    # wake-ups raise demand where loops idle, and busier loops idle less: a fixed point, reached by
    # iterating (a contraction: each step changes U by at most wake x rate x the previous change)
    for _ in range(50 if wake else 0):
        util = utilisation(util)
    load = {p: u * copies.get(p, 1) for p, u in util.items()}
    host_util = sum(load.values()) / params.cores  # the generator shares host 0 (loadgen_host default)
    job_service = workload.duration.mean
    slot_util = submit_rate * job_service / params.slots if params.slots else 0.0
    # capacity: the largest multiple of the offered mix every station carries
    ratios = {**{p: u for p, u in util.items()}, "host": host_util, "slots": slot_util}
    bottleneck, worst = max(ratios.items(), key=lambda kv: kv[1])
    capacity = lam / worst if worst > 0 else math.inf
    throughput = min(lam, capacity)
    stable = worst < 1.0
    if host_util < 1:
        a = host_util * params.cores
        inflate = 1 + erlang_c(params.cores, a) / (params.cores * (1 - host_util))
    else:
        inflate = math.inf

    def residence(bursts: list[tuple[str, float]]) -> float:
        out = 0.0
        for proc, cpu in with_wakeups(bursts, util):
            u = util.get(proc, 0.0)
            if u >= 1:
                return math.inf
            out += cpu * max(1 / (1 - u), inflate)
        return out

    bursts, hops = paths["submit"]
    submit_latency = residence(bursts) + hops * params.network.mean if stable else math.inf
    worker_cpu = residence([b for b in job_path if b[0] != "lg"])
    wait_slot = mmc_response(submit_rate, job_service, params.slots) - job_service if job_service else 0.0
    completion = (
        submit_latency + wait_slot + job_service + worker_cpu + job_hops * params.network.mean
        if stable
        else math.inf
    )
    return MvaPrediction(
        design=design,
        offered_rate=lam,
        throughput=throughput,
        capacity=capacity,
        bottleneck=bottleneck,
        submit_latency=submit_latency,
        completion_time=completion,
        utilisation={**util, "host": host_util, "slots": slot_util},
    )


def format_prediction(prediction: MvaPrediction, summary: dict[str, Any] | None = None) -> str:
    """MVA beside the simulator's summary (mean submit latency, mean completion, throughput)."""
    m = prediction
    lines = [f"MVA ({m.design}): bottleneck {m.bottleneck}, capacity {m.capacity:.1f} req/s"]
    lines.append(f"{'':24}{'MVA':>12}{'sim':>12}")
    sim_submit = sim_done = sim_tput = "-"
    if summary is not None:
        sub = summary.get("latency_ms", {}).get("submit", {})
        sim_submit = f"{sub.get('mean', float('nan')):.3f}"
        done = summary.get("completion_ms", summary.get("job_completion_ms", {}))
        if isinstance(done, dict) and "mean" in done:
            sim_done = f"{done['mean']:.3f}"
        tput = summary.get("throughput", {})
        if isinstance(tput, dict) and "requests_per_s" in tput:
            sim_tput = f"{tput['requests_per_s']:.1f}"
    lines.append(f"{'throughput (req/s)':24}{m.throughput:>12.1f}{sim_tput:>12}")
    lines.append(f"{'submit latency (ms)':24}{m.submit_latency * 1e3:>12.3f}{sim_submit:>12}")
    lines.append(f"{'completion (ms)':24}{m.completion_time * 1e3:>12.3f}{sim_done:>12}")
    util = ", ".join(f"{k} {v:.2f}" for k, v in sorted(m.utilisation.items()))
    lines.append(f"utilisation: {util}")
    return "\n".join(lines)
