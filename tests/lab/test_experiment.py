"""The experiment runner: expansion into run ids (pure), resumability, CIs, and a real smoke sweep."""

from __future__ import annotations

import contextlib
import csv
import itertools
import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lab.experiment.cli import command
from lab.experiment.plan import PlannedRun, expand, select
from lab.experiment.runner import _Handle, run_experiment
from lab.experiment.spec import Options, experiment_from_mapping, load_experiment
from lab.experiment.summary import format_table, summary_rows, write_summary
from model.errors import InvalidArgument
from model.results.runs import load_config, load_records, load_summary, run_config, run_exists
from model.results.schema import JobRecord
from model.results.summary import summarize
from model.states import JobState
from realsys.cli import build_parser
from tests.lab.standins import FIXED_PROVENANCE

REPO = Path(__file__).resolve().parents[2]
SEED_PLAN = REPO / "data" / "experiments" / "seed_plan.yaml"
SMOKE = REPO / "data" / "experiments" / "smoke.yaml"
RUN_ID = re.compile(r"^(real|baseline)-(micro|mono|celery)-[A-Za-z0-9_.]+-\d+-r\d+$")


def small(**sweep: Any) -> dict[str, Any]:
    return {
        "name": "t",
        "workload": {"arrival": {"kind": "closed", "clients": 1}, "run_time": 1, "warmup": 0.5, "seed": 5},
        "replications": 2,
        "sweep": sweep,
        "options": {"settle": 0},
    }


# ---------------------------------------------------------------------------- expansion
def test_seed_plan_expands_to_the_full_product_with_stable_ids() -> None:
    exp = load_experiment(SEED_PLAN)
    plan = expand(exp)
    runs = plan.runs
    assert len(runs) == 3 * 7 * 2 * 2 * 3  # designs x concurrency (1..64) x duration x mix x replications
    ids = [r.run_id for r in runs]
    assert len(set(ids)) == len(ids)
    assert all(RUN_ID.match(i) for i in ids), [i for i in ids if not RUN_ID.match(i)]
    assert "real-mono-seed_plan.c16.noop.submit.memory.s12-1-r0" in ids
    assert "baseline-celery-seed_plan.c4.exp50ms.mixed.redis.s12-3-r2" in ids
    assert [r.run_id for r in expand(load_experiment(SEED_PLAN)).runs] == ids  # deterministic
    by_id = {r.run_id: r for r in runs}
    run = by_id["real-micro-seed_plan.c4.exp50ms.mixed.memory.s12-2-r1"]
    assert run.workload.seed == 2 and run.replication == 1
    assert run.workload.arrival.clients == 4  # type: ignore[union-attr]
    assert run.workload.duration.kind == "exponential" and run.workload.duration.mean == 0.05
    assert (run.workload.mix.submit, run.workload.mix.status, run.workload.mix.result) == (0.5, 0.25, 0.25)
    # the closed loop waits for each job at every concurrency (the loop settles)
    assert all(r.workload.arrival.wait_for_completion for r in runs)  # type: ignore[union-attr]
    assert run.workload.run_time == 5 and run.workload.warmup == 1
    # the same replication has the same seed everywhere (common random numbers)
    assert {r.workload.seed for r in runs if r.replication == 2} == {3}
    # one cluster group per design, contiguous, replication-major inside
    groups = [r.group for r in runs]
    changes = [g for i, g in enumerate(groups) if i == 0 or g != groups[i - 1]]
    assert changes == [("micro", "memory", 12), ("mono", "memory", 12), ("celery", "redis", 12)]
    first = [r for r in runs if r.design == "micro"]
    assert [r.replication for r in first] == sorted(r.replication for r in first)
    assert not plan.left_out


