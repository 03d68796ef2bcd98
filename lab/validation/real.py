"""The validation's real side: its saturation runs, then each cell's points, made by the experiment
runner one (cell, design) chunk at a time, resumable, within a time budget."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from lab.experiment.plan import expand, select
from lab.experiment.runner import ClusterFactory, RunFunction, load_run, local_cluster, run_experiment
from lab.experiment.spec import Experiment, experiment_from_mapping
from lab.validation.plan import point_mappings, saturation_mapping
from lab.validation.runs import measured_saturation
from lab.validation.spec import Validation
from model.results.runs import (
    run_exists,
)


def run_validation_real(v: Validation, out: Path | str, **options: Any) -> tuple[int, int, bool]:
    """The real side: the saturation runs first, then each cell's points, one (cell, design) chunk at
    a time (run_stages: `options` are its keywords). Resumable. Returns (runs made, runs failed,
    whether everything planned is on disk)."""

    def saturation() -> tuple[list[tuple[Experiment, str]], bool]:
        sat_exp = experiment_from_mapping(saturation_mapping(v))
        return [(sat_exp, d) for d in v.designs], True

    def points() -> tuple[list[tuple[Experiment, str]], bool]:
        mappings = point_mappings(v, measured_saturation(v, Path(out), "real"))
        planned = {(*m["sweep"]["duration"], *m["sweep"]["mix"]) for m in mappings}
        chunks = [(experiment_from_mapping(m), d) for m in mappings for d in m["sweep"]["design"]]
        return chunks, len(planned) == len(v.cells)

    return run_stages([saturation, points], out, **options)


Stage = Callable[[], tuple[list[tuple[Experiment, str]], bool]]


def run_stages(
    stages: Iterable[Stage],
    out: Path | str,
    *,
    budget: float = 0.0,
    only_design: str | None = None,
    progress: bool = True,
    cluster_factory: ClusterFactory = local_cluster,
    run_function: RunFunction = load_run,
    log: Callable[[str], None] = print,
) -> tuple[int, int, bool]:
    """Plans each stage (its (experiment, design) chunks, and whether it could plan all it should)
    only after the stage before it has run (the points need the saturation on disk), and runs its
    chunks (run_chunks); no chunk starts once `budget` seconds have passed (0: no limit). Returns
    (runs made, runs failed, whether everything planned is on disk)."""
    t0 = time.monotonic()
    made = failed = 0
    complete = True
    for stage in stages:
        chunks, planned_all = stage()
        complete = complete and planned_all
        done, broke, ran_all, spent = run_chunks(
            chunks,
            out,
            started=t0,
            budget=budget,
            only_design=only_design,
            progress=progress,
            cluster_factory=cluster_factory,
            run_function=run_function,
            log=log,
        )
        made, failed = made + done, failed + broke
        complete = complete and ran_all
        if spent:
            return made, failed, False
    return made, failed, complete


def run_chunks(
    chunks: Iterable[tuple[Experiment, str]],
    out: Path | str,
    *,
    started: float,
    budget: float,
    only_design: str | None,
    progress: bool,
    cluster_factory: ClusterFactory,
    run_function: RunFunction,
    log: Callable[[str], None],
) -> tuple[int, int, bool, bool]:
    """Runs each (experiment, design) chunk's runs not yet on disk, in order; no chunk starts once
    `budget` seconds (0: no limit) have passed since `started`. Returns (runs made, runs failed, whether
    no run failed, whether the budget stopped it)."""
    made = failed = 0
    ok = True
    for exp, design in chunks:
        if only_design and design != only_design:
            continue
        pattern = f"*-{design}-*"
        todo = [r for r in select(expand(exp).runs, pattern) if not run_exists(Path(out), r.run_id)]
        if not todo:
            continue
        if budget and time.monotonic() - started > budget:
            log(f"budget of {budget:.0f}s spent: stopping before {exp.name} {design} ({len(todo)} runs)")
            return made, failed, ok, True
        if hasattr(os, "getloadavg"):
            log(f"{exp.name} {design}: {len(todo)} runs; host load average {os.getloadavg()[0]:.2f}")
        report = run_experiment(
            exp,
            out,
            only=pattern,
            progress=progress,
            cluster_factory=cluster_factory,
            run_function=run_function,
            log=log,
        )
        made += len(report.done)
        failed += len(report.failed)
        ok = ok and not report.failed
    return made, failed, ok, False
