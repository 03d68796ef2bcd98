"""lab/calibration/payload.py: per-byte costs from payload-carrying operations at several sizes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lab.calibration.assemble import pool
from lab.calibration.payload import measure_payload, per_byte_parameters, slope, summarize_payload
from sim.params import SimParams

SIZES = ("0", "262144", "524288")


def _series(per_proc: dict[str, tuple[float, float]]) -> dict[str, dict[str, list[float]]]:
    """{size: {process: samples}}: intercept + slope x size, with a spread around it."""
    return {
        size: {p: [a + b * float(size) + d for d in (-1e-5, 0.0, 2e-5)] for p, (a, b) in per_proc.items()}
        for size in SIZES
    }


def _measured() -> dict[str, Any]:
    return {
        "commit": {s: [1e-4 + 2e-9 * float(s)] * 3 for s in SIZES},
        "mono": {
            "SubmitJob": _series({"n1": (3e-4, 5e-9), "client": (2e-4, 1e-9), "n2": (0.0, 0.0)}),
            "lease": _series({"n1": (2e-4, 1e-9)}),
            "w1": _series({"n1": (6e-4, 9e-9), "n2": (0.0, -1e-9)}),
        },
        "micro": {
            "SubmitJob": _series({"gateway": (3e-4, 2e-9), "job": (3e-4, 3e-9)}),
            "lease": _series({"coordinator": (4e-4, 2e-9), "job": (2e-4, 0.5e-9)}),
            "w1": _series({"worker": (5e-4, 4e-9)}),
        },
    }


def test_the_slope_is_fitted_to_the_medians_and_never_negative() -> None:
    assert slope({"0": [1.0, 2.0, 30.0], "10": [3.0, 4.0, 5.0]}) == pytest.approx(0.2)
    assert slope({"0": [5.0], "10": [1.0]}) == 0.0
    assert slope({"0": [5.0]}) == 0.0


def test_per_byte_keys_net_of_the_store_and_of_the_submit() -> None:
    per_byte = per_byte_parameters(_measured())
    expected = {
        "commit": 2e-9,
        "loadgen.SubmitJob": 1e-9,
        "node.SubmitJob": 3e-9,  # 5 less the store's 2
        "node.StealWork": 1e-9,
        "node.launch": 4e-9,  # window 1 at the owner (9) less its submit (5)
        "gateway.SubmitJob": 2e-9,
        "job.CreateJob": 1e-9,  # 3 less the store's 2
        "job.LeaseJobs": 0.5e-9,
        "coordinator.FetchWork": 2e-9,
        "worker.launch": 4e-9,
    }
    assert per_byte.keys() == expected.keys()
    for key, value in expected.items():
        assert per_byte[key] == pytest.approx(value, rel=1e-6), key
    SimParams.from_mapping({"per_byte": per_byte})  # the simulator takes them
    summary = summarize_payload(_measured())
    assert summary["sizes"] == [0, 262144, 524288]
    assert summary["mono"]["SubmitJob"]["n1"]["262144"] == pytest.approx(
        (3e-4 + 5e-9 * 262144) * 1e6, abs=0.01
    )
    json.dumps(summary)


def test_rounds_pool_per_size() -> None:
    pooled = pool([_measured(), _measured()])
    assert len(pooled["mono"]["SubmitJob"]["0"]["n1"]) == 6
    assert per_byte_parameters(pooled)["node.launch"] == pytest.approx(4e-9, rel=1e-6)


@pytest.mark.slow
def test_measure_payload_against_real_clusters() -> None:
    """Every payload measurement, tiny, against real clusters (memory store): each size of each
    operation has its samples per process, and the leased jobs were reported (none failed)."""
    out = measure_payload("memory", 4, sizes=(0, 4096))
    assert set(out["commit"]) == {"0", "4096"}
    for design, entry in (("mono", "n1"), ("micro", "gateway")):
        for size in ("0", "4096"):
            assert len(out[design]["SubmitJob"][size][entry]) == 4
            assert len(out[design]["lease"][size]["client"]) == 4
            assert len(out[design]["w1"][size]["n1" if design == "mono" else "worker"]) == 10
    assert all(v >= 0 for v in per_byte_parameters(out).values())
