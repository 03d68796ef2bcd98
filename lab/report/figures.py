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
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from lab.report.data import calibration_samples, facet_title, facets_of, num
from lab.report.faults import fault_name
from lab.report.intervals import Interval
from lab.report.style import DESIGN_COLOR, DESIGN_LABEL, design_key


def _tick(value: float, _: object = None) -> str:
    return f"{value:g}"


def _minor_tick(value: float, _: object = None) -> str:
    """A minor tick's label on a log axis: only at 2x and 5x a power of ten (the rest crowd)."""
    if value <= 0:
        return ""
    lead = round(value / 10 ** math.floor(math.log10(value)))
    return f"{value:g}" if lead in (2, 5) else ""


def _plain_log(ax: Axes, axis: str = "y") -> None:
    """Plain numbers (0.5, 2, 10, 200) on a log axis instead of powers of ten."""
    target = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = ax.get_ylim() if axis == "y" else ax.get_xlim()
    target.set_major_formatter(FuncFormatter(_tick))
    # minor labels (2x, 5x) only where the axis spans less than two decades, else they collide
    few = lo > 0 and hi / lo < 100
    target.set_minor_formatter(FuncFormatter(_minor_tick) if few else NullFormatter())


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


def _legend_and_save(fig: Figure, axes: Any, out: Path, name: str, ncol: int = 0) -> Path:
    """One legend for the figure (every panel's distinct entries) above the panels, then the file."""
    handles: list[Any] = []
    labels: list[str] = []
    for ax in np.ravel(axes):
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    # at most as many columns as fit the figure's width, so a narrow figure (the quick re-run's two
    # panels) wraps its legend into more rows instead of clipping it at both sides
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    ncol = ncol or len(labels)
    while True:
        legend = fig.legend(handles, labels, loc="upper center", ncol=ncol, bbox_to_anchor=(0.5, 1.0))
        if ncol == 1 or legend.get_window_extent(renderer).width <= fig.bbox.width:
            break
        legend.remove()
        ncol -= 1
    fig.tight_layout(rect=(0, 0, 1, _legend_top(fig, rows=math.ceil(len(labels) / ncol))))
    return _save(fig, out, name)


Measured = Mapping[tuple[str, int, str, str], Mapping[str, Interval]]
# how each source is drawn: measured = markers with intervals, simulated = solid line, MVA = dotted line
SIM_STYLE = {"linestyle": "-", "linewidth": 1.6, "alpha": 0.85}
MVA_STYLE = {"linestyle": ":", "linewidth": 1.6, "alpha": 0.9}
MARKER = {"micro": "o", "mono": "s", "celery": "D"}


def sim_color(design: str) -> tuple[float, float, float]:
    """A design's colour, lighter: predictions (simulated, MVA) are told from measurements by it."""
    r, g, b = to_rgb(DESIGN_COLOR.get(design, "#000000"))
    return (r + (1 - r) * 0.45, g + (1 - g) * 0.45, b + (1 - b) * 0.45)


def _predicted_series(
    predicted: Sequence[Mapping[str, str]], source: str, design: str, facet: tuple[str, str], col: str
) -> tuple[list[float], list[float]]:
    pts = sorted(
        (
            r
            for r in predicted
            if r["source"] == source and r["design"] == design and (r["duration"], r["mix"]) == facet
        ),
        key=lambda r: num(r["concurrency"]),
    )
    pairs = [(num(r["concurrency"]), num(r.get(col, ""))) for r in pts]
    pairs = [(x, y) for x, y in pairs if not math.isnan(y) and y > 0]
    return [x for x, _ in pairs], [y for _, y in pairs]


