"""lab.validation.background's re-run tag: new names for the same H5-H8 runs, scored against the
predictions committed for the original run ids."""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest

from lab.validation import background, holdout

PREDICTIONS = json.loads(background.PREDICTIONS.read_text())


def test_a_tagged_plan_is_the_same_runs_under_new_names() -> None:
    tagged, plain = background.plan("fixed"), background.plan()
    assert len(tagged) == len(plain) == 24
    for (exp_t, run_t), (exp_p, run_p) in zip(tagged, plain, strict=True):
        assert run_t.run_id != run_p.run_id
        assert "holdout_h" in run_t.run_id and "_fixed." in run_t.run_id
        assert (run_t.design, run_t.replication, run_t.store, run_t.slots) == (
            run_p.design,
            run_p.replication,
            run_p.store,
            run_p.slots,
        )
        assert run_t.workload == run_p.workload  # seed included
        assert exp_t.options == exp_p.options
        assert background.predicted_id(run_t.run_id, "fixed") == run_p.run_id
        assert run_p.run_id in PREDICTIONS["runs"]


def test_the_tagged_pattern_keeps_the_runs_apart() -> None:
    tagged = [r.run_id for _e, r in background.plan("fixed")]
    plain = [r.run_id for _e, r in background.plan()]
    assert all(fnmatchcase(r, background.pattern("fixed")) for r in tagged)
    assert not any(fnmatchcase(r, background.pattern()) for r in tagged)
    assert not any(fnmatchcase(r, background.pattern("fixed")) for r in plain)
    assert background.predicted_id(plain[0]) == plain[0]


@pytest.mark.parametrize("tag", ["Fixed", "a-b", "a.b", "x_y", "../x"])
def test_a_bad_tag_is_refused(tag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="tag"):
        background.plan(tag)
    with pytest.raises(SystemExit) as exc:
        background.main(["table", "--tag", tag])
    assert exc.value.code == 2
    assert "--tag" in capsys.readouterr().err


def test_real_with_a_tag_logs_to_its_own_file(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run_real(plans: Any, root: Path = holdout.RUNS, log_name: str = "", budget: float = 0.0) -> None:
        seen.update(ids=[r.run_id for _e, r in plans], log_name=log_name, budget=budget)

    monkeypatch.setattr(holdout, "run_real", fake_run_real)
    assert background.main(["real", "--tag", "fixed", "--budget", "60"]) == 0
    assert seen["log_name"] == "loadavg-h5h8-fixed.json"
    assert seen["budget"] == 60
    assert all("_fixed." in r for r in seen["ids"])
    assert background.main(["real"]) == 0
    assert seen["log_name"] == background.LOADAVG
    assert not any("_fixed." in r for r in seen["ids"])


def test_table_without_runs_says_so(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no runs"):
        background.table(0.1, tag="fixed", runs=tmp_path)


def test_markdown_names_the_rerun() -> None:
    scores = {
        "points": 1,
        "floor": dict.fromkeys(background.METRICS, 0.1),
        "x": dict.fromkeys(background.METRICS, 0.2),
        "x bias": dict.fromkeys(background.METRICS, -0.2),
    }
    res = {"k": 0.1, "command": "c", "code_version": "v", "made_at": "t", "scores": scores}
    assert "Real runs" not in background.markdown({**res, "runs": background.pattern()})
    text = background.markdown({**res, "runs": background.pattern("fixed")})
    assert "`data/runs/real-*-holdout_h[5-8]_fixed.*`" in text
    assert "| x | 20% (-20%)" in text
    assert "| real floor | 10%" in text
