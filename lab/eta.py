"""How wrong are GetJobStatus's estimated start and end times (model/eta.py)? Measured on real local
clusters of both designs with estimates on: a short, bounded open-loop load of sleep jobs (an
overload phase that builds a line, then a lighter one that drains it), GetJobStatus polled for every
k-th job right after its submit and again a little later, and each estimate compared with the times
the job really started and ended. Reports, per design, the median and p90 of the absolute and
relative error of start and end, beside a trivial baseline (start = the poll, end = the poll + the
estimate's own mean), and how many polls got an estimate.

    flock /tmp/dtq-measure.lock .venv/bin/python -m lab.eta run [--designs micro,mono] [--name NAME]

writes data/experiments/eta/<name>.json (refuses an existing name unless --force).
Relative error = |estimate - actual| / (actual - poll time), the denominator at least 10 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from dtq.v1 import job_pb2
from model.results.runs import provenance
from model.states import JobState
from realsys import cluster
from realsys.client import DtqClient
from realsys.convert import from_timestamp
from realsys.loadgen import job_payload

OUT_DIR = Path(__file__).resolve().parents[1] / "data" / "experiments" / "eta"
MIN_DENOMINATOR = 0.01  # s: relative errors of times this close to the poll are not meaningful
WAIT_LIMIT = 120.0  # s: the most the run waits for its jobs to end after the last arrival


@dataclass(frozen=True)
class Plan:
    window: int = 50  # DTQ_ESTIMATE_WINDOW
    slots: int = 12
    mean: float = 0.2  # s, exponential sleep durations
    high_load: float = 1.1  # offered load (rate x mean / slots) of the first phase: a line builds
    high_seconds: float = 10.0
    low_load: float = 0.5  # ... of the second: it drains
    low_seconds: float = 10.0
    sample_every: int = 3  # poll every k-th job
    second_poll: float = 0.3  # s after the first poll, if the job is unfinished then
    seed: int = 1

    def trace(self) -> list[tuple[float, float]]:
        """(arrival time from the start, sleep duration) of every job: Poisson arrivals per phase."""
        arrivals_rng, durations_rng = (
            np.random.default_rng(s) for s in np.random.SeedSequence(self.seed).spawn(2)
        )
        times: list[float] = []
        t0 = 0.0
        for load, seconds in ((self.high_load, self.high_seconds), (self.low_load, self.low_seconds)):
            rate = load * self.slots / self.mean
            t = t0
            while True:
                t += float(arrivals_rng.exponential(1.0 / rate))
                if t >= t0 + seconds:
                    break
                times.append(t)
            t0 += seconds
        durations = durations_rng.exponential(self.mean, len(times))
        return [(t, round(float(d), 4)) for t, d in zip(times, durations, strict=True)]


@dataclass(frozen=True)
class Poll:
    job_id: str
    poll_time: float
    state: str
    est_start: float | None
    est_end: float | None


async def _drive(addresses: list[str], plan: Plan) -> tuple[list[Poll], dict[str, job_pb2.Job], int]:
    trace = plan.trace()
    polls: list[Poll] = []
    sampled: list[str] = []

    async with DtqClient(addresses, timeout=10.0) as client:

        async def poll(job_id: str) -> bool:
            """Records one status poll; True when the job is unfinished."""
            polled = time.time()
            job = await client.status(job_id)
            state = JobState(job.state)
            start = from_timestamp(job.estimated_start_time) if job.HasField("estimated_start_time") else None
            end = from_timestamp(job.estimated_end_time) if job.HasField("estimated_end_time") else None
            polls.append(Poll(job_id, polled, state.name, start, end))
            return not job.done

        async def one(index: int, duration: float) -> None:
            job_id = await client.submit("sleep", job_payload(duration))
            if index % plan.sample_every:
                return
            sampled.append(job_id)
            if await poll(job_id):
                await asyncio.sleep(plan.second_poll)
                await poll(job_id)

        loop = asyncio.get_running_loop()
        began = loop.time()
        tasks: list[asyncio.Task[None]] = []
        for index, (at, duration) in enumerate(trace):
            await asyncio.sleep(max(0.0, began + at - loop.time()))
            tasks.append(asyncio.create_task(one(index, duration)))
        await asyncio.wait_for(asyncio.gather(*tasks), WAIT_LIMIT)
        finals = await asyncio.wait_for(
            asyncio.gather(*(client.wait(job_id, timeout=WAIT_LIMIT) for job_id in sampled)), WAIT_LIMIT + 10
        )
    return polls, {job.job_id: job for job in finals}, len(trace)


def _stats(values: list[float]) -> dict[str, float | int | None]:
    if not values:
        return {"count": 0, "median": None, "p90": None}
    a = np.asarray(values)
    return {
        "count": len(values),
        "median": round(float(np.median(a)), 4),
        "p90": round(float(np.quantile(a, 0.9)), 4),
    }


def errors(polls: list[Poll], finals: dict[str, job_pb2.Job]) -> dict[str, Any]:
    """The error table of one design's polls against the jobs' actual times."""
    rows: dict[str, list[float]] = {
        k: []
        for k in (
            "start_abs", "start_rel", "start_signed", "end_abs", "end_rel", "end_signed",
            "baseline_start_abs", "baseline_start_rel", "baseline_end_abs", "baseline_end_rel",
        )
    }  # fmt: skip
    unfinished = with_estimate = not_succeeded = 0
    for p in polls:
        if p.state not in ("PENDING", "RUNNING"):
            continue
        unfinished += 1
        job = finals[p.job_id]
        if JobState(job.state) is not JobState.SUCCEEDED:
            not_succeeded += 1
            continue
        if p.est_end is None:
            continue
        with_estimate += 1
        actual_start, actual_end = from_timestamp(job.start_time), from_timestamp(job.end_time)
        if p.est_start is not None:  # PENDING: both
            mean = p.est_end - p.est_start
            err = p.est_start - actual_start
            denominator = max(actual_start - p.poll_time, MIN_DENOMINATOR)
            rows["start_signed"].append(err)
            rows["start_abs"].append(abs(err))
            rows["start_rel"].append(abs(err) / denominator)
            rows["baseline_start_abs"].append(abs(p.poll_time - actual_start))
            rows["baseline_start_rel"].append(abs(p.poll_time - actual_start) / denominator)
            baseline_end = p.poll_time + mean
        else:  # RUNNING: its start is known; the baseline ends one mean after the poll
            baseline_end = p.poll_time + (p.est_end - actual_start)
        err = p.est_end - actual_end
        denominator = max(actual_end - p.poll_time, MIN_DENOMINATOR)
        rows["end_signed"].append(err)
        rows["end_abs"].append(abs(err))
        rows["end_rel"].append(abs(err) / denominator)
        rows["baseline_end_abs"].append(abs(baseline_end - actual_end))
        rows["baseline_end_rel"].append(abs(baseline_end - actual_end) / denominator)
    return {
        "polls": len(polls),
        "polls_unfinished": unfinished,
        "polls_with_estimate": with_estimate,
        "polls_of_jobs_not_succeeded": not_succeeded,
        **{k: _stats(v) for k, v in rows.items()},
    }


def measure(design: str, plan: Plan) -> dict[str, Any]:
    overrides = {"DTQ_ESTIMATE_WINDOW": str(plan.window)}
    started = time.monotonic()
    with cluster.running(design, total_slots=plan.slots, overrides=overrides, timeout=60, grace=10) as info:
        polls, finals, jobs = asyncio.run(_drive(info.clients, plan))
    result = {"design": design, "jobs": jobs, "sampled_jobs": len(finals), **errors(polls, finals)}
    result["wall_seconds"] = round(time.monotonic() - started, 1)
    return result


def run(args: argparse.Namespace) -> int:
    out = Path(args.out_dir) / f"{args.name}.json"
    if out.exists() and not args.force:
        print(f"lab.eta: {out} exists: pick another --name or pass --force", file=sys.stderr)
        return 2
    plan = Plan(seed=args.seed, high_seconds=args.seconds / 2, low_seconds=args.seconds / 2)
    designs = [d for d in args.designs.split(",") if d]
    if not designs or any(d not in ("micro", "mono") for d in designs):
        print(f"lab.eta: --designs takes micro and/or mono, got {args.designs!r}", file=sys.stderr)
        return 2
    results = []
    for design in designs:
        if not args.quiet:
            print(f"lab.eta: {design}: {plan.high_seconds + plan.low_seconds:g} s of load", file=sys.stderr)
        results.append(measure(design, plan))
    record = {
        "what": "GetJobStatus estimate error against actual start/end times (lab/eta.py)",
        "command": "python -m lab.eta " + " ".join(sys.argv[1:]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "plan": asdict(plan),
        "results": results,
        "provenance": provenance(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1) + "\n")
    print(
        json.dumps(
            {
                r["design"]: {k: r[k] for k in ("start_abs", "start_rel", "end_abs", "end_rel")}
                for r in results
            }
        )
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.eta", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="measure both designs and write data/experiments/eta/NAME.json")
    p.add_argument("--designs", default="micro,mono", help="comma-separated: micro, mono (default both)")
    p.add_argument("--seconds", type=float, default=20.0, help="load seconds: half overload, half drain (20)")
    p.add_argument("--seed", type=int, default=1, help="seed of the arrival and duration streams (1)")
    p.add_argument("--name", default=datetime.now(UTC).strftime("eta-%Y%m%d-%H%M%S"), help="record name")
    p.add_argument("--out-dir", default=str(OUT_DIR), help="where the record goes (data/experiments/eta)")
    p.add_argument("--force", action="store_true", help="overwrite an existing record of that name")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    args = parser.parse_args(argv)
    if not 1.0 <= args.seconds <= 120.0:
        parser.error("--seconds must be in [1, 120]")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
