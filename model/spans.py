"""The per-hop span record of a job's trace, and the timeline built from a job's spans.

One span is one hop of one job: a call a process served about the job (kind SERVER), or a step a
worker took with it (kind INTERNAL: `worker/run`, `worker/report`). The real system writes them
(realsys/tracing.py, one JSON object a line: `HopSpan.to_json`); the simulator can write the same
records for the same job, so a reader compares hop by hop where the time goes, real beside predicted.

Fields (JSON keys as named):
    job_id    the job (every span names exactly one; a call about several jobs makes one span each)
    name      the hop: "<full gRPC method>" for a call ("/dtq.v1.JobStore/CreateJob"), or
              "worker/run", "worker/report" for a worker's own steps
    kind      "SERVER" or "INTERNAL"
    node      the process: "n1".."n6" (Design B), the role name (Design A)
    role      "node" (Design B) or gateway, job, queue, coordinator, worker, result (Design A)
    design    "mono" or "micro"
    start, end   wall-clock seconds (floats; the simulator: simulated seconds from its origin)
    trace_id, span_id, parent_id   hex: W3C trace context; a job's spans share trace_id = job_trace_id
              (derived from the job id, so every process finds the job's trace without a lookup);
              parent_id is the span of the call that made this one (propagated as `traceparent`
              metadata on every hop) or the job's root, job_root_span_id
    status    the gRPC status code name ("OK", "NOT_FOUND", ...); "OK" for internal steps that worked
    attempt   the attempt the hop concerns (0 when not about one attempt)

Sans-I/O: this module builds and reads records; writing and reading files is the caller's.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("SERVER", "INTERNAL")
ORIGIN_HOPS = frozenset({"SubmitJob", "CreateJob"})  # the hops that make a job: a timeline's zero


def _digest(job_id: str) -> bytes:
    return hashlib.sha256(b"dtq-trace\x00" + job_id.encode()).digest()


def job_trace_id(job_id: str) -> int:
    """The 128-bit trace id of a job's trace (never 0)."""
    return int.from_bytes(_digest(job_id)[:16], "big") or 1


def job_root_span_id(job_id: str) -> int:
    """The 64-bit id of the job's (virtual) root span: the parent of hops not made by another hop."""
    return int.from_bytes(_digest(job_id)[16:24], "big") or 1


@dataclass(frozen=True, slots=True)
class HopSpan:
    job_id: str
    name: str
    kind: str
    node: str
    role: str
    design: str
    start: float
    end: float
    trace_id: str
    span_id: str
    parent_id: str
    status: str = "OK"
    attempt: int = 0

    @property
    def duration(self) -> float:
        return self.end - self.start

    @property
    def hop(self) -> str:
        """The short name: "CreateJob", "worker/run"."""
        return self.name.rsplit("/", 1)[-1] if self.name.startswith("/") else self.name

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> HopSpan:
        return cls(
            job_id=str(raw["job_id"]),
            name=str(raw["name"]),
            kind=str(raw["kind"]),
            node=str(raw["node"]),
            role=str(raw["role"]),
            design=str(raw["design"]),
            start=float(raw["start"]),
            end=float(raw["end"]),
            trace_id=str(raw["trace_id"]),
            span_id=str(raw["span_id"]),
            parent_id=str(raw.get("parent_id", "")),
            status=str(raw.get("status", "OK")),
            attempt=int(raw.get("attempt", 0)),
        )


@dataclass(frozen=True, slots=True)
class TimelineRow:
    span: HopSpan
    depth: int  # 0: a child of the job's root; n: made by a hop at depth n - 1
    offset: float  # seconds from the job's submit (its first SubmitJob or CreateJob; else first hop)


def timeline(spans: Iterable[HopSpan], job_id: str) -> list[TimelineRow]:
    """The job's hops in start order, each under the hop that made it (depth-first, children by
    start time). Spans whose parent is not among them hang from the root."""
    mine = sorted((s for s in spans if s.job_id == job_id), key=lambda s: (s.start, s.end))
    if not mine:
        return []
    ids = {s.span_id for s in mine}
    children: dict[str, list[HopSpan]] = {}
    roots: list[HopSpan] = []
    for span in mine:
        if span.parent_id in ids and span.parent_id != span.span_id:
            children.setdefault(span.parent_id, []).append(span)
        else:
            roots.append(span)
    # offsets count from the submit (a worker's long-poll that was waiting already starts before it)
    made = [s.start for s in mine if s.hop in ORIGIN_HOPS]
    origin = min(made) if made else mine[0].start
    rows: list[TimelineRow] = []
    seen: set[str] = set()

    def visit(span: HopSpan, depth: int) -> None:
        if span.span_id in seen:  # a malformed file with a cycle: print each span once
            return
        seen.add(span.span_id)
        rows.append(TimelineRow(span, depth, span.start - origin))
        for child in children.get(span.span_id, []):
            visit(child, depth + 1)

    for span in roots:
        visit(span, 0)
    for span in mine:  # spans whose parents form a cycle (a malformed file): shown at the top level
        visit(span, 0)
    return rows


def format_timeline(rows: list[TimelineRow]) -> str:
    """A fixed-width table: offset and duration in ms, node/role, the hop (indented), status."""
    if not rows:
        return "no spans"
    lines = [f"job {rows[0].span.job_id}: {len(rows)} hops"]
    lines.append(f"{'start ms':>10} {'dur ms':>9}  {'node':<12} {'hop':<44} status")
    for row in rows:
        span = row.span
        where = span.node if span.role in (span.node, "node") else f"{span.node}/{span.role}"
        hop = "  " * row.depth + span.name + (f" #{span.attempt}" if span.attempt else "")
        lines.append(
            f"{row.offset * 1000:10.2f} {span.duration * 1000:9.2f}  {where:<12} {hop:<44} {span.status}"
        )
    return "\n".join(lines)
