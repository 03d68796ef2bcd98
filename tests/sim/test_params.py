from __future__ import annotations

import json

import numpy as np
import pytest

import sim
from model.errors import InvalidArgument
from model.workload import OpenLoop, WorkloadSpec
from sim.dist import Dist
from sim.hostscale import HostScale
from sim.params import SimParams, load_host_probe, load_params, parse_override


def test_mapping_round_trip_is_exact() -> None:
    params = SimParams(cores=4, nodes=3, slots=9)
    again = SimParams.from_mapping(json.loads(json.dumps(params.to_mapping())))
    assert again == params


def test_overrides_set_nested_fields() -> None:
    params = SimParams().with_overrides(
        {
            "cores": 8,
            "network.mean": 5e-5,
            "core.lease_duration": 4.0,
            "service.node.SubmitJob.mean": 3e-4,
            "service.job.GetJob": 1e-4,  # a number: a constant
            "service.node.WaitJob.wake.mean": 7e-5,  # method names may contain dots
            "per_item.node.ListJobs.merge": 2e-5,
        }
    )
    assert params.service_dist("job", "GetJob") == Dist("constant", 1e-4)
    assert params.service_dist("node", "WaitJob.wake").mean == pytest.approx(7e-5)
    assert params.item_cost("node", "ListJobs.merge") == 2e-5
    assert params.cores == 8
    assert params.network.mean == pytest.approx(5e-5) and params.network.kind == "lognormal"
    assert params.core.lease_duration == 4.0
    assert params.service_dist("node", "SubmitJob").mean == pytest.approx(3e-4)
    assert params.service_dist("node", "ListJobs") == SimParams().service_dist("node", "ListJobs")
    assert [k for k, _ in params.overrides][:2] == ["cores", "network.mean"]  # recorded, in order


def test_unknown_or_bad_values_are_refused() -> None:
    with pytest.raises(InvalidArgument):
        SimParams.from_mapping({"corse": 2})
    with pytest.raises(InvalidArgument):
        SimParams().with_overrides({"cores": "two"})
    with pytest.raises(InvalidArgument):
        _ = SimParams(slots=12, nodes=5).slots_per_node  # Design B splits slots evenly
    with pytest.raises(InvalidArgument):
        Dist("lognormal", 1e-3)  # needs sigma
    assert SimParams(slots=12, nodes=5, node_slots=2).slots_per_node == 2


def test_distributions_have_the_stated_mean() -> None:
    rng = np.random.default_rng(1)
    for dist in (Dist("exponential", 2e-4), Dist("lognormal", 2e-4, 0.8), Dist.of({"samples": [1e-4, 3e-4]})):
        assert abs(dist.sample(rng, 200_000).mean() / dist.mean - 1) < 0.02


