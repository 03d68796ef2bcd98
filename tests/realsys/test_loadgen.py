"""The load generator: trace replay, intended-time latency (no coordinated omission), job tracking,
bounded draining, closed loop, several processes, and a short real run through `dtq load`.

Fast tests drive realsys.targets.InMemoryTarget; the real run uses three in-process Design B nodes
(memory store) served from a background thread, so the CLI can run its own event loop."""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.config import CoreConfig
from model.results.runs import load_config, load_records, load_summary, load_workload
from model.results.schema import RequestRecord
from model.states import JobState
from model.workload import (
    ClosedLoop,
    Distribution,
    Op,
    OpenLoop,
    RequestMix,
    WorkloadSpec,
    attempt_uniform,
    open_loop_trace,
    prefill_jobs,
    workload_from_mapping,
    workload_to_mapping,
)
from realsys import loadgen
from realsys.cli import main
from realsys.client import DtqClient
from realsys.cluster import free_ports
from realsys.config import NodeConfig
from realsys.loadgen import (
    LoadResult,
    job_payload,
    run_load,
    run_load_processes,
    run_load_sync,
    summary_of,
    write_load_run,
)
from realsys.metrics import NodeMetrics
from realsys.mono import MonoNode
from realsys.server import RunningRole, start_role
from realsys.targets import DtqTarget, InMemoryTarget, TargetError, dtq_target_spec, make_target

pytestmark = pytest.mark.timeout(60)

MIX = RequestMix(submit=0.6, status=0.2, result=0.1, list=0.05, cancel=0.05)
IN_MEMORY = {"factory": "realsys.targets:InMemoryTarget", "kwargs": {}}


def open_spec(rate: float = 200.0, max_in_flight: int = 256, **kwargs: Any) -> WorkloadSpec:
    base: dict[str, Any] = {
        "arrival": OpenLoop(rate, max_in_flight),
        "mix": MIX,
        "duration": Distribution("exponential", 0.02),
        "run_time": 1.0,
        "warmup": 0.2,
        "seed": 3,
    }
    base.update(kwargs)
    return WorkloadSpec(**base)


def test_job_payload_is_json_padded_to_size() -> None:
    assert job_payload(0.05) == b'{"seconds":0.05}'
    for size in range(0, 80):
        payload = job_payload(0.125, size)
        assert json.loads(payload)["seconds"] == 0.125
        assert len(payload) == max(size, len(b'{"seconds":0.125}'))
    assert set(json.loads(job_payload(0.0, 64))) == {"seconds", "pad"}


# ---------------------------------------------------------------------------- open loop
async def test_open_loop_replays_the_trace_and_tracks_every_job() -> None:
    spec = open_spec()
    trace = open_loop_trace(spec)
    target = InMemoryTarget()
    started = time.monotonic()
    result = await run_load(target, spec, drain_timeout=2.0)
    assert time.monotonic() - started < spec.total_time + 2.5

    requests = result.requests
    assert len(requests) == len(trace)  # every request of the trace, once
    assert [r.intended_time for r in requests] == trace.times.tolist()
    assert all(r.status in ("OK", "FAILED_PRECONDITION") for r in requests)
    converted = [r for r, op in zip(requests, trace.ops.tolist(), strict=True) if r.op != op]
    assert all(r.op is Op.SUBMIT for r in converted) and len(converted) <= 3  # no job yet: a submit
    assert all(r.start_time >= r.intended_time - 0.002 for r in requests)

    accepted = {r.job_id for r in requests if r.op is Op.SUBMIT and r.status == "OK"}
    assert {j.job_id for j in result.jobs} == accepted and len(result.jobs) == len(accepted)
    about = {r.job_id for r in requests if r.op in (Op.STATUS, Op.RESULT, Op.CANCEL)}
    assert about <= accepted  # they target jobs submitted earlier
    for job in result.jobs:
        assert job.final_state in (JobState.SUCCEEDED, JobState.CANCELLED)
        assert job.submit_time <= job.accept_time <= job.end_time
    assert target.wait_calls == len(accepted)  # one long-poll per job, no busy polling

    stats = result.stats
    assert not stats.bottleneck and stats.processes == 1 and stats.held_back == 0
    assert stats.trace_rate is not None and stats.achieved_rate >= 0.95 * stats.trace_rate
    summary = summary_of(result, spec, run_id="t", kind="real", design="mono")
    in_window = [r for r in requests if 0.2 <= r.intended_time < 1.2]
    assert summary["latency_ms"]["all"]["count"] == len(in_window)


