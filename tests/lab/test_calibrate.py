"""lab/calibration/: a tiny smoke of each measurement function (the calibration itself is not run)."""

from __future__ import annotations

import argparse
import asyncio
import math
import os
from pathlib import Path

import pytest

from lab.calibration import calibrate
from lab.calibration.assemble import build_parameters, closure, unmeasured, wakeup_curve
from lab.calibration.calibrate import pool, round_medians
from lab.calibration.clusters import measure_cluster
from lab.calibration.commit import measure_commit
from lab.calibration.echo import measure_echo
from lab.calibration.generator import measure_loadgen
from lab.calibration.measure import MAX_SAMPLES, measure_calls, summarize_samples, to_dist
from lab.calibration.paths import job_windows
from model.errors import InvalidArgument
from sim.params import SimParams, load_params


def test_summaries_and_dists() -> None:
    samples = [1e-4 * (1 + (i % 7) / 7) for i in range(500)]
    summary = summarize_samples(samples)
    assert summary["n"] == 500 and summary["p05"] <= summary["p50"] <= summary["p99"]
    assert 0 <= summary["lognormal"]["ks"] <= 1
    dist = to_dist(samples)
    assert len(dist["samples"]) == MAX_SAMPLES
    assert SimParams.from_mapping({"network": dist}).network.mean == pytest.approx(summary["mean"], rel=0.02)


def test_measure_calls_subtracts_nothing_for_an_idle_process() -> None:
    async def call(_: int) -> None:
        await asyncio.sleep(0)

    out = asyncio.run(measure_calls(call, {"self": os.getpid()}, 5))
    assert len(out["rtt"]) == len(out["client"]) == len(out["self"]) == 5


@pytest.mark.parametrize("store", ["memory", "sqlite"])
def test_measure_commit(store: str) -> None:
    out = measure_commit(store, 5, rows=4)
    assert len(out["commit"]) == 5 and len(out["commit_many"]) == 3 and out["rows"] == [4.0]
    assert all(x > 0 for x in out["commit"])


def test_measure_echo_and_loadgen() -> None:
    echo = asyncio.run(measure_echo(10))
    assert len(echo["network"]) == 10 and all(x >= 0 for x in echo["network"])
    assert all(s > 0 for s in echo["server"])
    loadgen = measure_loadgen(0.2, rate=100.0)
    assert loadgen["requests"] >= 10 and loadgen["cpu_per_request"] > 0


# a sleeping loop's wake-up costs 1e-4 (3e-4 at one call in flight, 2e-4 busy); a busy client 1e-4
ECHO = {
    "client": [1.5e-4] * 5,
    "network": [2e-5] * 5,
    "server": [3e-4] * 5,
    "busy_server": [2e-4] * 3,
    "busy_client": [1e-4] * 3,
}

CLIENT_API = ("SubmitJob", "GetJobStatus", "GetJobResult", "CancelJob", "ListJobs")


def test_build_parameters_loads(tmp_path: Path) -> None:
    echo = dict(ECHO)
    commit = {"commit": [5e-5] * 5, "commit_many": [2e-4] * 3, "rows": [20.0]}
    nodes = {f"n{i}": [6e-4] * 5 for i in range(1, 7)}
    mono = {m: nodes for m in CLIENT_API}
    mono["forward.GetJobStatus"] = nodes
    roles = {r: [2e-4] * 5 for r in ("gateway", "job", "queue")}
    micro = {m: roles for m in CLIENT_API}
    params, measured = build_parameters(echo, commit, {"cpu_per_request": 1e-4}, mono, micro, "sqlite")
    assert "service.node.SubmitJob" in measured and "service.node.fetch" in unmeasured(measured)
    path = tmp_path / "x.json"
    path.write_text(__import__("json").dumps({"parameters": params}))
    loaded = load_params(path)
    # n2's share of a forwarded call less two wakes (the request, the owner's reply) and one client side
    assert loaded.service_dist("node", "forward").mean == pytest.approx(6e-4 - 2e-4 - 1e-4)
    assert loaded.client_call.mean == pytest.approx(1e-4) and loaded.wakeup.mean == pytest.approx(1e-4)
    assert loaded.loadgen_request.mean == pytest.approx(2e-4)  # the generator's work + a busy stub call
    # the warm hand-over is a what-if (data/validation/closed-loop/README.md): never set by a calibration
    assert "wakeup_warm_handover" not in params and not loaded.wakeup_warm_handover


def _windows(procs: dict[str, tuple[float, float]], waited_extra: dict[str, float]) -> dict[str, object]:
    """Fake job-path windows: per process (w1, w2) constants; `waited_extra` adds to the waited batch."""

    def batch(extra: dict[str, float]) -> dict[str, dict[str, list[float]]]:
        return {
            "w1": {p: [w1] * 4 for p, (w1, _) in procs.items()},
            "w2": {p: [w2 + extra.get(p, 0.0)] * 4 for p, (_, w2) in procs.items()},
            "total": {p: [w1 + w2 + extra.get(p, 0.0)] * 4 for p, (w1, w2) in procs.items()},
        }

    return {"plain": batch({}), "waited": batch(waited_extra), "idle_rate": {}, "wall_seconds": 1.0}


