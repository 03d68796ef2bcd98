"""lab.validation.idlewake: the held-out think-time set's plan order and its score."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab.validation import idlewake


def test_the_plan_is_replication_major_then_think_time_then_design() -> None:
    runs = [run for _, run in idlewake.plan(idlewake.experiments())]
    assert len(runs) == 24 and len({r.run_id for r in runs}) == 24
    assert [r.replication for r in runs] == sorted(r.replication for r in runs)
    first = runs[:8]  # replication 0: think 0, 3, 10, 30 ms, micro before mono at each
    thinks = [r.workload.arrival.think_time.mean for r in first]  # type: ignore[union-attr]
    assert thinks == [0.0, 0.0, 0.003, 0.003, 0.01, 0.01, 0.03, 0.03]
    assert [r.design for r in first[:2]] == ["micro", "mono"]
    assert idlewake.point_of(first[1]) == "real-mono-idlewake_t0.c1.noop.submit.memory.s12"


def _summary(p50: float, done: float, rate: float) -> dict[str, object]:
    return {
        "latency_ms": {"all": {"p50": p50}},
        "completion_ms": {"p50": done},
        "throughput": {"requests_per_s": rate},
    }


def test_the_table_scores_each_scope_against_the_mean_and_the_floor(tmp_path: Path) -> None:
    reals = [(1.0, 2.0, 100.0), (1.2, 2.0, 100.0), (0.8, 2.0, 100.0)]
    reps = []
    for k, values in enumerate(reals):
        run_id = f"real-mono-x.c1-{k + 1}-r{k}"
        (tmp_path / run_id).mkdir()
        (tmp_path / run_id / "summary.json").write_text(json.dumps(_summary(*values)))
        reps.append({"run_id": run_id})
    pred = {
        "made_at": "t",
        "points": {
            "real-mono-x.c1": {
                "design": "mono",
                "think_s": 0.0,
                "replications": reps,
                "process": {"submit_p50_ms": 2.0, "done_p50_ms": 2.0, "jobs_per_s": 50.0},
                "host": {"submit_p50_ms": 1.1, "done_p50_ms": 2.0, "jobs_per_s": 100.0},
            }
        },
    }
    res = idlewake.table(pred, tmp_path)
    (row,) = res["rows"]
    assert row["n"] == 3
    assert row["submit_p50_ms"]["real"] == pytest.approx(1.0)
    assert row["submit_p50_ms"]["floor"] == pytest.approx(0.2)  # median of 0, 0.2, 0.2
    assert row["submit_p50_ms"]["process"] == pytest.approx(1.0)
    assert row["submit_p50_ms"]["host"] == pytest.approx(0.1)
    assert row["jobs_per_s"]["process"] == pytest.approx(-0.5) and row["jobs_per_s"]["host"] == 0.0
    assert res["medians"]["jobs_per_s"]["process"] == pytest.approx(0.5)
    assert "| real-mono-x.c1 | 3 | submit_p50_ms |" in idlewake.results_markdown(res)
