"""model.results.probe: a host probe taken through the lab's probe in a child process, and read back
from a run directory, its config.json or a probe file."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from model.errors import InvalidArgument
from model.results.probe import probe_of, take_probe

PROBE = {"busy_us": 300.0, "wake_us": 100.0, "wake_gap_us": 400.0, "gap_s": 0.01}


def _fake_python(tmp_path: Path, body: str) -> str:
    """An executable standing in for the interpreter: `python -m lab.calibration.hostprobe 1`."""
    path = tmp_path / "python"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def test_a_probe_is_the_last_json_line_the_child_prints(tmp_path: Path) -> None:
    python = _fake_python(tmp_path, f"echo warming up; echo '{json.dumps(PROBE)}'")
    assert take_probe(python) == PROBE


def test_a_missing_lab_extra_is_named(tmp_path: Path) -> None:
    python = _fake_python(tmp_path, "echo \"ModuleNotFoundError: No module named 'lab'\" >&2; exit 1")
    with pytest.raises(RuntimeError, match=r"needs the 'lab' extra"):
        take_probe(python)
    python = _fake_python(tmp_path, "echo boom >&2; exit 3")
    with pytest.raises(RuntimeError, match="the host probe failed: boom"):
        take_probe(python)
    python = _fake_python(tmp_path, "echo '{\"busy_us\": -1}'")
    with pytest.raises(InvalidArgument, match="busy_us"):
        take_probe(python)


def test_a_degenerate_probe_is_recorded_but_moves_nothing(tmp_path: Path) -> None:
    """A loaded host can probe a regime as 0: the run records it; moving a twin by it is refused."""
    zero = {**PROBE, "wake_us": 0.0}
    assert take_probe(_fake_python(tmp_path, f"echo '{json.dumps(zero)}'")) == zero
    (tmp_path / "probe.json").write_text(json.dumps(zero))
    with pytest.raises(InvalidArgument, match=r"'wake_us' must be a number > 0"):
        probe_of(tmp_path / "probe.json")


def test_a_probe_is_read_from_a_run_or_a_probe_file(tmp_path: Path) -> None:
    run = tmp_path / "real-run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"parameters": {"host_probe": PROBE, "slots": 12}}))
    assert probe_of(run) == PROBE
    assert probe_of(run / "config.json") == PROBE
    plain = tmp_path / "probe.json"
    plain.write_text(json.dumps(PROBE))
    assert probe_of(plain) == PROBE
    unprobed = tmp_path / "unprobed"
    unprobed.mkdir()
    (unprobed / "config.json").write_text(json.dumps({"parameters": {}}))
    with pytest.raises(InvalidArgument, match="recorded no host probe"):
        probe_of(unprobed)
    with pytest.raises(InvalidArgument, match="no such run directory"):
        probe_of(tmp_path / "missing")
    (tmp_path / "junk.json").write_text("{")
    with pytest.raises(InvalidArgument, match="not JSON"):
        probe_of(tmp_path / "junk.json")
