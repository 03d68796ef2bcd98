"""The semantics validation (issue 27): workloads whose jobs fail and retry, carry priorities or get
cancelled, predicted beside measured for both designs, with replications, run by `dtq validate`.

Unlike the matrix (lab/validation/spec.py: durations x mixes at fractions of saturation), each case
is a workload of its own, laid over the file's base workload, measured either open loop at fractions
of its measured saturation, or closed loop at given client counts:

    name: validation_semantics
    calibration: local
    replications: 3
    designs: [micro, mono]
    store: sqlite
    slots: 12
    saturation: {clients: 32, run_time: 3, warmup: 1, replications: 1}   # open cases only
    options: {settle: 0.5, drain: 5, host_probe: true}
    host_scale: true
    workload: {arrival: {kind: open, rate: 1}, run_time: 4, warmup: 1, seed: 29}
    cases:
      retry: {workload: {job_type: fail, payload: {probability: 0.5}, max_attempts: 3, ...}, fractions: [0.5]}
      cancel: {workload: {arrival: {kind: closed, ...}, mix: {submit: 0.7, cancel: 0.3}}, concurrency: [16]}

The saturation and its use are the matrix's (lab/validation/plan.py): one closed-loop run per design
with `saturation.clients` clients that do not wait; rates = fraction x the lower of the two designs'
saturations, so both designs see the same offered rate. Every real run is simulated from the
calibration alone (lab/validation/twins.py, moved to its run's host speed). The table compares, per
point, the real mean and 95% CI over the replications with the simulated mean, and puts each error
beside the real run-to-run spread at that point (the floor): relative for rates, latencies and
attempts per job; in absolute terms (fraction points) for the FAILED / CANCELLED / timed-out shares.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.experiment.spec import Experiment, experiment_from_mapping
from lab.validation.accuracy import error_cells, metric_cells, rel_error, replication_counts
from lab.validation.output import write_csv, write_json
from lab.validation.plan import rates_of, saturation_experiment
from lab.validation.real import run_stages
from lab.validation.runs import RunInfo, runs_of, saturation_rate
from lab.validation.spec import SHARED_KEYS, Saturation, Validation, fail, validation_from_mapping
from lab.validation.twins import simulate
from model.errors import InvalidArgument
from model.results.documents import read_document
from model.results.runs import workload_of
from model.results.schema import check_label
from model.results.stats import mean_ci
from model.results.summary import metric
from model.workload import workload_to_mapping

_TOP_KEYS = SHARED_KEYS | {"cases"}
_CASE_KEYS = frozenset({"workload", "fractions", "concurrency", "description"})
DEFAULT_OUT = Path("data/validation/semantics")

# (name, path in summary.json, how its error is measured: "rel" (sim - real) / real, "abs" sim - real)
METRICS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("throughput", ("throughput", "requests_per_s"), "rel"),
    ("completed", ("throughput", "completed_per_s"), "rel"),
    ("p50", ("latency_ms", "all", "p50"), "rel"),
    ("p99", ("latency_ms", "all", "p99"), "rel"),
    ("done_p50", ("completion_ms", "p50"), "rel"),
    ("done_p99", ("completion_ms", "p99"), "rel"),
    ("attempts", ("outcomes", "attempts_mean"), "rel"),
    ("failed", ("outcomes", "failed"), "abs"),
    ("cancelled", ("outcomes", "cancelled"), "abs"),
    ("timed_out", ("outcomes", "timed_out"), "abs"),
)
PRIORITY_METRICS = (("p50", "rel"), ("p99", "rel"))  # completion by priority: done_p50@prio9, ...


@dataclass(frozen=True, slots=True)
class Case:
    label: str
    workload: Mapping[str, Any]  # the whole workload (base with the case laid over), every value explicit
    fractions: tuple[float, ...] = ()  # open loop at fractions of the measured saturation
    concurrency: tuple[int, ...] = ()  # or closed loop at these client counts
    description: str = ""

    @property
    def is_open(self) -> bool:
        return bool(self.fractions)

    @property
    def submit_fraction(self) -> float:
        return float(self.workload["mix"].get("submit", 0.0))


@dataclass(frozen=True, slots=True)
class Semantics:
    name: str
    calibration: str
    replications: int
    designs: tuple[str, ...]
    cases: tuple[Case, ...]
    store: str = "sqlite"
    slots: int = 12
    saturation: Saturation = field(default_factory=Saturation)
    options: Mapping[str, Any] = field(default_factory=dict)
    host_scale: bool = True
    sim_overrides: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""

    def experiment(self, case: Case) -> str:
        return f"{self.name}.{case.label}"

    def saturation_experiment(self, case: Case) -> str:
        return f"{self.name}_sat.{case.label}"

    def as_validation(self) -> Validation:
        """The settings the matrix's twin machinery reads (calibration, slots, store, options, host
        scale, what-ifs), as a Validation with no cells of its own."""
        return Validation(
            name=self.name,
            calibration=self.calibration,
            base={},
            replications=self.replications,
            designs=self.designs,
            durations=(),
            mixes=(),
            fractions=(),
            store=self.store,
            slots=self.slots,
            saturation=self.saturation,
            options=dict(self.options),
            host_scale=self.host_scale,
            sim_overrides=dict(self.sim_overrides),
        )


def is_semantics_file(path: Path | str) -> bool:
    """Whether a validation file lists `cases` (this module's format) rather than the matrix's axes."""
    data = read_document(path)  # a file it cannot parse is a one-line error naming the file, line and column
    return isinstance(data, Mapping) and "cases" in data


def _overlay(base: Mapping[str, Any], case: Mapping[str, Any]) -> dict[str, Any]:
    return {**base, **case}


def semantics_from_mapping(
    d: Any, *, default_name: str = "validation_semantics", base_dir: Path | None = None
) -> Semantics:
    if not isinstance(d, Mapping):
        raise fail("the file must hold one mapping")
    unknown = sorted(set(d) - _TOP_KEYS)
    if unknown:
        raise fail(f"unknown keys {unknown}; known: {sorted(_TOP_KEYS)}")
    name = check_label(str(d.get("name") or default_name), "validation.name")
    # the matrix's own checks of the shared settings (designs, store, slots, saturation, options)
    shared = {
        k: d[k] for k in ("designs", "store", "slots", "saturation", "options", "sim_overrides") if k in d
    }
    common = _matrix_settings(shared)
    base = d.get("workload") or {}
    if not isinstance(base, Mapping):
        raise fail("workload must be a mapping (the base every case overlays)")
    cases_in = d.get("cases")
    if not isinstance(cases_in, Mapping) or not cases_in:
        raise fail("cases must be a non-empty mapping of label -> {workload, fractions | concurrency}")
    cases = []
    for label, raw in cases_in.items():
        where = f"cases.{label}"
        check_label(str(label), f"validation: {where}")
        if not isinstance(raw, Mapping) or set(raw) - _CASE_KEYS:
            raise fail(f"{where}: takes {sorted(_CASE_KEYS)}")
        try:
            spec = workload_of(_overlay(base, raw.get("workload") or {}), base_dir)
        except InvalidArgument as exc:
            raise fail(f"{where}.{exc.message}") from None
        fractions = tuple(float(f) for f in raw.get("fractions", ()))
        concurrency = tuple(int(c) for c in raw.get("concurrency", ()))
        if bool(fractions) == bool(concurrency):
            raise fail(f"{where}: give `fractions` (open loop) or `concurrency` (closed loop), one of them")
        if any(not 0 < f <= 1.5 for f in fractions) or len(set(fractions)) != len(fractions):
            raise fail(f"{where}.fractions must be distinct numbers in (0, 1.5]")
        if any(c < 1 for c in concurrency) or len(set(concurrency)) != len(concurrency):
            raise fail(f"{where}.concurrency must be distinct integers >= 1")
        if fractions and not spec.is_open:
            raise fail(f"{where}: fractions set open-loop rates; the case's arrival is {spec.arrival}")
        if concurrency and spec.is_open:
            raise fail(
                f"{where}: concurrency needs a closed-loop arrival (its think time and waiting are kept)"
            )
        if spec.mix.submit <= 0:
            raise fail(f"{where}: the mix needs submits")
        cases.append(
            Case(
                str(label), workload_to_mapping(spec), fractions, concurrency, str(raw.get("description", ""))
            )
        )
    replications = d.get("replications", 3)
    if isinstance(replications, bool) or not isinstance(replications, int) or replications < 1:
        raise fail("replications must be an integer >= 1")
    return Semantics(
        name=name,
        calibration=str(d.get("calibration", "local")),
        replications=replications,
        designs=common.designs,
        cases=tuple(cases),
        store=common.store,
        slots=common.slots,
        saturation=common.saturation,
        options=dict(common.options),
        host_scale=bool(d.get("host_scale", True)),
        sim_overrides=dict(common.sim_overrides),
        description=str(d.get("description", "")),
    )


def _matrix_settings(shared: Mapping[str, Any]) -> Validation:
    """The shared settings, checked by the matrix's own loader (lab/validation/spec.py)."""
    matrix = {
        **shared,
        "durations": {"x": {"kind": "constant"}},
        "mixes": {"x": {"submit": 1.0}},
        "fractions": [1.0],
    }
    return validation_from_mapping(matrix)


def load_semantics(path: Path | str) -> Semantics:
    path = Path(path)
    try:
        return semantics_from_mapping(
            read_document(path), default_name=path.stem.replace("-", "_"), base_dir=path.parent
        )
    except InvalidArgument as exc:
        raise InvalidArgument(f"{path}: {exc.message}") from None


# ---------------------------------------------------------------------------- plan
def saturation_mapping(v: Semantics, case: Case) -> dict[str, Any]:
    return saturation_experiment(v.saturation_experiment(case), case.workload, v.as_validation())


def measured_saturation(v: Semantics, root: Path, kind: str = "real") -> dict[tuple[str, str], float]:
    """(case, design) -> mean saturation rate of the case's saturation runs of `kind` on disk."""
    values: dict[tuple[str, str], list[float]] = {}
    for case in v.cases:
        if not case.is_open:
            continue
        for run in runs_of(root, kind, v.saturation_experiment(case)):
            if run.workload["arrival"].get("clients") != v.saturation.clients:
                continue
            rate = saturation_rate(run.summary, case.submit_fraction)
            if rate is not None:
                values.setdefault((case.label, run.design), []).append(rate)
    return {k: statistics.fmean(xs) for k, xs in values.items()}


def point_mapping(
    v: Semantics, case: Case, saturation: Mapping[tuple[str, str], float]
) -> dict[str, Any] | None:
    """The case's points as an experiment (lab/experiment's format); None while an open case's
    saturation is not measured for every design."""
    sweep: dict[str, Any] = {"design": list(v.designs), "store": [v.store], "slots": [v.slots]}
    if case.is_open:
        sats = [saturation.get((case.label, d)) for d in v.designs]
        if any(s is None or not s > 0 for s in sats):
            return None
        base_rate = min(s for s in sats if s is not None)
        sweep["rate"] = rates_of(v.as_validation(), base_rate, case.fractions)
    else:
        sweep["concurrency"] = list(case.concurrency)
    return {
        "name": v.experiment(case),
        "workload": dict(case.workload),
        "replications": v.replications,
        "sweep": sweep,
        "options": dict(v.options),
    }


def run_semantics_real(v: Semantics, out: Path | str, **options: Any) -> tuple[int, int, bool]:
    """The real side, resumable: the open cases' saturation runs, then every case's points, one
    (case, design) chunk at a time; no chunk starts after `budget` seconds (0: no limit). Returns
    (runs made, runs failed, whether everything planned is on disk)."""

    def saturation() -> tuple[list[tuple[Experiment, str]], bool]:
        return chunks_of([saturation_mapping(v, c) for c in v.cases if c.is_open]), True

    def points() -> tuple[list[tuple[Experiment, str]], bool]:
        saturation = measured_saturation(v, Path(out), "real")
        mappings = [point_mapping(v, case, saturation) for case in v.cases]
        return chunks_of([m for m in mappings if m is not None]), None not in mappings

    return run_stages([saturation, points], out, **options)


def chunks_of(mappings: Iterable[Mapping[str, Any]]) -> list[tuple[Experiment, str]]:
    """Each experiment's (experiment, design) chunks, in order."""
    exps = [experiment_from_mapping(m) for m in mappings]
    return [(exp, design) for exp in exps for design in exp.designs]


def real_runs(v: Semantics, root: Path) -> list[RunInfo]:
    out: list[RunInfo] = []
    for case in v.cases:
        if case.is_open:
            out += runs_of(root, "real", v.saturation_experiment(case))
        out += runs_of(root, "real", v.experiment(case))
    return out


def simulate_semantics(v: Semantics, root: Path | str, *, force: bool = False, log: Any = print) -> list[str]:
    """The simulated twin of every real run (lab/validation/twins.py: same workload, seed and
    replication, the calibration alone, moved to the run's host speed)."""
    matrix = v.as_validation()
    reals = real_runs(v, Path(root))
    return simulate(
        matrix, root, records=bool(v.options.get("records", True)), log=log, force=force, reals=reals
    )


# ---------------------------------------------------------------------------- the table
@dataclass(slots=True)
class SemPoint:
    case: str
    design: str
    arrival: str  # rate<r> or c<n>
    rate: float  # open loop: offered requests/s; closed: NaN
    saturation: float  # this design's measured saturation (open cases), else NaN
    real: dict[str, list[float]] = field(default_factory=dict)
    sim: dict[str, list[float]] = field(default_factory=dict)

    @property
    def rho(self) -> float:
        return self.rate / self.saturation if self.saturation > 0 else math.nan


def _values(summary: Mapping[str, Any]) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, path, _ in METRICS:
        value = metric(summary, path)
        if value is not None:
            out[name] = value
    for priority, stats in (summary.get("outcomes", {}).get("completion_ms_by_priority") or {}).items():
        for stat, _ in PRIORITY_METRICS:
            value = metric(stats, (stat,))
            if value is not None:
                out[f"done_{stat}@prio{priority}"] = value
    return out


def metric_kind(name: str) -> str:
    if "@prio" in name:
        return "rel"
    return {n: k for n, _, k in METRICS}[name]


def error_of(name: str, sim_value: float, real_value: float) -> float:
    if metric_kind(name) == "abs":
        return sim_value - real_value if math.isfinite(sim_value) and math.isfinite(real_value) else math.nan
    return rel_error(sim_value, real_value)


def spread(name: str, values: Sequence[float]) -> list[float]:
    """Each replication's deviation from the point's mean: relative, or absolute for shares."""
    if len(values) < 2:
        return []
    mean = math.fsum(values) / len(values)
    if metric_kind(name) == "abs":
        return [abs(x - mean) for x in values]
    return [abs(x - mean) / mean for x in values] if mean != 0 else []


def collect(v: Semantics, root: Path | str) -> list[SemPoint]:
    root = Path(root)
    saturation = measured_saturation(v, root, "real")
    points: dict[tuple[str, str, str], SemPoint] = {}
    for case in v.cases:
        mapping = point_mapping(v, case, saturation)
        if mapping is None:
            continue
        sweep = mapping["sweep"]
        for design in v.designs:
            if case.is_open:
                for rate in sweep["rate"]:
                    label = f"rate{rate:g}"
                    sat = saturation[(case.label, design)]
                    points[(case.label, design, label)] = SemPoint(case.label, design, label, rate, sat)
            else:
                for c in sweep["concurrency"]:
                    points[(case.label, design, f"c{c}")] = SemPoint(
                        case.label, design, f"c{c}", math.nan, math.nan
                    )
        for kind in ("real", "sim"):
            for run in runs_of(root, kind, v.experiment(case)):
                arrival = run.workload["arrival"]
                label = (
                    f"rate{float(arrival['rate']):g}"
                    if arrival.get("kind") == "open"
                    else f"c{arrival.get('clients')}"
                )
                point = points.get((case.label, run.design, label))
                if point is None or run.replication >= v.replications:
                    continue  # a stale rate (an earlier saturation) or an extra replication
                target = point.real if kind == "real" else point.sim
                for name, value in _values(run.summary).items():
                    target.setdefault(name, []).append(value)
    found = [p for p in points.values() if p.real]
    found.sort(key=lambda p: (p.case, p.arrival, p.design))
    return found


def _names(points: Sequence[SemPoint]) -> list[str]:
    names = [n for n, _, _ in METRICS]
    extra = sorted({n for p in points for n in p.real if "@prio" in n})
    return names + extra


def point_rows(points: Sequence[SemPoint]) -> list[dict[str, Any]]:
    names = _names(points)
    rows = []
    for p in points:
        row: dict[str, Any] = {
            "case": p.case,
            "design": p.design,
            "arrival": p.arrival,
            "rate": p.rate,
            "rho": p.rho,
            **replication_counts(p.real, p.sim),
        }
        for name in names:
            real, ci = mean_ci(p.real.get(name, []))
            sim_mean = mean_ci(p.sim.get(name, []))[0]
            devs = spread(name, p.real.get(name, []))
            row |= metric_cells(name, real, ci, sim_mean, error_of(name, sim_mean, real))
            row[f"{name}_floor"] = statistics.median(devs) if devs else math.nan
        rows.append(row)
    return rows


def error_rows(points: Sequence[SemPoint]) -> list[dict[str, Any]]:
    """Per case (and 'all') x metric: median |error| and its IQR, the median signed error, and the floor
    (the median deviation of a real replication from its point's mean, pooled)."""
    rows = []
    for case in [*sorted({p.case for p in points}), "all"]:
        members = [p for p in points if case in ("all", p.case)]
        for name in _names(points):
            errors = [
                e
                for e in (
                    error_of(name, mean_ci(p.sim.get(name, []))[0], mean_ci(p.real.get(name, []))[0])
                    for p in members
                )
                if not math.isnan(e)
            ]
            if not errors and case != "all":
                continue
            floor = [d for p in members for d in spread(name, p.real.get(name, []))]
            rows.append(
                {"case": case, "metric": name, "kind": metric_kind(name), **error_cells(errors, floor)}
            )
    return rows


def build_semantics_tables(v: Semantics, root: Path | str, out: Path | str = DEFAULT_OUT) -> dict[str, Any]:
    out = Path(out)
    points = collect(v, root)
    tables = {"points": point_rows(points), "error_table": error_rows(points)}
    for name, rows in tables.items():
        write_csv(rows, out / f"{name}.csv")
    sat_real = measured_saturation(v, Path(root), "real")
    sat_sim = measured_saturation(v, Path(root), "sim")
    summary = {
        "validation": v.name,
        "calibration": v.calibration,
        "replications": v.replications,
        "points": len(points),
        "saturation": [
            {"case": c, "design": d, "real_rate": r, "sim_rate": sat_sim.get((c, d), math.nan)}
            for (c, d), r in sorted(sat_real.items())
        ],
        "error_table": tables["error_table"],
    }
    write_json(out / "summary.json", summary)
    return {**tables, "summary": summary}


def _show(name: str, x: float) -> str:
    if math.isnan(x):
        return "-"
    if metric_kind(name) == "abs":
        return f"{100 * x:+.1f}pp" if x else "0pp"
    return f"{100 * x:.0f}%"


def _value(x: float) -> str:
    return "-" if math.isnan(x) else f"{x:.3g}"


def format_semantics(tables: Mapping[str, Any]) -> str:
    lines = ["saturation (requests/s), real vs sim"]
    for r in tables["summary"]["saturation"]:
        lines.append(f"  {r['case']:10} {r['design']:5} real {r['real_rate']:7.1f}  sim {r['sim_rate']:7.1f}")
    lines.append("predicted beside measured: real mean [95% CI] | sim | error | real floor (run-to-run)")
    shown = ("attempts", "failed", "cancelled", "timed_out", "done_p50", "done_p99", "throughput")
    for row in tables["points"]:
        lines.append(f"  {row['case']} {row['design']} {row['arrival']} (n={row['n_real']}/{row['n_sim']})")
        names = [*shown, *sorted(k[: -len("_real")] for k in row if "@prio" in k and k.endswith("_real"))]
        for name in names:
            real, ci = row[f"{name}_real"], row[f"{name}_real_ci95"]
            if math.isnan(real):
                continue
            lines.append(
                f"    {name:18} {_value(real):>9} [{_value(ci):>7}] | {_value(row[f'{name}_sim']):>9} | "
                f"{_show(name, row[f'{name}_err']):>8} | {_show(name, row[f'{name}_floor']):>7}"
            )
    lines.append("error table: median |error| [IQR], bias, floor; shares in fraction points (pp)")
    for r in tables["error_table"]:
        if not r["points"]:
            continue
        m = r["metric"]
        iqr = f"[{_show(m, r['q25_abs_err'])},{_show(m, r['q75_abs_err'])}]"
        median, bias, floor = (
            _show(m, r[k]) for k in ("median_abs_err", "median_signed_err", "floor_median_dev")
        )
        lines.append(f"  {r['case']:10} {m:18} {r['points']:>3}  {median:>8} {iqr:>19} {bias:>8} {floor:>8}")
    return "\n".join(lines)


def semantics_command(args: Any, tables_folder: Path) -> int:
    """`dtq validate FILE` for a file with `cases`: --real, --sim, --table (default --sim --table);
    the tables go to `tables_folder` (lab/validation/cli.py picks it)."""
    v = load_semantics(args.validation)
    steps = {s for s in ("real", "sim", "table") if getattr(args, s)} or {"sim", "table"}
    code = 0
    if "real" in steps:
        made, failed, complete = run_semantics_real(
            v, args.runs_dir, budget=args.budget, only_design=args.only_design, progress=not args.quiet
        )
        print(f"{v.name}: {made} real runs made, {failed} failed, {'complete' if complete else 'incomplete'}")
        code = 1 if failed else 0
    if "sim" in steps:
        written = simulate_semantics(v, args.runs_dir, force=args.force)
        print(f"{v.name}: {len(written)} runs simulated")
    if "table" in steps:
        tables = build_semantics_tables(v, args.runs_dir, tables_folder)
        print(format_semantics(tables))
        print(f"tables written to {tables_folder}/")
    return code
