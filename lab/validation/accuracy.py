"""The validation's arithmetic: per point, the real mean and CI against the simulated mean; the error
table by utilisation band beside the real run-to-run floor; and whether the simulator names the
same winner (A vs B) as the real system."""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lab.validation.plan import point_mappings
from lab.validation.runs import measured_saturation, runs_of
from lab.validation.spec import DESIGNS, Validation
from model.results.stats import mean_ci, winner
from model.results.summary import metric

# (column name, path in summary.json, +1 when higher is better / -1 when lower is better)
METRICS: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("throughput", ("throughput", "requests_per_s"), +1),
    ("completed", ("throughput", "completed_per_s"), +1),
    ("p50", ("latency_ms", "all", "p50"), -1),
    ("p95", ("latency_ms", "all", "p95"), -1),
    ("p99", ("latency_ms", "all", "p99"), -1),
    ("done_p50", ("completion_ms", "p50"), -1),
)
WINNER_METRICS = ("p50", "p99", "done_p50", "throughput")


def rel_error(sim_value: float, real_value: float) -> float:
    """(sim - real) / real; NaN when either is missing or the real value is 0."""
    if math.isnan(sim_value) or math.isnan(real_value) or real_value == 0:
        return math.nan
    return (sim_value - real_value) / real_value


def replication_spread(values: Sequence[float]) -> list[float]:
    """|x_r - mean| / mean of each replication: the real system's run-to-run noise (the floor)."""
    if len(values) < 2:
        return []
    mean = math.fsum(values) / len(values)
    return [abs(x - mean) / mean for x in values] if mean != 0 else []


def band_of(rho: float, edges: Sequence[float]) -> str:
    """'rho<=0.5', '0.5<rho<=0.8', 'rho>0.8' for edges (0.5, 0.8)."""
    if not edges:
        return "all"
    if rho <= edges[0]:
        return f"rho<={edges[0]:g}"
    for lo, hi in itertools.pairwise(edges):
        if rho <= hi:
            return f"{lo:g}<rho<={hi:g}"
    return f"rho>{edges[-1]:g}"


def band_names(edges: Sequence[float]) -> list[str]:
    probes = [edges[0] / 2, *((a + b) / 2 for a, b in itertools.pairwise(edges)), edges[-1] * 2]
    return [band_of(r, edges) for r in probes] if edges else ["all"]


def quantiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(q25, median, q75), linear interpolation (numpy's default); NaNs when empty."""
    if not values:
        return math.nan, math.nan, math.nan
    q = np.quantile(np.asarray(values, dtype=float), [0.25, 0.5, 0.75])
    return float(q[0]), float(q[1]), float(q[2])


@dataclass(slots=True)
class Point:
    """One design at one (duration, mix, rate): real and simulated values per replication."""

    design: str
    duration: str
    mix: str
    rate: float
    saturation: float  # this design's measured (real) saturation, requests/s
    sim_saturation: float = math.nan  # the simulator's, from the twins of the saturation runs
    real: dict[str, list[float]] = field(default_factory=dict)
    sim: dict[str, list[float]] = field(default_factory=dict)
    # the generator's CPU share of one core per run, by kind ("real", "sim"): a suspect when they differ
    loadgen_cpu: dict[str, list[float]] = field(default_factory=dict)
    loadgen_bottlenecked: int = 0

    @property
    def rho(self) -> float:
        return self.rate / self.saturation if self.saturation > 0 else math.inf

    def real_mean(self, name: str) -> tuple[float, float]:
        return mean_ci(self.real.get(name, []))

    def sim_mean(self, name: str) -> float:
        return mean_ci(self.sim.get(name, []))[0]

    def error(self, name: str) -> float:
        return rel_error(self.sim_mean(name), self.real_mean(name)[0])


def collect_points(v: Validation, root: Path | str) -> tuple[list[Point], dict[tuple[str, str, str], float]]:
    """The points of the validation with real runs on disk (at the rates planned from the measured
    saturation), their simulated twins, and the saturation table."""
    root = Path(root)
    saturation = measured_saturation(v, root, "real")
    sim_saturation = measured_saturation(v, root, "sim")
    planned: dict[tuple[str, str, str, float], Point] = {}
    for mapping in point_mappings(v, saturation):
        sweep = mapping["sweep"]
        (d_label,), (m_label,) = sweep["duration"], sweep["mix"]
        for design in sweep["design"]:
            for rate in sweep["rate"]:
                sat = saturation[(design, d_label, m_label)]
                sim_sat = sim_saturation.get((design, d_label, m_label), math.nan)
                planned[(design, d_label, m_label, rate)] = Point(
                    design, d_label, m_label, rate, sat, sim_sat
                )
    for kind in ("real", "sim"):
        for run in runs_of(root, kind, v.name):
            arrival = run.workload["arrival"]
            if arrival.get("kind") != "open":
                continue
            key = (
                run.design,
                run.point.get("duration", ""),
                run.point.get("mix", ""),
                float(arrival["rate"]),
            )
            point = planned.get(key)
            if point is None or run.replication >= v.replications:
                continue  # a stale rate (an earlier saturation) or an extra replication
            target = point.real if kind == "real" else point.sim
            for name, path, _ in METRICS:
                value = metric(run.summary, path)
                if value is not None:
                    target.setdefault(name, []).append(value)
            lg = run.summary.get("loadgen", {})
            cpu = lg.get("cpu_utilisation")
            if isinstance(cpu, int | float):
                point.loadgen_cpu.setdefault(kind, []).append(float(cpu))
            if kind == "real":
                point.loadgen_bottlenecked += bool(lg.get("bottleneck"))
    points = [p for p in planned.values() if p.real]
    points.sort(key=lambda p: (p.duration, p.mix, p.rate, p.design))
    return points, saturation


def replication_counts(
    real: Mapping[str, Sequence[float]], sim: Mapping[str, Sequence[float]]
) -> dict[str, int]:
    """A point row's n_real and n_sim: the most replications any metric has on each side."""
    return {
        "n_real": max((len(x) for x in real.values()), default=0),
        "n_sim": max((len(x) for x in sim.values()), default=0),
    }


def metric_cells(name: str, real: float, ci: float, sim: float, err: float) -> dict[str, float]:
    """A point row's columns of one metric: real mean and 95% CI half-width, sim mean, error."""
    return {f"{name}_real": real, f"{name}_real_ci95": ci, f"{name}_sim": sim, f"{name}_err": err}


def error_cells(errors: Sequence[float], floor: Sequence[float]) -> dict[str, float]:
    """An error-table row's columns over a group of points: how many errors, the median and IQR of
    |relative error|, the median signed error (the bias), and the median floor deviation."""
    q25, med, q75 = quantiles([abs(e) for e in errors])
    return {
        "points": len(errors),
        "median_abs_err": med,
        "q25_abs_err": q25,
        "q75_abs_err": q75,
        "median_signed_err": quantiles(errors)[1],
        "floor_median_dev": quantiles(floor)[1],
    }


def point_rows(points: Iterable[Point], edges: Sequence[float]) -> list[dict[str, Any]]:
    """points.csv: one row per point with rho, band, real mean/CI, sim mean, error, spread."""
    rows = []
    for p in points:
        row: dict[str, Any] = {
            "design": p.design,
            "duration": p.duration,
            "mix": p.mix,
            "rate": p.rate,
            "saturation": p.saturation,
            "rho": p.rho,
            "rho_sim": p.rate / p.sim_saturation if p.sim_saturation > 0 else math.nan,
            "band": band_of(p.rho, edges),
            **replication_counts(p.real, p.sim),
        }
        for name, _, _ in METRICS:
            mean, ci = p.real_mean(name)
            spread = replication_spread(p.real.get(name, []))
            row |= metric_cells(name, mean, ci, p.sim_mean(name), p.error(name))
            row[f"{name}_spread"] = statistics.median(spread) if spread else math.nan
        for kind in ("real", "sim"):
            cpu = p.loadgen_cpu.get(kind, [])
            row[f"loadgen_cpu_{kind}"] = statistics.fmean(cpu) if cpu else math.nan
        row["loadgen_bottlenecked"] = p.loadgen_bottlenecked
        rows.append(row)
    return rows


def error_table(points: Sequence[Point], edges: Sequence[float]) -> list[dict[str, Any]]:
    """error_table.csv: per band (and 'all') x metric, the median and IQR of |relative error|, the
    median signed error (the bias), and the floor: the median relative deviation of a real replication
    from its point's mean, pooled over the band's points."""
    rows = []
    for band in [*band_names(edges), "all"]:
        members = [p for p in points if band == "all" or band_of(p.rho, edges) == band]
        for name, _, _ in METRICS:
            errors = [e for e in (p.error(name) for p in members) if not math.isnan(e)]
            floor = [d for p in members for d in replication_spread(p.real.get(name, []))]
            rows.append(
                {
                    "band": band,
                    "metric": name,
                    **error_cells(errors, floor),
                    "floor_q75_dev": quantiles(floor)[2],
                }
            )
    return rows


def winner_rows(points: Sequence[Point], designs: Sequence[str] = DESIGNS) -> list[dict[str, Any]]:
    """winners.csv: at each (duration, mix, rate) run by both designs, the real winner (decisive only
    outside the CIs) and the simulator's (by its means), per metric."""
    if len(designs) != 2:
        return []
    a_name, b_name = designs
    by_key: dict[tuple[str, str, float], dict[str, Point]] = {}
    for p in points:
        by_key.setdefault((p.duration, p.mix, p.rate), {})[p.design] = p
    rows = []
    for (duration, mix, rate), pair in sorted(by_key.items()):
        if a_name not in pair or b_name not in pair:
            continue
        a, b = pair[a_name], pair[b_name]
        row: dict[str, Any] = {"duration": duration, "mix": mix, "rate": rate, "rho_a": a.rho, "rho_b": b.rho}
        for name in WINNER_METRICS:
            better = dict((m, s) for m, _, s in METRICS)[name]
            (ra, ra_ci), (rb, rb_ci) = a.real_mean(name), b.real_mean(name)
            real_w = winner(ra, rb, higher_is_better=better > 0, a_ci=ra_ci, b_ci=rb_ci)
            sim_w = winner(a.sim_mean(name), b.sim_mean(name), higher_is_better=better > 0)
            names = {"a": a_name, "b": b_name, "tie": "tie", "": ""}
            row[f"{name}_real"] = names[real_w]
            row[f"{name}_sim"] = names[sim_w]
            row[f"{name}_agree"] = "" if real_w in ("tie", "") or not sim_w else str(real_w == sim_w)
            # the weaker question, asked at every point: does the sim order the real means the same way
            by_means = winner(ra, rb, higher_is_better=better > 0)
            row[f"{name}_agree_means"] = (
                "" if by_means in ("tie", "") or not sim_w else str(by_means == sim_w)
            )
        rows.append(row)
    return rows


def winner_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Per metric: points where the real winner is decisive, where the sim agrees, and real ties."""
    out = {}
    for name in WINNER_METRICS:
        agree = [r[f"{name}_agree"] for r in rows]
        out[name] = {
            "decisive": sum(a in ("True", "False") for a in agree),
            "agree": sum(a == "True" for a in agree),
            "real_ties": sum(r[f"{name}_real"] == "tie" for r in rows),
            "ordered_by_means": sum(r[f"{name}_agree_means"] in ("True", "False") for r in rows),
            "agree_by_means": sum(r[f"{name}_agree_means"] == "True" for r in rows),
        }
    return out


def saturation_winners(
    rows: Sequence[Mapping[str, Any]], designs: Sequence[str] = DESIGNS
) -> list[dict[str, Any]]:
    """Per (duration, mix): the design with the higher saturation rate, real and simulated."""
    by_cell: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
    for r in rows:
        by_cell.setdefault((r["duration"], r["mix"]), {})[r["design"]] = r
    out = []
    for (duration, mix), pair in sorted(by_cell.items()):
        if len(designs) != 2 or not all(d in pair for d in designs):
            continue
        a, b = (pair[d] for d in designs)
        real_w = winner(a["real_rate"], b["real_rate"], higher_is_better=True)
        sim_w = winner(a["sim_rate"], b["sim_rate"], higher_is_better=True)
        names = {"a": designs[0], "b": designs[1], "tie": "tie", "": ""}
        agree = "" if real_w in ("tie", "") or not sim_w else str(real_w == sim_w)
        out.append(
            {"duration": duration, "mix": mix, "real": names[real_w], "sim": names[sim_w], "agree": agree}
        )
    return out


def saturation_rows(v: Validation, root: Path | str) -> list[dict[str, Any]]:
    """Measured vs simulated saturation rate per (design, duration, mix)."""
    real = measured_saturation(v, Path(root), "real")
    simulated = measured_saturation(v, Path(root), "sim")
    return [
        {
            "design": k[0],
            "duration": k[1],
            "mix": k[2],
            "real_rate": real[k],
            "sim_rate": simulated.get(k, math.nan),
            "err": rel_error(simulated.get(k, math.nan), real[k]),
        }
        for k in sorted(real)
    ]
