"""The simulator bench's report (lab/bench/simulator.py): paired ratios against the bare reference of
the same round, and issue 22's targets as MET / NOT MET lines, from given figures (nothing timed)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from lab.bench.figures import Series
from lab.bench.simulator import SimBench, ab, main, one_node_params, report
from sim.params import SimParams


def _bench() -> SimBench:
    b = SimBench(bare=Series([100_000.0, 50_000.0, 90_000.0]), bare_cpu=Series([1.0, 1.0, 1.0]))
    for name, per_round in {
        "mono/ideal": [12_000.0, 6_000.0, 10_000.0],
        "mono/real": [11_000.0, 5_500.0, 9_900.0],  # 0.11 of bare every round: met despite the drift
        "micro/ideal": [9_000.0, 4_000.0, 8_000.0],
        "micro/real": [5_000.0, 2_500.0, 4_500.0],  # 0.05: not met
    }.items():
        b.node[name] = Series(per_round)
        b.node_cpu[name] = Series(per_round)
        b.node_vs_bare[name] = Series([v / w for v, w in zip(per_round, b.bare.values, strict=True)])
        b.summaries[name] = "..."
    b.cluster = {"mono": Series([10.5, 11.0, 9.0]), "micro": Series([6.0, 6.3, 5.9])}
    b.cluster_jobs = {"mono": Series([1.0]), "micro": Series([1.0])}
    b.summaries |= {"cluster/mono": "...", "cluster/micro": "...", "whatif": "..."}
    b.whatif, b.whatif_jobs = Series([2.1, 2.3, 2.2]), Series([4000.0])
    return b


def test_report_prints_every_target_with_its_verdict() -> None:
    args = argparse.Namespace(
        repeats=3, customers=100_000, seconds=30.0, calibration="", whatif_jobs=100_000, jobs=1_000_000
    )
    big = {
        "wall_seconds": 400.0,
        "cpu_seconds": 390.0,
        "sim_per_wall": 1.25,
        "jobs_per_wall_second": 2500.0,
        "peak_rss_mib": 600.0,
        "summary": "...",
    }
    text = report(_bench(), args, big, (0.0, 0.0, 0.0))
    targets = text.split("Targets (issue 22)")[1].splitlines()[1:]
    verdicts = {line.split(":")[0].split("  ")[-1].strip(): line.split()[0] for line in targets}
    assert verdicts == {
        "six-process mono near saturation >= 10x real time": "MET",
        "six-process micro near saturation >= 10x real time": "NOT",
        "100-node what-if >= 10x real time (100,000-job runs)": "NOT",
        "real-cost one-node mono >= 1/10 of bare SimPy customers per wall-s": "MET",
        "real-cost one-node micro >= 1/10 of bare SimPy customers per wall-s": "NOT",
        "memory, peak RSS of a 1,000,000-job run <= ~500 MB": "NOT",
    }
    assert "0.110 [0.110-0.110] of bare" in text  # the paired ratio has no spread: the drift cancels
    assert "629 MB" in text  # 600 MiB


def test_real_costs_come_from_the_calibration_or_the_placeholders() -> None:
    assert one_node_params("mono", "ideal", 12, "local").name == "ideal"
    placeholders = one_node_params("micro", "real", 12, "")
    assert (placeholders.name, placeholders.nodes, placeholders.slots) == (SimParams().name, 1, 12)


def test_ab_pairs_this_tree_with_another_checkout() -> None:
    """--ab against this very tree: both sides run, every case gets a paired ratio (timing noise
    makes its value anything near 1, so only its presence and sign are checked)."""
    here = str(Path(__file__).resolve().parents[2])
    text = ab(here, pairs=2, seconds=0.2, jobs=100)
    lines = text.splitlines()
    assert "2 pairs" in lines[0]
    cases = {line.split()[0]: float(line.split("this/other ")[1].split()[0]) for line in lines[1:]}
    assert set(cases) == {"mono", "micro", "whatif"}
    assert all(ratio > 0 for ratio in cases.values())


def test_ab_refuses_a_folder_that_is_not_a_checkout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stop:
        main(["--ab", str(tmp_path)])
    assert stop.value.code != 0
    assert "not a dtq checkout" in capsys.readouterr().err
