"""The validation matrix (lab/validation/): the error-table arithmetic on synthetic points, the plan
built from a measured saturation, and a tiny end-to-end `validate` in which the "real" system is the
simulator on a machine with half the cores (so the calibrated sim must be measurably too optimistic)."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import pytest

import sim
from lab.experiment.plan import PlannedRun, expand
from lab.experiment.spec import experiment_from_mapping
from lab.validation.accuracy import (
    Point,
    band_names,
    band_of,
    collect_points,
    error_table,
    rel_error,
    replication_spread,
    saturation_winners,
    winner_rows,
    winner_summary,
)
from lab.validation.cli import tables_folder
from lab.validation.output import build_tables, format_tables
from lab.validation.plan import point_mappings, rates_of, saturation_mapping
from lab.validation.real import run_validation_real
from lab.validation.runs import RunInfo, saturation_rate
from lab.validation.spec import load_validation, validation_from_mapping
from lab.validation.twin_sets import MAIN_FOLDER, TWIN_SETS, TwinSet, make_twin_set
from lab.validation.twins import host_scales, sim_overrides, sim_params, simulate
from model.errors import InvalidArgument
from model.results.runs import load_config, run_config, run_exists
from realsys import cli
from sim.hostscale import HostScale
from tests.lab.standins import FIXED_PROVENANCE, no_cluster, simulated_real_run

REPO = Path(__file__).resolve().parents[2]
FULL = REPO / "data" / "experiments" / "validation.yaml"
SMOKE = REPO / "data" / "experiments" / "validation_smoke.yaml"


# ---------------------------------------------------------------------------- arithmetic
def test_band_edges_are_inclusive_upper_bounds() -> None:
    edges = (0.5, 0.8)
    assert [band_of(r, edges) for r in (0.1, 0.5, 0.500001, 0.8, 0.81, 1.3)] == [
        "rho<=0.5",
        "rho<=0.5",
        "0.5<rho<=0.8",
        "0.5<rho<=0.8",
        "rho>0.8",
        "rho>0.8",
    ]
    assert band_names(edges) == ["rho<=0.5", "0.5<rho<=0.8", "rho>0.8"]


def test_relative_error_spread_and_saturation_rate() -> None:
    assert rel_error(110.0, 100.0) == pytest.approx(0.1)
    assert rel_error(80.0, 100.0) == pytest.approx(-0.2)
    assert math.isnan(rel_error(5.0, 0.0)) and math.isnan(rel_error(math.nan, 3.0))
    assert replication_spread([90.0, 100.0, 110.0]) == pytest.approx([0.1, 0.0, 0.1])
    assert replication_spread([7.0]) == []  # one replication has no spread
    summary = {"throughput": {"requests_per_s": 500.0, "completed_per_s": 200.0}}
    # the job side limits: 200 jobs/s at half the requests being submits is 400 req/s
    assert saturation_rate(summary, 0.5) == pytest.approx(400.0)
    # the request path limits: 500 req/s although 1000 jobs/s could be finished
    assert saturation_rate({"throughput": {"requests_per_s": 500.0, "completed_per_s": 1000.0}}, 1.0) == 500.0


def _point(design: str, rate: float, sat: float, real_p50: list[float], sim_p50: list[float]) -> Point:
    p = Point(design, "d", "m", rate, sat)
    p.real["p50"], p.sim["p50"] = real_p50, sim_p50
    return p


def test_error_table_bands_medians_iqr_and_floor() -> None:
    points = [
        # rho 0.1, 0.3, 0.5 -> low band; errors +10%, -20%, +40%
        _point("micro", 10, 100, [9.0, 10.0, 11.0], [11.0]),
        _point("micro", 30, 100, [10.0, 10.0, 10.0], [8.0]),
        _point("micro", 50, 100, [10.0], [14.0]),
        # rho 0.7 -> middle band; error -50%; spread 0.2, 0, 0.2
        _point("micro", 70, 100, [8.0, 10.0, 12.0], [5.0]),
        # rho 0.9 -> high band; error +100%
        _point("micro", 90, 100, [20.0, 20.0], [40.0]),
    ]
    rows = {(r["band"], r["metric"]): r for r in error_table(points, (0.5, 0.8))}
    low = rows[("rho<=0.5", "p50")]
    assert low["points"] == 3
    assert low["median_abs_err"] == pytest.approx(0.2)  # |errors| 0.1, 0.2, 0.4
    assert (low["q25_abs_err"], low["q75_abs_err"]) == (pytest.approx(0.15), pytest.approx(0.3))
    assert low["median_signed_err"] == pytest.approx(0.1)  # +0.1, -0.2, +0.4
    # floor: deviations pooled over the band's replications: 0.1, 0, 0.1 and 0, 0, 0 -> median 0
    assert low["floor_median_dev"] == pytest.approx(0.0)
    mid = rows[("0.5<rho<=0.8", "p50")]
    assert (mid["points"], mid["median_abs_err"], mid["median_signed_err"]) == (1, 0.5, -0.5)
    assert mid["floor_median_dev"] == pytest.approx(0.2)  # deviations 0.2, 0, 0.2
    high = rows[("rho>0.8", "p50")]
    assert (high["points"], high["median_abs_err"]) == (1, pytest.approx(1.0))
    assert rows[("all", "p50")]["points"] == 5
    assert rows[("all", "p50")]["median_abs_err"] == pytest.approx(0.4)  # 0.1 0.2 0.4 0.5 1.0
    assert rows[("all", "throughput")]["points"] == 0  # no data: not a silent zero
    assert math.isnan(rows[("all", "throughput")]["median_abs_err"])


def test_winner_rows_need_a_decisive_real_difference() -> None:
    a = _point("micro", 100, 200, [5.0, 5.2, 4.8], [4.0])
    b = _point("mono", 100, 400, [9.0, 9.1, 8.9], [3.0])  # the sim wrongly puts mono first
    c = _point("micro", 200, 200, [5.0, 9.0, 1.0], [4.0])  # a noisy real point: a tie
    d = _point("mono", 200, 400, [5.5, 5.0, 6.0], [3.0])
    rows = winner_rows([a, b, c, d], ("micro", "mono"))
    assert [(r["rate"], r["p50_real"], r["p50_sim"], r["p50_agree"]) for r in rows] == [
        (100, "micro", "mono", "False"),
        (200, "tie", "mono", ""),
    ]
    assert rows[0]["rho_a"] == 0.5 and rows[0]["rho_b"] == 0.25
    # by the means alone, the tie (micro 5.0 vs mono 5.5) is micro's too: the sim is wrong at both
    assert [r["p50_agree_means"] for r in rows] == ["False", "False"]
    assert winner_summary(rows)["p50"] == {
        "decisive": 1,
        "agree": 0,
        "real_ties": 1,
        "ordered_by_means": 2,
        "agree_by_means": 0,
    }
    sat = [
        {"design": "micro", "duration": "d", "mix": "m", "real_rate": 150.0, "sim_rate": 200.0},
        {"design": "mono", "duration": "d", "mix": "m", "real_rate": 300.0, "sim_rate": 190.0},
        {"design": "micro", "duration": "e", "mix": "m", "real_rate": 100.0, "sim_rate": 120.0},
        {"design": "mono", "duration": "e", "mix": "m", "real_rate": 200.0, "sim_rate": 250.0},
    ]
    assert [(r["duration"], r["real"], r["sim"], r["agree"]) for r in saturation_winners(sat)] == [
        ("d", "mono", "micro", "False"),
        ("e", "mono", "mono", "True"),
    ]


# ---------------------------------------------------------------------------- the plan
def test_full_matrix_file_covers_the_issue_and_plans_common_rates() -> None:
    v = load_validation(FULL)
    assert set(v.designs) == {"micro", "mono"} and len(v.durations) >= 2 and len(v.mixes) >= 2
    assert len(v.fractions) >= 4 and min(v.fractions) <= 0.1 and max(v.fractions) >= 0.9
    sat_runs = expand(experiment_from_mapping(saturation_mapping(v))).runs
    assert len(sat_runs) == 2 * 2 * 2
    assert all(r.workload.arrival.clients == 32 for r in sat_runs)  # type: ignore[union-attr]
    saturation = {(d, du, m): 400.0 for d in v.designs for du, m in v.cells}
    saturation[("mono", "noop", "submit")] = 250.0
    del saturation[("micro", "exp50ms", "mixed")]  # not measured yet: that cell is not planned
    mappings = point_mappings(v, saturation)
    # 3 cells with common rates, and micro alone at its own 0.7 and 0.9 where mono saturates lower
    assert len(mappings) == 4
    own = [m for m in mappings if m["sweep"]["design"] == ["micro"]]
    assert len(own) == 1 and own[0]["sweep"]["rate"] == [280.0, 360.0]  # 0.7 and 0.9 of 400
    assert list(own[0]["sweep"]["duration"]) == ["noop"] and list(own[0]["sweep"]["mix"]) == ["submit"]
    noop_submit = next(
        m for m in mappings if "noop" in m["sweep"]["duration"] and "submit" in m["sweep"]["mix"]
    )
    assert noop_submit["sweep"]["rate"] == [25.0, 75.0, 125.0, 175.0, 225.0]  # of min(400, 250)
    runs = expand(experiment_from_mapping(noop_submit)).runs
    assert len(runs) == 2 * 5 * v.replications
    assert "real-mono-validation.rate225.noop.submit.sqlite.s12-13-r2" in {r.run_id for r in runs}


def test_bad_validation_files_are_invalid_argument() -> None:
    good = {
        "workload": {"arrival": {"kind": "open", "rate": 1}},
        "durations": {"a": {"kind": "constant", "mean": 0}},
        "mixes": {"s": {"submit": 1.0}},
        "fractions": [0.1, 0.5],
    }
    assert validation_from_mapping(good).fractions == (0.1, 0.5)
    for bad in (
        {**good, "fractions": [0.1, 0.1]},
        {**good, "fractions": [0, 0.5]},
        {**good, "designs": ["celery"]},
        {**good, "mixes": {"reads": {"status": 1.0}}},
        {**good, "bands": [0.8, 0.5]},
        {**good, "typo": 1},
        {**good, "sim_overrides": {"no_such_parameter": 1}},
        {**good, "sim_overrides": [1]},
    ):
        with pytest.raises(InvalidArgument):
            validation_from_mapping(bad)
    with pytest.raises(InvalidArgument):
        rates_of(validation_from_mapping({**good, "fractions": [0.1, 0.1001]}), 10.0)
    what_if = validation_from_mapping({**good, "sim_overrides": {"cpu_slice": 0.004}})
    assert sim_overrides(what_if)["cpu_slice"] == 0.004


def test_a_twin_set_lays_its_calibration_and_what_ifs_over_the_file() -> None:
    v = load_validation(SMOKE)
    names = [t.name for t in TWIN_SETS]
    assert len(set(names)) == len(names) and TWIN_SETS[0].folder == MAIN_FOLDER
    twin_set = TwinSet("validation/x", "other", host_scale=False, sim_overrides={"cpu_slice": 0.0})
    applied = twin_set.applied(v)
    assert (applied.calibration, applied.host_scale) == ("other", False)
    assert applied.sim_overrides == {"cpu_slice": 0.0}
    assert applied.designs == v.designs and applied.fractions == v.fractions
    with pytest.raises(InvalidArgument):
        make_twin_set(v, TWIN_SETS[0], "data/runs", "data")
    fair = TwinSet("validation/f", "local", fair_scheduler=True)  # the slice local.json measured
    assert 0.001 < fair.what_ifs()["cpu_slice"] < 0.02
    old = str(REPO / "tests" / "sim" / "data" / "calibration-2026-11-28.json")  # measured no slice
    with pytest.raises(InvalidArgument):
        TwinSet("validation/g", old, fair_scheduler=True).what_ifs()


# ---------------------------------------------------------------------------- end to end (no cluster)
SLOW = sim_params(load_validation(SMOKE)).with_overrides({"cores": 1, "name": "half-cores"})


_fake_real_run = simulated_real_run(SLOW)


def test_validate_end_to_end_against_a_slower_stand_in(tmp_path: Path) -> None:
    v = load_validation(SMOKE)
    runs, tables_dir = tmp_path / "runs", tmp_path / "validation"
    made, failed, complete = run_validation_real(
        v, runs, progress=False, cluster_factory=no_cluster, run_function=_fake_real_run, log=lambda _: None
    )
    # 2 saturation runs, 2 designs x 2 common rates x 2 replications, and the stronger design alone
    # at 0.9 of its own saturation (the stand-in's two designs saturate > 10% apart)
    assert (made, failed, complete) == (2 + 2 * 2 * 2 + 2, 0, True)
    written = simulate(v, runs, records=False, log=lambda _: None)
    assert len(written) == made and all(w.startswith("sim-") for w in written)
    twin = load_config(runs / written[-1])
    assert twin["parameters"]["real_run"] == "real-" + written[-1][4:]
    assert twin["workload"] == load_config(runs / twin["parameters"]["real_run"])["workload"]
    assert simulate(v, runs, log=lambda _: None) == []  # up to date: nothing re-simulated
    assert len(simulate(v, runs, records=False, log=lambda _: None, force=True)) == made
    # resumable: the real side has nothing left to do
    assert run_validation_real(
        v, runs, progress=False, cluster_factory=no_cluster, run_function=_fake_real_run, log=lambda _: None
    )[:2] == (0, 0)

    tables = build_tables(v, runs, tables_dir)
    for name in ("points", "error_table", "winners", "saturation"):
        assert (tables_dir / f"{name}.csv").is_file()
    assert (tables_dir / "summary.json").is_file()
    with open(tables_dir / "points.csv") as f:
        points = list(csv.DictReader(f))
    assert len(points) == 2 * 2 + 1 and {p["n_real"] for p in points} == {"2"}
    # the stand-in has one core, the calibration two: the sim's saturation must be higher...
    sat = tables["saturation"]
    assert len(sat) == 2 and all(r["err"] > 0.2 for r in sat), sat
    # ...and at the high-load points its latency lower (negative error), far outside the replication spread
    # (the weaker design at 0.9 of its saturation, the stronger one at 0.9 of its own)
    high = [p for p in points if float(p["rho"]) > 0.8]
    assert len(high) == 2 and {p["design"] for p in high} == {"micro", "mono"}
    assert all(float(p["p50_err"]) < -0.2 for p in high), [(p["design"], p["p50_err"]) for p in high]
    assert all(float(p["p50_spread"]) < abs(float(p["p50_err"])) for p in high)
    # rho of each design is the point's rate over that design's own measured saturation
    for p in points:
        assert float(p["rho"]) == pytest.approx(float(p["rate"]) / float(p["saturation"]), rel=1e-4)
    text = format_tables(tables)
    assert "rho>0.8" in text and "winner" in text
    assert run_exists(runs, written[0])


# ---------------------------------------------------------------------------- host scale (issue 7)
PROBE = {"busy_us": 200.0, "wake_us": 100.0, "wake_gap_us": 300.0, "gap_s": 0.01}
SLOWER = {"busy_us": 300.0, "wake_us": 130.0, "wake_gap_us": 600.0, "gap_s": 0.01}


def _info(run_id: str, design: str, started: str, probe: Any) -> RunInfo:
    return RunInfo(run_id, "real", design, {}, {}, 0, {}, started_at=started, probe=probe)


def _calibration_with_probes(tmp_path: Path) -> Path:
    params = load_validation(SMOKE).calibration
    doc = json.loads((REPO / "data" / "calibration" / f"{params}.json").read_text())
    path = tmp_path / "probed.json"
    path.write_text(
        json.dumps({"parameters": doc["parameters"], "host_probe": {"mono": [PROBE], "micro": [PROBE]}})
    )
    return path


def test_a_runs_host_speed_is_the_median_of_its_designs_neighbours(tmp_path: Path) -> None:
    cal = _calibration_with_probes(tmp_path)
    v = dataclasses.replace(load_validation(SMOKE), calibration=str(cal))
    # ten B runs: one outlier probe among slower ones; two A runs at the calibration's speed; one unprobed
    runs = [_info(f"real-mono-x-{i}", "mono", f"t{i:02d}", SLOWER) for i in range(10)]
    runs[3] = _info("real-mono-x-3", "mono", "t03", {**SLOWER, "busy_us": 2000.0})
    runs += [_info(f"real-micro-x-{i}", "micro", f"t{i:02d}", PROBE) for i in range(2)]
    runs.append(_info("real-micro-x-none", "micro", "t05", None))
    scales = host_scales(v, runs)
    assert scales["real-mono-x-3"] == HostScale.between(SLOWER, PROBE)  # the outlier is voted down
    assert all(scales[f"real-mono-x-{i}"].cpu == pytest.approx(1.5) for i in range(10))
    assert scales["real-micro-x-0"] == HostScale() and scales["real-micro-x-none"] is None
    off = dataclasses.replace(v, host_scale=False)
    assert set(host_scales(off, runs).values()) == {None}
    unprobed = dataclasses.replace(
        v, calibration=str(REPO / "tests" / "sim" / "data" / "calibration-2026-11-28.json")
    )
    assert set(host_scales(unprobed, runs).values()) == {None}


def test_twins_move_to_the_probed_host_and_then_match_it(tmp_path: Path) -> None:
    """The stand-in runs on a host 1.5x slower than the calibration's and probes it so: its twins,
    moved by the probes, are the same simulation (zero error); unmoved they are too fast."""
    v = dataclasses.replace(load_validation(SMOKE), calibration=str(_calibration_with_probes(tmp_path)))
    slow = sim_params(v).on_host(HostScale.between(SLOWER, PROBE))

    def slow_host_run(handle: Any, run: PlannedRun, options: Any) -> Any:
        config = sim.SimConfig(run.design, run.workload, slow, replication=run.replication, run_id=run.run_id)  # type: ignore[arg-type]
        result = sim.run(config)
        config = run_config(
            run_id=run.run_id,
            kind="real",
            design=run.design,
            workload=run.workload,
            parameters={**handle.parameters, "point": dict(run.point), "host_probe": SLOWER},
            replication=run.replication,
            started_at="2000-01-01T00:00:00Z",
            provenance_info=FIXED_PROVENANCE,
        )
        return config, result.requests, result.jobs, {**result.summary, "kind": "real"}

    runs = tmp_path / "runs"
    run_validation_real(
        v, runs, progress=False, cluster_factory=no_cluster, run_function=slow_host_run, log=lambda _: None
    )
    written = simulate(v, runs, records=False, log=lambda _: None)
    assert load_config(runs / written[0])["parameters"]["host_scale"]["cpu"] == pytest.approx(1.5)
    points, _ = collect_points(v, runs)
    assert points and all(p.error(m) == pytest.approx(0.0, abs=1e-9) for p in points for m in ("p50", "p99"))
    unmoved = dataclasses.replace(v, host_scale=False)
    assert len(simulate(unmoved, runs, records=False, log=lambda _: None)) == len(written)  # re-made
    points, _ = collect_points(unmoved, runs)
    assert all(p.error("p50") < -0.05 for p in points), [p.error("p50") for p in points]

    # the same real runs as another twin set: its own tables, the main twins untouched
    data = tmp_path / "data"
    main_twin = (runs / written[0] / "config.json").read_text()
    twin_set = TwinSet("validation/unmoved", str(_calibration_with_probes(tmp_path)), host_scale=False)
    tables = make_twin_set(v, twin_set, runs, data, log=lambda _: None)
    assert tables is not None and (data / "validation" / "unmoved" / "error_table.csv").is_file()
    assert (runs / written[0] / "config.json").read_text() == main_twin
    missing = TwinSet("validation/none", str(tmp_path / "no-such-calibration.json"))
    assert make_twin_set(v, missing, runs, data, log=lambda _: None) is None


def test_dtq_validate_names_an_unknown_twin_set(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["validate", str(SMOKE), "--twin-sets", "no-such-set"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("dtq validate: unknown twin sets ['no-such-set']; known: ") and "'after'" in err
    assert err.count("\n") == 1


def test_tables_go_to_a_new_folder_when_the_default_holds_some(tmp_path: Path) -> None:
    """`dtq validate --table` never replaces committed tables unless --force or --tables names them."""
    default = tmp_path / "validation"
    assert tables_folder(default, force=False) == default  # no tables yet
    default.mkdir()
    (default / "summary.json").write_text("{}")
    new = tables_folder(default, force=False)
    assert new.parent == default and new.name.startswith("tables-") and not new.exists()
    assert tables_folder(default, force=True) == default
