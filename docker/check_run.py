"""Checks one `dtq load` run directory (data/README.md layout): every accepted job completed.

    python docker/check_run.py RUN_DIR [--min-jobs N]

Passes when summary.json (jobs accepted in the measurement window) has jobs.submitted == jobs.succeeded
>= N and jobs.unfinished == 0, and every row of jobs.csv.gz (every accepted job, warm-up included; when
written) ended SUCCEEDED with an end time. Standard library only, so any
Python 3 on the host can run it. Prints one line; exits 1 with the reasons on failure.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import sys
from pathlib import Path


def problems(run_dir: Path, min_jobs: int) -> tuple[str, list[str]]:
    summary = json.loads((run_dir / "summary.json").read_text())
    jobs = summary["jobs"]
    line = f"{summary['run_id']}: jobs {json.dumps(jobs)} errors {json.dumps(summary.get('errors', {}))}"
    found = []
    if jobs["submitted"] < min_jobs:
        found.append(f"only {jobs['submitted']} jobs accepted, expected at least {min_jobs}")
    if jobs["succeeded"] != jobs["submitted"]:
        found.append(f"{jobs['succeeded']} of {jobs['submitted']} accepted jobs succeeded")
    if jobs["unfinished"]:
        found.append(f"{jobs['unfinished']} jobs unfinished")
    jobs_file = run_dir / "jobs.csv.gz"
    if jobs_file.exists():
        with gzip.open(jobs_file, "rt", newline="") as f:
            rows = list(csv.DictReader(f))
        bad = [r for r in rows if r["final_state"] != "SUCCEEDED" or not r["end_time"]]
        line += f"; jobs.csv.gz: {len(rows) - len(bad)} of {len(rows)} succeeded"
        if len(rows) < jobs["submitted"]:  # the summary counts the window; the file has warm-up jobs too
            found.append(f"jobs.csv.gz has {len(rows)} rows, the summary {jobs['submitted']} jobs")
        if bad:
            sample = ", ".join(f"{r['job_id']}={r['final_state'] or '?'}" for r in bad[:5])
            found.append(f"{len(bad)} jobs in jobs.csv.gz did not succeed: {sample}")
    return line, found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--min-jobs", type=int, default=1)
    args = parser.parse_args()
    line, found = problems(args.run_dir, args.min_jobs)
    print(line)
    for problem in found:
        print(f"  FAIL: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
