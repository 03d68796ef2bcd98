"""`sim.run(config) -> SimResult`: one simulated run of a design under a workload.

    import sim
    from model.workload import OpenLoop, WorkloadSpec
    base = sim.load_params("local")                       # data/calibration/local.json
    what_if = base.with_overrides({"service.node.SubmitJob.scale": 2})   # sim/keys.py's meanings
    result = sim.run(sim.SimConfig("mono", WorkloadSpec(OpenLoop(300.0)), what_if))
    result.summary["latency_ms"]["submit"]["p99"]
    result.requests_df, result.jobs_df                    # pandas DataFrames of the records
    path = result.save("data/runs")                       # data/runs/<run_id>/ (data/README.md)
    again = sim.SimResult.load(path)

Determinism: the same config gives identical records. The workload's seed drives the trace (shared
with the real load generator: common random numbers); `seed` (default: the workload's) and
`replication` drive the simulator's own streams (service times, network, commits), one per
component and process (sim/cpu.py).

Records stream out of the run (sim/records.py): beyond `chunk` records of a kind they are spilled,
sorted, to disk and merged into one file at the end, so memory does not grow with them.

Tracing (off by default): `SimConfig(..., trace=(1, 5))` records the per-hop spans of the 1st and
5th submitted jobs (or of job ids, as strings) in the real system's format (sim/tracing.py);
`result.spans`, and `save()` writes them to RUN/spans.jsonl for `dtq trace --file` / `--compare`.

Run ids: `sim-<design>-<name>-<seed>-r<replication>`; a what-if (params with overrides) adds
`-w<hash>`, the first 7 hex digits of the SHA-256 of its overrides as JSON, so it never takes the
baseline's folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import simpy

from model.errors import InvalidArgument
from model.results.runs import (
    JOBS_FILE,
    REQUESTS_FILE,
    load_config,
    load_summary,
    load_workload,
    provenance,
    run_config,
    utc_now,
    workload_of,
    write_run,
)
from model.results.schema import JobRecord, RequestRecord
from model.results.summary import summarize
from model.spans import SPANS_FILE, HopSpan, parse_spans, span_line
from model.workload import WorkloadSpec
from sim.cpu import CostModel, start_background
from sim.engine import Cluster, SimEnv
from sim.injection import Fault, schedule
from sim.loadgen import LoadGen
from sim.micro import MicroCluster
from sim.mono import MonoCluster
from sim.params import SimParams, load_params
from sim.records import CHUNK, JOBS, REQUESTS, Records
from sim.tracing import Chosen, SimTracer, check_chosen
from sim.worker import Executions

if TYPE_CHECKING:  # pandas only when a frame is asked for (sim/records.py)
    import pandas as pd

Design = Literal["micro", "mono"]
DESIGNS: tuple[Design, ...] = ("micro", "mono")
HASH_DIGITS = 7


class PlaceholderWarning(UserWarning):
    """A run on sim/placeholders.py's round numbers (not measurements) for some of its costs."""


def overrides_hash(overrides: Sequence[tuple[str, Any]]) -> str:
    """The short hash a what-if's run id carries: SHA-256 of the overrides as sorted-key JSON."""
    text = json.dumps([list(pair) for pair in overrides], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_DIGITS]


