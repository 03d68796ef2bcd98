"""The paper's figures and tables, rebuilt from what is in data/ (issue 7).

    python -m lab.report.tables                 # or `make paper`: figures -> paper/figures/*.png,
                                         # tables -> paper/tables/*.md, and REPORT.md's table blocks
    python -m lab.report.tables --rerun         # or `make paper RERUN=1`: re-run the experiments first

Inputs (each optional: a missing one is said so in its table, and its figure is skipped):
- data/experiments/<name>/summary.csv (`dtq experiment run`): throughput, latency and submit -> done
  vs concurrency, per job duration and request mix, for both designs and the Celery + Redis reference.
- data/validation/points.csv and error_table.csv (`dtq validate`): simulator beside the real system.
- data/faults/sim-<design>.json (`dtq sim faults`) and real-<design>.json (`dtq faults`).
- data/calibration/<name>.json (`dtq calibrate`): the measured distributions the simulator uses.
- data/bench/*.txt: `dtq bench` output kept verbatim, its command on the first line.

Tables copy (rounded) the values of those files, so each traces back to a file and the command that
wrote it. Computed here, from those files only, and said so in the table's note: the A-vs-B winner and
ratio (wins), and the calibration samples' quantiles and lognormal fit.

REPORT.md holds prose plus blocks `<!-- BEGIN table:NAME -->` ... `<!-- END table:NAME -->`; `build`
replaces each block's body with paper/tables/NAME.md, so the report's numbers are never typed by hand.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import re
import statistics
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from model.results.stats import lognormal_cdf, lognormal_fit, winner

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT / "data"
DEFAULT_OUT = REPO_ROOT / "paper"
DEFAULT_REPORT = REPO_ROOT / "REPORT.md"
DEFAULT_EXPERIMENT = "seed_plan"
NO_VALIDATION = "no validation data yet"

DESIGN_ORDER = ("micro", "mono", "celery")
DESIGN_LABEL = {"micro": "A (micro)", "mono": "B (mono)", "celery": "Celery+Redis (ref.)"}
# one colour per design in every figure; the reference is grey so it reads as a baseline, not a contender
DESIGN_COLOR = {"micro": "#1f77b4", "mono": "#d62728", "celery": "#7f7f7f"}
PERCENTILES = ("p50", "p95", "p99")
WINNER_LABEL = {"a": "A", "b": "B", "tie": "tie", "": "?"}  # A = micro, B = mono


def set_style() -> None:
    """The one style of every figure (called by `build` and by the notebooks)."""
    sns.set_theme(context="paper", style="whitegrid", font_scale=1.1)
    plt.rcParams.update(
        # no savefig.bbox "tight": it draws every figure twice; tight_layout + _legend_top fit them once
        {"figure.dpi": 110, "savefig.dpi": 130, "savefig.bbox": None, "axes.titlesize": "medium"}
    )


# ---------------------------------------------------------------------------- reading data/
def read_csv(path: Path, missing_ok: bool = False) -> list[dict[str, str]]:
    if missing_ok and not path.is_file():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def num(value: object) -> float:
    """A CSV/JSON cell as a float; '' / None / junk -> NaN (a metric a run did not record)."""
    if value is None or value == "":
        return math.nan
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def experiment_rows(data: Path, name: str = DEFAULT_EXPERIMENT) -> list[dict[str, str]]:
    """data/experiments/<name>/summary.csv rows with at least one replication on disk (the runner
    lists every planned point, also those not run yet)."""
    path = data / "experiments" / name / "summary.csv"
    return [r for r in read_csv(path, missing_ok=True) if num(r.get("n")) > 0]


def fault_rows(data: Path, kind: str) -> list[dict[str, Any]]:
    """data/faults/<kind>-micro.json and <kind>-mono.json rows (kind: sim, real or compose). Other files there
    (e.g. real-<design>-open.json, an open-loop variant) are another workload and are not mixed in."""
    rows: list[dict[str, Any]] = []
    for path in [data / "faults" / f"{kind}-{d}.json" for d in ("micro", "mono")]:
        if not path.is_file():
            continue
        loaded = json.loads(path.read_text())
        if isinstance(loaded, list):
            rows.extend(r for r in loaded if isinstance(r, dict))
    return rows


def validation_files(
    data: Path, folder: str = "validation"
) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(points.csv, error_table.csv) rows from data/<folder>/, each empty when absent."""
    root = data / folder
    return read_csv(root / "points.csv", missing_ok=True), read_csv(root / "error_table.csv", missing_ok=True)


