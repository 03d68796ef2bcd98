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
    read_job_records,
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


# ---------------------------------------------------------------------------- files a workload names
def _write_recorded_run(root: Path) -> Path:
    requests = [
        RequestRecord(0, Op.SUBMIT, 0.10, 0.10, 0.11, "OK", "a"),
        RequestRecord(0, Op.SUBMIT, 0.20, 0.20, 0.21, "OK", "b"),
        RequestRecord(0, Op.SUBMIT, 0.25, 0.25, 0.26, "UNAVAILABLE", ""),
        RequestRecord(0, Op.STATUS, 0.30, 0.30, 0.31, "OK", "b"),
        RequestRecord(0, Op.CANCEL, 0.40, 0.40, 0.41, "OK", "a"),
        RequestRecord(0, Op.LIST, 0.50, 0.50, 0.51, "OK", ""),
    ]
    jobs = [
        JobRecord("a", 0.10, 0.11, 0.45, JobState.CANCELLED, 1, 0.5),
        JobRecord("b", 0.20, 0.21, 0.35, JobState.SUCCEEDED, 1, 0.125),
    ]
    spec = WorkloadSpec(OpenLoop(10.0), run_time=0.4, warmup=0.2, seed=4)
    config = run_config(run_id="rec", kind="real", design="mono", workload=spec, parameters={})
    summary = summarize(
        requests,
        jobs,
        window=(0.2, 0.6),
        run_id="rec",
        kind="real",
        design="mono",
        offered_rate=10.0,
        loadgen={
            "processes": 1,
            "cpu_utilisation": 0.0,
            "achieved_rate": 0.0,
            "bottleneck": False,
            "bottleneck_reason": "",
        },
    )
    return write_run(root, "rec", config, requests, jobs, summary)


def test_a_replay_reads_the_recorded_requests_relative_to_its_workload_file(tmp_path: Path) -> None:
    run_dir = _write_recorded_run(tmp_path / "runs")
    (tmp_path / "w").mkdir()
    path = tmp_path / "w" / "replay.yaml"
    path.write_text("arrival: {kind: replay, run: ../runs/rec, speed: 1}\nduration: {mean: 0.05}\n")
    spec = load_workload(path)
    assert spec.run_time == 0.4 and spec.warmup == 0.2  # the recorded run's, when the file gives none
    recording = spec.arrival.recording  # type: ignore[union-attr]
    assert recording.path == str(run_dir.resolve())
    assert recording.ops == (0, 0, 0, int(Op.STATUS), int(Op.CANCEL), int(Op.LIST))
    assert recording.durations[:2] == (0.5, 0.125) and math.isnan(recording.durations[2])
    # the status is about the 2nd of 2 accepted jobs, the cancel about the 1st of 2
    assert recording.targets[3] == 0.75 and recording.targets[4] == 0.25
    # config.json records the run by its absolute path, and reads back anywhere
    mapping = run_config(run_id="x", kind="real", design="mono", workload=spec, parameters={})["workload"]
    assert mapping["arrival"]["run"] == str(run_dir.resolve())
    assert load_run_workload(run_dir) != spec  # its own workload is the open loop it ran


def test_empirical_samples_come_from_a_file_and_stay_inline(tmp_path: Path) -> None:
    (tmp_path / "d.txt").write_text("# measured job durations (s)\n0.1, 0.2\n0.4 # slow one\n\n")
    path = tmp_path / "w.toml"
    path.write_text('[arrival]\nkind = "open"\nrate = 5\n[duration]\nkind = "empirical"\nfile = "d.txt"\n')
    spec = load_workload(path)
    assert spec.duration.samples == (0.1, 0.2, 0.4)  # type: ignore[union-attr]
    mapping = run_config(run_id="x", kind="real", design="mono", workload=spec, parameters={})["workload"]
    assert mapping["duration"]["samples"] == [0.1, 0.2, 0.4]
    (tmp_path / "bad.txt").write_text("0.1 fast\n")
    path.write_text('[arrival]\nkind = "open"\nrate = 5\n[duration]\nkind = "empirical"\nfile = "bad.txt"\n')
    with pytest.raises(InvalidArgument, match=r"workload.duration.file: .*bad.txt:1: 'fast' is not a number"):
        load_workload(path)
    path.write_text('[arrival]\nkind = "open"\nrate = 5\n[duration]\nkind = "empirical"\nfile = "none.txt"\n')
    with pytest.raises(InvalidArgument, match=r"workload\.duration\.file: cannot read"):
        load_workload(path)


def test_job_files_written_before_priority_and_reason_still_load(tmp_path: Path) -> None:
    path = tmp_path / JOBS_FILE
    with gzip.open(path, "wt", newline="") as f:
        f.write(",".join(JOB_FIELDS[:7]) + "\n" + "a,1.0,1.5,2.0,FAILED,3,0.1\n")
    (job,) = read_job_records(path)
    assert (job.final_state, job.attempts, job.priority, job.reason) == (JobState.FAILED, 3, 0, "")