def test_axes_labels_celery_and_errors() -> None:
    exp = experiment_from_mapping(
        small(
            design=["micro", "celery"],
            rate=[50, 12.5],
            mix={"sub": {"submit": 1.0}, "lst": {"submit": 0.5, "list": 0.5}},
            store=["memory", "sqlite"],
        )
    )
    plan = expand(exp)
    ids = {r.run_id for r in plan.runs}
    assert "real-micro-t.rate50.sub.sqlite-6-r1" in ids
    assert "real-micro-t.rate12.5.lst.memory-5-r0" in ids
    # celery: no list mix, and the store axis collapses into "redis"
    celery = sorted(r.run_id for r in plan.runs if r.design == "celery")
    assert celery == sorted(
        f"baseline-celery-t.{a}.sub.redis-{5 + r}-r{r}" for a in ("rate50", "rate12.5") for r in (0, 1)
    )
    assert plan.left_out and "list" in plan.left_out[0]
    assert len(plan.runs) == 2 * 2 * 2 * 2 + 4
    assert select(plan.runs, "celery") == [r for r in plan.runs if r.design == "celery"]
    assert {r.run_id for r in select(plan.runs, "real-*-t.rate50.*-r0")} == {
        f"real-micro-t.rate50.{m}.{s}-5-r0" for m in ("sub", "lst") for s in ("memory", "sqlite")
    }

    waiting = small(concurrency=[1, 3])
    waiting["workload"]["arrival"] = {
        "kind": "closed",
        "clients": 1,
        "wait_for_completion": True,
        "think_time": {"kind": "constant", "mean": 0.01},
    }
    arrivals = [r.workload.arrival for r in expand(experiment_from_mapping(waiting)).runs]
    assert [(a.clients, a.wait_for_completion, a.think_time.mean) for a in arrivals] == [  # type: ignore[union-attr]
        (c, True, 0.01) for _ in range(2) for c in (1, 3)
    ]
    plain = [r.workload.arrival for r in expand(experiment_from_mapping(small(concurrency=[2]))).runs]
    assert not any(a.wait_for_completion for a in plain)  # type: ignore[union-attr]

    assert not experiment_from_mapping(small()).options.host_probe  # off unless asked for
    assert experiment_from_mapping({**small(), "options": {"host_probe": True}}).options.host_probe
    with pytest.raises(InvalidArgument, match="not both"):
        experiment_from_mapping(small(concurrency=[1], rate=[10]))
    with pytest.raises(InvalidArgument, match="label"):
        experiment_from_mapping(small(duration={"bad-label": {"kind": "constant", "mean": 0}}))
    with pytest.raises(InvalidArgument, match="unknown axes"):
        experiment_from_mapping(small(colour=["red"]))
    with pytest.raises(InvalidArgument, match="does not divide"):
        expand(experiment_from_mapping(small(design=["mono"], slots=[4])))
    with pytest.raises(InvalidArgument, match="exponential"):
        expand(experiment_from_mapping(small(duration={"x": {"kind": "exponential", "mean": 0}})))


# ---------------------------------------------------------------------------- resumability (fakes)
class FakeClusters:
    def __init__(self) -> None:
        self.started: list[tuple[str, str, int]] = []

    @contextlib.contextmanager
    def __call__(self, design: str, store: str, slots: int, options: Options) -> Iterator[Any]:
        self.started.append((design, store, slots))
        yield _Handle({"factory": "none:none"}, {"store": store, "total_slots": slots})


def fake_run(
    handle: Any, run: PlannedRun, options: Options
) -> tuple[dict[str, Any], list[Any], list[Any], dict[str, Any]]:
    config = run_config(
        run_id=run.run_id,
        kind=run.kind,
        design=run.design,
        workload=run.workload,
        parameters=handle.parameters,
        replication=run.replication,
        started_at="2000-01-01T00:00:00Z",
        provenance_info=FIXED_PROVENANCE,
    )
    summary = summarize(
        [],
        [],
        window=(run.workload.warmup, run.workload.total_time),
        run_id=run.run_id,
        kind=run.kind,
        design=run.design,
        offered_rate=None,
        loadgen={
            "processes": 1,
            "cpu_utilisation": 0.1,
            "achieved_rate": 0.0,
            "bottleneck": False,
            "bottleneck_reason": "",
        },
    )
    return config, [], [], summary


def test_second_run_does_nothing_and_changed_plans_are_refused(tmp_path: Path) -> None:
    exp = experiment_from_mapping(small(design=["micro", "mono"], concurrency=[1, 2]))
    clusters = FakeClusters()
    report = run_experiment(
        exp, tmp_path, progress=False, cluster_factory=clusters, run_function=fake_run, log=lambda _: None
    )
    assert len(report.done) == 8 and report.skipped == 0 and not report.failed
    assert clusters.started == [("micro", "memory", 12), ("mono", "memory", 12)]  # one per group
    assert all(run_exists(tmp_path, r) for r in report.done)

    again = run_experiment(exp, tmp_path, progress=False, cluster_factory=clusters, run_function=fake_run)
    assert again.done == [] and again.skipped == 8
    assert len(clusters.started) == 2  # no cluster was brought up for nothing

    fresh = FakeClusters()
    only = run_experiment(
        experiment_from_mapping(small(design=["micro", "mono"], concurrency=[1, 2, 3])),
        tmp_path,
        only="real-mono-*",
        fresh_cluster=True,
        progress=False,
        cluster_factory=fresh,
        run_function=fake_run,
    )
    assert sorted(only.done) == [f"real-mono-t.c3-{5 + r}-r{r}" for r in (0, 1)]
    assert len(fresh.started) == 2  # fresh cluster per run

    changed = small(design=["micro", "mono"], concurrency=[1, 2])
    changed["workload"]["run_time"] = 2
    with pytest.raises(InvalidArgument, match="different workload"):
        run_experiment(
            experiment_from_mapping(changed), tmp_path, progress=False, cluster_factory=clusters,
            run_function=fake_run,
        )  # fmt: skip


