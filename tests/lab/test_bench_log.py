"""lab/bench/log.py: the bench header says whether the run held the measurement lock."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lab.bench.log import under_lock

PROBE = "from lab.bench.log import under_lock; import sys; print(under_lock(lock=sys.argv[1]))"


def probe(prefix: list[str], lock: str) -> str:
    """What under_lock(lock=...) says in a child started behind `prefix`."""
    done = subprocess.run(
        [*prefix, sys.executable, "-c", PROBE, lock], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


@pytest.mark.skipif(shutil.which("flock") is None, reason="needs flock(1)")
def test_under_lock_sees_a_flock_ancestor_of_that_lock_only(tmp_path: Path) -> None:
    lock = str(tmp_path / "bench.lock")
    assert probe(["flock", lock], lock) == "True"
    assert probe(["flock", lock], lock + ".other") == "False"
    assert probe([], lock) == "False"
    assert under_lock(pid=1) is False
