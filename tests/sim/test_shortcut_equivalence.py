"""The simulator's event shortcut `SimEnv.inline_start` against the full path it replaces.

The open-loop load generator starts each request's process with its first step at once (sim/engine.py
`SimEnv.start`) instead of behind an Initialize event at the same instant. The arrival loop yields
right after and costs no CPU of its own, so nothing can tell the two apart: the outputs must be
byte-identical, with the measured wake-up costs (calibration `local`) and on the validation
workloads of both designs. (The same start for a submit's WaitJob waiter was tried and dropped: its
first send then found the generator's loop still busy and paid no wake-up, which shifted Design A's
submit p50 by more than its seed-to-seed SD; the waiter keeps its Initialize.)
"""

from __future__ import annotations

import warnings
from dataclasses import replace
from pathlib import Path

import pytest

import sim
from model.results.runs import load_workload
from sim.engine import SimEnv
from tests.sim.test_golden import digest

WORKLOADS = Path(__file__).resolve().parents[2] / "data" / "workloads"


def _run(workload: str, design: str, seed: int, inline: bool) -> sim.SimResult:
    spec = replace(load_workload(WORKLOADS / workload), run_time=2.0, warmup=0.5, seed=seed)
    params = sim.load_params("local")
    assert not params.wakeup.is_zero  # the measured wake-ups: where a reordering would show
    before = SimEnv.inline_start
    SimEnv.inline_start = inline
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sim.run(sim.SimConfig(design, spec, params))  # type: ignore[arg-type]
    finally:
        SimEnv.inline_start = before


@pytest.mark.parametrize("design", ["mono", "micro"])
@pytest.mark.parametrize("workload", ["submit-open-200.yaml", "mixed-open.yaml"])
def test_inline_start_byte_identical(workload: str, design: str) -> None:
    for seed in (1, 2):
        full = _run(workload, design, seed, inline=False)
        short = _run(workload, design, seed, inline=True)
        assert len(short.jobs) > 100
        assert digest(short) == digest(full)


def test_inline_start_is_the_default() -> None:
    """Every run uses the shortcut (the full path exists for the comparison above)."""
    assert SimEnv.inline_start
