"""lab.validation.heldout: a held-out set from its registration file (H9-H12): the planned runs, the
cluster each gets (Design B's node count), the twins' node count, and the guards that keep the
registered predictions first and never replaced."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from lab.experiment import runner
from lab.experiment.spec import Options
from lab.validation import closed_loop, heldout, holdout

H9H12 = heldout.OUT / "holdout-h9h12.json"


def test_the_registration_plans_each_point_replication_major() -> None:
    reg = heldout.load(H9H12)
    assert reg.calibration == "vx-fixed2"
    assert [(p.label, p.design, p.nodes) for p in reg.points] == [
        ("h9", "mono", 1),
        ("h10", "mono", 6),
        ("h11", "micro", 6),
        ("h12", "micro", 6),
    ]
    planned = heldout.plan(reg)
    assert len(planned) == 12
    assert [r.replication for _e, r, _p in planned] == [0] * 4 + [1] * 4 + [2] * 4
    ids = [r.run_id for _e, r, _p in planned]
    assert len(set(ids)) == 12
    h9, h10 = planned[0][1], planned[1][1]
    assert h9.workload == h10.workload and h9.design == h10.design == "mono"
    assert "holdout_h9." in h9.run_id and "holdout_h10." in h10.run_id
    assert planned[4][1].workload.seed == h9.workload.seed + 1
    assert planned[3][1].workload.mix.submit == 1.0 and planned[2][1].workload.mix.submit == 0.25
    # each point's glob picks its own runs only (h1 is not h10-h12's prefix)
    for _e, run, point in planned:
        assert [p.label for p in reg.points if fnmatchcase(run.run_id, heldout.pattern(p))] == [point.label]


def test_a_node_count_on_design_a_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "x.json"
    bad.write_text(
        json.dumps(
            {
                "name": "x",
                "calibration": "local",
                "points": {"a": {"workload": "h9-reads.yaml", "design": "micro", "nodes": 1}},
            }
        )
    )
    with pytest.raises(ValueError, match="no node count"):
        heldout.load(bad)


def test_each_run_gets_its_points_node_count(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def fake_running(design: str, **kw: Any) -> Iterator[Any]:
        seen.append({"design": design, **kw})
        yield type("Info", (), {"clients": {"n1": "127.0.0.1:1"}})()

    monkeypatch.setattr(runner.cluster, "running", fake_running)
    monkeypatch.setattr(runner, "dtq_target_spec", lambda clients, design: {"design": design})
    reg = heldout.load(H9H12)
    factory = heldout.cluster_factory({p.label: p for p in reg.points})
    params = []
    for _e, run, _p in heldout.plan(reg)[:4]:
        with factory(run)(run.design, "sqlite", 12, Options()) as handle:
            params.append(handle.parameters)
    assert seen[0]["nodes"] == 1 and "nodes" not in seen[1]
    assert params[0]["nodes"] == 1 and params[0]["slots"] == {"n1": 12}
    assert "nodes" not in params[1] and len(params[1]["slots"]) == 6
    assert "nodes" not in params[2]


def test_the_twin_of_a_one_node_run_has_one_node() -> None:
    cfg = {"design": "mono", "parameters": {"store": "sqlite", "nodes": 1}}
    assert closed_loop._params("local", cfg, {}, host_scale=False).nodes == 1
    cfg = {"design": "mono", "parameters": {"store": "sqlite"}}
    assert closed_loop._params("local", cfg, {}, host_scale=False).nodes == 6


def test_real_needs_the_predictions_and_predict_never_replaces_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(heldout, "OUT", tmp_path)
    called: list[Any] = []
    monkeypatch.setattr(holdout, "run_real", lambda *a, **kw: called.append(kw))
    with pytest.raises(SystemExit) as exc:
        heldout.main(["real", str(H9H12)])
    assert exc.value.code == 2 and "predict" in capsys.readouterr().err
    assert not called
    (tmp_path / "predictions-h9h12.json").write_text("{}")
    with pytest.raises(SystemExit) as exc:
        heldout.main(["predict", str(H9H12)])
    assert exc.value.code == 2 and "never replaced" in capsys.readouterr().err
    assert heldout.main(["real", str(H9H12), "--budget", "5"]) == 0
    assert called[0]["log_name"] == "loadavg-h9h12.json" and called[0]["budget"] == 5


def test_score_and_markdown_name_every_prediction() -> None:
    real = [100.0, 10.0, 20.0, 30.0, 40.0, 5.0, 9.0]
    row = {
        "point": "real-mono-holdout_h9.sqlite.s12",
        "real": real,
        "real_replications": [real, real],
        "spread": [0.1] * 7,
        "distance_spread": 0.2,
        "a twins": [110.0, 12.0, 20.0, 36.0, 40.0, 5.0, 9.0],
        "a distance": 0.5,
    }
    scores = heldout.score([row])
    assert scores["a"]["throughput"] == pytest.approx(0.1)
    assert scores["a"]["width"] == pytest.approx((36 / 12) / 3 - 1)
    assert scores["distance"] == {"floor": 0.2, "a": 0.5}
    res = {
        "command": "c",
        "code_version": "v",
        "made_at": "t",
        "calibration": "k",
        "runs": ["g"],
        "scores": scores,
        "points": [row],
    }
    text = heldout.markdown(res, "T")
    assert "| a | 10% (+10%)" in text and "| 0.50 |" in text
    assert "| mono-holdout_h9.sqlite.s12 | a | 110 | 12.0 | 36.0 | 3.00 | 5.0 |" in text


def test_a_probe_with_a_zero_field_still_moves_the_twin() -> None:
    probe = {"busy_us": 1400.0, "wake_us": 150.0, "wake_gap_us": 500.0, "gap_s": 0.01, "steal_share": 0.0}
    cfg = {"design": "micro", "parameters": {"store": "sqlite", "host_probe": probe}}
    moved = closed_loop._params("local", cfg, {}, host_scale=True)
    still = closed_loop._params("local", cfg, {}, host_scale=False)
    assert moved != still  # steal_share 0 used to switch the host scaling off
    cfg["parameters"]["host_probe"] = {**probe, "busy_us": 0.0}
    assert closed_loop._params("local", cfg, {}, host_scale=True) == still