def _plot_vs_concurrency(
    ax: Axes,
    rows: Sequence[Mapping[str, str]],
    col: str,
    measured: Measured,
    predicted: Sequence[Mapping[str, str]],
    facet: tuple[str, str],
    sessions: Mapping[int, str],
) -> bool:
    """Per design: measured mean with its bootstrap interval (markers), the simulator's prediction
    (solid line) and the MVA's (dotted) where there is one; the Celery reference measured only, grey
    dashed. Returns whether it drew any positive value (else a log axis has nothing to scale)."""
    drawn = False
    for design in sorted({r["design"] for r in rows}, key=design_key):
        color, label = DESIGN_COLOR.get(design), DESIGN_LABEL.get(design, design)
        pts = sorted((r for r in rows if r["design"] == design), key=lambda r: num(r["concurrency"]))
        x, y, below, above = [], [], [], []
        for r in pts:
            c = int(num(r["concurrency"]))
            iv = measured.get((design, c, *facet), {}).get(col)
            mean = iv.mean if iv is not None else num(r.get(f"{col}_mean", ""))
            if math.isnan(mean):
                continue
            lo, hi = iv.errors if iv is not None else (0.0, 0.0)
            x.append(float(c))
            y.append(mean)
            drawn = drawn or mean > 0
            below.append(lo)
            above.append(hi)
        ref = design == "celery"
        first = min(sessions.values()) if sessions else ""
        for later in (False, True):  # the first session's points filled, later sessions' hollow
            pick = [i for i, c in enumerate(x) if (sessions.get(int(c), first) != first) == later]
            if not pick:
                continue
            ax.errorbar(
                [x[i] for i in pick],
                [y[i] for i in pick],
                yerr=[[below[i] for i in pick], [above[i] for i in pick]],
                color=color,
                marker=MARKER.get(design, "o"),
                markersize=4 if ref else 5,
                markerfacecolor="white" if later else color,
                linestyle="none",
                capsize=2,
                label=f"{label} measured" + (", later session" if later else ""),
            )
        if ref:
            continue
        sx, sy = _predicted_series(predicted, "sim", design, facet, col)
        if sx:
            drawn = True
            ax.plot(sx, sy, color=sim_color(design), label=f"{label} simulated", **SIM_STYLE)  # type: ignore[arg-type]
        mx, my = _predicted_series(predicted, "mva", design, facet, col)
        if mx:
            ax.plot(mx, my, color=sim_color(design), label=f"{label} MVA", **MVA_STYLE)  # type: ignore[arg-type]
    ax.set_xscale("log", base=2)
    shown = {num(r["concurrency"]) for r in rows}
    shown |= {num(r["concurrency"]) for r in predicted if (r["duration"], r["mix"]) == facet}
    ax.set_xticks(sorted(shown), [f"{c:g}" for c in sorted(shown)])
    ax.xaxis.set_minor_formatter(NullFormatter())
    return drawn


def fig_vs_concurrency(
    rows: Sequence[Mapping[str, str]],
    out: Path,
    name: str,
    metrics: Sequence[tuple[str, str]],
    measured: Measured | None = None,
    predicted: Sequence[Mapping[str, str]] = (),
    log_y: bool = True,
    sessions: Mapping[int, str] | None = None,
) -> Path:
    """One row per metric, one column per (duration, mix); log axes (the values span decades)."""
    facets = facets_of(rows)
    fig, axes = plt.subplots(
        len(metrics),
        len(facets),
        figsize=(3.1 * len(facets), 2.5 * len(metrics) + 0.6),
        squeeze=False,
        sharex=True,
    )
    for i, (col, label) in enumerate(metrics):
        for j, facet in enumerate(facets):
            ax = axes[i][j]
            facet_rows = [r for r in rows if (r["duration"], r["mix"]) == facet]
            drawn = _plot_vs_concurrency(
                ax, facet_rows, col, measured or {}, predicted, facet, sessions or {}
            )
            if not drawn:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
            elif log_y:
                ax.set_yscale("log")
                _plain_log(ax)
            _label_cell(ax, (i, j, len(metrics)), facet_title(facet), label, "closed-loop clients")
    return _legend_and_save(fig, axes, out, name, ncol=4)


def fig_mix_duration(
    rows: Sequence[Mapping[str, str]], out: Path, measured: Measured | None = None, level: int | None = None
) -> Path:
    """At the highest concurrency: done/s and submit -> done p50 per (duration, mix), bars per design,
    with the replications' bootstrap intervals where `measured` has them."""
    top = float(level) if level else max(num(r["concurrency"]) for r in rows)
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
            vals, below, above = [], [], []
            for facet in facets:
                iv = (measured or {}).get((design, int(top), *facet), {}).get(col)
                match = [r for r in at_top if r["design"] == design and (r["duration"], r["mix"]) == facet]
                vals.append(iv.mean if iv else num(match[0][f"{col}_mean"]) if match else math.nan)
                lo, hi = iv.errors if iv else (0.0, 0.0)
                below.append(lo)
                above.append(hi)
            xs = np.arange(len(facets)) + (k - (len(designs) - 1) / 2) * width
            ax.bar(
                xs,
                vals,
                width,
                yerr=[below, above],
                capsize=3,
                label=DESIGN_LABEL.get(design, design),
                color=DESIGN_COLOR.get(design),
                hatch="//" if design == "celery" else None,
                alpha=0.6 if design == "celery" else 1.0,
            )
        ax.set_xticks(np.arange(len(facets)), [facet_title(x).replace(", ", "\n") for x in facets])
        ax.set_ylabel(label)
        ax.set_title(f"{top:g} clients")
    axes[0][0].legend()
    fig.tight_layout()
    return _save(fig, out, "mix_duration")


ACCURACY_METRICS = (("throughput", "requests/s"), ("p50", "latency p50 (ms)"), ("p99", "latency p99 (ms)"))
OFFSET = {"micro": 0.95, "mono": 1.05}  # x offsets, so A's and B's markers at one rate stay apart