def test_a_failed_run_is_reported_and_the_cluster_replaced(tmp_path: Path) -> None:
    exp = experiment_from_mapping(small(design=["mono"], concurrency=[1, 2]))
    clusters = FakeClusters()
    calls: list[str] = []

    def flaky(handle: Any, run: PlannedRun, options: Options) -> Any:
        calls.append(run.run_id)
        if len(calls) == 2:
            raise RuntimeError("boom")
        return fake_run(handle, run, options)

    report = run_experiment(
        exp, tmp_path, progress=False, cluster_factory=clusters, run_function=flaky, log=lambda _: None
    )
    assert len(report.done) == 3 and list(report.failed) == [calls[1]]
    assert len(clusters.started) == 2


def test_summary_table_groups_replications(tmp_path: Path) -> None:
    exp = experiment_from_mapping(small(design=["micro"], concurrency=[1, 2]))
    run_experiment(
        exp, tmp_path / "runs", progress=False, cluster_factory=FakeClusters(), run_function=fake_run
    )
    rows = summary_rows(exp, tmp_path / "runs")
    assert [(r["design"], r["arrival"], r["concurrency"], r["n"]) for r in rows] == [
        ("micro", "c1", 1, 2),
        ("micro", "c2", 2, 2),
    ]
    path = write_summary(rows, tmp_path / "summary.csv")
    with open(path) as f:
        table = list(csv.DictReader(f))
    assert len(table) == 2 and float(table[0]["jobs_per_s_mean"]) == 0.0
    assert "req/s" in format_table(rows)


# ---------------------------------------------------------------------------- end to end
@pytest.mark.slow
@pytest.mark.timeout(90)
def test_smoke_experiment_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, summary = tmp_path / "runs", tmp_path / "summary.csv"
    argv = ["experiment", "run", str(SMOKE), "--runs-dir", str(out), "--summary", str(summary), "--quiet"]
    assert command(build_parser("experiment")[0].parse_args(argv)) == 0
    exp = load_experiment(SMOKE)
    ids = [r.run_id for r in expand(exp).runs]
    assert ids == ["real-mono-smoke.memory-7-r0", "real-mono-smoke.memory-8-r1"]
    for run_id in ids:
        s = load_summary(out / run_id)
        assert s["design"] == "mono" and s["kind"] == "real"
        assert s["jobs"]["submitted"] > 0 and s["jobs"]["succeeded"] == s["jobs"]["submitted"]
        assert s["throughput"]["jobs_per_s"] > 0 and not s["errors"]
        # wait mode: completed_per_s counts the terminal records ending in the window, and each of
        # the 2 clients has at most one job in the system
        requests, jobs = load_records(out / run_id)
        start, end = s["window"]["start"], s["window"]["end"]
        ended = sum(math.isfinite(j.end_time) and start <= j.end_time < end for j in jobs)
        assert s["throughput"]["completed_per_s"] == pytest.approx(ended / (end - start)) and ended > 0
        events = sorted([(j.submit_time, 1) for j in jobs] + [(j.end_time, -1) for j in jobs])
        assert max(itertools.accumulate(step for _, step in events)) <= 2
        assert len(jobs) == sum(r.op.name == "SUBMIT" and r.status == "OK" for r in requests)
        config = load_config(out / run_id)
        assert config["parameters"]["store"] == "memory" and config["parameters"]["total_slots"] == 12
        assert config["parameters"]["host_probe"]["busy_us"] > 0  # options.host_probe: true
        assert (out / run_id / "requests.csv.gz").is_file() and (out / run_id / "jobs.csv.gz").is_file()
    with open(summary) as f:
        (row,) = list(csv.DictReader(f))
    assert row["design"] == "mono" and row["n"] == "2" and float(row["jobs_per_s_mean"]) > 0
    assert row["jobs_per_s_ci95"] != ""
    assert float(row["completed_per_s_mean"]) > 0 and row["completed_per_s_ci95"] != ""
    assert float(row["completion_p50_ms_mean"]) > 0 and float(row["completion_p99_ms_mean"]) > 0

    capsys.readouterr()
    assert command(build_parser("experiment")[0].parse_args(argv)) == 0  # resumed: nothing left to run
    assert "2 already done, 0 run now" in capsys.readouterr().out


def test_a_run_that_leaves_a_backlog_gets_the_next_run_a_fresh_cluster(tmp_path: Path) -> None:
    exp = experiment_from_mapping(small(design=["micro"], concurrency=[1, 2]))
    clusters = FakeClusters()
    unfinished = JobRecord("j1", 0.0, 0.01, math.nan, JobState.PENDING, 0, 0.0)

    def backlog_once(handle: Any, run: PlannedRun, options: Options) -> Any:
        config, requests, _, summary = fake_run(handle, run, options)
        return config, requests, [unfinished] if run.replication == 0 and "c1" in run.run_id else [], summary

    report = run_experiment(
        exp, tmp_path, progress=False, cluster_factory=clusters, run_function=backlog_once, log=lambda _: None
    )
    assert len(report.done) == 4 and not report.failed
    assert len(clusters.started) == 2  # replaced once, after the first run
