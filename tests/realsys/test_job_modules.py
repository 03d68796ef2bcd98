"""DTQ_JOB_MODULES: users' job types in `dtq serve`, `dtq cluster up --job-modules`, and both designs'
workers (the example realsys/examples/jobs.py, and a module of one's own on PYTHONPATH)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from model.errors import InvalidArgument
from model.states import JobState
from realsys import cluster
from realsys.client import DtqClient
from realsys.config import load_config
from realsys.worker import load_job_modules, registry
from tests.realsys.conftest import serve_errors

MONO_ENV = {"DTQ_ROLE": "node", "DTQ_NAME": "n1", "DTQ_PEERS": "n1=127.0.0.1:5000"}


def test_the_setting_takes_module_names() -> None:
    config = load_config({**MONO_ENV, "DTQ_JOB_MODULES": " a.b , c,a.b"})
    assert config.job_modules == ("a.b", "c")
    with pytest.raises(InvalidArgument, match="DTQ_JOB_MODULES: 'a/b' is not a module name"):
        load_config({**MONO_ENV, "DTQ_JOB_MODULES": "a/b"})


def test_loading_registers_the_types_and_a_bad_module_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert "wordcount" in load_job_modules(["realsys.examples.jobs"]) or "wordcount" in registry
    with pytest.raises(InvalidArgument) as missing:
        load_job_modules(["no_such_module_xyz"])
    assert "\n" not in missing.value.message and "no_such_module_xyz" in missing.value.message
    (tmp_path / "broken_jobs.py").write_text("raise RuntimeError('boom\\nsecond line')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(InvalidArgument) as broken:
        load_job_modules(["broken_jobs"])
    assert broken.value.message == "DTQ_JOB_MODULES: cannot import 'broken_jobs': RuntimeError: boom"


@pytest.mark.parametrize("role", ["node", "worker"])
def test_serve_with_a_bad_module_exits_2_with_one_line(role: str, tmp_path: Path) -> None:
    env = {**os.environ, "DTQ_DATA_DIR": str(tmp_path), "DTQ_JOB_MODULES": "no_such_module_xyz"}
    if role == "node":
        env |= {**MONO_ENV, "DTQ_PEERS": "n1=127.0.0.1:1", "DTQ_LISTEN": "127.0.0.1:0"}
    else:
        env |= {"DTQ_ROLE": "worker", "DTQ_SERVICES": "coordinator=127.0.0.1:1", "DTQ_LISTEN": "127.0.0.1:0"}
    lines = serve_errors(env)
    assert lines == [
        "dtq: bad configuration: DTQ_JOB_MODULES: cannot import 'no_such_module_xyz': "
        "ModuleNotFoundError: No module named 'no_such_module_xyz'"
    ], lines


OWN_MODULE = """
from realsys.worker import JobContext, job_type

@job_type("shout")
async def shout(ctx: JobContext) -> bytes:
    return ctx.payload.upper()
"""


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("design", ["micro", "mono"])
def test_custom_job_types_run_on_both_designs(design: str, tmp_path: Path) -> None:
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / "my_shout_jobs.py").write_text(OWN_MODULE)
    overrides = {
        "DTQ_JOB_MODULES": "realsys.examples.jobs,my_shout_jobs",
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "mods"), os.environ.get("PYTHONPATH", "")]),
    }
    info = cluster.up(design, tmp_path / "c", store="memory", overrides=overrides)

    async def run() -> None:
        async with DtqClient(info.clients, timeout=10.0) as client:
            jobs = {
                "wordcount": await client.submit("wordcount", b"The cat and the hat. The end."),
                "sha256": await client.submit("sha256", b"abc", labels={"rounds": "2"}),
                "shout": await client.submit("shout", b"hello"),
            }
            results = {name: await client.result(job_id, wait=20) for name, job_id in jobs.items()}
            for name, result in results.items():
                assert JobState(result.job.state) is JobState.SUCCEEDED, (name, result)
            assert json.loads(results["wordcount"].response.output) == {
                "words": 7,
                "top": [["the", 3], ["and", 1], ["cat", 1], ["end", 1], ["hat", 1]],
            }
            twice = hashlib.sha256(hashlib.sha256(b"abc").digest()).hexdigest()
            assert results["sha256"].response.output == twice.encode()
            assert results["shout"].response.output == b"HELLO"

    try:
        asyncio.run(run())
        # every node's metrics address is in cluster.json and `cluster status`, and serves /metrics
        recorded = json.loads((info.directory / "cluster.json").read_text())["nodes"]
        status = cluster.status(info.directory)
        assert [n["metrics"] for n in recorded] == [row["metrics"] for row in status] != [""] * 6
        for address in (n["metrics"] for n in recorded):
            with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as reply:
                assert b"dtq_rpc_total" in reply.read()
    finally:
        cluster.down(info.directory, grace=10)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_cluster_up_with_a_bad_module_says_why_in_one_line(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "realsys", "cluster", "up", "--design", "mono"]
    out = subprocess.run(
        [*command, "--dir", str(tmp_path / "c"), "--job-modules", "no_such_module_xyz", "--store", "memory"],
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert out.returncode != 0
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot import 'no_such_module_xyz'" in lines[0], lines
    assert not (tmp_path / "c" / "cluster.json").exists()
