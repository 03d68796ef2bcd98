"""An experiment's runs (pure): the cartesian product of its axes x replications, in run order.

Run ids follow data/README.md, `<kind>-<design>-<name>-<seed>-r<replication>`, with name
`<experiment>.<label per swept axis>` in a fixed axis order (arrival, duration, mix, store, slots),
e.g. `real-mono-seed_plan.c16.noop.submit.memory.s12-1-r0`. An axis is labelled whenever it is in
`sweep` (even with one value), so adding a value later keeps the existing ids. Celery points with a
mix that lists jobs are left out (Celery cannot list).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import product

from lab.experiment.spec import DEFAULT_SLOTS, Experiment, fail
from model.errors import InvalidArgument
from model.results.runs import workload_of
from model.workload import WorkloadSpec


@dataclass(frozen=True, slots=True)
class PlannedRun:
    run_id: str
    kind: str
    design: str
    replication: int
    store: str  # "redis" for celery
    slots: int
    point: tuple[tuple[str, str], ...]  # (axis, label) of the swept axes, design excluded
    workload: WorkloadSpec

    @property
    def group(self) -> tuple[str, str, int]:
        return (self.design, self.store, self.slots)

    @property
    def point_key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (self.design, self.point)


def kind_of(design: str) -> str:
    return "baseline" if design == "celery" else "real"


def run_id_of(kind: str, design: str, name: str, seed: int, replication: int) -> str:
    return f"{kind}-{design}-{name}-{seed}-r{replication}"


@dataclass(frozen=True, slots=True)
class Plan:
    runs: list[PlannedRun]
    left_out: list[str] = field(default_factory=list)  # why some combinations are not run


def expand(exp: Experiment) -> Plan:
    """Every run of the experiment (the cartesian product of the axes x replications), in run order:
    grouped by (design, store, slots), and replication-major inside a group."""
    none: tuple[tuple[None, None], ...] = ((None, None),)
    runs: dict[str, PlannedRun] = {}
    left_out: list[str] = []
    for design, store, slots, replication, (a_label, arrival), (d_label, duration), (m_label, mix) in product(
        exp.designs,
        exp.stores or (None,),
        exp.slots or (None,),
        range(exp.replications),
        exp.arrivals or none,
        exp.durations or none,
        exp.mixes or none,
    ):
        mapping = {**exp.base, "seed": int(exp.base["seed"]) + replication}
        point: list[tuple[str, str]] = []
        for axis, label, value in (
            ("arrival", a_label, arrival),
            ("duration", d_label, duration),
            ("mix", m_label, mix),
        ):
            if label is not None:
                mapping[axis] = value
                point.append((axis, label))
        actual_store = "redis" if design == "celery" else (store or "memory")
        actual_slots = slots or DEFAULT_SLOTS
        if store is not None:
            point.append(("store", actual_store))
        if slots is not None:
            point.append(("slots", f"s{actual_slots}"))
        where = f"{exp.name} point {dict(point)}"
        try:
            spec = workload_of(mapping)
        except InvalidArgument as exc:
            raise fail(where, exc.message) from None
        if design == "celery" and spec.mix.list > 0:
            note = f"celery x mix {m_label or '(base)'}: Celery cannot list tasks"
            if note not in left_out:
                left_out.append(note)
            continue
        if design == "mono" and actual_slots % 6:
            raise fail(where, f"mono splits slots over 6 nodes; {actual_slots} does not divide")
        name = ".".join([exp.name, *(label for _, label in point)])
        kind = kind_of(design)
        run_id = run_id_of(kind, design, name, spec.seed, replication)
        # setdefault: Celery ignores the store axis, so its runs of different stores are one run
        runs.setdefault(
            run_id,
            PlannedRun(run_id, kind, design, replication, actual_store, actual_slots, tuple(point), spec),
        )
    return Plan(list(runs.values()), left_out)


def select(runs: Sequence[PlannedRun], pattern: str | None) -> list[PlannedRun]:
    """Runs whose id matches the glob `pattern` (a pattern without * ? [ matches as a substring)."""
    if not pattern:
        return list(runs)
    if not any(c in pattern for c in "*?["):
        pattern = f"*{pattern}*"
    return [r for r in runs if fnmatch.fnmatchcase(r.run_id, pattern)]