def test_job_path_keys_are_derived_from_the_windows_and_direct_calls() -> None:
    client, commit_s = 1e-4, 5e-5
    echo = dict(ECHO)
    commit = {"commit": [commit_s] * 5, "commit_many": [2e-4] * 3, "rows": [20.0]}
    nodes = {f"n{i}": [3e-4] * 5 for i in range(1, 7)}
    worker_side = ("WorkerHeartbeat", "ReportResult", "WaitJob", "GetJobResult.done")
    mono: dict[str, object] = {
        m: nodes for m in (*CLIENT_API, "forward.GetJobStatus", "QueueDepth", "StealWork", *worker_side)
    }
    # n1: window 1 = submit (3e-4) + fetch/launch (2e-4) + commit; window 2 = wake + report (1e-4) + commit
    mono["job_path"] = _windows(
        {"n1": (3e-4 + 2e-4 + commit_s, 2e-4 + commit_s), "n2": (0.0, 0.0)}, {"n1": 3e-4 + 4e-5}
    )
    roles = {r: [2e-4] * 5 for r in ("gateway", "job", "queue", "coordinator", "result", "worker")}
    micro: dict[str, object] = {
        m: roles
        for m in (
            *CLIENT_API,
            "FetchWork",
            *worker_side,
            "queue.Reserve",
            "queue.Ack",
        )
    }
    micro["job_path"] = _windows(
        {
            "worker": (3e-4, 6e-4),
            "queue": (9e-4, 2e-4),
            "job": (1e-3, 1e-3),
            "gateway": (2e-4, 0.0),
            "coordinator": (1e-3, 1e-3),
            "result": (0.0, 4e-4),
        },
        {"job": 2e-4 + 7e-5, "gateway": 3e-4},
    )
    params, measured = build_parameters(echo, commit, {"cpu_per_request": 1e-4}, mono, micro, "sqlite")
    loaded = SimParams.from_mapping(params)
    approx = pytest.approx
    assert loaded.service_dist("node", "launch").mean == approx(2e-4)  # w1 - submit - commit
    assert loaded.service_dist("node", "report").mean == approx(1e-4)  # w2 - wake - commit
    assert loaded.service_dist("node", "fetch").mean == 0 and loaded.item_cost("node", "fetch") == 0
    assert loaded.service_dist("node", "WaitJob.wake").mean == approx(4e-5)  # waited - plain - WaitJob
    assert loaded.service_dist("node", "StealWork").mean == approx(3e-4 - 1e-4 - commit_s)
    # the coordinator's share (2e-4) less four wakes and three calls' client side clips at 0
    assert loaded.service_dist("coordinator", "FetchWork").mean == 0
    assert loaded.service_dist("job", "LeaseJobs").mean == approx(2e-4 - 1e-4 - commit_s)
    # the worker: a wake and half a call in window 1; two wakes and one and a half calls in window 2
    assert loaded.service_dist("worker", "launch").mean == approx(3e-4 - 1e-4 - 0.5 * client)
    assert loaded.service_dist("worker", "finish").mean == approx(6e-4 - 2e-4 - 1.5 * client)
    # queue: a job's total (1.1e-3) less Enqueue's share (2e-4), Reserve (2e-4) and Ack (2e-4)
    assert loaded.service_dist("queue", "Reserve.wake").mean == approx(1.1e-3 - 6e-4)
    assert loaded.service_dist("job", "WaitJob.wake").mean == approx(7e-5)
    for key in (
        "service.node.launch",
        "service.queue.Reserve.wake",
        "per_item.node.fetch",
        "service.worker.finish",
    ):
        assert key in measured and key not in unmeasured(measured)
    rows = {r["process"]: r for r in closure(mono, micro)}  # type: ignore[arg-type]
    # the gateway's windowed share of a job (2e-4) is its SubmitJob (2e-4): closure 1.0
    assert rows["gateway"]["ratio"] == approx(1.0)
    assert rows["coordinator"]["ratio"] == approx(2e-3 / 4e-4)
    assert rows["gateway (WaitJob)"]["ratio"] == approx(3e-4 / 2e-4)


def test_job_windows_record_both_windows_per_process() -> None:
    ids: list[str] = []

    async def submit() -> str:
        ids.append(f"j{len(ids)}")
        return ids[-1]

    async def wait(job_id: str) -> object:
        await asyncio.sleep(0.01)
        return job_id

    async def go() -> dict[str, dict[str, list[float]]]:
        return await job_windows(submit, wait, {"self": os.getpid()}, 3, {"self": 0.0})

    out = asyncio.run(go())
    assert len(ids) == 3 and len(out["wall"]["job"]) == 3
    for part in ("w1", "w2", "total"):
        assert len(out[part]["self"]) == 3
    assert out["total"]["self"][0] == pytest.approx(out["w1"]["self"][0] + out["w2"]["self"][0])


