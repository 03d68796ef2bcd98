"""The numbers the paper's prose quotes, computed from data/ (each function names the file it reads).

Every value is a string ready for the template (lab/report/paper.py), or "not measured" when the file
it comes from is not there; nothing here is typed by hand.
"""

from __future__ import annotations

import json
import math
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.experiment.plan import expand
from lab.experiment.spec import load_experiment
from lab.report.data import calibration_samples, facet_title, facets_of, num, read_csv
from lab.report.intervals import Interval, get, load_summaries, point_interval, summaries_matching
from lab.report.markdown import markdown_table
from lab.report.style import DESIGN_LABEL, design_key
from model.results.stats import winner
from model.results.summary import COLUMN_PATHS

NOT_MEASURED = "not measured"
# summary.json paths of the headline metrics, by summary.csv's column names
_NOT_HEADLINE = ("requests_per_s", "jobs_per_s", "latency_p95_ms", "completion_p95_ms")
HEADLINE_PATHS = {c: path for c, path in COLUMN_PATHS.items() if c not in _NOT_HEADLINE}
ACCURACY_PATHS: dict[str, tuple[str, ...]] = {
    "throughput": ("throughput", "requests_per_s"),
    "p50": ("latency_ms", "all", "p50"),
    "p99": ("latency_ms", "all", "p99"),
}
PointKey = tuple[str, int, str, str]  # design, clients, duration, mix


def f(x: float, digits: int = 0) -> str:
    return NOT_MEASURED if math.isnan(x) else f"{x:,.{digits}f}"


def pct(x: float) -> str:
    return NOT_MEASURED if math.isnan(x) else f"{100 * x:.0f}%"


def rel_err(sim: float, real: float) -> float:
    return (sim - real) / real if real and not math.isnan(real) and not math.isnan(sim) else math.nan


def median(values: Sequence[float]) -> float:
    clean = [v for v in values if not math.isnan(v)]
    return statistics.median(clean) if clean else math.nan


# --- the headline sweep -----------------------------------------------------------------------------


def measured_intervals(data: Path, experiment: Path) -> dict[PointKey, dict[str, Interval]]:
    """Per point of the experiment's plan, each headline metric's mean and bootstrap interval over
    the replications' data/runs/<run_id>/summary.json (points with no run on disk are left out)."""
    if not experiment.is_file():
        return {}
    by_point: dict[PointKey, list[str]] = {}
    for run in expand(load_experiment(experiment)).runs:
        point = dict(run.point)
        clients = getattr(run.workload.arrival, "clients", 0)
        key = (run.design, int(clients), point.get("duration", ""), point.get("mix", ""))
        by_point.setdefault(key, []).append(run.run_id)
    out: dict[PointKey, dict[str, Interval]] = {}
    for key, run_ids in by_point.items():
        summaries = load_summaries(data / "runs", run_ids)
        if summaries:
            name = "/".join(map(str, key))
            out[key] = {c: point_interval(summaries, p, f"{name}/{c}") for c, p in HEADLINE_PATHS.items()}
    return out


def accuracy_intervals(
    data: Path, points: Sequence[Mapping[str, str]]
) -> dict[tuple[str, str, str, str], dict[str, Interval]]:
    """Per validation point (design, duration, mix, rate), the real replications' intervals."""
    out: dict[tuple[str, str, str, str], dict[str, Interval]] = {}
    for p in points:
        key = (p["design"], p["duration"], p["mix"], p["rate"])
        pattern = f"real-{p['design']}-validation.rate{p['rate']}.{p['duration']}.{p['mix']}.*"
        summaries = summaries_matching(data / "runs", pattern)
        if summaries:
            name = "/".join(key)
            out[key] = {
                m: point_interval(summaries, path, f"{name}/{m}") for m, path in ACCURACY_PATHS.items()
            }
    return out


