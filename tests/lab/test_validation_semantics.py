"""The semantics validation (lab/validation/semantics.py): its file, its plan, the error arithmetic,
and a tiny end to end in which the "real" system is the simulator with half the cores."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from lab.validation.semantics import (
    SemPoint,
    build_semantics_tables,
    error_rows,
    format_semantics,
    is_semantics_file,
    load_semantics,
    measured_saturation,
    point_mapping,
    run_semantics_real,
    semantics_from_mapping,
    simulate_semantics,
    spread,
)
from lab.validation.twins import sim_params
from model.errors import InvalidArgument
from realsys import cli
from tests.lab.standins import no_cluster, simulated_real_run

REPO = Path(__file__).resolve().parents[2]
FULL = REPO / "data" / "experiments" / "validation-semantics.yaml"
SMOKE = REPO / "data" / "experiments" / "validation_semantics_smoke.yaml"


def test_the_semantics_file_lists_the_required_cases() -> None:
    v = load_semantics(FULL)
    assert is_semantics_file(FULL) and not is_semantics_file(
        REPO / "data" / "experiments" / "validation.yaml"
    )
    cases = {c.label: c for c in v.cases}
    retry, priority, cancel = cases["retry"], cases["priority"], cases["cancel"]
    assert retry.workload["job_type"] == "fail" and retry.workload["max_attempts"] == 3
    assert retry.workload["backoff"]["initial"] == 0.05 and retry.fractions == (0.3, 0.7)
    assert priority.workload["priority"]["kind"] == "categorical"
    assert all(0.6 <= f <= 0.9 for f in priority.fractions)
    assert cancel.workload["arrival"]["kind"] == "closed" and cancel.workload["mix"]["cancel"] == 0.3
    assert cancel.concurrency == (16,) and not cancel.is_open
    timeout = cases["timeout"]
    assert timeout.workload["execution_timeout"] == 0.1 and timeout.workload["max_attempts"] == 1
    assert v.replications >= 3 and set(v.designs) == {"micro", "mono"}


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"cases": {}}, "non-empty"),
        ({"cases": {"x": {"workload": {}, "fractions": [0.5], "concurrency": [4]}}}, "one of them"),
        ({"cases": {"x": {"workload": {}}}}, "one of them"),
        ({"cases": {"x": {"workload": {"priority": 1.5}, "fractions": [0.5]}}}, "cases.x.workload.priority"),
        ({"cases": {"x": {"workload": {}, "concurrency": [4]}}}, "closed-loop arrival"),
        ({"cases": {"x-y": {"workload": {}, "fractions": [0.5]}}}, "label"),
        ({"cases": {"x": {"workload": {}, "fractions": [2.0]}}}, "(0, 1.5]"),
        ({"rates": [1]}, "unknown keys"),
        ({"designs": ["celery"]}, "designs"),
    ],
)
def test_bad_files_get_one_line_naming_the_key(change: dict[str, Any], words: str) -> None:
    base = {
        "workload": {"arrival": {"kind": "open", "rate": 1}},
        "cases": {"x": {"workload": {}, "fractions": [0.5]}},
    }
    with pytest.raises(InvalidArgument) as info:
        semantics_from_mapping({**base, **change})
    assert words in info.value.message and "\n" not in info.value.message


def test_points_share_rates_across_designs_and_wait_for_every_saturation() -> None:
    v = load_semantics(SMOKE)
    retry, _, cancel = v.cases
    assert point_mapping(v, retry, {("retry", "mono"): 100.0}) is None  # micro's is not measured yet
    mapping = point_mapping(v, retry, {("retry", "mono"): 100.0, ("retry", "micro"): 80.0})
    assert (
        mapping is not None
        and mapping["sweep"]["rate"] == [40.0]
        and mapping["name"] == "validation_semantics_smoke.retry"
    )
    closed = point_mapping(v, cancel, {})
    assert closed is not None and closed["sweep"]["concurrency"] == [8] and "rate" not in closed["sweep"]


def test_shares_are_compared_in_points_and_rates_relatively() -> None:
    p = SemPoint("c", "mono", "rate10", 10.0, 20.0)
    p.real = {"failed": [0.10, 0.14, 0.12], "done_p50": [100.0, 110.0, 90.0], "done_p50@prio9": [10.0, 10.0]}
    p.sim = {"failed": [0.20], "done_p50": [120.0], "done_p50@prio9": [5.0]}
    assert spread("failed", p.real["failed"]) == pytest.approx([0.02, 0.02, 0.0])
    rows = {(r["case"], r["metric"]): r for r in error_rows([p])}
    assert rows[("c", "failed")]["median_abs_err"] == pytest.approx(0.08)  # 0.20 - 0.12: 8 points
    assert rows[("c", "failed")]["floor_median_dev"] == pytest.approx(0.02)
    assert rows[("c", "done_p50")]["median_signed_err"] == pytest.approx(0.2)
    assert rows[("c", "done_p50@prio9")]["median_abs_err"] == pytest.approx(0.5)
    assert rows[("all", "throughput")]["points"] == 0 and math.isnan(
        rows[("all", "throughput")]["median_abs_err"]
    )


# ---------------------------------------------------------------------------- end to end (no cluster)
SLOW = sim_params(load_semantics(SMOKE).as_validation()).with_overrides({"cores": 1, "name": "half-cores"})


_fake_real_run = simulated_real_run(SLOW)


def test_semantics_end_to_end_against_a_slower_stand_in(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v = load_semantics(SMOKE)
    runs, tables = tmp_path / "runs", tmp_path / "semantics"
    made, failed, complete = run_semantics_real(
        v, runs, progress=False, cluster_factory=no_cluster, run_function=_fake_real_run, log=lambda _: None
    )
    # 2 cases x 2 designs saturation runs, then 3 cases x 2 designs x 2 replications
    assert (made, failed, complete) == (4 + 12, 0, True)
    assert set(measured_saturation(v, runs)) == {
        (c, d) for c in ("retry", "priority") for d in ("micro", "mono")
    }
    written = simulate_semantics(v, runs, log=lambda _: None)
    assert len(written) == 16 and all(w.startswith("sim-") for w in written)
    assert simulate_semantics(v, runs, log=lambda _: None) == []  # up to date

    out = build_semantics_tables(v, runs, tables)
    points = {(r["case"], r["design"]): r for r in out["points"]}
    assert len(points) == 6 and all(r["n_real"] == r["n_sim"] == 2 for r in points.values())
    for design in ("micro", "mono"):
        retry = points[("retry", design)]
        # the verdicts come from each job's seed: the stand-in and its twins fail the same attempts
        assert 1.3 < retry["attempts_real"] < 2.0 and abs(retry["attempts_err"]) < 0.05
        assert retry["failed_real"] > 0 and abs(retry["failed_err"]) < 0.05
        assert points[("cancel", design)]["cancelled_real"] > 0.1
    # priorities matter where jobs queue: at the design whose saturation set the rate (rho 0.8), in the
    # tail (the stand-in's bottleneck is its dispatch path, not the slots, so the medians barely differ)
    loaded = max((points[("priority", d)] for d in ("micro", "mono")), key=lambda r: float(r["rho"]))
    assert loaded["rho"] == pytest.approx(0.8, rel=0.02)
    assert loaded["done_p99@prio9_real"] < loaded["done_p99@prio0_real"]
    text = format_semantics(out)
    assert "attempts" in text and "done_p50@prio9" in text and "error table" in text
    assert (tables / "points.csv").is_file() and (tables / "summary.json").is_file()

    # `dtq validate FILE` on a file with cases: its twins are up to date, so it only tabulates
    argv = ["validate", str(SMOKE), "--out", str(runs), "--tables", str(tables)]
    with pytest.raises(SystemExit) as exited:
        cli.main(argv)
    assert exited.value.code == 0
    printed = capsys.readouterr().out
    assert "0 runs simulated" in printed and "predicted beside measured" in printed
