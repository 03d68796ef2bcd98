"""`dtq validate VALIDATION.yaml [--real] [--sim] [--table] [--twin-sets ...]`: the validation matrix."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab.validation import semantics
from lab.validation.output import DEFAULT_OUT, build_tables, format_tables
from lab.validation.real import run_validation_real
from lab.validation.semantics import is_semantics_file, semantics_command
from lab.validation.spec import load_validation
from lab.validation.twin_sets import MAIN_FOLDER, TWIN_SETS, make_twin_set
from lab.validation.twins import simulate
from model.errors import InvalidArgument
from realsys.cli_common import Exit, deprecated_alias, non_negative_float, progress


def add_parser(sub: Any) -> None:
    """Adds `validate VALIDATION.yaml [--real] [--sim] [--table]` (lab/validation/)."""
    p = sub.add_parser(
        "validate", help="the validation matrix: real runs, their simulated twins, the error table"
    )
    p.add_argument("validation", help="a validation file (data/experiments/validation.yaml)")
    p.add_argument("--real", action="store_true", help="run what is missing of the real side (take the lock)")
    p.add_argument("--sim", action="store_true", help="simulate every real run that lacks an up-to-date twin")
    p.add_argument("--table", action="store_true", help="build and print the error table")
    p.add_argument(
        "--force",
        action="store_true",
        help="--sim: re-make every twin (after a change to the simulator); --table: replace the default "
        "tables folder when it holds tables",
    )
    p.add_argument("--runs-dir", default="data/runs", metavar="DIR", help="root of the run directories")
    deprecated_alias(p, "--out", "--runs-dir", "runs_dir")
    p.add_argument(
        "--tables",
        default="",
        help="where the CSV/JSON tables go (default data/validation; when it holds tables, a new folder "
        "data/validation/tables-<UTC time> unless --force)",
    )
    p.add_argument(
        "--budget",
        type=non_negative_float,
        default=0.0,
        help="--real: start no new chunk after this many s (0: none)",
    )
    p.add_argument("--only-design", choices=["micro", "mono"], help="--real: run only this design's points")
    p.add_argument(
        "--twin-sets",
        nargs="*",
        metavar="SET",
        help="the same real runs' other twin sets (lab.validation.twin_sets.TWIN_SETS; none named: all) into "
        "<data>/validation/<SET>/",
    )
    p.add_argument("--data", default="data", help="--twin-sets: the data directory")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines or bar on stderr")
    deprecated_alias(p, "--no-progress", "--quiet", "quiet", flag=True)
    p.set_defaults(handler=validate_command)


def tables_folder(default: Path, force: bool) -> Path:
    """The default tables folder, or, when it already holds tables (committed data) and not `force`,
    a new folder inside it named by the UTC time."""
    if force or not (default / "summary.json").exists():
        return default
    return default / f"tables-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S-%f')}"


def validate_command(args: Any) -> int:
    """`dtq validate`: with no step named, --sim --table (the real side needs --real, under the lock)."""
    if is_semantics_file(args.validation):  # cases of their own (lab/validation/semantics.py)
        default = semantics.DEFAULT_OUT
        return semantics_command(
            args, Path(args.tables) if args.tables else tables_folder(default, args.force)
        )
    v = load_validation(args.validation)
    if args.twin_sets is not None:
        known = {t.name: t for t in TWIN_SETS if t.folder != MAIN_FOLDER}
        unknown = sorted(set(args.twin_sets) - set(known))
        if unknown:
            raise InvalidArgument(f"unknown twin sets {unknown}; known: {sorted(known)}")
        for name in args.twin_sets or known:
            progress(f"twin set {name}")
            make_twin_set(v, known[name], args.runs_dir, args.data, log=progress)
        return Exit.OK
    steps = {s for s in ("real", "sim", "table") if getattr(args, s)} or {"sim", "table"}
    code = Exit.OK
    if "real" in steps:
        made, failed, complete = run_validation_real(
            v, args.runs_dir, budget=args.budget, only_design=args.only_design, progress=not args.quiet
        )
        print(f"{v.name}: {made} real runs made, {failed} failed, {'complete' if complete else 'incomplete'}")
        code = Exit.JOB_FAILED if failed else Exit.OK
    if "sim" in steps:
        progress("simulating the real runs' twins that are missing or out of date")
        records = bool(v.options.get("records", True))
        written = simulate(v, args.runs_dir, records=records, force=args.force, log=progress)
        print(f"{v.name}: {len(written)} runs simulated")
    if "table" in steps:
        folder = Path(args.tables) if args.tables else tables_folder(Path(DEFAULT_OUT), args.force)
        tables = build_tables(v, args.runs_dir, folder)
        print(format_tables(tables))
        print(f"tables written to {folder}/")
    return code
