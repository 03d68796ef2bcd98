"""`dtq experiment run|summarize EXPERIMENT.yaml`: sweeps of real runs, resumable, with CIs.

An experiment file names a base workload (the mapping `model.workload.workload_from_mapping` reads,
inline under `workload:` or a file under `workload_file:`) and sweep axes:

    name: seed_plan                    # default: the file's stem; [A-Za-z0-9_.] only
    workload: {arrival: {kind: closed, clients: 1, wait_for_completion: true}, run_time: 5, seed: 1}
    replications: 3                    # replication r runs with seed = workload seed + r
    sweep:
      design: [micro, mono, celery]
      concurrency: [1, 4, 16]          # closed-loop clients (or `rate: [...]` for open loop, not both);
                                       # the base's think_time and wait_for_completion are kept
      duration: {noop: {kind: constant, mean: 0}, exp50ms: {kind: exponential, mean: 0.05}}
      mix: {submit: {submit: 1.0}, mixed: {submit: 0.5, status: 0.25, result: 0.25}}
      store: [memory]                  # dtq's store; Celery's is always Redis ("redis")
      slots: [12]                      # total worker slots, the same for every design
    options:                           # all optional
      fresh_cluster: false             # a new cluster for every run (default: one per group)
      settle: 0.5                      # seconds of quiet between runs on a reused cluster
      drain: 10.0                      # load generator drain timeout
      processes: 1                     # load generator processes
      records: true                    # write requests/jobs CSVs (false: summaries only)
      celery: {pool: threads, worker_processes: 1}

Run ids follow data/README.md, `<kind>-<design>-<name>-<seed>-r<replication>`, with name
`<experiment>.<label per swept axis>` in a fixed axis order (arrival, duration, mix, store, slots),
e.g. `real-mono-seed_plan.c16.noop.submit.memory.s12-1-r0`. An axis is labelled whenever it is in
`sweep` (even with one value), so adding a value later keeps the existing ids. Celery points with a
mix that lists jobs are left out (Celery cannot list).

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

The summary table (data/experiments/<name>/summary.csv) has one row per sweep point and design:
the mean and the 95% Student-t confidence half-width across replications of throughput (requests/s,
jobs/s, and completed_per_s: jobs finished in the window whenever submitted, the end-to-end jobs/s of
a closed loop in wait mode), latency p50/p95/p99 (all requests) and job completion (submit ->
terminal) p50/p95/p99 (ms); and the errors and unfinished jobs summed over the replications.
"""

from __future__ import annotations

import contextlib
import csv
import fnmatch
import math
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import product
from pathlib import Path
from typing import Any, Protocol

import yaml

from model.errors import InvalidArgument
from model.results.stats import mean_ci
from model.workload import WorkloadSpec, workload_from_mapping, workload_to_mapping

DESIGNS = ("micro", "mono", "celery")
STORES = ("memory", "sqlite")
AXES = ("design", "concurrency", "rate", "duration", "mix", "store", "slots")
DEFAULT_SLOTS = 12
_LABEL = re.compile(r"^[A-Za-z0-9_.]+$")
_TOP_KEYS = frozenset(
    {"name", "description", "workload", "workload_file", "replications", "sweep", "options"}
)
_OPTION_KEYS = frozenset({"fresh_cluster", "settle", "drain", "processes", "records", "celery", "host_probe"})
METRICS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("requests_per_s", ("throughput", "requests_per_s")),
    ("jobs_per_s", ("throughput", "jobs_per_s")),
    ("latency_p50_ms", ("latency_ms", "all", "p50")),
    ("latency_p95_ms", ("latency_ms", "all", "p95")),
    ("latency_p99_ms", ("latency_ms", "all", "p99")),
    ("completion_p50_ms", ("completion_ms", "p50")),
    ("completion_p95_ms", ("completion_ms", "p95")),
    ("completion_p99_ms", ("completion_ms", "p99")),
)
POINT_COLUMNS = ("design", "arrival", "concurrency", "rate", "duration", "mix", "store", "slots")