def fig_accuracy(
    points: Sequence[Mapping[str, str]],
    out: Path,
    intervals: Mapping[tuple[str, str, str, str], Mapping[str, Interval]] | None = None,
) -> Path | None:
    """Measured (mean, bootstrap interval over replications) and simulated, against offered rate, per
    (duration, mix) and metric; log-log, A and B offset sideways. `intervals` keyed (design, duration,
    mix, rate) with the points.csv strings; without them, the measured means alone."""
    metrics = [
        (m, label)
        for m, label in ACCURACY_METRICS
        if points and f"{m}_real" in points[0] and f"{m}_sim" in points[0]
    ]
    if not metrics or "rate" not in points[0]:
        return None
    facets = facets_of(points)
    fig, axes = plt.subplots(
        len(metrics), len(facets), figsize=(3.1 * len(facets), 2.5 * len(metrics) + 0.6), squeeze=False
    )
    for i, (metric, label) in enumerate(metrics):
        for j, facet in enumerate(facets):
            ax = axes[i][j]
            for design in sorted({p["design"] for p in points}, key=design_key):
                pts = sorted(
                    (p for p in points if p["design"] == design and (p["duration"], p["mix"]) == facet),
                    key=lambda p: num(p["rate"]),
                )
                shift = OFFSET.get(design, 1.0)
                x = [num(p["rate"]) * shift for p in pts]
                ivs = [(intervals or {}).get((design, *facet, p["rate"]), {}).get(metric) for p in pts]
                y = [iv.mean if iv else num(p[f"{metric}_real"]) for iv, p in zip(ivs, pts, strict=True)]
                err = [iv.errors if iv else (0.0, 0.0) for iv in ivs]
                color, name = DESIGN_COLOR.get(design), DESIGN_LABEL.get(design, design)
                ax.errorbar(
                    x,
                    y,
                    yerr=[[e[0] for e in err], [e[1] for e in err]],
                    fmt=MARKER.get(design, "o"),
                    color=color,
                    markersize=5,
                    capsize=2,
                    label=f"{name} measured",
                )
                ax.plot(
                    x,
                    [num(p[f"{metric}_sim"]) for p in pts],
                    marker=MARKER.get(design, "o"),
                    markerfacecolor="white",
                    markersize=4,
                    color=sim_color(design),
                    label=f"{name} simulated",
                    **SIM_STYLE,
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
            _plain_log(ax, "x")
            _plain_log(ax)
            title = facet_title(facet)
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


# the calibration figure's panels: the operations on a job's path in each design (the rest, and every
# key's quantiles and lognormal fit, are in the calibration table)
CALIBRATION_PANELS = (
    ("client, host and store", ("client_call", "loadgen_request", "wakeup", "commit")),
    ("A: submit", ("service.gateway.SubmitJob", "service.job.CreateJob", "service.queue.Enqueue")),
    ("A: fetch", ("service.coordinator.FetchWork", "service.queue.Reserve", "service.job.LeaseJobs")),
    (
        "A: report",
        ("service.coordinator.ReportResult", "service.result.PutResult", "service.job.CompleteAttempt"),
    ),
    ("A: wait and read", ("service.gateway.WaitJob", "service.job.WaitJob", "service.gateway.GetJobStatus")),
    (
        "B: node",
        (
            "service.node.SubmitJob",
            "service.node.WaitJob",
            "service.node.forward",
            "service.node.GetJobStatus",
        ),
    ),
)


def fig_calibration(calibration: Mapping[str, Any], out: Path) -> Path | None:
    """ECDFs (µs, log x) of the calibration's distributions on a job's path, a few per panel."""
    samples = calibration_samples(calibration)
    panels = [(t, [k for k in keys if k in samples]) for t, keys in CALIBRATION_PANELS]
    panels = [(t, keys) for t, keys in panels if keys]
    if not panels:
        return None
    ncols = 3
    nrows = math.ceil(len(panels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 2.7 * nrows), squeeze=False, sharey=True)
    palette = sns.color_palette("colorblind", 4)
    for ax, (title, keys) in zip(axes.flat, panels, strict=False):
        for color, key in zip(palette, keys, strict=False):
            arr = samples[key]
            pos = np.sort(arr[arr > 0])
            if not len(pos):
                continue
            zeros = (len(arr) - len(pos)) / len(arr)
            ecdf = zeros + np.arange(1, len(pos) + 1) / len(arr)
            short = key.removeprefix("service.").removeprefix("node.")
            ax.step(pos * 1e6, ecdf, where="post", color=color, label=short)
        ax.set_xscale("log")
        _plain_log(ax, "x")
        ax.set_title(title)
        ax.set_ylim(0, 1.02)
        ax.legend(fontsize="x-small", loc="lower right")
    for ax in list(axes.flat)[len(panels) :]:
        ax.set_visible(False)
    fig.supxlabel("CPU per call (µs, log scale)")
    fig.supylabel("ECDF (share of calls)")
    fig.tight_layout()
    return _save(fig, out, "calibration")
