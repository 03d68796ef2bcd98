"""model/spans.py: the per-hop span record and a job's timeline."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from model.spans import HopSpan, format_timeline, job_root_span_id, job_trace_id, timeline


def span(
    name: str, span_id: str, parent: str, start: float, end: float, job: str = "n1-1-0000000001"
) -> HopSpan:
    return HopSpan(job, name, "SERVER", "n1", "node", "mono", start, end, "ab" * 16, span_id, parent)


def test_trace_ids_are_stable_per_job_and_differ_between_jobs() -> None:
    assert job_trace_id("n1-1-01") == job_trace_id("n1-1-01") != job_trace_id("n1-1-02")
    assert 0 < job_trace_id("x") < 2**128 and 0 < job_root_span_id("x") < 2**64


def test_timeline_nests_children_under_their_parent_and_counts_from_the_submit() -> None:
    spans = [
        span("/dtq.v1.Workers/FetchWork", "f", "root", 0.0, 5.0),
        span("/dtq.v1.TaskQueue/SubmitJob", "s", "root", 4.0, 4.1),
        span("/dtq.v1.JobStore/CreateJob", "c", "s", 4.01, 4.02),
        span("worker/run", "r", "root", 5.0, 5.5),
        span("worker/report", "p", "r", 5.5, 5.6),
        span("/dtq.v1.Workers/ReportResult", "q", "p", 5.51, 5.59),
        span("/dtq.v1.TaskQueue/SubmitJob", "other", "root", 1.0, 2.0, job="n2-1-0000000001"),
    ]
    rows = timeline(spans, "n1-1-0000000001")
    assert [(r.span.span_id, r.depth) for r in rows] == [
        ("f", 0),
        ("s", 0),
        ("c", 1),
        ("r", 0),
        ("p", 1),
        ("q", 2),
    ]
    assert rows[1].offset == 0.0 and rows[0].offset == -4.0
    text = format_timeline(rows)
    assert "6 hops" in text and "      CreateJob" not in text and "  /dtq.v1.JobStore/CreateJob" in text


@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 5), st.integers(0, 8)), max_size=12))
def test_every_span_appears_once_whatever_the_links(raw: list[tuple[float, float, int]]) -> None:
    spans = [
        span(f"h{i}", f"s{i}", f"s{parent}", start, start + d) for i, (start, d, parent) in enumerate(raw)
    ]
    rows = timeline(spans, "n1-1-0000000001")
    assert sorted(r.span.span_id for r in rows) == sorted(s.span_id for s in spans)


def test_records_survive_json() -> None:
    s = span("worker/run", "r", "root", 1.5, 2.5)
    assert HopSpan.from_json(s.to_json()) == s and s.hop == "worker/run"
    assert span("/dtq.v1.Queue/Ack", "a", "", 0, 1).hop == "Ack"
