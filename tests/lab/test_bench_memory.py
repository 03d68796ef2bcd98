"""lab.bench.memory's sampling of a child: RSS with progress while it runs, its output at the end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import sim.records
from lab.bench.memory import jobs_spilled, run_sampled


def test_a_child_is_sampled_while_it_runs(tmp_path: Path) -> None:
    chunks = tmp_path / "dtq-sim-jobs-x"
    chunks.mkdir()
    (chunks / "chunk00000.csv").write_text("")  # one chunk spilled: that many job records
    code = "import time; block = bytearray(64 << 20); time.sleep(3); print('done', len(block))"
    out, samples = run_sampled([sys.executable, "-c", code], tmp_path, every=0.3)
    assert out.strip() == f"done {64 << 20}"
    assert samples, "no sample taken"
    assert all(0 <= minutes < 1 and done == sim.records.CHUNK for minutes, done, _ in samples)
    assert max(mb for _, _, mb in samples) >= 64  # sampled after the block was made resident


def test_jobs_spilled_counts_job_chunks_only(tmp_path: Path) -> None:
    for kind, n in (("jobs", 3), ("requests", 5)):
        folder = tmp_path / f"dtq-sim-{kind}-abc"
        folder.mkdir()
        for i in range(n):
            (folder / f"chunk{i:05d}.csv").write_text("")
    assert jobs_spilled(tmp_path) == 3 * sim.records.CHUNK


def test_a_failing_child_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(subprocess.CalledProcessError):
        run_sampled([sys.executable, "-c", "raise SystemExit(3)"], tmp_path, every=0.3)
