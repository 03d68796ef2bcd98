"""lab/report/ builds every figure and table from a tiny data directory, copies the values it is
given, says what is missing, and fills REPORT.md's table blocks without touching the prose."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest

from lab.report import facts
from lab.report.build import build
from lab.report.calibration import table_calibration_drift
from lab.report.data import NO_VALIDATION, host_probe_trend, num, validation_trend
from lab.report.faults import _median_cell, table_faults_compose
from lab.report.markdown import pm
from lab.report.validation import (
    table_host_probe,
    table_host_scaling,
    table_saturation,
    table_scheduler,
    table_validation_trend,
    table_winner_agreement,
)

COLUMNS = ["experiment", "design", "arrival", "concurrency", "rate", "duration", "mix", "store", "slots"]
COLUMNS += ["n", "planned"]
METRICS = ["requests_per_s", "jobs_per_s", "latency_p50_ms", "latency_p95_ms", "latency_p99_ms"]
METRICS += ["completion_p50_ms", "completion_p95_ms", "completion_p99_ms", "completed_per_s"]


def _summary_row(design: str, clients: int, done: float, ci: float, n: int = 3) -> dict[str, Any]:
    row: dict[str, Any] = {
        "experiment": "seed_plan",
        "design": design,
        "arrival": f"c{clients}",
        "concurrency": clients,
        "rate": "",
        "duration": "noop",
        "mix": "submit",
        "store": "memory",
        "slots": 12,
        "n": n,
        "planned": 3,
    }
    for i, m in enumerate(METRICS):
        # distinct values per metric so a column mix-up would show
        row[f"{m}_mean"], row[f"{m}_ci95"] = (done, ci) if m == "completed_per_s" else (1.0 + i, 0.5)
    row.update(errors=0, unfinished_jobs=0, loadgen_bottlenecked=0)
    return row


def _write_fixture(root: Path) -> None:
    rows = [
        _summary_row("micro", 1, 70.25, 3.5),
        _summary_row("micro", 4, 123.4, 5.6),
        _summary_row("mono", 1, 80.0, 2.0),
        _summary_row("mono", 4, 331.9, 40.1),
        _summary_row("celery", 1, 60.0, 1.0),
        _summary_row("celery", 4, 150.0, 9.0),
        _summary_row("celery", 16, 999.0, 1.0, n=0),  # planned, not run yet: no row, no point
    ]
    path = root / "experiments" / "seed_plan" / "summary.csv"
    path.parent.mkdir(parents=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    faults = [
        {"design": "micro", "fault": "kill_worker", "target": "worker", "lease_s": lease, "heartbeat_s": 0.5}
        | {"accepted": 100, "lost": 0, "duplicates": dup, "recovery_s": rec, "unavailable_s": 0.0}
        | {"store": "sqlite", "run_id": f"r{lease}"}
        for lease, dup, rec in ((2.0, 12, 2.5), (5.0, 7, None))
    ]
    (root / "faults").mkdir()
    (root / "faults" / "sim-micro.json").write_text(json.dumps(faults))
    # the real injector's "kill" of A's worker process is the simulator's kill_worker: one row for both
    # three real runs of that point: the table shows medians (a never-recovered run ranks above all)
    real = [
        faults[0] | {"fault": "kill", "duplicates": dup, "recovery_s": rec, "run_id": f"real{i}"}
        for i, (dup, rec) in enumerate(((1, 3.0), (3, 5.0), (2, None)))
    ]
    (root / "faults" / "real-micro.json").write_text(json.dumps(real))
    # another workload's file beside it: not mixed in
    other = faults[0] | {"fault": "kill", "target": "gateway"}
    (root / "faults" / "real-micro-open.json").write_text(json.dumps([other]))
    calibration = {
        "parameters": {
            "cores": 2,
            "client_call": {"kind": "empirical", "samples": [1e-4 * (1 + i / 10) for i in range(20)]},
            "service": {"node": {"SubmitJob": {"kind": "empirical", "samples": [2e-4] * 5 + [3e-4] * 5}}},
        },
        "unmeasured": ["service.node.fetch"],
    }
    (root / "calibration").mkdir()
    (root / "calibration" / "local.json").write_text(json.dumps(calibration))


def _cells(table: str, first: str, second: str) -> list[str]:
    """The cells of the markdown row whose first two cells are (first, second)."""
    for line in table.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[:2] == [first, second]:
            return cells
    raise AssertionError(f"no row {first} {second} in\n{table}")


REPORT_TEMPLATE = (
    "# Report\n\nProse stays.\n\n<!-- BEGIN table:experiment -->\nstale\n<!-- END table:experiment -->\n"
    "\nMiddle prose.\n\n<!-- BEGIN table:nosuch -->\nkept\n<!-- END table:nosuch -->\n"
)


def test_build_from_a_tiny_data_directory(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "paper"
    _write_fixture(data)
    doc = tmp_path / "REPORT.md"
    doc.write_text(REPORT_TEMPLATE)

    built = build(data, out, doc)

    assert {p.name for p in built.documents} == {"paper.md", "appendix.md"}
    paper_text = (out / "paper.md").read_text()
    assert "## Abstract" in paper_text and "{{" not in paper_text
    names = {p.stem for p in built.figures}
    assert names == {"throughput", "latency", "completion", "mix_duration", "faults", "calibration"}
    for path in built.figures:
        assert path.parent == out / "figures" and path.stat().st_size > 1000
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(built.tables) == {
        "experiment",
        "wins",
        "headline",
        "bench",
        "validation",
        "saturation",
        "winners",
        "faults",
        "faults_compose",
        "calibration",
        "calibration_drift",
        "validation_after",
        "validation_trend",
        "host_scaling",
        "host_probe",
        "scheduler",
    }
    for path in built.tables.values():
        assert path.stat().st_size > 0

    experiment = built.tables["experiment"].read_text()
    micro4 = _cells(experiment, "A (micro)", "4")
    assert micro4[5] == "123.4 ± 5.6"  # done/s: the fixture's mean ± CI, copied
    assert micro4[4] == "3/3"
    assert "999.0" not in experiment  # the point with no replication on disk is left out
    wins = built.tables["wins"].read_text()
    # at 4 clients B's 331.9 ± 40.1 beats A's 123.4 ± 5.6 beyond both CIs; ratio 331.9 / 123.4
    assert _cells(wins, "noop", "submit")[2:5] == ["1", "B (B/A 1.14)", "tie (B/A 1.00)"]  # 80 vs 70.25
    assert "| noop | submit | 4 | B (B/A 2.69) |" in wins
    headline = built.tables["headline"].read_text()  # at 4 clients: the top concurrency run so far
    assert _cells(headline, "noop", "submit")[2:5] == ["123.4 ± 5.6", "331.9 ± 40.1", "150.0 ± 9.0"]
    assert "No saved `dtq bench` output" in built.tables["bench"].read_text()
    faults = built.tables["faults"].read_text()
    first = _cells(faults, "A (micro)", "kill_worker worker")
    assert first[2:6] == ["2.0", "0.5", "2.5", "12"] and first[8:10] == ["5.0", "2"] and first[-1] == "3"
    assert "never" in faults and faults.count("| A (micro) |") == 2 and "gateway" not in faults
    assert NO_VALIDATION in built.tables["validation"].read_text().lower()
    assert any(NO_VALIDATION in note for note in built.notes)
    calibration = built.tables["calibration"].read_text()
    assert _cells(calibration, "service.node.SubmitJob", "10")[4] == "250.0"  # mean µs of the samples
    assert "`service.node.fetch`" in calibration

    text = doc.read_text()
    assert "stale" not in text and "| A (micro) | 4 |" in text
    assert text.startswith("# Report\n\nProse stays.\n") and "\nMiddle prose.\n" in text
    assert "<!-- BEGIN table:nosuch -->\nkept\n<!-- END table:nosuch -->" in text
    # idempotent: a second build leaves the report as it is
    build(data, out, doc)
    assert doc.read_text() == text


def test_validation_files_are_picked_up_when_present(tmp_path: Path) -> None:
    data, out = tmp_path / "data", tmp_path / "paper"
    (data / "validation").mkdir(parents=True)
    point = {"design": "mono", "duration": "noop", "mix": "submit", "rate": 100, "rho": 0.3, "band": "low"}
    point |= {"throughput_real": 99.0, "throughput_real_ci95": 2.0, "throughput_sim": 97.0}
    point |= {"p50_real": 2.0, "p50_real_ci95": 0.1, "p50_sim": 2.5}
    with open(data / "validation" / "points.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(point))
        writer.writeheader()
        writer.writerow(point)
        writer.writerow(point | {"rate": 200, "throughput_real": 190.0, "throughput_sim": 180.0})
    error = {"band": "all", "metric": "p50", "points": 2, "median_abs_err": 0.25, "median_signed_err": 0.2}
    with open(data / "validation" / "error_table.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(error))
        writer.writeheader()
        writer.writerow(error)

    (data / "bench").mkdir()
    (data / "bench" / "local.txt").write_text("$ dtq bench --runs 3\nmono 514 jobs/s\n")

    built = build(data, out, None)

    assert {p.stem for p in built.figures} == {"accuracy"}
    assert (out / "figures" / "accuracy.png").stat().st_size > 1000
    assert _cells(built.tables["validation"].read_text(), "all", "p50")[3:5] == ["25%", "20%"]
    assert "No `seed_plan` sweep data yet" in built.tables["experiment"].read_text()
    assert "No fault data yet" in built.tables["faults"].read_text()
    assert "```\n$ dtq bench --runs 3\nmono 514 jobs/s\n```" in built.tables["bench"].read_text()


def test_num_and_pm() -> None:
    assert math.isnan(num("")) and math.isnan(num(None)) and math.isnan(num("x"))
    assert num("1.5") == 1.5
    assert pm(1.234, math.nan, 2) == "1.23" and pm(math.nan, 1.0) == "-"


@pytest.mark.parametrize(
    ("values", "expected"),
    [([], "-"), ([3.0], "3.0"), ([3.0, 5.0], "4.0"), ([5.0, None, 3.0], "5.0"), ([None, 1.0], "never")],
)
def test_median_cell(values: list[float | None], expected: str) -> None:
    runs = [{"recovery_s": v} for v in values]
    assert _median_cell(runs, "recovery_s", 1) == expected


def test_saturation_and_winner_tables_read_the_validation_summary() -> None:
    summary = {
        "saturation": [
            {
                "design": "mono",
                "duration": "noop",
                "mix": "submit",
                "real_rate": 300.0,
                "sim_rate": 330.0,
                "err": 0.1,
            },
            {
                "design": "micro",
                "duration": "noop",
                "mix": "submit",
                "real_rate": 150.0,
                "sim_rate": 120.0,
                "err": -0.2,
            },
        ],
        "saturation_winners": [{"agree": "True", "duration": "noop", "mix": "submit"}],
        "winner_agreement": {
            "p50": {"agree": 3, "decisive": 4, "real_ties": 1, "agree_by_means": 4, "ordered_by_means": 5}
        },
    }
    text = table_saturation(summary)
    lines = [line for line in text.splitlines() if line.startswith("| A") or line.startswith("| B")]
    assert lines[0].startswith("| A (micro) | noop | submit | 150.0 | 120.0 | -20% |")  # A sorts first
    assert "| 10% |" in lines[1] and "in 1 of 1 cells" in text
    assert "| p50 | 5 | 1 | 3 of 4 | 4 of 5 |" in table_winner_agreement(summary)
    assert table_saturation({}).startswith("No validation data yet")


def test_compose_fault_table_sets_each_compose_point_beside_the_local_one() -> None:
    def row(fault: str, target: str, recovery: float | None, dup: int, unavail: float) -> dict[str, Any]:
        return {
            "design": "micro",
            "fault": fault,
            "target": target,
            "lease_s": 5.0,
            "heartbeat_s": 1.0,
            "recovery_s": recovery,
            "duplicates": dup,
            "lost": 0,
            "unavailable_s": unavail,
        }

    local = [row("kill", "job", 4.0, 0, 0.0), row("kill", "job", 5.0, 0, 0.0)]
    compose = [
        row("kill", "job", 6.5, 3, 1.0),
        row("kill", "job", None, 11, 2.0),
        row("kill", "job", 6.5, 6, 1.5),
    ]
    compose.append(row("pause", "worker", 4.5, 12, 0.0))
    text = table_faults_compose(local, compose)
    lines = [line for line in text.splitlines() if line.startswith("| A")]
    assert lines[0] == "| A (micro) | kill job | 5.0 | 1.0 | 4.5 | 0 | 0 | 0.0 | 2 | 6.5 | 6 | 0 | 1.5 | 3 |"
    assert lines[1] == "| A (micro) | pause worker | 5.0 | 1.0 | - | - | - | - | 0 | 4.5 | 12 | 0 | 0.0 | 1 |"
    assert table_faults_compose(local, []).startswith("No Compose fault runs yet")


def test_calibration_drift_compares_medians_key_by_key() -> None:
    def cal(submit: list[float], status: list[float]) -> dict[str, object]:
        node = {
            "SubmitJob": {"kind": "empirical", "samples": submit},
            "GetJobStatus": {"kind": "empirical", "samples": status},
        }
        return {"parameters": {"service": {"node": node}}}

    before = cal([100e-6, 200e-6, 300e-6], [50e-6, 50e-6, 50e-6])
    after = cal([400e-6, 400e-6, 400e-6], [100e-6, 100e-6, 100e-6])
    text = table_calibration_drift(before, after, ("local", "local-after"))
    assert "| service.node.SubmitJob | 200.0 | 400.0 | 2.00 |" in text
    assert "| service.node.GetJobStatus | 50.0 | 100.0 | 2.00 |" in text
    assert "over the 2 keys with non-zero medians: 2.00" in text


def test_validation_trend_groups_real_runs_by_start_time(tmp_path: Path) -> None:
    def run(name: str, p50: float, started: str = "") -> None:
        d = tmp_path / name
        d.mkdir()
        (d / "summary.json").write_text(json.dumps({"latency_ms": {"all": {"p50": p50}}}))
        if started:
            (d / "config.json").write_text(json.dumps({"started_at": started}))

    run("real-mono-validation.rate10.noop.submit.sqlite.s12-11-r0", 2.0, "2026-12-04T01:00:00Z")
    run("sim-mono-validation.rate10.noop.submit.sqlite.s12-11-r0", 1.0)
    run("real-micro-validation.rate10.noop.submit.sqlite.s12-11-r0", 4.0, "2026-12-04T01:01:00Z")
    run("sim-micro-validation.rate10.noop.submit.sqlite.s12-11-r0", 4.0)
    run("real-mono-validation.rate20.noop.submit.sqlite.s12-11-r0", 2.0, "2026-12-04T01:05:00Z")
    run("sim-mono-validation.rate20.noop.submit.sqlite.s12-11-r0", 3.0)
    run("real-mono-validation.rate30.noop.submit.sqlite.s12-11-r0", 2.0, "2026-12-04T01:06:00Z")  # no twin
    trend = validation_trend(tmp_path, window=240.0)
    assert trend == [(0.0, 2, 0.75), (240.0, 1, 1.5)]
    assert "| 4-8 | 1 | 1.50 |" in table_validation_trend(trend)


def test_host_probe_trend_and_the_four_twin_sets(tmp_path: Path) -> None:
    probe = {"busy_us": 200.0, "wake_us": 100.0, "wake_gap_us": 300.0, "python_us": 4.0}
    for i, (started, busy) in enumerate([("01:00:00", 200.0), ("01:01:00", 400.0), ("01:05:00", 500.0)]):
        d = tmp_path / "runs" / f"real-mono-validation.rate{i}.noop.submit.sqlite.s12-11-r0"
        d.mkdir(parents=True)
        config = {
            "started_at": f"2026-12-04T{started}Z",
            "parameters": {"host_probe": probe | {"busy_us": busy}},
        }
        (d / "config.json").write_text(json.dumps(config))
    trend = host_probe_trend(tmp_path / "runs", window=240.0)
    assert [(start, n, m["busy_us"]) for start, n, m in trend] == [(0.0, 2, 300.0), (240.0, 1, 500.0)]
    calibrations = {"local": {"host_probe": {"mono": [probe], "micro": [probe | {"busy_us": 100.0}]}}}
    text = table_host_probe(trend, calibrations)
    assert "| local (calibration) | 2 | 150.0 | 100.0 | 300.0 | 4.0 |" in text
    assert "| runs 4-8 min | 1 | 500.0 |" in text

    assert NO_VALIDATION in table_host_scaling(tmp_path).lower()
    rows = [
        {"band": band, "metric": metric, "median_abs_err": err, "median_signed_err": -err}
        for band, err in (("rho<=0.5", 0.1), ("0.5<rho<=0.8", 0.2), ("rho>0.8", 0.3))
        for metric in ("p50", "p99")
    ]
    for folder in ("validation", "validation/unscaled"):
        (tmp_path / folder).mkdir(parents=True)
        with open(tmp_path / folder / "error_table.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    table = table_host_scaling(tmp_path)
    assert "| local | yes | FIFO per burst | 10% / 20% / 30% | 10% / 20% / 30% | -10% |" in table
    assert "| local | no | FIFO per burst |" in table and "local-after" not in table.split("\n\n")[0]


def test_the_scheduler_table_sets_fifo_and_fair_twins_side_by_side(tmp_path: Path) -> None:
    assert "no data/validation/fair/" in table_scheduler(tmp_path).lower()
    sat = {"validation": 0.1, "validation/fair": -0.3}
    p50 = {"validation": 0.2, "validation/fair": 0.05}
    for folder, sat_err in sat.items():
        (tmp_path / folder).mkdir(parents=True)
        with open(tmp_path / folder / "saturation.csv", "w", newline="") as f:
            writer = csv.DictWriter(
                f, fieldnames=["design", "duration", "mix", "real_rate", "sim_rate", "err"]
            )
            writer.writeheader()
            writer.writerow(
                {
                    "design": "micro",
                    "duration": "noop",
                    "mix": "submit",
                    "real_rate": 300,
                    "sim_rate": 0,
                    "err": sat_err,
                }
            )
        with open(tmp_path / folder / "points.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["design", "band", "p50_err"])
            writer.writeheader()
            for err in (p50[folder], -p50[folder], 3 * p50[folder]):
                writer.writerow({"design": "micro", "band": "rho<=0.5", "p50_err": err})
    table = table_scheduler(tmp_path)
    assert "| A (micro) | noop | submit | 300.0 | 10% | -30% |" in table
    assert "| A (micro), FIFO (local) | 20% / - / - |" in table
    assert "| A (micro), fair (local) | 5% / - / - |" in table


def test_the_extended_matrix_section_quotes_its_tables_and_says_when_they_are_absent(tmp_path: Path) -> None:
    assert "not measured" in facts.extended_section(tmp_path)
    assert facts.extended_holdout_groups(tmp_path) == ""
    band = {"median_abs_error": 0.25, "floor": 0.1}
    tables = {
        "calibration": ["cal-x"],
        "bands": [{"band": "rho>0.8", "points": 3, "metrics": {m: band for m in facts.EXTENDED_METRICS}}],
        "winner_summary": {"throughput": {"agree": 2, "decisive": 3, "points": 5}},
        "mechanisms": {"tail_width_real": 6.0, "tail_width_sim": 2.0, "signed_by_design": {}},
        "holdout_summary": [
            {"group": "H9", "points": 4, "metrics": {"p50": {"median_abs_error": 0.5, "floor": 0.2}}}
        ],
    }
    folder = tmp_path / "validation" / "extended"
    folder.mkdir(parents=True)
    (folder / "tables.json").write_text(json.dumps(tables))
    text = facts.extended_section(tmp_path)
    assert "| rho>0.8 | 3 | 25% / 10% |" in text and "cal-x" in text
    assert "throughput 2 of 3 decided (of 5 points)" in text
    assert "real p99/p50 is 6.0 and the simulated 2.0" in text
    assert "| H9 | 4 |  | 50% / 20% |" in facts.extended_holdout_groups(tmp_path)


def test_the_h5h8_section_tabulates_every_prediction_against_the_floor(tmp_path: Path) -> None:
    assert facts.h5h8_section(tmp_path) == ""
    cells = {m: 0.5 for m in facts.H5H8_METRICS}
    scores = {"a priori as is": cells, "conditioned background": cells, "floor": {"p99": 0.25}}
    folder = tmp_path / "validation" / "extended"
    folder.mkdir(parents=True)
    (folder / "results-h5h8.json").write_text(json.dumps({"scores": scores, "command": "cmd"}))
    text = facts.h5h8_section(tmp_path)
    assert "| a priori: the simulator as it is | 50% | 50% | 50% | 50% | 50% | 50% |" in text
    assert "| real floor |  |  |  | 25% |  |  |" in text
    assert "fair scheduler instead" not in text  # a prediction that is not in the file gets no row


def test_the_h5h8_rerun_is_scored_beside_the_first_runs(tmp_path: Path) -> None:
    folder = tmp_path / "validation" / "extended"
    folder.mkdir(parents=True)
    first = {m: 0.5 for m in facts.H5H8_METRICS}
    (folder / "results-h5h8.json").write_text(json.dumps({"scores": {"a priori as is": first}}))
    assert "one session" not in facts.h5h8_section(tmp_path)  # no re-run: no second table
    again = {**first, "p50": 0.1, "width": 0.9}
    scores = {"a priori as is": again, "floor": {"p50": 0.12}}
    fixed = {"scores": scores, "command": "cmd --tag fixed"}
    (folder / "results-h5h8-fixed.json").write_text(json.dumps(fixed))
    text = facts.h5h8_section(tmp_path)
    assert "| the simulator as it is, first runs | 50% | 50% | 50% | 50% | 50% | 50% |" in text
    assert "| the simulator as it is, one session | 50% | 10% | 50% | 50% | 90% | 50% |" in text
    assert "| real floor, one session |  | 12% |" in text and "cmd --tag fixed" in text
    assert "the simulator as it is: 1 of 5 (p50)" in text
