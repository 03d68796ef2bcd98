"""How repeatable a calibration is: two calibration files compared key by key (`dtq calibrate --compare
A B`), for two made back to back on one host.

Every parameter a calibration measured becomes one number, its median (a distribution's; a scalar as
it is), and each key gets the ratio B / A. The spread of those ratios is the calibration's own
repeatability: the median ratio (a common shift, the host's speed), its IQR and geometric spread
(how unevenly the keys moved), and the share of keys within 10% and 25%. The host probes both took
(lab/calibration/hostprobe.py) say how much of the shift the host's speed explains.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from sim.dist import Dist
from sim.params import calibration_path

DIST_KEYS = ("client_call", "wakeup", "network", "commit", "loadgen_request", "checkpoint", "rpc_thread")
SCALAR_KEYS = ("commit_per_row",)
MAPPING_KEYS = ("per_item", "per_byte")
PROBE_FIELDS = ("busy_us", "wake_us", "wake_gap_us")


def dist_median(value: Any) -> float:
    """The median of a parameter's distribution (a number is a constant)."""
    dist = Dist.of(value)
    if dist.kind == "empirical":
        return float(np.median(dist.samples))
    if dist.kind == "exponential":
        return dist.mean * math.log(2)
    if dist.kind == "lognormal" and dist.mean > 0:
        return dist.mean * math.exp(-(dist.sigma**2) / 2)
    return dist.mean


def key_values(doc: Mapping[str, Any]) -> dict[str, float]:
    """Each measured parameter of a calibration file as one number (seconds, or a factor)."""
    params = doc.get("parameters", doc)
    measured = set(doc.get("measured", ()))
    out: dict[str, float] = {}
    for role, methods in params.get("service", {}).items():
        for method, dist in methods.items():
            out[f"service.{role}.{method}"] = dist_median(dist)
    for key in DIST_KEYS:
        if key in params:
            out[key] = dist_median(params[key])
    for key in SCALAR_KEYS:
        if key in params:
            out[key] = float(params[key])
    for group in MAPPING_KEYS:
        for key, value in params.get(group, {}).items():
            out[f"{group}.{key}"] = float(value)
    for idle, factor in params.get("wakeup_idle", ()):
        out[f"wakeup_idle@{float(idle):g}s"] = float(factor)
    if measured:  # keys the calibration left at their placeholders are not measurements
        out = {k: v for k, v in out.items() if k in measured or k.split("@")[0] in measured}
    return out


def probe_medians(doc: Mapping[str, Any]) -> dict[str, float]:
    """The median of each host-probe field over every probe the calibration took (all designs)."""
    probes = [p for ps in (doc.get("host_probe") or {}).values() for p in ps]
    return {f: float(np.median([float(p[f]) for p in probes])) for f in PROBE_FIELDS if probes}


def _spread(ratios: Sequence[float]) -> dict[str, float]:
    if not ratios:
        return {"keys": 0}
    arr = np.asarray(ratios, dtype=float)
    logs = np.log(arr)
    q25, q50, q75 = (float(x) for x in np.quantile(arr, [0.25, 0.5, 0.75]))
    return {
        "keys": len(arr),
        "median_ratio": q50,
        "q25_ratio": q25,
        "q75_ratio": q75,
        # exp(sd(log ratio)) about the median: 1.2 means keys typically moved 20% apart from the common shift
        "geometric_spread": float(np.exp(np.std(logs - np.median(logs)))),
        "within_10pct": float(np.mean(np.abs(arr - 1) <= 0.10 + 1e-12)),
        "within_25pct": float(np.mean(np.abs(arr - 1) <= 0.25 + 1e-12)),
        "min_ratio": float(arr.min()),
        "max_ratio": float(arr.max()),
    }


def compare(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any]:
    """Per key measured in both, the ratio B / A; the spread of the ratios overall and by group
    (service keys by role, the other parameters each); the host probes' ratios; keys zero in one."""
    va, vb = key_values(a), key_values(b)
    rows: list[dict[str, Any]] = []
    zero = []
    groups: dict[str, list[float]] = {}
    for key in sorted(set(va) & set(vb)):
        x, y = va[key], vb[key]
        if not (x > 0 and y > 0):
            if x != y:
                zero.append(key)
            continue
        rows.append({"key": key, "a": x, "b": y, "ratio": y / x})
        parts = key.split("@")[0].split(".")
        group = ".".join(parts[:2]) if parts[0] == "service" else parts[0]  # service keys by role
        groups.setdefault(group, []).append(y / x)
    pa, pb = probe_medians(a), probe_medians(b)
    return {
        "a": str(a.get("parameters", {}).get("name", "")),
        "b": str(b.get("parameters", {}).get("name", "")),
        "rows": rows,
        "overall": _spread([r["ratio"] for r in rows]),
        "by_group": {g: _spread(rs) for g, rs in sorted(groups.items())},
        "host_probe_ratio": {f: pb[f] / pa[f] for f in PROBE_FIELDS if f in pa and f in pb and pa[f] > 0},
        "zero_in_one": zero,
        "only_in_one": sorted(set(va) ^ set(vb)),
    }


def load_doc(name_or_path: str | Path) -> dict[str, Any]:
    doc = json.loads(calibration_path(name_or_path).read_text())
    if not isinstance(doc, dict):
        raise ValueError(f"{name_or_path}: a calibration file holds one JSON object")
    return doc


def format_comparison(result: Mapping[str, Any], worst: int = 12) -> str:
    def line(name: str, s: Mapping[str, float]) -> str:
        if not s.get("keys"):
            return f"  {name:20} no keys"
        return (
            f"  {name:20} {s['keys']:4d} keys  median {s['median_ratio']:.3f}  IQR "
            f"{s['q25_ratio']:.3f}-{s['q75_ratio']:.3f}  spread x{s['geometric_spread']:.3f}  "
            f"within 10% {100 * s['within_10pct']:.0f}%, 25% {100 * s['within_25pct']:.0f}%"
        )

    out = [f"calibration {result['b']} / {result['a']}: ratio per measured key (median of each)"]
    out.append(line("all", result["overall"]))
    out += [line(group, s) for group, s in result["by_group"].items()]
    probe = result["host_probe_ratio"]
    if probe:
        out.append("  host probe ratio: " + ", ".join(f"{k} {v:.3f}" for k, v in probe.items()))
    rows = sorted(result["rows"], key=lambda r: -abs(math.log(r["ratio"])))[:worst]
    if rows:
        out.append(f"  furthest apart ({len(rows)}):")
        for r in rows:  # seconds shown as microseconds (factors as they are, times 1e6)
            out.append(f"    {r['key']:40} {r['a'] * 1e6:10.2f} {r['b'] * 1e6:10.2f}  x{r['ratio']:.3f}")
    if result["zero_in_one"]:
        out.append(f"  zero in one of them: {', '.join(result['zero_in_one'])}")
    return "\n".join(out)
