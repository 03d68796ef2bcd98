"""lab/calibration/hostprobe.py: the host-speed probe a real validation run starts with."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lab.calibration import hostprobe
from sim.hostscale import HostScale
from sim.params import load_params, load_scheduler_slice


def test_a_probe_measures_each_regime_and_is_json() -> None:
    probe = hostprobe.probe()
    assert probe["busy_us"] > 0 and probe["wake_gap_us"] > 0 and probe["wake_us"] >= 0
    assert probe["rtt_us"] > 0 and probe["python_us"] > 0 and probe["gap_s"] == hostprobe.PROBE_GAP
    assert 0 <= probe["steal_share"] <= 1 and 0 < probe["seconds"] < 30
    assert json.loads(json.dumps(probe)) == probe
    # a probe against itself moves nothing
    if probe["wake_us"] > 0:
        assert HostScale.between(probe, probe) == HostScale(gap=hostprobe.PROBE_GAP)


def test_the_python_loop_does_fixed_work() -> None:
    assert hostprobe._python_work(10) == hostprobe._python_work(10) == 10 * len("job-00000000")
    assert hostprobe.python_us() > 0


def test_the_scheduler_slice_is_measured_from_spinners_that_lose_their_core(tmp_path: Path) -> None:
    measured = hostprobe.scheduler_slice(cores=1, seconds=0.3)  # 2 spinners on (at least) 1 core
    assert measured["processes"] == 2 and measured["runs"] > 0
    assert 0 < measured["run_ms_p10"] <= measured["run_ms_p50"] <= measured["run_ms_p90"]
    assert 0 <= measured["wake_late_ms_p50"] <= measured["wake_late_ms_p99"]
    calibration = tmp_path / "cal.json"
    calibration.write_text(json.dumps({"parameters": {"cores": 2}, "measurements": {}}))
    hostprobe.add_slice(calibration, {**measured, "run_ms_p50": 4.0})
    assert load_scheduler_slice(calibration) == pytest.approx(0.004)
    assert load_params(calibration).cpu_slice == 0.0  # recorded, not set: the fair model is a what-if
    assert json.loads(calibration.read_text())["measurements"]["scheduler_slice"]["runs"] == measured["runs"]


def test_into_needs_slice() -> None:
    with pytest.raises(SystemExit):
        hostprobe.main(["--into", "x.json"])


def test_the_background_sample_sees_runnable_processes() -> None:
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(0.2)  # both started and spinning
        measured = hostprobe.background(samples=50)
    finally:
        for proc in spinners:
            proc.kill()
            proc.wait()
    # two processes that never sleep are runnable at every sample (others may be too)
    assert measured["runnable_mean"] >= 1.9 and measured["runnable_p90"] >= 2
    assert 0 <= measured["wake_late_ms_p50"] <= measured["wake_late_ms_p90"] <= measured["wake_late_ms_p99"]
    assert hostprobe.procs_running() >= 1  # this test itself
