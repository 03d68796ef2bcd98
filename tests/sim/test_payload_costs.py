"""Per-byte costs (SimParams.per_byte): each path that carries a payload charges its CPU per byte to
the process that moves it, and nothing else changes; the parameters load, override and scale."""

from __future__ import annotations

import dataclasses

import pytest

import sim
from model.errors import InvalidArgument
from model.workload import Choice, Distribution, OpenLoop, RequestMix, WorkloadSpec
from sim.hostscale import HostScale
from sim.params import SimParams

SIZE = 100_000
PER_BYTE = 1e-9  # 100 us per job per key


def _submits(
    payload: int = SIZE,
    rate: float = 100.0,
    max_in_flight: int = 64,
    duration: Distribution | None = None,
    run_time: float = 1.0,
) -> WorkloadSpec:
    return WorkloadSpec(
        OpenLoop(rate, max_in_flight=max_in_flight),
        RequestMix(),
        duration=duration or Distribution("constant", 0.001),
        payload_bytes=payload,
        run_time=run_time,
        warmup=0.0,
        seed=4,
    )


def _busy(design: str, per_byte: dict[str, float], payload: int = SIZE) -> tuple[dict[str, float], int]:
    """Per process, CPU seconds used in an ideal-cost run (only per-byte costs take CPU); jobs run."""
    params = SimParams.ideal(per_byte=per_byte, nodes=2, slots=4)
    env, cluster, loadgen = sim.api.build(sim.SimConfig(design, _submits(payload), params))  # type: ignore[arg-type]
    cluster.start()
    loadgen.start()
    env.run(until=loadgen.done)
    _, jobs = loadgen.finish()
    assert all(j.final_state.name == "SUCCEEDED" for j in jobs)
    return {p.name: p.busy_time for p in cluster.procs}, len(jobs)


@pytest.mark.parametrize(
    ("design", "key", "procs"),
    [
        ("mono", "node.SubmitJob", ("n1", "n2")),
        ("mono", "commit", ("n1", "n2")),
        ("mono", "node.launch", ("n1", "n2")),
        ("mono", "loadgen.SubmitJob", ("loadgen0",)),
        ("micro", "gateway.SubmitJob", ("gateway",)),
        ("micro", "job.CreateJob", ("job",)),
        ("micro", "commit", ("job",)),
        ("micro", "job.LeaseJobs", ("job",)),
        ("micro", "coordinator.FetchWork", ("coordinator",)),
        ("micro", "worker.launch", ("worker",)),
        ("micro", "loadgen.SubmitJob", ("loadgen0",)),
    ],
)
def test_each_key_charges_its_process_per_byte_per_job(design: str, key: str, procs: tuple[str, ...]) -> None:
    busy, jobs = _busy(design, {key: PER_BYTE})
    assert jobs > 50
    assert sum(busy[p] for p in procs) == pytest.approx(jobs * SIZE * PER_BYTE, rel=1e-9)
    assert sum(v for p, v in busy.items() if p not in procs) == 0.0
    empty, _ = _busy(design, {key: PER_BYTE}, payload=0)  # no payload, nothing charged
    assert sum(empty.values()) == 0.0


def test_a_stolen_job_charges_its_victim_per_byte() -> None:
    """StealWork moves the payload from the owner (victim) to the thief: the victim's CPU."""
    params = SimParams.ideal(per_byte={"node.StealWork": PER_BYTE}, nodes=2, slots=2)
    # bursts queue at one node while the other idles
    workload = _submits(rate=6.0, max_in_flight=256, duration=Distribution("exponential", 0.3), run_time=4.0)
    env, cluster, loadgen = sim.api.build(sim.SimConfig("mono", workload, params))
    cluster.start()
    loadgen.start()
    env.run(until=loadgen.done)
    stolen = cluster.counters.get("stolen", 0)
    assert stolen > 0
    assert sum(p.busy_time for p in cluster.procs) == pytest.approx(stolen * SIZE * PER_BYTE, rel=1e-9)


def test_per_byte_loads_overrides_and_moves_with_the_host() -> None:
    params = SimParams.from_mapping({"per_byte": {"node.SubmitJob": 2e-9, "commit": 1e-9}})
    assert dict(params.per_byte) == {"node.SubmitJob": 2e-9, "commit": 1e-9}
    moved = params.with_overrides({"per_byte.node.launch": 3e-9, "per_byte.commit": 4e-9})
    assert dict(moved.per_byte) == {"node.SubmitJob": 2e-9, "commit": 4e-9, "node.launch": 3e-9}
    assert SimParams.from_mapping(moved.to_mapping()) == moved
    scaled = moved.on_host(HostScale(cpu=2.0))
    assert scaled.per_byte["node.launch"] == pytest.approx(6e-9)
    with pytest.raises(InvalidArgument, match=r"per_byte\.commit"):
        SimParams.from_mapping({"per_byte": {"commit": -1.0}})
    with pytest.raises(InvalidArgument, match="per_byte"):
        SimParams.from_mapping({"per_byte": 3})


@pytest.mark.parametrize(
    ("design", "key", "procs"),
    [("mono", "node.SubmitJob", ("n1", "n2")), ("micro", "job.CreateJob", ("job",))],
)
def test_each_job_is_charged_for_its_own_drawn_size(design: str, key: str, procs: tuple[str, ...]) -> None:
    """Payload sizes drawn per job (a categorical of 0 and SIZE bytes): the cost follows each job's
    own size, as the core's per-job draws carry it."""
    spec = dataclasses.replace(_submits(), payload_bytes=Choice(((0, 0.5), (SIZE, 0.5))))
    params = SimParams.ideal(per_byte={key: PER_BYTE}, nodes=2, slots=4)
    env, cluster, loadgen = sim.api.build(sim.SimConfig(design, spec, params))  # type: ignore[arg-type]
    cluster.start()
    loadgen.start()
    env.run(until=loadgen.done)
    loadgen.finish()
    sizes = [cluster.payload_of(job_id) for job_id in cluster.draws]
    assert set(sizes) == {0, SIZE} and 0.2 < sizes.count(SIZE) / len(sizes) < 0.8
    busy = sum(p.busy_time for p in cluster.procs if p.name in procs)
    assert busy == pytest.approx(sum(sizes) * PER_BYTE, rel=1e-9)
