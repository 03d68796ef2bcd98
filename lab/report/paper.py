"""The paper (paper/paper.md) and its appendix (paper/appendix.md), filled from paper/template.md.

The template is prose with three kinds of placeholder, all filled here from data/ by code:
- `{{name}}`: a value of `values()` (a number, a sentence or a generated table); an unknown name is an
  error, so a typo cannot leave a stale number behind;
- `{{figure:NAME}}` ... `{{end}}`: a figure block; the text between is its caption (placeholders
  allowed); it becomes the image and "Figure N. caption", numbered in order of appearance;
- `{{fig:NAME}}`: "Figure N" of that figure, wherever it is referred to.
A figure that could not be drawn (no data) keeps its number and says so instead of the image.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from lab.experiment.plan import expand
from lab.experiment.spec import load_experiment
from lab.report import facts
from lab.report.data import NO_VALIDATION, calibration_samples, fault_rows, num, read_csv, validation_files
from lab.report.facts import NOT_MEASURED, Sweep, f, facet_name, pct
from lab.report.figures import CALIBRATION_PANELS
from lab.report.markdown import markdown_table
from lab.report.style import DESIGN_LABEL
from model.results.stats import BOOTSTRAP_RESAMPLES

FIGURE_BLOCK = re.compile(r"\{\{figure:(?P<name>[\w-]+)\}\}\n(?P<caption>.*?)\n\{\{end\}\}", re.DOTALL)
FIGURE_REF = re.compile(r"\{\{fig:(?P<name>[\w-]+)\}\}")
VALUE = re.compile(r"\{\{(?P<name>[\w-]+)\}\}")


class TemplateError(ValueError):
    """A placeholder the template names and the generator does not know."""


def render(template: str, values: Mapping[str, str], figures: Mapping[str, Path | None], figdir: str) -> str:
    """The template with its figure blocks, figure references and values filled (module doc)."""
    numbers: dict[str, int] = {}
    for m in FIGURE_BLOCK.finditer(template):
        numbers.setdefault(m["name"], len(numbers) + 1)

    def block(m: re.Match[str]) -> str:
        name, n = m["name"], numbers[m["name"]]
        caption = " ".join(m["caption"].split())
        if figures.get(name) is None:
            return f"**Figure {n}.** *Not drawn: no data for it yet.* {caption}"
        return f"![Figure {n}]({figdir}/{name}.png)\n\n**Figure {n}.** {caption}"

    def ref(m: re.Match[str]) -> str:
        if m["name"] not in numbers:
            raise TemplateError(f"{{{{fig:{m['name']}}}}}: no figure block of that name in the template")
        return f"Figure {numbers[m['name']]}"

    def value(m: re.Match[str]) -> str:
        if m["name"] not in values:
            raise TemplateError(
                f"{{{{{m['name']}}}}}: the template names a value the generator does not make"
            )
        return values[m["name"]]

    text = re.sub(r"\A<!--.*?-->\n", "", template, flags=re.DOTALL)  # the template's own note
    text = FIGURE_BLOCK.sub(block, text)
    text = FIGURE_REF.sub(ref, text)
    # values may hold generated tables; a value is inserted once and never re-scanned
    return VALUE.sub(value, text)


def _ratio(a: float, b: float) -> str:
    return NOT_MEASURED if math.isnan(a) or math.isnan(b) or b == 0 else f"{a / b:.1f}x"


def sweep_values(sweep: Sweep) -> dict[str, str]:
    """Values about the headline sweep: per facet, each design's best done/s, where it flattens, and
    the winner; the simulator's errors on it."""
    v: dict[str, str] = {"top_clients": str(sweep.top) if sweep.top else NOT_MEASURED}
    v["ref_clients"] = str(sweep.reference) if sweep.reference else NOT_MEASURED
    v["ref_session"] = sweep.sessions.get(sweep.reference, NOT_MEASURED)
    v["concurrency_levels"] = ", ".join(map(str, sweep.concurrencies)) or NOT_MEASURED
    lines, duration_lines = [], []
    dates = sorted(set(sweep.sessions.values()))
    tops = {d: max(c for c, x in sweep.sessions.items() if x == d) for d in dates}
    v["session_levels"] = (
        "; ".join(
            f"{', '.join(str(c) for c, x in sorted(sweep.sessions.items()) if x == d)} clients on {d}"
            for d in dates
        )
        or NOT_MEASURED
    )
    for facet in sweep.facets:
        parts = []
        for d in dates:
            c = tops[d]
            a = sweep.mean("micro", c, facet, "completed_per_s")
            b = sweep.mean("mono", c, facet, "completed_per_s")
            r = sweep.mean("celery", c, facet, "completed_per_s")
            parts.append(
                f"at {c} clients ({d}) B {f(b)} jobs/s, A {f(a)} (B/A {_ratio(b, a)}), Celery + Redis {f(r)}"
            )
        lines.append(f"- **{facet_name(facet)}**: " + "; ".join(parts) + ".")
        if facet[0] == "exp50ms":
            a = sweep.mean("micro", sweep.reference, facet, "completed_per_s")
            b = sweep.mean("mono", sweep.reference, facet, "completed_per_s")
            ref = sweep.mean("celery", sweep.reference, facet, "completed_per_s")
            duration_lines.append(
                f"- {facet_name(facet)}: A {f(a)}, B {f(b)}, Celery {f(ref)} jobs/s at {sweep.reference} "
                "clients, "
                f"against a ceiling of min({sweep.reference} clients, 12 slots) / 50 ms = "
                f"{f(min(sweep.reference, 12) / 0.05)} jobs/s."
            )
    v["session_shift"] = NOT_MEASURED
    if len(dates) > 1:
        # the same system at the sessions' highest levels: past saturation the predictions are flat, so
        # a large drop between them is the host's, not the load's
        shifts = []
        for design in ("micro", "mono", "celery"):
            ratios = []
            for facet in sweep.facets:
                first = sweep.mean(design, tops[dates[0]], facet, "completed_per_s")
                last = sweep.mean(design, tops[dates[-1]], facet, "completed_per_s")
                if first and not math.isnan(first) and not math.isnan(last):
                    ratios.append(last / first)
            if ratios:
                shifts.append(f"{DESIGN_LABEL[design]} {min(ratios):.2f}-{max(ratios):.2f}")
        v["session_shift"] = "; ".join(shifts) or NOT_MEASURED
        predicted = []
        for design in ("micro", "mono"):
            ratios = []
            for facet in sweep.facets:
                first = sweep.predicted_value("sim", design, tops[dates[0]], facet, "completed_per_s")
                last = sweep.predicted_value("sim", design, tops[dates[-1]], facet, "completed_per_s")
                if first and not math.isnan(first) and not math.isnan(last):
                    ratios.append(last / first)
            if ratios:
                predicted.append(f"{DESIGN_LABEL[design]} {min(ratios):.2f}-{max(ratios):.2f}")
        lines.append(
            f"- **Between the sessions**: the job rate at {tops[dates[-1]]} clients ({dates[-1]}) over the "
            f"rate at {tops[dates[0]]} clients ({dates[0]}), per system and workload: {v['session_shift']}; "
            f"the simulator's, between the same levels: {'; '.join(predicted) or NOT_MEASURED}. Where the "
            "measured ratio is far below the predicted one, the host, loaded in the later session (§8), is "
            "the likely cause; curves are therefore read within a session, and the A-vs-B comparisons "
            "(§4) are within a level, hence within a session."
        )
    v["concurrency_findings"] = "\n".join(lines) or NOT_MEASURED
    v["duration_findings"] = "\n".join(duration_lines) or NOT_MEASURED
    mix_lines = []
    for duration in sorted({d for d, _ in sweep.facets}):
        for design in ("micro", "mono"):
            s = sweep.mean(design, sweep.reference, (duration, "submit"), "completed_per_s")
            m = sweep.mean(design, sweep.reference, (duration, "mixed"), "completed_per_s")
            mix_lines.append(
                f"{DESIGN_LABEL[design]} with {facet_name((duration, 'x')).split(',')[0]}: {f(m)} jobs/s "
                f"mixed against {f(s)} submit-only ({_ratio(m, s)})"
            )
    v["mix_findings"] = "; ".join(mix_lines) or NOT_MEASURED
    errors = facts.headline_errors(sweep)
    v["sweep_err_done_a"] = pct(errors["micro"]["completed_per_s"])
    v["sweep_err_done_b"] = pct(errors["mono"]["completed_per_s"])
    v["sweep_err_p50_a"] = pct(errors["micro"]["latency_p50_ms"])
    v["sweep_err_p50_b"] = pct(errors["mono"]["latency_p50_ms"])
    v["sweep_err_done_p50_a"] = pct(errors["micro"]["completion_p50_ms"])
    v["sweep_err_done_p50_b"] = pct(errors["mono"]["completion_p50_ms"])
    worst = []
    for design in ("micro", "mono"):
        cells = [
            (
                abs(facts.rel_err(sweep.predicted_value("sim", design, c, x, "completed_per_s"), real)),
                c,
                x,
                sim,
                real,
            )
            for x in sweep.facets
            for c in sweep.concurrencies
            if not math.isnan(real := sweep.mean(design, c, x, "completed_per_s"))
            and not math.isnan(sim := sweep.predicted_value("sim", design, c, x, "completed_per_s"))
        ]
        if cells:
            e, c, x, sim, real = max(cells, key=lambda t: t[0])
            worst.append(
                f"{DESIGN_LABEL[design]} {pct(e)} at {c} clients, {facet_name(x)} "
                f"({f(sim)} predicted against {f(real)} measured jobs/s)"
            )
    v["sweep_err_worst"] = "; ".join(worst) or NOT_MEASURED
    agree, total = facts.winner_agreement(sweep)
    v["sweep_winner_agree"] = f"{agree} of {total}" if total else NOT_MEASURED
    agree, total = facts.winner_agreement(sweep, "completion_p50_ms", higher=False)
    v["sweep_winner_agree_done_p50"] = f"{agree} of {total}" if total else NOT_MEASURED
    v["table_top"] = facts.table_top(sweep)
    v["table_sweep_errors"] = (
        facts.table_headline_errors(sweep)
        if sweep.predicted
        else ("No predictions yet (data/experiments/seed_plan/predicted.csv: `make paper` makes them).\n")
    )
    for scope, facets in (("", sweep.facets), ("_noop", [x for x in sweep.facets if x[0] == "noop"])):
        decided = [sweep.winner(c, x, "completed_per_s", True) for x in facets for c in sweep.concurrencies]
        decided = [w for w in decided if w]
        v[f"wins{scope}_done_b"] = str(decided.count("B"))
        v[f"wins{scope}_done_a"] = str(decided.count("A"))
        v[f"wins{scope}_done_tie"] = str(decided.count("tie"))
        v[f"wins{scope}_points"] = str(len(decided))
    return v


