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

Also here: the ids a deterministic writer (the simulator) gives its spans (`job_span_id`), a spans
file's lines (`span_line`, `parse_spans`), and the side-by-side comparison of one job's hops in two
traces (`compare`, `format_comparison`: a real job beside a simulated one, hop by hop).

Sans-I/O: this module builds and reads records; writing and reading files is the caller's.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from typing import Any

from model.job import CancelledByWorker, Failed, Outcome

KINDS = ("SERVER", "INTERNAL")
ORIGIN_HOPS = frozenset({"SubmitJob", "CreateJob"})  # the hops that make a job: a timeline's zero
SPANS_FILE = "spans.jsonl"  # a simulated run's spans, in its run directory
SPAN_SUFFIX = ".spans.jsonl"  # a real node's spans: <trace dir>/<node>.spans.jsonl


def _digest(job_id: str) -> bytes:
    return hashlib.sha256(b"dtq-trace\x00" + job_id.encode()).digest()


def outcome_status(outcome: Outcome) -> str:
    """The status of a `worker/run` span: the outcome's kind as the real and simulated tracers name it."""
    if isinstance(outcome, Failed):
        return "FAILED"
    if isinstance(outcome, CancelledByWorker):
        return "CANCELLED"
    return "OK"


def job_trace_id(job_id: str) -> int:
    """The 128-bit trace id of a job's trace (never 0)."""
    return int.from_bytes(_digest(job_id)[:16], "big") or 1


def job_root_span_id(job_id: str) -> int:
    """The 64-bit id of the job's (virtual) root span: the parent of hops not made by another hop."""
    return int.from_bytes(_digest(job_id)[16:24], "big") or 1


def job_span_id(job_id: str, n: int) -> int:
    """The 64-bit id of the n-th span a deterministic writer (the simulator) made in the job's trace
    (never 0; the real processes draw theirs at random)."""
    digest = hashlib.sha256(b"dtq-span\x00" + job_id.encode() + b"\x00" + str(n).encode()).digest()
    return int.from_bytes(digest[:8], "big") or 1


def trace_hex(trace_id: int) -> str:
    return f"{trace_id:032x}"


def span_hex(span_id: int) -> str:
    return f"{span_id:016x}"


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


def span_line(span: HopSpan) -> str:
    """One line of a spans file (the real exporter's and the simulator's format)."""
    return json.dumps(span.to_json(), separators=(",", ":")) + "\n"


def parse_spans(lines: Iterable[str]) -> Iterator[HopSpan]:
    """The spans of a spans file's lines; blank lines and a torn last line (a crashed process) are
    skipped."""
    for line in lines:
        if not line.strip():
            continue
        try:
            yield HopSpan.from_json(json.loads(line))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue


def jobs_of(spans: Iterable[HopSpan]) -> list[str]:
    """The jobs that have spans, in the order they were made (their first SubmitJob or CreateJob; a
    job without one by its first span, after those that have one)."""
    made: dict[str, float] = {}
    first: dict[str, float] = {}
    for span in spans:
        if span.hop in ORIGIN_HOPS:
            made[span.job_id] = min(made.get(span.job_id, span.start), span.start)
        first[span.job_id] = min(first.get(span.job_id, span.start), span.start)
    return sorted(first, key=lambda j: (j not in made, made.get(j, first[j]), j))


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


# ---------------------------------------------------------------------------- real beside simulated
@dataclass(frozen=True, slots=True)
class HopPair:
    """One hop of a job in two traces (either side None: the hop is only in the other)."""

    left: TimelineRow | None
    right: TimelineRow | None

    @property
    def ratio(self) -> float | None:
        """right's duration / left's (None when a side is missing or left took no time)."""
        if self.left is None or self.right is None or self.left.span.duration <= 0:
            return None
        return self.right.span.duration / self.left.span.duration


def _key(span: HopSpan) -> tuple[str, int]:
    return span.name, span.attempt


def compare(left: list[TimelineRow], right: list[TimelineRow]) -> list[HopPair]:
    """The hops of two timelines of a job (e.g. real and simulated) matched by name and attempt, the
    k-th occurrence on one side with the k-th on the other (in timeline order): left's order, then
    the hops only the right side has, in its order."""
    waiting: dict[tuple[str, int], list[TimelineRow]] = {}
    for row in right:
        waiting.setdefault(_key(row.span), []).append(row)
    pairs: list[HopPair] = []
    matched: set[int] = set()
    for row in left:
        queue = waiting.get(_key(row.span))
        other = queue.pop(0) if queue else None
        if other is not None:
            matched.add(id(other))
        pairs.append(HopPair(row, other))
    pairs.extend(HopPair(None, row) for row in right if id(row) not in matched)
    return pairs


def _span_of(rows: list[TimelineRow]) -> float:
    """Submit to the job's last hop end (seconds)."""
    return max(r.offset + r.span.duration for r in rows) if rows else 0.0


def format_comparison(
    pairs: list[HopPair], left_name: str = "real", right_name: str = "sim", title: str = ""
) -> str:
    """A fixed-width table, a line per hop: start offset and duration (ms) on each side and the
    duration ratio right/left; hops missing on a side show "-"."""
    lefts = [p.left for p in pairs if p.left is not None]
    rights = [p.right for p in pairs if p.right is not None]
    ratio_head = f"{right_name}/{left_name}"
    lines = [title] if title else []
    lines.append(
        f"{'hop':<46} {'role':<11} {left_name + ' start':>11} {left_name + ' ms':>9} "
        f"{right_name + ' start':>11} {right_name + ' ms':>9} {ratio_head:>9}"
    )

    def cells(row: TimelineRow | None) -> str:
        if row is None:
            return f"{'-':>11} {'-':>9}"
        return f"{row.offset * 1000:11.2f} {row.span.duration * 1000:9.2f}"

    for pair in pairs:
        row = pair.left if pair.left is not None else pair.right
        assert row is not None
        span = row.span
        hop = "  " * row.depth + span.name + (f" #{span.attempt}" if span.attempt else "")
        ratio = pair.ratio
        ratio_text = f"{ratio:9.2f}" if ratio is not None else f"{'-':>9}"
        lines.append(f"{hop:<46} {span.role:<11} {cells(pair.left)} {cells(pair.right)} {ratio_text}")
    both = sum(1 for p in pairs if p.left is not None and p.right is not None)
    total_left, total_right = _span_of(lefts), _span_of(rights)
    total_ratio = f"{total_right / total_left:.2f}" if total_left > 0 else "-"
    lines.append(
        f"{both} hops matched, {len(lefts) - both} only {left_name}, {len(rights) - both} only "
        f"{right_name}; submit to last hop end: {left_name} {total_left * 1000:.2f} ms, {right_name} "
        f"{total_right * 1000:.2f} ms ({ratio_head} {total_ratio})"
    )
    return "\n".join(lines)
