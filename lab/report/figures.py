"""The paper's figures (paper/figures/*.png), drawn with matplotlib and seaborn."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from lab.report.data import calibration_samples, facets_of, num
from lab.report.faults import fault_name
from lab.report.style import DESIGN_COLOR, DESIGN_LABEL, design_key
from model.results.stats import lognormal_cdf, lognormal_fit


def _save(fig: Figure, out: Path, name: str) -> Path:
    path = out / f"{name}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def _legend_top(fig: Figure, rows: int = 1) -> float:
    """The top of the subplots' area below a figure legend of `rows` lines (about 0.3 inch each)."""
    return max(0.5, 1 - 0.32 * rows / fig.get_figheight())


def _label_cell(ax: Axes, at: tuple[int, int, int], title: str, ylabel: str, xlabel: str) -> None:
    """A grid cell's labels: the title on the top row, the y label on the left column and the x label
    on the bottom row (`at` = row, column, rows)."""
    i, j, rows = at
    if i == 0:
        ax.set_title(title)
    if j == 0:
        ax.set_ylabel(ylabel)
    if i == rows - 1:
        ax.set_xlabel(xlabel)


def _legend_and_save(fig: Figure, axes: Any, out: Path, name: str) -> Path:
    """One legend for the figure (the first panel's entries) above the panels, then the file."""
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, _legend_top(fig)))
    return _save(fig, out, name)


def _plot_vs_concurrency(ax: Axes, rows: Sequence[Mapping[str, str]], col: str) -> None:
    """Mean ± 95% CI per design against concurrency; the Celery reference dashed and grey."""
    for design in sorted({r["design"] for r in rows}, key=design_key):
        pts = sorted((r for r in rows if r["design"] == design), key=lambda r: num(r["concurrency"]))
        x = [num(r["concurrency"]) for r in pts]
        y = [num(r[f"{col}_mean"]) for r in pts]
        err = [0.0 if math.isnan(num(r[f"{col}_ci95"])) else num(r[f"{col}_ci95"]) for r in pts]
        ref = design == "celery"
        ax.errorbar(
            x,
            y,
            yerr=err,
            label=DESIGN_LABEL.get(design, design),
            color=DESIGN_COLOR.get(design),
            linestyle="--" if ref else "-",
            marker="" if ref else "o",
            capsize=3,
            linewidth=1.2 if ref else 1.8,
        )
    ax.set_xscale("log", base=2)
    concurrencies = sorted({num(r["concurrency"]) for r in rows})
    ax.set_xticks(concurrencies, [f"{c:g}" for c in concurrencies])


def fig_vs_concurrency(
    rows: Sequence[Mapping[str, str]], out: Path, name: str, metrics: Sequence[tuple[str, str]]
) -> Path:
    """One row per metric, one column per (duration, mix)."""
    facets = facets_of(rows)
    fig, axes = plt.subplots(
        len(metrics), len(facets), figsize=(3.2 * len(facets), 2.6 * len(metrics)), squeeze=False, sharex=True
    )
    for i, (col, label) in enumerate(metrics):
        for j, (duration, mix) in enumerate(facets):
            ax = axes[i][j]
            _plot_vs_concurrency(ax, [r for r in rows if (r["duration"], r["mix"]) == (duration, mix)], col)
            _label_cell(ax, (i, j, len(metrics)), f"{duration} jobs, {mix} mix", label, "closed-loop clients")
    return _legend_and_save(fig, axes, out, name)