def _share(count: int, total: int) -> str:
    if not total:
        return NOT_MEASURED
    if count == total:
        return f"at every one of the {total}"
    if count == 0:
        return "at none"
    return f"at {count} of the {total}"


def reading_values(sweep: Sweep) -> dict[str, str]:
    """The 'what to see' sentences of the headline figures and the section's readings, computed."""
    v: dict[str, str] = {}
    noop = [x for x in sweep.facets if x[0] == "noop"]
    long = [x for x in sweep.facets if x[0] != "noop"]
    top = sweep.reference

    def ratios(facets: Sequence[tuple[str, str]], col: str) -> list[float]:
        out = []
        for x in facets:
            a, b = sweep.mean("micro", top, x, col), sweep.mean("mono", top, x, col)
            if a and not math.isnan(a) and not math.isnan(b):
                out.append(b / a)
        return out

    def span(values: Sequence[float], digits: int = 1) -> str:
        if not values:
            return NOT_MEASURED
        lo, hi = min(values), max(values)
        return (
            f"{lo:.{digits}f}x"
            if f"{lo:.{digits}f}" == f"{hi:.{digits}f}"
            else f"{lo:.{digits}f}-{hi:.{digits}f}x"
        )

    v["ratio_noop_done"] = span(ratios(noop, "completed_per_s"))
    v["ratio_long_done"] = span(ratios(long, "completed_per_s"), 2)
    v["ratio_noop_done_p50"] = span(ratios(noop, "completion_p50_ms"), 2)
    # the simulator's plateau against the measured one: at the highest concurrency, per design
    errs = []
    for design in ("micro", "mono"):
        for x in sweep.facets:
            real = sweep.mean(design, top, x, "completed_per_s")
            sim = sweep.predicted_value("sim", design, top, x, "completed_per_s")
            if real and not math.isnan(real) and not math.isnan(sim):
                errs.append(abs(sim - real) / real)
    v["plateau_err_max"] = pct(max(errs)) if errs else NOT_MEASURED
    v["plateau_err_median"] = pct(facts.median(errs)) if errs else NOT_MEASURED
    # B's submit latency against A's, point by point
    faster = total = 0
    for x in sweep.facets:
        for c in sweep.concurrencies:
            a = sweep.mean("micro", c, x, "latency_submit_mean_ms")
            b = sweep.mean("mono", c, x, "latency_submit_mean_ms")
            if not (math.isnan(a) or math.isnan(b)):
                total += 1
                faster += b < a
    v["b_submit_faster"] = _share(faster, total)
    b_noop = [sweep.winner(c, x, "completed_per_s", True) for x in noop for c in sweep.concurrencies]
    b_long = [sweep.winner(c, x, "completed_per_s", True) for x in long for c in sweep.concurrencies]
    b_noop, b_long = [w for w in b_noop if w], [w for w in b_long if w]
    v["noop_verdict"] = (
        f"B finishes more jobs per second {_share(b_noop.count('B'), len(b_noop))} no-op points "
        f"(A {_share(b_noop.count('A'), len(b_noop))}), by {v['ratio_noop_done']} at {top} clients"
    )
    ahead_b, ahead_a = b_long.count("B"), b_long.count("A")
    if b_long and not ahead_a and not ahead_b:
        split = f"neither design is ahead at any of the {len(b_long)} points (all ties)"
    else:
        split = (
            f"B is ahead {_share(ahead_b, len(b_long))} points, A {_share(ahead_a, len(b_long))}, "
            "and the rest are ties"
        )
    v["long_verdict"] = f"{split}; at {top} clients B/A is {v['ratio_long_done']}"
    return v


