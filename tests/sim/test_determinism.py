"""Same config, same records; another simulator seed or replication, other records."""

from __future__ import annotations

import dataclasses

import pytest

import sim
from tests.sim.conftest import mixed_workload


@pytest.mark.parametrize("design", ["mono", "micro"])
def test_same_seed_same_records_other_seed_other_records(design: str) -> None:
    config = sim.SimConfig(design, mixed_workload(run_time=2.0))  # type: ignore[arg-type]
    first = sim.run(config)
    again = sim.run(config)
    assert first.requests == again.requests
    assert first.jobs == again.jobs
    assert first.summary == again.summary
    assert len(first.requests) > 200 and len(first.jobs) > 100

    other_seed = sim.run(dataclasses.replace(config, seed=config.workload.seed + 1))
    other_rep = sim.run(dataclasses.replace(config, replication=1))
    for other in (other_seed, other_rep):
        # the trace is the workload's (common random numbers): same requests intended, other timings
        assert [r.intended_time for r in other.requests] == [r.intended_time for r in first.requests]
        assert [r.end_time for r in other.requests] != [r.end_time for r in first.requests]
