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
