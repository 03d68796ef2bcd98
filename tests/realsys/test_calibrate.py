"""realsys/calibrate.py: a tiny smoke of each measurement function (the calibration itself is not run)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from realsys import calibrate
from sim.params import SimParams, load_params


def test_process_cpu_counts_this_process() -> None:
    before = calibrate.process_cpu(os.getpid())
    t0 = time.process_time()
    while time.process_time() - t0 < 0.02:
        pass
    assert calibrate.process_cpu(os.getpid()) - before >= 0.015


def test_summaries_and_dists() -> None:
    samples = [1e-4 * (1 + (i % 7) / 7) for i in range(500)]
    summary = calibrate.summarize_samples(samples)
    assert summary["n"] == 500 and summary["p05"] <= summary["p50"] <= summary["p99"]
    assert 0 <= summary["lognormal"]["ks"] <= 1
    dist = calibrate.to_dist(samples)
    assert len(dist["samples"]) == calibrate.MAX_SAMPLES
    assert SimParams.from_mapping({"network": dist}).network.mean == pytest.approx(summary["mean"], rel=0.02)


def test_measure_calls_subtracts_nothing_for_an_idle_process() -> None:
    async def call(_: int) -> None:
        await asyncio.sleep(0)

    out = asyncio.run(calibrate.measure_calls(call, {"self": os.getpid()}, 5))
    assert len(out["rtt"]) == len(out["client"]) == len(out["self"]) == 5


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_measure_commit(store: str) -> None:
    out = calibrate.measure_commit(store, 5, rows=4)
    assert len(out["commit"]) == 5 and len(out["commit_many"]) == 3 and out["rows"] == [4.0]
    assert all(x > 0 for x in out["commit"])


def test_measure_echo_and_loadgen() -> None:
    echo = asyncio.run(calibrate.measure_echo(10))
    assert len(echo["network"]) == 10 and all(x >= 0 for x in echo["network"])
    assert all(s > 0 for s in echo["server"])
    loadgen = calibrate.measure_loadgen(0.2, rate=100.0)
    assert loadgen["requests"] >= 10 and loadgen["cpu_per_request"] > 0


def test_build_parameters_loads(tmp_path: Path) -> None:
    echo = {"client": [1e-4] * 5, "network": [2e-5] * 5}
    commit = {"commit": [5e-5] * 5, "commit_many": [2e-4] * 3, "rows": [20.0]}
    nodes = {f"n{i}": [3e-4] * 5 for i in range(1, 7)}
    mono = {m: nodes for m in ("SubmitJob", "GetJobStatus", "GetJobResult", "CancelJob", "ListJobs")}
    mono["forward.GetJobStatus"] = nodes
    roles = {r: [2e-4] * 5 for r in ("gateway", "job", "queue")}
    micro = {m: roles for m in ("SubmitJob", "GetJobStatus", "GetJobResult", "CancelJob", "ListJobs")}
    params, measured = calibrate.build_parameters(
        echo, commit, {"cpu_per_request": 1e-4}, mono, micro, "sqlite"
    )
    assert "service.node.SubmitJob" in measured and "service.node.fetch" in calibrate.unmeasured(measured)
    path = tmp_path / "x.json"
    path.write_text(__import__("json").dumps({"parameters": params}))
    loaded = load_params(path)
    assert loaded.service_dist("node", "forward").mean == pytest.approx(3e-4 - 1e-4)