@dataclass
class Sweep:
    """The headline sweep: summary.csv rows, the replications' intervals and the predictions."""

    rows: list[dict[str, str]]
    measured: dict[PointKey, dict[str, Interval]]
    predicted: list[dict[str, str]]
    sessions: dict[int, str] = field(default_factory=dict)  # clients -> the UTC date its runs were made
    facets: list[tuple[str, str]] = field(default_factory=list)
    concurrencies: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.facets = facets_of(self.rows) if self.rows else []
        self.concurrencies = sorted({int(num(r["concurrency"])) for r in self.rows})

    def mean(self, design: str, clients: int, facet: tuple[str, str], col: str) -> float:
        iv = self.measured.get((design, clients, *facet), {}).get(col)
        if iv is not None:
            return iv.mean
        for r in self.rows:
            key = (r["design"], int(num(r["concurrency"])), r["duration"], r["mix"])
            if key == (design, clients, *facet):
                return num(r.get(f"{col}_mean", ""))
        return math.nan

    def predicted_value(
        self, source: str, design: str, clients: int, facet: tuple[str, str], col: str
    ) -> float:
        for r in self.predicted:
            key = (r["source"], r["design"], int(num(r["concurrency"])), r["duration"], r["mix"])
            if key == (source, design, clients, *facet):
                return num(r.get(col, ""))
        return math.nan

    def row(self, design: str, clients: int, facet: tuple[str, str]) -> Mapping[str, str]:
        for r in self.rows:
            if (r["design"], int(num(r["concurrency"])), r["duration"], r["mix"]) == (
                design,
                clients,
                *facet,
            ):
                return r
        return {}

    def winner(self, clients: int, facet: tuple[str, str], col: str, higher: bool) -> str:
        """'A', 'B', 'tie' or '' between micro and mono: decided only where the means differ by more than
        their two 95% Student-t half-widths (summary.csv) together, as model.results.stats.winner."""
        a, b = self.row("micro", clients, facet), self.row("mono", clients, facet)
        if not a or not b:
            return ""
        w = winner(
            num(a.get(f"{col}_mean")),
            num(b.get(f"{col}_mean")),
            higher_is_better=higher,
            a_ci=num(a.get(f"{col}_ci95")),
            b_ci=num(b.get(f"{col}_ci95")),
        )
        return {"a": "A", "b": "B", "tie": "tie"}.get(w, "")

    @property
    def reference(self) -> int:
        """The level the per-factor results are read at: the highest of the first measuring session
        (a later session on a loaded host is read apart), or the highest level if there are no dates."""
        if not self.sessions:
            return self.top
        first = min(self.sessions.values())
        return max(c for c, d in self.sessions.items() if d == first)

    @property
    def top(self) -> int:
        return self.concurrencies[-1] if self.concurrencies else 0

    def knee(self, design: str, facet: tuple[str, str]) -> int | None:
        """The fewest clients at which done/s reaches 90% of the design's best in this facet."""
        series = [(c, self.mean(design, c, facet, "completed_per_s")) for c in self.concurrencies]
        series = [(c, v) for c, v in series if not math.isnan(v)]
        if not series:
            return None
        best = max(v for _, v in series)
        return next(c for c, v in series if v >= 0.9 * best)


def level_sessions(data: Path, experiment: Path) -> dict[int, str]:
    """Per client count of the plan, the UTC date(s) its runs on disk were started ('a/b' if several)."""
    if not experiment.is_file():
        return {}
    dates: dict[int, set[str]] = {}
    for run in expand(load_experiment(experiment)).runs:
        path = data / "runs" / run.run_id / "config.json"
        if path.is_file():
            started = str(json.loads(path.read_text()).get("started_at", ""))[:10]
            dates.setdefault(int(getattr(run.workload.arrival, "clients", 0)), set()).add(started)
    return {c: "/".join(sorted(d)) for c, d in dates.items()}


def load_sweep(data: Path, name: str, experiment_file: Path) -> Sweep:
    rows = [
        r
        for r in read_csv(data / "experiments" / name / "summary.csv", missing_ok=True)
        if num(r.get("n")) > 0
    ]
    predicted = read_csv(data / "experiments" / name / "predicted.csv", missing_ok=True)
    return Sweep(
        rows, measured_intervals(data, experiment_file), predicted, level_sessions(data, experiment_file)
    )


facet_name = facet_title


