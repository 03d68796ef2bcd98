"""The capacity planner: the cheapest design x node count x slots per node that meets a goal.

    import sim.plan
    from model.results.runs import load_workload
    answer = sim.plan.plan(load_workload("data/workloads/mixed-open.yaml"), "p99<300ms",
                           max_nodes=8, slots=(1, 2, 4), replications=3, calibration="local")
    print(answer.text())
    answer.save("/tmp/plan")  # plan.json, curve.csv, points.csv, curve.png

Goals (`parse_slo`): `METRIC CMP VALUE UNIT`, several joined by `,` or ` and ` (all must hold).
METRIC is a percentile (p50, p95, p99, p99.9 or p999, mean, max) of submit -> done (`p99`,
`completion.p99`) or of an API method's latency (`submit.p99`, or `p99(submit)`; methods: all, submit,
status, result, list, cancel), with `<`/`<=` and a unit of us, ms or s; or `throughput` (jobs completed
per second) / `requests` (OK requests per second) with `>`/`>=` and `/s`.

Configurations (`Config`): Design B (`mono`) runs `nodes` identical node processes of `slots` slots
each. Design A (`micro`) is always its six processes (gateway, job, queue, coordinator, worker,
result) with one worker process of `slots` slots: the simulator and `dtq cluster up` run one worker
process, and a second one would relieve only the worker's CPU, which the planner reports when it is
the one that binds. So Design A has one point per slots value, at 6 processes, and its "curve" against
node count is that point. Cost is processes (what a deployment pays for: a process is a container, or
a core, as each is one single-threaded event loop), then total slots; ties go to the larger margin.

Search: every (design, slots) line is searched at once, a round of points per sweep (sim.sweep's
machinery: the local pool, or a Dask cluster at `address`). Design B's lines try node counts 1, 2, 4,
... (up to max_nodes) until one meets the goal, then bisect between it and the last that missed: the
smallest meeting count, if the metric falls as nodes are added up to there. It need not fall beyond:
on one host, nodes past its cores compete for them and latency rises again, which is why the search
climbs from 1 rather than starting at max_nodes. `grid=True` evaluates every node count instead
(for curves that are not monotone). Then the curve of each design's best line is filled in
(`curve=True`). A point meets the goals when the mean over `replications` does (the margin's
Student-t CI says how sure that is; `uncertain` flags a CI that crosses a goal). A replication with
jobs left unfinished or requests refused for overload (RESOURCE_EXHAUSTED, UNAVAILABLE,
DEADLINE_EXCEEDED, CANCELLED) counts as infinitely late for a latency goal.

The binding resource, named when nothing in range meets the goal (`binding`), at each design's
configuration closest to the goal (the largest relative margin), in this order: slots (offered job
load / total slots >= SLOT_BUSY), the CPU of the busiest process (busy share >= PROC_BUSY; the load
generator when it is the one), the host's cores (>= HOST_BUSY of all cores), the jobs' own duration (a
completion goal under the workload's duration percentile), else hops: nothing is saturated, so the
floor is the path's hops and service times.
Busy shares are sim.api.run's (over the whole simulated run, warm start and drain included).
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast

import numpy as np

from model.errors import InvalidArgument
from model.results.stats import mean_ci
from model.results.summary import metric as summary_metric
from model.workload import OpenLoop, WorkloadSpec
from sim import sweeps
from sim.api import DESIGNS, Design, PlaceholderWarning, SimConfig
from sim.micro import ROLES as MICRO_ROLES
from sim.params import SimParams, load_params

if TYPE_CHECKING:  # pandas only when a table is built (a heavy import, as in sim/sweeps.py)
    import pandas as pd

SLOT_BUSY = 0.95
PROC_BUSY = 0.85
HOST_BUSY = 0.9
OVERLOAD_CODES = ("RESOURCE_EXHAUSTED", "UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED")
DEFAULT_SLOTS = (1, 2, 4, 8)
DEFAULT_MAX_NODES = 8
DESIGN_LABEL = {"micro": "A (micro)", "mono": "B (mono)"}

# --------------------------------------------------------------------------------------- goals
_PCT = {
    "p50": "p50",
    "p95": "p95",
    "p99": "p99",
    "p99.9": "p999",
    "p999": "p999",
    "mean": "mean",
    "max": "max",
}
_OPS = ("all", "submit", "status", "result", "list", "cancel")
_TIME_UNITS = {"us": 1e-3, "µs": 1e-3, "ms": 1.0, "s": 1000.0}
_RATE_UNITS = ("/s", "jobs/s", "req/s", "requests/s")
_GOAL = re.compile(
    r"^\s*(?P<metric>[A-Za-z0-9_.()]+?)\s*(?P<cmp><=|>=|<|>)\s*(?P<num>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>\S*)\s*$"
)


@dataclass(frozen=True, slots=True)
class Goal:
    """One goal: `path` into summary.json, `op` its comparison, `value` in the summary's unit (ms or
    per second), `text` as written."""

    text: str
    path: str
    op: Literal["<", "<=", ">", ">="]
    value: float

    @property
    def upper(self) -> bool:
        """A latency (an upper bound) rather than a throughput (a lower bound)."""
        return self.op in ("<", "<=")

    @property
    def unit(self) -> str:
        return "ms" if self.upper else "/s"

    def met(self, x: float) -> bool:
        if math.isnan(x):
            return False
        return {"<": x < self.value, "<=": x <= self.value, ">": x > self.value, ">=": x >= self.value}[
            self.op
        ]

    def margin(self, x: float) -> float:
        """How far inside the goal (positive) or outside (negative), in the goal's unit."""
        return self.value - x if self.upper else x - self.value


