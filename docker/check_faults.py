"""Checks the rows of one `dtq faults run` (its CSV, lab/faults/'s columns): nothing lost.

    python docker/check_faults.py ROWS.csv [--rows N] [--min-accepted N] [--felt FAULT:TARGET ...]

Passes when the CSV has exactly N rows (when given), and in every row accepted >= --min-accepted,
lost == 0 and unfinished == 0 (every accepted job is known to the cluster and ended terminal there),
and each --felt row (fault as in the rows: kill, pause, restart, partition) shows the fault in the
client's records: recovery_s is not 0 (a dip in completions; empty = never recovered also counts), so an
injection that did nothing cannot pass. Standard library only. Prints one line per row; exits 1 with
the reasons on failure.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def problems(rows: list[dict[str, str]], count: int, min_accepted: int, felt: list[str]) -> list[str]:
    found = []
    if count >= 0 and len(rows) != count:
        found.append(f"{len(rows)} rows, expected {count}")
    seen = set()
    for row in rows:
        name = f"{row['fault']}:{row['target']}"
        seen.add(name)
        if int(row["accepted"]) < min_accepted:
            found.append(f"{name}: only {row['accepted']} jobs accepted, expected at least {min_accepted}")
        if int(row["lost"]) != 0:
            found.append(f"{name}: {row['lost']} accepted jobs lost")
        if int(row["unfinished"]) != 0:
            found.append(f"{name}: {row['unfinished']} accepted jobs unfinished")
        if name in felt and row["recovery_s"] not in ("", "None") and float(row["recovery_s"]) == 0.0:
            found.append(f"{name}: no dip in completions (recovery_s 0): the fault had no effect")
    found += [f"{name}: no row" for name in felt if name not in seen]
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("rows", type=Path)
    parser.add_argument("--rows", dest="count", type=int, default=-1)
    parser.add_argument("--min-accepted", type=int, default=1)
    parser.add_argument("--felt", action="append", default=[])
    args = parser.parse_args()
    with args.rows.open(newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        shown = ("accepted", "lost", "unfinished", "duplicates", "recovery_s", "unavailable_s", "restart_s")
        values = " ".join(f"{k} {row[k] or '-'}" for k in shown)  # recovery_s '-': never
        print(f"{row['design']} {row['fault']} {row['target']}: {values}")
    found = problems(rows, args.count, args.min_accepted, args.felt)
    for problem in found:
        print(f"  FAIL: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
