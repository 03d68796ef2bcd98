"""lab/validation/closed_loop.py: closed-loop real runs against their twins, variant by variant."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from lab.validation import closed_loop

WORKLOAD = {
    "arrival": {"clients": 2, "kind": "closed", "think_time": {"kind": "constant", "mean": 0.0}},
    "duration": {"kind": "constant", "mean": 0.0},
    "job_type": "sleep",
    "mix": {"submit": 1.0},
    "payload_bytes": 0,
    "run_time": 0.5,
    "seed": 1,
    "warmup": 0.2,
}


def _summary(rate: float, p50: float) -> dict[str, object]:
    lat = {"p50": p50, "p95": 2 * p50, "p99": 3 * p50, "p999": 4 * p50}
    return {
        "throughput": {"requests_per_s": rate},
        "latency_ms": {"all": lat},
        "completion_ms": {"p50": 2 * p50, "p99": 5 * p50},
    }


def test_errors_against_the_replications_mean_and_the_floor(tmp_path: Path) -> None:
    for i, (rate, p50) in enumerate(((90.0, 1.0), (110.0, 1.0), (100.0, 1.3))):
        run = tmp_path / f"real-mono-seed_plan.c2.noop.submit.memory.s12-{i + 1}-r{i}"
        run.mkdir()
        config = {"design": "mono", "kind": "real", "workload": WORKLOAD, "parameters": {"store": "memory"}}
        (run / "config.json").write_text(json.dumps(config))
        (run / "summary.json").write_text(json.dumps(_summary(rate, p50)))
    variants = {"as is": {}, "slow": {"network.scale": 50}}
    result = closed_loop.compare(tmp_path, "local", variants)
    (row,) = result["points"]
    assert row["point"] == "real-mono-seed_plan.c2.noop.submit.memory.s12"
    assert row["real"][0] == pytest.approx(100.0) and row["real"][1] == pytest.approx(1.1)
    assert row["spread"][0] == pytest.approx(0.1)  # |90, 110, 100 - 100| / 100: median 0.1
    assert row["slow"][1] > row["as is"][1]  # a slower network: a higher p50 than the real one
    assert result["medians"]["as is"] == [abs(e) for e in row["as is"]]
    text = closed_loop.format_table(result)
    assert "over 1 points" in text and "slow bias" in text


def test_a_variant_is_a_name_and_overrides() -> None:
    assert closed_loop._variant("warm=wakeup_warm_handover=true,cpu_slice=0.004") == (
        "warm",
        {"wakeup_warm_handover": True, "cpu_slice": 0.004},
    )


def test_the_distance_of_two_latency_samples() -> None:
    a = np.array([1.0, 2.0, 3.0])
    assert closed_loop.distance(a, a) == 0.0
    assert closed_loop.distance(a, a + 1.0) == pytest.approx(0.5)  # 1 ms over a mean of 2 ms
    assert np.isnan(closed_loop.distance(a, np.array([])))


def test_the_table_names_the_distances_when_there_are_any() -> None:
    result = {
        "calibration": "c",
        "metrics": ["p50"],
        "points": [{}],
        "medians": {"floor": [0.1]},
        "distance": {"floor": 0.2, "as is": 0.3},
    }
    assert "Wasserstein-1" in closed_loop.format_table(result) and "as is 0.300" in closed_loop.format_table(
        result
    )
    assert "Wasserstein" not in closed_loop.format_table({**result, "distance": {}})
