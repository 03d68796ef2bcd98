"""lab/validation/extended.py: the extended matrix's tables by band, its winners, the held-out rows."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lab.validation import extended

NAMES = ["requests_per_s", "p50", "p95", "p99", "p99.9", "done_p50", "done_p99"]


def _point(design: str, served: float, p50s: list[float], error: float, twin_p50: float) -> dict[str, object]:
    reps = [[served, p, p, p, p, p, p] for p in p50s]
    mean = [served, *([sum(p50s) / len(p50s)] * 6)]
    return {
        "point": f"real-{design}-vx_closed.c16.mixed.sqlite.s12",
        "real": mean,
        "real_replications": reps,
        "spread": [0.02, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1],
        "model": [error] * 7,
        "model twins": [served, *([twin_p50] * 6)],
        "model distance": 0.3,
        "distance_spread": 0.2,
    }


def _parts() -> dict[str, dict[str, object]]:
    return {
        "vx_closed": {
            "calibration": "vx-before",
            "metrics": NAMES,
            "points": [
                _point("micro", 100.0, [10.0, 10.5, 9.5], 0.05, 12.0),  # rho 0.4: in the band's floor
                _point("mono", 180.0, [5.0, 5.2, 4.8], 0.3, 20.0),  # rho 0.9: 3x the floor
            ],
        }
    }


SAT = {("vx_closed", "micro", "mixed"): 250.0, ("vx_closed", "mono", "mixed"): 200.0}


def test_points_get_rho_from_their_designs_saturation_and_a_band() -> None:
    rows = extended.point_rows(_parts(), SAT, "model")
    assert [r["rho"] for r in rows] == [pytest.approx(0.4), pytest.approx(0.9)]
    assert [r["band"] for r in rows] == ["rho<=0.5", "rho>0.8"]
    assert rows[0]["error"]["throughput"] == 0.05 and rows[0]["floor"]["p50"] == 0.1


def test_the_band_table_compares_the_median_error_with_the_floor() -> None:
    bands = {b["band"]: b for b in extended.band_table(extended.point_rows(_parts(), SAT, "model"))}
    assert bands["rho<=0.5"]["metrics"]["p50"]["met"] is True  # 5% <= 10%
    assert bands["rho<=0.5"]["metrics"]["throughput"]["met"] is False  # 5% > 2%
    high = bands["rho>0.8"]["metrics"]["p50"]
    assert high["target"] == pytest.approx(0.15) and high["met"] is False  # 30% > 1.5 x 10%
    assert bands["all"]["points"] == 2 and bands["all"]["metrics"]["p50"]["met"] is None
    assert bands["all"]["distance"] == pytest.approx(0.3) and bands["all"]["distance_floor"] == 0.2


def test_the_real_winner_is_decisive_only_outside_the_intervals() -> None:
    (row,) = extended.winner_table(extended.point_rows(_parts(), SAT, "model"))
    assert row["p50"]["real"] == "mono"  # 5 ms against 10 ms, tight replications
    assert row["p50"]["sim"] == "micro" and row["p50"]["agree"] is False  # twins: 12 against 20
    assert row["throughput"] == {"real": "mono", "sim": "mono", "agree": True}  # 180 against 100/s
    summary = extended.winner_summary([row])
    assert summary["p50"] == {"points": 1, "decisive": 1, "agree": 0}


def test_the_held_out_rows_come_from_both_result_files(tmp_path: Path) -> None:
    metrics = {"p50": {"error": -0.5, "floor": 0.2}, "throughput": {"error": 0.01, "floor": 0.05}}
    point = {"case": "q1", "design": "micro", "rate": 74, "n_real": 3, "metrics": metrics}
    (tmp_path / "results.json").write_text(json.dumps({"points": [point]}))
    (tmp_path / "results-h.json").write_text(
        json.dumps({"points": [{**point, "case": "h2", "rate": "closed"}]})
    )
    rows = extended.holdout_rows(tmp_path)
    assert [(r["group"], r["point"]) for r in rows] == [("Q1-Q3", "q1 micro"), ("H1-H4", "h2 micro")]
    summary = {g["group"]: g for g in extended.holdout_summary(rows)}
    assert summary["all"]["metrics"]["p50"]["median_abs_error"] == 0.5
    assert math.isnan(summary["all"]["metrics"]["p99"]["median_abs_error"])


def test_the_markdown_names_every_band_and_the_winners() -> None:
    rows = extended.point_rows(_parts(), SAT, "model")
    winners = extended.winner_table(rows)
    t = {
        "variant": "model",
        "calibration": ["vx-before"],
        "points": rows,
        "bands": extended.band_table(rows),
        "winners": winners,
        "winner_summary": extended.winner_summary(winners),
        "holdout": [],
        "holdout_summary": [],
    }
    text = extended.markdown(t)
    assert "| rho<=0.5 | 1 |" in text and "| rho>0.8 | 1 |" in text
    assert "mono / micro WRONG" in text and "0.30 / 0.20" in text


def test_a_saturation_experiment_is_the_parts_workload_at_32_clients_not_waiting() -> None:
    m = extended.saturation_mapping("vx_payload16k")
    assert m["name"] == "vx_sat_payload16k" and m["replications"] == 1
    assert m["workload"]["arrival"] == {"kind": "closed", "clients": 1, "wait_for_completion": False}
    assert m["sweep"]["concurrency"] == [32] and set(m["sweep"]["mix"]) == {"submit", "mixed"}
    assert m["workload"]["payload_bytes"] == 16384 and m["options"]["records"] is False


def test_the_mechanism_evidence_correlates_load_with_the_signed_error() -> None:
    rows = extended.point_rows(_parts(), SAT, "model")
    for r, load in zip(rows, (3.0, 12.0), strict=True):
        r["host"] = {"loadavg_1m": load}
    third = {**rows[0], "host": {"loadavg_1m": 8.0}, "error": {**rows[0]["error"], "throughput": 0.2}}
    m = extended.mechanisms([*rows, third])
    assert m["load_vs_error"]["throughput"]["spearman"] == pytest.approx(1.0)  # 0.05, 0.2, 0.3
    assert m["loadavg_range"] == [3.0, 12.0]
    assert m["signed_by_design"]["mono"]["p50"] == pytest.approx(0.3)
    assert m["tail_width_sim"] == pytest.approx(1.0)  # the twins' p99 = p50 here


def test_posthoc_rows_are_read_from_closed_loop_files(tmp_path: Path) -> None:
    result = {
        "calibration": "local",
        "host_scale": False,
        "metrics": NAMES,
        "points": [{}, {}],
        "medians": {"floor": [0.1] * 7, "model": [0.4] * 7, "model bias": [-0.4] * 7},
    }
    (tmp_path / "q.json").write_text(json.dumps(result))
    (row,) = extended.posthoc_rows(tmp_path)
    assert row["host_scale"] is False and row["points"] == 2
    assert row["median_abs_error"]["throughput"] == 0.4 and row["floor"]["p99.9"] == 0.1


def test_held_out_winners_compare_the_designs_only_on_closed_loops() -> None:
    def row(point: str, rate: object, real: list[float], predicted: float) -> dict[str, object]:
        return {
            "point": point,
            "rate": rate,
            "real": {"throughput": real, "p50": real, "p99": real},
            "predicted": {"throughput": predicted, "p50": predicted, "p99": predicted},
        }

    rows = [
        row("h2 micro", "closed", [100.0, 101.0, 99.0], 90.0),
        row("h2 mono", "closed", [200.0, 201.0, 199.0], 150.0),
        row("h1r40 micro", 22.7, [1.0, 1.0, 1.0], 1.0),
    ]
    (w,) = extended.holdout_winners(rows)
    assert w["point"] == "h2"
    assert w["throughput"] == {"real": "mono", "sim": "mono", "agree": True}
    assert w["p50"] == {"real": "micro", "sim": "micro", "agree": True}  # lower is better


def test_a_prefix_renames_every_experiment_and_reads_its_own_files(tmp_path: Path) -> None:
    assert extended.renamed("vx_closed", "vxf") == "vxf_closed"
    assert extended.renamed("vx_jobs_cpu") == "vx_jobs_cpu"
    assert extended.part_mapping("vx_jobs_cpu", "vxf")["name"] == "vxf_jobs_cpu"
    assert (
        extended.part_mapping("vx_jobs_cpu", "vxf")["sweep"] == extended.part_mapping("vx_jobs_cpu")["sweep"]
    )
    assert extended.saturation_mapping("vx_jobs_cpu", "vxf")["name"] == "vxf_sat_jobs_cpu"
    assert extended.saturation_mapping("vx_jobs_cpu")["name"] == "vx_sat_jobs_cpu"
    with pytest.raises(ValueError, match="prefix"):
        extended.renamed("vx_closed", "Bad-1")
    (tmp_path / "vx_closed.json").write_text('{"old": 1}')
    (tmp_path / "vxf_closed.json").write_text('{"new": 1}')
    assert extended.load_parts(tmp_path) == {"vx_closed": {"old": 1}}
    assert extended.load_parts(tmp_path, "vxf") == {"vx_closed": {"new": 1}}


def test_saturations_under_a_prefix_come_from_its_own_runs(tmp_path: Path) -> None:
    def run(name: str, design: str, rps: float) -> None:
        d = tmp_path / name
        d.mkdir()
        (d / "config.json").write_text(
            json.dumps({"run_id": name, "design": design, "workload": {"mix": {"submit": 1.0}}})
        )
        summary = {"throughput": {"requests_per_s": rps, "completed_per_s": rps}}
        (d / "summary.json").write_text(json.dumps(summary))

    run("real-mono-vx_sat_jobs_cpu.sqlite.s12-r0", "mono", 100.0)
    run("real-mono-vxf_sat_jobs_cpu.sqlite.s12-r0", "mono", 200.0)
    run("real-micro-vxf_closed.c32.submit.sqlite.s12-r0", "micro", 300.0)
    assert extended.saturations(tmp_path, "vxf") == {
        ("vx_jobs_cpu", "mono", ""): 200.0,
        ("vx_closed", "micro", "submit"): 300.0,
    }
    assert extended.saturations(tmp_path) == {("vx_jobs_cpu", "mono", ""): 100.0}


def test_a_bad_prefix_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        extended.main(["tables", "--prefix", "A-1"])
    assert exc.value.code == 2 and "prefix" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        extended.main(["run", "--prefix", "vxf"])
    assert exc.value.code == 2 and "--parts" in capsys.readouterr().err


def test_posthoc_rows_skip_files_that_are_not_closed_loop_comparisons(tmp_path: Path) -> None:
    (tmp_path / "other.json").write_text('{"groups": {}}')
    assert extended.posthoc_rows(tmp_path) == []