def table_top(sweep: Sweep) -> str:
    """At the highest concurrency: done/s and submit -> done p50 per design, measured [interval] and
    the simulator's prediction."""
    if not sweep.rows:
        return "No sweep data yet.\n"
    designs = sorted({r["design"] for r in sweep.rows}, key=design_key)
    body = []
    for facet in sweep.facets:
        for design in designs:
            cells = [facet_name(facet), DESIGN_LABEL.get(design, design)]
            for col, digits in (("completed_per_s", 0), ("completion_p50_ms", 1), ("latency_p99_ms", 1)):
                iv = sweep.measured.get((design, sweep.reference, *facet), {}).get(col)
                mean = iv.mean if iv else sweep.mean(design, sweep.reference, facet, col)
                cell = f(mean, digits)
                if iv and iv.n > 1:
                    cell += f" [{f(iv.lo, digits)}, {f(iv.hi, digits)}]"
                sim = sweep.predicted_value("sim", design, sweep.reference, facet, col)
                cells += [cell, "-" if design == "celery" or math.isnan(sim) else f(sim, digits)]
            body.append(cells)
    header = ["workload", "design", "done/s", "sim", "submit->done p50 ms", "sim", "request p99 ms", "sim"]
    note = (
        f"\nAt {sweep.reference} closed-loop clients ({sweep.sessions.get(sweep.reference, '')}): "
        "measured mean over the replications with its 95% bootstrap "
        "interval, and the simulator's prediction from the calibration alone "
        "(data/experiments/seed_plan/summary.csv, data/runs/*/summary.json, predicted.csv).\n"
    )
    return markdown_table(header, body) + note


def headline_errors(sweep: Sweep) -> dict[str, dict[str, float]]:
    """Median |sim - real| / real over the sweep's points, per design and metric."""
    out: dict[str, dict[str, float]] = {}
    for design in ("micro", "mono"):
        out[design] = {}
        for col in ("completed_per_s", "latency_p50_ms", "completion_p50_ms", "latency_p99_ms"):
            errs = [
                abs(
                    rel_err(
                        sweep.predicted_value("sim", design, c, facet, col), sweep.mean(design, c, facet, col)
                    )
                )
                for facet in sweep.facets
                for c in sweep.concurrencies
            ]
            out[design][col] = median(errs)
    return out


def winner_agreement(sweep: Sweep, col: str = "completed_per_s", higher: bool = True) -> tuple[int, int]:
    """(points where the simulator names the same A-vs-B winner by means as the measurement, points)."""
    agree = total = 0
    for facet in sweep.facets:
        for c in sweep.concurrencies:
            ra, rb = sweep.mean("micro", c, facet, col), sweep.mean("mono", c, facet, col)
            sa = sweep.predicted_value("sim", "micro", c, facet, col)
            sb = sweep.predicted_value("sim", "mono", c, facet, col)
            if any(math.isnan(v) for v in (ra, rb, sa, sb)):
                continue
            total += 1
            agree += ((rb > ra) == (sb > sa)) if higher else ((rb < ra) == (sb < sa))
    return agree, total


def table_headline_errors(sweep: Sweep) -> str:
    errors = headline_errors(sweep)
    cols = (
        ("completed_per_s", "done/s"),
        ("latency_p50_ms", "request p50"),
        ("latency_p99_ms", "request p99"),
        ("completion_p50_ms", "submit->done p50"),
    )
    body = [[DESIGN_LABEL[d], *(pct(errors[d][c]) for c, _ in cols)] for d in ("micro", "mono")]
    note = (
        f"\nMedian over the sweep's {len(sweep.facets) * len(sweep.concurrencies)} points per design of "
        "|sim - real| / real, the simulated twin (mean of its replications) against the measured mean.\n"
    )
    return markdown_table(["design", *(label for _, label in cols)], body) + note


# --- bench, validation, held-out, others ------------------------------------------------------------

JOBS_RE = re.compile(
    r"^\s*(?P<name>(?:mono|micro|celery)\S*)\s+(?P<rate>[\d.]+) jobs/s.*?server CPU\s+(?P<cpu>[\d.]+) ms/job"
)
RPCS_RE = re.compile(r"^\s*(?P<name>(?:mono|micro|celery)\S*)\s+(?P<n>[\d.]+) (?:RPCs|Redis commands)/job")


