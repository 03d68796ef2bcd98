from __future__ import annotations

import json

import pytest

from model.errors import InvalidArgument
from sim.params import Dist, SimParams, load_params, parse_override


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
            "service.job.Brand.New": 1e-4,  # a method not in the defaults becomes a constant
            "service.node.WaitJob.wake.mean": 7e-5,  # method names may contain dots
            "per_item.node.ListJobs.merge": 2e-5,
        }
    )
    assert params.service_dist("job", "Brand.New") == Dist("constant", 1e-4)
    assert params.service_dist("node", "WaitJob.wake").mean == 7e-5
    assert params.item_cost("node", "ListJobs.merge") == 2e-5
    assert params.cores == 8
    assert params.network.mean == 5e-5 and params.network.kind == "lognormal"
    assert params.core.lease_duration == 4.0
    assert params.service_dist("node", "SubmitJob").mean == 3e-4
    assert params.service_dist("node", "ListJobs") == SimParams().service_dist("node", "ListJobs")


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
    import numpy as np

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
    import sim
    from model.workload import OpenLoop, WorkloadSpec

    workload = WorkloadSpec(OpenLoop(20.0), run_time=1.0, warmup=0.2)
    params = SimParams(checkpoint=Dist("constant", 0.01), checkpoint_interval=0.1)
    for design, stores in (("mono", 6), ("micro", 3)):
        result = sim.run(sim.SimConfig(design, workload, params))  # type: ignore[arg-type]
        busy = {name: u for name, u in result.stats["utilisation"].items() if name.endswith("-checkpoint")}
        assert len(busy) == stores and all(0.08 < u <= 0.1 for u in busy.values()), busy
