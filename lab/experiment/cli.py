"""`dtq experiment run|summarize EXPERIMENT.yaml`: sweeps of real runs, resumable, with CIs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lab.experiment.plan import expand, select
from lab.experiment.runner import run_experiment
from lab.experiment.spec import Experiment, load_experiment
from lab.experiment.summary import default_summary_path, format_table, summary_rows, write_summary
from model.results.runs import run_exists
from realsys.cli_common import Exit, deprecated_alias


def add_parser(sub: Any) -> None:
    """Adds `experiment run|summarize` to the `dtq` command's subparsers."""
    p = sub.add_parser("experiment", help="resumable sweeps of real runs, with a CI summary table")
    esub = p.add_subparsers(dest="experiment_command", required=True)
    p_run = esub.add_parser("run", help="run what is missing, then write and print the summary table")
    p_sum = esub.add_parser("summarize", help="rebuild the summary table from the runs on disk")
    for q in (p_run, p_sum):
        q.add_argument("experiment", help="an experiment file (.yaml)")
        q.add_argument("--runs-dir", default="data/runs", metavar="DIR", help="root of the run directories")
        deprecated_alias(q, "--out", "--runs-dir", "runs_dir")
        q.add_argument("--summary", help="summary CSV path (default data/experiments/<name>/summary.csv)")
    p_run.add_argument("--dry-run", action="store_true", help="list the runs and whether each is done")
    p_run.add_argument("--only", metavar="PATTERN", help="only run ids matching this glob (or substring)")
    p_run.add_argument(
        "--fresh-cluster",
        action="store_true",
        default=None,
        help="a new cluster per run (default: the file's)",
    )
    p_run.add_argument("-q", "--quiet", action="store_true", help="no progress bar on stderr")
    deprecated_alias(p_run, "--no-progress", "--quiet", "quiet", flag=True)
    p.set_defaults(handler=command)


def command(args: Any) -> int:
    exp = load_experiment(args.experiment)
    summary_path = Path(args.summary) if args.summary else default_summary_path(exp)
    failed = 0
    if args.experiment_command == "run":
        if args.dry_run:
            return _dry_run(exp, Path(args.runs_dir), args.only)
        report = run_experiment(
            exp, args.runs_dir, only=args.only, fresh_cluster=args.fresh_cluster, progress=not args.quiet
        )
        print(
            f"{exp.name}: {report.planned} planned, {report.skipped} already done, "
            f"{len(report.done)} run now, {len(report.failed)} failed"
        )
        for run_id, why in report.failed.items():
            print(f"  FAILED {run_id}: {why}")
        failed = len(report.failed)
    rows = summary_rows(exp, args.runs_dir)
    write_summary(rows, summary_path)
    print(format_table(rows))
    print(f"summary written to {summary_path}")
    return Exit.JOB_FAILED if failed else Exit.OK


def _dry_run(exp: Experiment, out: Path, only: str | None) -> int:
    plan = expand(exp)
    runs = select(plan.runs, only)
    done = 0
    for run in runs:
        exists = run_exists(out, run.run_id)
        done += exists
        print(f"{'done' if exists else 'todo'}  {run.run_id}")
    for note in plan.left_out:
        print(f"left out: {note}")
    groups = len({r.group for r in runs if not run_exists(out, r.run_id)})
    seconds = sum(r.workload.total_time for r in runs if not run_exists(out, r.run_id))
    print(f"{len(runs)} runs, {done} done, {len(runs) - done} to run on {groups} cluster group(s)")
    print(f"~{seconds:.0f}s of load, plus cluster start-ups, drains and settling")
    return 0
