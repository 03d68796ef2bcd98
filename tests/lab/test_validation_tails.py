"""lab.validation.tails on a tiny synthetic run: requests and spans made by hand, the split known."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pytest

from lab.validation import stalls, tails
from model.results.schema import REQUEST_FIELDS

OFFSET = 1000.0  # the spans' clock minus the requests' clock


def _span(job: str, name: str, role: str, start: float, end: float, sid: str, parent: str = "root") -> dict:
    return {
        "job_id": job, "name": name, "kind": "SERVER", "node": role, "role": role, "design": "micro",
        "start": start + OFFSET, "end": end + OFFSET, "trace_id": "t" + job, "span_id": sid,
        "parent_id": parent, "status": "OK", "attempt": 0,
    }  # fmt: skip


def _write_run(tmp: Path, slow: set[int]) -> tuple[Path, Path]:
    """100 submits, one every 20 ms, each 10 ms: 1 ms out, gateway 8 ms (CreateJob 4 ms inside it),
    1 ms back; a slow one's CreateJob takes 50 ms more. One status read of job 0 at the end."""
    rows, spans = [], []
    for i in range(100):
        t, extra = i * 0.02, 0.05 if i in slow else 0.0
        job = f"j{i}"
        rows.append([0, "submit", t, t, t + 0.010 + extra, "OK", job])
        spans.append(
            _span(job, "/dtq.v1.TaskQueue/SubmitJob", "gateway", t + 0.001, t + 0.009 + extra, f"g{i}")
        )
        spans.append(
            _span(job, "/dtq.v1.JobStore/CreateJob", "job", t + 0.003, t + 0.007 + extra, f"c{i}", f"g{i}")
        )
    rows.append([1, "status", 2.5, 2.5, 2.503, "OK", "j0"])
    spans.append(_span("j0", "/dtq.v1.TaskQueue/GetJobStatus", "gateway", 2.5005, 2.5025, "s0"))
    run = tmp / "run"
    run.mkdir()
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(REQUEST_FIELDS)
    for r in rows:
        w.writerow(_ordered(r))
    (run / "requests.csv.gz").write_bytes(gzip.compress(buf.getvalue().encode()))
    spans_file = tmp / "gateway.spans.jsonl"
    spans_file.write_text("".join(json.dumps(s) + "\n" for s in spans), encoding="utf-8")
    return run, spans_file


def _ordered(r: list) -> list:
    by = dict(
        zip(("client", "op", "intended_time", "start_time", "end_time", "status", "job_id"), r, strict=True)
    )
    return [by[f] for f in REQUEST_FIELDS]


def test_split_adds_up_and_names_the_hops(tmp_path: Path) -> None:
    run, spans = _write_run(tmp_path, slow=set())
    splits, offset = tails.split_requests(tails.read_requests(run), tails.read_spans([spans]))
    assert offset == pytest.approx(OFFSET, abs=1e-3)
    assert len(splits) == 101
    first = next(s for s in splits if s.request.job_id == "j0" and s.request.op == "submit")
    assert first.parts["outside before"] == pytest.approx(0.001)
    assert first.parts["outside after"] == pytest.approx(0.001)
    assert first.parts["gateway:SubmitJob self"] == pytest.approx(0.004)
    assert first.parts["job:CreateJob self"] == pytest.approx(0.004)
    for s in splits:
        assert sum(s.parts.values()) == pytest.approx(s.request.latency)
    read = next(s for s in splits if s.request.op == "status")
    assert read.parts["gateway:GetJobStatus self"] == pytest.approx(0.002)


def test_attribute_puts_the_tail_where_the_extra_time_was(tmp_path: Path) -> None:
    run, spans = _write_run(tmp_path, slow={10, 40, 70})
    splits, _ = tails.split_requests(tails.read_requests(run), tails.read_spans([spans]))
    res = tails.attribute(splits, tail_q=95.0)
    assert res["tail_n"] == 3
    assert res["parts"]["job:CreateJob self"]["share_of_excess"] == pytest.approx(1.0)
    assert res["parts"]["outside before"]["share_of_excess"] == pytest.approx(0.0, abs=1e-3)
    assert res["tail_episodes"] == 3  # three separate slow requests, not one stall
    assert "job:CreateJob self" in tails.format_report("x", res)