def bench_facts(data: Path) -> dict[str, dict[str, float]]:
    """From data/bench/local.txt (`dtq bench`'s printed record): per row name (mono/memory, ...), the
    end-to-end jobs/s, server CPU ms per job and RPCs (Celery: Redis commands) per job."""
    path = data / "bench" / "local.txt"
    out: dict[str, dict[str, float]] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        if m := JOBS_RE.match(line):
            out.setdefault(m["name"], {}).update(rate=float(m["rate"]), cpu_ms=float(m["cpu"]))
        elif m := RPCS_RE.match(line):
            out.setdefault(m["name"], {})["rpcs"] = float(m["n"])
    return out


def error_cell(errors: Sequence[Mapping[str, str]], band: str, metric: str, column: str) -> float:
    for r in errors:
        if r.get("band") == band and r.get("metric") == metric:
            return num(r.get(column, ""))
    return math.nan


BANDS = (("rho<=0.5", "≤ 0.5"), ("0.5<rho<=0.8", "0.5-0.8"), ("rho>0.8", "> 0.8"))


def table_accuracy_bands(errors: Sequence[Mapping[str, str]], source: str) -> str:
    """The error table condensed: per band and metric, median |err| (IQR) beside the real floor."""
    if not errors:
        return f"No results in {source} yet.\n"
    metrics = [
        m for m in ("p50", "p95", "p99", "done_p50", "completed") if any(r["metric"] == m for r in errors)
    ]
    body = []
    for band, label in BANDS:
        points = next((r.get("points", "") for r in errors if r.get("band") == band), "")
        if not points:
            continue
        row = [label, points]
        for m in metrics:
            err = error_cell(errors, band, m, "median_abs_err")
            floor = error_cell(errors, band, m, "floor_median_dev")
            row.append(f"{pct(err)} ({pct(floor)})")
        body.append(row)
    note = (
        f"\nFrom {source}: median over the band's points of |sim - real| / real, and in brackets the floor, "
        "the real system's own median deviation of one replication from its point's mean. Bands by "
        "utilisation rho = offered rate / the design's measured saturation rate.\n"
    )
    return markdown_table(["rho", "points", *metrics], body) + note


# folders where other parts of the project commit results the paper quotes: (what, folder, file)
HOLDOUT_CANDIDATES = ("validation/holdout", "experiments/holdout", "holdout")
OTHER_RESULTS = (
    ("semantics validation (retries, priorities, cancels)", ("validation/semantics", "validation-semantics")),
    (
        "capacity plans checked against measurements (`dtq plan`)",
        ("experiments/plan", "plan", "validation/plan"),
    ),
    (
        "scheduling policies, simulated against measured",
        ("experiments/policies", "policies", "validation/policies"),
    ),
)


def first_existing(data: Path, folders: Sequence[str], name: str) -> Path | None:
    for folder in folders:
        path = data / folder / name
        if path.is_file():
            return path
    return None


HOLDOUT_RESULTS = "experiments/holdout/results.json"  # lab.validation.holdout's table (Q1-Q3)
HOLDOUT_METRICS = ("p50", "p99", "done_p50", "done_p99", "throughput", "attempts")


def holdout_points(data: Path) -> list[dict[str, Any]]:
    path = data / HOLDOUT_RESULTS
    if not path.is_file():
        return []
    points = json.loads(path.read_text()).get("points", [])
    return points if isinstance(points, list) else []


