"""Runs what is missing of an experiment on local clusters, through the load generator.

Runs whose directory is complete are skipped (resumable); one whose config.json records a different
workload or design settings is an error, not a silent reuse. Runs are grouped by (design, store,
slots): one cluster is brought up per group and reused by all its runs, replication-major so that
drift over a cluster's life touches every point alike. Trade-off: it saves ~2-5 s of start-up per
run, but the runs of a group are not independent (a store that grew, warm caches, leftover jobs past
the drain), so the CIs cover run-to-run but not cluster-to-cluster variation; `--fresh-cluster`
buys independence with a cluster per run. A run that leaves jobs unfinished after the drain (an
overloaded system's backlog) gets the next run a fresh cluster, so no run inherits another's queue.
A failed run is reported, its cluster replaced, and the experiment goes on; the command then exits
non-zero.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from tqdm import tqdm

from lab.baseline.runner import BaselineCluster
from lab.calibration.hostprobe import probe as host_probe
from lab.experiment.plan import PlannedRun, expand, select
from lab.experiment.spec import Experiment, Options
from model.errors import InvalidArgument
from model.results.runs import load_config, provenance, run_config, run_exists, utc_now, write_run
from model.workload import workload_to_mapping
from realsys import cluster, loadgen
from realsys.config import DEFAULT_NODES
from realsys.targets import dtq_target_spec


class ClusterHandle(Protocol):
    """A running system the load generator can drive."""

    @property
    def target_spec(self) -> dict[str, Any]: ...

    @property
    def parameters(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class _Handle:
    target_spec: dict[str, Any]
    parameters: dict[str, Any]


ClusterFactory = Callable[[str, str, int, Options], contextlib.AbstractContextManager[ClusterHandle]]
RunFunction = Callable[
    [ClusterHandle, PlannedRun, Options], tuple[dict[str, Any], list[Any], list[Any], dict[str, Any]]
]


@contextlib.contextmanager
def local_cluster(
    design: str, store: str, slots: int, options: Options, nodes: int = DEFAULT_NODES
) -> Iterator[ClusterHandle]:
    """A local cluster of `design` for one group of runs, stopped on exit. `nodes`: Design B's node
    count (recorded in the runs' parameters when it is not the default, so their twins use it)."""
    if design == "celery":
        with BaselineCluster(
            slots=slots, pool=options.celery_pool, worker_processes=options.celery_worker_processes
        ) as baseline:
            yield _Handle(baseline.target_spec(), baseline.parameters())
        return

    count: dict[str, Any] = {"nodes": nodes} if design == "mono" and nodes != DEFAULT_NODES else {}
    with cluster.running(
        design, total_slots=slots, store=store, prefix=f"dtq-exp-{design}-", **count
    ) as info:
        parameters = {
            "store": store,
            "total_slots": slots,
            "slots": cluster.slots_per_node(design, slots, nodes if count else DEFAULT_NODES),
            "settings": {},
            **count,
        }
        yield _Handle(dtq_target_spec(info.clients, design=design), parameters)


def load_run(
    handle: ClusterHandle, run: PlannedRun, options: Options
) -> tuple[dict[str, Any], list[Any], list[Any], dict[str, Any]]:
    """Drives one run through the load generator: (config, requests, jobs, summary)."""
    started_at, stamp = utc_now(), provenance()
    probe: dict[str, Any] = {}
    if options.host_probe:  # the host's speed now, for the simulated twin (sim.hostscale.HostScale)
        probe = {"host_probe": host_probe()}
    result = loadgen.run(handle.target_spec, run.workload, options.processes, drain_timeout=options.drain)
    summary = loadgen.summary_of(result, run.workload, run_id=run.run_id, kind=run.kind, design=run.design)
    config = run_config(
        run_id=run.run_id,
        kind=run.kind,
        design=run.design,
        workload=run.workload,
        parameters={
            **handle.parameters,
            "processes": options.processes,
            **_run_parameters(run, options),
            **probe,
        },
        replication=run.replication,
        started_at=started_at,
        provenance_info=stamp,
    )
    return config, result.requests, result.jobs, summary


def _run_parameters(run: PlannedRun, options: Options) -> dict[str, Any]:
    return {"point": dict(run.point), "fresh_cluster": options.fresh_cluster}


def _check_existing(root: Path, run: PlannedRun) -> None:
    """A finished run with the same id must have been made with the same workload and settings."""
    config = load_config(root / run.run_id)
    if config.get("workload") != workload_to_mapping(run.workload) or config.get("design") != run.design:
        raise InvalidArgument(
            f"{root / run.run_id} exists with a different workload or design than the experiment now "
            "plans: remove it, or rename the experiment"
        )
    params = config.get("parameters", {})
    if params.get("total_slots") != run.slots or params.get("store") != run.store:
        raise InvalidArgument(f"{root / run.run_id} exists with other slots/store settings")


@dataclass(slots=True)
class RunReport:
    planned: int = 0
    skipped: int = 0  # already on disk
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)


