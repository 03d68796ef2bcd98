"""lab/eta.py: the seeded trace, the error table on hand-made polls, the refusal to overwrite a
record, and one short real run (Design B, 2 s of load) that writes a record with estimates in it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dtq.v1 import job_pb2
from lab.eta import Plan, Poll, errors, main
from realsys.convert import to_timestamp


def test_the_trace_is_seeded_and_has_two_phases() -> None:
    plan = Plan(high_seconds=4.0, low_seconds=4.0)
    trace = plan.trace()
    assert trace == Plan(high_seconds=4.0, low_seconds=4.0).trace()
    assert trace != Plan(high_seconds=4.0, low_seconds=4.0, seed=2).trace()
    high = sum(1 for t, _ in trace if t < 4.0)
    low = len(trace) - high
    # Poisson counts around 1.1 x 12 / 0.2 = 66/s and 30/s over 4 s each
    assert 200 < high < 330 and 80 < low < 170
    assert all(d >= 0 for _, d in trace) and all(t < 8.0 for t, _ in trace)


def _job(job_id: str, start: float, end: float, state: int = job_pb2.SUCCEEDED) -> job_pb2.Job:
    return job_pb2.Job(job_id=job_id, state=state, start_time=to_timestamp(start), end_time=to_timestamp(end))


def test_errors_on_known_polls() -> None:
    finals = {"a": _job("a", 12.0, 13.0), "b": _job("b", 10.0, 11.5), "c": _job("c", 0, 0, job_pb2.FAILED)}
    polls = [
        Poll("a", 10.0, "PENDING", 11.0, 12.0),  # start 1 s early, end 1 s early
        Poll("b", 10.5, "RUNNING", None, 11.0),  # end 0.5 s early
        Poll("a", 9.0, "PENDING", None, None),  # no estimate yet
        Poll("c", 9.0, "PENDING", 9.0, 10.0),  # did not succeed: left out
        Poll("a", 14.0, "SUCCEEDED", None, None),  # finished: not counted
    ]
    table = errors(polls, finals)
    assert table["polls_unfinished"] == 4 and table["polls_with_estimate"] == 2
    assert table["polls_of_jobs_not_succeeded"] == 1
    assert table["start_abs"] == {"count": 1, "median": 1.0, "p90": 1.0}
    assert table["start_rel"]["median"] == 0.5  # 1 s off a 2 s wait
    assert table["start_signed"]["median"] == -1.0
    assert table["end_abs"]["count"] == 2 and table["end_abs"]["median"] == 0.75
    # the baseline: start at the poll (2 s off), end a mean after it (a: 10 + 1 vs 13: 2 s off;
    # b, running since 10: 10.5 + 1 vs 11.5: exact)
    assert table["baseline_start_abs"]["median"] == 2.0
    assert table["baseline_end_abs"]["median"] == 1.0 and table["baseline_end_abs"]["p90"] == 1.8


def test_an_existing_record_is_not_overwritten(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "x.json").write_text("{}")
    assert main(["run", "--name", "x", "--out-dir", str(tmp_path), "--quiet"]) == 2
    assert "exists" in capsys.readouterr().err
    assert (tmp_path / "x.json").read_text() == "{}"


@pytest.mark.slow
def test_a_short_real_run_writes_a_record(tmp_path: Path) -> None:
    args = [
        "run",
        "--designs",
        "mono",
        "--seconds",
        "2",
        "--name",
        "t",
        "--out-dir",
        str(tmp_path),
        "--quiet",
    ]
    assert main(args) == 0
    record = json.loads((tmp_path / "t.json").read_text())
    (result,) = record["results"]
    assert result["design"] == "mono" and result["jobs"] > 50
    assert result["polls"] >= result["sampled_jobs"] > 0
    assert result["polls_with_estimate"] > 0 and result["end_abs"]["count"] > 0