# ---------------------------------------------------------------------------- the experiment file
@dataclass(frozen=True, slots=True)
class Options:
    fresh_cluster: bool = False
    settle: float = 0.5
    drain: float = 10.0
    processes: int = 1
    records: bool = True
    celery_pool: str = "threads"
    celery_worker_processes: int = 1
    host_probe: bool = False  # lab.calibration.hostprobe before each run's load, into its config.json


@dataclass(frozen=True, slots=True)
class Experiment:
    name: str
    base: Mapping[str, Any]  # the base workload mapping
    replications: int
    designs: tuple[str, ...]
    arrivals: tuple[tuple[str, Any], ...] | None  # (label, arrival mapping); None: not swept
    durations: tuple[tuple[str, Any], ...] | None  # (label, distribution mapping)
    mixes: tuple[tuple[str, Any], ...] | None
    stores: tuple[str, ...] | None
    slots: tuple[int, ...] | None
    options: Options = Options()
    description: str = ""


def _fail(where: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{where}: {message}")


def _label(value: str, where: str) -> str:
    if not _LABEL.match(value):
        raise _fail(where, f"label {value!r} may only use letters, digits, '_' and '.'")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise _fail(where, "must be a non-empty list")
    if len(set(map(repr, value))) != len(value):
        raise _fail(where, "has duplicate values")
    return value


def _labelled(value: Any, where: str) -> tuple[tuple[str, Any], ...]:
    if not isinstance(value, Mapping) or not value:
        raise _fail(where, "must be a non-empty mapping of label -> value")
    return tuple((_label(str(k), where), v) for k, v in value.items())


def _number_label(x: float) -> str:
    return f"{x:g}".replace("+", "")


def experiment_from_mapping(
    d: Mapping[str, Any], *, default_name: str = "", base_dir: Path | None = None
) -> Experiment:
    where = "experiment"
    if not isinstance(d, Mapping):
        raise _fail(where, "must be a mapping")
    unknown = sorted(set(d) - _TOP_KEYS)
    if unknown:
        raise _fail(where, f"unknown keys {unknown}; known: {sorted(_TOP_KEYS)}")
    name = _label(str(d.get("name") or default_name), f"{where}.name")
    if ("workload" in d) == ("workload_file" in d):
        raise _fail(where, "give exactly one of `workload` (a mapping) or `workload_file`")
    if "workload_file" in d:
        path = Path(str(d["workload_file"]))
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        base: Mapping[str, Any] = yaml.safe_load(path.read_text())
    else:
        base = d["workload"]
    base = workload_to_mapping(workload_from_mapping(base))  # validated, every value explicit
    replications = d.get("replications", 1)
    if isinstance(replications, bool) or not isinstance(replications, int) or replications < 1:
        raise _fail(f"{where}.replications", "must be an integer >= 1")
    sweep = d.get("sweep") or {}
    if not isinstance(sweep, Mapping):
        raise _fail(f"{where}.sweep", "must be a mapping")
    unknown = sorted(set(sweep) - set(AXES))
    if unknown:
        raise _fail(f"{where}.sweep", f"unknown axes {unknown}; known: {list(AXES)}")
    if "concurrency" in sweep and "rate" in sweep:
        raise _fail(f"{where}.sweep", "sweep `concurrency` (closed loop) or `rate` (open loop), not both")

    designs = tuple(_list(sweep.get("design", ["mono"]), f"{where}.sweep.design"))
    for design in designs:
        if design not in DESIGNS:
            raise _fail(f"{where}.sweep.design", f"{design!r} is not one of {DESIGNS}")

    arrivals: tuple[tuple[str, Any], ...] | None = None
    base_arrival = dict(base["arrival"])
    if "concurrency" in sweep:
        values = _list(sweep["concurrency"], f"{where}.sweep.concurrency")
        if any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in values):
            raise _fail(f"{where}.sweep.concurrency", "values must be integers >= 1")
        think = base_arrival.get("think_time", {"kind": "constant", "mean": 0.0})
        # the base's closed-loop mode (wait_for_completion) is kept at every concurrency
        wait = bool(base_arrival.get("wait_for_completion", False))
        arrivals = tuple(
            (f"c{c}", {"kind": "closed", "clients": c, "think_time": think, "wait_for_completion": wait})
            for c in values
        )
    elif "rate" in sweep:
        values = _list(sweep["rate"], f"{where}.sweep.rate")
        if any(isinstance(r, bool) or not isinstance(r, int | float) or not r > 0 for r in values):
            raise _fail(f"{where}.sweep.rate", "values must be numbers > 0")
        max_in_flight = base_arrival.get("max_in_flight", 1024)
        arrivals = tuple(
            (f"rate{_number_label(r)}", {"kind": "open", "rate": float(r), "max_in_flight": max_in_flight})
            for r in values
        )
    durations = _labelled(sweep["duration"], f"{where}.sweep.duration") if "duration" in sweep else None
    mixes = _labelled(sweep["mix"], f"{where}.sweep.mix") if "mix" in sweep else None
    stores = None
    if "store" in sweep:
        stores = tuple(_list(sweep["store"], f"{where}.sweep.store"))
        if any(s not in STORES for s in stores):
            raise _fail(f"{where}.sweep.store", f"values must be in {STORES}")
    slots = None
    if "slots" in sweep:
        slots = tuple(_list(sweep["slots"], f"{where}.sweep.slots"))
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in slots):
            raise _fail(f"{where}.sweep.slots", "values must be integers >= 1")
    return Experiment(
        name=name,
        base=base,
        replications=replications,
        designs=designs,
        arrivals=arrivals,
        durations=durations,
        mixes=mixes,
        stores=stores,
        slots=slots,
        options=_options(d.get("options") or {}, f"{where}.options"),
        description=str(d.get("description", "")),
    )


