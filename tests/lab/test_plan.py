"""lab/plan.py (the planner's real-cluster check): the pairs file, the judging rule, and the check's
plumbing end to end with the real runs replaced by canned summaries (the clusters are not started)."""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import plan as check_module
from model.errors import InvalidArgument
from sim.plan import Config, parse_slo

PAIRS = """
calibration: local
sim_replications: 1
real_replications: 2
pairs:
  - name: tiny
    slo: p99<100ms
    designs: [mono]
    slots: [1, 2]
    max_nodes: 2
    workload:
      arrival: {kind: open, rate: 100, max_in_flight: 64}
      mix: {submit: 1.0}
      duration: {kind: constant, mean: 0.02}
      run_time: 1
      warmup: 0.2
      seed: 3
"""


def _summary(p99: float, unfinished: int = 0) -> dict[str, Any]:
    return {
        "completion_ms": {"p99": p99},
        "latency_ms": {"submit": {"p99": 1.0}},
        "throughput": {"completed_per_s": 100.0},
        "jobs": {"unfinished": unfinished},
        "errors": {},
        "loadgen": {},
    }


def test_the_committed_pairs_file_loads() -> None:
    spec = check_module.load_pairs(check_module.PAIRS_FILE)
    assert len(spec.pairs) >= 3 and spec.real_replications >= 3


def test_a_bad_pairs_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "p.yaml"
    bad.write_text(PAIRS.replace("p99<100ms", "p99>100ms"))
    with pytest.raises(InvalidArgument, match=r"pairs\[0\]: goal 'p99>100ms'"):
        check_module.load_pairs(bad)


def test_judging_follows_the_planner() -> None:
    (goal,) = parse_slo("p99<100ms")
    assert check_module.goal_value(_summary(50.0), goal) == 50.0
    assert math.isinf(check_module.goal_value(_summary(50.0, unfinished=1), goal))
    assert check_module.judge([50.0, 90.0], [goal])[2] and not check_module.judge([50.0, math.inf], [goal])[2]


def test_check_end_to_end_with_canned_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pairs = tmp_path / "pairs.yaml"
    pairs.write_text(PAIRS)
    ran: list[tuple[Config, str]] = []

    def fake_run(config: Config, workload: Any, run_id: str) -> dict[str, Any]:
        ran.append((config, run_id))
        return _summary(40.0 if "choice" in run_id else 500.0)

    @contextlib.contextmanager
    def no_lock() -> Iterator[None]:
        yield

    monkeypatch.setattr(check_module, "real_run", fake_run)
    monkeypatch.setattr(check_module, "measure_lock", no_lock)
    out = tmp_path / "out"
    rows = check_module.check(pairs, out, log=lambda _: None)
    assert [r["verdict"] for r in rows] == ["hit"]
    # interleaved: choice, smaller, then smaller, choice
    assert [rid.rsplit("-", 2)[1] for _, rid in ran] == ["choice", "smaller", "smaller", "choice"]
    doc = json.loads((out / "check.json").read_text())
    assert doc["rows"][0]["choice"]["replications_met"] == 2
    assert "1 hit(s) of 1 pair(s)" in (out / "check.md").read_text()
    assert (out / "tiny" / "plan.json").is_file()
    with pytest.raises(InvalidArgument, match="--force"):
        check_module.check(pairs, out, log=lambda _: None)