def test_calibration_file_and_cli_overrides(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "box.json"
    path.write_text(json.dumps({"parameters": {"cores": 6, "commit": {"kind": "constant", "mean": 1e-4}}}))
    params = load_params(path)
    assert params.name == "box" and params.cores == 6 and params.commit == Dist("constant", 1e-4)
    assert parse_override("network.mean=4e-5") == ("network.mean", 4e-5)
    assert parse_override("store=memory") == ("store", "memory")


def test_checkpoint_threads_use_cores_not_loops() -> None:
    workload = WorkloadSpec(OpenLoop(20.0), run_time=1.0, warmup=0.2)
    params = SimParams(checkpoint=Dist("constant", 0.01), checkpoint_interval=0.1)
    for design, stores in (("mono", 6), ("micro", 3)):
        result = sim.run(sim.SimConfig(design, workload, params))  # type: ignore[arg-type]
        busy = {name: u for name, u in result.stats["utilisation"].items() if name.endswith("-checkpoint")}
        assert len(busy) == stores and all(0.08 < u <= 0.1 for u in busy.values()), busy


# ---------------------------------------------------------------------------- host scale (issue 7)
PROBE = {"busy_us": 200.0, "wake_us": 100.0, "wake_gap_us": 300.0, "gap_s": 0.01}


def test_host_scale_is_the_ratio_of_two_probes_by_regime() -> None:
    slower = {"busy_us": 300.0, "wake_us": 120.0, "wake_gap_us": 720.0, "gap_s": 0.01}
    scale = HostScale.between(slower, PROBE)
    assert scale.cpu == pytest.approx(1.5) and scale.wake == pytest.approx(1.2)
    # the cold wake-up grew 2.4x, 1.2x of it is the back-to-back wake-up's: the curve moves by 2
    assert scale.cold == pytest.approx(2.0) and scale.gap == 0.01
    assert HostScale.between(PROBE, PROBE) == HostScale()
    for bad in ({**PROBE, "busy_us": 0.0}, {"wake_us": 1.0}):
        with pytest.raises(InvalidArgument):
            HostScale.between(bad, PROBE)


def test_on_host_scales_cpu_costs_and_the_wake_up_curve_not_the_network() -> None:
    base = SimParams(
        wakeup=Dist("constant", 1e-4),
        wakeup_idle=((0.0002, 1.0), (0.001, 1.5), (0.01, 2.0), (0.1, 3.0)),
        checkpoint=Dist("constant", 2e-3),
    ).with_overrides({"per_item.node.ListJobs.merge": 1e-5})
    moved = base.on_host(HostScale(cpu=2.0, wake=1.5, cold=2.0, gap=0.01))
    for role, methods in base.service.items():
        for method, dist in methods.items():
            assert moved.service[role][method].mean == pytest.approx(2 * dist.mean)
            assert moved.service[role][method].kind == dist.kind
    for name in ("client_call", "commit", "loadgen_request", "checkpoint"):
        assert getattr(moved, name).mean == pytest.approx(2 * getattr(base, name).mean), name
    assert moved.commit_per_row == pytest.approx(2 * base.commit_per_row)
    assert moved.item_cost("node", "ListJobs.merge") == pytest.approx(2e-5)
    assert moved.wakeup.mean == pytest.approx(1.5e-4)
    assert moved.network == base.network
    # 1 at the curve's first point, `cold` from the probed gap on, log-linear between
    factors = [f for _, f in moved.wakeup_idle]
    assert factors[0] == 1.0 and factors[2] == pytest.approx(4.0) and factors[3] == pytest.approx(6.0)
    assert 1.5 < factors[1] < 1.5 * 2.0
    assert factors == sorted(factors)
    assert base.on_host(HostScale()) == base


def test_on_host_keeps_the_curve_non_decreasing_when_cold_falls() -> None:
    base = SimParams(wakeup_idle=((0.0002, 1.0), (0.001, 1.1), (0.01, 1.2)))
    factors = [f for _, f in base.on_host(HostScale(cold=0.5)).wakeup_idle]
    assert factors == sorted(factors) and factors[0] == 1.0


def test_a_scaled_empirical_distribution_keeps_its_shape() -> None:
    dist = Dist.of({"samples": [1e-4, 2e-4, 6e-4]})
    assert dist.scaled(3.0).samples == pytest.approx((3e-4, 6e-4, 1.8e-3))
    with pytest.raises(InvalidArgument):
        dist.scaled(0.0)


def test_a_calibrations_host_probe_is_per_design(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "cal.json"
    probes = {
        "bare": [PROBE],
        "mono": [PROBE, {**PROBE, "busy_us": 400.0}, {**PROBE, "busy_us": 300.0}],
        "micro": [{**PROBE, "wake_us": 50.0}],
    }
    path.write_text(json.dumps({"parameters": {}, "host_probe": probes}))
    assert load_host_probe(path, "mono") == {**PROBE, "busy_us": 300.0}  # field-by-field median
    assert load_host_probe(path, "micro") == {**PROBE, "wake_us": 50.0}
    path.write_text(json.dumps({"parameters": {}}))
    assert load_host_probe(path, "mono") is None


def test_wakeup_idle_scope_is_process_or_host_and_needs_a_cold_curve() -> None:
    warm = SimParams(wakeup=Dist("constant", 1e-4), wakeup_idle=((1e-3, 1.0), (0.1, 3.0)))
    assert SimParams().wakeup_idle_scope == "process"
    assert warm.with_overrides({"wakeup_idle_scope": "host"}).wakeup_idle_scope == "host"
    with pytest.raises(InvalidArgument, match="wakeup_idle_scope must be one of process, host, overlap"):
        warm.with_overrides({"wakeup_idle_scope": "core"})
    with pytest.raises(InvalidArgument, match="wakeup_idle_scope has no effect"):
        SimParams().with_overrides({"wakeup_idle_scope": "host"})  # wake-ups cost nothing