def _options(d: Any, where: str) -> Options:
    if not isinstance(d, Mapping):
        raise _fail(where, "must be a mapping")
    unknown = sorted(set(d) - _OPTION_KEYS)
    if unknown:
        raise _fail(where, f"unknown keys {unknown}; known: {sorted(_OPTION_KEYS)}")
    celery = d.get("celery") or {}
    if not isinstance(celery, Mapping) or set(celery) - {"pool", "worker_processes"}:
        raise _fail(f"{where}.celery", "takes only `pool` and `worker_processes`")
    defaults = Options()
    try:
        options = Options(
            fresh_cluster=bool(d.get("fresh_cluster", defaults.fresh_cluster)),
            settle=float(d.get("settle", defaults.settle)),
            drain=float(d.get("drain", defaults.drain)),
            processes=int(d.get("processes", defaults.processes)),
            records=bool(d.get("records", defaults.records)),
            celery_pool=str(celery.get("pool", defaults.celery_pool)),
            celery_worker_processes=int(celery.get("worker_processes", defaults.celery_worker_processes)),
            host_probe=bool(d.get("host_probe", defaults.host_probe)),
        )
    except (TypeError, ValueError) as exc:
        raise _fail(where, str(exc)) from None
    if options.settle < 0 or options.drain < 0 or options.processes < 1:
        raise _fail(where, "need settle >= 0, drain >= 0 and processes >= 1")
    return options


def load_experiment(path: Path | str) -> Experiment:
    path = Path(path)
    data = yaml.safe_load(path.read_text())
    try:
        return experiment_from_mapping(data, default_name=path.stem, base_dir=path.parent)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{path}: {exc.message}") from None


