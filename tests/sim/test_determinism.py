"""Same config, same records; another simulator seed or replication, other records."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import subprocess
import sys
from pathlib import Path

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


def test_same_records_across_interpreters() -> None:
    """No set or hash order leaks into the simulation: other PYTHONHASHSEEDs, the same records."""
    code = (
        "import hashlib, sim\n"
        "from tests.sim.conftest import mixed_workload\n"
        "for design in ('mono', 'micro'):\n"
        "    r = sim.run(sim.SimConfig(design, mixed_workload(run_time=1.0)))\n"
        "    print(hashlib.sha256(repr((list(r.requests), list(r.jobs))).encode()).hexdigest())\n"
    )
    root = Path(__file__).resolve().parents[2]
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run(
            [sys.executable, "-c", code], check=False, cwd=root, env=env, capture_output=True, text=True
        )
        assert out.returncode == 0, out.stderr
        digests.add(out.stdout)
    assert len(digests) == 1
    assert hashlib.sha256(b"").hexdigest() not in next(iter(digests))
