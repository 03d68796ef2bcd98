"""sim.sweep: one tidy DataFrame (a row per point, replication and metric, with CIs), seeds by the
documented rule with common random numbers, the same bytes whichever engine runs it, and a real Dask
cluster (a scheduler and two worker processes on loopback) running a sweep."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from distributed import Client

import sim
from model.errors import InvalidArgument
from realsys.cli import main
from sim.sweeps import plan, point_seed, run_task
from tests.sim.conftest import submits

WL = submits(arrival={"kind": "open", "rate": 80}, run_time=0.8, warmup=0.2, seed=5)
BASE = sim.SimConfig("mono", WL, sim.load_params("local"))
GRID: dict[str, list[Any]] = {"workload.arrival.rate": [40, 120], "service.node.SubmitJob.scale": [1.0, 3.0]}
METRICS = ["latency_ms.submit.p50", "throughput.requests_per_s"]


@pytest.fixture(scope="module")
def serial() -> pd.DataFrame:
    return sim.sweep(BASE, GRID, replications=2, metrics=METRICS, workers=1)


def test_a_sweep_is_one_tidy_dataframe(serial: pd.DataFrame) -> None:
    df = serial
    assert isinstance(df, pd.DataFrame)
    assert len(df) == 4 * 2 * 2  # points x replications x metrics
    columns = [
        "point",
        "replication",
        "seed",
        "sim_seed",
        "metric",
        "value",
        "mean",
        "ci_low",
        "ci_high",
        "n",
    ]
    assert list(df.columns) == [*GRID, *columns]
    p50 = df[df.metric == "latency_ms.submit.p50"].groupby(list(GRID))["value"].mean()
    assert p50[(40, 3.0)] > p50[(40, 1.0)] and p50[(120, 3.0)] > p50[(120, 1.0)]  # the what-if moved it
    one = df[(df.point == 0) & (df.metric == "throughput.requests_per_s")]
    assert one["mean"].iloc[0] == pytest.approx(one["value"].mean())
    assert (one["ci_low"] <= one["mean"]).all() and (one["mean"] <= one["ci_high"]).all()


def test_seeds_follow_the_documented_rule(serial: pd.DataFrame) -> None:
    df = serial
    # common random numbers: replication r runs trace seed base + r at every point
    assert set(zip(df.replication, df.seed, strict=True)) == {(0, 5), (1, 6)}
    points, tasks = plan(BASE, GRID, 2)
    for task in tasks:
        assert task.sim_seed == point_seed(5, points[task.point])
        assert json.loads(task.text)["workload"]["seed"] == 5 + task.replication
    assert len({t.sim_seed for t in tasks}) == 4  # each point its own simulator seed
    # a point's seed is what it is, not where it sits: another grid with the same point agrees
    _, other = plan(BASE, {"service.node.SubmitJob.scale": [3.0], "workload.arrival.rate": [120]}, 1)
    assert other[0].sim_seed == point_seed(
        5, {"workload.arrival.rate": 120, "service.node.SubmitJob.scale": 3.0}
    )
    # same point and replication: the same summary, whatever ran it
    assert run_task(tasks[3].text) == run_task(tasks[3].text)


def test_a_process_pool_gives_the_same_bytes(serial: pd.DataFrame) -> None:
    pooled = sim.sweep(BASE, GRID, replications=2, metrics=METRICS, workers=2)
    assert pooled.to_csv(index=False) == serial.to_csv(index=False)


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        ({"netwrk.scale": [1, 2]}, "nearest: network.scale"),
        ({"workload.arrival.rat": [1]}, "no field 'rat'"),
        ({"workload.seed": [1, 2]}, "sets seeds by replication"),
        ({"nodes": [2, 3], "design": ["micro"]}, "no effect on micro"),
        ({"cores": 4}, "expected a non-empty list"),
        ({"workload.arrival.rate": [-5]}, "grid point"),
        # was "a workload that names files must be loaded from its file (load_workload)"
        ({"workload.duration": [{"kind": "empirical", "file": "d.txt"}]}, "a grid value cannot name a file"),
    ],
)
def test_bad_grids_fail_before_anything_runs(grid: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        sim.sweep(BASE, grid, replications=1, workers=1)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"grid": "abc"}, "grid: expected a mapping"),  # was ValueError: dictionary update sequence
        ({"replications": "2"}, "replications must be an integer >= 1, got '2'"),  # was TypeError
        ({"metrics": "latency_ms.submit.p50"}, "metrics: expected a list"),  # was "unknown metric 'l'"
        ({"confidence": 2.0}, "confidence must be in (0, 1)"),  # was a table of NaN intervals
    ],
)
def test_bad_sweep_arguments_are_one_invalid_argument(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {
        "grid": {"workload.arrival.rate": [40]},
        "replications": 1,
        "workers": 1,
        **kwargs,
    }
    with pytest.raises(InvalidArgument) as info:
        sim.sweep(BASE, **args)
    assert message in info.value.message


def test_sweep_file_errors_name_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = tmp_path / "s.yaml"
    for body, says in [
        ("design: mono\nworkload: nope.yaml\ngrid: {cores: [1]}\n", "workload 'nope.yaml': no such file"),
        (
            "design: mon\nworkload: {arrival: {kind: open, rate: 5}, run_time: 1}\ngrid: {cores: [1]}\n",
            "design must be micro or mono",
        ),
        (
            "design: mono\nworkload: {arrival: {kind: open, rate: 5}, run_time: 1}\n"
            "grid: {cores: [1]}\nreplications: x\n",
            "replications",
        ),
    ]:
        spec.write_text(body)
        with pytest.raises(SystemExit) as info:
            main(["sim", "sweep", str(spec), "--workers", "1"])
        err = capsys.readouterr().err.strip()
        assert info.value.code == 2 and len(err.splitlines()) == 1, err
        assert err.startswith(f"dtq sim: {spec}: ") and says in err, err


def test_unknown_metrics_name_the_nearest() -> None:
    with pytest.raises(InvalidArgument, match=r"nearest: .*latency_ms\.submit\.p50"):
        sim.sweep(BASE, GRID, metrics=["latency_ms.submit.p5"], workers=1)


def test_dtq_sim_sweep_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workload = tmp_path / "w.yaml"
    workload.write_text(json.dumps({"arrival": {"kind": "open", "rate": 50}, "run_time": 0.5, "warmup": 0.1}))
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "design: micro\nworkload: w.yaml\ncalibration: local\nreplications: 2\n"
        "grid: {network.scale: [1, 4]}\nmetrics: [latency_ms.submit.p50]\n"
    )
    table = tmp_path / "out" / "t.csv"
    with pytest.raises(SystemExit) as info:
        main(["sim", "sweep", str(spec), "--workers", "1", "--table", str(table)])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "network.scale=4" in out and table.is_file() and len(table.read_text().splitlines()) == 1 + 2 * 2
    spec.write_text("design: micro\nworkload: w.yaml\ngrid: {netwrk.scale: [1]}\n")
    with pytest.raises(SystemExit) as info:
        main(["sim", "sweep", str(spec), "--workers", "1"])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "nearest: network.scale" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_sweep_runs_on_a_real_dask_cluster(serial: pd.DataFrame) -> None:
    """`dask scheduler` + two `dask worker` processes on loopback (sim.local_cluster), a sweep through
    its address, the same bytes as the serial run; every process gone afterwards."""
    with sim.local_cluster(workers=2) as address:
        assert address.startswith("tcp://127.0.0.1:")
        with Client(address) as client:  # type: ignore[no-untyped-call]
            pids = set(client.run(os.getpid).values())
            pids.add(client.run_on_scheduler(os.getpid))
        assert len(pids) == 3 and os.getpid() not in pids  # three processes besides this one
        on_dask = sim.sweep(BASE, GRID, replications=2, metrics=METRICS, address=address)
    assert on_dask.to_csv(index=False) == serial.to_csv(index=False)
    for pid in pids:  # all stopped
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_no_scheduler_is_one_error() -> None:
    with pytest.raises(InvalidArgument, match="no Dask scheduler answers"):
        sim.sweep(BASE, GRID, replications=1, address="tcp://127.0.0.1:9")
