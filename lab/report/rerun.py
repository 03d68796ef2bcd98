"""`make paper RERUN=1` and `make paper QUICK=1`: re-measure into a fresh results root, then rebuild.

A re-run never reads or skips anything because of what data/ holds, and never writes into data/: every
command gets the fresh root (`rerun/<kind>-<UTC time>/`, git-ignored) as its data directory, and the
paper built from it goes to `<root>/paper/`. Each measuring command takes the machine-wide lock
(`flock /tmp/dtq-measure.lock`) for itself, so other measurements can interleave between them but
never overlap one.

- full (RERUN=1): calibration (`local`, sqlite, 3 rounds), the seed plan's whole sweep, the validation
  matrix (real runs, twins, tables) from that calibration, `dtq bench`, the local fault runs (one round
  per design) and the simulated fault sweeps, the predictions, then the paper.
- quick (QUICK=1): a quick calibration, data/experiments/seed_plan_quick.yaml (fewer clients, one
  replication, submit-only), its predictions, then the paper (the headline figures; every other
  section says it has no data in that root).

How long each takes is estimated from the committed records (`durations`), stated once, in the
paper's "Reproducing" section.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path

import yaml

from lab.report.data import REPO_ROOT
from realsys.cli_common import progress

LOCK = "/tmp/dtq-measure.lock"
QUICK_EXPERIMENT = "seed_plan_quick"
_REPLICATION = re.compile(r"-\d+-\d{8}T\d{6}Z?$")  # a run directory's replication and start time


@dataclass(frozen=True, slots=True)
class Step:
    what: str
    command: list[str]
    locked: bool  # measures: runs under the machine-wide lock
    stdout: Path | None = None  # where its printed output is kept (bench)


def fresh_root(kind: str, base: Path = REPO_ROOT / "rerun") -> Path:
    """A new, empty results root: rerun/<kind>-<UTC time>[-n]."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    root, n = base / f"{kind}-{stamp}", 1
    while root.exists():
        n += 1
        root = base / f"{kind}-{stamp}-{n}"
    root.mkdir(parents=True)
    return root


def _copy_experiment(name: str, root: Path, repo: Path, calibration: Path | None = None) -> Path:
    """data/experiments/<name>.yaml into the root (its `calibration`, if any, pointed at the root's)."""
    source = repo / "data" / "experiments" / f"{name}.yaml"
    target = root / "experiments" / f"{name}.yaml"
    target.parent.mkdir(parents=True, exist_ok=True)
    if calibration is None:
        shutil.copyfile(source, target)
    else:
        doc = yaml.safe_load(source.read_text())
        doc["calibration"] = str(calibration)
        target.write_text(yaml.safe_dump(doc, sort_keys=False))
    return target


def steps(root: Path, quick: bool = False, repo: Path = REPO_ROOT) -> list[Step]:
    """Every command of a re-run into `root`, in order (the experiment files are copied in here)."""
    py = sys.executable
    dtq = [py, "-m", "realsys"]
    calibration = root / "calibration" / "local.json"
    out: list[Step] = [
        Step(
            "calibration",
            [py, "-m", "lab.report.rerun", "calibrate", str(root), *(["--quick"] if quick else [])],
            locked=True,
        )
    ]
    experiment = _copy_experiment(QUICK_EXPERIMENT if quick else "seed_plan", root, repo)
    runs = str(root / "runs")
    summary = str(root / "experiments" / experiment.stem / "summary.csv")
    out.append(
        Step(
            "sweep",
            [*dtq, "experiment", "run", str(experiment), "--runs-dir", runs, "--summary", summary, "--quiet"],
            locked=True,
        )
    )
    if not quick:
        validation = _copy_experiment("validation", root, repo, calibration)
        out.append(
            Step(
                "validation",
                [
                    *dtq,
                    "validate",
                    str(validation),
                    "--real",
                    "--sim",
                    "--table",
                    "--runs-dir",
                    runs,
                    "--tables",
                    str(root / "validation"),
                    "--quiet",
                ],
                locked=True,
            )
        )
        out.append(Step("bench", [*dtq, "bench"], locked=True, stdout=root / "bench" / "local.txt"))
        for design in ("micro", "mono"):
            real = str(root / "faults" / f"real-{design}.json")
            out.append(
                Step(
                    f"faults {design}",
                    [
                        *dtq,
                        "faults",
                        "run",
                        "--design",
                        design,
                        "--faults",
                        "kill,stop,partition,restart",
                        "--out",
                        real,
                        "--runs-dir",
                        runs,
                    ],
                    locked=True,
                )
            )
            sim_out = str(root / "faults" / f"sim-{design}.json")
            out.append(
                Step(
                    f"sim faults {design}",
                    [*dtq, "sim", "faults", "--design", design, "--out", sim_out],
                    False,
                )
            )
    out.append(
        Step(
            "predictions",
            [
                py,
                "-m",
                "lab.report.predict",
                str(experiment),
                "--calibration",
                str(calibration),
                "--data",
                str(root),
                "--force",
            ],
            locked=False,
        )
    )
    out.append(
        Step(
            "paper",
            [
                *dtq,
                "report",
                "--data",
                str(root),
                "--paper-dir",
                str(root / "paper"),
                "--report",
                "",
                "--experiment",
                experiment.stem,
                "--no-predict",
            ],
            locked=False,
        )
    )
    return out


