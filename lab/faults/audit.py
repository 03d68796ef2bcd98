"""The auditor of a fault run.

After the load generator's drain, `audit` reads the run's records (the same
requests.csv.gz / jobs.csv.gz the run directory gets) AND the cluster's own state (ListJobs over all
states, every page, through DtqClient, polled until no accepted job is still pending or running, or
`--settle` seconds pass), and reports:

- accepted: submits answered OK (each has a job id).
- lost: accepted job ids the cluster does not know at all (neither terminal nor pending/running
  there). Must be 0 with the sqlite store. `unfinished` (accepted, still pending or running in the
  cluster after the settle time) and `failed` (terminal but not SUCCEEDED) are printed beside it.
- duplicates: jobs the cluster dispatched more than once, i.e. `Job.attempt > 1` in the cluster's
  record. The worker keeps no execution log, so this is the definition: an upper bound on "execution
  started more than once" (a lease handed to a worker that died before it read the reply counts too).
- recovery_s, unavailable_s: model/audit.py's `recovery_time` (job completion times from the
  client's records) and `unavailable_time` (request start times and statuses), the functions the
  simulator's audit uses, with the fault time being the measured moment the signal was sent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from model.audit import recovery_time, unavailable_time
from model.errors import DtqError, InvalidArgument, NotFound
from model.results.schema import JobRecord, RequestRecord
from model.states import TERMINAL, JobState
from model.workload import Op
from realsys.client import DtqClient

SETTLE_POLL = 0.5


@dataclass(frozen=True, slots=True)
class ClusterJob:
    """One job as the cluster's ListJobs shows it."""

    job_id: str
    state: JobState
    attempt: int


@dataclass(frozen=True, slots=True)
class RealAudit:
    accepted: int
    lost: int
    unfinished: int
    failed: int
    duplicates: int
    recovery_s: float  # inf: the completion rate never came back before the trace's end
    unavailable_s: float
    unacknowledged: int  # jobs in the cluster whose submit the client did not see answered OK
    lost_ids: tuple[str, ...] = ()
    duplicate_ids: tuple[str, ...] = ()


def audit(
    requests: Sequence[RequestRecord],
    jobs: Sequence[JobRecord],
    cluster_jobs: Mapping[str, ClusterJob],
    fault_at: float,
    end: float,
) -> RealAudit:
    """The fault measures of one run (see the module docstring); `fault_at` and `end` in record time."""
    accepted = {r.job_id for r in requests if r.op is Op.SUBMIT and r.status == "OK"}
    if "" in accepted:
        raise InvalidArgument("an accepted submit without a job id: the records are corrupt")
    gone = JobState.STATE_UNSPECIFIED  # ListJobs never returns it; a defensive "not known"
    lost = sorted(j for j in accepted if j not in cluster_jobs or cluster_jobs[j].state is gone)
    known = [cluster_jobs[j] for j in accepted if j in cluster_jobs and cluster_jobs[j].state is not gone]
    duplicates = sorted(c.job_id for c in cluster_jobs.values() if c.attempt > 1)
    return RealAudit(
        accepted=len(accepted),
        lost=len(lost),
        unfinished=sum(c.state not in TERMINAL for c in known),
        failed=sum(c.state in TERMINAL and c.state is not JobState.SUCCEEDED for c in known),
        duplicates=len(duplicates),
        recovery_s=recovery_time([j.end_time for j in jobs], fault_at, end),
        unavailable_s=unavailable_time(
            [r.start_time for r in requests], [r.status == "OK" for r in requests], fault_at, end
        ),
        unacknowledged=len(set(cluster_jobs) - accepted),
        lost_ids=tuple(lost),
        duplicate_ids=tuple(duplicates),
    )


async def read_cluster_jobs(
    addresses: Sequence[str],
    accepted: set[str],
    settle: float,
    security: Mapping[str, Any] | None = None,
) -> dict[str, ClusterJob]:
    """Every job of the cluster (ListJobs, all states, all pages), re-read every 0.5 s until no accepted
    job is pending or running any more, or `settle` seconds pass (then the last view is returned).
    An accepted job the listing lacks is asked for by id (GetJobStatus) before it may count as lost;
    a cluster that never answers a whole listing is an error, not a loss of every job."""
    deadline = time.monotonic() + settle
    latest: dict[str, ClusterJob] | None = None
    error: DtqError | None = None
    async with DtqClient(addresses, timeout=10.0, **(security or {})) as client:
        for _ in range(int(settle / SETTLE_POLL) + 2):  # bounded: one pass per poll interval
            try:
                latest = {
                    j.job_id: ClusterJob(j.job_id, JobState(j.state), j.attempt)
                    async for j in client.list_all(page_size=1000)
                }
            except DtqError as exc:  # a node still starting (Design B's listing needs every node)
                error = exc
            else:
                waiting = [j for j in accepted if j in latest and latest[j].state not in TERMINAL]
                if not waiting:
                    break
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(SETTLE_POLL)
        if latest is None:
            raise RuntimeError(f"the cluster never answered a whole listing: {error}")
        for job_id in sorted(accepted - set(latest)):
            try:
                job = await client.status(job_id)
            except NotFound:
                continue  # lost
            latest[job_id] = ClusterJob(job_id, JobState(job.state), job.attempt)
    return latest
