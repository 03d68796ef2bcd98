"""The experiment file of `dtq experiment` (data/experiments/<name>.yaml), validated into an
`Experiment`. It names a base workload (the mapping `model.workload.workload_from_mapping` reads,
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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.errors import InvalidArgument
from model.results.documents import read_document
from model.results.runs import workload_of
from model.results.schema import check_label
from model.workload import workload_to_mapping

DESIGNS = ("micro", "mono", "celery")
STORES = ("memory", "sqlite")
AXES = ("design", "concurrency", "rate", "duration", "mix", "store", "slots")
DEFAULT_SLOTS = 12
_TOP_KEYS = frozenset(
    {"name", "description", "workload", "workload_file", "replications", "sweep", "options"}
)
_OPTION_KEYS = frozenset({"fresh_cluster", "settle", "drain", "processes", "records", "celery", "host_probe"})


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


def fail(where: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{where}: {message}")


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise fail(where, "must be a non-empty list")
    if len(set(map(repr, value))) != len(value):
        raise fail(where, "has duplicate values")
    return value


def _labelled(value: Any, where: str) -> tuple[tuple[str, Any], ...]:
    if not isinstance(value, Mapping) or not value:
        raise fail(where, "must be a non-empty mapping of label -> value")
    return tuple((check_label(str(k), where), v) for k, v in value.items())


def _number_label(x: float) -> str:
    return f"{x:g}".replace("+", "")


def experiment_from_mapping(
    d: Mapping[str, Any], *, default_name: str = "", base_dir: Path | None = None
) -> Experiment:
    where = "experiment"
    if not isinstance(d, Mapping):
        raise fail(where, "must be a mapping")
    unknown = sorted(set(d) - _TOP_KEYS)
    if unknown:
        raise fail(where, f"unknown keys {unknown}; known: {sorted(_TOP_KEYS)}")
    name = check_label(str(d.get("name") or default_name), f"{where}.name")
    if ("workload" in d) == ("workload_file" in d):
        raise fail(where, "give exactly one of `workload` (a mapping) or `workload_file`")
    if "workload_file" in d:
        path = Path(str(d["workload_file"]))
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        base: Mapping[str, Any] = read_document(path)
        files_dir: Path | None = path.parent
    else:
        base = d["workload"]
        files_dir = base_dir
    # validated, every value explicit; the files it names are relative to the file that holds it
    base = workload_to_mapping(workload_of(base, files_dir))
    replications = d.get("replications", 1)
    if isinstance(replications, bool) or not isinstance(replications, int) or replications < 1:
        raise fail(f"{where}.replications", "must be an integer >= 1")
    sweep = d.get("sweep") or {}
    if not isinstance(sweep, Mapping):
        raise fail(f"{where}.sweep", "must be a mapping")
    unknown = sorted(set(sweep) - set(AXES))
    if unknown:
        raise fail(f"{where}.sweep", f"unknown axes {unknown}; known: {list(AXES)}")
    if "concurrency" in sweep and "rate" in sweep:
        raise fail(f"{where}.sweep", "sweep `concurrency` (closed loop) or `rate` (open loop), not both")

    designs = tuple(_list(sweep.get("design", ["mono"]), f"{where}.sweep.design"))
    for design in designs:
        if design not in DESIGNS:
            raise fail(f"{where}.sweep.design", f"{design!r} is not one of {DESIGNS}")

    arrivals: tuple[tuple[str, Any], ...] | None = None
    base_arrival = dict(base["arrival"])
    if "concurrency" in sweep:
        values = _list(sweep["concurrency"], f"{where}.sweep.concurrency")
        if any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in values):
            raise fail(f"{where}.sweep.concurrency", "values must be integers >= 1")
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
            raise fail(f"{where}.sweep.rate", "values must be numbers > 0")
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
            raise fail(f"{where}.sweep.store", f"values must be in {STORES}")
    slots = None
    if "slots" in sweep:
        slots = tuple(_list(sweep["slots"], f"{where}.sweep.slots"))
        if any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in slots):
            raise fail(f"{where}.sweep.slots", "values must be integers >= 1")
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
        raise fail(where, "must be a mapping")
    unknown = sorted(set(d) - _OPTION_KEYS)
    if unknown:
        raise fail(where, f"unknown keys {unknown}; known: {sorted(_OPTION_KEYS)}")
    celery = d.get("celery") or {}
    if not isinstance(celery, Mapping) or set(celery) - {"pool", "worker_processes"}:
        raise fail(f"{where}.celery", "takes only `pool` and `worker_processes`")
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
        raise fail(where, str(exc)) from None
    if options.settle < 0 or options.drain < 0 or options.processes < 1:
        raise fail(where, "need settle >= 0, drain >= 0 and processes >= 1")
    return options


def load_experiment(path: Path | str) -> Experiment:
    path = Path(path)
    data = read_document(path, (".yaml", ".yml"))
    try:
        return experiment_from_mapping(data, default_name=path.stem, base_dir=path.parent)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{path}: {exc.message}") from None
