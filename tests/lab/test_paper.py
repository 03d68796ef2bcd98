"""The paper: its template is filled by code (an unknown placeholder is an error, figures are numbered),
`make paper` regenerates the committed paper byte for byte from the committed data, the paper carries
no machine path and stays short, intervals never go below zero, the MVA's closed loop behaves, and a
re-run writes only into its fresh root."""

from __future__ import annotations

import json
import re
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from lab.experiment.plan import expand
from lab.experiment.spec import load_experiment
from lab.report import facts, predict
from lab.report.build import TEMPLATE, WORD_LIMIT, build
from lab.report.data import REPO_ROOT
from lab.report.intervals import interval
from lab.report.paper import TemplateError, render, word_count
from lab.report.rerun import Step, _round_minutes, durations, steps
from sim.params import load_params

DATA = REPO_ROOT / "data"
PAPER = REPO_ROOT / "paper"


def test_render_numbers_figures_and_refuses_unknown_names(tmp_path: Path) -> None:
    template = (
        "<!-- note -->\n# T\n{{figure:b}}\nB's caption {{x}}.\n{{end}}\n\n{{figure:a}}\nA.\n{{end}}\n"
        "See {{fig:a}} and {{fig:b}}; x = {{x}}.\n"
    )
    figures = {"a": tmp_path / "a.png", "b": None}
    text = render(template, {"x": "42"}, figures, "figures")
    assert text.startswith("# T\n")  # the template's own note is dropped
    assert "**Figure 1.** *Not drawn: no data for it yet.* B's caption 42." in text
    assert "![Figure 2](figures/a.png)\n\n**Figure 2.** A." in text
    assert "See Figure 2 and Figure 1; x = 42." in text
    with pytest.raises(TemplateError, match="nosuch"):
        render("{{nosuch}}", {}, {}, "figures")
    with pytest.raises(TemplateError, match="fig:zz"):
        render("{{fig:zz}}", {}, {}, "figures")


def test_word_count_leaves_tables_and_images_out() -> None:
    assert word_count("One two three.\n| a | b |\n|---|---|\n![x](y.png)\n```\ncode here\n```\n") == 3


def test_bootstrap_intervals_stay_inside_the_replications_range() -> None:
    # a skewed tail percentile over 3 replications: a t-interval would go below zero here
    iv = interval([1.0, 1.2, 40.0], "a/point")
    assert 0 < iv.lo <= iv.mean <= iv.hi <= 40.0
    assert iv.errors[0] >= 0 and iv.errors[1] >= 0
    assert interval([1.0, 1.2, 40.0], "a/point") == iv  # seeded per point: the same interval again
    assert interval([], "empty").n == 0


def test_mva_closed_loop_grows_with_clients_and_levels_off() -> None:
    exp = load_experiment(DATA / "experiments" / "seed_plan.yaml")
    base = load_params(DATA / "calibration" / "local.json")
    runs = [
        r
        for r in expand(exp).runs
        if r.design == "mono"
        and r.replication == 0
        and dict(r.point)["duration"] == "noop"
        and dict(r.point)["mix"] == "submit"
    ]
    rates = []
    for run in sorted(runs, key=lambda r: r.workload.arrival.clients):  # type: ignore[union-attr]
        est = predict.mva_closed("mono", run.workload, predict.twin_params(base, run))
        assert est["completed_per_s"] > 0 and est["completion_mean_ms"] > 0
        rates.append(est["completed_per_s"])
    assert rates == sorted(rates) and rates[-1] < 2 * rates[-2]  # more clients, more jobs/s, flattening


def test_a_rerun_writes_only_into_its_fresh_root(tmp_path: Path) -> None:
    for quick in (False, True):
        root = tmp_path / ("quick" if quick else "full")
        root.mkdir()
        plan = steps(root, quick=quick)
        assert plan[0].what == "calibration" and plan[-1].what == "paper"
        assert {s.what for s in plan} >= (
            {"sweep", "predictions"} if quick else {"validation", "bench", "sweep"}
        )
        committed = str(DATA)
        for step in plan:
            for arg in step.command + ([str(step.stdout)] if step.stdout else []):
                assert not arg.startswith(committed), f"{step.what} names committed data: {arg}"
            if step.what in ("sweep", "validation") or step.what.startswith("faults"):
                assert step.locked
                assert step.command[step.command.index("--runs-dir") + 1] == str(root / "runs")
        # the experiment files are copied in, the validation's calibration pointed at the root's
        assert (root / "experiments").is_dir()
        if not quick:
            text = (root / "experiments" / "validation.yaml").read_text()
            assert str(root / "calibration" / "local.json") in text
    assert isinstance(plan[0], Step)


def test_durations_are_stated_once_from_the_records() -> None:
    text = durations(DATA)
    assert "RERUN=1" in text and "QUICK=1" in text and re.search(r"about [\d.]+ h", text)