# ---------------------------------------------------------------------------- expansion (pure)
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
            spec = workload_from_mapping(mapping)
        except InvalidArgument as exc:
            raise _fail(where, exc.message) from None
        if design == "celery" and spec.mix.list > 0:
            note = f"celery x mix {m_label or '(base)'}: Celery cannot list tasks"
            if note not in left_out:
                left_out.append(note)
            continue
        if design == "mono" and actual_slots % 6:
            raise _fail(where, f"mono splits slots over 6 nodes; {actual_slots} does not divide")
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


# ---------------------------------------------------------------------------- clusters and runs
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
def local_cluster(design: str, store: str, slots: int, options: Options) -> Iterator[ClusterHandle]:
    """A local cluster of `design` for one group of runs, stopped on exit."""
    if design == "celery":
        try:
            from lab.baseline.runner import BaselineCluster
        except ImportError as exc:
            raise RuntimeError(
                f"the Celery baseline needs the `baseline` extra (pip install -e '.[baseline]'): {exc}"
            ) from exc

        with BaselineCluster(
            slots=slots, pool=options.celery_pool, worker_processes=options.celery_worker_processes
        ) as baseline:
            yield _Handle(baseline.target_spec(), baseline.parameters())
        return
    from realsys import cluster
    from realsys.targets import dtq_target_spec

    with tempfile.TemporaryDirectory(prefix=f"dtq-exp-{design}-") as tmp:
        info = cluster.up(design, Path(tmp), slots, store)
        try:
            parameters = {
                "store": store,
                "total_slots": slots,
                "slots": cluster.slots_per_node(design, slots),
                "settings": {},
            }
            yield _Handle(dtq_target_spec(info.clients, design=design), parameters)
        finally:
            cluster.down(Path(tmp))


def load_run(
    handle: ClusterHandle, run: PlannedRun, options: Options
) -> tuple[dict[str, Any], list[Any], list[Any], dict[str, Any]]:
    """Drives one run through the load generator: (config, requests, jobs, summary)."""
    from model.results.runs import provenance, run_config, utc_now
    from realsys import loadgen

    started_at, stamp = utc_now(), provenance()
    probe: dict[str, Any] = {}
    if options.host_probe:  # the host's speed now, for the simulated twin (sim.params.HostScale)
        from lab.calibration.hostprobe import probe as host_probe

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
    from model.results.runs import load_config

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
    from tqdm import tqdm

    from model.results.runs import run_exists, write_run

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