def run_experiment(
    exp: Experiment,
    out: Path | str,
    *,
    only: str | None = None,
    fresh_cluster: bool | None = None,
    progress: bool = True,
    cluster_factory: ClusterFactory = local_cluster,
    run_function: RunFunction = load_run,
    log: Callable[[str], None] | None = None,
) -> RunReport:
    """Runs what is missing of the experiment, writing each run with model.results.runs.write_run."""
    log = log or tqdm.write  # printed above the progress bar, not through it
    root = Path(out)
    options = exp.options
    if fresh_cluster is not None:
        options = replace(options, fresh_cluster=fresh_cluster)
    runs = select(expand(exp).runs, only)
    report = RunReport(planned=len(runs))
    todo: list[PlannedRun] = []
    for run in runs:
        if run_exists(root, run.run_id):
            _check_existing(root, run)
            report.skipped += 1
        else:
            todo.append(run)
    groups: dict[tuple[str, str, int], list[PlannedRun]] = {}
    for run in todo:
        groups.setdefault(run.group, []).append(run)
    batches = [[r] for g in groups.values() for r in g] if options.fresh_cluster else list(groups.values())
    bar = tqdm(total=len(todo), unit="run", disable=not progress, file=sys.stderr, dynamic_ncols=True)
    try:
        for batch in batches:
            _run_batch(batch, root, options, cluster_factory, run_function, write_run, bar, report, log)
    finally:
        bar.close()
    return report


def _run_batch(
    batch: list[PlannedRun],
    root: Path,
    options: Options,
    cluster_factory: ClusterFactory,
    run_function: RunFunction,
    write_run: Callable[..., Path],
    bar: Any,
    report: RunReport,
    log: Callable[[str], None],
) -> None:
    """The runs of one group on one cluster. After a failed run, or one that left jobs unfinished
    past the drain (a backlog the next run would inherit), the rest get a fresh cluster."""
    remaining = list(batch)
    while remaining:  # bounded: every pass consumes at least one run
        design, store, slots = remaining[0].group
        consumed = False
        try:
            with cluster_factory(design, store, slots, options) as handle:
                while remaining:
                    run = remaining.pop(0)
                    consumed = True
                    bar.set_description(run.run_id, refresh=False)
                    try:
                        config, requests, jobs, summary = run_function(handle, run, options)
                        write_run(root, run.run_id, config, requests, jobs, summary, records=options.records)
                    except Exception as exc:
                        report.failed[run.run_id] = repr(exc)
                        log(f"run {run.run_id} failed: {exc!r}; replacing the cluster")
                        bar.update(1)
                        break  # the cluster may be broken: a fresh one for the rest
                    report.done.append(run.run_id)
                    bar.update(1)
                    leftover = sum(1 for j in jobs if not math.isfinite(j.end_time))
                    if leftover and remaining:
                        log(f"{run.run_id} left {leftover} jobs unfinished: a fresh cluster for the next run")
                        break
                    if remaining and options.settle > 0:
                        time.sleep(options.settle)  # let the previous run's stragglers finish
        except Exception as exc:  # the cluster failed to start (or to stop)
            log(f"cluster {design}/{store}/{slots} failed: {exc!r}")
            if not consumed:  # it never started: count its first run as failed, try the next
                failed = remaining.pop(0)
                report.failed[failed.run_id] = f"cluster: {exc!r}"
                bar.update(1)
