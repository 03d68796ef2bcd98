"""How much slower or faster a run's host was than the calibration's, from two host probes
(lab/calibration/hostprobe.py); SimParams.on_host applies it to a run's simulated twin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class HostScale:
    """How much slower (> 1) or faster the host of a run was than the host of the calibration, by
    regime, from two host probes (lab/calibration/hostprobe.py): `cpu` for a loop that never sleeps, `wake`
    for waking back to back, `cold` for how waking after `gap` seconds of sleep moved against that.
    SimParams.on_host applies it."""

    cpu: float = 1.0
    wake: float = 1.0
    cold: float = 1.0
    gap: float = 0.01

    def __post_init__(self) -> None:
        for key in ("cpu", "wake", "cold", "gap"):
            value = getattr(self, key)
            if not (value > 0 and math.isfinite(value)):
                raise InvalidArgument(f"host scale {key} must be finite and > 0, got {value}")

    @staticmethod
    def between(run: Mapping[str, Any], calibration: Mapping[str, Any]) -> HostScale:
        """From a run's probe and the calibration's (each a lab.calibration.hostprobe.probe() mapping)."""
        try:
            cpu = float(run["busy_us"]) / float(calibration["busy_us"])
            wake = float(run["wake_us"]) / float(calibration["wake_us"])
            cold = (float(run["wake_gap_us"]) / float(run["wake_us"])) / (
                float(calibration["wake_gap_us"]) / float(calibration["wake_us"])
            )
            return HostScale(cpu, wake, cold, float(calibration.get("gap_s", 0.01)))
        except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
            raise InvalidArgument(f"a host probe needs busy_us, wake_us, wake_gap_us > 0: {exc!r}") from None

    def to_mapping(self) -> dict[str, float]:
        return {"cpu": self.cpu, "wake": self.wake, "cold": self.cold, "gap": self.gap}


def median_probe(probes: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Field by field median of host probes (a calibration's for one design; a run's neighbours)."""
    keys = ("busy_us", "wake_us", "wake_gap_us")
    if not probes:
        raise InvalidArgument("no host probes to combine")
    out = {k: float(np.median([float(p[k]) for p in probes])) for k in keys}
    out["gap_s"] = float(probes[0].get("gap_s", 0.01))
    return out
