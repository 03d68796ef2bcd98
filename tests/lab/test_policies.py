"""lab/policies.py: the scheduling-policy validation's file, its records (jobs matched to their tenant
through the trace), its summary and effects table (hits and misses), and the figure, on made-up data;
and one small simulated run through the real code path."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml

from lab import policies as lp
from model.errors import InvalidArgument
from model.results.schema import JobRecord
from model.states import JobState

EXPERIMENT = {
    "name": "policies_test",
    "calibration": "local",
    "workload": {
        "arrival": {"kind": "open", "rate": 40, "max_in_flight": 1024},
        "mix": {"submit": 1.0},
        "job_type": "sleep",
        "duration": {"kind": "exponential", "mean": 0.02},
        "labels": {"tenant": {"kind": "categorical", "values": {"x": 10, "y": 1}}},
        "run_time": 2,
        "warmup": 0.5,
        "seed": 3,
    },
    "slots": 2,
    "nodes": 2,
    "replications": 2,
    "designs": ["mono"],
    "policies": {
        "fifo": {},
        "fair": {"policy": "fair"},
        "ratelimit": {"policy": "ratelimit", "policy_rate": {"mono": 5}},
    },
}


def write_experiment(tmp_path: Path) -> lp.PolicyExperiment:
    (tmp_path / lp.FILE_NAME).write_text(yaml.safe_dump(EXPERIMENT))
    return lp.load(tmp_path / lp.FILE_NAME)


def test_the_file_and_its_per_design_settings(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path)
    assert exp.settings("ratelimit", "mono") == {"policy": "ratelimit", "policy_rate": 5}
    assert exp.spec(1).seed == exp.spec(0).seed + 1  # each replication its own trace
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"name": "x"}))
    with pytest.raises(InvalidArgument, match="missing 'calibration'"):
        lp.load(tmp_path / "bad.yaml")


def test_records_are_matched_to_their_tenant_through_the_trace(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path)
    spec = exp.spec(0)
    submits = lp.tenants_by_time(spec, "tenant")
    assert {t for _, t in submits} == {"x", "y"}
    shift = 12.5  # a real run's clock starts elsewhere; records keep the trace's spacing
    jobs = [
        JobRecord(f"j{i}", t + shift, t + shift, t + shift + 0.1 * (i % 3 + 1), JobState.SUCCEEDED, 1, 0.0)
        for i, (t, _) in enumerate(submits)
        if i % 7  # some submits failed: no record
    ]
    rows = lp.tenant_rows(spec, "tenant", reversed(jobs))
    window = [(i, t, tenant) for i, (t, tenant) in enumerate(submits) if i % 7 and spec.warmup <= t]
    assert [(r["submit_time"], r["tenant"]) for r in rows] == [(t, tenant) for _, t, tenant in window]
    assert [r["completion_time"] for r in rows] == pytest.approx([0.1 * (i % 3 + 1) for i, _, _ in window])
    stray = JobRecord("stray", submits[3][0] + shift + 0.01, 0.0, 1.0, JobState.SUCCEEDED, 1, 0.0)
    with pytest.raises(InvalidArgument, match="no submit of the trace"):
        lp.tenant_rows(spec, "tenant", [*jobs, stray])


def fake_records(out: Path, scale: dict[tuple[str, str, str], float]) -> None:
    """Exponential completion times per (kind, policy, tenant), two replications."""
    rng = np.random.default_rng(1)
    for (kind, policy, tenant), mean in scale.items():
        for rep in range(2):
            path = lp.record_path(out, kind, "mono", policy, rep)
            old = lp.read_rows(path) if path.exists() else []
            new = [
                {"tenant": tenant, "submit_time": float(i), "completion_time": float(x), "state": "SUCCEEDED"}
                for i, x in enumerate(rng.exponential(mean, 200))
            ]
            lp.write_rows(path, [*old, *new])


def test_summary_effects_and_figure_from_records(tmp_path: Path) -> None:
    exp = write_experiment(tmp_path)
    fake_records(
        tmp_path,
        {
            ("real", "fifo", "x"): 1.0,
            ("real", "fifo", "y"): 1.0,
            ("sim", "fifo", "x"): 1.1,
            ("sim", "fifo", "y"): 1.1,
            ("real", "fair", "x"): 1.05,
            ("real", "fair", "y"): 0.3,  # fair: y much faster, measured...
            ("sim", "fair", "x"): 1.1,
            ("sim", "fair", "y"): 0.35,  # ...and predicted: a hit
            ("real", "ratelimit", "x"): 3.0,
            ("real", "ratelimit", "y"): 0.4,
            ("sim", "ratelimit", "x"): 1.1,  # predicted no change for x: a miss
            ("sim", "ratelimit", "y"): 0.4,
        },
    )
    rows = lp.write_figure(tmp_path, exp)
    assert len(rows) == 6 and all(r["jobs_real"] == 400 and r["replications"] == 2 for r in rows)
    assert (tmp_path / "policies.png").stat().st_size > 1000
    summary = json.loads((tmp_path / "summary.json").read_text())
    verdict = {
        (e["policy"], e["tenant"]): (e["measured"], e["predicted"], e["hit"]) for e in summary["effects"]
    }
    assert verdict[("fair", "y")] == ("faster", "faster", True)
    assert verdict[("ratelimit", "x")] == ("slower", "same", False)
    text = (tmp_path / "summary.md").read_text()
    assert "MISS" in text and "Directions predicted right: 3 of 4." in text


def test_a_small_simulated_run_through_the_code_path(tmp_path: Path) -> None:
    exp = replace(write_experiment(tmp_path), replications=1)
    rows = lp.tenant_rows(exp.spec(0), exp.key, lp.run_sim(exp, "mono", "fair", 0))
    assert rows and {r["tenant"] for r in rows} == {"x", "y"}
    assert all(r["state"] == "SUCCEEDED" and r["completion_time"] > 0 for r in rows)