def fig_mix_duration(rows: Sequence[Mapping[str, str]], out: Path) -> Path:
    """At the highest concurrency: done/s and submit -> done p50 per (duration, mix), bars per design."""
    top = max(num(r["concurrency"]) for r in rows)
    at_top = [r for r in rows if num(r["concurrency"]) == top]
    facets = facets_of(at_top)
    designs = sorted({r["design"] for r in at_top}, key=design_key)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4), squeeze=False)
    width = 0.8 / max(len(designs), 1)
    for ax, (col, label) in zip(
        axes[0],
        (("completed_per_s", "jobs done/s"), ("completion_p50_ms", "submit -> done p50 (ms)")),
        strict=True,
    ):
        for k, design in enumerate(designs):
            vals, errs = [], []
            for facet in facets:
                match = [r for r in at_top if r["design"] == design and (r["duration"], r["mix"]) == facet]
                vals.append(num(match[0][f"{col}_mean"]) if match else math.nan)
                ci = num(match[0][f"{col}_ci95"]) if match else math.nan
                errs.append(0.0 if math.isnan(ci) else ci)
            xs = np.arange(len(facets)) + (k - (len(designs) - 1) / 2) * width
            ax.bar(
                xs,
                vals,
                width,
                yerr=errs,
                capsize=3,
                label=DESIGN_LABEL.get(design, design),
                color=DESIGN_COLOR.get(design),
                hatch="//" if design == "celery" else None,
                alpha=0.6 if design == "celery" else 1.0,
            )
        ax.set_xticks(np.arange(len(facets)), [f"{d}\n{m}" for d, m in facets])
        ax.set_ylabel(label)
        ax.set_title(f"{top:g} clients")
    axes[0][0].legend()
    fig.tight_layout()
    return _save(fig, out, "mix_duration")


def fig_accuracy(points: Sequence[Mapping[str, str]], out: Path) -> Path | None:
    """Measured (mean ± CI) and simulated, against offered rate, per (duration, mix) and metric."""
    metrics = [
        (m, label)
        for m, label in (
            ("throughput", "requests/s"),
            ("p50", "latency p50 (ms)"),
            ("p99", "latency p99 (ms)"),
        )
        if points and f"{m}_real" in points[0] and f"{m}_sim" in points[0]
    ]
    if not metrics or "rate" not in points[0]:
        return None
    facets = facets_of(points)
    fig, axes = plt.subplots(
        len(metrics), len(facets), figsize=(3.2 * len(facets), 2.6 * len(metrics)), squeeze=False
    )
    for i, (metric, label) in enumerate(metrics):
        for j, facet in enumerate(facets):
            ax = axes[i][j]
            for design in sorted({p["design"] for p in points}, key=design_key):
                pts = sorted(
                    (p for p in points if p["design"] == design and (p["duration"], p["mix"]) == facet),
                    key=lambda p: num(p["rate"]),
                )
                x = [num(p["rate"]) for p in pts]
                ci = [num(p.get(f"{metric}_real_ci95", "")) for p in pts]
                color = DESIGN_COLOR.get(design)
                ax.errorbar(
                    x,
                    [num(p[f"{metric}_real"]) for p in pts],
                    yerr=[0.0 if math.isnan(c) else c for c in ci],
                    fmt="o",
                    color=color,
                    capsize=3,
                    label=f"{DESIGN_LABEL.get(design, design)} measured",
                )
                ax.plot(
                    x,
                    [num(p[f"{metric}_sim"]) for p in pts],
                    "--",
                    color=color,
                    label=f"{DESIGN_LABEL.get(design, design)} simulated",
                )
            title = f"{facet[0]} jobs, {facet[1]} mix"
            _label_cell(ax, (i, j, len(metrics)), title, label, "offered rate (requests/s)")
    return _legend_and_save(fig, axes, out, "accuracy")


