"""The capacity planner (sim/plan.py, `dtq plan`): the SLO grammar, the search on stubbed evaluators
(monotone curves, no feasible point, ties), the binding resource, one small simulated plan end to
end, and the command's one-line errors."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

import sim
from model.errors import InvalidArgument
from model.workload import workload_from_mapping
from realsys.cli import main
from sim.plan import (
    Config,
    Evaluation,
    Goal,
    binding,
    choose,
    next_smaller,
    parse_slo,
    plan,
    search,
)

WORKLOAD = {
    "arrival": {"kind": "open", "rate": 100, "max_in_flight": 256},
    "mix": {"submit": 1.0},
    "duration": {"kind": "constant", "mean": 0.02},
    "run_time": 2,
    "warmup": 0.5,
    "seed": 5,
}


# ------------------------------------------------------------------------------------ the grammar
@pytest.mark.parametrize(
    ("text", "path", "op", "value"),
    [
        ("p99<50ms", "completion_ms.p99", "<", 50.0),
        (" p95 <= 1.5 s ", "completion_ms.p95", "<=", 1500.0),
        ("p99.9<200us", "completion_ms.p999", "<", 0.2),
        ("p999<2ms", "completion_ms.p999", "<", 2.0),
        ("completion.p50<10ms", "completion_ms.p50", "<", 10.0),
        ("submit.p99<=5ms", "latency_ms.submit.p99", "<=", 5.0),
        ("p99(status)<3ms", "latency_ms.status.p99", "<", 3.0),
        ("submit.p99.9<8ms", "latency_ms.submit.p999", "<", 8.0),
        ("all.mean<1e1ms", "latency_ms.all.mean", "<", 10.0),
        ("throughput>=100/s", "throughput.completed_per_s", ">=", 100.0),
        ("requests > 50 req/s", "throughput.requests_per_s", ">", 50.0),
    ],
)
def test_good_goals(text: str, path: str, op: str, value: float) -> None:
    (goal,) = parse_slo(text)
    assert (goal.path, goal.op) == (path, op)
    assert goal.value == pytest.approx(value)


def test_goals_join_with_comma_or_and() -> None:
    goals = parse_slo("p99<50ms, throughput>=100/s and submit.p99<5ms")
    assert [g.path for g in goals] == [
        "completion_ms.p99",
        "throughput.completed_per_s",
        "latency_ms.submit.p99",
    ]


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "one or more goals"),
        ("p99", "expected METRIC CMP VALUE UNIT"),
        ("p99<<5ms", "expected METRIC CMP VALUE UNIT"),
        ("p99<50", "needs a unit"),
        ("p99<50kg", "needs a unit"),
        ("p99>50ms", "upper bound"),
        ("throughput<5/s", "lower bound"),
        ("throughput>=5ms", "needs a unit"),
        ("p98<5ms", "unknown metric 'p98'"),
        ("foo.p99<5ms", "unknown latency 'foo'"),
        ("submit.p97<5ms", "unknown statistic 'p97'"),
        ("p99<0ms", "must be > 0"),
        ("p99<5ms, p99<6ms", "appears twice"),
    ],
)
def test_bad_goals_are_one_line_errors(text: str, says: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_slo(text)
    assert says in info.value.message and "\n" not in info.value.message


def test_goal_margin_and_met() -> None:
    lat, thr = Goal("p99<50ms", "completion_ms.p99", "<", 50.0), Goal("t", "x", ">=", 10.0)
    assert lat.met(49.9) and not lat.met(50.0) and not lat.met(math.nan) and not lat.met(math.inf)
    assert lat.margin(40.0) == 10.0 and thr.margin(12.0) == 2.0 and thr.met(10.0)


# ----------------------------------------------------------------------------- the search (stubbed)
GOAL = Goal("p99<100ms", "completion_ms.p99", "<", 100.0)


def stub(
    metric: Callable[[Config], float], calls: list[Config] | None = None
) -> Callable[..., list[Evaluation]]:
    """An evaluator whose metric is `metric(config)` exactly (three equal replications)."""

    def evaluate(configs: Sequence[Config]) -> list[Evaluation]:
        if calls is not None:
            calls.extend(configs)
        return [Evaluation(c, {GOAL.path: (metric(c),) * 3}, {"n1": 0.1}, {"h0": 0.2}, 0.1) for c in configs]

    return evaluate


def monotone(c: Config) -> float:
    # Design B: falls with total slots; Design A: 12 slots are needed (6 processes)
    if c.design == "micro":
        return 80.0 if c.slots >= 8 else 500.0
    return 1000.0 / c.total_slots


def test_bisection_finds_what_the_grid_finds_with_fewer_points() -> None:
    slots = (1, 2, 4)
    calls: list[Config] = []
    seen = search(stub(monotone, calls), [GOAL], ("micro", "mono"), slots, 12, curve=False)
    grid = search(stub(monotone), [GOAL], ("micro", "mono"), slots, 12, grid=True)
    assert choose(seen, [GOAL]) == choose(grid, [GOAL])
    best, runner = choose(seen, [GOAL])
    # 1000/total < 100 needs > 10 slots: 3 nodes x 4 (3 processes) beats 6 x 2 and 11 x 1
    assert best == Config("mono", 3, 4)
    assert runner == Config("mono", 6, 2)
    assert len(calls) < len(grid) and len(calls) == len(set(calls))  # nothing simulated twice
    smaller = next_smaller(best, slots)
    assert smaller == Config("mono", 2, 4) and smaller in seen and not seen[smaller].meets([GOAL])
    # each line's boundary is exact: its smallest meeting node count, and the one below misses
    for s, n in ((1, 11), (2, 6), (4, 3)):
        assert seen[Config("mono", n, s)].meets([GOAL]) and not seen[Config("mono", n - 1, s)].meets([GOAL])


def test_a_curve_that_rises_again_past_the_host_cores() -> None:
    # one host: 2 and 3 nodes meet, 4+ compete for its cores and miss; climbing from 1 finds 2
    def u_shaped(c: Config) -> float:
        return {1: 150.0, 2: 90.0, 3: 80.0}.get(c.nodes, 200.0)

    seen = search(stub(u_shaped), [GOAL], ("mono",), (2,), 8, curve=False)
    assert choose(seen, [GOAL])[0] == Config("mono", 2, 2)
    assert Config("mono", 8, 2) not in seen  # the climb stopped at the first count that met


def test_curve_fills_the_best_line() -> None:
    seen = search(stub(monotone), [GOAL], ("mono",), (1, 2, 4), 6)
    assert {Config("mono", n, 4) for n in range(1, 7)} <= set(seen)


def test_design_a_is_chosen_when_b_needs_more_processes() -> None:
    seen = search(stub(monotone), [GOAL], ("micro", "mono"), (1, 2, 8), 12, curve=False)
    best, runner = choose(seen, [GOAL])
    # B: 2 nodes x 8 (2 processes) beats A (6 processes, 8 slots); A is the runner-up line
    assert best == Config("mono", 2, 8) and runner == Config("micro", 1, 8)
    micro_only = search(stub(monotone), [GOAL], ("micro",), (1, 2, 8), 12)
    best, runner = choose(micro_only, [GOAL])
    assert best == Config("micro", 1, 8) and runner is None
    assert next_smaller(best, (1, 2, 8)) == Config("micro", 1, 2)


def test_no_feasible_point() -> None:
    seen = search(stub(lambda c: 150.0), [GOAL], ("micro", "mono"), (1, 2), 8, curve=False)
    assert choose(seen, [GOAL]) == (None, None)
    # each line climbed 1, 2, 4, 8 and gave up at max_nodes
    assert {c for c in seen if c.design == "mono"} == {
        Config("mono", n, s) for n in (1, 2, 4, 8) for s in (1, 2)
    }
    result = plan(
        workload_from_mapping(WORKLOAD), [GOAL], slots=(1, 2), max_nodes=8, evaluator=stub(lambda c: 150.0)
    )
    assert result.best is None and set(result.bindings) == {"micro", "mono"}
    assert "NO configuration in range meets the goal" in result.text()


def test_ties_go_to_fewer_slots_then_the_larger_margin() -> None:
    # equal processes: 1 x 1 (1 slot) beats 1 x 2 (2 slots) although both meet
    seen = search(stub(lambda c: 50.0), [GOAL], ("mono",), (1, 2), 4, curve=False)
    best, runner = choose(seen, [GOAL])
    assert best == Config("mono", 1, 1) and runner == Config("mono", 1, 2)
    # equal cost (processes and slots): the larger margin wins, whatever the order of evaluation
    tie = {
        Config("micro", 1, 6): Evaluation(Config("micro", 1, 6), {GOAL.path: (90.0, 90.0)}),
        Config("mono", 6, 1): Evaluation(Config("mono", 6, 1), {GOAL.path: (60.0, 60.0)}),
    }
    assert choose(tie, [GOAL])[0] == Config("mono", 6, 1)
    tie[Config("mono", 6, 1)] = Evaluation(Config("mono", 6, 1), {GOAL.path: (90.0, 90.0)})
    assert choose(tie, [GOAL])[0] == Config("micro", 1, 6)  # then the name: deterministic


def test_overloaded_replication_fails_a_latency_goal() -> None:
    ev = Evaluation(Config("mono", 1, 1), {GOAL.path: (10.0, math.inf, 10.0)})
    assert math.isinf(ev.mean(GOAL)) and not ev.meets([GOAL])
    sure = Evaluation(Config("mono", 1, 1), {GOAL.path: (80.0, 81.0, 82.0)})
    unsure = Evaluation(Config("mono", 1, 1), {GOAL.path: (60.0, 99.0, 130.0)})
    assert not sure.uncertain([GOAL]) and unsure.uncertain([GOAL])
    margin, lo, hi = sure.margin(GOAL)
    assert margin == pytest.approx(19.0) and lo < margin < hi


# ------------------------------------------------------------------------------ binding resource
def _ev(slot_load: float = 0.1, util: dict[str, float] | None = None, host: float = 0.2) -> Evaluation:
    return Evaluation(
        Config("mono", 4, 2), {GOAL.path: (150.0,)}, util or {"n1": 0.2}, {"h0": host}, slot_load
    )


def test_binding_names_the_resource() -> None:
    wl = workload_from_mapping(WORKLOAD)  # 20 ms jobs: under the 100 ms goal
    assert binding(_ev(slot_load=1.3), [GOAL], wl).startswith("slots")
    assert "CPU of process 'job'" in binding(_ev(util={"job": 0.97, "gateway": 0.5}), [GOAL], wl)
    assert "load generator" in binding(_ev(util={"loadgen0": 0.9, "n1": 0.3}), [GOAL], wl)
    assert binding(_ev(host=0.95), [GOAL], wl).startswith("CPU of the host")
    assert binding(_ev(), [GOAL], wl).startswith("hops")
    slow = workload_from_mapping({**WORKLOAD, "duration": {"kind": "exponential", "mean": 0.05}})
    assert binding(_ev(), [GOAL], slow).startswith("the jobs themselves")  # p99 of exp(50 ms) = 230 ms


# ------------------------------------------------------------------------- end to end, simulated
def test_small_plan_end_to_end(tmp_path: Path) -> None:
    # 100 jobs/s of 20 ms: 2 slots' worth. 1 node x 2 slots saturates; 2 nodes x 2 do not
    result = plan(
        workload_from_mapping(WORKLOAD),
        "p99<100ms",
        designs=("mono",),
        max_nodes=3,
        slots=(1, 2),
        replications=2,
        calibration="local",
        workers=1,
    )
    assert result.best is not None and result.evaluations[result.best].meets(result.goals)
    assert result.best.design == "mono" and result.best.total_slots >= 3
    if result.smaller is not None:
        assert not result.evaluations[result.smaller].meets(result.goals)
    written = result.save(tmp_path / "out")
    names = {p.name for p in written}
    assert {"plan.json", "curve.csv", "points.csv"} <= names
    doc = json.loads((tmp_path / "out" / "plan.json").read_text())
    assert doc["best"]["nodes"] == result.best.nodes and doc["points"]
    with pytest.raises(InvalidArgument, match="exist"):
        result.save(tmp_path / "out")
    again = plan(
        workload_from_mapping(WORKLOAD), "p99<100ms", designs=("mono",), max_nodes=3, slots=(1, 2),
        replications=2, calibration="local", workers=1,
    )  # fmt: skip
    assert again.to_mapping() == result.to_mapping()  # deterministic


# ----------------------------------------------------------------------------------- the command
def _dtq(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    out, err = capsys.readouterr()
    return int(exit_info.value.code or 0), out, err


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--slo", "p99>5ms"], "upper bound"),
        (["--slo", "latency<5ms"], "unknown metric"),
        (["--slo", "p99<5ms", "--slots", "0,2"], "--slots"),
        (["--slo", "p99<5ms", "--designs", "mono,other"], "--designs"),
        (["--slo", "p99<5ms", "--calibration", "no-such-calibration"], "no calibration"),
        (["--slo", "p99<5ms", "--max-nodes", "0"], "--max-nodes"),
    ],
)
def test_cli_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], says: str
) -> None:
    workload = tmp_path / "w.yaml"
    workload.write_text(json.dumps(WORKLOAD))
    code, out, err = _dtq(["plan", "--workload", str(workload), *extra], capsys)
    assert code == 2 and out == ""
    assert says in err and err.startswith("dtq plan") and len(err.strip().splitlines()) == 1


def test_cli_missing_workload(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _dtq(["plan", "--workload", "/nonexistent.yaml", "--slo", "p99<5ms"], capsys)
    assert code == 2 and "not a file" in err and len(err.strip().splitlines()) == 1


def test_cli_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workload = tmp_path / "w.yaml"
    workload.write_text(json.dumps(WORKLOAD))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "plan.json").write_text("{}")
    code, _, err = _dtq(
        ["plan", "--workload", str(workload), "--slo", "p99<5ms", "--out", str(tmp_path / "out")], capsys
    )
    assert code == 2 and "--force" in err


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_plan_on_a_dask_cluster_matches_the_local_run() -> None:
    """Given an address, the planner's rounds run on a real Dask cluster (sim.local_cluster), with the
    same answer as in this process."""
    kwargs: dict[str, Any] = {"designs": ("mono",), "max_nodes": 2, "slots": (2,), "replications": 1}
    workload = workload_from_mapping(WORKLOAD)
    here = plan(workload, "p99<100ms", workers=1, **kwargs)
    with sim.local_cluster(workers=1) as address:
        there = plan(workload, "p99<100ms", address=address, **kwargs)
    assert there.to_mapping() == here.to_mapping()
