"""sim.run's result for a researcher: records as DataFrames, save/load in the run-directory layout,
and records that spill to disk giving the very same bytes as records kept in memory."""

from __future__ import annotations

import filecmp
import gc
from pathlib import Path

import pandas as pd
import pytest

import sim
from model.errors import InvalidArgument
from model.results.runs import load_config, load_records, load_summary
from model.workload import workload_from_mapping

WL = workload_from_mapping(
    {
        "arrival": {"kind": "open", "rate": 150},
        "mix": {"submit": 0.6, "status": 0.2, "list": 0.2},
        "duration": {"kind": "exponential", "mean": 0.02},
        "run_time": 1.5,
        "warmup": 0.3,
        "seed": 2,
    }
)
PARAMS = sim.load_params("local")


def test_records_as_dataframes() -> None:
    result = sim.run(sim.SimConfig("micro", WL, PARAMS))
    req, jobs = result.requests_df, result.jobs_df
    assert isinstance(req, pd.DataFrame) and len(req) == len(result.requests) > 100
    assert list(req.columns[:7]) == [
        "client",
        "op",
        "intended_time",
        "start_time",
        "end_time",
        "status",
        "job_id",
    ]
    assert set(req["op"].cat.categories) >= {"submit", "status", "list"}
    assert req["latency"].tolist() == [r.latency for r in result.requests]
    assert len(jobs) == len(result.jobs) and jobs["completion_time"].notna().all()
    in_window = req[(req.intended_time >= 0.3) & (req.intended_time < 1.8) & (req.op == "submit")]
    assert len(in_window) == result.summary["latency_ms"]["submit"]["count"]


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    what_if = PARAMS.with_overrides({"service.gateway.SubmitJob.scale": 1.5})
    result = sim.run(sim.SimConfig("micro", WL, what_if))
    path = result.save(tmp_path)
    assert path == tmp_path / result.run_id and "-w" in result.run_id
    assert load_summary(path) == result.summary
    assert load_config(path)["parameters"]["overrides"] == [["service.gateway.SubmitJob.scale", 1.5]]
    requests, jobs = load_records(path)
    assert requests == list(result.requests) and jobs == list(result.jobs)
    again = sim.SimResult.load(path)
    assert again.run_id == result.run_id and again.summary == result.summary
    assert again.config.params == what_if and again.config.params.overrides == what_if.overrides
    pd.testing.assert_frame_equal(again.requests_df, result.requests_df)
    pd.testing.assert_frame_equal(again.jobs_df, result.jobs_df)
    with pytest.raises(FileExistsError):
        result.save(tmp_path)
    assert result.save(tmp_path, overwrite=True) == path


def test_spilled_records_are_the_same_bytes(tmp_path: Path) -> None:
    """Records beyond `chunk` go to sorted chunk files merged at the end: same order, same files."""
    config = sim.SimConfig("mono", WL, PARAMS)
    kept = sim.run(config)
    spilled = sim.run(config, chunk=37, spill_dir=str(tmp_path / "spill"))
    assert not kept.stats["records_spilled"] and spilled.stats["records_spilled"]
    assert spilled.requests.path is not None and spilled.requests.path.is_relative_to(tmp_path / "spill")
    assert spilled.summary == kept.summary
    assert list(spilled.requests) == list(kept.requests) and list(spilled.jobs) == list(kept.jobs)
    assert spilled.requests[5] == kept.requests[5] and spilled.jobs[-1] == kept.jobs[-1]
    a, b = kept.save(tmp_path / "a"), spilled.save(tmp_path / "b")
    for name in ("requests.csv.gz", "jobs.csv.gz", "summary.json"):
        assert filecmp.cmp(a / name, b / name, shallow=False), name
    pd.testing.assert_frame_equal(kept.requests_df, spilled.requests_df)
    folder = spilled.requests.path.parent
    del spilled
    gc.collect()
    assert not folder.exists()  # the spill folder goes with the records


WL_MAPPING = {"arrival": {"kind": "open", "rate": 20}, "run_time": 0.3, "warmup": 0.1, "seed": 3}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"design": "mono"}, "SimConfig needs workload"),  # was KeyError: 'workload'
        ({"design": "mono", "workload": WL_MAPPING, "seed": "abc"}, "seed must be an integer, got 'abc'"),
        ({"design": "mono", "workload": WL_MAPPING, "replication": 1.5}, "replication must be an integer"),
        ({"design": "mono", "workload": WL_MAPPING, "warm_start": "1"}, "warm_start must be a number"),
        ({"design": "mono", "workload": 5}, "workload: expected a mapping, a WorkloadSpec or a file's path"),
        ("mono", "expected a SimConfig or a mapping"),  # was "unknown SimConfig keys ['m', 'n', 'o']"
        (None, "expected a SimConfig or a mapping"),  # was TypeError
    ],
)
def test_bad_run_arguments_are_one_invalid_argument(config: object, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        sim.run(config)  # type: ignore[arg-type]
    assert message in info.value.message


def test_a_workload_file_path_is_a_workload(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("arrival: {kind: open, rate: 20}\nrun_time: 0.3\nwarmup: 0.1\nseed: 3\n")
    by_path = sim.SimConfig.from_mapping({"design": "mono", "workload": str(path)})
    by_mapping = sim.SimConfig.from_mapping({"design": "mono", "workload": WL_MAPPING})
    assert by_path.workload == by_mapping.workload
    assert (
        sim.SimConfig.from_mapping({"design": "mono", "workload": by_path.workload}).workload
        == by_path.workload
    )
