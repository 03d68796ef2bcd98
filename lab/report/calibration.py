"""The calibration's tables: the samples the simulator draws from with their lognormal fit, and the
drift between the calibrations made before and after the validation's real runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from lab.report.data import calibration_probe_medians, calibration_samples
from lab.report.markdown import fmt, markdown_table
from model.results.stats import lognormal_fit


def table_calibration(calibration: Mapping[str, Any], name: str) -> str:
    samples = calibration_samples(calibration)
    body = []
    for key, arr in sorted(samples.items()):
        fit = lognormal_fit(arr)
        body.append(
            [
                key,
                str(len(arr)),
                fmt(float(np.mean(arr > 0)), 2),
                fmt(1e6 * float(np.mean(arr)), 1),
                fmt(1e6 * float(np.median(arr)), 1),
                fmt(1e6 * float(np.quantile(arr, 0.95)), 1),
                fmt(fit.sigma, 2) if fit else "-",
                fmt(fit.ks, 3) if fit else "-",
            ]
        )
    unmeasured = calibration.get("unmeasured", [])
    note = (
        f"\nFrom data/calibration/{name}.json (`dtq calibrate --name {name}`): the empirical samples the "
        "simulator draws from, in µs; '> 0' = share of non-zero samples; lognormal sigma and KS statistic "
        "of a fit to the positive samples (model/results/stats.py lognormal_fit). All-zero keys are work "
        "charged under another name. Unmeasured (placeholders): "
        + (", ".join(f"`{u}`" for u in unmeasured) or "none")
        + ".\n"
    )
    header = ["parameter", "samples", "> 0", "mean µs", "p50 µs", "p95 µs", "lognormal sigma", "KS"]
    return markdown_table(header, body) + note


def table_calibration_drift(
    before: Mapping[str, Any], after: Mapping[str, Any], names: tuple[str, str]
) -> str:
    """The same calibration command before and after the validation's real runs: per key the two
    medians and their ratio, and the median ratio over every key both measured with non-zero medians."""
    first, second = calibration_samples(before), calibration_samples(after)
    body = []
    ratios = []
    for key in sorted(set(first) & set(second)):
        a, b = float(np.median(first[key])), float(np.median(second[key]))
        ratio = b / a if a > 0 else math.nan
        if a > 0 and b > 0:
            ratios.append(ratio)
        body.append([key, fmt(1e6 * a, 1), fmt(1e6 * b, 1), fmt(ratio, 2)])
    typical = float(np.median(ratios)) if ratios else math.nan
    spread = (
        f"{fmt(float(np.quantile(ratios, 0.25)), 2)}-{fmt(float(np.quantile(ratios, 0.75)), 2)}"
        if ratios
        else "-"
    )
    header = ["parameter", f"{names[0]} p50 µs", f"{names[1]} p50 µs", "after / before"]
    note = (
        f"\nFrom data/calibration/{names[0]}.json (made right before the validation's real runs) and "
        f"{names[1]}.json (right after them), the same command. Median ratio over the {len(ratios)} keys "
        f"with non-zero medians: {fmt(typical, 2)} (IQR {spread}).{_probe_drift(before, after)}\n"
    )
    return markdown_table(header, body) + note


def _probe_drift(before: Mapping[str, Any], after: Mapping[str, Any]) -> str:
    """The two calibrations' host probes (median of all each took), after / before, per field."""
    first, second = calibration_probe_medians(before), calibration_probe_medians(after)
    if first is None or second is None:
        return ""
    a, b = first[1], second[1]
    ratios = ", ".join(
        f"{k.removesuffix('_us')} {fmt(b[k] / a[k], 2)}" if a[k] > 0 else f"{k} -"
        for k in ("busy_us", "wake_us", "wake_gap_us")
    )
    return f" Their host probes (lab/calibration/hostprobe.py, median of each's), after / before: {ratios}."
