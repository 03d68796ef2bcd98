"""realsys/tracing.py: which jobs a message names, traceparent, and traced six-process clusters of
both designs whose spans `dtq trace` puts in order."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dtq.v1 import client_pb2, internal_pb2, job_pb2, worker_pb2
from model.ids import request_homes
from model.spans import timeline
from realsys import cluster
from realsys.client import DtqClient
from realsys.config import load_config
from realsys.tracing import job_ids_of, parse_traceparent, read_spans
from tests.realsys.conftest import serve_errors

# the (role, hop) pairs a real Design A cluster's echo job shows (tests/sim/test_tracing.py holds the
# simulator to the same list)
REAL_MICRO_HOPS = [
    ("gateway", "SubmitJob"),
    ("job", "CreateJob"),
    ("queue", "Enqueue"),
    ("coordinator", "FetchWork"),
    ("job", "LeaseJobs"),
    ("worker", "worker/run"),
    ("worker", "worker/report"),
    ("coordinator", "ReportResult"),
    ("result", "PutResult"),
    ("job", "CompleteAttempt"),
]


def test_job_ids_come_from_requests_and_responses() -> None:
    assert job_ids_of(client_pb2.WaitJobRequest(job_id="n1-1-01")) == ["n1-1-01"]
    assert job_ids_of(client_pb2.SubmitJobRequest()) == []
    assert job_ids_of(client_pb2.SubmitJobResponse(job_id="a-1-01", job=job_pb2.Job(job_id="a-1-01"))) == [
        "a-1-01"
    ]
    fetched = worker_pb2.FetchWorkResponse(
        assignments=[job_pb2.Assignment(job_id="a-1-01"), job_pb2.Assignment(job_id="a-1-02")]
    )
    assert job_ids_of(fetched) == ["a-1-01", "a-1-02"]
    assert job_ids_of(internal_pb2.LeaseJobsRequest(job_ids=["x-1-01", "x-1-01"])) == ["x-1-01"]


def test_traceparent_is_parsed_or_ignored() -> None:
    good = parse_traceparent([("traceparent", f"00-{'a' * 32}-{'b' * 16}-01")])
    assert good is not None and good.trace_id == int("a" * 32, 16) and good.span_id == int("b" * 16, 16)
    assert parse_traceparent([("traceparent", "00-zz-yy-01")]) is None
    assert parse_traceparent([("other", "x")]) is None


def test_trace_settings_are_validated() -> None:
    env = {"DTQ_ROLE": "node", "DTQ_NAME": "n1", "DTQ_PEERS": "n1=127.0.0.1:5000"}
    assert not load_config(env).trace.enabled
    assert load_config({**env, "DTQ_TRACE_DIR": "/tmp/t"}).trace.directory == Path("/tmp/t")
    with pytest.raises(Exception, match="DTQ_TRACE_OTLP"):
        load_config({**env, "DTQ_TRACE_OTLP": "not an endpoint"})


def hops(spans_dir: Path, job_id: str) -> list[tuple[str, str, int]]:
    return [(r.span.role, r.span.hop, r.depth) for r in timeline(read_spans(spans_dir), job_id)]


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("design", ["micro", "mono"])
def test_a_traced_cluster_records_every_hop_of_a_job(design: str, tmp_path: Path) -> None:
    spans_dir = tmp_path / "spans"
    info = cluster.up(design, tmp_path / "c", store="memory", overrides={"DTQ_TRACE_DIR": str(spans_dir)})
    nodes = [n.name for n in info.nodes]
    key = next(f"k{i}" for i in range(1000) if request_homes(f"k{i}", nodes)[0] != nodes[0])

    async def run() -> tuple[str, str]:
        async with DtqClient(info.clients[:1], timeout=10.0) as client:
            plain = await client.submit("echo", b"x")
            keyed = await client.submit("echo", b"y", request_id=key)
            for job_id in (plain, keyed):
                assert (await client.wait(job_id, timeout=20)).done
            return plain, keyed

    try:
        plain, keyed = asyncio.run(run())
    finally:
        cluster.down(info.directory, grace=10)  # the nodes flush their spans as they stop
    found = hops(spans_dir, plain)
    names = [(role, hop) for role, hop, _ in found]
    if design == "micro":
        for expected in REAL_MICRO_HOPS:
            assert expected in names, (expected, found)
        assert {role for role, _ in names} == {"gateway", "job", "queue", "coordinator", "worker", "result"}
        # the report's hops hang under it: worker/report -> ReportResult -> CompleteAttempt -> PutResult
        # (the job service stores the result of the attempt that holds the lease, issue 26 defect 1)
        depth = {hop: d for _, hop, d in found}
        assert depth["worker/report"] < depth["ReportResult"] < depth["CompleteAttempt"] < depth["PutResult"]
    else:
        assert names[0] == ("node", "SubmitJob") and ("node", "worker/run") in names
        # a keyed submit the first node forwards to the key's primary: two SubmitJob hops, nested
        keyed_hops = hops(spans_dir, keyed)
        submits = [(d, hop) for _, hop, d in keyed_hops if hop == "SubmitJob"]
        assert len(submits) == 2, keyed_hops
    out = subprocess.run(
        [sys.executable, "-m", "realsys", "trace", plain, "--trace-dir", str(spans_dir)],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0 and f"job {plain}:" in out.stdout and "worker/run" in out.stdout, out
    missing = subprocess.run(
        [sys.executable, "-m", "realsys", "trace", "n9-1-0000000001", "--trace-dir", str(spans_dir)],
        capture_output=True,
        check=False,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and missing.stderr.strip().splitlines() == [
        f"dtq trace: no spans of job n9-1-0000000001 in {spans_dir}"
    ], missing


def test_a_trace_dir_that_cannot_be_written_is_one_line_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {
        **os.environ,
        "DTQ_ROLE": "node",
        "DTQ_NAME": "n1",
        "DTQ_PEERS": "n1=127.0.0.1:1",
        "DTQ_LISTEN": "127.0.0.1:0",
        "DTQ_DATA_DIR": str(tmp_path / "data"),
        "DTQ_TRACE_DIR": str(blocker / "spans"),
    }
    lines = serve_errors(env)
    assert len(lines) == 1 and lines[0].startswith("dtq: bad configuration: DTQ_TRACE_DIR: cannot write"), (
        lines
    )