def bench_values(data: Path) -> dict[str, str]:
    bench = facts.bench_facts(data)

    def cell(name: str, key: str, digits: int) -> str:
        return f(bench.get(name, {}).get(key, math.nan), digits)

    v = {
        "rpcs_b": cell("mono/memory", "rpcs", 1),
        "rpcs_a": cell("micro/memory", "rpcs", 1),
        "rpcs_b_rr": cell("mono/memory-rr", "rpcs", 1),
        "redis_cmds": cell("celery", "rpcs", 0),
        "cpu_b": cell("mono/memory", "cpu_ms", 2),
        "cpu_b_rr": cell("mono/memory-rr", "cpu_ms", 2),
        "cpu_a": cell("micro/memory", "cpu_ms", 2),
        "cpu_celery": cell("celery", "cpu_ms", 2),
    }
    for key, name in (
        ("ceiling_a", "micro/memory"),
        ("ceiling_b_rr", "mono/memory-rr"),
        ("ceiling_celery", "celery"),
    ):
        cpu = bench.get(name, {}).get("cpu_ms", math.nan)
        v[key] = f(2 / (cpu / 1e3)) if not math.isnan(cpu) and cpu > 0 else NOT_MEASURED
    return v


def validation_values(data: Path) -> dict[str, str]:
    points, errors = validation_files(data)
    v: dict[str, str] = {"validation_points": str(len(points)) if points else NOT_MEASURED}
    for band, key in (("rho<=0.5", "low"), ("0.5<rho<=0.8", "mid"), ("rho>0.8", "high")):
        for metric in ("p50", "p99", "done_p50"):
            v[f"val_{metric}_{key}"] = pct(facts.error_cell(errors, band, metric, "median_abs_err"))
            v[f"floor_{metric}_{key}"] = pct(facts.error_cell(errors, band, metric, "floor_median_dev"))
    v["table_accuracy"] = (
        facts.table_accuracy_bands(errors, "data/validation/error_table.csv")
        if errors
        else NO_VALIDATION + ".\n"
    )
    summary = facts.validation_summary(data)
    winners = summary.get("winner_agreement") or summary.get("winners") or {}
    v["winner_agreement"] = _winner_text(winners)
    sat = facts.saturation_rows(data)
    errs = [abs(num(r.get("err", ""))) for r in sat]
    v["sat_err_median"] = pct(facts.median(errs)) if errs else NOT_MEASURED
    v["sat_err_max"] = pct(max(errs)) if errs else NOT_MEASURED
    v["sat_cells"] = str(len(sat)) if sat else NOT_MEASURED
    return v


