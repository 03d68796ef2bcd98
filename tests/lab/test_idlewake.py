"""lab.validation.idlewake: the held-out think-time set's plan order and its score."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lab.validation import holdout, idlewake
from sim.params import load_params


def test_the_plan_is_replication_major_then_think_time_then_design() -> None:
    runs = [run for _, run in idlewake.plan(idlewake.experiments())]
    assert len(runs) == 24 and len({r.run_id for r in runs}) == 24
    assert [r.replication for r in runs] == sorted(r.replication for r in runs)
    first = runs[:8]  # replication 0: think 0, 3, 10, 30 ms, micro before mono at each
    thinks = [r.workload.arrival.think_time.mean for r in first]  # type: ignore[union-attr]
    assert thinks == [0.0, 0.0, 0.003, 0.003, 0.01, 0.01, 0.03, 0.03]
    assert [r.design for r in first[:2]] == ["micro", "mono"]
    assert idlewake.point_of(first[1]) == "real-mono-idlewake_t0.c1.noop.submit.memory.s12"


def _replications(root: Path, name: str, reals: list[tuple[float, float, float]]) -> list[dict[str, str]]:
    """Writes one real summary per (p50, done p50, rate) as the runs <name>-<k+1>-r<k>; their references."""
    reps = []
    for k, values in enumerate(reals):
        run_id = f"{name}-{k + 1}-r{k}"
        (root / run_id).mkdir()
        (root / run_id / "summary.json").write_text(json.dumps(_summary(*values)))
        reps.append({"run_id": run_id})
    return reps


def _summary(p50: float, done: float, rate: float) -> dict[str, object]:
    return {
        "latency_ms": {"all": {"p50": p50}},
        "completion_ms": {"p50": done},
        "throughput": {"requests_per_s": rate},
    }


def test_the_table_scores_each_scope_against_the_mean_and_the_floor(tmp_path: Path) -> None:
    reps = _replications(
        tmp_path, "real-mono-x.c1", [(1.0, 2.0, 100.0), (1.2, 2.0, 100.0), (0.8, 2.0, 100.0)]
    )
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


OVERLAP = idlewake.OUT / "overlap"


def test_the_overlap_plan_puts_each_busy_run_right_after_its_quiet_twin() -> None:
    plan = idlewake.plan(idlewake.experiments(OVERLAP))
    runs = [run for _, run in plan]
    assert len(runs) == 24 and len({r.run_id for r in runs}) == 24
    assert [r.replication for r in runs] == sorted(r.replication for r in runs)
    first = plan[:8]  # replication 0: rate 20 then 60, micro before mono, quiet before busy
    assert [idlewake.load_of(r) for _, r in first] == [20.0] * 4 + [60.0] * 4
    assert [r.design for _, r in first[:4]] == ["micro", "micro", "mono", "mono"]
    assert [idlewake.busy(e) for e, _ in first] == [False, True] * 4
    assert idlewake.point_of(first[1][1]) == "real-micro-overlap_busy.rate20.noop.submit.memory.s12"


def test_the_neighbours_twin_is_one_always_runnable_background_process() -> None:
    params = load_params("vx-fixed2").with_overrides(idlewake.NEIGHBOUR_TWIN)
    assert params.background_procs == 1
    assert params.background_run.is_constant and params.background_run.mean == params.background_chunk
    assert params.background_sleep.is_constant and params.background_sleep.mean == 0


def test_the_neighbour_ends_by_itself_and_on_stop() -> None:
    short = idlewake.start_neighbour(0.2)
    assert short.wait(timeout=10) == 0  # bounded even if nobody stops it
    long = idlewake.start_neighbour(60)
    time.sleep(0.1)
    assert long.poll() is None  # still spinning
    idlewake.stop_neighbour(long)
    assert long.returncode is not None


def test_run_real_runs_each_busy_run_beside_the_neighbour_on_a_fresh_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "overlap"
    folder.mkdir()
    for f in Path("data/validation/idlewake/overlap").glob("*.yaml"):
        (folder / f.name).write_text(f.read_text())
    spinning: list[bool] = []
    calls: list[tuple[str, bool, bool | None]] = []

    def start() -> str:
        spinning.append(True)
        return "proc"

    monkeypatch.setattr(idlewake, "start_neighbour", start)
    monkeypatch.setattr(idlewake, "stop_neighbour", lambda proc: spinning.pop())

    def fake_run(exp: Any, root: Path, only: str, fresh_cluster: bool | None, **kw: Any) -> Any:
        calls.append((exp.name, bool(spinning), fresh_cluster))
        return SimpleNamespace(failed=[])

    monkeypatch.setattr(holdout, "run_experiment", fake_run)
    idlewake.run_real(0.0, root=tmp_path / "runs", folder=folder)
    planned = idlewake.plan(idlewake.experiments(folder))
    assert len(calls) == len(planned) == 24
    assert all(beside == name.endswith("_busy") and fresh for name, beside, fresh in calls)
    assert not spinning  # every neighbour stopped
    log = json.loads((folder / "loadavg.json").read_text())
    assert [e["run_id"] for e in log] == [r.run_id for _, r in planned]


def test_the_table_gives_the_busy_over_quiet_contrast_real_and_predicted(tmp_path: Path) -> None:
    points: dict[str, object] = {}
    for cond, reals, sim in (
        ("quiet", [(2.0, 4.0, 20.0)] * 2, 2.0),
        ("busy", [(1.5, 4.0, 20.0), (1.7, 4.0, 20.0)], 3.0),
    ):
        name = f"real-mono-overlap_{cond}.rate20.noop.submit.memory.s12"
        reps = _replications(tmp_path, name, reals)
        twin = {"submit_p50_ms": sim, "done_p50_ms": 4.0, "jobs_per_s": 20.0}
        points[name] = {
            "design": "mono",
            "think_s": None,
            "rate": 20.0,
            "replications": reps,
            "process": twin,
        }
    res = idlewake.table({"made_at": "t", "scopes": ["process"], "points": points}, tmp_path)
    (c,) = res["contrasts"]
    assert c["busy"].endswith("overlap_busy.rate20.noop.submit.memory.s12")
    assert c["submit_p50_ms"]["real"] == pytest.approx(1.6 / 2.0 - 1)  # lower beside the neighbour
    assert c["submit_p50_ms"]["noise"] == pytest.approx(0.1 / 1.6)  # busy floor 0.0625 + quiet floor 0
    assert c["submit_p50_ms"]["process"] == pytest.approx(0.5)
    assert c["done_p50_ms"]["real"] == 0.0
    score = idlewake.contrast_scores(res)
    assert score["signs"] == {"lower": 1, "higher": 0, "no change": 1}
    assert score["miss"]["process"] == pytest.approx((0.7 + 0.0) / 2)
    assert "With / without the neighbour" in idlewake.results_markdown(res)