@dataclass(frozen=True, slots=True)
class SimConfig:
    design: Design
    workload: WorkloadSpec
    params: SimParams = field(default_factory=SimParams)
    seed: int | None = None  # the simulator's streams; None: the workload's seed
    replication: int = 0
    faults: tuple[Fault, ...] = ()
    name: str = "workload"  # the workload's name in the run id
    run_id: str = ""  # default: sim-<design>-<name>[-w<hash>]-<seed>-r<replication>
    warm_start: float = 0.5  # seconds the cluster runs (heartbeats, timers) before the trace starts
    trace: tuple[Chosen, ...] = ()  # jobs whose per-hop spans to record: submit ordinals (1 = first) or ids

    def __post_init__(self) -> None:
        if self.design not in DESIGNS:
            raise InvalidArgument(f"design must be micro or mono, got {self.design!r}")
        try:
            object.__setattr__(self, "trace", check_chosen(self.trace))  # a list given: a tuple kept
        except ValueError as exc:
            raise InvalidArgument(str(exc)) from None
        for key, value in (("seed", self.seed), ("replication", self.replication)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise InvalidArgument(f"{key} must be an integer, got {value!r}")
        if isinstance(self.warm_start, bool) or not isinstance(self.warm_start, int | float):
            raise InvalidArgument(f"warm_start must be a number of seconds, got {self.warm_start!r}")
        if self.replication < 0 or (self.seed is not None and self.seed < 0) or self.warm_start < 0:
            raise InvalidArgument("seed, replication and warm_start must be >= 0")
        self.params.check_design(self.design)  # an override this design never reads is an error

    @property
    def sim_seed(self) -> int:
        return self.workload.seed if self.seed is None else self.seed

    @property
    def effective_run_id(self) -> str:
        if self.run_id:
            return self.run_id
        what_if = f"-w{overrides_hash(self.params.overrides)}" if self.params.overrides else ""
        return f"sim-{self.design}-{self.name}{what_if}-{self.workload.seed}-r{self.replication}"

    def with_overrides(self, overrides: Mapping[str, Any]) -> SimConfig:
        """This config with its params' overrides (sim/keys.py), checked against its design."""
        return replace(self, params=self.params.with_overrides(overrides))

    @staticmethod
    def from_mapping(data: Mapping[str, Any]) -> SimConfig:
        """{"design", "workload": {...}, "params": {...}, "overrides": {...}, "calibration": NAME,
        "seed", "replication", "faults": [...], "name", "run_id", "warm_start", "trace": [N or ID]}:
        `params` (a SimParams mapping) or `calibration` (a name or path, sim.params.load_params) is
        the base, `overrides` are applied on it (a mapping, or [key, value] pairs in order).
        `workload` is a workload mapping, a WorkloadSpec, or a workload file's path (.yaml/.toml)."""
        if not isinstance(data, Mapping):  # a str or a list would be read key by key
            raise InvalidArgument(f"expected a SimConfig or a mapping of its keys, got {data!r}")
        known = {
            "design",
            "workload",
            "params",
            "overrides",
            "calibration",
            "seed",
            "replication",
            "faults",
            "name",
            "run_id",
            "warm_start",
            "trace",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidArgument(f"unknown SimConfig keys {unknown} (known: {', '.join(sorted(known))})")
        missing = [key for key in ("design", "workload") if key not in data]
        if missing:
            raise InvalidArgument(f"SimConfig needs {' and '.join(missing)}")
        if "params" in data and "calibration" in data:
            raise InvalidArgument("give params or calibration, not both")
        if "calibration" in data:
            params = load_params(str(data["calibration"]))
        else:
            params = SimParams.from_mapping(data.get("params", {}))
        params = apply_overrides(params, data.get("overrides") or {})
        return SimConfig(
            design=data["design"],
            workload=_workload(data["workload"]),
            params=params,
            seed=data.get("seed"),
            replication=data.get("replication", 0),
            faults=tuple(Fault(**f) for f in data.get("faults", ())),
            name=str(data.get("name", "workload")),
            run_id=str(data.get("run_id", "")),
            warm_start=_seconds("warm_start", data.get("warm_start", 0.5)),
            trace=tuple(data.get("trace") or ()),
        )


def _seconds(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidArgument(f"{key} must be a number of seconds, got {value!r}")
    return float(value)


def _workload(value: Any) -> WorkloadSpec:
    """SimConfig.from_mapping's workload: a spec, a path to a workload file, or a mapping."""
    if isinstance(value, WorkloadSpec):
        return value
    if isinstance(value, str | Path):
        return load_workload(value)
    if not isinstance(value, Mapping):
        raise InvalidArgument(f"workload: expected a mapping, a WorkloadSpec or a file's path, got {value!r}")
    return workload_of(value)


def apply_overrides(params: SimParams, overrides: Mapping[str, Any] | Sequence[Any]) -> SimParams:
    """`overrides` as a mapping, or as [key, value] pairs applied one after the other."""
    if isinstance(overrides, Mapping):
        return params.with_overrides(overrides) if overrides else params
    for pair in overrides:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            raise InvalidArgument(f"overrides: expected [key, value] pairs, got {pair!r}")
        params = params.with_overrides({str(pair[0]): pair[1]})
    return params


@dataclass(eq=False, repr=False)
class SimResult:
    """One run: its config, summary (data/README.md's summary.json, kind "sim"), simulator-side
    `stats` (speed, utilisation, core counters; not part of a run directory), and its records:
    `requests` / `jobs` (iterable Records of model.results.schema objects) and `requests_df` /
    `jobs_df` (pandas DataFrames, built on first use), and `spans`: the traced jobs' per-hop spans
    (SimConfig.trace; empty when off)."""

    config: SimConfig
    requests: Records[RequestRecord]
    jobs: Records[JobRecord]
    summary: dict[str, Any]
    stats: dict[str, Any]
    started_at: str = ""
    spans: list[HopSpan] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.started_at = self.started_at or utc_now()

    @functools.cached_property
    def requests_df(self) -> pd.DataFrame:
        return self.requests.frame()

    @functools.cached_property
    def jobs_df(self) -> pd.DataFrame:
        return self.jobs.frame()

    @property
    def run_id(self) -> str:
        return self.config.effective_run_id

    def run_config(self) -> dict[str, Any]:
        """config.json of this run (data/README.md): the workload, the params as run, their
        overrides and the calibration's name."""
        config = self.config
        params = config.params
        parameters: dict[str, Any] = {
            "calibration": params.name,
            "sim_seed": config.sim_seed,
            "params": params.to_mapping(),
            "overrides": [list(pair) for pair in params.overrides],
        }
        if config.trace:  # the jobs whose spans are in spans.jsonl
            parameters["trace"] = list(config.trace)
        return run_config(
            run_id=self.run_id,
            kind="sim",
            design=config.design,
            workload=config.workload,
            parameters=parameters,
            replication=config.replication,
            started_at=self.started_at,
            provenance_info=provenance(),
        )

    def save(self, root: Path | str, *, records: bool = True, overwrite: bool = False) -> Path:
        """Writes root/<run_id>/ (config.json, requests.csv.gz, jobs.csv.gz, summary.json; spans.jsonl
        when the run traced jobs) and returns it; an existing run is FileExistsError unless `overwrite`."""
        path = write_run(
            root,
            self.run_id,
            self.run_config(),
            self.requests,
            self.jobs,
            self.summary,
            records=records,
            overwrite=overwrite,
        )
        if self.config.trace:
            (path / SPANS_FILE).write_text("".join(span_line(s) for s in self.spans), encoding="utf-8")
        return path

    @staticmethod
    def load(run_dir: Path | str) -> SimResult:
        """A simulated run directory written by save() or `dtq sim` (records streamed from its
        files; `stats` are not saved and come back empty)."""
        run_dir = Path(run_dir)
        cfg = load_config(run_dir)
        if cfg.get("kind") != "sim":
            raise InvalidArgument(f"{run_dir}: not a simulated run (kind {cfg.get('kind')!r})")
        parameters = cfg["parameters"]
        params = SimParams.from_mapping(parameters["params"])
        params = replace(params, overrides=tuple((str(k), v) for k, v in parameters.get("overrides", ())))
        config = SimConfig(
            design=cfg["design"],
            workload=workload_of(cfg["workload"]),
            params=params,
            seed=parameters.get("sim_seed"),
            replication=int(cfg.get("replication", 0)),
            run_id=cfg["run_id"],
            trace=tuple(parameters.get("trace", ())),
        )
        requests: Records[RequestRecord] = (
            Records.from_file(REQUESTS, run_dir / REQUESTS_FILE)
            if (run_dir / REQUESTS_FILE).is_file()
            else Records(REQUESTS, items=[])
        )
        jobs: Records[JobRecord] = (
            Records.from_file(JOBS, run_dir / JOBS_FILE)
            if (run_dir / JOBS_FILE).is_file()
            else Records(JOBS, items=[])
        )
        spans: list[HopSpan] = []
        if (run_dir / SPANS_FILE).is_file():
            with (run_dir / SPANS_FILE).open(encoding="utf-8") as lines:
                spans = list(parse_spans(lines))
        return SimResult(config, requests, jobs, load_summary(run_dir), {}, cfg.get("started_at", ""), spans)


def placeholder_text(params: SimParams, design: str) -> str:
    """The warning block for a run on placeholder costs ('' when none are left), naming them."""
    keys = params.placeholder_keys(design)
    if not keys:
        return ""
    lines = [
        f"warning: {len(keys)} cost(s) of Design {'A' if design == 'micro' else 'B'} are placeholders "
        f"(sim/placeholders.py's round numbers, not measurements; calibration {params.name!r}):"
    ]
    line = " "
    for key in keys:
        if len(line) + len(key) > 100:
            lines.append(line)
            line = " "
        line += f" {key}"
    lines.append(line)
    hint = (
        "--calibration NAME uses measured ones"
        if params.name == SimParams().name
        else "the calibration did not measure them"
    )
    lines.append(f"  ({hint}; `dtq sim params` lists every key and its source)")
    return "\n".join(lines)


def build(
    config: SimConfig, chunk: int = CHUNK, spill_dir: str | None = None
) -> tuple[simpy.Environment, Cluster, LoadGen]:
    """The environment, cluster and load generator of a run, not yet started (tests poke at them)."""
    env = SimEnv()
    params = config.params
    costs = CostModel(params, _entropy(config))
    cluster: Cluster = (
        MonoCluster(env, params, costs) if config.design == "mono" else MicroCluster(env, params, costs)
    )
    loadgen = LoadGen(cluster, config.workload, t0=config.warm_start, chunk=chunk, spill_dir=spill_dir)
    start_background(env, cluster.hosts, costs)  # the host's other processes (none by default)
    return env, cluster, loadgen


def run(
    config: SimConfig | Mapping[str, Any], *, chunk: int = CHUNK, spill_dir: str | None = None
) -> SimResult:
    """Simulates one run. A run on placeholder costs warns (PlaceholderWarning) naming them.
    `chunk`: records of a kind held in memory before they spill to `spill_dir` (sim/records.py)."""
    if not isinstance(config, SimConfig):
        config = SimConfig.from_mapping(config)
    text = placeholder_text(config.params, config.design)
    if text:
        warnings.warn(text, PlaceholderWarning, stacklevel=2)
    started_at = utc_now()
    env, cluster, loadgen = build(config, chunk, spill_dir)
    tracer = SimTracer(cluster, config.trace) if config.trace else None
    cluster.start()
    loadgen.start()
    for fault in config.faults:
        schedule(env, cluster, fault, config.warm_start + fault.at)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    env.run(until=loadgen.done)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    requests, jobs = loadgen.finish()
    executions: Executions = cluster.__dict__.get("executions", Executions())
    sim_seconds = env.now - config.warm_start
    workload = config.workload
    summary = summarize(
        requests,
        jobs,
        window=(workload.warmup, workload.total_time),
        run_id=config.effective_run_id,
        kind="sim",
        design=config.design,
        offered_rate=workload.offered_rate(),
        loadgen=loadgen.loadgen_block(requests, sim_seconds),
    )
    # speed per CPU second of this process: on a shared machine, wall time measures the neighbours
    stats = {
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "sim_seconds": sim_seconds,
        "sim_per_wall": sim_seconds / wall if wall > 0 else float("inf"),
        "sim_per_cpu": sim_seconds / cpu if cpu > 0 else float("inf"),
        "jobs_submitted": len(jobs),
        "jobs_per_wall_second": len(jobs) / wall if wall > 0 else float("inf"),
        "jobs_per_cpu_second": len(jobs) / cpu if cpu > 0 else float("inf"),
        "requests": len(requests),
        # busy share since the cluster started (warm start included: the processes ran then too)
        "utilisation": {p.name: p.busy_time / env.now for p in cluster.procs} if env.now > 0 else {},
        "core_wait": {p.name: p.core_wait for p in cluster.procs},  # seconds with work but no core
        "host_utilisation": {h.name: h.busy_time / (h.cores * env.now) for h in cluster.hosts}
        if env.now > 0
        else {},
        "counters": dict(sorted(cluster.counters.items())),
        "core": cluster.core_counters(),
        "executions": len(executions),
        "duplicate_jobs": len(executions.duplicates()),
        "records_spilled": requests.path is not None or jobs.path is not None,
    }
    if tracer is None:
        return SimResult(config, requests, jobs, summary, stats, started_at)
    stats["trace_missing"] = tracer.missing()  # chosen jobs that have no span (never submitted)
    stats["trace_submitted"] = tracer.submitted  # the jobs the submit ordinals counted
    return SimResult(config, requests, jobs, summary, stats, started_at, tracer.sorted_spans())


def _entropy(config: SimConfig) -> int:
    # one integer from (seed, replication), so replications get unrelated streams
    return config.sim_seed * 1_000_003 + config.replication