def _winner_text(winners: object) -> str:
    """'p50 11 of 11, p99 6 of 6, ...' from the validation summary's winner agreement, if any."""
    if not isinstance(winners, Mapping):
        return NOT_MEASURED
    parts = []
    for metric, row in sorted(winners.items()):
        if isinstance(row, Mapping) and row.get("decisive"):
            parts.append(f"{metric} {row['agree']} of {row['decisive']}")
    return ", ".join(parts) or NOT_MEASURED


def calibration_values(
    data: Path, calibration: Mapping[str, object] | None, after: Mapping[str, object] | None
) -> dict[str, str]:
    v = {"cal_measured": NOT_MEASURED, "cal_placeholders": NOT_MEASURED, "drift_median": NOT_MEASURED}
    v["drift_iqr"] = NOT_MEASURED
    if calibration:
        measured = calibration.get("measured") or []
        unmeasured = calibration.get("unmeasured") or []
        v["cal_measured"] = str(len(measured)) if isinstance(measured, list) else NOT_MEASURED
        v["cal_placeholders"] = str(len(unmeasured)) if isinstance(unmeasured, list) else NOT_MEASURED
    if calibration and after:
        ratios = facts.drift_ratios(calibration, after)
        if ratios:
            q = sorted(ratios)
            v["drift_median"] = f"{facts.median(q):.2f}"
            v["drift_iqr"] = f"{q[len(q) // 4]:.2f}-{q[(3 * len(q)) // 4]:.2f}"
            v["drift_max"] = f"{max(*q, 1 / min(q)):.1f}"
    v.setdefault("drift_max", NOT_MEASURED)
    v["cal_path_median_us"] = NOT_MEASURED
    if calibration:
        samples = calibration_samples(calibration)
        keys = [k for _, group in CALIBRATION_PANELS for k in group if k in samples]
        medians = [float(np.median(samples[k])) for k in keys]
        if medians:
            v["cal_path_median_us"] = f"{1e6 * facts.median(medians):.0f}"
    return v


