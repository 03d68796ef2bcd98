"""Run directories (model/results/runs.py): byte-identical writes, atomic writes, reading back, provenance and
workload files."""

from __future__ import annotations

import gzip
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.errors import InvalidArgument
from model.results.runs import (
    CONFIG_FILE,
    JOBS_FILE,
    REQUESTS_FILE,
    SUMMARY_FILE,
    load_config,
    load_jobs,
    load_records,
    load_requests,
    load_run_workload,
    load_summary,
    load_workload,
    provenance,
    run_config,
    run_exists,
    write_run,
)
from model.results.schema import JOB_FIELDS, REQUEST_FIELDS, JobRecord, RequestRecord
from model.results.summary import summarize
from model.states import JobState
from model.workload import ClosedLoop, Op, OpenLoop, WorkloadSpec

WORKLOADS = Path(__file__).resolve().parents[3] / "data" / "workloads"
SPEC = WorkloadSpec(OpenLoop(100.0), run_time=2.0, warmup=0.5, seed=4)
FILES = (CONFIG_FILE, REQUESTS_FILE, JOBS_FILE, SUMMARY_FILE)


def records() -> tuple[list[RequestRecord], list[JobRecord]]:
    rng = np.random.default_rng(1)
    times = np.sort(rng.uniform(0, 2.5, 300))
    requests = [
        RequestRecord(i % 3, Op(i % 5), float(t), float(t) + 1e-4, float(t) + float(d), "OK", f"j{i}")
        for i, (t, d) in enumerate(zip(times, rng.exponential(0.003, 300), strict=True))
    ]
    requests[7] = RequestRecord(1, Op.STATUS, 1.0, 1.0, 1.01, "NOT_FOUND", "j0")
    jobs = [
        JobRecord(f"j{i}", float(t), float(t) + 0.001, float(t) + 0.05, JobState.SUCCEEDED, 1, 0.04)
        for i, t in enumerate(times[:100])
    ]
    jobs.append(JobRecord("late", 2.4, 2.41, math.nan, JobState.RUNNING, 1, 0.5))
    return requests, jobs


def make_run(root: Path, run_id: str = "real-mono-test-4-r0", **kwargs: Any) -> Path:
    requests, jobs = records()
    loadgen = {
        "processes": 1,
        "cpu_utilisation": 0.1,
        "achieved_rate": 100.0,
        "bottleneck": False,
        "bottleneck_reason": "",
    }
    summary = summarize(
        requests,
        jobs,
        window=(0.5, 2.5),
        run_id=run_id,
        kind="real",
        design="mono",
        offered_rate=100.0,
        loadgen=loadgen,
    )
    config = run_config(
        run_id=run_id,
        kind="real",
        design="mono",
        workload=SPEC,
        parameters={"slots": 12, "store": "memory"},
        started_at="2025-01-01T00:00:00.000000Z",
        provenance_info={"code_version": "test"},
    )
    return write_run(root, run_id, config, requests, jobs, summary, **kwargs)


def test_identical_input_gives_byte_identical_files(tmp_path: Path) -> None:
    a = make_run(tmp_path / "a")
    b = make_run(tmp_path / "b")
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    # gzip header: mtime 0 and no file name
    raw = (a / REQUESTS_FILE).read_bytes()
    assert raw[4:8] == b"\0\0\0\0" and not raw[3] & 0x08