# ---------------------------------------------------------------------------- summary table
def _metric(summary: Mapping[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = summary
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) else None


def summary_rows(exp: Experiment, out: Path | str) -> list[dict[str, Any]]:
    """One row per (design, sweep point) with the replications found on disk."""
    from model.results.runs import load_summary, run_exists

    root = Path(out)
    by_point: dict[tuple[str, tuple[tuple[str, str], ...]], list[PlannedRun]] = {}
    for run in expand(exp).runs:
        by_point.setdefault(run.point_key, []).append(run)
    rows = []
    for (design, point), runs in by_point.items():
        summaries = [load_summary(root / r.run_id) for r in runs if run_exists(root, r.run_id)]
        labels = dict(point)
        arrival = runs[0].workload.arrival
        row: dict[str, Any] = {
            "experiment": exp.name,
            "design": design,
            "arrival": labels.get("arrival", ""),
            "concurrency": getattr(arrival, "clients", ""),
            "rate": getattr(arrival, "rate", ""),
            "duration": labels.get("duration", ""),
            "mix": labels.get("mix", ""),
            "store": runs[0].store,
            "slots": runs[0].slots,
            "n": len(summaries),
            "planned": len(runs),
        }
        for name, path in METRICS:
            values = [v for v in (_metric(s, path) for s in summaries) if v is not None]
            row[f"{name}_mean"], row[f"{name}_ci95"] = mean_ci(values)
        completed = [_completed_per_s(root / s["run_id"], s) for s in summaries]
        row["completed_per_s_mean"], row["completed_per_s_ci95"] = mean_ci(
            [c for c in completed if c is not None]
        )
        row["errors"] = sum(sum(s.get("errors", {}).values()) for s in summaries)
        row["unfinished_jobs"] = sum(s.get("jobs", {}).get("unfinished", 0) for s in summaries)
        row["loadgen_bottlenecked"] = sum(bool(s.get("loadgen", {}).get("bottleneck")) for s in summaries)
        rows.append(row)
    return rows


def _completed_per_s(run_dir: Path, summary: Mapping[str, Any]) -> float | None:
    """Jobs that finished inside the window (whenever submitted), per second: the summary's
    throughput.completed_per_s, or for older summaries without it, from jobs.csv.gz.

    The summary's jobs_per_s counts only jobs submitted in the window: when submits outpace
    execution (a closed-loop submit-only load can), the backlog pushes them past the window's end and
    it falls towards 0, while this stays the rate at which the system completes work. In the closed
    loop's wait mode the two agree up to the jobs in flight at the window's edges."""
    from model.results.runs import JOBS_FILE, load_jobs

    recorded = _metric(summary, ("throughput", "completed_per_s"))
    if recorded is not None:
        return recorded
    if not (run_dir / JOBS_FILE).is_file():
        return None
    start, end = float(summary["window"]["start"]), float(summary["window"]["end"])
    ends = load_jobs(run_dir)["end_time"]
    return float(((ends >= start) & (ends < end)).sum()) / (end - start)


def _csv_value(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def write_summary(rows: Sequence[Mapping[str, Any]], path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(rows[0]) if rows else ["experiment", *POINT_COLUMNS]
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for row in rows:
            writer.writerow([_csv_value(row.get(c, "")) for c in columns])
    tmp.replace(path)
    return path


def _pm(mean: float, ci: float, digits: int) -> str:
    if math.isnan(mean):
        return "-"
    return f"{mean:.{digits}f}" if math.isnan(ci) else f"{mean:.{digits}f}±{ci:.{digits}f}"


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The table for a terminal: mean±95% CI half-width per column."""
    header = ["design", "arrival", "duration", "mix", "store", "n", "req/s", "jobs/s", "done/s"]
    header += ["lat p50", "lat p99"]
    header += ["done p50", "done p99", "err", "unfin", "lg!"]
    lines = [header]
    for r in rows:
        lines.append(
            [
                str(r["design"]),
                str(r["arrival"]),
                str(r["duration"]),
                str(r["mix"]),
                str(r["store"]),
                f"{r['n']}/{r['planned']}",
                _pm(r["requests_per_s_mean"], r["requests_per_s_ci95"], 1),
                _pm(r["jobs_per_s_mean"], r["jobs_per_s_ci95"], 1),
                _pm(r["completed_per_s_mean"], r["completed_per_s_ci95"], 1),
                _pm(r["latency_p50_ms_mean"], r["latency_p50_ms_ci95"], 2),
                _pm(r["latency_p99_ms_mean"], r["latency_p99_ms_ci95"], 2),
                _pm(r["completion_p50_ms_mean"], r["completion_p50_ms_ci95"], 1),
                _pm(r["completion_p99_ms_mean"], r["completion_p99_ms_ci95"], 1),
                str(r["errors"]),
                str(r["unfinished_jobs"]),
                str(r["loadgen_bottlenecked"]),
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines]
    return "\n".join(
        [
            *text,
            "(mean±95% CI half-width over replications; latencies in ms; jobs/s: jobs submitted in the window"
            " and finished in it; done/s: jobs finished in the window (end-to-end jobs/s); done p50/p99:"
            " submit -> terminal; unfin: jobs unfinished at the drain; lg! = loadgen-bottlenecked runs)",
        ]
    )


def default_summary_path(exp: Experiment) -> Path:
    return Path("data/experiments") / exp.name / "summary.csv"


# ---------------------------------------------------------------------------- `dtq experiment`
def add_parser(sub: Any) -> None:
    """Adds `experiment run|summarize` to the `dtq` command's subparsers."""
    p = sub.add_parser("experiment", help="resumable sweeps of real runs, with a CI summary table")
    esub = p.add_subparsers(dest="experiment_command", required=True)
    p_run = esub.add_parser("run", help="run what is missing, then write and print the summary table")
    p_sum = esub.add_parser("summarize", help="rebuild the summary table from the runs on disk")
    for q in (p_run, p_sum):
        q.add_argument("experiment", help="an experiment file (.yaml)")
        q.add_argument("--out", default="data/runs", help="the runs' root directory")
        q.add_argument("--summary", help="summary CSV path (default data/experiments/<name>/summary.csv)")
    p_run.add_argument("--dry-run", action="store_true", help="list the runs and whether each is done")
    p_run.add_argument("--only", metavar="PATTERN", help="only run ids matching this glob (or substring)")
    p_run.add_argument("--fresh-cluster", action="store_true", default=None, help="a new cluster per run")
    p_run.add_argument("--no-progress", action="store_true")


def command(args: Any) -> int:
    exp = load_experiment(args.experiment)
    summary_path = Path(args.summary) if args.summary else default_summary_path(exp)
    failed = 0
    if args.experiment_command == "run":
        if args.dry_run:
            return _dry_run(exp, Path(args.out), args.only)
        report = run_experiment(
            exp, args.out, only=args.only, fresh_cluster=args.fresh_cluster, progress=not args.no_progress
        )
        print(
            f"{exp.name}: {report.planned} planned, {report.skipped} already done, "
            f"{len(report.done)} run now, {len(report.failed)} failed"
        )
        for run_id, why in report.failed.items():
            print(f"  FAILED {run_id}: {why}")
        failed = len(report.failed)
    rows = summary_rows(exp, args.out)
    write_summary(rows, summary_path)
    print(format_table(rows))
    print(f"summary written to {summary_path}")
    return 1 if failed else 0


def _dry_run(exp: Experiment, out: Path, only: str | None) -> int:
    from model.results.runs import run_exists

    plan = expand(exp)
    runs = select(plan.runs, only)
    done = 0
    for run in runs:
        exists = run_exists(out, run.run_id)
        done += exists
        print(f"{'done' if exists else 'todo'}  {run.run_id}")
    for note in plan.left_out:
        print(f"left out: {note}")
    groups = len({r.group for r in runs if not run_exists(out, r.run_id)})
    seconds = sum(r.workload.total_time for r in runs if not run_exists(out, r.run_id))
    print(f"{len(runs)} runs, {done} done, {len(runs) - done} to run on {groups} cluster group(s)")
    print(f"~{seconds:.0f}s of load, plus cluster start-ups, drains and settling")
    return 0


# ---------------------------------------------------------------------------- `dtq validate` (issue 7)
def add_validate_parser(sub: Any) -> None:
    """Adds `validate VALIDATION.yaml [--real] [--sim] [--table]` (sim/validation.py)."""
    p = sub.add_parser(
        "validate", help="the validation matrix: real runs, their simulated twins, the error table"
    )
    p.add_argument("validation", help="a validation file (data/experiments/validation.yaml)")
    p.add_argument("--real", action="store_true", help="run what is missing of the real side (take the lock)")
    p.add_argument("--sim", action="store_true", help="simulate every real run that lacks an up-to-date twin")
    p.add_argument("--table", action="store_true", help="build and print the error table")
    p.add_argument(
        "--force", action="store_true", help="--sim: re-make every twin (after a change to the simulator)"
    )
    p.add_argument("--out", default="data/runs", help="the runs' root directory")
    p.add_argument("--tables", default="data/validation", help="where the CSV/JSON tables go")
    p.add_argument("--budget", type=float, default=0.0, help="--real: start no new chunk after this many s")
    p.add_argument("--only-design", choices=["micro", "mono"], help="--real: run only this design's points")
    p.add_argument(
        "--twin-sets",
        nargs="*",
        metavar="SET",
        help="the same real runs' other twin sets (lab.validation.accuracy.TWIN_SETS; none named: all) into "
        "<data>/validation/<SET>/",
    )
    p.add_argument("--data", default="data", help="--twin-sets: the data directory")
    p.add_argument("--no-progress", action="store_true")


def run_validation_real(
    v: Any,
    out: Path | str,
    *,
    budget: float = 0.0,
    only_design: str | None = None,
    progress: bool = True,
    cluster_factory: ClusterFactory = local_cluster,
    run_function: RunFunction = load_run,
    log: Callable[[str], None] = print,
) -> tuple[int, int, bool]:
    """The real side: the saturation runs first, then each cell's points, one (cell, design) chunk at
    a time; no chunk starts once `budget` seconds have passed (0: no limit). Resumable.
    Returns (runs made, runs failed, whether everything planned is on disk)."""
    import os

    from lab.validation import accuracy as val

    t0 = time.monotonic()
    made = failed = 0
    sat_exp = experiment_from_mapping(val.saturation_mapping(v))
    chunks: list[tuple[Experiment, str]] = [(sat_exp, d) for d in v.designs]
    complete = True
    # the saturation must be on disk before the points can be planned: two passes
    for stage in ("saturation", "points"):
        if stage == "points":
            saturation = val.measured_saturation(v, Path(out), "real")
            mappings = val.point_mappings(v, saturation)
            planned = {(*m["sweep"]["duration"], *m["sweep"]["mix"]) for m in mappings}
            complete = complete and len(planned) == len(v.cells)
            chunks = [(experiment_from_mapping(m), d) for m in mappings for d in m["sweep"]["design"]]
        for exp, design in chunks:
            if only_design and design != only_design:
                continue
            pattern = f"*-{design}-*"
            todo = [r for r in select(expand(exp).runs, pattern) if not _exists(Path(out), r.run_id)]
            if not todo:
                continue
            if budget and time.monotonic() - t0 > budget:
                log(f"budget of {budget:.0f}s spent: stopping before {exp.name} {design} ({len(todo)} runs)")
                return made, failed, False
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
            complete = complete and not report.failed
    return made, failed, complete


def _exists(root: Path, run_id: str) -> bool:
    from model.results.runs import run_exists

    return run_exists(root, run_id)


def validate_command(args: Any) -> int:
    """`dtq validate`: with no step named, --sim --table (the real side needs --real, under the lock)."""
    from lab.validation import accuracy as val

    v = val.load_validation(args.validation)
    if args.twin_sets is not None:
        known = {t.name: t for t in val.TWIN_SETS if t.folder != val.MAIN_FOLDER}
        unknown = sorted(set(args.twin_sets) - set(known))
        if unknown:
            raise InvalidArgument(f"unknown twin sets {unknown}; known: {sorted(known)}")
        for name in args.twin_sets or known:
            val.make_twin_set(v, known[name], args.out, args.data)
        return 0
    steps = {s for s in ("real", "sim", "table") if getattr(args, s)} or {"sim", "table"}
    code = 0
    if "real" in steps:
        made, failed, complete = run_validation_real(
            v, args.out, budget=args.budget, only_design=args.only_design, progress=not args.no_progress
        )
        print(f"{v.name}: {made} real runs made, {failed} failed, {'complete' if complete else 'incomplete'}")
        code = 1 if failed else 0
    if "sim" in steps:
        written = val.simulate(v, args.out, records=bool(v.options.get("records", True)), force=args.force)
        print(f"{v.name}: {len(written)} runs simulated")
    if "table" in steps:
        tables = val.build_tables(v, args.out, args.tables)
        print(val.format_tables(tables))
        print(f"tables written to {args.tables}/")
    return code