def holdout_section(data: Path) -> str:
    path = first_existing(data, HOLDOUT_CANDIDATES, "error_table.csv")
    points = holdout_points(data)
    if path is None and not points:
        return (
            "No held-out results are committed yet. The held-out workloads and their protocol are fixed in "
            "data/experiments/holdout.md (chosen before the simulator's later changes, run only after its "
            "predictions are recorded); when their error table is committed (data/validation/holdout/"
            "error_table.csv, the validation's format), this section shows it apart from the matrix's. "
            f"Until then, the out-of-sample accuracy is {NOT_MEASURED}."
        )
    parts = [
        "The held-out workloads (data/experiments/holdout.md: chosen before the simulator's later changes, "
        "run only after its predictions were recorded) are reported apart from the matrix."
    ]
    if points:
        meta = json.loads((data / HOLDOUT_RESULTS).read_text())
        body = []
        for point in points:
            metrics = point.get("metrics", {})
            row = [str(point.get("case", "")), str(point.get("design", ""))]
            for name in HOLDOUT_METRICS:
                cell = metrics.get(name)
                if not cell or cell.get("error") is None:
                    row.append("")
                    continue
                row.append(f"{100 * float(cell['error']):+.0f}% ({pct(float(cell['floor']))})")
            body.append(row)
        parts.append(
            "\n\n"
            + markdown_table(["workload", "design", *HOLDOUT_METRICS], body)
            + f"\nFrom {HOLDOUT_RESULTS.join(['data/', ''])}: Q1-Q3 at rho x each design's measured "
            "saturation, 3 replications; error = (predicted - real mean) / real mean, and in brackets the "
            "real run-to-run floor (median deviation of one replication from the point's mean). Request "
            "latencies in ms (p50, p99), submit->done (done_p50, done_p99), served jobs/s, attempts per job. "
            f"Real runs on a shared host ({meta.get('loadavg_summary', 'load not recorded')}); the "
            "predictions come from the calibration alone, at its own host speed.\n"
        )
    groups = extended_holdout_groups(data)
    if groups:
        parts.append("\n\n" + groups)
    h5h8 = h5h8_section(data)
    if h5h8:
        parts.append("\n\n" + h5h8)
    if path is not None:
        parts.append("\n\n" + table_accuracy_bands(read_csv(path), str(path.relative_to(data.parent))))
    return "".join(parts)


EXTENDED_TABLES = "validation/extended/tables.json"  # lab.validation.extended's tables
EXTENDED_METRICS = ("throughput", "p50", "p95", "p99", "done_p50", "done_p99")


def _extended(data: Path) -> Mapping[str, Any]:
    path = data / EXTENDED_TABLES
    return json.loads(path.read_text()) if path.is_file() else {}


def _error_over_floor(cell: Mapping[str, Any] | None) -> str:
    if not cell or cell.get("median_abs_error") is None:
        return ""
    return f"{pct(float(cell['median_abs_error']))} / {pct(float(cell['floor']))}"


def extended_holdout_groups(data: Path) -> str:
    """Every held-out group of the extended tables (Q1-Q3, H1-H4, ...): median |error| over its points
    against the real noise floor, one row a group."""
    summary = _extended(data).get("holdout_summary", [])
    if not summary:
        return ""
    body = [
        [
            str(g["group"]),
            str(g.get("points", "")),
            *(_error_over_floor(g["metrics"].get(m)) for m in EXTENDED_METRICS),
        ]
        for g in summary
    ]
    return (
        markdown_table(["held-out group", "points", *EXTENDED_METRICS], body)
        + f"\nFrom data/{EXTENDED_TABLES} (`python -m lab.validation.extended tables`): each cell is "
        "the median |error| over the group's points / the real noise floor (the median over the points "
        "of the replications' median |x - mean| / mean). H1-H4 (data/experiments/holdout/) were "
        "predicted from the calibration and the predictions committed before any of their real runs; "
        "they are out of sample.\n"
    )


H5H8_RESULTS = "validation/extended/results-h5h8.json"  # lab.validation.background table
# the same runs again with the nodes in one session (extended/tails.md part 3; `table --tag fixed`)
H5H8_FIXED = "validation/extended/results-h5h8-fixed.json"
H5H8_METRICS = ("throughput", "p50", "p95", "p99", "width", "done_p50")
H5H8_ROWS = (
    ("as is", "the simulator as it is"),
    ("fair only", "its fair scheduler instead of FIFO per burst"),
    ("background", "fair scheduler and phantom background processes, from the host's load"),
)