def durations(data: Path) -> str:
    """The time each variant takes, estimated from the committed records (said which)."""
    parts: list[tuple[str, float, str]] = []
    cal = data / "calibration" / "local.json"
    if cal.is_file():
        seconds = json.loads(cal.read_text()).get("calibration_seconds")
        if isinstance(seconds, int | float):
            parts.append(("calibration", seconds / 60, "calibration_seconds in data/calibration/local.json"))
    for what, pattern in (("sweep", "*-seed_plan.*"), ("validation real runs", "real-*-validation*")):
        minutes = _span_minutes(data / "runs", pattern)
        if minutes:
            parts.append((what, minutes, f"start times of data/runs/{pattern}"))
    minutes = _round_minutes(data / "runs", "real-faults-*")
    if minutes:
        source = "median start to start per fault, data/runs/real-faults-*"
        parts.append(("local fault runs, one round", minutes, source))
    if not parts:
        return "No committed records to estimate a re-run's duration from."
    total = sum(m for _, m, _ in parts)
    lines = [
        "`make paper` rebuilds every figure, table, this paper and its appendix from the committed data "
        "without measuring anything; it re-simulates the predicted curves only when the calibration, the "
        "experiment file or the simulator's code changed.",
        "",
        f"`make paper RERUN=1` re-measures everything into a fresh root (rerun/full-<time>/; data/ is never "
        f"touched) and builds the paper there. Estimated from the committed records, not timed end to end: "
        f"about {total / 60:.1f} h of measuring, plus the twins, the bench and the simulated fault sweeps "
        "(a few minutes each):",
        "",
    ]
    lines += [f"- {what}: ~{m:.0f} min ({source})" for what, m, source in parts]
    quick = data / "bench" / "paper-quick.json"
    timed = json.loads(quick.read_text()) if quick.is_file() else {}
    if timed.get("seconds"):
        loads = [x for s in timed.get("steps", []) for x in s.get("load_1m", [])]
        load = f", load average {min(loads):.1f}-{max(loads):.1f}" if loads else ""
        how = (
            f"measured: {timed['seconds'] / 60:.0f} min on {str(timed.get('started_at', ''))[:10]}, "
            f"waits for the lock included{load} (data/bench/paper-quick.json)"
        )
    else:
        how = "its duration is not measured yet (it prints it at its end, into <root>/rerun.json)"
    lines += [
        "",
        "`make paper QUICK=1` re-measures a quick calibration and a reduced sweep "
        f"(data/experiments/{QUICK_EXPERIMENT}.yaml) into rerun/quick-<time>/ and draws the headline figures "
        f"from it, for a smoke check; {how}.",
    ]
    return "\n".join(lines)


