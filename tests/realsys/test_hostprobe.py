"""realsys/hostprobe.py: the host-speed probe a real validation run starts with."""

from __future__ import annotations

import json

from realsys import hostprobe
from sim.params import HostScale


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