@pytest.mark.slow
@pytest.mark.parametrize("design", ["mono", "micro"])
def test_measure_cluster_with_the_job_path(design: str) -> None:
    """The whole cluster part of a calibration, tiny: every worker-side call and both windowed batches
    run against real clusters (every windowed job must succeed, or it raises)."""
    out = measure_cluster(design, "memory", 6)
    first = "n1" if design == "mono" else "coordinator"
    for method in ("WorkerHeartbeat", "ReportResult", "WaitJob", "GetJobResult.done", "CancelJob"):
        assert len(out[method]["rtt"]) == 6, method
    assert len(out["job_path"]["plain"]["w1"][first]) == 6
    assert sum(out["job_path"]["plain"]["total"][first]) > 0


def test_wakeup_curve_from_the_echo_sleep_sweep() -> None:
    # busy 2e-4; back to back (0.2 ms apart) 3e-4: wake 1e-4; after 10 ms 4e-4 (x2); 0.1 s: 3.5e-4 (not
    # cheaper than 10 ms: kept at x2); 0.3 s 6e-4 (x4)
    echo = {"server": [3e-4] * 5, "gap": [2e-4] * 5, "idle_0.01_server": [4e-4] * 5}
    echo |= {"idle_0.1_server": [3.5e-4] * 5, "idle_0.3_server": [6e-4] * 5}
    curve = wakeup_curve(echo, 2e-4)
    assert curve == [
        [2e-4, 1.0],
        [0.01, pytest.approx(2.0)],
        [0.1, pytest.approx(2.0)],
        [0.3, pytest.approx(4.0)],
    ]
    params = SimParams.from_mapping({"wakeup": 1e-4, "wakeup_idle": curve})
    assert params.wakeup_factor(1e-5) == 1.0 and params.wakeup_factor(5.0) == pytest.approx(4.0)
    assert params.wakeup_factor(0.2) == pytest.approx(2.0 + 2.0 * math.log(2) / math.log(3))
    assert SimParams.from_mapping(params.to_mapping()) == params
    with pytest.raises(InvalidArgument):
        SimParams.from_mapping({"wakeup_idle": [[0.1, 2.0], [0.01, 3.0]]})  # idle must ascend


def test_rounds_pool_into_one_measurement_with_samples_aligned() -> None:
    one = {"echo": {"server": [1.0, 2.0], "busy_server": [0.5], "client": [3.0, 3.0]}, "n": 2, "tag": "x"}
    two = {"echo": {"server": [5.0, 6.0], "busy_server": [1.5], "client": [4.0, 4.0]}, "n": 4, "tag": "x"}
    pooled = pool([one, two])
    assert pooled["echo"]["server"] == [1.0, 2.0, 5.0, 6.0] and pooled["echo"]["client"] == [
        3.0,
        3.0,
        4.0,
        4.0,
    ]
    assert pooled["n"] == 3.0 and pooled["tag"] == "x"
    assert pool([{"a": [1], "b": [2]}, {"a": [3]}]) == {"a": [1, 3]}  # only keys every round has

    rounds = [
        {
            **one,
            "mono": {"SubmitJob": {"n1": [1.0, 3.0], "n2": [0.0], "rtt": [9.0]}},
            "micro": {"job_path": {}},
        },
        {
            **two,
            "mono": {"SubmitJob": {"n1": [5.0, 7.0], "n2": [0.0], "rtt": [9.0]}},
            "micro": {"job_path": {}},
        },
    ]
    medians = round_medians(rounds)
    assert medians["mono.SubmitJob.n1"] == [2.0, 6.0] and medians["echo.server"] == [1.5, 5.5]
    assert "mono.SubmitJob.rtt" not in medians and not any(k.startswith("micro") for k in medians)
    assert "mono.SubmitJob.n2" not in medians  # never reached: all zero


def test_calibrate_names_a_new_calibration_by_default(tmp_path: Path) -> None:
    """`dtq calibrate` without --name never writes local.json: a new host-<date>-<time> name."""
    (tmp_path / "local.json").write_text("{}")
    name = calibrate.default_name(tmp_path)
    assert name.startswith("host-") and name != "local" and not (tmp_path / f"{name}.json").exists()
    (tmp_path / f"{name}.json").write_text("{}")
    again = calibrate.default_name(tmp_path)
    assert again != name and not (tmp_path / f"{again}.json").exists()
    parser = argparse.ArgumentParser()
    calibrate.add_arguments(parser)
    assert parser.parse_args([]).name == ""  # no default name that could be an existing file
