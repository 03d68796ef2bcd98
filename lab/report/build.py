"""The paper (paper/paper.md, paper/appendix.md), its figures and tables, rebuilt from data/.

    python -m lab.report                 # or `make paper`: figures -> paper/figures/*.png, tables ->
                                         # paper/tables/*.md, paper.md and appendix.md from template.md
    python -m lab.report --rerun         # or `make paper RERUN=1`: re-measure into a fresh root first
    python -m lab.report --quick         # or `make paper QUICK=1`: a reduced re-measure (lab/report/rerun.py)

Inputs (each optional: a missing one is said so in its table, and its figure is skipped):
- data/experiments/<name>/summary.csv (`dtq experiment run`) and its runs' data/runs/*/summary.json:
  throughput, latency and submit -> done vs concurrency, per job duration and request mix, for both
  designs and the Celery + Redis reference, with bootstrap intervals (lab/report/intervals.py); and
  data/experiments/<name>/predicted.csv (lab/report/predict.py): the simulator's and the MVA's curves.
- data/validation/points.csv and error_table.csv (`dtq validate`): simulator beside the real system.
- data/faults/sim-<design>.json (`dtq sim faults`) and real-<design>.json (`dtq faults`).
- data/calibration/<name>.json (`dtq calibrate`): the measured distributions the simulator uses.
- data/bench/*.txt: `dtq bench` output kept verbatim, its command on the first line.

Tables copy (rounded) the values of those files, so each traces back to a file and the command that
wrote it. Computed here, from those files only, and said so in the table's note: the A-vs-B winner and
ratio (wins), and the calibration samples' quantiles and lognormal fit.

paper/template.md is the paper's prose with placeholders that lab/report/paper.py fills from these
files, so the paper's numbers are never typed by hand. A markdown file with blocks
`<!-- BEGIN table:NAME -->` ... `<!-- END table:NAME -->` (`--report`) gets each block's body replaced
with paper/tables/NAME.md.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

from lab.report import facts, paper, predict, rerun
from lab.report.calibration import table_calibration, table_calibration_drift
from lab.report.data import (
    AFTER_FOLDER,
    DEFAULT_DATA,
    DEFAULT_EXPERIMENT,
    NO_VALIDATION,
    REPO_ROOT,
    experiment_rows,
    fault_rows,
    host_probe_trend,
    validation_files,
    validation_summary,
    validation_trend,
)
from lab.report.faults import table_faults, table_faults_compose
from lab.report.figures import fig_accuracy, fig_calibration, fig_faults, fig_mix_duration, fig_vs_concurrency
from lab.report.style import set_style
from lab.report.sweep import table_bench, table_experiment, table_headline, table_wins
from lab.report.validation import (
    table_host_probe,
    table_host_scaling,
    table_saturation,
    table_scheduler,
    table_validation,
    table_validation_trend,
    table_winner_agreement,
)
from realsys.cli_common import deprecated_alias, progress

DEFAULT_OUT = REPO_ROOT / "paper"
DEFAULT_REPORT = REPO_ROOT / "REPORT.md"
TEMPLATE = REPO_ROOT / "paper" / "template.md"
WORD_LIMIT = 5000  # the paper's prose, tables and figures left out (paper.word_count)


@dataclass
class Built:
    figures: list[Path] = field(default_factory=list)
    tables: dict[str, Path] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what could not be built, and why
    documents: list[Path] = field(default_factory=list)  # paper.md, appendix.md


def build(
    data: Path | str = DEFAULT_DATA,
    out: Path | str = DEFAULT_OUT,
    report: Path | str | None = DEFAULT_REPORT,
    experiment: str = DEFAULT_EXPERIMENT,
    calibration: str = "local",
    template: Path | None = TEMPLATE,
) -> Built:
    """Every figure (out/figures/*.png) and table (out/tables/*.md) from `data`, the paper and its
    appendix from `template` (out/paper.md, out/appendix.md); fills `report`'s table blocks."""
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
    experiment_file = data / "experiments" / f"{experiment}.yaml"
    sweep = facts.load_sweep(data, experiment, experiment_file)
    table("experiment", table_experiment(rows, experiment))
    table("wins", table_wins(rows) if rows else "No sweep data yet.\n")
    table("headline", table_headline(rows))
    table("bench", table_bench(data))
    if rows:
        measured, predicted = sweep.measured, sweep.predicted

        def vs_concurrency(name: str, series: list[tuple[str, str]]) -> None:
            figure(
                name,
                lambda: fig_vs_concurrency(
                    rows, figs, name, series, measured, predicted, sessions=sweep.sessions
                ),
            )

        vs_concurrency("throughput", [("completed_per_s", "jobs done/s")])
        lat = [("latency_submit_mean_ms", "submit latency mean (ms)")]
        lat += [(f"latency_{p}_ms", f"request latency {p} (ms)") for p in ("p50", "p99")]
        vs_concurrency("latency", lat)
        done = [("completion_mean_ms", "submit -> done mean (ms)")]
        done += [(f"completion_{p}_ms", f"submit -> done {p} (ms)") for p in ("p50", "p99")]
        vs_concurrency("completion", done)
        figure("mix_duration", lambda: fig_mix_duration(rows, figs, measured, sweep.reference))
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
        intervals = facts.accuracy_intervals(data, points)
        figure("accuracy", lambda: fig_accuracy(points, figs, intervals))
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

    if template is not None and Path(template).is_file():
        texts = {k: p.read_text() for k, p in built.tables.items()}
        drawn = {p.stem: p for p in built.figures}
        names = ("throughput", "latency", "completion", "mix_duration", "accuracy", "faults", "calibration")
        values = paper.values(
            data,
            sweep,
            calibrations.get(calibration),
            calibrations.get(after_name),
            experiment_file,
            rerun.durations(data),
        )
        text = paper.render(Path(template).read_text(), values, {n: drawn.get(n) for n in names}, "figures")
        words = paper.word_count(text)
        if words > WORD_LIMIT:
            built.notes.append(f"paper.md: {words} words, over the {WORD_LIMIT} aimed at")
        for name, body in (("paper.md", text), ("appendix.md", paper.appendix(texts, data))):
            path = out / name
            path.write_text(body)
            built.documents.append(path)

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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", default=str(DEFAULT_DATA), help="the data directory (default: data/)")
    parser.add_argument(
        "--paper-dir",
        default=str(DEFAULT_OUT),
        metavar="DIR",
        help="figures/ and tables/ go here (default: paper/)",
    )
    deprecated_alias(parser, "--out", "--paper-dir", "paper_dir")
    parser.add_argument(
        "--report", default=str(DEFAULT_REPORT), help="REPORT.md whose table blocks to fill ('' none)"
    )
    parser.add_argument(
        "--experiment", default=DEFAULT_EXPERIMENT, help="data/experiments/<name>/summary.csv"
    )
    parser.add_argument("--calibration", default="local", help="data/calibration/<name>.json")
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="re-measure everything into a fresh root rerun/full-<time>/ and build the paper there (hours; "
        "the paper's Reproducing section says how long)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a reduced re-measure into rerun/quick-<time>/ (a smoke check)"
    )
    parser.add_argument(
        "--no-predict",
        action="store_true",
        help="use predicted.csv as it is (default: re-simulate it when its inputs changed)",
    )


def report_command(args: argparse.Namespace) -> int:
    # files only, no window; not at import, so notebooks that import this module keep inline figures
    matplotlib.use("Agg")
    if args.rerun or args.quick:
        root = rerun.fresh_root("quick" if args.quick else "full")
        progress(f"re-measuring into {root} (data/ is not touched)")
        rerun.run_steps(rerun.steps(root, quick=args.quick), root)
        print(f"paper {root / 'paper' / 'paper.md'}")
        return 0
    data = Path(args.data)
    if not data.is_dir():  # else every table would be rebuilt empty over the committed ones
        raise FileNotFoundError(f"no data directory {args.data}")
    experiment_file = data / "experiments" / f"{args.experiment}.yaml"
    calibration_file = data / "calibration" / f"{args.calibration}.json"
    inputs = experiment_file.is_file() and calibration_file.is_file()
    if (
        not args.no_predict
        and inputs
        and predict.is_stale(experiment_file, str(calibration_file), data, REPO_ROOT)
    ):
        progress("re-simulating the predicted curves (their inputs changed): a few minutes")
        predict.write_predictions(experiment_file, str(calibration_file), data, REPO_ROOT)
    progress("building the figures, tables and the paper")
    built = build(data, args.paper_dir, args.report or None, args.experiment, args.calibration)
    for path in built.figures:
        print(f"figure {path}")
    for path in built.tables.values():
        print(f"table  {path}")
    for path in built.documents:
        print(f"paper  {path}")
    for note in built.notes:
        print(f"note   {note}")
    return 0


def add_parser(sub: Any) -> None:
    """`dtq report` (also `dtq paper`; sub is the dtq command's subparsers object)."""
    p = sub.add_parser(
        "report", aliases=["paper"], help="the paper's figures and tables from data/; fills REPORT.md"
    )
    add_arguments(p)
    p.set_defaults(handler=report_command)
