"""model/spans.py: the per-hop span record and a job's timeline."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from model.spans import (
    HopSpan,
    compare,
    format_comparison,
    format_timeline,
    job_root_span_id,
    job_span_id,
    job_trace_id,
    jobs_of,
    parse_spans,
    span_line,
    timeline,
)


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


def test_span_ids_are_stable_per_job_and_count() -> None:
    assert job_span_id("a-1-01", 1) == job_span_id("a-1-01", 1) != job_span_id("a-1-01", 2)
    assert job_span_id("a-1-01", 1) != job_span_id("a-1-02", 1) and 0 < job_span_id("x", 7) < 2**64


def test_a_spans_file_round_trips_and_skips_torn_lines() -> None:
    spans = [span("worker/run", "r", "root", 1.5, 2.5), span("/dtq.v1.Queue/Ack", "a", "r", 2, 3)]
    lines = [span_line(s) for s in spans]
    assert all(line.endswith("\n") and line.count("\n") == 1 for line in lines)
    assert list(parse_spans([lines[0], "\n", lines[1], lines[1][:20]])) == spans


def test_jobs_are_listed_in_the_order_they_were_made() -> None:
    spans = [
        span("/dtq.v1.Workers/FetchWork", "f", "root", 0.0, 9.0, job="b"),  # waiting before b was made
        span("/dtq.v1.TaskQueue/SubmitJob", "s", "root", 5.0, 5.1, job="b"),
        span("/dtq.v1.TaskQueue/SubmitJob", "t", "root", 2.0, 2.1, job="a"),
        span("worker/run", "r", "root", 1.0, 2.0, job="c"),  # no submit in the file: after the others
    ]
    assert jobs_of(spans) == ["a", "b", "c"]


def test_compare_matches_hops_by_name_attempt_and_order() -> None:
    real = [
        span("/dtq.v1.TaskQueue/SubmitJob", "s", "root", 0.0, 0.002),
        span("/dtq.v1.TaskQueue/SubmitJob", "s2", "s", 0.001, 0.0015),  # forwarded: the same name twice
        span("worker/run", "r", "root", 0.003, 0.004),
        span("/dtq.v1.Queue/Ack", "a", "root", 0.004, 0.005),  # only real
    ]
    simulated = [
        span("/dtq.v1.TaskQueue/SubmitJob", "x", "root", 10.0, 10.004),
        span("/dtq.v1.TaskQueue/SubmitJob", "y", "x", 10.001, 10.002),
        span("worker/run", "z", "root", 10.003, 10.003),
        span("/dtq.v1.Workers/ReportResult", "q", "root", 10.004, 10.005),  # only simulated
    ]
    job = "n1-1-0000000001"
    pairs = compare(timeline(real, job), timeline(simulated, job))
    matched = [
        (p.left.span.span_id if p.left else None, p.right.span.span_id if p.right else None) for p in pairs
    ]
    assert matched == [("s", "x"), ("s2", "y"), ("r", "z"), ("a", None), (None, "q")]
    assert pairs[0].ratio == pytest.approx(2.0) and pairs[1].ratio == pytest.approx(2.0)
    assert pairs[2].ratio == 0.0 and pairs[3].ratio is None and pairs[4].ratio is None
    text = format_comparison(pairs, title="t")
    lines = text.splitlines()
    assert lines[0] == "t" and len(lines) == 2 + len(pairs) + 1
    assert lines[-1].startswith(
        "3 hops matched, 1 only real, 1 only sim; submit to last hop end: real 5.00 ms"
    )
    assert "  /dtq.v1.TaskQueue/SubmitJob" in lines[3] and lines[3].split()[-1] == "2.00"


@given(
    st.lists(st.sampled_from(["a", "b", "c"]), max_size=8),
    st.lists(st.sampled_from(["a", "b", "d"]), max_size=8),
)
def test_compare_shows_every_hop_of_both_sides_once(left: list[str], right: list[str]) -> None:
    job = "n1-1-0000000001"
    lefts = timeline([span(n, f"l{i}", "root", i, i + 1) for i, n in enumerate(left)], job)
    rights = timeline([span(n, f"r{i}", "root", i, i + 2) for i, n in enumerate(right)], job)
    pairs = compare(lefts, rights)
    assert [p.left for p in pairs if p.left is not None] == lefts
    assert sorted(p.right.span.span_id for p in pairs if p.right is not None) == sorted(
        r.span.span_id for r in rights
    )
    for p in pairs:
        if p.left is not None and p.right is not None:
            assert p.left.span.name == p.right.span.name
    both = sum(1 for p in pairs if p.left is not None and p.right is not None)
    assert both == sum(min(left.count(n), right.count(n)) for n in set(left))