async def test_latency_counts_from_the_intended_time_through_a_stall() -> None:
    """Coordinated omission: the 20th call stalls 0.5 s and max_in_flight=1 holds back the requests
    due meanwhile. Their latency must include the wait, not just their own (fast) service."""
    spec = open_spec(rate=100.0, max_in_flight=1, mix=RequestMix(), run_time=1.5, warmup=0.0)
    target = InMemoryTarget(stalls=[(20, 0.5)])
    result = await run_load(target, spec, drain_timeout=1.0, track_jobs=False)
    requests = result.requests
    assert len(requests) == len(open_loop_trace(spec))
    stalled = requests[20]
    assert stalled.service_time >= 0.5
    delayed = [r for r in requests[21:] if r.intended_time < stalled.end_time]
    assert len(delayed) >= 20 and result.stats.held_back >= len(delayed)
    for r in delayed:  # held back, then fast: latency from intended time shows the stall
        assert r.latency >= stalled.end_time - r.intended_time - 0.01
        assert r.service_time < 0.1
    assert delayed[0].latency >= 0.4
    summary = summary_of(result, spec, run_id="t", kind="real", design="mono")
    assert summary["latency_ms"]["all"]["p95"] >= 100.0  # a third of the requests saw the stall

    # without the bound, an open loop does not wait for the stalled call: only it is slow
    free = await run_load(
        InMemoryTarget(stalls=[(20, 0.5)]),
        open_spec(rate=100.0, mix=RequestMix(), run_time=1.5, warmup=0.0),
        track_jobs=False,
    )
    assert sum(r.latency > 0.3 for r in free.requests) == 1


async def test_overload_is_flagged_and_bounded() -> None:
    """Service at 50/s against 100/s offered and max_in_flight=1: the generator cannot apply the load;
    requests still held back at the hard end are recorded as CANCELLED, so counts stay whole."""
    spec = open_spec(rate=100.0, max_in_flight=1, mix=RequestMix(), run_time=1.0, warmup=0.0)
    started = time.monotonic()
    result = await run_load(InMemoryTarget(service_time=0.02), spec, drain_timeout=0.3, track_jobs=False)
    assert time.monotonic() - started < spec.total_time + 1.0
    assert len(result.requests) == len(open_loop_trace(spec))
    assert any(r.status == "CANCELLED" for r in result.requests)
    assert result.stats.bottleneck and "below 95%" in result.stats.bottleneck_reason


async def test_unfinished_jobs_are_recorded_after_the_drain_timeout() -> None:
    spec = open_spec(rate=50.0, mix=RequestMix(), duration=Distribution("constant", 30.0), run_time=0.5)
    started = time.monotonic()
    result = await run_load(InMemoryTarget(), spec, drain_timeout=0.3)
    assert time.monotonic() - started < spec.total_time + 1.0
    assert result.jobs and all(math.isnan(j.end_time) for j in result.jobs)
    assert all(j.final_state is JobState.PENDING for j in result.jobs)
    summary = summary_of(result, spec, run_id="t", kind="real", design="mono")
    assert summary["jobs"]["unfinished"] == summary["jobs"]["submitted"] > 0


# ---------------------------------------------------------------------------- closed loop
async def test_closed_loop_clients_wait_for_answers_and_think() -> None:
    spec = WorkloadSpec(
        ClosedLoop(3, Distribution("constant", 0.01)),
        mix=RequestMix(submit=0.7, status=0.3),
        run_time=0.5,
        warmup=0.1,
    )
    result = await run_load(InMemoryTarget(service_time=0.005), spec, drain_timeout=1.0)
    by_client: dict[int, list[RequestRecord]] = {}
    for r in result.requests:
        by_client.setdefault(r.client, []).append(r)
    assert set(by_client) == {0, 1, 2}
    for rs in by_client.values():
        assert 10 <= len(rs) <= 45  # ~15 ms a round trip over 0.6 s
        for prev, nxt in itertools.pairwise(rs):
            assert nxt.intended_time >= prev.end_time + 0.009  # one at a time, with think time
    assert all(r.intended_time < spec.total_time for r in result.requests)
    assert result.stats.trace_rate is None
    summary = summary_of(result, spec, run_id="t", kind="real", design="mono")
    assert summary["offered_rate"] is None and summary["jobs"]["submitted"] > 0


