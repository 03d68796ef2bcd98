"""The record schema (model/results/schema.py): CSV rows that read back exactly, bad rows refused,
and the one label check of experiment and sweep-point names."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model.errors import InvalidArgument
from model.results import schema
from model.results.schema import JobRecord, RequestRecord, check_label
from model.states import JobState
from model.workload import Op


def test_rows_round_trip_exactly() -> None:
    requests = [
        RequestRecord(3, Op.CANCEL, 0.1 + 0.2, 1 / 3, 2 / 3, "FAILED_PRECONDITION", "n1-x-1"),
        RequestRecord(0, Op.LIST, 1e-7, 12345.678901234567, 12345.7, "OK", ""),
    ]
    rows = list(schema.request_rows(requests))
    times = [repr(0.1 + 0.2), repr(1 / 3), repr(2 / 3)]
    assert rows[0] == ["3", "cancel", *times, "FAILED_PRECONDITION", "n1-x-1"]
    assert [schema.request_from_row(r) for r in rows] == requests

    jobs = [
        JobRecord("a", 1.0, 1.5, 2.25, JobState.SUCCEEDED, 1, 0.05),
        JobRecord("b", 1.0, 1.5, math.nan, JobState.PENDING, 0, 0.0),
        JobRecord("c", 1.0, 1.5, 3.0, JobState.FAILED, 2, 0.1, priority=-3, reason="TIMEOUT"),
    ]
    job_out = list(schema.job_rows(jobs))
    assert job_out[1] == ["b", "1.0", "1.5", "", "PENDING", "0", "0.0", "0", ""]
    assert job_out[2][-2:] == ["-3", "TIMEOUT"]
    back = [schema.job_from_row(r) for r in job_out]
    assert back[0] == jobs[0] and back[2] == jobs[2]
    assert back[1].job_id == "b" and math.isnan(back[1].end_time) and back[1].final_state is JobState.PENDING


def test_job_rows_written_before_priority_and_reason_still_read() -> None:
    old = ["a", "1.0", "1.5", "2.25", "SUCCEEDED", "1", "0.05"]
    assert schema.JOB_FIELDS[:7] == schema.LEGACY_JOB_FIELDS
    assert schema.job_from_row(old) == JobRecord("a", 1.0, 1.5, 2.25, JobState.SUCCEEDED, 1, 0.05)


def test_bad_rows() -> None:
    with pytest.raises(InvalidArgument):
        schema.request_from_row(["0", "delete", "1", "1", "1", "OK", ""])
    with pytest.raises(InvalidArgument):
        schema.request_from_row(["0", "submit"])
    with pytest.raises(InvalidArgument):
        schema.job_from_row(["a", "1", "1", "", "DONE", "1", "0"])


@pytest.mark.parametrize("label", ["seed_plan", "c16", "rate0.5", "exp50ms", "A.b_9"])
def test_labels_that_name_runs(label: str) -> None:
    assert check_label(label, "x") == label


@pytest.mark.parametrize("label", ["", "a-b", "a b", "a/b", "é", "x²", "ab\n"])
def test_labels_refused(label: str) -> None:
    with pytest.raises(InvalidArgument, match="where: label"):
        check_label(label, "where")


# few distinct values, so that most records tie on one field or more
_times = st.sampled_from([0.0, 0.5, 1.0, 1.0 + 1e-12, 2.0])


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.builds(
            RequestRecord,
            st.integers(0, 3),
            st.sampled_from(list(Op)),
            _times,
            _times,
            _times,
            st.sampled_from(["OK", "UNAVAILABLE"]),
            st.sampled_from(["", "a", "b"]),
        ),
        max_size=40,
    )
)
def test_sort_requests_is_the_tuple_key_order_ties_included(requests: list[RequestRecord]) -> None:
    expected = sorted(requests, key=lambda r: (r.intended_time, r.client, r.start_time))
    got = list(requests)
    schema.sort_requests(got)
    assert [id(r) for r in got] == [id(r) for r in expected]  # the same objects in the same order


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.builds(
            JobRecord,
            st.sampled_from(["a", "b", "c"]),
            _times,
            _times,
            _times,
            st.sampled_from(list(JobState)),
            st.integers(0, 2),
            _times,
        ),
        max_size=40,
    )
)
def test_sort_jobs_is_the_tuple_key_order_ties_included(jobs: list[JobRecord]) -> None:
    expected = sorted(jobs, key=lambda j: (j.submit_time, j.job_id))
    got = list(jobs)
    schema.sort_jobs(got)
    assert [id(j) for j in got] == [id(j) for j in expected]
