"""The held-out protocol (lab/validation/holdout.py): its settings are holdout.md's, the real points run
at rho x each design's own measured saturation with designs interleaved run after run, and the table's
error and floor arithmetic."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from lab.validation.holdout import holdout, point_plan, saturation_plan, table, values_of
from model.results.runs import load_workload, run_config, write_run
from model.workload import OpenLoop
from tests.lab.standins import FIXED_PROVENANCE


@pytest.fixture(autouse=True)
def _repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # the workload files are repo-relative


def test_the_protocol_is_holdout_md() -> None:
    v = holdout()
    rhos = {c.label: c.fractions for c in v.cases}
    assert rhos == {"q1": (0.5,), "q2": (0.8,), "q3": (0.5,)}
    assert v.replications == 3 and v.store == "sqlite" and v.slots == 12 and v.designs == ("micro", "mono")
    assert v.saturation.clients == 32
    q1 = {c.label: c for c in v.cases}["q1"].workload
    assert q1["job_type"] == "fail" and q1["max_attempts"] == 4 and q1["seed"] == 23
    assert q1["payload"] == {"probability": 0.3} and q1["backoff"]["initial"] == 0.1


def test_points_run_at_each_designs_own_saturation_designs_interleaved() -> None:
    v = holdout()
    sat = {
        (c.label, d): 100.0 + 10 * i for i, (c, d) in enumerate((c, d) for c in v.cases for d in v.designs)
    }
    plan = point_plan(v, sat)
    assert len(plan) == 3 * 3 * 2
    order = [(run.replication, run.design) for _, run in plan]
    assert order[:4] == [(0, "micro"), (0, "mono"), (0, "micro"), (0, "mono")]
    assert [r for r, _ in order] == sorted(r for r, _ in order)  # replication-major
    for _, run in plan:
        label = run.run_id.split("holdout.")[1].split(".")[0]
        rho = {c.label: c.fractions[0] for c in v.cases}[label]
        assert run.workload.arrival.rate == pytest.approx(float(f"{rho * sat[(label, run.design)]:.3g}"))
        assert run.workload.seed == 23 + run.replication and run.store == "sqlite" and run.slots == 12
    assert [run.design for _, run in saturation_plan(v)] == ["micro", "mono"] * 3


def _summary(done_p50: float, failed: float) -> dict[str, Any]:
    return {
        "throughput": {"requests_per_s": 10.0, "completed_per_s": 10.0},
        "latency_ms": {"all": {"p50": 1.0, "p95": 2.0, "p99": 3.0, "p999": 4.0}},
        "completion_ms": {"p50": done_p50, "p95": 2 * done_p50, "p99": 3 * done_p50},
        "outcomes": {
            "attempts_mean": 1.5,
            "failed": failed,
            "timed_out": 0.0,
            "completion_ms_by_priority": {"9": {"p50": 5.0, "p95": 6.0, "p99": 7.0}},
        },
    }


def test_the_table_puts_the_error_beside_the_real_floor(tmp_path: Path) -> None:
    v = holdout()
    spec = load_workload("data/workloads/holdout/q1-flaky-retry.yaml")
    rate = 50.0
    for r, (done, failed) in enumerate(((100.0, 0.1), (110.0, 0.2), (120.0, 0.3))):
        run_id = f"real-micro-holdout.q1.rate50.sqlite.s12-{23 + r}-r{r}"
        workload = replace(spec, arrival=OpenLoop(rate, max_in_flight=1024), seed=23 + r)
        config = run_config(
            run_id=run_id,
            kind="real",
            design="micro",
            workload=workload,
            parameters={"point": {}},
            replication=r,
            started_at="t",
            provenance_info=FIXED_PROVENANCE,
        )
        summary = {**_summary(done, failed), "run_id": run_id}
        write_run(tmp_path, run_id, config, [], [], summary, records=False)
    predictions = {
        "saturation": {"q1.micro": 90.0},
        "points": {
            "q1.micro": {
                "case": "q1",
                "design": "micro",
                "rate": rate,
                "replications": [{"values": values_of(_summary(132.0, 0.25))}] * 3,
            }
        },
    }
    (row,) = table(v, predictions, tmp_path)["points"]
    assert row["n_real"] == 3 and row["saturation_predicted"] == 90.0 and math.isnan(row["saturation_real"])
    done = row["metrics"]["done_p50"]
    assert done["real_mean"] == pytest.approx(110.0) and done["error"] == pytest.approx(0.2)
    assert done["floor"] == pytest.approx(10 / 110)  # median |x - mean| / mean of 100, 110, 120
    failed = row["metrics"]["failed"]  # a share: absolute error and floor, in fraction points
    assert failed["error"] == pytest.approx(0.05) and failed["floor"] == pytest.approx(0.1)
    assert row["metrics"]["done_p95@prio9"]["error"] == pytest.approx(0.0)
