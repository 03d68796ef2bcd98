"""lab/validation/holdout_h.py: the H1-H4 predictions' table."""

from __future__ import annotations

from lab.validation import holdout_h


def test_the_table_has_open_and_closed_points() -> None:
    reps = [{"values": {"throughput": 10.0, "p50": 1.0}}, {"values": {"throughput": 20.0, "p50": 3.0}}]
    pred = {
        "command": "python -m lab.validation.holdout_h",
        "code_version": "abc",
        "calibration": "local",
        "made_at": "now",
        "replications": 2,
        "open": {
            "points": {"h1r40.mono": {"case": "h1r40", "design": "mono", "rate": 50.0, "replications": reps}},
            "saturation": {"h1r40.mono": 125.0},
        },
        "closed": {"h2.micro": {"case": "h2", "design": "micro", "replications": reps}},
    }
    text = holdout_h.markdown(pred)
    assert "| h1r40 | mono | 50 | 15.0 | 2.0 | - |" in text
    assert "| h2 | micro | closed | 15.0 | 2.0 |" in text
    assert "h1r40.mono 125" in text and "at code abc" in text


def test_the_real_plan_interleaves_points_and_designs_replication_by_replication() -> None:
    points = {
        f"{case}.{design}": {"case": case, "design": design, "base_saturation": 100.0}
        for case in ("h1r40", "h1r75", "h3r40", "h3r75")
        for design in ("micro", "mono")
    }
    plan = holdout_h.point_plan({"open": {"points": points}}, "local")
    assert len(plan) == 36  # (4 open + 2 closed points) x 2 designs x 3 replications
    ids = [run.run_id for _, run in plan]
    assert all(i.endswith("-r0") for i in ids[:12]) and all(i.endswith("-r2") for i in ids[24:])
    assert [run.design for _, run in plan[:2]] == ["micro", "mono"]
    assert "holdout.h1r40.rate40" in ids[0] and any("holdout_h4" in i for i in ids[:12])


def test_an_open_points_label_names_its_workload() -> None:
    assert holdout_h._base("h1r75") == "h1" and holdout_h._base("h3r40") == "h3"