def test_episodes_merge_overlaps() -> None:
    assert tails.episodes([(0, 2), (1, 3), (5, 6)]) == [(0, 3, 2), (5, 6, 1)]


def test_cli_errors_cleanly_without_spans(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = _write_run(tmp_path, slow=set())
    empty = tmp_path / "none.spans.jsonl"
    empty.write_text("", encoding="utf-8")
    assert tails.main([str(run), str(empty)]) == 2
    assert "no submit request has a SubmitJob span" in capsys.readouterr().err


def test_witness_cover_counts_only_stalls_inside_each_request(tmp_path: Path) -> None:
    run, spans = _write_run(tmp_path, slow=set())
    splits, _ = tails.split_requests(tails.read_requests(run), tails.read_spans([spans]))
    # loop stalled 5 ms from 0.002+0.002 s (inside j0's submit, 0-10 ms); a GC pause 1.0-1.5 s
    # straddles j50's submit (1.00-1.01 s) only: 10 ms of it
    events = {
        "loop": [[0.002, 5.0]],
        "gc": [[1.0, 500.0]],
        "gc_generation": [2],
        "sched": {},
        "t0_monotonic": 7.5,
    }
    cover = tails.witness_cover(splits, events)  # type: ignore[arg-type]  # t0_monotonic: a scalar
    by_job = {(s.request.job_id, s.request.op): i for i, s in enumerate(splits)}
    assert cover["loop"][by_job[("j0", "submit")]] == pytest.approx(0.005)
    assert cover["loop"][by_job[("j1", "submit")]] == 0.0
    assert cover["gc"][by_job[("j50", "submit")]] == pytest.approx(0.010)
    assert sum(cover["gc"]) == pytest.approx(0.010 * 25)  # j50..j74 start inside the pause
    assert set(cover) == {"loop", "gc"}


def test_sched_shares_split_wall_time_into_run_wait_idle() -> None:
    # over 0-1 s: 0.25 s on a CPU, 0.5 s runnable waiting; then 1-2 s idle
    samples = {"n1": [[0.0, 0, 0], [1.0, 250_000_000, 500_000_000], [2.0, 250_000_000, 500_000_000]]}
    busy = tails.sched_shares(samples, [(0.0, 1.0)])["n1"]
    assert (busy["run"], busy["wait"], busy["idle"]) == pytest.approx((0.25, 0.5, 0.25))
    whole = tails.sched_shares(samples, [(0.0, 2.0)])["n1"]
    assert whole["idle"] == pytest.approx(0.625)
    assert tails.sched_shares(samples, [(5.0, 6.0)]) == {}  # outside the samples: nothing said
    assert "wait_per_slice_ms" not in busy  # no timeslice column
    with_slices = {"n1": [[0.0, 0, 0, 0], [1.0, 250_000_000, 500_000_000, 100]]}
    assert tails.sched_shares(with_slices, [(0.0, 1.0)])["n1"]["wait_per_slice_ms"] == pytest.approx(5.0)


def test_stalls_thread_kinds_and_relative_events() -> None:
    assert stalls.thread_kind(True, "python3") == "main"
    assert stalls.thread_kind(False, "event_engine") == "event_engine"
    assert stalls.thread_kind(False, "grpc_global_tim") == "grpc"
    assert stalls.thread_kind(False, "python3") == "py"
    w = stalls.Witnesses({"n1": 4242})
    w.events["loop"].append((10.5, 0.03))
    w.sched["n1"] = [(10.0, 5, 7, 2)]
    out = w.relative(10.0)
    assert out["loop"] == [[0.5, 30.0]]
    assert out["sched"]["n1"] == [[0.0, 5, 7, 2]]
    assert "loadgen" in out["sched"]  # the load generator's own process is always sampled