def fault_values(data: Path) -> dict[str, str]:
    v: dict[str, str] = {}
    for kind in ("real", "compose", "swarm"):
        rows = fault_rows(data, kind)
        accepted = sum(int(num(r.get("accepted", 0)) or 0) for r in rows)
        lost = sum(int(num(r.get("lost", 0)) or 0) for r in rows)
        v[f"faults_{kind}_runs"] = str(len(rows)) if rows else NOT_MEASURED
        v[f"faults_{kind}_accepted"] = f"{accepted:,}" if rows else NOT_MEASURED
        v[f"faults_{kind}_lost"] = str(lost) if rows else NOT_MEASURED
    return v


def table_wins_condensed(sweep: Sweep) -> str:
    """Per facet and concurrency, who wins done/s and submit -> done p50 (by disjoint bootstrap intervals)."""
    if not sweep.rows:
        return "No sweep data yet.\n"

    def who(c: int, facet: tuple[str, str], col: str, higher: bool) -> str:
        w = sweep.winner(c, facet, col, higher)
        a, b = sweep.mean("micro", c, facet, col), sweep.mean("mono", c, facet, col)
        if not w:
            return "-"
        return f"{w} ({b / a:.2f})" if a and not math.isnan(a) and not math.isnan(b) else w

    header = ["workload", "metric", *(str(c) for c in sweep.concurrencies)]
    body = []
    for facet in sweep.facets:
        for col, label, higher in (
            ("completed_per_s", "done/s", True),
            ("completion_p50_ms", "submit->done p50", False),
        ):
            body.append(
                [facet_name(facet), label, *(who(c, facet, col, higher) for c in sweep.concurrencies)]
            )
    note = (
        "\nColumns: closed-loop clients. The winner between A and B where their means differ by more than "
        "their two 95% Student-t half-widths over the replications together (a conservative test: the "
        "bootstrap intervals of the figures are narrower with 3 replications), else 'tie' (not resolved, "
        "not equal); in brackets B's mean over A's.\n"
    )
    return markdown_table(header, body) + note