def fig_faults(
    sim_rows: Sequence[Mapping[str, Any]], real_rows: Sequence[Mapping[str, Any]], out: Path
) -> Path:
    """Recovery time and duplicates vs lease, one line per heartbeat (sim) and markers (measured)."""
    # the faults the simulator predicts, with the measured runs of the same fault beside them; faults
    # only measured (other targets) are in the table, not here
    panels = sorted({(str(r["design"]), fault_name(r)) for r in (sim_rows or real_rows)})
    fig, axes = plt.subplots(2, len(panels), figsize=(3.2 * len(panels), 5.2), squeeze=False, sharex=True)
    heartbeats = sorted({num(r["heartbeat_s"]) for r in [*sim_rows, *real_rows]})
    colors = dict(zip(heartbeats, sns.color_palette("viridis", len(heartbeats)), strict=True))
    markers = {hb: "o^Dv<>"[i % 6] for i, hb in enumerate(heartbeats)}
    for j, (design, fault) in enumerate(panels):
        for i, (col, label) in enumerate((("recovery_s", "recovery (s)"), ("duplicates", "duplicate jobs"))):
            ax = axes[i][j]
            for source, rows in (("sim", sim_rows), ("real", real_rows)):
                for hb in heartbeats:
                    pts = sorted(
                        (
                            r
                            for r in rows
                            if (r["design"], fault_name(r)) == (design, fault) and num(r["heartbeat_s"]) == hb
                        ),
                        key=lambda r: num(r["lease_s"]),
                    )
                    if not pts:
                        continue
                    ax.plot(
                        [num(r["lease_s"]) for r in pts],
                        [num(r[col]) for r in pts],  # null recovery (never back) -> NaN: a gap
                        # sim: a line per heartbeat (markers tell overlaps apart); real: hollow squares
                        linestyle="-" if source == "sim" else "none",
                        marker=markers[hb] if source == "sim" else "s",
                        color=colors[hb],
                        markersize=9 if source == "real" else 4 + 2 * heartbeats.index(hb),
                        markerfacecolor="none",
                        label=f"{source}, heartbeat {hb:g} s",
                    )
            ax.set_ylim(bottom=0)
            if i == 0:
                ax.set_title(f"{DESIGN_LABEL.get(design, design)}: {fault}")
            else:
                ax.set_xlabel("lease (s)")
            if j == 0:
                ax.set_ylabel(label)
    handles, labels = axes[0][0].get_legend_handles_labels()
    for row in axes:
        for ax in row:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
    fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 3), bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, _legend_top(fig, rows=math.ceil(len(labels) / 3))))
    return _save(fig, out, "faults")


def fig_calibration(calibration: Mapping[str, Any], out: Path) -> Path | None:
    """ECDF of every empirical distribution of the calibration (µs, log x)."""
    samples = calibration_samples(calibration)
    if not samples:
        return None
    keys = sorted(samples)
    ncols = 4
    nrows = math.ceil(len(keys) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.0 * ncols, 2.2 * nrows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        arr = samples[key]
        pos = np.sort(arr[arr > 0])
        zeros = (len(arr) - len(pos)) / len(arr)
        if len(pos):
            ecdf = zeros + np.arange(1, len(pos) + 1) / len(arr)
            ax.step(pos * 1e6, ecdf, where="post", label="samples")
            fit = lognormal_fit(arr)
            if fit:
                x = np.geomspace(pos[0], pos[-1], 200)
                cdf = zeros + (1 - zeros) * lognormal_cdf(x, fit)
                ax.plot(x * 1e6, cdf, "--", color="grey", label="lognormal fit")
                ax.text(
                    0.97, 0.05, f"KS {fit.ks:.2f}", ha="right", fontsize="x-small", transform=ax.transAxes
                )
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on narrow panels
        else:
            ax.text(0.5, 0.5, "all 0 (charged elsewhere)", ha="center", va="center", transform=ax.transAxes)
            ax.set_xticks([])
        ax.set_title(key.removeprefix("service."), fontsize="small")
        ax.set_ylim(0, 1.02)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=2, bbox_to_anchor=(0.5, 1.0))
    fig.supxlabel("µs (log)")
    fig.supylabel("ECDF")
    fig.tight_layout(rect=(0, 0, 1, _legend_top(fig)))
    return _save(fig, out, "calibration")
