"""A host probe for a hand-made run and its twin (`dtq load --host-probe`, `dtq sim --host-scale`).

The probe itself is the lab's (lab/calibration/hostprobe.py: the bare gRPC echo in three regimes,
~1.5 s); the product and the simulator never import the lab, so they run it as a child process
(`python -m lab.calibration.hostprobe`, one JSON line) and read what it printed. Without the lab
extra installed that is a one-line error naming it. `probe_of` reads the probe a run recorded.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from model.errors import InvalidArgument

PROBE_MODULE = "lab.calibration.hostprobe"
PROBE_TIMEOUT = 120.0  # seconds: a probe takes ~1.5 s, much longer on a loaded host
PROBE_FIELDS = ("busy_us", "wake_us", "wake_gap_us")


def take_probe(python: str = sys.executable) -> dict[str, Any]:
    """One probe of this host now, from a child process running the lab's probe."""
    try:
        done = subprocess.run(
            [python, "-m", PROBE_MODULE, "1"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"the host probe took more than {PROBE_TIMEOUT:.0f} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        if "No module named" in last:
            raise RuntimeError(f"a host probe needs the 'lab' extra: pip install 'dtq[lab]' ({last})")
        raise RuntimeError(f"the host probe failed: {last}")
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    try:
        probe = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise RuntimeError(f"the host probe printed no JSON line: {done.stdout[-200:]!r}") from None
    # recorded as measured: on a loaded host a regime can come out 0 (one call in flight no dearer
    # than a busy loop), which a run keeps; only moving a twin by it needs every field > 0
    return check_probe(probe, "the host probe", positive=False)


def check_probe(probe: object, where: str, positive: bool = True) -> dict[str, Any]:
    """A probe mapping with the fields a host scale needs, as numbers > 0 (>= 0 unless `positive`)."""
    if not isinstance(probe, Mapping):
        raise InvalidArgument(f"{where}: a host probe is a JSON object")
    for key in PROBE_FIELDS:
        value = probe.get(key)
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or value < 0
            or (positive and not value)
        ):
            bound = "> 0" if positive else ">= 0"
            raise InvalidArgument(
                f"{where}: host probe field {key!r} must be a number {bound}, got {value!r}"
            )
    return dict(probe)


def probe_of(path: Path | str) -> dict[str, Any]:
    """The host probe a file names: a run directory or its config.json (`parameters.host_probe`, as
    `dtq load --host-probe` and the experiment runner record it), or a JSON file holding one probe
    (as `python -m lab.calibration.hostprobe` prints it)."""
    path = Path(path)
    file = path / "config.json" if path.is_dir() else path
    if not file.is_file():
        raise InvalidArgument(f"{path}: no such run directory or probe file")
    try:
        data = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{file}: not JSON ({exc.msg})") from None
    if isinstance(data, Mapping) and isinstance(data.get("parameters"), Mapping):
        probe = data["parameters"].get("host_probe")
        if probe is None:
            raise InvalidArgument(f"{file}: the run recorded no host probe (make it with --host-probe)")
        return check_probe(probe, str(file))
    return check_probe(data, str(file))