def values(
    data: Path,
    sweep: Sweep,
    calibration: Mapping[str, object] | None,
    after: Mapping[str, object] | None,
    experiment: Path,
    durations: str,
) -> dict[str, str]:
    """Every value the template may name."""
    v: dict[str, str] = {}
    v.update(sweep_values(sweep))
    v.update(reading_values(sweep))
    v.update(bench_values(data))
    v.update(validation_values(data))
    v.update(calibration_values(data, calibration, after))
    v.update(fault_values(data))
    v["table_wins"] = table_wins_condensed(sweep)
    v["holdout_section"] = facts.holdout_section(data)
    v["holdout_short"] = facts.holdout_short(data)
    v["extended_section"] = facts.extended_section(data)
    v["other_results"] = facts.other_results(data)
    v["machine"] = facts.machine(data)
    v["machine_short"] = v["machine"].split(" (")[0].replace(" vCPUs", "-vCPU")
    v["bootstrap_resamples"] = f"{BOOTSTRAP_RESAMPLES:,}"
    reps = {r.get("n", "") for r in sweep.predicted if r.get("source") == "sim"}
    v["pred_replications"] = "/".join(sorted(reps)) if reps else NOT_MEASURED
    replications = facts.validation_summary(data).get("replications")
    v["validation_replications"] = str(replications) if replications else NOT_MEASURED
    dates, versions = facts.measured_dates(data, experiment)
    v["sweep_dates"] = ", ".join(dates) or NOT_MEASURED
    v["sweep_sessions"] = str(len(dates)) if dates else NOT_MEASURED
    v["sweep_code_versions"] = str(versions) if versions else NOT_MEASURED
    v["sweep_load"] = facts.session_loads(data, experiment.stem)
    by_level = facts.loads_by_level(data, experiment.stem)
    v["sweep_load_levels"] = (
        "; ".join(f"{c} clients {lo:.1f}-{hi:.1f}" for c, (lo, hi) in sorted(by_level.items()))
        if by_level
        else NOT_MEASURED
    )
    v["durations"] = durations
    plan = facts_plan(experiment)
    v.update(plan)
    if plan["plan_concurrency"] == v["concurrency_levels"]:
        v["concurrency_note"] = ""
    else:
        v["concurrency_note"] = (
            f" Of these, {v['concurrency_levels']} clients are measured; the rest are predicted only (their "
            "real runs did not fit in the session that extended the sweep)."
        )
    return v