def check_one_job_per_client(result: Any, spec: WorkloadSpec, hard_end: float) -> None:
    """Wait mode's invariants, from the records alone: each client's next request comes after its
    job ended, so its jobs never overlap and jobs in the system never exceed the clients."""
    assert isinstance(spec.arrival, ClosedLoop) and spec.arrival.wait_for_completion
    owner = {r.job_id: r.client for r in result.requests if r.op is Op.SUBMIT and r.status == "OK"}
    assert sorted(owner) == sorted(j.job_id for j in result.jobs)  # every accepted job was waited for
    ends = {j.job_id: (j.end_time if math.isfinite(j.end_time) else hard_end) for j in result.jobs}
    by_client: dict[int, list[RequestRecord]] = {}
    for r in result.requests:
        by_client.setdefault(r.client, []).append(r)
    for rs in by_client.values():
        rs.sort(key=lambda r: r.intended_time)
        for prev, nxt in itertools.pairwise(rs):
            after = ends[prev.job_id] if prev.job_id in owner and prev.op is Op.SUBMIT else prev.end_time
            assert nxt.intended_time >= after  # the client waited for its job before the next request
    events = sorted(
        [(j.submit_time, 1) for j in result.jobs] + [(ends[j.job_id], -1) for j in result.jobs],
        key=lambda e: (e[0], e[1]),  # an end before a start at the same instant
    )
    in_system = list(itertools.accumulate(step for _, step in events))
    assert max(in_system) <= spec.arrival.clients
    unfinished = [j for j in result.jobs if not math.isfinite(j.end_time)]
    assert len({owner[j.job_id] for j in unfinished}) == len(unfinished)  # at most one per client


def check_completed_per_s(result: Any, spec: WorkloadSpec) -> dict[str, Any]:
    summary = summary_of(result, spec, run_id="t", kind="real", design="mono")
    start, end = spec.warmup, spec.total_time
    terminal = [j for j in result.jobs if math.isfinite(j.end_time) and start <= j.end_time < end]
    assert summary["throughput"]["completed_per_s"] == pytest.approx(len(terminal) / (end - start))
    submitted = sum(1 for j in result.jobs if start <= j.submit_time < end)
    assert summary["jobs"]["submitted"] == submitted
    finished = sum(1 for j in result.jobs if math.isfinite(j.end_time))
    assert finished <= len(result.jobs)  # completions never exceed submits
    return summary


async def test_closed_loop_wait_mode_keeps_one_job_per_client() -> None:
    spec = WorkloadSpec(
        ClosedLoop(4, Distribution("constant", 0.002), wait_for_completion=True),
        mix=RequestMix(submit=0.8, status=0.2),
        duration=Distribution("constant", 0.03),
        run_time=0.8,
        warmup=0.2,
        seed=5,
    )
    target = InMemoryTarget(service_time=0.001)
    result = await run_load(target, spec, drain_timeout=1.0)
    check_one_job_per_client(result, spec, spec.total_time + 1.0)
    summary = check_completed_per_s(result, spec)
    # 4 clients, each ~35 ms a submit round: ~110 jobs/s; without waiting it would be ~2000/s
    assert 40 <= summary["throughput"]["completed_per_s"] <= 130
    assert summary["jobs"]["unfinished"] == 0 and summary["jobs"]["succeeded"] > 0
    assert target.wait_calls == len(result.jobs)  # one long-poll per job, no polling
    # the submit request's record is the SubmitJob call alone, not the wait
    submits = [r for r in result.requests if r.op is Op.SUBMIT]
    assert max(r.end_time - r.start_time for r in submits) < 0.025