def _starts(runs: Path, pattern: str) -> list[tuple[datetime, str]]:
    """(start time, run directory name) of each committed run matching `pattern`, in time order."""
    out = []
    for config in runs.glob(f"{pattern}/config.json"):
        started = json.loads(config.read_text()).get("started_at")
        if started:
            out.append((datetime.fromisoformat(str(started).replace("Z", "+00:00")), config.parent.name))
    return sorted(out)


def _round_minutes(runs: Path, pattern: str) -> float:
    """One round of the runs matching `pattern`: each distinct run (its name without replication and
    time, `-<n>-<YYYYmmddTHHMMSS>`) once, at the median time from its start to the next run's start
    (gaps over 10 minutes end a session and are not counted; a run never followed in its session gets
    the median of all gaps). Repeated rounds and audits in the records do not add to it."""
    starts = [(t, _REPLICATION.sub("", name)) for t, name in _starts(runs, pattern)]
    gaps: dict[str, list[float]] = {}
    for (t, run), (after, _) in pairwise(starts):
        gap = (after - t).total_seconds()
        if gap <= 600:
            gaps.setdefault(run, []).append(gap)
    every = [g for group in gaps.values() for g in group]
    if not every:
        return 0.0
    fallback = statistics.median(every)
    return sum(statistics.median(gaps.get(run, [fallback])) for run in {run for _, run in starts}) / 60


def _span_minutes(runs: Path, pattern: str) -> float:
    """Sum over the days the runs were made of (last start - first start), in minutes, plus one run."""
    by_day: dict[str, list[datetime]] = {}
    for t, _ in _starts(runs, pattern):
        by_day.setdefault(t.date().isoformat(), []).append(t)
    total = 0.0
    for times in by_day.values():
        gaps = sorted(times)
        # sessions: split where two runs started more than 10 minutes apart
        start = prev = gaps[0]
        for t in gaps[1:]:
            if (t - prev).total_seconds() > 600:
                total += (prev - start).total_seconds()
                start = t
            prev = t
        total += (prev - start).total_seconds()
        total += 10.0
    return total / 60


def run_steps(plan: list[Step], root: Path) -> Path:
    """Runs each step (measuring ones under the lock), stopping at the first failure; writes
    <root>/rerun.json: each step's seconds (lock waits included) and the load average around it."""
    record: dict[str, object] = {"started_at": f"{datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ}", "steps": []}
    steps_done: list[dict[str, object]] = []
    started = time.monotonic()
    for number, step in enumerate(plan, 1):
        progress(f"re-run {number}/{len(plan)}: {step.what}")
        command = (["flock", LOCK] if step.locked and shutil.which("flock") else []) + step.command
        t0, load0 = time.monotonic(), os.getloadavg()[0]
        if step.stdout is not None:
            step.stdout.parent.mkdir(parents=True, exist_ok=True)
            with open(step.stdout, "w") as f:
                f.write(
                    f"$ {' '.join(['dtq', *step.command[3:]])}   # {datetime.now(UTC):%Y-%m-%d %H:%M} UTC\n"
                )
                f.flush()
                subprocess.run(command, check=True, cwd=REPO_ROOT, stdout=f)
        else:
            subprocess.run(command, check=True, cwd=REPO_ROOT)
        steps_done.append(
            {
                "step": step.what,
                "seconds": round(time.monotonic() - t0, 1),
                "load_1m": [load0, os.getloadavg()[0]],
            }
        )
    record["steps"] = steps_done
    record["seconds"] = round(time.monotonic() - started, 1)
    path = root / "rerun.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    progress(f"re-run done in {(time.monotonic() - started) / 60:.1f} min ({path})")
    return path


def calibrate_into(root: Path, quick: bool) -> Path:
    """`dtq calibrate` with its output in the root (named `local`, the paper's calibration)."""
    from lab.calibration.calibrate import calibrate  # here: its imports (clusters, gRPC) serve this step only

    return calibrate("local", "sqlite", quick, out_dir=root / "calibration")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.report.rerun")
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("calibrate", help="calibrate into ROOT/calibration/local.json")
    c.add_argument("root")
    c.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    print(calibrate_into(Path(args.root), args.quick))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