def facts_plan(experiment: Path) -> dict[str, str]:
    if not experiment.is_file():
        return {
            "plan_concurrency": NOT_MEASURED,
            "plan_slots": NOT_MEASURED,
            "plan_runs": NOT_MEASURED,
            "plan_replications": NOT_MEASURED,
            "plan_run_time": NOT_MEASURED,
            "plan_warmup": NOT_MEASURED,
        }
    exp = load_experiment(experiment)
    planned = sorted({int(getattr(r.workload.arrival, "clients", 0)) for r in expand(exp).runs})
    return {
        "plan_concurrency": ", ".join(map(str, planned)),
        "plan_runs": str(len(expand(exp).runs)),
        "plan_replications": str(exp.replications),
        "plan_run_time": f"{float(exp.base.get('run_time', math.nan)):g}",
        "plan_warmup": f"{float(exp.base.get('warmup', math.nan)):g}",
        "plan_slots": "/".join(str(x) for x in exp.slots) if exp.slots else NOT_MEASURED,
    }


def word_count(text: str) -> int:
    """Words of prose: tables, images and code blocks left out."""
    prose = re.sub(r"```.*?```", "", text, flags=re.DOTALL)
    lines = [ln for ln in prose.splitlines() if not ln.lstrip().startswith(("|", "![", "<"))]
    return len(re.findall(r"[A-Za-z0-9][\w'.,%-]*", "\n".join(lines)))


def appendix(tables: Mapping[str, str], data: Path) -> str:
    """The appendix: every full table, and where the raw records are."""
    sections = [
        ("The whole sweep (every point, every metric, mean ± 95% Student-t half-width)", "experiment"),
        ("A vs B at every sweep point (Student-t CIs)", "wins"),
        ("Validation: the error table in full", "validation"),
        ("Validation: the same runs simulated from the calibration made after them", "validation_after"),
        ("Saturation, real and simulated", "saturation"),
        ("Winner agreement on the validation matrix", "winners"),
        ("Twin sets: calibrations, host speed, CPU sharing", "host_scaling"),
        ("CPU sharing: FIFO per burst against the fair scheduler", "scheduler"),
        ("The host probe over the validation's runs", "host_probe"),
        ("The simulated-to-real p50 over the validation's runs", "validation_trend"),
        ("The calibration: every distribution", "calibration"),
        ("The calibration before and after the validation's runs", "calibration_drift"),
        ("Faults: lease and heartbeat, simulated and measured", "faults"),
        ("Faults on Compose clusters", "faults_compose"),
    ]
    parts = [
        "# Appendix: every table in full, and the raw records\n",
        "Generated with paper.md by `make paper` (lab/report/); each table names the file it comes from.\n",
        "## Raw records\n",
        "Printed outputs of the tools are kept verbatim beside the data, with the command, date, code "
        "version and load average at their head; the paper quotes only the numbers parsed from them:\n",
    ]
    for path in sorted((data / "bench").glob("*.txt")):
        rel = path.relative_to(data.parent)
        parts.append(f"- [{rel}](../{rel})")
    parts.append(
        "- [data/validation/diagnose/](../data/validation/diagnose/): per-request CPU, run-queue and GC "
        "accounting of a few real points (`dtq diagnose`).\n"
        "- [notebook.md](notebook.md): the diagnoses and readings of earlier sessions, kept as written "
        "(their numbers are not regenerated).\n"
    )
    for title, name in sections:
        if name in tables:
            parts.append(f"## {title}\n\n{tables[name].rstrip()}\n")
    return "\n".join(parts) + "\n"


def read_points(data: Path) -> list[dict[str, str]]:
    return read_csv(data / "validation" / "points.csv", missing_ok=True)


__all__: Sequence[str] = ("TemplateError", "appendix", "render", "values", "word_count")
