"""Closed loop with wait_for_completion: one job per client in the system, and the closed forms.

With every cost zero, N clients that think Z then submit a job of duration S and wait for its end are
the machine-repair model (N sources, c servers): constant S with c >= N gives exactly N / (Z + S)
completions/s (Little's law on the cycle), and exponential Z and S with c < N give the M/M/c//N
throughput, checked inside a 99% t interval over replications.
"""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
from scipy import stats

import sim
from model.results.runs import write_run
from model.results.schema import JobRecord
from model.workload import ClosedLoop, Distribution, Op, RequestMix, WorkloadSpec


def _closed(
    clients: int, think: Distribution, duration: Distribution, run_time: float, seed: int
) -> WorkloadSpec:
    return WorkloadSpec(
        ClosedLoop(clients, think, wait_for_completion=True),
        RequestMix(submit=1.0),
        duration=duration,
        run_time=run_time,
        warmup=2.0,
        seed=seed,
    )


def _ideal(design: str, slots: int) -> sim.SimParams:
    return sim.SimParams.ideal(slots=slots, **({"nodes": 1} if design == "mono" else {}))


def _completions_per_s(jobs: list[JobRecord], start: float, end: float) -> float:
    return sum(math.isfinite(j.end_time) and start <= j.end_time < end for j in jobs) / (end - start)


def machine_repair_throughput(n: int, c: int, think_rate: float, service_rate: float) -> float:
    """M/M/c//N: n sources each failing at think_rate, c repairers at service_rate; completions/s."""
    ratio = think_rate / service_rate
    weights = []
    for k in range(n + 1):  # k jobs at the station
        ways = math.factorial(n) / math.factorial(n - k)
        servers = math.factorial(k) if k <= c else math.factorial(c) * c ** (k - c)
        weights.append(ways * ratio**k / servers)
    total = sum(weights)
    return sum(w / total * min(k, c) * service_rate for k, w in enumerate(weights))


def test_each_client_has_at_most_one_job_in_the_system() -> None:
    workload = _closed(5, Distribution("exponential", 0.05), Distribution("exponential", 0.2), 4.0, 11)
    params = sim.SimParams()  # the placeholder costs: overheads must not break the rule
    for design in ("mono", "micro"):
        result = sim.run(sim.SimConfig(design, workload, params))  # type: ignore[arg-type]
        ends = {j.job_id: j.end_time for j in result.jobs}
        submits = [r for r in result.requests if r.op is Op.SUBMIT and r.status == "OK"]
        assert len(submits) > 40
        by_client: dict[int, list[tuple[float, float]]] = {}
        for r in submits:
            by_client.setdefault(r.client, []).append((r.intended_time, ends[r.job_id]))
        assert len(by_client) == 5
        for spans in by_client.values():
            spans.sort()
            for (_, end), (next_submit, _) in itertools.pairwise(spans):
                assert end <= next_submit  # the next submit only once the last job ended
        # the submit's record is the RPC, not the wait: it ends before the job does
        assert all(r.end_time < ends[r.job_id] for r in submits if math.isfinite(ends[r.job_id]))
        # every client's last job may still be running at the hard end; nothing else is unfinished
        unfinished = [j for j in result.jobs if not math.isfinite(j.end_time)]
        assert len(unfinished) <= 5 and len(result.jobs) == len(submits)


def test_enough_slots_gives_clients_over_cycle_time() -> None:
    clients, think, duration = 6, 0.1, 0.5
    cycle = think + duration
    workload = _closed(clients, Distribution("constant", think), Distribution("constant", duration), 10.0, 3)
    for design in ("mono", "micro"):
        result = sim.run(sim.SimConfig(design, workload, _ideal(design, slots=8)))  # type: ignore[arg-type]
        submits: dict[int, list[float]] = {}
        for r in result.requests:
            submits.setdefault(r.client, []).append(r.intended_time)
        # zero overheads: each client's cycle is exactly think + duration (no queueing: slots >= N)
        gaps = np.concatenate([np.diff(sorted(times)) for times in submits.values()])
        assert len(gaps) > 50 and np.allclose(gaps, cycle, rtol=0, atol=1e-9), (
            design,
            gaps.min(),
            gaps.max(),
        )
        # Little on the cycle: N / (Z + S) completions/s, up to one burst of N at the window's edges
        rate = _completions_per_s(result.jobs, 2.0, 10.0)
        assert abs(rate - clients / cycle) <= clients / 8.0, (design, rate)


def test_fewer_slots_than_clients_is_the_machine_repair_model() -> None:
    clients, slots, think, duration = 6, 2, 0.6, 0.25
    expected = machine_repair_throughput(clients, slots, 1 / think, 1 / duration)
    # queueing matters here: well below both the slots' bound and the no-queueing cycle bound
    assert expected < 0.95 * min(slots / duration, clients / (think + duration))
    for design in ("mono", "micro"):
        rates = []
        for seed in range(100, 106):
            workload = _closed(
                clients,
                Distribution("exponential", think),
                Distribution("exponential", duration),
                120.0,
                seed,
            )
            result = sim.run(sim.SimConfig(design, workload, _ideal(design, slots)))  # type: ignore[arg-type]
            rates.append(_completions_per_s(result.jobs, 2.0, 120.0))
        samples = np.array(rates)
        half = stats.t.ppf(0.995, len(samples) - 1) * samples.std(ddof=1) / math.sqrt(len(samples))
        assert abs(samples.mean() - expected) <= half, (design, samples.mean(), half, expected)
        assert half < 0.08 * expected  # tighter than the bound above


def test_wait_mode_run_directory_is_byte_identical(tmp_path: Path) -> None:
    workload = _closed(4, Distribution("exponential", 0.05), Distribution("exponential", 0.1), 2.0, 5)
    for design in ("mono", "micro"):
        digests = []
        for copy in ("a", "b"):
            result = sim.run(sim.SimConfig(design, workload))  # type: ignore[arg-type]
            path = write_run(
                tmp_path / copy,
                result.config.effective_run_id,
                {"run_id": result.config.effective_run_id, "kind": "sim"},
                result.requests,
                result.jobs,
                result.summary,
            )
            digests.append({f.name: f.read_bytes() for f in sorted(path.iterdir())})
        assert digests[0] == digests[1]
        assert len(digests[0]) >= 3
