"""`python -m lab.notebooks` (`make notebooks`): runs every notebook in notebooks/ top to bottom with
its full settings and stores it WITH its outputs and figures, so a reader browsing the repository
sees the plots. `--small` runs them as CI does (DTQ_NB_SMALL=1) into a temporary folder instead and
stores nothing. Figures are PNG at a modest dpi (each notebook sets it), keeping the files small.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
CELL_TIMEOUT = 3600  # seconds a cell may take with the full settings


def execute(path: Path, small: bool, out: Path) -> float:
    """Runs `path` in a fresh kernel (its folder as the working directory) and writes it to `out`."""
    nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    if small:
        os.environ["DTQ_NB_SMALL"] = "1"
    else:
        os.environ.pop("DTQ_NB_SMALL", None)
    started = time.monotonic()
    NotebookClient(
        nb, timeout=CELL_TIMEOUT, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()
    nbformat.write(nb, out)  # type: ignore[no-untyped-call]
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.notebooks", description=__doc__)
    parser.add_argument("names", nargs="*", help="notebook names or stems (default: all)")
    parser.add_argument("--small", action="store_true", help="CI's settings, into a temporary folder")
    args = parser.parse_args(argv)
    paths = sorted(NOTEBOOKS.glob("*.ipynb"))
    if args.names:
        paths = [p for p in paths if p.name in args.names or p.stem in args.names]
        if not paths:
            print(f"no notebook named {args.names} in {NOTEBOOKS}", file=sys.stderr)
            return 2
    scratch = Path(tempfile.mkdtemp(prefix="dtq-notebooks-")) if args.small else None
    try:
        for path in paths:
            out = scratch / path.name if scratch else path
            seconds = execute(path, args.small, out)
            print(f"{path.name}: {seconds:.0f} s, {out.stat().st_size / 1e3:.0f} kB -> {out}", flush=True)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
