"""lab/calibration/compare.py: two calibrations key by key, the ratio's spread, and the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from lab.calibration.compare import compare, dist_median, format_comparison, key_values
from realsys.cli import main


def _doc(name: str, scale: float, node_scale: float) -> dict[str, object]:
    return {
        "parameters": {
            "name": name,
            "client_call": {"kind": "empirical", "samples": [1e-4 * scale, 2e-4 * scale, 3e-4 * scale]},
            "commit": 5e-5 * scale,
            "commit_per_row": 1e-6 * scale,
            "wakeup_idle": [[0.001, 1.0], [0.01, 2.0 * scale]],
            "per_item": {"node.fetch": 0.0},
            "service": {
                "node": {"SubmitJob": {"kind": "exponential", "mean": 4e-4 * node_scale}},
                "gateway": {"SubmitJob": {"kind": "lognormal", "mean": 3e-4 * scale, "sigma": 0.5}},
            },
        },
        "host_probe": {"mono": [{"busy_us": 300 * scale, "wake_us": 100.0, "wake_gap_us": 400.0}]},
    }


def test_each_key_is_its_distributions_median() -> None:
    assert dist_median({"kind": "empirical", "samples": [1.0, 5.0, 2.0]}) == 2.0
    assert dist_median(3.0) == 3.0
    assert dist_median({"kind": "exponential", "mean": 1.0}) == pytest.approx(math.log(2))
    assert dist_median({"kind": "lognormal", "mean": 1.0, "sigma": 1.0}) == pytest.approx(math.exp(-0.5))
    values = key_values(_doc("a", 1.0, 1.0))
    assert values["client_call"] == pytest.approx(2e-4) and values["wakeup_idle@0.01s"] == 2.0
    assert values["service.node.SubmitJob"] == pytest.approx(4e-4 * math.log(2))


def test_ratios_and_their_spread() -> None:
    """Every key 1.1x except node's 2x: the median ratio is the common shift, the spread shows node."""
    result = compare(_doc("a", 1.0, 1.0), _doc("b", 1.1, 2.0))
    ratios = {r["key"]: r["ratio"] for r in result["rows"]}
    assert ratios["service.node.SubmitJob"] == pytest.approx(2.0)
    assert ratios["commit"] == pytest.approx(1.1) and ratios["wakeup_idle@0.001s"] == pytest.approx(1.0)
    assert result["zero_in_one"] == []  # per_item.node.fetch: 0 in both, no ratio
    assert result["overall"]["keys"] == 7 and result["overall"]["median_ratio"] == pytest.approx(1.1)
    assert result["by_group"]["service.node"]["median_ratio"] == pytest.approx(2.0)
    assert result["overall"]["within_10pct"] == pytest.approx(6 / 7)
    assert result["host_probe_ratio"]["busy_us"] == pytest.approx(1.1)
    text = format_comparison(result)
    assert "service.node.SubmitJob" in text.splitlines()[-7] and "x2.000" in text


def test_dtq_calibrate_compare(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(_doc("a", 1.0, 1.0)))
    b.write_text(json.dumps(_doc("b", 0.9, 0.9)))
    out = tmp_path / "cmp.json"
    with pytest.raises(SystemExit) as exited:
        main(["calibrate", "--compare", str(a), str(b), "--json", str(out)])
    assert exited.value.code == 0
    assert "calibration b / a" in capsys.readouterr().out
    assert json.loads(out.read_text())["overall"]["median_ratio"] == pytest.approx(0.9)