def h5h8_section(data: Path) -> str:
    """The held-out H5-H8 (the host background-load model's test): per prediction, the median |error|
    over the points against the real floor, from data/validation/extended/results-h5h8.json."""
    path = data / H5H8_RESULTS
    if not path.is_file():
        return ""
    t = json.loads(path.read_text())
    scores = t.get("scores", {})
    floor = scores.get("floor", {})
    body = []
    for when in ("a priori", "conditioned"):
        for key, what in H5H8_ROWS:
            cells = scores.get(f"{when} {key}")
            if cells:
                body.append([f"{when}: {what}", *(pct(float(cells[m])) for m in H5H8_METRICS)])
    body.append(["real floor", *(pct(float(floor[m])) if m in floor else "" for m in H5H8_METRICS)])
    return (
        "H5-H8 test one explanation of the tails (§5.3): background processes that take the host's cores. "
        "The four workloads, the metrics and the predictions were committed before the host model was "
        "changed and before any of their runs (data/validation/extended/holdout-h5h8.json); the model's one "
        "factor was fitted on in-sample runs only; the fair-scheduler row was added after that "
        "registration but predicted before the runs. A priori: predicted before the runs at the "
        "calibration's host speed (the background from the load measured just before them); "
        "conditioned: the model frozen, each twin at its run's own measured load and host speed. Median "
        "|error| over the 8 points (4 workloads x 2 designs, 3 replications each); width is p99/p50.\n\n"
        + markdown_table(["prediction", *H5H8_METRICS], body)
        + f"\nFrom data/{H5H8_RESULTS} (`{t.get('command', 'python -m lab.validation.background table')}`). "
        "The result is negative for the background model: it narrows the width error no more than the "
        "fair scheduler alone does, and costs throughput and completion time; no tail metric reaches its "
        "floor. The simulator's default stays as it is (no background, FIFO per burst).\n"
        + _h5h8_fixed(data, scores)
    )


def _h5h8_fixed(data: Path, first: dict[str, Any]) -> str:
    """H5-H8 run again after the cluster's scheduling fix (§8), scored against the same predictions,
    beside the first runs' `first` scores; "" without data/validation/extended/results-h5h8-fixed.json."""
    path = data / H5H8_FIXED
    if not path.is_file():
        return ""
    again = json.loads(path.read_text())
    scores = again.get("scores", {})
    body = []
    for key, what in H5H8_ROWS:
        for label, source in (("first runs", first), ("one session", scores)):
            cells = source.get(f"a priori {key}")
            if cells:
                body.append([f"{what}, {label}", *(pct(float(cells[m])) for m in H5H8_METRICS)])
    for label, source in (("first runs", first), ("one session", scores)):
        floor = source.get("floor", {})
        cells = [pct(float(floor[m])) if m in floor else "" for m in H5H8_METRICS]
        body.append([f"real floor, {label}", *cells])
    latency = [m for m in H5H8_METRICS if m != "throughput"]
    moved = []
    for key, what in H5H8_ROWS:
        before, after = first.get(f"a priori {key}"), scores.get(f"a priori {key}")
        if before and after:
            closer = [m for m in latency if m in before and m in after and float(after[m]) < float(before[m])]
            moved.append(f"{what}: {len(closer)} of {len(latency)} ({', '.join(closer) or 'none'})")
    return (
        "\nThe same 24 runs made again with the cluster's nodes in one session (§8), scored "
        "against the same a-priori predictions, registered before either set of runs. Median |error| over "
        "the 8 points:\n\n"
        + markdown_table(["prediction", *H5H8_METRICS], body)
        + f"\nFrom data/{H5H8_FIXED} (`{again.get('command', 'python -m lab.validation.background table')}`) "
        "beside the first runs' scores. Latency metrics whose error fell from the first runs to these: "
        + "; ".join(moved)
        + ". The layout and the host's load (lower the second time: data/validation/extended/tails.md, "
        "part 3) changed together between the two sets of runs; the calibration is still the one made "
        "before the fix.\n"
    )


