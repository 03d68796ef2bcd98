"""SimEnv.run raises the collector's thresholds only while it runs (sim/engine.py batched_gc)."""

from __future__ import annotations

import gc
from collections.abc import Generator
from typing import Any

from sim.engine import GC_THRESHOLDS, SimEnv


def test_thresholds_raised_during_run_and_restored_after() -> None:
    before = gc.get_threshold()
    assert before != GC_THRESHOLDS  # else the test could not tell the two apart
    seen: list[tuple[int, int, int]] = []
    env = SimEnv()

    def proc() -> Generator[Any, Any, None]:
        yield env.timeout(1.0)
        seen.append(gc.get_threshold())

    done = env.process(proc())
    env.run(until=done)
    assert seen == [GC_THRESHOLDS]
    assert gc.get_threshold() == before


def test_thresholds_restored_when_the_run_raises() -> None:
    before = gc.get_threshold()
    env = SimEnv()

    def boom() -> Generator[Any, Any, None]:
        yield env.timeout(1.0)
        raise ValueError("boom")

    done = env.process(boom())
    try:
        env.run(until=done)
    except ValueError:
        pass
    else:
        raise AssertionError("the process's error must crash the run")
    assert gc.get_threshold() == before
