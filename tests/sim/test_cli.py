"""`dtq sim` writes a run directory in the shared schema, with kind "sim"."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.results.runs import load_config, load_records, load_summary
from realsys.cli import main

WORKLOAD = """
arrival: {kind: open, rate: 100, max_in_flight: 64}
mix: {submit: 0.8, status: 0.2}
duration: {kind: exponential, mean: 0.02}
run_time: 1
warmup: 0.2
seed: 3
"""


def test_dtq_sim_writes_a_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workload = tmp_path / "tiny.yaml"
    workload.write_text(WORKLOAD)
    out = tmp_path / "runs"
    argv = ["sim", "--design", "mono", "--workload", str(workload), "--nodes", "3"]
    argv += ["--set", "cores=4", "--set", "core.lease_duration=5", "--out", str(out)]
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    run_dir = out / "sim-mono-tiny-3-r0"
    config, summary = load_config(run_dir), load_summary(run_dir)
    assert config["kind"] == summary["kind"] == "sim" and config["design"] == "mono"
    assert config["parameters"]["params"]["nodes"] == 3 and config["parameters"]["params"]["cores"] == 4
    requests, jobs = load_records(run_dir)
    assert len(requests) == summary["latency_ms"]["all"]["count"] + sum(
        r.intended_time < 0.2 for r in requests
    )
    assert {j.job_id.split("-")[0] for j in jobs} == {"n1", "n2", "n3"}
    assert "run written to" in capsys.readouterr().out