def extended_section(data: Path) -> str:
    """The extended matrix (closed loops, cpu and mixture jobs, larger payloads): its error by utilisation
    band, whether the simulator names the same winner, and the tail-width finding, from data/
    validation/extended/tables.json; 'not measured' prose when the file is absent."""
    t = _extended(data)
    if not t.get("bands"):
        return f"The extended matrix (data/validation/extended/) is {NOT_MEASURED} in this data."
    body = [
        [
            str(b["band"]),
            str(b.get("points", "")),
            *(_error_over_floor(b["metrics"].get(m)) for m in EXTENDED_METRICS),
        ]
        for b in t["bands"]
    ]
    wins = t.get("winner_summary", {})
    agree = "; ".join(
        f"{m} {w.get('agree', 0)} of {w.get('decisive', 0)} decided (of {w.get('points', 0)} points)"
        for m, w in sorted(wins.items())
    )
    mech = t.get("mechanisms", {})
    signed = mech.get("signed_by_design", {})
    tp = {d: signed.get(d, {}).get("throughput") for d in ("micro", "mono")}
    width_real, width_sim = mech.get("tail_width_real"), mech.get("tail_width_sim")
    lines = [
        "A second matrix widens what the simulator is asked: closed loops of 4, 16 and 32 clients "
        "(submit-only, mixed and read-heavy), CPU-bound and half-CPU jobs, a mixture of job types and "
        "16 KiB payloads, on both designs (data/validation/extended/README.md). Its twins start from a fresh "
        f"calibration ({', '.join(t.get('calibration', [])) or NOT_MEASURED}) and are moved to each run's "
        "probed host speed. The simulator was not changed for these runs, but they were scored after it was "
        "developed, so we count them in sample:",
        "",
        markdown_table(["band", "points", *EXTENDED_METRICS], body)
        + "\nEach cell: median |error| over the band's points / the real noise floor. rho: served requests/s "
        "over the design's measured saturation for the workload; a closed loop that does not wait sends back "
        "to back, so no point falls at rho <= 0.5.",
        "",
        f"Where the real system decides a winner between A and B, the simulator names the same one: {agree}. "
        "Throughput is its closest metric; request latency is its worst, and wrong in one direction: "
        f"the real p99/p50 is {width_real:.1f} and the simulated {width_sim:.1f} (medians over the points). "
        if width_real and width_sim
        else "",
    ]
    if tp["micro"] is not None and tp["mono"] is not None:
        lines[-1] += (
            f"A's throughput is over-predicted (median signed error {100 * tp['micro']:+.0f}%, B's "
            f"{100 * tp['mono']:+.0f}%)."
        )
    load_tp = mech.get("load_vs_error", {}).get("throughput")
    by_load = mech.get("tail_width_by_load", {}).get("real-*-validation.*")
    if load_tp and by_load:
        lines[-1] += (
            " Two observations point at the shared host: over these points the throughput error rises with "
            f"the host's load average (Spearman {load_tp['spearman']:+.2f}, p {load_tp['p']:.1g}, "
            f"n {load_tp['n']}), and in the {by_load['runs']} real runs of the validation matrix the real "
            f"tail width rises with it too (Spearman {by_load['spearman']:+.2f}, p {by_load['p']:.1g}). "
            "Processes outside the cluster that take the cores for whole scheduler slices would do both; "
            "the simulated host has no such processes. This is a hypothesis the data is consistent with, "
            "not a tested model."
        )
    return "\n".join(lines)


def holdout_short(data: Path) -> str:
    """One clause for the conclusion: the held-out p50 error, or that it is not measured."""
    path = first_existing(data, HOLDOUT_CANDIDATES, "error_table.csv")
    if path is not None:
        errors = read_csv(path)
        low = error_cell(errors, "rho<=0.5", "p50", "median_abs_err")
        every = error_cell(errors, "all", "p50", "median_abs_err")
        return (
            f"on the held-out workloads its median p50 error is {pct(low)} at rho <= 0.5 and {pct(every)} "
            "over all points"
        )
    cells = [
        p["metrics"]["p50"]
        for p in holdout_points(data)
        if p.get("metrics", {}).get("p50", {}).get("error") is not None
    ]
    if not cells:
        return (
            f"{NOT_MEASURED} yet (the held-out workloads of data/experiments/holdout.md have no "
            "committed results)"
        )
    error = statistics.median(abs(float(c["error"])) for c in cells)
    floor = statistics.median(float(c["floor"]) for c in cells)
    low = sum(float(c["error"]) < 0 for c in cells)
    return (
        f"on the held-out workloads Q1-Q3 ({len(cells)} points) its median |error| of request p50 is "
        f"{pct(error)} against a real run-to-run floor of {pct(floor)}, and it predicts a lower p50 than "
        f"measured at {low} of the {len(cells)} points"
    )