def calibration_samples(calibration: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Every empirical distribution in a calibration's `parameters`, by dotted key (service.node.X)."""
    params = calibration.get("parameters", {})
    out: dict[str, np.ndarray] = {}

    def visit(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            if value.get("kind") == "empirical" and isinstance(value.get("samples"), list):
                out[prefix] = np.asarray(value["samples"], dtype=np.float64)
                return
            for key, child in value.items():
                visit(f"{prefix}.{key}" if prefix else str(key), child)

    visit("", params)
    return out


# ---------------------------------------------------------------------------- formatting
def fmt(value: float, digits: int = 1) -> str:
    return "-" if math.isnan(value) else f"{value:.{digits}f}"


def pm(mean: float, ci: float, digits: int = 1) -> str:
    """mean ± 95% CI half-width as the summary table holds them."""
    if math.isnan(mean):
        return "-"
    return fmt(mean, digits) if math.isnan(ci) else f"{mean:.{digits}f} ± {ci:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _design_key(design: str) -> int:
    return DESIGN_ORDER.index(design) if design in DESIGN_ORDER else len(DESIGN_ORDER)


def _sorted_points(rows: Sequence[Mapping[str, str]]) -> list[Mapping[str, str]]:
    return sorted(
        rows, key=lambda r: (r["duration"], r["mix"], _design_key(r["design"]), num(r["concurrency"]))
    )


# ---------------------------------------------------------------------------- tables
def table_experiment(rows: Sequence[Mapping[str, str]], name: str) -> str:
    if not rows:
        return f"No `{name}` sweep data yet (run `dtq experiment run data/experiments/{name}.yaml`).\n"
    header = ["design", "clients", "duration", "mix", "n", "done/s", "lat p50 ms", "lat p95 ms"]
    header += ["lat p99 ms", "done p50 ms", "done p99 ms", "err", "unfin"]
    body = []
    for r in _sorted_points(rows):
        body.append(
            [
                DESIGN_LABEL.get(r["design"], r["design"]),
                r["concurrency"],
                r["duration"],
                r["mix"],
                f"{r['n']}/{r.get('planned', r['n'])}",
                pm(num(r["completed_per_s_mean"]), num(r["completed_per_s_ci95"]), 1),
                pm(num(r["latency_p50_ms_mean"]), num(r["latency_p50_ms_ci95"]), 2),
                pm(num(r["latency_p95_ms_mean"]), num(r["latency_p95_ms_ci95"]), 2),
                pm(num(r["latency_p99_ms_mean"]), num(r["latency_p99_ms_ci95"]), 2),
                pm(num(r["completion_p50_ms_mean"]), num(r["completion_p50_ms_ci95"]), 1),
                pm(num(r["completion_p99_ms_mean"]), num(r["completion_p99_ms_ci95"]), 1),
                r.get("errors", ""),
                r.get("unfinished_jobs", ""),
            ]
        )
    note = (
        f"\nFrom data/experiments/{name}/summary.csv: mean ± 95% Student-t CI half-width over the "
        "replications (n done/planned); done/s = jobs completed per second in the window; lat = request "
        "latency from intended send time; done = submit -> terminal.\n"
    )
    return markdown_table(header, body) + note


def table_wins(rows: Sequence[Mapping[str, str]]) -> str:
    """A vs B at every sweep point, on done/s, latency p50/p99 and submit -> done p50."""
    by_point: dict[tuple[str, str, str], dict[str, Mapping[str, str]]] = {}
    for r in rows:
        by_point.setdefault((r["duration"], r["mix"], r["concurrency"]), {})[r["design"]] = r
    metrics = (
        ("done/s", "completed_per_s", True, 1),
        ("lat p50", "latency_p50_ms", False, 2),
        ("lat p99", "latency_p99_ms", False, 2),
        ("done p50", "completion_p50_ms", False, 1),
    )
    body = []
    for (duration, mix, conc), pair in sorted(
        by_point.items(), key=lambda kv: (kv[0][0], kv[0][1], num(kv[0][2]))
    ):
        if "micro" not in pair or "mono" not in pair:
            continue
        a, b = pair["micro"], pair["mono"]
        row = [duration, mix, conc]
        for _, col, higher, _ in metrics:
            ra, rb = num(a[f"{col}_mean"]), num(b[f"{col}_mean"])
            w = WINNER_LABEL[
                winner(
                    ra, rb, higher_is_better=higher, a_ci=num(a[f"{col}_ci95"]), b_ci=num(b[f"{col}_ci95"])
                )
            ]
            ratio = rb / ra if ra > 0 and not math.isnan(rb) else math.nan
            row.append(f"{w} (B/A {fmt(ratio, 2)})")
        body.append(row)
    if not body:
        return "No sweep point with both designs yet.\n"
    header = ["duration", "mix", "clients", *(m[0] for m in metrics)]
    note = (
        "\nWinner per metric (A = micro, B = mono; 'tie' when the means differ by no more than the two "
        "95% CI half-widths together), with the ratio of B's mean to A's.\n"
    )
    return markdown_table(header, body) + note


def table_headline(rows: Sequence[Mapping[str, str]]) -> str:
    """At the highest concurrency: done/s and submit -> done p50 of every design per (duration, mix)."""
    if not rows:
        return "No sweep data yet.\n"
    top = max(num(r["concurrency"]) for r in rows)
    at_top = [r for r in rows if num(r["concurrency"]) == top]
    designs = sorted({r["design"] for r in at_top}, key=_design_key)
    body = []
    for duration, mix in _facets(at_top):
        cells = [duration, mix]
        for col, digits in (("completed_per_s", 1), ("completion_p50_ms", 1)):
            for design in designs:
                match = [
                    r for r in at_top if (r["design"], r["duration"], r["mix"]) == (design, duration, mix)
                ]
                r = match[0] if match else {}
                cells.append(pm(num(r.get(f"{col}_mean")), num(r.get(f"{col}_ci95")), digits))
        body.append(cells)
    header = ["duration", "mix"]
    header += [f"done/s {DESIGN_LABEL.get(d, d)}" for d in designs]
    header += [f"done p50 ms {DESIGN_LABEL.get(d, d)}" for d in designs]
    note = f"\nAt {top:g} closed-loop clients (wait mode), mean ± 95% CI over the replications.\n"
    return markdown_table(header, body) + note


def table_bench(data: Path) -> str:
    """data/bench/<host>.txt verbatim: `dtq bench` prints, it writes no file, so its output is kept
    with the command on its first line."""
    files = sorted((data / "bench").glob("*.txt"))
    if not files:
        return "No saved `dtq bench` output yet (data/bench/*.txt).\n"
    return "".join(
        f"From {f.relative_to(data.parent)}:\n\n```\n{f.read_text().rstrip()}\n```\n" for f in files
    )


def fault_name(row: Mapping[str, Any]) -> str:
    """'<fault> <target>'. The real injector's "kill" of Design A's worker process is the simulator's
    "kill_worker" of it, so the two share a name; a Design B node kill (the whole process) is not the
    simulator's kill of that node's worker runtime, so those stay apart."""
    fault, target = str(row["fault"]), str(row.get("target", ""))
    if fault == "kill" and target == "worker":
        fault = "kill_worker"
    return f"{fault} {target}".strip()


def table_faults(sim_rows: Sequence[Mapping[str, Any]], real_rows: Sequence[Mapping[str, Any]]) -> str:
    """One line per (design, fault, lease, heartbeat). A real point run several times shows the median
    over its runs (`runs` column); a run whose throughput never came back counts as 'never'."""
    if not sim_rows and not real_rows:
        return "No fault data yet (`dtq sim faults --design D`, `dtq faults`).\n"

    def key(r: Mapping[str, Any]) -> tuple[str, str, float, float]:
        return (r["design"], fault_name(r), num(r["lease_s"]), num(r["heartbeat_s"]))

    sim: dict[tuple[str, str, float, float], list[Mapping[str, Any]]] = {}
    real: dict[tuple[str, str, float, float], list[Mapping[str, Any]]] = {}
    for rows, into in ((sim_rows, sim), (real_rows, real)):
        for r in rows:
            into.setdefault(key(r), []).append(r)
    body = []
    for k in sorted(set(sim) | set(real), key=lambda k: (_design_key(k[0]), k[1], k[2], k[3])):
        cells = [DESIGN_LABEL.get(k[0], k[0]), k[1], fmt(k[2], 1), fmt(k[3], 1)]
        for runs in (sim.get(k, []), real.get(k, [])):
            cells += [
                _median_cell(runs, "recovery_s", 1),
                _median_cell(runs, "duplicates", 0),
                _median_cell(runs, "lost", 0),
                _median_cell(runs, "unavailable_s", 1),
            ]
        cells.append(str(len(real.get(k, []))))
        body.append(cells)
    header = ["design", "fault", "lease s", "heartbeat s", "sim recovery s", "sim dup", "sim lost"]
    header += ["sim unavail s", "real recovery s", "real dup", "real lost", "real unavail s", "real runs"]
    note = (
        "\nFrom data/faults/sim-{micro,mono}.json (`dtq sim faults`) and real-{micro,mono}.json "
        "(`dtq faults`) as they are; real values are medians over the runs of a point. 'never' = "
        "throughput not back to 90% before the trace's end (a median that falls on such a run), "
        "'-' = not run. The real injector's kill "
        "of A's worker is the simulator's kill_worker; a B node kill (the whole process) is not. "
        + ("No real fault runs yet.\n" if not real_rows else "\n")
    )
    return markdown_table(header, body) + note


def table_faults_compose(
    local_rows: Sequence[Mapping[str, Any]], compose_rows: Sequence[Mapping[str, Any]]
) -> str:
    """The same faults on the local process clusters and on Compose clusters: medians per point."""
    if not compose_rows:
        return "No Compose fault runs yet (`dtq faults run --backend compose`).\n"

    def key(r: Mapping[str, Any]) -> tuple[str, str, float, float]:
        return (r["design"], fault_name(r), num(r["lease_s"]), num(r["heartbeat_s"]))

    local: dict[tuple[str, str, float, float], list[Mapping[str, Any]]] = {}
    compose: dict[tuple[str, str, float, float], list[Mapping[str, Any]]] = {}
    for rows, into in ((local_rows, local), (compose_rows, compose)):
        for r in rows:
            into.setdefault(key(r), []).append(r)
    body = []
    for k in sorted(compose, key=lambda k: (_design_key(k[0]), k[1], k[2], k[3])):
        cells = [DESIGN_LABEL.get(k[0], k[0]), k[1], fmt(k[2], 1), fmt(k[3], 1)]
        for runs in (local.get(k, []), compose[k]):
            cells += [
                _median_cell(runs, "recovery_s", 1),
                _median_cell(runs, "duplicates", 0),
                _median_cell(runs, "lost", 0),
                _median_cell(runs, "unavailable_s", 1),
                str(len(runs)),
            ]
        body.append(cells)
    header = ["design", "fault", "lease s", "heartbeat s"]
    for where in ("local", "compose"):
        header += [f"{where} recovery s", f"{where} dup", f"{where} lost", f"{where} unavail s", "runs"]
    note = (
        "\nFrom data/faults/real-{micro,mono}.json (local process clusters) and compose-{micro,mono}.json "
        "(`dtq faults run --backend compose`: docker kill / pause / stop+start / network disconnect); "
        "medians over the runs of a point, 'never' and '-' as above.\n"
    )
    return markdown_table(header, body) + note


def _median_cell(runs: Sequence[Mapping[str, Any]], col: str, digits: int) -> str:
    """Median over runs, 'never' (None: not recovered) ranked above every number, '-' when no runs."""
    if not runs:
        return "-"
    values = sorted((math.inf if r.get(col) is None else num(r.get(col))) for r in runs)
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return "never" if math.isinf(median) else fmt(median, digits)


AFTER_FOLDER = "validation/after"
BANDS = ("rho<=0.5", "0.5<rho<=0.8", "rho>0.8")  # the validation file's bands: [0.5, 0.8]
TREND_WINDOW_S = 240.0  # width of the run-start windows in table_validation_trend


T = TypeVar("T")


def _started(config: Mapping[str, Any]) -> datetime:
    return datetime.fromisoformat(str(config["started_at"]).replace("Z", "+00:00"))


def _windows(items: Sequence[tuple[datetime, T]], window: float) -> list[tuple[float, list[T]]]:
    """`items` grouped by `window`-second windows of time from the earliest: (window start s, items)."""
    if not items:
        return []
    first = min(t for t, _ in items)
    groups: dict[int, list[T]] = {}
    for t, item in items:
        groups.setdefault(int((t - first).total_seconds() // window), []).append(item)
    return [(k * window, v) for k, v in sorted(groups.items())]


def validation_trend(runs: Path, window: float = TREND_WINDOW_S) -> list[tuple[float, int, float]]:
    """Per window of real run start times (s from the first run): (window start, runs, median of
    sim p50 / real p50 over the validation's load points and their simulated twins). A host that
    drifts while the real runs are made shows as a trend here; a steady offset does not."""
    ratios: list[tuple[datetime, float]] = []
    for real in sorted(runs.glob("real-*-validation.rate*")):
        twin = runs / ("sim-" + real.name.partition("-")[2]) / "summary.json"
        if not (twin.is_file() and (real / "summary.json").is_file()):
            continue
        started = _started(json.loads((real / "config.json").read_text()))
        real_p50 = json.loads((real / "summary.json").read_text())["latency_ms"]["all"]["p50"]
        sim_p50 = json.loads(twin.read_text())["latency_ms"]["all"]["p50"]
        if real_p50 and real_p50 > 0:
            ratios.append((started, sim_p50 / real_p50))
    return [(start, len(v), float(np.median(v))) for start, v in _windows(ratios, window)]


def table_validation_trend(trend: Sequence[tuple[float, int, float]]) -> str:
    if not trend:
        return NO_VALIDATION.capitalize() + ".\n"
    body = [
        [f"{start / 60:.0f}-{(start + TREND_WINDOW_S) / 60:.0f}", str(n), fmt(r, 2)] for start, n, r in trend
    ]
    note = (
        "\nFrom data/runs/real-*-validation.rate* and their sim- twins (sim/report.py validation_trend): "
        "the real runs grouped by start time, minutes from the first; sim/real = median over the group "
        "of the twin's request p50 over the real run's (twins from the main calibration).\n"
    )
    return markdown_table(["minutes", "runs", "sim/real p50"], body) + note


def table_validation(
    points: Sequence[Mapping[str, str]],
    errors: Sequence[Mapping[str, str]],
    folder: str = "validation",
) -> str:
    if not errors:
        return NO_VALIDATION.capitalize() + " (`dtq validate data/experiments/validation.yaml`).\n"
    cols = [c for c in errors[0] if c not in ("band", "metric", "points")]
    body = [
        [r.get("band", ""), r.get("metric", ""), r.get("points", "")] + [_pct(num(r[c])) for c in cols]
        for r in errors
    ]
    note = (
        f"\nFrom data/{folder}/error_table.csv ({len(points)} points in points.csv): relative error "
        "(sim - real) / real in percent; floor = the real system's own run-to-run deviation.\n"
    )
    return markdown_table(["band", "metric", "points", *cols], body) + note


def table_host_scaling(data: Path) -> str:
    """The error table's headline cells for the twin sets of TWIN_SETS side by side: does moving each
    twin to its run's probed host speed help, and do the calibrations then agree?"""
    body = []
    from lab.validation.accuracy import TWIN_SETS

    for twin_set in TWIN_SETS:
        _, errors = validation_files(data, twin_set.folder)
        if not errors:
            continue
        cell = {(r["band"], r["metric"]): r for r in errors}
        what_ifs = ", ".join(f"{k} = {v}" for k, v in twin_set.sim_overrides.items())
        if twin_set.fair_scheduler:
            what_ifs = ", ".join(x for x in ("fair scheduler (measured slice)", what_ifs) if x)
        row = [twin_set.calibration, "yes" if twin_set.host_scale else "no", what_ifs or "FIFO per burst"]
        for metric in ("p50", "p99"):
            row.append(" / ".join(_pct(num(cell.get((b, metric), {}).get("median_abs_err"))) for b in BANDS))
        low = cell.get(("rho<=0.5", "p50"), {})
        row.append(_pct(num(low.get("median_signed_err"))))
        body.append(row)
    if not body:
        return NO_VALIDATION.capitalize() + ".\n"
    header = [
        "calibration",
        "moved to the run's host",
        "CPU sharing and what-ifs",
        "p50 |err|",
        "p99 |err|",
        "p50 bias, rho<=0.5",
    ]
    note = (
        "\nThe same real runs, one set of simulated twins per row (lab.validation.accuracy.TWIN_SETS: "
        "data/validation/ and its subfolders, the others made by `dtq validate "
        "data/experiments/validation.yaml --twin-sets`): from the calibration made right before the runs "
        "(local), right after them (local-after), or one of two made back to back later (local-rounds-a, "
        "-b), each twin either on its calibration's host speed or moved to its run's probed speed "
        "(sim.params.HostScale), and with the host's cores shared FIFO per CPU burst (the simulator's "
        "default) or as the kernel's fair scheduler does with the time slice the calibration measured "
        "(sim/cpu.py, cpu_slice). |err| = median over the band's points of |sim - real| / "
        "real, by band rho <= 0.5 / 0.5-0.8 / > 0.8. Were the probe to capture everything that differs "
        "between calibrations, the moved FIFO rows would agree with each other.\n"
    )
    return markdown_table(header, body) + note


def host_probe_trend(runs: Path, window: float = TREND_WINDOW_S) -> list[tuple[float, int, dict[str, float]]]:
    """Per window of real validation run start times: (start s, runs, median probe fields)."""
    probes: list[tuple[datetime, Mapping[str, Any]]] = []
    for real in sorted(runs.glob("real-*-validation*")):
        config_path = real / "config.json"
        if not config_path.is_file():
            continue
        config = json.loads(config_path.read_text())
        probe = config.get("parameters", {}).get("host_probe")
        if probe:
            probes.append((_started(config), probe))
    return [
        (start, len(v), {key: float(np.median([num(p.get(key)) for p in v])) for key in PROBE_FIELDS})
        for start, v in _windows(probes, window)
    ]


PROBE_FIELDS = ("busy_us", "wake_us", "wake_gap_us", "python_us")


def calibration_probe_medians(doc: Mapping[str, Any]) -> tuple[int, dict[str, float]] | None:
    """(probes, field-by-field median) over every host probe a calibration took, or None."""
    probes = [p for group in (doc.get("host_probe") or {}).values() for p in group]
    if not probes:
        return None
    return len(probes), {k: float(np.median([num(p.get(k)) for p in probes])) for k in PROBE_FIELDS}


def table_host_probe(
    trend: Sequence[tuple[float, int, Mapping[str, float]]], calibrations: Mapping[str, Mapping[str, Any]]
) -> str:
    """The host probe over the real runs, beside the calibrations' own probes."""
    rows: list[tuple[str, int, Mapping[str, float]]] = []
    for name, doc in calibrations.items():
        found = calibration_probe_medians(doc)
        if found:
            rows.append((f"{name} (calibration)", *found))
    for start, n, medians in trend:
        rows.append((f"runs {start / 60:.0f}-{(start + TREND_WINDOW_S) / 60:.0f} min", n, medians))
    body = [[when, str(n)] + [fmt(medians[k], 1) for k in PROBE_FIELDS] for when, n, medians in rows]
    if not body:
        return "No host probes yet (validation options host_probe: true).\n"
    header = ["when", "probes", "busy µs/call", "wake µs", "wake after 10 ms µs", "python µs/iter"]
    note = (
        "\nrealsys/hostprobe.py: the bare gRPC echo's server + client CPU per call with 16 in flight "
        "(busy), the server's extra CPU one call in flight back to back (wake) and after a 10 ms sleep, "
        "and a fixed Python loop (recorded, not used). Calibration rows: the median of the probes it "
        "took with each design's idle cluster up, before and after its measurements; run rows: the "
        "medians of the probes taken at each real run's start, by 4-minute window from the first run.\n"
    )
    return markdown_table(header, body) + note


def _pct(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.0f}%"


def validation_summary(data: Path) -> dict[str, Any]:
    path = data / "validation" / "summary.json"
    loaded = json.loads(path.read_text()) if path.is_file() else {}
    return loaded if isinstance(loaded, dict) else {}


def table_saturation(summary: Mapping[str, Any]) -> str:
    """The throughput test an open loop cannot give: the saturation rate, measured and predicted."""
    rows = summary.get("saturation") or []
    if not rows:
        return NO_VALIDATION.capitalize() + ".\n"
    body = [
        [
            DESIGN_LABEL.get(str(r["design"]), str(r["design"])),
            str(r["duration"]),
            str(r["mix"]),
            fmt(num(r["real_rate"])),
            fmt(num(r["sim_rate"])),
            _pct(num(r["err"])),
        ]
        for r in sorted(rows, key=lambda r: (_design_key(str(r["design"])), r["duration"], r["mix"]))
    ]
    winners = summary.get("saturation_winners") or []
    agree = sum(1 for w in winners if str(w.get("agree")) == "True")
    note = (
        "\nFrom data/validation/summary.json: requests/s at saturation, real (the closed-loop runs of "
        "the validation file's `saturation` entry) and simulated from the calibration for the same "
        "runs; err = (sim - real) / real. The design with the higher saturation rate is the same in the "
        f"simulator and the real system in {agree} of {len(winners)} cells.\n"
    )
    return markdown_table(["design", "duration", "mix", "real req/s", "sim req/s", "err"], body) + note


def scheduler_pairs() -> list[tuple[str, str, str]]:
    """(FIFO folder, fair-scheduler folder, calibration) for every fair twin set of
    lab.validation.accuracy.TWIN_SETS and the set that differs from it only in sharing the cores FIFO."""
    from lab.validation.accuracy import TWIN_SETS

    return [
        (fifo.folder, fair.folder, fair.calibration)
        for fair in TWIN_SETS
        if fair.fair_scheduler
        for fifo in TWIN_SETS
        if not fifo.fair_scheduler
        and (fifo.calibration, fifo.host_scale, fifo.sim_overrides)
        == (fair.calibration, fair.host_scale, fair.sim_overrides)
    ]


def table_scheduler(data: Path) -> str:
    """The same real runs' twins with the cores shared FIFO per burst and as the kernel's fair
    scheduler does: saturation per cell, and design A's and B's median p50 error per band."""
    cells: dict[tuple[str, str, str], list[str]] = {}
    p50: dict[str, str] = {}
    header = ["design", "duration", "mix", "real req/s"]
    for fifo, fair, calibration in scheduler_pairs():
        sat_fifo = read_csv(data / fifo / "saturation.csv", missing_ok=True)
        sat_fair = {
            (r["design"], r["duration"], r["mix"]): r
            for r in read_csv(data / fair / "saturation.csv", missing_ok=True)
        }
        if not sat_fifo or not sat_fair:
            continue
        header += [f"err FIFO ({calibration})", f"err fair ({calibration})"]
        for r in sat_fifo:
            key = (r["design"], r["duration"], r["mix"])
            row = cells.setdefault(key, [fmt(num(r["real_rate"]))])
            row += [_pct(num(r["err"])), _pct(num(sat_fair.get(key, {}).get("err")))]
        for folder, kind in ((fifo, "FIFO"), (fair, "fair")):
            points = validation_files(data, folder)[0]
            for design in ("micro", "mono"):
                per_band = []
                for band in BANDS:
                    errs = [
                        abs(float(p["p50_err"]))
                        for p in points
                        if p["design"] == design and p["band"] == band
                    ]
                    per_band.append(_pct(statistics.median(errs)) if errs else "-")
                p50[f"{DESIGN_LABEL.get(design, design)}, {kind} ({calibration})"] = " / ".join(per_band)
    if not cells:
        return "No data/validation/fair/ yet (`dtq validate data/experiments/validation.yaml --twin-sets`).\n"
    body = [
        [DESIGN_LABEL.get(d, d), du, mi, *row]
        for (d, du, mi), row in sorted(cells.items(), key=lambda kv: (_design_key(kv[0][0]), kv[0][1:]))
    ]
    note = (
        "\nFrom saturation.csv and points.csv of data/validation/ (FIFO per CPU burst, the simulator's "
        "default) and data/validation/fair/ (the host's cores shared as the kernel's fair scheduler does, "
        "with the slice the calibration measured: sim/cpu.py, cpu_slice), and the same for local-after "
        "(after/, after-fair/): the same real runs, each twin moved to its run's probed host speed. "
        "Saturation err = (sim - real) / real; the second table is the median |p50 err| per design and "
        "band (rho <= 0.5 / 0.5-0.8 / > 0.8).\n\n"
    )
    return (
        markdown_table(header, body)
        + note
        + markdown_table(["twins", "p50 |err| by band"], [[name, errs] for name, errs in p50.items()])
    )


def table_winner_agreement(summary: Mapping[str, Any]) -> str:
    counts = summary.get("winner_agreement") or {}
    if not counts:
        return NO_VALIDATION.capitalize() + ".\n"
    body = [
        [
            metric,
            str(c.get("decisive", 0) + c.get("real_ties", 0)),
            str(c.get("real_ties", 0)),
            f"{c.get('agree', 0)} of {c.get('decisive', 0)}",
            f"{c.get('agree_by_means', 0)} of {c.get('ordered_by_means', 0)}",
        ]
        for metric, c in sorted(counts.items())
    ]
    note = (
        "\nFrom data/validation/summary.json (winners.csv per point): at each rate both designs ran, "
        "whether the simulator names the same winner as the real system. 'decided' counts points where "
        "the real means differ by more than their two 95% CI half-widths together; 'by means' compares "
        "the winners by the real means alone.\n"
    )
    header = ["metric", "points", "real ties", "sim right where decided", "sim right by means"]
    return markdown_table(header, body) + note


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
    return f" Their host probes (realsys/hostprobe.py, median of each's), after / before: {ratios}."


# ---------------------------------------------------------------------------- figures
def _save(fig: Figure, out: Path, name: str) -> Path:
    path = out / f"{name}.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def _legend_top(fig: Figure, rows: int = 1) -> float:
    """The top of the subplots' area below a figure legend of `rows` lines (about 0.3 inch each)."""
    return max(0.5, 1 - 0.32 * rows / fig.get_figheight())


def _facets(rows: Sequence[Mapping[str, str]]) -> list[tuple[str, str]]:
    return sorted({(r["duration"], r["mix"]) for r in rows})


def _plot_vs_concurrency(ax: Axes, rows: Sequence[Mapping[str, str]], col: str) -> None:
    """Mean ± 95% CI per design against concurrency; the Celery reference dashed and grey."""
    for design in sorted({r["design"] for r in rows}, key=_design_key):
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
    facets = _facets(rows)
    fig, axes = plt.subplots(
        len(metrics), len(facets), figsize=(3.2 * len(facets), 2.6 * len(metrics)), squeeze=False, sharex=True
    )
    for i, (col, label) in enumerate(metrics):
        for j, (duration, mix) in enumerate(facets):
            ax = axes[i][j]
            _plot_vs_concurrency(ax, [r for r in rows if (r["duration"], r["mix"]) == (duration, mix)], col)
            if i == 0:
                ax.set_title(f"{duration} jobs, {mix} mix")
            if j == 0:
                ax.set_ylabel(label)
            if i == len(metrics) - 1:
                ax.set_xlabel("closed-loop clients")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, _legend_top(fig)))
    return _save(fig, out, name)


def fig_mix_duration(rows: Sequence[Mapping[str, str]], out: Path) -> Path:
    """At the highest concurrency: done/s and submit -> done p50 per (duration, mix), bars per design."""
    top = max(num(r["concurrency"]) for r in rows)
    at_top = [r for r in rows if num(r["concurrency"]) == top]
    facets = _facets(at_top)
    designs = sorted({r["design"] for r in at_top}, key=_design_key)
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
    facets = _facets(points)
    fig, axes = plt.subplots(
        len(metrics), len(facets), figsize=(3.2 * len(facets), 2.6 * len(metrics)), squeeze=False
    )
    for i, (metric, label) in enumerate(metrics):
        for j, facet in enumerate(facets):
            ax = axes[i][j]
            for design in sorted({p["design"] for p in points}, key=_design_key):
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
            if i == 0:
                ax.set_title(f"{facet[0]} jobs, {facet[1]} mix")
            if j == 0:
                ax.set_ylabel(label)
            if i == len(metrics) - 1:
                ax.set_xlabel("offered rate (requests/s)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=len(labels), bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, _legend_top(fig)))
    return _save(fig, out, "accuracy")


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


# ---------------------------------------------------------------------------- build
@dataclass
class Built:
    figures: list[Path] = field(default_factory=list)
    tables: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what could not be built, and why


def build(
    data: Path | str = DEFAULT_DATA,
    out: Path | str = DEFAULT_OUT,
    report: Path | str | None = DEFAULT_REPORT,
    experiment: str = DEFAULT_EXPERIMENT,
    calibration: str = "local",
) -> Built:
    """Every figure (out/figures/*.png) and table (out/tables/*.md) from `data`; fills `report`'s blocks."""
    data, out = Path(data), Path(out)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    set_style()
    built = Built()
    figs = out / "figures"

    def table(name: str, text: str) -> None:
        path = out / "tables" / f"{name}.md"
        path.write_text(text)
        built.tables[name] = path

    def figure(name: str, make: Callable[[], Path | None]) -> None:
        path = make()
        if path is None:
            built.notes.append(f"{name}: no data")
        else:
            built.figures.append(path)

    rows = experiment_rows(data, experiment)
    table("experiment", table_experiment(rows, experiment))
    table("wins", table_wins(rows) if rows else "No sweep data yet.\n")
    table("headline", table_headline(rows))
    table("bench", table_bench(data))
    if rows:
        figure(
            "throughput",
            lambda: fig_vs_concurrency(rows, figs, "throughput", [("completed_per_s", "jobs done/s")]),
        )
        lat = [(f"latency_{p}_ms", f"request latency {p} (ms)") for p in PERCENTILES]
        figure("latency", lambda: fig_vs_concurrency(rows, figs, "latency", lat))
        done = [(f"completion_{p}_ms", f"submit -> done {p} (ms)") for p in PERCENTILES]
        figure("completion", lambda: fig_vs_concurrency(rows, figs, "completion", done))
        figure("mix_duration", lambda: fig_mix_duration(rows, figs))
    else:
        built.notes.append(f"experiment {experiment}: no summary.csv yet")

    points, errors = validation_files(data)
    table("validation", table_validation(points, errors))
    table("validation_trend", table_validation_trend(validation_trend(data / "runs")))
    # the same real runs simulated from the calibration made right after them (the drift's other side)
    after_points, after_errors = validation_files(data, AFTER_FOLDER)
    if after_errors:
        table("validation_after", table_validation(after_points, after_errors, AFTER_FOLDER))
    else:
        table("validation_after", f"No data/{AFTER_FOLDER}/ yet.\n")
    table("host_scaling", table_host_scaling(data))
    table("scheduler", table_scheduler(data))
    after_name = f"{calibration}-after"
    calibrations = {  # read once: the host-probe, calibration and drift tables all use them
        n: json.loads((data / "calibration" / f"{n}.json").read_text())
        for n in (calibration, after_name)
        if (data / "calibration" / f"{n}.json").is_file()
    }
    table("host_probe", table_host_probe(host_probe_trend(data / "runs"), calibrations))
    summary = validation_summary(data)
    table("saturation", table_saturation(summary))
    table("winners", table_winner_agreement(summary))
    if points:
        figure("accuracy", lambda: fig_accuracy(points, figs))
    else:
        built.notes.append(f"accuracy: {NO_VALIDATION}")

    sim_faults, real_faults = fault_rows(data, "sim"), fault_rows(data, "real")
    table("faults", table_faults(sim_faults, real_faults))
    table("faults_compose", table_faults_compose(real_faults, fault_rows(data, "compose")))
    if sim_faults or real_faults:
        figure("faults", lambda: fig_faults(sim_faults, real_faults, figs))
    else:
        built.notes.append("faults: no data")

    drift = f"No `{after_name}` calibration to compare with.\n"
    if calibration in calibrations:
        cal = calibrations[calibration]
        table("calibration", table_calibration(cal, calibration))
        figure("calibration", lambda: fig_calibration(cal, figs))
        if after_name in calibrations:
            drift = table_calibration_drift(cal, calibrations[after_name], (calibration, after_name))
    else:
        table("calibration", f"No calibration `{calibration}` yet (`dtq calibrate --name {calibration}`).\n")
        built.notes.append(f"calibration {calibration}: missing")
    table("calibration_drift", drift)

    if report is not None and Path(report).is_file():
        fill_report(Path(report), {k: p.read_text() for k, p in built.tables.items()})
    return built


BLOCK = re.compile(
    r"(<!-- BEGIN table:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- END table:(?P=name) -->)", re.DOTALL
)


def fill_report(report: Path, tables: Mapping[str, str]) -> list[str]:
    """Replaces each `<!-- BEGIN table:NAME -->` block's body with tables[NAME]; returns names filled.
    A block naming an unknown table is left as is (so a typo shows up as a stale block, not data loss)."""
    filled: list[str] = []

    def replace(m: re.Match[str]) -> str:
        name = m.group("name")
        if name not in tables:
            return m.group(0)
        filled.append(name)
        return m.group(1) + tables[name] + m.group(4)

    text = report.read_text()
    new = BLOCK.sub(replace, text)
    if new != text:
        report.write_text(new)
    return filled


# ---------------------------------------------------------------------------- re-running
def rerun_commands(repo: Path = REPO_ROOT, experiment: str = DEFAULT_EXPERIMENT) -> list[list[str]]:
    """What `--rerun` runs, in order: the sweep, the simulated fault sweeps, and the validation and its
    other twin sets when its file exists. Each is resumable or cheap; wrap `make paper RERUN=1` in
    `flock` on a shared box."""
    dtq = [sys.executable, "-m", "realsys"]
    cmds = [
        [
            *dtq,
            "experiment",
            "run",
            str(repo / "data" / "experiments" / f"{experiment}.yaml"),
            "--no-progress",
        ]
    ]
    for design in ("micro", "mono"):
        cmds.append(
            [*dtq, "sim", "faults", "--design", design, "--faults-out", str(repo / "data" / "faults")]
        )
    validation = repo / "data" / "experiments" / "validation.yaml"
    if validation.is_file():
        cmds.append([*dtq, "validate", str(validation), "--real", "--sim", "--table", "--no-progress"])
        # the other twin sets of the host_scaling table, for the same runs
        cmds.append([*dtq, "validate", str(validation), "--twin-sets", "--data", str(repo / "data")])
    return cmds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.report.tables", description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the data directory (default: data/)")
    parser.add_argument(
        "--out", default=str(DEFAULT_OUT), help="figures/ and tables/ go here (default: paper/)"
    )
    parser.add_argument(
        "--report", default=str(DEFAULT_REPORT), help="REPORT.md whose table blocks to fill ('' none)"
    )
    parser.add_argument(
        "--experiment", default=DEFAULT_EXPERIMENT, help="data/experiments/<name>/summary.csv"
    )
    parser.add_argument("--calibration", default="local", help="data/calibration/<name>.json")
    parser.add_argument("--rerun", action="store_true", help="re-run the experiments first (long: ~1 hour)")
    args = parser.parse_args(argv)
    # files only, no window; not at import, so notebooks that import this module keep inline figures
    matplotlib.use("Agg")
    if args.rerun:
        for cmd in rerun_commands(experiment=args.experiment):
            print("+", " ".join(cmd), flush=True)
            subprocess.run(cmd, check=True, cwd=REPO_ROOT)
    built = build(args.data, args.out, args.report or None, args.experiment, args.calibration)
    for path in built.figures:
        print(f"figure {path}")
    for path in built.tables.values():
        print(f"table  {path}")
    for note in built.notes:
        print(f"note   {note}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