def parse_goal(text: str) -> Goal:
    m = _GOAL.match(text)
    if not m:
        raise InvalidArgument(
            f"goal {text.strip()!r}: expected METRIC CMP VALUE UNIT, "
            "e.g. p99<50ms, submit.p99<=5ms, throughput>=100/s"
        )
    name, op, num, unit = m["metric"].lower(), m["cmp"], float(m["num"]), m["unit"]
    where = f"goal {text.strip()!r}"
    if name in ("throughput", "requests"):
        if op not in (">", ">="):
            raise InvalidArgument(f"{where}: a throughput goal is a lower bound: use > or >=")
        if unit not in _RATE_UNITS:
            raise InvalidArgument(f"{where}: a throughput needs a unit of {', '.join(_RATE_UNITS)}")
        path = "throughput.completed_per_s" if name == "throughput" else "throughput.requests_per_s"
        return Goal(text.strip(), path, op, num)  # type: ignore[arg-type]
    call = re.fullmatch(r"([a-z0-9.]+)\((\w+)\)", name)
    if call:
        pct, what = call[1], call[2]
    elif name in _PCT:
        pct, what = name, "completion"
    elif "." not in name:
        raise InvalidArgument(
            f"{where}: unknown metric {name!r} (a percentile: {', '.join(_PCT)}; a method's: submit.p99; "
            "throughput; requests)"
        )
    else:
        what, _, pct = name.partition(".")  # submit.p99 (submit.p99.9 keeps "p99.9")
    if pct not in _PCT:
        raise InvalidArgument(f"{where}: unknown statistic {pct!r} (known: {', '.join(_PCT)})")
    if what != "completion" and what not in _OPS:
        raise InvalidArgument(
            f"{where}: unknown latency {what!r} (completion, or an API method: {', '.join(_OPS)})"
        )
    if op not in ("<", "<="):
        raise InvalidArgument(f"{where}: a latency goal is an upper bound: use < or <=")
    if unit not in _TIME_UNITS:
        raise InvalidArgument(f"{where}: a latency needs a unit of us, ms or s, got {unit or 'none'!r}")
    if num <= 0:
        raise InvalidArgument(f"{where}: a latency bound must be > 0")
    path = f"completion_ms.{_PCT[pct]}" if what == "completion" else f"latency_ms.{what}.{_PCT[pct]}"
    return Goal(text.strip(), path, op, num * _TIME_UNITS[unit])  # type: ignore[arg-type]


def parse_slo(text: str) -> tuple[Goal, ...]:
    """One or more goals joined by `,` or ` and `; InvalidArgument (one line) for a bad one."""
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument("an SLO is one or more goals, e.g. 'p99<50ms' or 'p99<50ms, throughput>=100/s'")
    parts = [p for p in re.split(r",|\band\b", text) if p.strip()]
    if not parts:
        raise InvalidArgument(f"SLO {text!r}: no goal in it")
    goals = tuple(parse_goal(p) for p in parts)
    paths = [g.path for g in goals]
    if len(set(paths)) != len(paths):
        raise InvalidArgument(f"SLO {text!r}: a metric appears twice")
    return goals


