"""`dtq sim` writes a run directory in the shared schema, with kind "sim"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.results.runs import load_config, load_records, load_summary
from realsys.cli import main
from sim.hostscale import HostScale
from sim.params import load_params

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
    argv += ["--set", "cores=4", "--set", "core.lease_duration=5", "--runs-dir", str(out)]
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


PROBE = {"busy_us": 300.0, "wake_us": 100.0, "wake_gap_us": 400.0, "gap_s": 0.01}


def _calibration(tmp_path: Path, probes: dict[str, list[dict[str, float]]] | None) -> Path:
    doc: dict[str, object] = {"parameters": {"name": "cal", "wakeup": 5e-5, "cores": 2}}
    if probes is not None:
        doc["host_probe"] = probes
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(doc))
    return path


def _run_sim(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    return int(exit_info.value.code or 0)


def test_dtq_sim_moves_a_twin_to_a_runs_host_speed(tmp_path: Path) -> None:
    """--host-scale RUN_DIR: the calibration's costs times the run's probe over the calibration's (the
    probes of the design's cluster), recorded in config.json; the same as SimParams.on_host."""
    workload = tmp_path / "tiny.yaml"
    workload.write_text(WORKLOAD)
    calibration = _calibration(tmp_path, {"mono": [PROBE], "micro": [{**PROBE, "busy_us": 100.0}]})
    real = tmp_path / "real-run"
    real.mkdir()
    slower = {**PROBE, "busy_us": 600.0, "wake_us": 150.0}
    (real / "config.json").write_text(json.dumps({"parameters": {"host_probe": slower}}))
    base = ["sim", "--design", "mono", "--workload", str(workload), "--calibration", str(calibration)]
    assert _run_sim([*base, "--runs-dir", str(tmp_path / "plain"), "--run-id", "sim-plain"]) == 0
    assert _run_sim([*base, "--runs-dir", str(tmp_path / "moved"), "--host-scale", str(real)]) == 0
    moved = load_config(tmp_path / "moved" / "sim-mono-tiny-3-r0")["parameters"]
    # cold: how waking after the gap moved against waking back to back, (400/150) / (400/100)
    assert moved["host_scale"] == {"cpu": 2.0, "wake": 1.5, "cold": (400 / 150) / (400 / 100), "gap": 0.01}
    params = load_params(calibration)
    expected = params.on_host(HostScale.between(slower, PROBE))
    assert moved["params"] == expected.to_mapping()
    plain = load_summary(tmp_path / "plain" / "sim-plain")["latency_ms"]["all"]["p50"]
    assert load_summary(tmp_path / "moved" / "sim-mono-tiny-3-r0")["latency_ms"]["all"]["p50"] > plain


def test_dtq_sim_host_scale_needs_a_calibration_with_probes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workload = tmp_path / "tiny.yaml"
    workload.write_text(WORKLOAD)
    probe = tmp_path / "probe.json"
    probe.write_text(json.dumps(PROBE))
    base = ["sim", "--design", "mono", "--workload", str(workload), "--runs-dir", ""]
    assert _run_sim([*base, "--host-scale", str(probe)]) == 2
    assert "needs --calibration" in capsys.readouterr().err
    no_probes = _calibration(tmp_path, None)
    assert _run_sim([*base, "--calibration", str(no_probes), "--host-scale", str(probe)]) == 2
    assert "took no host probes" in capsys.readouterr().err
    with_probes = _calibration(tmp_path, {"mono": [PROBE]})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"busy_us": 0}))
    assert _run_sim([*base, "--calibration", str(with_probes), "--host-scale", str(bad)]) == 2
    assert "busy_us" in capsys.readouterr().err