def test_a_fault_round_counts_each_fault_once_however_often_it_was_audited(tmp_path: Path) -> None:
    """Three rounds of the same two faults, 20 s and 40 s each, and a later audit of one of them: one
    round is 60 s, not the sessions' spans added up; a gap over 10 minutes is not a run's time."""

    def run(fault: str, n: int, stamp: str) -> None:
        """A run directory named as `dtq faults run` names it, started at `stamp` (YYYYmmddTHHMMSS)."""
        name = f"real-faults-micro-{fault}-L5-H1-{n}-{stamp}"
        at = datetime.strptime(stamp, "%Y%m%dT%H%M%S").isoformat() + "Z"
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps({"started_at": at}))

    for n in (1, 2, 3):
        run("kill-job", n, f"20261128T160{n}00")
        run("stop-worker", n, f"20261128T160{n}20")
    run("kill-job", 1, "20261207T224555")
    assert _round_minutes(tmp_path, "real-faults-*") == pytest.approx(1.0)
    assert _round_minutes(tmp_path, "nothing-*") == 0.0


def test_the_committed_paper_is_what_make_paper_builds(tmp_path: Path) -> None:
    """Byte for byte: make paper (no re-run) from the committed data rebuilds the committed paper,
    appendix, tables and figures; the predictions are up to date with their inputs."""
    experiment = DATA / "experiments" / "seed_plan.yaml"
    assert not predict.is_stale(experiment, str(DATA / "calibration" / "local.json"), DATA, REPO_ROOT), (
        "data/experiments/seed_plan/predicted.csv is stale: run `make paper` and commit it"
    )
    out = tmp_path / "paper"
    built = build(DATA, out, None)
    produced = [*built.documents, *built.figures, *built.tables.values()]
    for path in produced:
        committed = PAPER / path.relative_to(out)
        assert committed.is_file(), f"{committed} is not committed"
        assert committed.read_bytes() == path.read_bytes(), f"{committed} differs from what make paper builds"


def test_the_paper_is_a_paper() -> None:
    text = (PAPER / "paper.md").read_text()
    for heading in (
        "## Abstract",
        "## 1 The question",
        "## 2 Set-up",
        "## 3 Results",
        "## 5 Simulator accuracy",
        "## 8 Threats to validity",
        "## 9 Conclusion",
    ):
        assert heading in text
    assert word_count(text) <= WORD_LIMIT
    assert not re.search(r"/(work|home|tmp|root)/", text), "a machine path in the paper"
    assert "-dirty" not in text and "NOT MET" not in text
    assert "{{" not in text
    # every figure it shows exists, and every figure is numbered and captioned
    images = re.findall(r"!\[Figure (\d+)\]\((figures/[\w-]+\.png)\)", text)
    assert images
    for number, path in images:
        assert (PAPER / path).is_file(), path
        assert f"**Figure {number}.** " in text
    assert [int(n) for n, _ in images] == list(range(1, len(images) + 1))
    assert TEMPLATE.is_file()


def test_no_interval_in_the_figures_goes_below_zero() -> None:
    sweep = facts.load_sweep(DATA, "seed_plan", DATA / "experiments" / "seed_plan.yaml")
    lows = [iv.lo for point in sweep.measured.values() for iv in point.values() if iv.n]
    assert lows and min(lows) >= 0 and not np.isnan(lows).any()


def test_predictions_and_paper_in_a_fresh_root(tmp_path: Path) -> None:
    """The re-run's second half on a tiny experiment (CI's version of QUICK=1 without the real
    cluster): predicted.csv from the calibration alone, up to date afterwards, then the paper."""
    root = tmp_path / "root"
    (root / "experiments").mkdir(parents=True)
    experiment = root / "experiments" / "smoke.yaml"
    experiment.write_text((DATA / "experiments" / "smoke.yaml").read_text())
    calibration = str(DATA / "calibration" / "local.json")
    assert predict.is_stale(experiment, calibration, root, REPO_ROOT)
    csv_path = predict.write_predictions(experiment, calibration, root, REPO_ROOT)
    assert not predict.is_stale(experiment, calibration, root, REPO_ROOT)
    text = csv_path.read_text()
    assert text.startswith("design,concurrency,duration,mix,source,n,completed_per_s")
    assert (
        "\nmono,2,,,sim,2," in text and "\nmono,2,,,mva,1," in text
    )  # smoke: mono, 2 clients, 2 replications
    first = csv_path.read_bytes()
    predict.write_predictions(experiment, calibration, root, REPO_ROOT)
    assert csv_path.read_bytes() == first  # deterministic
    built = build(root, root / "paper", None, experiment="smoke")
    paper_text = (root / "paper" / "paper.md").read_text()
    assert "{{" not in paper_text and "not measured" in paper_text  # no validation etc. in this root
    # nothing measured in this root yet: the headline figures say so, numbered, instead of failing
    assert "**Figure 1.** *Not drawn: no data for it yet.*" in paper_text
    assert not any(p.stem == "throughput" for p in built.figures)