async def test_closed_loop_wait_mode_counts_unfinished_jobs_and_stops_at_the_drain() -> None:
    spec = WorkloadSpec(
        ClosedLoop(3, wait_for_completion=True),
        duration=Distribution("constant", 30.0),
        run_time=0.4,
        warmup=0.1,
    )
    started = time.monotonic()
    result = await run_load(InMemoryTarget(), spec, drain_timeout=0.3)
    assert time.monotonic() - started < spec.total_time + 1.0
    assert len(result.jobs) == 3 and len(result.requests) == 3  # one submit each, never answered
    assert all(math.isnan(j.end_time) and j.final_state is JobState.PENDING for j in result.jobs)
    check_one_job_per_client(result, spec, spec.total_time + 0.3)
    summary = summary_of(result, spec, run_id="t", kind="real", design="mono")
    assert summary["throughput"]["completed_per_s"] == 0
    # the submits were intended at t=0, before the window: counted in the jobs only when in it
    assert summary["jobs"]["unfinished"] == summary["jobs"]["submitted"]


def test_closed_loop_wait_mode_in_several_processes() -> None:
    spec = WorkloadSpec(
        ClosedLoop(4, wait_for_completion=True),
        duration=Distribution("constant", 0.02),
        run_time=0.8,
        warmup=0.2,
    )
    result = run_load_processes(IN_MEMORY, spec, 2, drain_timeout=1.0)
    assert {r.client for r in result.requests} == {0, 1, 2, 3}
    check_one_job_per_client(result, spec, spec.total_time + 1.0)
    summary = check_completed_per_s(result, spec)
    assert 100 <= summary["throughput"]["completed_per_s"] <= 200  # 4 clients / ~20 ms


# ---------------------------------------------------------------------------- several processes
def test_processes_split_the_trace_and_merge_to_the_union() -> None:
    spec = open_spec(rate=150.0, run_time=1.0)
    trace = open_loop_trace(spec)
    result = run_load_processes(IN_MEMORY, spec, 2, drain_timeout=1.0)
    assert result.stats.processes == 2
    assert [r.intended_time for r in result.requests] == trace.times.tolist()
    for client in (0, 1):
        mine = [r.intended_time for r in result.requests if r.client == client]
        assert mine == trace.times[client::2].tolist()  # round-robin by trace index
    accepted = [r.job_id for r in result.requests if r.op is Op.SUBMIT and r.status == "OK"]
    assert sorted(j.job_id for j in result.jobs) == sorted(accepted)
    # both children started on the common clock: each one's first request is on time
    for client in (0, 1):
        first = next(r for r in result.requests if r.client == client)
        assert first.start_time - first.intended_time < 0.25


def test_make_target_builds_from_json() -> None:
    target = make_target({"factory": "realsys.targets:InMemoryTarget", "kwargs": {"service_time": 0.1}})
    assert isinstance(target, InMemoryTarget) and target.service_time == 0.1
    with pytest.raises(ValueError):
        make_target({"factory": "nothing"})


# ---------------------------------------------------------------------------- a real cluster


class ThreadCluster:
    """Three Design B nodes (memory store) on an event loop of their own, in a background thread."""

    def __init__(self, tmp: Path) -> None:
        names = ("n1", "n2", "n3")
        self.addresses = {n: f"127.0.0.1:{p}" for n, p in zip(names, free_ports(3), strict=True)}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.running: list[RunningRole] = []

        async def start() -> None:
            for name in names:
                config = NodeConfig(
                    design="mono",
                    role="node",
                    name=name,
                    listen=self.addresses[name],
                    data_dir=tmp / name,
                    store="memory",
                    slots=2,
                    core=CoreConfig(),
                    peers=dict(self.addresses),
                    metrics_port=-1,
                    rpc_timeout=2.0,
                    fetch_wait=1.0,
                    steal_interval=0.02,
                    drain_timeout=1.0,
                )
                metrics = NodeMetrics(name, "node", "mono")
                self.running.append(await start_role(config, MonoNode(config, metrics), metrics))

        asyncio.run_coroutine_threadsafe(start(), self.loop).result(timeout=20)

    def close(self) -> None:
        async def stop() -> None:
            await asyncio.gather(*(r.stop() for r in self.running))

        try:
            asyncio.run_coroutine_threadsafe(stop(), self.loop).result(timeout=20)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout=10)
            self.loop.close()


@pytest.fixture(scope="module")
def mono(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadCluster]:
    cluster = ThreadCluster(tmp_path_factory.mktemp("mono"))
    try:
        yield cluster
    finally:
        cluster.close()