def other_results(data: Path) -> str:
    lines = []
    for what, folders in OTHER_RESULTS:
        found = None
        for folder in folders:
            for name in (
                "error_table.csv",
                "check.md",
                "summary.md",
                "summary.csv",
                "README.md",
                "summary.json",
            ):
                if (data / folder / name).is_file():
                    found = data / folder / name
                    break
            if found:
                break
        where = f"[{found.relative_to(data.parent)}](../{found.relative_to(data.parent)})" if found else ""
        lines.append(
            f"- {what}: {'see ' + where if found else NOT_MEASURED + ' (no committed results yet)'}."
        )
    return "\n".join(lines)


def validation_summary(data: Path) -> dict[str, Any]:
    path = data / "validation" / "summary.json"
    loaded = json.loads(path.read_text()) if path.is_file() else {}
    return loaded if isinstance(loaded, dict) else {}


def saturation_rows(data: Path) -> list[dict[str, str]]:
    return read_csv(data / "validation" / "saturation.csv", missing_ok=True)


def measured_dates(data: Path, experiment: Path) -> tuple[list[str], int]:
    """The UTC dates the sweep's real and baseline runs were made on, and how many code versions."""
    if not experiment.is_file():
        return [], 0
    dates, versions = set(), set()
    for run in expand(load_experiment(experiment)).runs:
        path = data / "runs" / run.run_id / "config.json"
        if path.is_file():
            config = json.loads(path.read_text())
            dates.add(str(config.get("started_at", ""))[:10])
            versions.add(str(config.get("provenance", {}).get("code_version", "")).removesuffix("-dirty"))
    return sorted(d for d in dates if d), len(versions)


def machine(data: Path) -> str:
    """The host of the sweep's runs, from a run's provenance."""
    for path in sorted((data / "runs").glob("real-*seed_plan*/config.json"))[:1]:
        host = json.loads(path.read_text()).get("provenance", {}).get("host", {})
        cpus, model = host.get("cpus", "?"), str(host.get("cpu_model", "")).strip()
        return f"{cpus} vCPUs ({model}, {host.get('machine', '')}, Linux {host.get('kernel', '')})"
    return NOT_MEASURED


def get_path(doc: Mapping[str, Any], path: Sequence[str]) -> float:
    return get(doc, path)


def drift_ratios(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[float]:
    """Per calibration key both measured with non-zero medians: after's median over before's."""
    first, second = calibration_samples(before), calibration_samples(after)
    out = []
    for key in sorted(set(first) & set(second)):
        a, b = float(statistics.median(first[key])), float(statistics.median(second[key]))
        if a > 0 and b > 0:
            out.append(b / a)
    return out


LOAD_RE = re.compile(r"load (?P<one>[\d.]+) [\d.]+ [\d.]+")


def session_loads(data: Path, name: str) -> str:
    """The 1-minute load averages recorded around the sweep's measuring sessions
    (data/experiments/<name>/sessions.log: lines '... load 1m 5m 15m'), as 'lo-hi', or not measured."""
    path = data / "experiments" / name / "sessions.log"
    loads = [float(m["one"]) for m in LOAD_RE.finditer(path.read_text())] if path.is_file() else []
    if not loads:
        return NOT_MEASURED
    return f"{min(loads):.1f}-{max(loads):.1f}"


LEVEL_RE = re.compile(r"\*\.c(?P<clients>\d+)\.\*.*?load (?P<one>[\d.]+) [\d.]+ [\d.]+")


def loads_by_level(data: Path, name: str) -> dict[int, tuple[float, float]]:
    """Per client count measured in a recorded session, the lowest and highest 1-minute load average
    logged at its start and end (sessions.log lines '... *.c64.* ... load 1m 5m 15m')."""
    path = data / "experiments" / name / "sessions.log"
    out: dict[int, list[float]] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if m := LEVEL_RE.search(line):
                out.setdefault(int(m["clients"]), []).append(float(m["one"]))
    return {c: (min(v), max(v)) for c, v in out.items()}