# --------------------------------------------------------------------------------- configurations
@dataclass(frozen=True, slots=True, order=True)
class Config:
    """A design, its node count (Design B's nodes; Design A: 1, its one worker process) and slots per
    node (Design A: the worker's)."""

    design: str
    nodes: int
    slots: int

    @property
    def processes(self) -> int:
        return len(MICRO_ROLES) if self.design == "micro" else self.nodes

    @property
    def total_slots(self) -> int:
        return self.nodes * self.slots

    @property
    def cost(self) -> tuple[int, int]:
        return (self.processes, self.total_slots)

    def point(self) -> dict[str, Any]:
        """Its sweep grid point (sim/sweeps.py keys)."""
        if self.design == "micro":
            return {"design": "micro", "slots": self.slots}
        return {"design": "mono", "nodes": self.nodes, "slots": self.total_slots}

    @property
    def label(self) -> str:
        if self.design == "micro":
            return f"A (micro): 6 processes, worker {self.slots} slots"
        return f"B (mono): {self.nodes} node{'s' if self.nodes > 1 else ''} x {self.slots} slots"


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A configuration's replications: per goal the values, their mean and CI half-width; busy shares
    (mean over replications) of each process and host, and the offered slot load."""

    config: Config
    values: Mapping[str, tuple[float, ...]]  # goal path -> per replication
    utilisation: Mapping[str, float] = field(default_factory=dict)
    host_utilisation: Mapping[str, float] = field(default_factory=dict)
    slot_load: float = 0.0

    def mean(self, goal: Goal) -> float:
        return _mean_half(self.values[goal.path])[0]

    def half(self, goal: Goal) -> float:
        return _mean_half(self.values[goal.path])[1]

    def meets(self, goals: Sequence[Goal]) -> bool:
        return all(g.met(self.mean(g)) for g in goals)

    def margin(self, goal: Goal) -> tuple[float, float, float]:
        """(margin, CI low, CI high) in the goal's unit: positive is inside the goal."""
        m, h = self.mean(goal), self.half(goal)
        lo, hi = goal.margin(m + h if goal.upper else m - h), goal.margin(m - h if goal.upper else m + h)
        return goal.margin(m), lo, hi

    def relative_margin(self, goals: Sequence[Goal]) -> float:
        """The tightest goal's margin over its bound (0.2: 20% inside)."""
        return min(g.margin(self.mean(g)) / g.value if g.value else g.margin(self.mean(g)) for g in goals)

    def uncertain(self, goals: Sequence[Goal]) -> bool:
        """A goal's CI crosses its bound: more replications would be needed to be sure."""
        return any(self.margin(g)[1] < 0 < self.margin(g)[2] for g in goals)

    def busiest(self) -> tuple[str, float]:
        procs = {k: v for k, v in self.utilisation.items()}
        if not procs:
            return "", 0.0
        name = max(sorted(procs), key=lambda k: procs[k])
        return name, procs[name]


