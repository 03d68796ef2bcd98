"""sim/tracing.py: a simulated job's per-hop spans have the real system's hop names, roles and parent
structure (realsys/tracing.py, tests/realsys/test_tracing.py), form a tree under the job's root, are
the same for the same seed, and perturb nothing: a traced run's records, summary and counters are
the untraced run's (tests/sim/test_golden.py's pinned digests)."""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import pytest

import sim
from dtq.v1 import client_pb2, internal_pb2, worker_pb2
from model.actions import PutResult
from model.errors import InvalidArgument
from model.results.runs import load_workload
from model.spans import HopSpan, job_root_span_id, job_trace_id, jobs_of, span_hex, timeline, trace_hex
from model.workload import ClosedLoop, Distribution, WorkloadSpec
from realsys.tracing import UNTRACED_METHODS, read_spans
from sim.api import build
from sim.micro import ROLES
from sim.tracing import ENTRIES, MICRO_HOPS, MONO_HOPS, Hop, SimTracer, _Request
from tests.realsys.test_tracing import REAL_MICRO_HOPS
from tests.sim.test_golden import CASES, GOLDEN, digest


def echo_loop(clients: int = 1, run_time: float = 3.0, seed: int = 1) -> WorkloadSpec:
    """Closed loop: submit an echo job, wait for it (WaitJob), think 0.5 s, again."""
    return WorkloadSpec(
        ClosedLoop(clients, Distribution("constant", 0.5), wait_for_completion=True),
        job_type="echo",
        duration=Distribution("constant", 0.0),
        run_time=run_time,
        warmup=0.0,
        seed=seed,
    )


def run(config: sim.SimConfig) -> sim.SimResult:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # placeholder costs: the structure is the point
        return sim.run(config)


def assert_tree(spans: Iterable[HopSpan]) -> None:
    """Every span of a job is in its trace and hangs from the job's root through spans of the job."""
    by_job: dict[str, list[HopSpan]] = {}
    for s in spans:
        by_job.setdefault(s.job_id, []).append(s)
    for job_id, mine in by_job.items():
        root = span_hex(job_root_span_id(job_id))
        ids = {s.span_id: s for s in mine}
        assert len(ids) == len(mine), "span ids are unique"
        for s in mine:
            assert s.trace_id == trace_hex(job_trace_id(job_id))
            if s.parent_id != root:  # a hop starts while the hop that made it is being served
                assert s.parent_id in ids and ids[s.parent_id].start <= s.start, s
            seen = {s.span_id}
            parent = s.parent_id
            while parent != root:
                assert parent in ids, (s, parent)
                assert parent not in seen, "a cycle"
                seen.add(parent)
                parent = ids[parent].parent_id


def test_every_traced_name_is_a_real_traced_rpc() -> None:
    methods = {
        f"/{service.full_name}/{method.name}"
        for module in (client_pb2, internal_pb2, worker_pb2)
        for service in module.DESCRIPTOR.services_by_name.values()
        for method in service.methods
    }
    hops = [*MICRO_HOPS.values(), *MONO_HOPS.values(), *ENTRIES.values()]
    for hop in hops:
        assert hop.name in methods, hop.name
        assert hop.name.rsplit("/", 1)[-1] not in UNTRACED_METHODS
    assert {h.role for h in MICRO_HOPS.values()} | {"gateway", "worker"} == set(ROLES)


def test_the_tables_name_the_simulators_methods_and_parameters() -> None:
    """A renamed method or parameter stops the tracer when it installs, not silently later."""
    for design in ("micro", "mono"):
        _, cluster, _ = build(sim.SimConfig(design, echo_loop()))
        SimTracer(cluster, (1,))  # every table entry found
    with pytest.raises(TypeError, match="no parameter 'job_ids'"):
        _Request(Hop("/dtq.v1.Queue/Ack", jobs="job_ids"), lambda ids: None)
    read = _Request(MICRO_HOPS["_result_put"], lambda put: None).read
    assert read((PutResult("a-1-01", 3, b""),), {}) == (["a-1-01"], 3)


def test_a_simulated_design_a_job_has_the_real_hops_across_six_roles() -> None:
    result = run(sim.SimConfig("micro", echo_loop(), trace=(2,)))
    assert result.stats["trace_missing"] == []
    job_id = result.spans[0].job_id
    assert {s.job_id for s in result.spans} == {job_id}
    rows = timeline(result.spans, job_id)
    found = [(r.span.role, r.span.hop) for r in rows]
    for expected in REAL_MICRO_HOPS:
        assert expected in found, (expected, found)
    assert {role for role, _ in found} == set(ROLES)
    assert all(r.span.design == "micro" and r.span.status == "OK" for r in rows)
    depth = {r.span.hop: r.depth for r in rows}
    # the report's hops hang under it, as on the real cluster
    assert depth["worker/run"] == 0
    assert depth["worker/report"] == 1 < depth["ReportResult"] < depth["CompleteAttempt"] < depth["PutResult"]
    # the wait: the gateway's WaitJob made the job service's
    names = {r.span.name: r.depth for r in rows}
    assert names["/dtq.v1.TaskQueue/WaitJob"] == 0 and names["/dtq.v1.JobStore/WaitJob"] == 1
    attempts = {r.span.hop: r.span.attempt for r in rows}
    assert attempts["ReportResult"] == attempts["PutResult"] == 1 and attempts["CreateJob"] == 0
    # the timeline counts from the submit; the worker's long-poll was waiting before it
    assert rows[0].span.hop == "FetchWork" and rows[0].offset < 0
    assert next(r.offset for r in rows if r.span.hop == "SubmitJob") == 0.0
    for r in rows:
        assert r.span.end >= r.span.start >= 0
    assert_tree(result.spans)


