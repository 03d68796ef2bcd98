"""The queue's own semantics in the simulator: each job outcome path (success, failure by probability,
run-deadline timeout, cancellation) and what the core then decides (retries, backoff, max attempts,
priorities), CPU-consuming jobs on a process's GIL, and runs that start from a prefilled table.

Costs are the ideal ones (zero) unless said, so times are exactly the core's and the jobs' own."""

from __future__ import annotations

import collections
import math
from pathlib import Path
from typing import Any

import pytest

import sim
from model.results.runs import load_workload, run_config, write_run
from model.results.schema import JobRecord
from model.states import JobState
from model.workload import (
    Op,
    WorkloadSpec,
    attempt_uniform,
    open_loop_trace,
    prefill_jobs,
    workload_from_mapping,
)
from sim.params import SimParams

DESIGNS = ("mono", "micro")


def spec_of(**changes: Any) -> WorkloadSpec:
    mapping: dict[str, Any] = {
        "arrival": {"kind": "open", "rate": 40},
        "job_type": "sleep",
        "duration": {"kind": "constant", "mean": 0.01},
        "run_time": 3,
        "warmup": 0.5,
        "seed": 7,
    }
    mapping.update(changes)
    return workload_from_mapping(mapping)


def run(design: str, spec: WorkloadSpec, params: SimParams | None = None) -> sim.SimResult:
    return sim.run(sim.SimConfig(design, spec, params or SimParams.ideal(nodes=2, slots=4)))  # type: ignore[arg-type]


def finished(result: sim.SimResult) -> list[JobRecord]:
    jobs = [j for j in result.jobs if math.isfinite(j.end_time)]
    assert jobs
    return jobs


def drawn_jobs(spec: WorkloadSpec) -> dict[float, Any]:
    """The trace's submits by intended time (unique in a Poisson trace): what each job was drawn as."""
    trace = open_loop_trace(spec)
    return {_key(trace.times[i]): trace.job(i) for i in range(len(trace)) if trace.ops[i] == Op.SUBMIT}


def _key(t: float) -> float:
    return round(float(t), 9)  # records hold (t0 + t) - t0


# ---------------------------------------------------------------------------- failures and retries
@pytest.mark.parametrize("design", DESIGNS)
def test_an_always_failing_job_makes_max_attempts_with_capped_exponential_backoff(design: str) -> None:
    spec = spec_of(job_type="fail", max_attempts=3, backoff={"initial": 0.1, "multiplier": 2, "max": 0.15})
    result = run(design, spec)
    for job in finished(result):
        assert job.final_state is JobState.FAILED and job.attempts == 3 and job.reason == "HANDLER_ERROR"
        # three 10 ms runs, then backoffs of 0.1 and min(0.2, 0.15): the core's rule; ideal costs add
        # only the timers' re-arm steps (1 ms) and the fetches' wake-ups
        assert 0.28 - 1e-9 <= job.completion_time < 0.29
    out = result.summary["outcomes"]
    assert out["attempts_mean"] == 3.0 and out["failed"] == 1.0 and out["timed_out"] == 0.0


@pytest.mark.parametrize("design", DESIGNS)
def test_flaky_jobs_fail_exactly_the_attempts_their_seed_picks(design: str) -> None:
    spec = spec_of(job_type="fail", payload={"probability": 0.4}, max_attempts=4, backoff={"initial": 0.01})
    drawn = drawn_jobs(spec)
    outcomes: collections.Counter[JobState] = collections.Counter()
    for job in finished(run(design, spec)):
        draw = drawn[_key(job.submit_time)]
        failing = [attempt_uniform(draw.seed, a) < 0.4 for a in range(1, 5)]
        expected = next((a for a, fails in enumerate(failing, 1) if not fails), 4)
        assert job.attempts == expected, (job, failing)
        assert job.final_state is (JobState.FAILED if all(failing) else JobState.SUCCEEDED)
        outcomes[job.final_state] += 1
    assert outcomes[JobState.SUCCEEDED] > 0 and outcomes[JobState.FAILED] > 0  # both paths taken


@pytest.mark.parametrize("design", DESIGNS)
def test_a_non_retryable_failure_ends_the_job_at_once(design: str) -> None:
    spec = spec_of(job_type="fail", payload={"probability": 1.0, "retryable": False}, max_attempts=5)
    for job in finished(run(design, spec)):
        assert job.final_state is JobState.FAILED and job.attempts == 1