def _mean_half(values: Sequence[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    if any(math.isinf(v) for v in values):
        return math.inf, math.inf
    return mean_ci(list(values))


Evaluator = Callable[[Sequence[Config]], list[Evaluation]]


# ---------------------------------------------------------------------------------- the search
@dataclass(slots=True)
class _Line:
    design: str
    slots: int
    lo: int = 0  # the largest node count known to miss (0: none)
    hi: int = 0  # the smallest known to meet (0: none yet)
    done: bool = False


def search(
    evaluate: Evaluator,
    goals: Sequence[Goal],
    designs: Sequence[str],
    slots: Sequence[int],
    max_nodes: int,
    *,
    grid: bool = False,
    curve: bool = True,
    progress: Callable[[str], None] = lambda _: None,
) -> dict[Config, Evaluation]:
    """Evaluates configurations round by round (module docstring) and returns all it evaluated."""
    seen: dict[Config, Evaluation] = {}

    def run(configs: Sequence[Config]) -> None:
        todo = sorted({c for c in configs if c not in seen})
        if todo:
            progress(f"plan: simulating {len(todo)} configuration(s): {', '.join(c.label for c in todo)}")
            for ev in evaluate(todo):
                seen[ev.config] = ev

    lines = [_Line(d, s) for d in designs for s in slots]
    micro = [Config("micro", 1, s) for s in slots if "micro" in designs]
    mono = [ln for ln in lines if ln.design == "mono"]
    if grid:
        run(micro + [Config("mono", n, ln.slots) for ln in mono for n in range(1, max_nodes + 1)])
        return seen
    run(micro)
    while True:  # Design B's lines: 1, 2, 4, ... until met (or max_nodes missed), then bisection
        probes = {}
        for ln in mono:
            if ln.done:
                continue
            if ln.hi == 0:
                if ln.lo >= max_nodes:
                    ln.done = True  # nothing in range meets on this line
                    continue
                probes[id(ln)] = min(max(1, 2 * ln.lo), max_nodes)
            elif ln.hi - ln.lo > 1:
                probes[id(ln)] = (ln.lo + ln.hi) // 2
            else:
                ln.done = True
        if not probes:
            break
        active = [ln for ln in mono if id(ln) in probes]
        run([Config("mono", probes[id(ln)], ln.slots) for ln in active])
        for ln in active:
            n = probes[id(ln)]
            if seen[Config("mono", n, ln.slots)].meets(goals):
                ln.hi = n
            else:
                ln.lo = n
    if curve:  # each design's best line (or, when none meets, its largest slots) over every node count
        extra = []
        for design in ("mono",) if "mono" in designs else ():
            feasible = [c for c, ev in seen.items() if c.design == design and ev.meets(goals)]
            best_slots = _rank(feasible, seen, goals)[0].slots if feasible else max(slots)
            extra += [Config(design, n, best_slots) for n in _curve_nodes(max_nodes)]
        run(extra)
    return seen


def _curve_nodes(max_nodes: int) -> list[int]:
    if max_nodes <= 16:
        return list(range(1, max_nodes + 1))
    n, out = 1, []
    while n < max_nodes:
        out.append(n)
        n *= 2
    return [*out, max_nodes]


def _rank(
    configs: Sequence[Config], seen: Mapping[Config, Evaluation], goals: Sequence[Goal]
) -> list[Config]:
    """Cheapest first: processes, then total slots, then the larger relative margin, then the name."""
    return sorted(configs, key=lambda c: (c.cost, -seen[c].relative_margin(goals), c.design, c.slots))


def choose(seen: Mapping[Config, Evaluation], goals: Sequence[Goal]) -> tuple[Config | None, Config | None]:
    """The cheapest configuration meeting the goals, and the runner-up: the cheapest meeting them on
    another (design, slots) line (the same line's next node count is not an alternative, only more)."""
    feasible = _rank([c for c, ev in seen.items() if ev.meets(goals)], seen, goals)
    if not feasible:
        return None, None
    best = feasible[0]
    others = [c for c in feasible if (c.design, c.slots) != (best.design, best.slots)]
    return best, (others[0] if others else None)


def next_smaller(best: Config, slots: Sequence[int]) -> Config | None:
    """The configuration one step cheaper in the same design: Design B one node fewer (at one node,
    the next smaller slots value); Design A (whose process count is fixed) the next smaller slots."""
    if best.design == "mono" and best.nodes > 1:
        return Config("mono", best.nodes - 1, best.slots)
    smaller = [s for s in slots if s < best.slots]
    return Config(best.design, 1, max(smaller)) if smaller else None


# ------------------------------------------------------------------------------- binding resource
def duration_quantile(workload: WorkloadSpec, q: float, n: int = 200_000) -> float:
    """The workload's job duration at quantile q in ms (a seeded sample: deterministic)."""
    rng = np.random.default_rng(np.random.SeedSequence(12345))
    return float(np.quantile(np.asarray(workload.duration.sample(rng, n), dtype=float), q)) * 1000.0


_QUANTILE = {"p50": 0.5, "p95": 0.95, "p99": 0.99, "p999": 0.999}


def binding(ev: Evaluation, goals: Sequence[Goal], workload: WorkloadSpec) -> str:
    """What keeps `ev` (a design's point closest to the goal) from it (the module docstring's order)."""
    if ev.slot_load >= SLOT_BUSY:
        return (
            f"slots: the offered job load keeps {ev.slot_load:.0%} of the {ev.config.total_slots} slots busy "
            "(more nodes or slots per node than the range allows)"
        )
    name, busy = ev.busiest()
    if busy >= PROC_BUSY:
        who = "the load generator" if name.startswith("loadgen") else f"process {name!r}"
        return f"CPU of {who}: busy {busy:.0%} of the run"
    host = max(ev.host_utilisation.values(), default=0.0)
    if host >= HOST_BUSY:
        return (
            f"CPU of the host: its cores are {host:.0%} busy "
            f"(all processes share them; busiest {name} {busy:.0%})"
        )
    for g in goals:
        stat = g.path.rsplit(".", 1)[-1]
        if g.path.startswith("completion_ms.") and stat in _QUANTILE:
            floor = duration_quantile(workload, _QUANTILE[stat])
            if not g.met(floor):
                return (
                    f"the jobs themselves: the workload's own duration {stat} is {floor:.1f} ms, "
                    f"over the goal {g.text}"
                )
    return (
        f"hops (a latency floor): nothing saturates (busiest process {name} {busy:.0%}, host {host:.0%}, "
        f"slots {ev.slot_load:.0%}), so the path's hops and service times set the latency"
    )


def offered_jobs_per_s(workload: WorkloadSpec) -> float | None:
    """Jobs per second an open-loop workload submits (None for a closed loop: it is measured)."""
    if isinstance(workload.arrival, OpenLoop):
        return float(workload.arrival.rate) * float(workload.mix.submit)
    return None


# ------------------------------------------------------------------------------- the simulator
def sim_evaluator(
    base: SimConfig,
    goals: Sequence[Goal],
    replications: int,
    *,
    workers: int | None = None,
    address: str = "",
    sink: list[pd.DataFrame] | None = None,
) -> Evaluator:
    """An Evaluator that simulates configurations through sim/sweeps.py (a round is one sweep: the
    local pool or the Dask cluster at `address`); `sink` collects each round's tidy table."""
    paths = [g.path for g in goals]
    metrics = list(dict.fromkeys([*paths, "jobs.unfinished", "jobs.submitted", "throughput.completed_per_s"]))
    mean_duration = float(
        np.mean(np.asarray(base.workload.duration.sample(np.random.default_rng(0), 100_000), dtype=float))
    )
    offered = offered_jobs_per_s(base.workload)

    def evaluate(configs: Sequence[Config]) -> list[Evaluation]:
        with warnings.catch_warnings():  # placeholder costs: `dtq plan` warns once, not every round
            warnings.simplefilter("ignore", PlaceholderWarning)
            points, tasks = sweeps.plan(base, [c.point() for c in configs], replications, stats=True)
        texts = sweeps.execute([t.text for t in tasks], workers, address)
        summaries = [json.loads(s) for s in texts]
        if sink is not None:
            sink.append(_labelled_table(configs, points, tasks, summaries, metrics))
        out = []
        for i, config in enumerate(configs):
            mine = [s for t, s in zip(tasks, summaries, strict=True) if t.point == i]
            values: dict[str, tuple[float, ...]] = {}
            for g in goals:
                row = []
                for s in mine:
                    v = summary_metric(s, g.path.split("."))
                    x = math.nan if v is None else float(v)
                    if g.upper and _overloaded(s):
                        x = math.inf
                    row.append(x)
                values[g.path] = tuple(row)
            util = _mean_of([s["sim"]["utilisation"] for s in mine])
            host = _mean_of([s["sim"]["host_utilisation"] for s in mine])
            completed = float(np.mean([s["throughput"]["completed_per_s"] for s in mine]))
            rate = max(offered if offered is not None else 0.0, completed)
            out.append(Evaluation(config, values, util, host, rate * mean_duration / config.total_slots))
        return out

    return evaluate


def _overloaded(summary: Mapping[str, Any]) -> bool:
    errors = summary.get("errors") or {}
    return bool(summary["jobs"]["unfinished"]) or any(errors.get(code) for code in OVERLOAD_CODES)


def _mean_of(dicts: Sequence[Mapping[str, float]]) -> dict[str, float]:
    keys = sorted({k for d in dicts for k in d})
    return {k: float(np.mean([d.get(k, 0.0) for d in dicts])) for k in keys}


def _labelled_table(
    configs: Sequence[Config],
    points: Sequence[Mapping[str, Any]],
    tasks: Sequence[sweeps.Task],
    summaries: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
) -> pd.DataFrame:
    df = sweeps.table(points, tasks, summaries, metrics)
    df["config_nodes"] = [configs[p].nodes for p in df["point"]]
    df["config_slots"] = [configs[p].slots for p in df["point"]]
    return df.drop(columns=["point"])


# ------------------------------------------------------------------------------- the answer
@dataclass(slots=True)
class PlanResult:
    goals: tuple[Goal, ...]
    workload: WorkloadSpec
    designs: tuple[str, ...]
    slots: tuple[int, ...]
    max_nodes: int
    replications: int
    calibration: str
    evaluations: dict[Config, Evaluation]
    best: Config | None
    runner_up: Config | None
    smaller: Config | None
    bindings: dict[str, str]  # design -> what binds at its point closest to the goal (when none meets)
    tables: list[Any] = field(default_factory=list)  # the sweep rounds' tidy tables

    def curve_rows(self) -> list[dict[str, Any]]:
        """Every evaluated point: design, nodes, slots per node, processes, per goal mean and CI, met."""
        rows = []
        for c in sorted(self.evaluations, key=lambda c: (c.design, c.slots, c.nodes)):
            ev = self.evaluations[c]
            row: dict[str, Any] = {
                "design": c.design,
                "nodes": c.nodes,
                "slots_per_node": c.slots,
                "processes": c.processes,
                "total_slots": c.total_slots,
            }
            for g in self.goals:
                m, h = ev.mean(g), ev.half(g)
                row[g.path] = m
                row[f"{g.path}.ci_low"] = m - h if math.isfinite(m) else m
                row[f"{g.path}.ci_high"] = m + h
            name, busy = ev.busiest()
            row.update(
                met=ev.meets(self.goals),
                busiest=name,
                busiest_share=round(busy, 4),
                host_share=round(max(ev.host_utilisation.values(), default=0.0), 4),
                slot_load=round(ev.slot_load, 4),
            )
            rows.append(row)
        return rows

    def _describe(self, c: Config) -> str:
        ev = self.evaluations[c]
        parts = []
        for g in self.goals:
            m, lo, hi = ev.margin(g)
            parts.append(
                f"{g.path} {_fmt(ev.mean(g))} {g.unit} (goal {g.text}; margin {_fmt(m)} {g.unit}, "
                f"{0.95:.0%} CI {_fmt(lo)}..{_fmt(hi)})"
            )
        flag = "  [uncertain: a CI crosses the goal]" if ev.uncertain(self.goals) else ""
        return f"{c.label} = {c.processes} processes, {c.total_slots} slots: " + "; ".join(parts) + flag

    def text(self) -> str:
        goals = ", ".join(g.text for g in self.goals)
        lines = [
            f"goal: {goals}   (calibration {self.calibration}, {self.replications} replications, "
            f"designs {', '.join(self.designs)}, nodes 1..{self.max_nodes}, slots {list(self.slots)}, "
            f"{len(self.evaluations)} configurations simulated)"
        ]
        if self.best is None:
            lines.append("NO configuration in range meets the goal.")
            for design in self.designs:
                lines.append(f"  {DESIGN_LABEL[design]} binds on: {self.bindings.get(design, '?')}")
        else:
            lines.append(f"cheapest: {self._describe(self.best)}")
            lines.append(
                f"runner-up: {self._describe(self.runner_up)}"
                if self.runner_up
                else "runner-up: none in range"
            )
            if self.smaller is not None and self.smaller in self.evaluations:
                lines.append(f"next smaller (misses): {self._describe(self.smaller)}")
        lines.append("")
        lines.append(self.curve_text())
        return "\n".join(lines)

    def curve_text(self) -> str:
        g = self.goals[0]
        metric = f"{g.path} ({g.unit})"
        head = f"{'design':<7} {'slots':>5} {'nodes':>5} {'procs':>5}  {metric:>26}  met  busiest"
        out = [head]
        for r in self.curve_rows():
            value = f"{_fmt(r[g.path])} [{_fmt(r[g.path + '.ci_low'])}, {_fmt(r[g.path + '.ci_high'])}]"
            out.append(
                f"{r['design']:<7} {r['slots_per_node']:>5} {r['nodes']:>5} {r['processes']:>5}  "
                f"{value:>26}  {'yes' if r['met'] else 'no ':<3}  "
                f"{r['busiest']} {r['busiest_share']:.0%}, slots {r['slot_load']:.0%}"
            )
        return "\n".join(out)

    def to_mapping(self) -> dict[str, Any]:
        def cfg(c: Config | None) -> dict[str, Any] | None:
            if c is None:
                return None
            ev = self.evaluations[c]
            return {
                "design": c.design,
                "nodes": c.nodes,
                "slots_per_node": c.slots,
                "processes": c.processes,
                "total_slots": c.total_slots,
                "goals": {
                    g.text: dict(
                        zip(
                            ("margin", "margin_ci_low", "margin_ci_high"),
                            map(_num, ev.margin(g)),
                            strict=True,
                        )
                    )
                    | {"mean": _num(ev.mean(g)), "values": [_num(v) for v in ev.values[g.path]]}
                    for g in self.goals
                },
                "uncertain": ev.uncertain(self.goals),
            }

        return {
            "goals": [{"text": g.text, "metric": g.path, "op": g.op, "value": g.value} for g in self.goals],
            "calibration": self.calibration,
            "designs": list(self.designs),
            "slots": list(self.slots),
            "max_nodes": self.max_nodes,
            "replications": self.replications,
            "best": cfg(self.best),
            "runner_up": cfg(self.runner_up),
            "next_smaller": cfg(self.smaller) if self.smaller in self.evaluations else None,
            "binding": self.bindings,
            "points": [
                {k: _num(v) if isinstance(v, float) else v for k, v in row.items()}
                for row in self.curve_rows()
            ],
        }

    def save(self, out: Path | str, *, force: bool = False) -> list[Path]:
        """plan.json, curve.csv, points.csv (the sweep rounds' tidy tables) and curve.png into `out`;
        existing files are FileExistsError unless `force`."""
        out = Path(out)
        names = ["plan.json", "curve.csv", "points.csv", "curve.png"]
        if not force:
            clash = [n for n in names if (out / n).exists()]
            if clash:
                raise InvalidArgument(f"{out}: {', '.join(clash)} exist (use --force, or another --out)")
        out.mkdir(parents=True, exist_ok=True)
        written = []
        (out / "plan.json").write_text(json.dumps(self.to_mapping(), indent=1, sort_keys=True) + "\n")
        written.append(out / "plan.json")
        import pandas as pd  # the sim extra's; a heavy import kept off the simulator's start-up

        pd.DataFrame(self.curve_rows()).to_csv(out / "curve.csv", index=False)
        written.append(out / "curve.csv")
        if self.tables:
            pd.concat(self.tables, ignore_index=True).to_csv(out / "points.csv", index=False)
            written.append(out / "points.csv")
        if figure(self, out / "curve.png"):
            written.append(out / "curve.png")
        return written


def figure(result: PlanResult, path: Path) -> bool:
    """Two panels of the goal's metric (error bars: the CIs; the goal dashed; overloaded points as x
    above the rest): against processes (Design B's nodes; Design A at 6) and against total slots
    (Design A's worker slots), a line per design and slots per node. False without matplotlib."""
    try:
        import matplotlib  # an optional dependency (the lab extra)

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # the same optional dependency
    except ImportError:
        return False
    g = result.goals[0]
    rows = result.curve_rows()
    finite = [r[g.path] for r in rows if math.isfinite(r[g.path])]
    top = max(finite, default=g.value) * 2.0
    fig, axes = plt.subplots(1, 2, figsize=(7.0, 3.0), dpi=80, sharey=True)
    groups = sorted({(r["design"], r["slots_per_node"] if r["design"] == "mono" else 0) for r in rows})
    for ax, x_key in zip(axes, ("processes", "total_slots"), strict=True):
        for k, (design, slots) in enumerate(groups):
            pts = [
                r
                for r in rows
                if r["design"] == design and (design == "micro" or r["slots_per_node"] == slots)
            ]
            # Design A against processes: one point per slots value, all at 6
            one_each = design == "micro" and x_key == "processes"
            pts_by_line = [[r] for r in pts] if one_each else [pts]
            for line in pts_by_line:
                ok = [r for r in line if math.isfinite(r[g.path])]
                name = (
                    f"A, worker {line[0]['slots_per_node']} slots"
                    if design == "micro" and len(line) == 1
                    else ("A (worker slots)" if design == "micro" else f"B, {slots} slots/node")
                )
                if ok:
                    ys = [r[g.path] for r in ok]
                    lows = [
                        max(y - r[g.path + ".ci_low"], 0.0) if math.isfinite(r[g.path + ".ci_low"]) else 0.0
                        for y, r in zip(ys, ok, strict=True)
                    ]
                    highs = [
                        r[g.path + ".ci_high"] - y if math.isfinite(r[g.path + ".ci_high"]) else 0.0
                        for y, r in zip(ys, ok, strict=True)
                    ]
                    ax.errorbar(
                        [r[x_key] for r in ok],
                        ys,
                        yerr=[lows, highs],
                        fmt="s-" if design == "micro" else "o-",
                        ms=3,
                        capsize=2,
                        lw=1,
                        label=name,
                        color=f"C{k}",
                    )
                over = [r[x_key] for r in line if math.isinf(r[g.path])]
                if over:
                    ax.plot(over, [top] * len(over), "kx", ms=5)
        ax.axhline(g.value, color="k", ls="--", lw=0.8)
        if result.best is not None:
            ax.plot([getattr(result.best, x_key)], [result.evaluations[result.best].mean(g)], "r*", ms=10)
        ax.grid(alpha=0.3)
    if g.upper:
        axes[0].set_yscale("log")
    axes[0].set_xlabel("processes (B: nodes; A: 6)")
    axes[1].set_xlabel("total slots")
    axes[0].set_ylabel(f"{g.path} ({g.unit})")
    axes[0].set_title(f"goal {g.text} (dashed); choice *; overload x", fontsize=7)
    axes[1].legend(fontsize=6, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _finite(x: float) -> float:
    return -math.inf if math.isnan(x) else x


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else round(float(x), 4)


def _fmt(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "overload" if x > 0 else "-overload"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def check_space(designs: Sequence[str], slots: Sequence[int], max_nodes: int, replications: int) -> None:
    if not designs:
        raise InvalidArgument("no designs to plan over (micro, mono)")
    for d in designs:
        if d not in DESIGNS:
            raise InvalidArgument(f"unknown design {d!r} (micro, mono)")
    if not slots or any(not isinstance(s, int) or s < 1 for s in slots):
        raise InvalidArgument(f"slots per node must be integers >= 1, got {list(slots)}")
    if not 1 <= max_nodes <= 100:
        raise InvalidArgument(f"max nodes must be 1..100, got {max_nodes}")
    if replications < 1:
        raise InvalidArgument(f"replications must be >= 1, got {replications}")


def plan(
    workload: WorkloadSpec,
    slo: str | Sequence[Goal],
    *,
    designs: Sequence[str] = DESIGNS,
    max_nodes: int = DEFAULT_MAX_NODES,
    slots: Sequence[int] = DEFAULT_SLOTS,
    replications: int = 3,
    calibration: str | SimParams = "local",
    address: str = "",
    workers: int | None = None,
    grid: bool = False,
    curve: bool = True,
    evaluator: Evaluator | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> PlanResult:
    """Searches design x nodes x slots for the cheapest configuration meeting `slo` (module
    docstring). `address`: a Dask scheduler; `evaluator` replaces the simulator (tests)."""
    goals = parse_slo(slo) if isinstance(slo, str) else tuple(slo)
    designs = tuple(dict.fromkeys(designs))
    slots = tuple(sorted(set(slots)))
    check_space(designs, slots, max_nodes, replications)
    params = calibration if isinstance(calibration, SimParams) else load_params(calibration)
    tables: list[Any] = []
    if evaluator is None:
        base = SimConfig(cast(Design, designs[0]), workload, params, name="plan")
        evaluator = sim_evaluator(base, goals, replications, workers=workers, address=address, sink=tables)
    seen = search(evaluator, goals, designs, slots, max_nodes, grid=grid, curve=curve, progress=progress)
    best, runner = choose(seen, goals)
    smaller = next_smaller(best, slots) if best else None
    bindings: dict[str, str] = {}
    if best is None:
        for design in designs:  # at the design's point closest to the goal (the largest on a tie)
            mine = [c for c in seen if c.design == design]
            closest = max(mine, key=lambda c: (_finite(seen[c].relative_margin(goals)), c.nodes, c.slots))
            bindings[design] = f"at {closest.label}: {binding(seen[closest], goals, workload)}"
    return PlanResult(
        goals,
        workload,
        designs,
        slots,
        max_nodes,
        replications,
        params.name,
        seen,
        best,
        runner,
        smaller,
        bindings,
        tables,
    )