async def test_dtq_target_maps_errors(mono: ThreadCluster) -> None:
    target = DtqTarget(list(mono.addresses.values()), timeout=5.0, design="mono")
    try:
        with pytest.raises(TargetError) as info:
            await target.status("n1-00000000-0000000999")
        assert info.value.code == "NOT_FOUND"
        long_job = await target.submit("sleep", job_payload(30.0))
        with pytest.raises(TargetError) as info:
            await target.result(long_job)
        assert info.value.code == "FAILED_PRECONDITION"
        assert await target.cancel(long_job) in ("CANCELLED", "CANCELLING")
        assert (await target.wait(long_job, 5.0))[0] == "CANCELLED"
        quick = await target.submit("sleep", job_payload(0.01, 64))
        assert await target.wait(quick, 5.0) == ("SUCCEEDED", 1)
        assert await target.result(quick) == "SUCCEEDED"
        assert await target.status(quick) == "SUCCEEDED"
        assert 1 <= await target.list(2) <= 2
        with pytest.raises(TargetError) as info:
            await target.submit("no such type!", b"")
        assert info.value.code == "INVALID_ARGUMENT"
    finally:
        await target.close()


def test_dtq_load_writes_a_valid_run(mono: ThreadCluster, tmp_path: Path) -> None:
    spec = open_spec(
        rate=40.0,
        mix=RequestMix(submit=0.7, status=0.2, result=0.1),
        duration=Distribution("exponential", 0.01),
        run_time=1.5,
        warmup=0.5,
        payload_bytes=64,
    )
    workload = tmp_path / "w.yaml"
    workload.write_text(json.dumps(workload_to_mapping(spec)))  # JSON is YAML
    argv = ["load", "--workload", str(workload), "--design", "mono", "--runs-dir", str(tmp_path / "runs")]
    argv += ["--run-id", "real-mono-test", "--drain", "5"]
    for address in mono.addresses.values():
        argv += ["--addr", address]
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 0

    run_dir = tmp_path / "runs" / "real-mono-test"
    summary = load_summary(run_dir)
    requests, jobs = load_records(run_dir)
    assert len(requests) == len(open_loop_trace(spec))
    in_window = [r for r in requests if 0.5 <= r.intended_time < 2.0]
    assert summary["latency_ms"]["all"]["count"] == len(in_window)
    for op in ("submit", "status", "result"):
        count = sum(r.op.name.lower() == op for r in in_window)
        assert summary["latency_ms"].get(op, {"count": 0})["count"] == count
    errors = [r for r in in_window if r.status != "OK"]
    assert sum(summary["errors"].values()) == len(errors)
    assert set(summary["errors"]) <= {"FAILED_PRECONDITION"}  # results of jobs still running
    window_jobs = [j for j in jobs if 0.5 <= j.submit_time < 2.0]
    assert summary["jobs"]["submitted"] == len(window_jobs) > 0
    assert summary["jobs"]["succeeded"] == len(window_jobs) and summary["jobs"]["unfinished"] == 0
    assert summary["completion_ms"]["count"] == len(window_jobs)
    assert np.all([j.end_time >= j.accept_time >= j.submit_time for j in jobs])
    assert summary["kind"] == "real" and summary["design"] == "mono" and summary["offered_rate"] == 40.0
    assert summary["loadgen"]["processes"] == 1


