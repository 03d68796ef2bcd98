"""`dtq validate VALIDATION.yaml [--real] [--sim] [--table] [--twin-sets ...]`: the validation matrix."""

from __future__ import annotations

from typing import Any

from lab.validation.output import build_tables, format_tables
from lab.validation.real import run_validation_real
from lab.validation.semantics import is_semantics_file, semantics_command
from lab.validation.spec import load_validation
from lab.validation.twin_sets import MAIN_FOLDER, TWIN_SETS, make_twin_set
from lab.validation.twins import simulate
from model.errors import InvalidArgument


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
        "--force", action="store_true", help="--sim: re-make every twin (after a change to the simulator)"
    )
    p.add_argument("--out", default="data/runs", help="the runs' root directory")
    p.add_argument("--tables", default="data/validation", help="where the CSV/JSON tables go")
    p.add_argument("--budget", type=float, default=0.0, help="--real: start no new chunk after this many s")
    p.add_argument("--only-design", choices=["micro", "mono"], help="--real: run only this design's points")
    p.add_argument(
        "--twin-sets",
        nargs="*",
        metavar="SET",
        help="the same real runs' other twin sets (lab.validation.twin_sets.TWIN_SETS; none named: all) into "
        "<data>/validation/<SET>/",
    )
    p.add_argument("--data", default="data", help="--twin-sets: the data directory")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(handler=validate_command)


def validate_command(args: Any) -> int:
    """`dtq validate`: with no step named, --sim --table (the real side needs --real, under the lock)."""
    if is_semantics_file(args.validation):  # cases of their own (lab/validation/semantics.py)
        return semantics_command(args)
    v = load_validation(args.validation)
    if args.twin_sets is not None:
        known = {t.name: t for t in TWIN_SETS if t.folder != MAIN_FOLDER}
        unknown = sorted(set(args.twin_sets) - set(known))
        if unknown:
            raise InvalidArgument(f"unknown twin sets {unknown}; known: {sorted(known)}")
        for name in args.twin_sets or known:
            make_twin_set(v, known[name], args.out, args.data)
        return 0
    steps = {s for s in ("real", "sim", "table") if getattr(args, s)} or {"sim", "table"}
    code = 0
    if "real" in steps:
        made, failed, complete = run_validation_real(
            v, args.out, budget=args.budget, only_design=args.only_design, progress=not args.no_progress
        )
        print(f"{v.name}: {made} real runs made, {failed} failed, {'complete' if complete else 'incomplete'}")
        code = 1 if failed else 0
    if "sim" in steps:
        written = simulate(v, args.out, records=bool(v.options.get("records", True)), force=args.force)
        print(f"{v.name}: {len(written)} runs simulated")
    if "table" in steps:
        tables = build_tables(v, args.out, args.tables)
        print(format_tables(tables))
        print(f"tables written to {args.tables}/")
    return code