def test_a_simulated_design_b_job_has_its_hops() -> None:
    result = run(sim.SimConfig("mono", echo_loop(), trace=(1, 3)))
    jobs = {s.job_id for s in result.spans}
    assert len(jobs) == 2
    for job_id in jobs:
        found = [(r.span.node, r.span.role, r.span.hop) for r in timeline(result.spans, job_id)]
        owner = job_id.split("-")[0]
        assert (owner, "node", "SubmitJob") in found and (owner, "node", "worker/run") in found
        assert (owner, "node", "worker/report") in found
    assert_tree(result.spans)


@pytest.mark.parametrize("name", ["mixed-micro", "mixed-mono", "many-nodes-steal"])
def test_tracing_changes_no_outcome_and_every_trace_is_a_tree(name: str) -> None:
    config = CASES[name]()
    count = 300 if name == "many-nodes-steal" else 40  # steals are rare: 0.1 a job
    traced = run(replace(config, trace=tuple(range(1, count + 1))))
    stats = traced.stats
    assert stats.pop("trace_missing") == [] and stats.pop("trace_submitted") >= count
    assert digest(traced) == GOLDEN[name]  # the untraced run's pinned digest
    assert len({s.job_id for s in traced.spans}) == count
    assert_tree(traced.spans)
    hops = {s.hop for s in traced.spans}
    if name == "mixed-micro":  # status, result and cancel requests of traced jobs
        assert {"GetJobStatus", "GetJob", "CancelJob", "GetJobResult"} <= hops, hops
    if name == "mixed-mono":  # requests that reached a node other than the owner are forwarded once
        ids = {s.span_id: s for s in traced.spans}
        forwarded = [
            s
            for s in traced.spans
            if s.hop == "GetJobStatus" and s.parent_id in ids and ids[s.parent_id].hop == "GetJobStatus"
        ]
        assert forwarded and all(ids[s.parent_id].node != s.node for s in forwarded)
    if name == "many-nodes-steal":  # stolen jobs: StealWork at the owner, the thief's report to it
        assert "StealWork" in hops and "ReportResult" in hops, hops


def test_spans_are_the_same_for_a_seed_and_chosen_by_id() -> None:
    first = run(sim.SimConfig("micro", echo_loop(2), trace=(1, 2, 3)))
    again = run(sim.SimConfig("micro", echo_loop(2), trace=(1, 2, 3)))
    assert first.spans == again.spans and len(first.spans) > 30
    job_id = first.spans[0].job_id
    by_id = run(sim.SimConfig("micro", echo_loop(2), trace=(job_id,)))
    assert by_id.spans == [s for s in first.spans if s.job_id == job_id]
    other_seed = run(sim.SimConfig("micro", echo_loop(2), seed=9, trace=(1, 2, 3)))
    assert [s.start for s in other_seed.spans] != [s.start for s in first.spans]


def test_a_saved_run_keeps_its_spans(tmp_path: Path) -> None:
    result = run(sim.SimConfig("mono", echo_loop(run_time=1.0), trace=(1,)))
    again = sim.SimResult.load(result.save(tmp_path))
    assert again.spans == result.spans and again.config.trace == (1,) and result.spans
    untraced = run(sim.SimConfig("mono", echo_loop(run_time=1.0), run_id="plain")).save(tmp_path)
    assert not (untraced / "spans.jsonl").exists() and sim.SimResult.load(untraced).spans == []


def test_off_by_default_and_chosen_jobs_are_checked() -> None:
    plain = run(sim.SimConfig("micro", echo_loop(run_time=1.0)))
    assert plain.spans == [] and "trace_missing" not in plain.stats
    late = run(sim.SimConfig("micro", echo_loop(run_time=1.0), trace=(1, 500, "job-9-nope")))
    assert late.stats["trace_missing"] == [500, "job-9-nope"]
    for bad in ((0,), ("",), (1.5,)):
        with pytest.raises(InvalidArgument, match="trace"):
            sim.SimConfig("micro", echo_loop(), trace=bad)  # type: ignore[arg-type]
    config = sim.SimConfig.from_mapping(
        {"design": "mono", "workload": {"arrival": {"kind": "closed", "clients": 1}}, "trace": [2]}
    )
    assert config.trace == (2,)


@pytest.mark.parametrize("design", ["micro", "mono"])
def test_simulated_hops_are_a_real_jobs_hop_for_hop(design: str) -> None:
    """data/traces/<design>-echo/real: a real cluster's trace of this workload (sqlite store, one
    client waiting for each echo job); every simulated job has the real job's hops (name, process,
    attempt, depth in the tree), no more, no fewer."""
    data = Path(__file__).resolve().parents[2] / "data" / "traces" / f"{design}-echo"
    real = list(read_spans(data / "real"))
    workload = load_workload(data / "workload.yaml")
    simulated = run(sim.SimConfig(design, workload, trace=(1, 2, 3, 4, 5))).spans  # type: ignore[arg-type]

    def shape(spans: list[HopSpan], job_id: str) -> list[tuple[str, str, str, int, int]]:
        return sorted(
            (r.span.name, r.span.node, r.span.role, r.span.attempt, r.depth) for r in timeline(spans, job_id)
        )

    assert jobs_of(real) == jobs_of(simulated) and len(jobs_of(real)) == 5
    for job_id in jobs_of(real):
        assert shape(simulated, job_id) == shape(real, job_id), job_id