# ---------------------------------------------------------------------------- timeouts
@pytest.mark.parametrize("design", DESIGNS)
def test_a_job_past_its_execution_timeout_fails_with_timeout_after_every_attempt(design: str) -> None:
    spec = spec_of(duration={"kind": "constant", "mean": 0.2}, execution_timeout=0.05, max_attempts=2)
    result = run(design, spec)
    for job in finished(result):
        assert (job.final_state, job.reason, job.attempts) == (JobState.FAILED, "TIMEOUT", 2)
    assert result.summary["outcomes"]["timed_out"] == 1.0
    quick = spec_of(duration={"kind": "constant", "mean": 0.04}, execution_timeout=0.05, max_attempts=2)
    assert all(j.final_state is JobState.SUCCEEDED and j.attempts == 1 for j in finished(run(design, quick)))


# ---------------------------------------------------------------------------- cancellation
@pytest.mark.parametrize("design", DESIGNS)
def test_cancelled_jobs_end_cancelled_whether_pending_or_running(design: str) -> None:
    spec = spec_of(
        arrival={"kind": "closed", "clients": 4, "think_time": {"kind": "constant", "mean": 0.02}},
        mix={"submit": 0.5, "cancel": 0.5},
        duration={"kind": "constant", "mean": 3.0},  # longer than a heartbeat: cancels reach the worker
    )
    result = run(design, spec, SimParams.ideal(nodes=2, slots=2))
    cancels = [r for r in result.requests if r.op is Op.CANCEL and r.status == "OK"]
    by_id = {j.job_id: j for j in result.jobs}
    assert cancels
    ended = [by_id[r.job_id] for r in cancels if math.isfinite(by_id[r.job_id].end_time)]
    assert ended and all(j.final_state is JobState.CANCELLED and j.reason == "CANCELLED" for j in ended)
    # some were running (the worker stopped them: one attempt), some still queued (none)
    assert {j.attempts for j in ended} == {0, 1}
    assert result.summary["outcomes"]["cancelled"] > 0


# ---------------------------------------------------------------------------- priorities
@pytest.mark.parametrize("design", DESIGNS)
def test_high_priority_jobs_jump_the_queue_under_load(design: str) -> None:
    spec = spec_of(
        arrival={"kind": "open", "rate": 170},
        duration={"kind": "exponential", "mean": 0.02},
        priority={"kind": "categorical", "values": {9: 0.2, 0: 0.8}},
        run_time=20,
    )
    result = run(design, spec)  # 4 slots of 50 jobs/s each: rho = 0.85
    by_priority = result.summary["outcomes"]["completion_ms_by_priority"]
    high, low = by_priority["9"], by_priority["0"]
    assert high["count"] > 100 and low["count"] > 4 * 100
    assert high["p50"] < 0.8 * low["p50"] and high["p99"] < 0.7 * low["p99"]


# ---------------------------------------------------------------------------- CPU-consuming jobs
def _closed_pair(job_type: str, **changes: Any) -> WorkloadSpec:
    return spec_of(
        arrival={"kind": "closed", "clients": 2, "wait_for_completion": True},
        job_type=job_type,
        duration={"kind": "constant", "mean": 0.05},
        **changes,
    )


@pytest.mark.parametrize("design", DESIGNS)
def test_cpu_jobs_burn_the_worker_process_and_share_its_gil(design: str) -> None:
    params = SimParams.ideal(nodes=1, slots=2)
    sleeping = run(design, _closed_pair("sleep"), params)
    burning = run(design, _closed_pair("cpu"), params)
    half = run(design, _closed_pair("cpu", cpu_fraction=0.5), params)
    # two at a time: sleeps overlap; CPU jobs take turns on one GIL (twice as long); half-CPU jobs
    # contend only while both burn (the two clients drift into one burning while the other sleeps)
    assert sleeping.summary["completion_ms"]["p50"] == pytest.approx(50, abs=1)
    assert burning.summary["completion_ms"]["p50"] == pytest.approx(100, abs=6)
    assert 49 < half.summary["completion_ms"]["p50"] < 76
    worker = "n1" if design == "mono" else "worker"
    busy = {
        name: r.stats["utilisation"][worker] * (r.stats["sim_seconds"] + 0.5)
        for name, r in (("sleep", sleeping), ("cpu", burning), ("half", half))
    }
    assert busy["sleep"] == 0.0  # ideal costs: only the jobs' own CPU counts
    jobs = {name: len(r.jobs) for name, r in (("cpu", burning), ("half", half))}
    assert busy["cpu"] == pytest.approx(0.05 * jobs["cpu"], rel=0.05)
    assert busy["half"] == pytest.approx(0.025 * jobs["half"], rel=0.05)