def test_write_then_read_back(tmp_path: Path) -> None:
    requests, jobs = records()
    run_dir = make_run(tmp_path)
    assert sorted(p.name for p in run_dir.iterdir()) == sorted(FILES)
    assert not list(tmp_path.glob("*.tmp"))
    assert run_exists(tmp_path, run_dir.name) and not run_exists(tmp_path, "other")

    back_requests, back_jobs = load_records(run_dir)
    assert back_requests == requests
    assert back_jobs[:-1] == jobs[:-1] and math.isnan(back_jobs[-1].end_time)

    summary = load_summary(run_dir)
    assert summary["run_id"] == run_dir.name and summary["schema"] == 1
    in_window = [r for r in requests if 0.5 <= r.intended_time < 2.5]
    assert summary["latency_ms"]["all"]["count"] == len(in_window)
    assert summary["errors"] == {"NOT_FOUND": 1}

    config = load_config(run_dir)
    assert config["schema"] == 1 and config["seed"] == 4 and config["kind"] == "real"
    assert load_run_workload(run_dir) == SPEC

    columns = load_requests(run_dir)
    assert set(columns) == set(REQUEST_FIELDS)
    assert columns["intended_time"].dtype == np.float64 and len(columns["op"]) == len(requests)
    assert columns["op"][1] == "status" and columns["client"][2] == 2
    latency = columns["end_time"] - columns["intended_time"]
    assert np.allclose(latency, [r.latency for r in requests])
    job_columns = load_jobs(run_dir)
    assert set(job_columns) == set(JOB_FIELDS)
    assert np.isnan(job_columns["end_time"][-1]) and job_columns["final_state"][-1] == "RUNNING"

    with gzip.open(run_dir / REQUESTS_FILE, "rt") as f:
        assert f.readline().strip() == ",".join(REQUEST_FIELDS)


def test_existing_runs_are_kept_unless_overwritten(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path)
    with pytest.raises(FileExistsError):
        make_run(tmp_path)
    (tmp_path / "real-mono-test-4-r0.tmp").mkdir()  # left over from an interrupted write
    assert make_run(tmp_path, overwrite=True) == run_dir
    assert not list(tmp_path.glob("*.tmp"))


def test_summary_only(tmp_path: Path) -> None:
    run_dir = make_run(tmp_path, records=False)
    assert sorted(p.name for p in run_dir.iterdir()) == sorted([CONFIG_FILE, SUMMARY_FILE])
    assert run_exists(tmp_path, run_dir.name)


@pytest.mark.parametrize("run_id", ["", "a/b", "..", "x.tmp"])
def test_bad_run_ids(tmp_path: Path, run_id: str) -> None:
    with pytest.raises(InvalidArgument):
        make_run(tmp_path, run_id)


def test_provenance() -> None:
    stamp = provenance()
    assert set(stamp) == {"code_version", "python", "libraries", "host"}
    assert stamp["code_version"] and stamp["code_version"] != "unknown"
    assert set(stamp["host"]) == {"machine", "cpus", "cpu_model", "kernel", "hostname_sha256"}
    assert len(stamp["host"]["hostname_sha256"]) == 12
    assert stamp["libraries"]["numpy"] == np.__version__
    assert set(stamp["libraries"]) >= {"grpcio", "protobuf", "simpy", "numpy", "scipy", "hdrhistogram", "dtq"}


# ---------------------------------------------------------------------------- workload files
def test_example_workloads_load() -> None:
    files = sorted(WORKLOADS.glob("*.yaml")) + sorted(WORKLOADS.glob("*.toml"))
    assert len(files) >= 3
    specs = [load_workload(f) for f in files]
    assert any(isinstance(s.arrival, ClosedLoop) for s in specs)
    assert any(isinstance(s.arrival, OpenLoop) for s in specs)


def test_yaml_and_toml_agree(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(
        "arrival: {kind: open, rate: 50}\nmix: {submit: 0.5, status: 0.5}\n"
        "duration: {kind: constant, mean: 0.1}\n"
    )
    (tmp_path / "w.toml").write_text(
        'arrival = { kind = "open", rate = 50 }\nmix = { submit = 0.5, status = 0.5 }\n'
        'duration = { kind = "constant", mean = 0.1 }\n'
    )
    assert load_workload(tmp_path / "w.yaml") == load_workload(tmp_path / "w.toml")


def test_workload_file_errors_name_the_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("arrival: {kind: open, rate: 50, burst: 3}\n")
    with pytest.raises(InvalidArgument, match=r"bad\.yaml: workload\.arrival\.burst: unknown key"):
        load_workload(bad)
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(InvalidArgument, match="one mapping"):
        load_workload(tmp_path / "list.yaml")
    (tmp_path / "w.json").write_text("{}")
    with pytest.raises(InvalidArgument, match=r"\.yaml, \.yml or \.toml"):
        load_workload(tmp_path / "w.json")