def test_dtq_load_records_a_host_probe_before_the_load(
    mono: ThreadCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--host-probe: one probe (the lab's, in a child process; stubbed here) taken before the load
    starts, recorded as parameters.host_probe as the experiment runner records it."""
    taken: list[float] = []
    probe = {"busy_us": 300.0, "wake_us": 100.0, "wake_gap_us": 400.0, "gap_s": 0.01}

    def fake_probe() -> dict[str, float]:
        taken.append(time.time())
        return dict(probe)

    monkeypatch.setattr(loadgen, "take_probe", fake_probe)
    spec = open_spec(rate=20.0, mix=RequestMix(), duration=Distribution(), run_time=0.5, warmup=0.0)
    workload = tmp_path / "w.yaml"
    workload.write_text(json.dumps(workload_to_mapping(spec)))
    argv = ["load", "--workload", str(workload), "--design", "mono", "--runs-dir", str(tmp_path / "runs")]
    argv += ["--drain", "2", "--host-probe", "--no-records"]
    for address in mono.addresses.values():
        argv += ["--addr", address]
    for run_id, wanted in (("real-mono-probed", True), ("real-mono-unprobed", False)):
        taken.clear()
        args = [a for a in argv if wanted or a != "--host-probe"] + ["--run-id", run_id]
        with pytest.raises(SystemExit) as exited:
            main(args)
        assert exited.value.code == 0
        parameters = load_config(tmp_path / "runs" / run_id)["parameters"]
        assert (parameters.get("host_probe") == probe) is wanted and len(taken) == int(wanted)


@pytest.mark.parametrize("submit_wait", [0.0, 10.0])
def test_closed_loop_wait_mode_against_a_real_cluster(mono: ThreadCluster, submit_wait: float) -> None:
    """Also with the synchronous-invocation client (one SubmitJob with wait_timeout per job)."""
    spec = WorkloadSpec(
        ClosedLoop(6, wait_for_completion=True),
        mix=RequestMix(submit=0.7, status=0.2, result=0.1),
        duration=Distribution("exponential", 0.02),
        run_time=1.0,
        warmup=0.3,
        seed=11,
    )
    target_spec = dtq_target_spec(list(mono.addresses.values()), 5.0, "mono", submit_wait=submit_wait)
    result = run_load_processes(target_spec, spec, 2, drain_timeout=5.0)
    check_one_job_per_client(result, spec, spec.total_time + 5.0)
    summary = check_completed_per_s(result, spec)
    assert summary["jobs"]["unfinished"] == 0 and summary["jobs"]["succeeded"] > 10
    assert summary["completion_ms"]["count"] == summary["jobs"]["submitted"]


# ---------------------------------------------------------------------------- per-job settings, for real
def _run_on_mono(mono: ThreadCluster, spec: WorkloadSpec) -> LoadResult:
    """`spec` through the load generator against every node of `mono` (5 s timeouts and drain)."""
    return run_load_sync(dtq_target_spec(list(mono.addresses.values()), 5.0, "mono"), spec, drain_timeout=5.0)


def _submits_by_time(spec: WorkloadSpec) -> dict[float, Any]:
    trace = open_loop_trace(spec)
    return {float(trace.times[i]): trace.job(i) for i in range(len(trace)) if trace.ops[i] == Op.SUBMIT}


def test_a_fail_workload_fails_as_drawn_with_its_own_settings(mono: ThreadCluster) -> None:
    """Each job's own spec reaches the cluster (priority, retry policy, labels, payload parameters),
    and the `fail` handler fails the attempts the job's seed picks: the draws the simulator makes."""
    spec = workload_from_mapping(
        {
            "arrival": {"kind": "open", "rate": 40},
            "job_type": "fail",
            "duration": {"kind": "constant", "mean": 0.005},
            "payload": {"probability": 0.5},
            "max_attempts": 3,
            "backoff": {"initial": 0.02, "multiplier": 2},
            "priority": {"kind": "categorical", "values": {"0": 0.5, "7": 0.5}},
            "labels": {
                "tenant": {"kind": "categorical", "values": {"a": 0.5, "b": 0.5}},
                "test": "fail-drawn",
            },
            "run_time": 1.0,
            "warmup": 0.0,
            "seed": 31,
        }
    )
    drawn = _submits_by_time(spec)
    result = _run_on_mono(mono, spec)
    assert len(result.jobs) == len(drawn) > 20
    states = collections.Counter()
    for record in result.jobs:
        job = drawn[record.submit_time]
        failing = [attempt_uniform(job.seed, a) < 0.5 for a in (1, 2, 3)]
        expected = next((a for a, fails in enumerate(failing, 1) if not fails), 3)
        assert record.attempts == expected and record.priority == job.priority, (record, failing)
        assert record.final_state is (JobState.FAILED if all(failing) else JobState.SUCCEEDED)
        assert record.reason == ("HANDLER_ERROR" if all(failing) else "")
        states[record.final_state] += 1
    assert states[JobState.FAILED] > 0 and states[JobState.SUCCEEDED] > 0

    async def specs() -> list[Any]:
        async with DtqClient(list(mono.addresses.values())) as client:
            return [job async for job in client.list_all(labels={"test": "fail-drawn"})]

    listed = asyncio.run(specs())
    assert len(listed) == len(drawn)
    by_id = {r.job_id: drawn[r.submit_time] for r in result.jobs}
    for pb in listed:
        job = by_id[pb.job_id]
        assert pb.spec.priority == job.priority and pb.spec.retry.max_attempts == 3
        assert dict(pb.spec.labels) == {"tenant": dict(job.labels)["tenant"], "test": "fail-drawn"}


def test_timeouts_are_recorded_with_their_reason(mono: ThreadCluster) -> None:
    spec = workload_from_mapping(
        {
            "arrival": {"kind": "open", "rate": 10},
            "duration": {"kind": "constant", "mean": 0.5},
            "execution_timeout": 0.05,
            "max_attempts": 2,
            "backoff": {"initial": 0.01},
            "run_time": 0.6,
            "warmup": 0.0,
            "seed": 5,
        }
    )
    result = _run_on_mono(mono, spec)
    assert result.jobs
    for record in result.jobs:
        assert (record.final_state, record.attempts, record.reason) == (JobState.FAILED, 2, "TIMEOUT")
    summary = summary_of(result, spec, run_id="t", kind="real", design="mono")
    assert summary["outcomes"]["timed_out"] == 1.0 and summary["outcomes"]["attempts_mean"] == 2.0


def test_dtq_load_ages_a_cluster_first(mono: ThreadCluster) -> None:
    prefill = {"finished": 30, "pending": 6, "states": {"succeeded": 0.6, "failed": 0.2, "cancelled": 0.2}}
    spec = workload_from_mapping(
        {
            "arrival": {"kind": "open", "rate": 10},
            "duration": {"kind": "constant", "mean": 0.01},
            "labels": {"test": "aged"},
            "prefill": prefill,
            "run_time": 1.0,
            "warmup": 0.0,
            "seed": 2,
        }
    )
    drawn = prefill_jobs(spec)
    result = _run_on_mono(mono, spec)

    async def listed() -> collections.Counter[str]:
        async with DtqClient(list(mono.addresses.values())) as client:
            return collections.Counter(
                [JobState(job.state).name async for job in client.list_all(labels={"test": "aged"})]
            )

    counts = asyncio.run(listed())
    assert counts["FAILED"] == drawn.states.count("failed")
    assert counts["CANCELLED"] == drawn.states.count("cancelled")
    # the finished ones, the pending ones (10 ms each: run by the end) and the run's own jobs
    assert len(result.jobs) > 3
    assert counts["SUCCEEDED"] == drawn.states.count("succeeded") + 6 + len(result.jobs)
    with pytest.raises(ValueError, match="takes no per-job settings"):
        asyncio.run(
            run_load(InMemoryTarget(), workload_from_mapping({**workload_to_mapping(spec), "priority": 1}))
        )


def test_a_recorded_real_run_replays_on_the_real_system(mono: ThreadCluster, tmp_path: Path) -> None:
    spec = workload_from_mapping(
        {
            "arrival": {"kind": "open", "rate": 40},
            "mix": {"submit": 0.7, "status": 0.3},
            "duration": {"kind": "exponential", "mean": 0.01},
            "run_time": 1.0,
            "warmup": 0.2,
            "seed": 3,
        }
    )
    target = dtq_target_spec(list(mono.addresses.values()), 5.0, "mono")
    recorded = run_load_sync(target, spec, drain_timeout=5.0)
    write_load_run(
        tmp_path,
        "rec",
        recorded,
        spec,
        kind="real",
        design="mono",
        parameters={},
        started_at="",
        provenance_info={},
    )
    (tmp_path / "replay.yaml").write_text("arrival: {kind: replay, run: rec, speed: 2}\n")
    replay = load_workload(tmp_path / "replay.yaml")
    replayed = run_load_sync(target, replay, drain_timeout=5.0)
    assert [r.op for r in replayed.requests] == [r.op for r in recorded.requests]
    assert [r.intended_time for r in replayed.requests] == pytest.approx(
        [r.intended_time / 2 for r in recorded.requests]
    )
    assert sorted(j.duration for j in replayed.jobs) == sorted(j.duration for j in recorded.jobs)
    assert all(j.final_state is JobState.SUCCEEDED for j in replayed.jobs)
