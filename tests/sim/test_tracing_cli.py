"""`dtq sim run --trace-job/--trace-jobs` writes RUN/spans.jsonl; `dtq trace --file` prints a simulated
job's timeline and `dtq trace --compare REAL SIM` a job's hops beside another's; bad input (a missing
file, an unknown job, a flag another mode reads) is one line on stderr and exit 2."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from model.results.runs import load_config
from model.spans import SPANS_FILE, jobs_of, parse_spans, span_line
from realsys.cli import main

WORKLOAD = """
arrival: {kind: closed, clients: 1, think_time: {kind: constant, mean: 0.5}, wait_for_completion: true}
mix: {submit: 1.0}
job_type: echo
duration: {kind: constant, mean: 0}
run_time: 2
warmup: 0
seed: 1
"""


def dtq(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


@pytest.fixture
def traced_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    workload = tmp_path / "echo.yaml"
    workload.write_text(WORKLOAD)
    argv = [
        "sim",
        "run",
        "--design",
        "micro",
        "--workload",
        str(workload),
        "--runs-dir",
        str(tmp_path / "runs"),
    ]
    code, out, err = dtq([*argv, "--trace-jobs", "1", "--trace-job", "3", "--trace-job", "99"], capsys)
    assert code == 0, err
    run_dir = tmp_path / "runs" / "sim-micro-echo-1-r0"
    assert f"run written to {run_dir}" in out
    # a chosen job the run never made: said on stderr, the run is still written
    assert "dtq sim: --trace-job: submitted job #99 has no spans (the submits made 3 jobs)" in err
    return run_dir


def test_a_traced_run_writes_spans_that_dtq_trace_prints(
    traced_run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_config(traced_run)["parameters"]["trace"] == [1, 3, 99]
    with (traced_run / SPANS_FILE).open() as lines:
        spans = list(parse_spans(lines))
    jobs = jobs_of(spans)
    assert len(jobs) == 2 and {s.design for s in spans} == {"micro"}
    code, out, err = dtq(["trace", "--file", str(traced_run / SPANS_FILE)], capsys)
    assert code == 0 and err == ""
    assert out.startswith(f"job {jobs[0]}: 14 hops") and "/dtq.v1.JobStore/CompleteAttempt #1" in out
    # a run directory names its spans file; the second job by id; JSON lines
    code, out, _ = dtq(["trace", jobs[1], "--file", str(traced_run), "--json"], capsys)
    assert code == 0 and {json.loads(line)["job_id"] for line in out.splitlines()} == {jobs[1]}


def test_compare_puts_two_timelines_side_by_side(
    traced_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spans = list(parse_spans((traced_run / SPANS_FILE).read_text().splitlines()))
    first = jobs_of(spans)[0]
    # a "real" trace directory: the same job's hops, each twice as long, one file per process
    real_dir = tmp_path / "real-trace"
    real_dir.mkdir()
    for span in spans:
        if span.job_id == first:
            slower = replace(span, end=span.start + 2 * span.duration)
            with (real_dir / f"{span.node}.spans.jsonl").open("a") as file:
                file.write(span_line(slower))
    code, out, err = dtq(["trace", "--compare", str(real_dir), str(traced_run)], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"real job {first} (") and "design micro" in lines[0]
    assert lines[-1].startswith("14 hops matched, 0 only real, 0 only sim")
    hop_lines = [line for line in lines[2:-1] if "worker/run" not in line]  # echo: run takes ~0
    assert all(line.split()[-1] == "0.50" for line in hop_lines), hop_lines
    # JSON: a pair per hop
    code, out, _ = dtq(["trace", first, "--compare", str(real_dir), str(traced_run), "--json"], capsys)
    pairs = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(pairs) == 14 and all(p["real"] and p["sim"] for p in pairs)


def test_bad_input_is_one_line_and_exit_2(
    traced_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spans_file = str(traced_run / SPANS_FILE)
    cases = [
        (["trace", "--file", str(tmp_path / "missing.jsonl")], "no such file or directory"),
        (["trace", "job-9-0000000009", "--file", spans_file], "no spans of job job-9-0000000009 in"),
        (["trace", "--compare", spans_file, str(tmp_path / "nope")], "no such file or directory"),
        (["trace", "--compare", spans_file, str(tmp_path)], "no spans in"),
        (["trace", "--trace-dir", str(tmp_path)], "needs the JOB_ID"),
        (["trace", "x", "--file", spans_file, "--sim-job", "y"], "--sim-job is for --compare"),
        (["sim", "params", "--trace-jobs", "2"], "--trace-jobs is for `dtq sim run`"),
        (["sim", "run", "--design", "micro", "--workload", str(tmp_path / "echo.yaml"), "--runs-dir", "",
          "--trace-jobs", "1"], "need a --runs-dir"),
        # a misspelt id is refused up front (it simulated the run, wrote it, then said "no spans", exit 0)
        (["sim", "run", "--design", "micro", "--workload", str(tmp_path / "echo.yaml"),
          "--trace-job", "jb-1"],
         "--trace-job: expected a job ordinal (1 = the first submitted) or a job id"),
    ]  # fmt: skip
    for argv, message in cases:
        code, _, err = dtq(argv, capsys)
        lines = err.strip().splitlines()
        assert code == 2 and len(lines) == 1 and message in lines[0], (argv, err)
