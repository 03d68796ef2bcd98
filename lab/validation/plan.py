"""The validation's real runs as experiments (lab/experiment's file format): the saturation runs,
then each cell's open-loop points at fractions of the measured saturation.

Method (decided here, see data/experiments/validation.yaml):
1. Saturation, per design x duration x mix: one closed-loop run with `saturation.clients` clients that do
   not wait for their jobs (they keep the system full). Its saturation rate (requests/s) is
   min(served requests/s, completed jobs/s / submit fraction): the request path's capacity, or the rate
   whose submits the workers can just finish, whichever is lower.
2. Points, per duration x mix: open-loop Poisson rates = fraction x min over designs of the saturation,
   so both designs see the same offered rate (a winner can be named at every point); each design's
   rho = rate / its own saturation, which puts the points into utilisation bands.
3. Every real run found on disk is simulated with the same workload (same trace seed: common random
   numbers), replication and settings, from the calibration alone (nothing is fitted to these runs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lab.validation.spec import Validation, fail


def saturation_name(v: Validation) -> str:
    return f"{v.name}_sat"


def saturation_mapping(v: Validation) -> dict[str, Any]:
    """The experiment (lab/experiment/'s file format) that measures each cell's saturation."""
    return saturation_experiment(saturation_name(v), v.base, v, duration=dict(v.durations), mix=dict(v.mixes))


def saturation_experiment(name: str, base: Mapping[str, Any], v: Validation, **cells: Any) -> dict[str, Any]:
    """An experiment that measures the saturation of `base` (step 1 above) on each design, over the
    `cells` sweep axes; `v` gives the designs, store, slots, options and saturation settings."""
    s = v.saturation
    workload = {
        **base,
        "arrival": {"kind": "closed", "clients": 1, "wait_for_completion": False},
        "run_time": s.run_time,
        "warmup": s.warmup,
    }
    return {
        "name": name,
        "workload": workload,
        "replications": s.replications,
        "sweep": {
            "design": list(v.designs),
            "concurrency": [s.clients],
            **cells,
            "store": [v.store],
            "slots": [v.slots],
        },
        "options": dict(v.options),
    }


def rates_of(v: Validation, base_rate: float, fractions: Sequence[float] | None = None) -> list[float]:
    """The open-loop rates of one cell: fraction x base, to 3 significant digits (they name runs)."""
    fractions = v.fractions if fractions is None else fractions
    rates = [float(f"{f * base_rate:.3g}") for f in fractions]
    if len(set(rates)) != len(rates):
        raise fail(f"fractions {fractions} of {base_rate:.3g} req/s round to equal rates {rates}")
    return rates


def point_mappings(v: Validation, saturation: Mapping[tuple[str, str, str], float]) -> list[dict[str, Any]]:
    """Per cell with a measured saturation for every design, one experiment with both designs at
    fraction x min(saturation over designs) (common rates: a winner at each), and for each design
    whose own saturation is > 10% above that base, one with it alone at own_fractions x its own
    saturation (else the stronger design would never reach the high-utilisation bands)."""
    out: list[dict[str, Any]] = []
    for d_label, m_label in v.cells:
        sats = {design: saturation.get((design, d_label, m_label)) for design in v.designs}
        if any(s is None or not s > 0 for s in sats.values()):
            continue
        base_rate = min(s for s in sats.values() if s is not None)
        common = rates_of(v, base_rate)
        sweeps: list[tuple[list[str], list[float]]] = [(list(v.designs), common)]
        for design, sat in sats.items():
            if v.own_fractions and sat is not None and sat > 1.1 * base_rate:
                own = [r for r in rates_of(v, sat, v.own_fractions) if r not in common]
                if own:
                    sweeps.append(([design], own))
        out.extend(_cell_mapping(v, d_label, m_label, designs, rates) for designs, rates in sweeps)
    return out


def _cell_mapping(
    v: Validation, d_label: str, m_label: str, designs: list[str], rates: list[float]
) -> dict[str, Any]:
    return {
        "name": v.name,
        "workload": dict(v.base),
        "replications": v.replications,
        "sweep": {
            "design": designs,
            "rate": rates,
            "duration": {d_label: dict(v.durations)[d_label]},
            "mix": {m_label: dict(v.mixes)[m_label]},
            "store": [v.store],
            "slots": [v.slots],
        },
        "options": dict(v.options),
    }