@pytest.mark.parametrize("design", DESIGNS)
def test_cpu_jobs_slow_the_requests_of_the_process_that_runs_them(design: str) -> None:
    """Design B runs jobs in the node that serves requests: its submits wait for the GIL behind CPU
    jobs. Design A's worker is its own process: the gateway's and job service's requests do not."""
    # one node of two slots (Design B), one worker of two slots (Design A)
    params = SimParams().with_overrides({"nodes": 1, "slots": 2} if design == "mono" else {"slots": 2})
    load = {"arrival": {"kind": "open", "rate": 10}, "duration": {"kind": "constant", "mean": 0.05}}
    sleeping = run(design, spec_of(**load), params)
    burning = run(design, spec_of(job_type="cpu", **load), params)
    ratio = burning.summary["latency_ms"]["submit"]["p99"] / sleeping.summary["latency_ms"]["submit"]["p99"]
    if design == "mono":
        assert ratio > 1.5, ratio
    else:
        assert ratio < 1.3, ratio


# ---------------------------------------------------------------------------- a prefilled table
@pytest.mark.parametrize("design", DESIGNS)
def test_a_run_can_start_from_finished_and_pending_jobs(design: str) -> None:
    prefill = {"finished": 300, "pending": 40, "states": {"succeeded": 0.8, "failed": 0.1, "cancelled": 0.1}}
    spec = spec_of(prefill=prefill, duration={"kind": "constant", "mean": 0.05}, run_time=2)
    drawn = prefill_jobs(spec)
    result = run(design, spec)
    core = result.stats["core"]
    submitted = sum(1 for r in result.requests if r.op is Op.SUBMIT and r.status == "OK")
    assert core["jobs"] == 300 + 40 + submitted
    assert core.get("state_failed", 0) == drawn.states.count("failed")
    assert core.get("state_cancelled", 0) == drawn.states.count("cancelled")
    # the 40 pending ones (50 ms each on 4 slots: 0.5 s of work) were queued ahead of the trace
    first = min(result.jobs, key=lambda j: j.submit_time)
    assert first.completion_time > 0.3
    empty = run(design, spec_of(duration={"kind": "constant", "mean": 0.05}, run_time=2))
    assert min(empty.jobs, key=lambda j: j.submit_time).completion_time < 0.06


def test_the_same_semantics_run_gives_identical_records() -> None:
    spec = spec_of(
        job_type={"kind": "categorical", "values": {"fail": 0.5, "cpu": 0.5}},
        payload={"probability": 0.5},
        max_attempts=3,
        priority={"kind": "categorical", "values": {0: 0.5, 1: 0.5}},
        mix={"submit": 0.8, "cancel": 0.2},
    )
    a, b = run("mono", spec, SimParams()), run("mono", spec, SimParams())
    assert a.requests == b.requests and a.jobs == b.jobs and a.summary == b.summary


# ---------------------------------------------------------------------------- replaying a recorded run
def test_a_recorded_run_replays_in_the_other_design(tmp_path: Path) -> None:
    """A run of Design B (here simulated; real runs write the same directory) replayed into Design A:
    the same requests at the same intended times, the same job durations, targets of the same jobs."""
    spec = spec_of(
        mix={"submit": 0.6, "status": 0.2, "cancel": 0.2},
        duration={"kind": "exponential", "mean": 0.02},
        run_time=2,
    )
    recorded = run("mono", spec)
    config = run_config(run_id="rec", kind="sim", design="mono", workload=spec, parameters={})
    write_run(
        tmp_path, "rec", config, recorded.requests, recorded.jobs, {**recorded.summary, "run_id": "rec"}
    )
    (tmp_path / "replay.yaml").write_text("arrival: {kind: replay, run: rec}\nduration: {mean: 0.5}\n")
    replay = load_workload(tmp_path / "replay.yaml")
    assert (replay.run_time, replay.warmup) == (spec.run_time, spec.warmup)
    replayed = run("micro", replay)
    assert len(replayed.requests) == len(recorded.requests)
    for a, b in zip(replayed.requests, recorded.requests, strict=True):
        assert a.op is b.op and a.intended_time == pytest.approx(b.intended_time, abs=1e-9)
    assert sorted(j.duration for j in replayed.jobs) == pytest.approx(
        sorted(j.duration for j in recorded.jobs)
    )
    # a cancel is about the same job (in acceptance order) as in the recording
    order = {j.job_id: k for k, j in enumerate(sorted(recorded.jobs, key=lambda j: j.accept_time))}
    order_b = {j.job_id: k for k, j in enumerate(sorted(replayed.jobs, key=lambda j: j.accept_time))}
    cancels_a = [order.get(r.job_id) for r in recorded.requests if r.op is Op.CANCEL]
    cancels_b = [order_b.get(r.job_id) for r in replayed.requests if r.op is Op.CANCEL]
    assert sum(a == b for a, b in zip(cancels_a, cancels_b, strict=True)) >= 0.9 * len(cancels_a)
    in_window = [r for r in recorded.requests if spec.warmup <= r.intended_time < spec.total_time]
    assert replayed.summary["offered_rate"] == pytest.approx(len(in_window) / spec.run_time)
