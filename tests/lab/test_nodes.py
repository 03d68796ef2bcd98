"""lab.nodes: the table of Design B at N nodes, real beside simulated, from run summaries on disk."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab import nodes


def summary(jobs_per_s: float, p50: float) -> dict[str, object]:
    return {
        "throughput": {"completed_per_s": jobs_per_s},
        "latency_ms": {"submit": {"p50": p50, "p99": 10 * p50}},
        "completion_ms": {"p50": 50.0, "p99": 200.0},
        "errors": {"UNAVAILABLE": 1},
        "jobs": {"unfinished": 0},
    }


def write(root: Path, kind: str, count: int, replication: int, jobs_per_s: float, p50: float) -> None:
    run = root / "runs" / nodes.run_id(kind, count, replication)
    run.mkdir(parents=True)
    (run / "summary.json").write_text(json.dumps(summary(jobs_per_s, p50)))


def test_the_table_compares_means_with_their_intervals(tmp_path: Path) -> None:
    for r, (real, simulated) in enumerate([(170.0, 180.0), (180.0, 180.0), (190.0, 180.0)]):
        write(tmp_path, "real", 3, r, real, 2.0)
        write(tmp_path, "sim", 3, r, simulated, 3.0)
        write(tmp_path, "simcal", 3, r, simulated, 1.0)
    (row,) = nodes.write_table(tmp_path, [3])
    assert (row["nodes"], row["slots_per_node"], row["n_real"], row["n_sim"], row["n_simcal"]) == (
        3,
        4,
        3,
        3,
        3,
    )
    assert row["completed_per_s_real"] == 180.0 and row["completed_per_s_sim"] == 180.0
    assert row["completed_per_s_real_ci95"] == pytest.approx(24.84, abs=0.01)  # t(0.975, 2) * 10 / sqrt 3
    assert row["completed_per_s_sim_ci95"] == 0.0
    assert row["submit_p50_ms_err"] == 0.5  # (3 - 2) / 2
    assert row["submit_p50_ms_err_calhost"] == -0.5  # (1 - 2) / 2
    assert row["errors_real"] == 3
    table = (tmp_path / "table.md").read_text().splitlines()
    assert "| 3 | 4 | 3/3/3 | jobs/s | 180.0 +- 24.8 | 180.0 +- 0.0 | +0% | 180.0 +- 0.0 | +0% |" in table
    assert "| 3 | 4 | 3/3/3 | submit p50 ms | 2.0 +- 0.0 | 3.0 +- 0.0 | +50% | 1.0 +- 0.0 | -50% |" in table
    assert (tmp_path / "throughput-latency.png").stat().st_size > 0


def test_a_run_that_exists_is_not_remade_unless_forced(tmp_path: Path) -> None:
    write(tmp_path, "real", 3, 0, 1.0, 1.0)
    with pytest.raises(FileExistsError, match="--force"):
        nodes.run(1, tmp_path, [3])
