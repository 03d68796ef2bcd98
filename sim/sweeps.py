"""`sim.sweep(base, grid, replications=5) -> DataFrame`: many simulations, one tidy table.

    import sim
    base = sim.SimConfig("mono", workload, sim.load_params("local"))
    grid = {"workload.arrival.rate": [100, 200, 400], "service.node.SubmitJob.scale": [1, 2]}
    df = sim.sweep(base, grid, replications=5)
    df[df.metric == "latency_ms.submit.p50"].groupby(list(grid))["value"].mean()

Grid: a mapping of key -> values (their cartesian product, the first key varying slowest), or a list
of points (mappings). A key is `design`, `workload.<field>` (a dotted path into the workload
mapping, e.g. workload.arrival.rate, workload.duration.mean, workload.mix), or any override key
(sim/keys.py). Every point is built and checked before anything runs.

Seeds (documented rule): replication r of every point runs the trace of workload seed
`base.workload.seed + r` (common random numbers: every point sees the same arrivals, durations and
ops in replication r), and the simulator's own streams from `point_seed(base seed, point)`: the first
4 bytes of SHA-256 of [sim seed of the base, the point's key/value pairs as sorted JSON], with the
replication (sim.api's entropy: seed * 1_000_003 + replication). A point's seed depends on what the
point is, not where it sits in the grid: adding points changes no other point's numbers.

The table: one row per point, replication and metric, with the point's values in columns named by
their keys, `point` (index), `replication`, `seed` (the trace's), `sim_seed`, `metric`, `value`, and
per (point, metric) over the replications `mean`, `ci_low`, `ci_high` (Student-t, `confidence`,
model.results.stats.mean_ci) and `n`. A metric is a dotted path into summary.json (DEFAULT_METRICS);
one missing from a run's summary (an op not in its mix) is NaN.

Where it runs: `workers=1` in this process; otherwise a local process pool of `workers` (default:
the machine's cores); with `address` (a Dask scheduler, "tcp://host:8786") on that Dask cluster.
Each task crosses as JSON text (the run's config in, its summary out) and results come back in task
order, so the table is byte-identical whichever runs it.

Why Dask distributed rather than Ray: a sweep is a bag of independent, CPU-bound, pure-Python tasks
of ~0.1-10 s, which both schedule well (Vidur runs its config search on Ray, one simulation per core).
Dask is pure Python (pip-installable everywhere this project runs, no native object store or GCS
daemons), its scheduler and workers are ordinary processes started by `dask scheduler` / `dask
worker` (as `local_cluster` does, and as any machine reachable over TCP can join), and it costs a few
tens of MB per process instead of Ray's raylet + plasma store per node. Ray's strengths (actors,
GPUs, a shared-memory object store for large arrays) are not what a sweep of summaries needs.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from model.errors import InvalidArgument
from model.results.stats import mean_ci
from model.results.summary import metric
from model.workload import workload_from_mapping, workload_to_mapping
from sim.api import DESIGNS, PlaceholderWarning, SimConfig, placeholder_text, run
from sim.keys import every_key, nearest, target

if TYPE_CHECKING:  # pandas when the table is built (a heavy import, kept off `dtq sim`)
    import pandas as pd

DEFAULT_METRICS = (
    "throughput.requests_per_s",
    "throughput.jobs_per_s",
    "throughput.completed_per_s",
    "latency_ms.all.p50",
    "latency_ms.all.p99",
    "latency_ms.submit.p50",
    "latency_ms.submit.p99",
    "completion_ms.p50",
    "completion_ms.p99",
    "jobs.unfinished",
)
_STATS = ("count", "p50", "p95", "p99", "p999", "mean", "max")
_OPS = ("all", "submit", "status", "result", "list", "cancel")
KNOWN_METRICS = (
    *(f"throughput.{k}" for k in ("requests_per_s", "jobs_per_s", "completed_per_s")),
    *(f"latency_ms.{op}.{s}" for op in _OPS for s in _STATS),
    *(f"completion_ms.{s}" for s in _STATS),
    *(f"jobs.{k}" for k in ("submitted", "succeeded", "failed", "cancelled", "unfinished")),
    "loadgen.achieved_rate",
    "loadgen.cpu_utilisation",
)


@dataclass(frozen=True, slots=True)
class Task:
    """One (point, replication): its index pair and the JSON text a worker runs."""

    point: int
    replication: int
    seed: int
    sim_seed: int
    text: str


def point_seed(base_seed: int, point: Mapping[str, Any]) -> int:
    """The simulator seed of a sweep point (the module docstring's rule)."""
    text = json.dumps([base_seed, sorted(point.items())], sort_keys=True, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")


def grid_points(grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The points of a grid: the cartesian product of a mapping's value lists, or a list of points."""
    if isinstance(grid, Mapping):
        for key, values in grid.items():
            if isinstance(values, str | bytes) or not isinstance(values, Sequence) or not values:
                raise InvalidArgument(f"grid {key!r}: expected a non-empty list of values, got {values!r}")
        keys = list(grid)
        return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*grid.values())]
    if isinstance(grid, str | bytes) or not isinstance(grid, Sequence) or not grid:
        raise InvalidArgument(
            f"grid: expected a mapping of key -> values or a non-empty list of points, got {grid!r}"
        )
    if not all(isinstance(p, Mapping) for p in grid):
        raise InvalidArgument("grid: expected a mapping of key -> values or a non-empty list of points")
    return [dict(p) for p in grid]


def _set_path(tree: dict[str, Any], path: list[str], value: Any, full: str) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            raise InvalidArgument(f"{full}: {part!r} is not a mapping in the workload")
        node = child
    if path[-1] not in node:
        near = nearest(path[-1], list(node))
        hint = f"; nearest: {', '.join(near)}" if near else f"; fields: {', '.join(sorted(node))}"
        raise InvalidArgument(f"{full}: the workload has no field {path[-1]!r}{hint}")
    node[path[-1]] = value


class _NoFiles:
    """A grid value names no file: a point's workload travels as JSON to workers that may not see
    it (the base workload's files are read once, from its file, and travel as their numbers)."""

    def samples(self, path: str) -> tuple[str, tuple[float, ...]]:
        raise InvalidArgument(
            f"{path!r}: a grid value cannot name a file; give its numbers as `samples: [...]`, or "
            "name the file in the base workload"
        )

    def recording(self, path: str) -> Any:
        self.samples(path)


def point_config(base: SimConfig, point: Mapping[str, Any]) -> tuple[dict[str, Any], SimConfig]:
    """A point's task mapping (without seeds) and its SimConfig, checked (keys, values, design)."""
    design = base.design
    workload = workload_to_mapping(base.workload)
    overrides: list[list[Any]] = []
    for key, value in point.items():
        if key == "design":
            if value not in DESIGNS:
                raise InvalidArgument(f"grid design: expected micro or mono, got {value!r}")
            design = value
        elif key.startswith("workload."):
            if key == "workload.seed":
                raise InvalidArgument("workload.seed: a sweep sets seeds by replication (sim/sweeps.py)")
            _set_path(workload, key.split(".")[1:], value, key)
        else:
            try:
                target(key)
            except InvalidArgument as exc:
                if key not in every_key():
                    hint = " (or design, workload.<field>)"
                    raise InvalidArgument(f"grid: {exc.message}{hint}") from None
                raise
            overrides.append([key, value])
    try:
        spec = workload_from_mapping(workload, _NoFiles())
    except InvalidArgument as exc:
        raise InvalidArgument(f"grid point {dict(point)}: {exc.message}") from None
    params = base.params
    for key, value in overrides:
        params = params.with_overrides({key: value})
    config = replace(base, design=design, workload=spec, params=params)  # checks the design
    task = {
        "design": design,
        "workload": workload,
        "params": base.params.to_mapping(),
        "overrides": overrides,
        "name": base.name,
        "warm_start": base.warm_start,
    }
    return task, config


def check_metrics(metrics: Sequence[str]) -> list[str]:
    if isinstance(metrics, str) or not isinstance(metrics, Sequence):  # a str would be its letters
        raise InvalidArgument(f"metrics: expected a list of metric names, got {metrics!r}")
    out = []
    for name in metrics:
        if name not in KNOWN_METRICS and not name.startswith("errors."):
            near = nearest(name, KNOWN_METRICS)
            raise InvalidArgument(
                f"unknown metric {name!r}" + (f"; nearest: {', '.join(near)}" if near else "")
            )
        out.append(name)
    if not out:
        raise InvalidArgument("no metrics asked for")
    return out


def plan(
    base: SimConfig,
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    replications: int,
    *,
    stats: bool = False,
) -> tuple[list[dict[str, Any]], list[Task]]:
    """The points and their tasks, replication-major within each point. `stats`: each task's
    summary also carries a `sim` block of the run's busy shares (run_task)."""
    if isinstance(replications, bool) or not isinstance(replications, int) or replications < 1:
        raise InvalidArgument(f"replications must be an integer >= 1, got {replications!r}")
    if base.faults:
        raise InvalidArgument("sweeps of fault runs: sim/faults.py (dtq sim faults)")
    points = grid_points(grid)
    tasks = []
    warned: set[str] = set()
    for i, point in enumerate(points):
        task, config = point_config(base, point)
        text = placeholder_text(config.params, config.design)
        if text and config.design not in warned:
            warned.add(config.design)
            warnings.warn(text, PlaceholderWarning, stacklevel=3)
        seed = point_seed(base.sim_seed, point)
        for r in range(replications):
            wl = {**task["workload"], "seed": base.workload.seed + r}
            body = {**task, "workload": wl, "seed": seed, "replication": r}
            if stats:
                body["stats"] = True
            tasks.append(Task(i, r, wl["seed"], seed, json.dumps(body, sort_keys=True)))
    return points, tasks


SIM_STATS = ("utilisation", "core_wait", "host_utilisation")


def run_task(text: str) -> str:
    """A worker's job: a task's JSON in, its summary's JSON out (what crosses between processes).
    A task with `"stats": true` adds a `sim` block to the summary: the run's SIM_STATS (per process
    and host busy shares over the simulated run, sim.api.run's stats; deterministic)."""
    body = json.loads(text)
    with_stats = bool(body.pop("stats", False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PlaceholderWarning)  # the sweep warned once, up front
        result = run(SimConfig.from_mapping(body))
    summary = result.summary
    if with_stats:
        summary = {**summary, "sim": {k: result.stats[k] for k in SIM_STATS}}
    return json.dumps(summary, sort_keys=True)


def execute(texts: Sequence[str], workers: int | None = None, address: str = "") -> list[str]:
    """Runs task texts in order: here (workers=1), on a local process pool, or on a Dask cluster."""
    if address:
        return _on_dask(texts, address)
    workers = workers or os.cpu_count() or 1
    if workers < 1:
        raise InvalidArgument(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(texts) == 1:
        return [run_task(t) for t in texts]
    # the platform's start method (fork on Linux: a script needs no `if __name__ == "__main__"` guard)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run_task, texts, chunksize=1))


def _on_dask(texts: Sequence[str], address: str) -> list[str]:
    try:
        from distributed import Client  # an optional dependency (the lab extra)
    except ImportError:
        raise InvalidArgument("sweeps on a cluster need Dask: pip install 'dtq[lab]'") from None
    try:
        client = Client(address, timeout="10s")  # type: ignore[no-untyped-call]
    except (OSError, TimeoutError) as exc:
        raise InvalidArgument(f"no Dask scheduler answers at {address}: {exc}") from None
    with client:
        futures = client.map(run_task, list(texts), pure=False)
        return list(client.gather(futures))  # type: ignore[no-untyped-call]


def table(
    points: Sequence[Mapping[str, Any]],
    tasks: Sequence[Task],
    summaries: Sequence[Mapping[str, Any]],
    metrics: Sequence[str],
    confidence: float = 0.95,
) -> pd.DataFrame:
    """The tidy DataFrame of the module docstring."""
    import pandas as pd  # the sim extra's; a heavy import kept off the simulator's start-up

    keys = list(dict.fromkeys(k for p in points for k in p))
    rows = []
    for task, summary in zip(tasks, summaries, strict=True):
        point = points[task.point]
        for name in metrics:
            value = metric(summary, name.split("."))
            if value is None and name.startswith("errors."):
                value = 0.0
            rows.append(
                {
                    **{k: _cell(point.get(k)) for k in keys},
                    "point": task.point,
                    "replication": task.replication,
                    "seed": task.seed,
                    "sim_seed": task.sim_seed,
                    "metric": name,
                    "value": float("nan") if value is None else value,
                }
            )
    df = pd.DataFrame(rows)
    stats = {}
    for (p, name), group in df.groupby(["point", "metric"], sort=False):
        values = [v for v in group["value"].tolist() if not math.isnan(v)]
        mean, half = mean_ci(values, confidence)
        stats[(p, name)] = (mean, mean - half, mean + half, len(values))
    per_row = [stats[(p, m)] for p, m in zip(df["point"], df["metric"], strict=True)]
    for i, col in enumerate(("mean", "ci_low", "ci_high", "n")):
        df[col] = [row[i] for row in per_row]
    return df


def _cell(value: Any) -> Any:
    return json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value


def sweep(
    base: SimConfig | Mapping[str, Any],
    grid: Mapping[str, Sequence[Any]] | Sequence[Mapping[str, Any]],
    replications: int = 5,
    *,
    metrics: Sequence[str] = DEFAULT_METRICS,
    workers: int | None = None,
    address: str = "",
    confidence: float = 0.95,
) -> pd.DataFrame:
    """Simulates every grid point `replications` times and returns the tidy table (module docstring)."""
    if not isinstance(base, SimConfig):
        base = SimConfig.from_mapping(base)
    metrics = check_metrics(metrics)
    if not 0 < confidence < 1:  # scipy's t.ppf would give every interval NaN bounds
        raise InvalidArgument(f"confidence must be in (0, 1), e.g. 0.95, got {confidence!r}")
    points, tasks = plan(base, grid, replications)
    summaries = [json.loads(s) for s in execute([t.text for t in tasks], workers, address)]
    return table(points, tasks, summaries, metrics, confidence)


# ---------------------------------------------------------------------------- a local Dask cluster
@contextlib.contextmanager
def local_cluster(workers: int = 2, timeout: float = 60.0) -> Iterator[str]:
    """A real Dask cluster on this machine's loopback: `dask scheduler` and `workers` `dask worker`
    processes (one thread each), as separate processes; yields the scheduler's address and stops
    them all on exit. The scheduler picks a free port (its address comes back in a scheduler file)."""
    dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or shutil.which("dask")
    if dask is None:
        raise InvalidArgument("the `dask` command is missing: pip install 'dtq[lab]'")
    folder = Path(tempfile.mkdtemp(prefix="dtq-dask-"))
    scheduler_file = folder / "scheduler.json"
    common = ["--no-dashboard"]
    procs: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as files:

        def log(name: str) -> Any:
            return files.enter_context(open(folder / name, "wb"))

        try:
            scheduler = [dask, "scheduler", "--host", "127.0.0.1", "--port", "0"]
            scheduler += ["--scheduler-file", str(scheduler_file), *common]
            procs.append(subprocess.Popen(scheduler, stdout=log("scheduler.log"), stderr=subprocess.STDOUT))
            address = _wait_for(lambda: _address(scheduler_file), timeout, procs, folder)
            for i in range(workers):
                worker = [
                    dask,
                    "worker",
                    address,
                    "--nthreads",
                    "1",
                    "--nworkers",
                    "1",
                    "--memory-limit",
                    "0",
                ]
                worker += ["--host", "127.0.0.1", "--name", f"w{i}", *common]
                procs.append(subprocess.Popen(worker, stdout=log(f"worker{i}.log"), stderr=subprocess.STDOUT))
            from distributed import Client  # an optional dependency (the lab extra)

            with Client(address, timeout="10s") as client:  # type: ignore[no-untyped-call]
                client.wait_for_workers(workers, timeout=timeout)
            yield address
        finally:
            for proc in reversed(procs):
                proc.terminate()
            for proc in reversed(procs):
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=5)
    shutil.rmtree(folder, ignore_errors=True)


def _address(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    address = data.get("address")
    return address if isinstance(address, str) else None


def _wait_for(
    probe: Callable[[], str | None], timeout: float, procs: Sequence[subprocess.Popen[bytes]], folder: Path
) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        if any(p.poll() is not None for p in procs):
            break
        time.sleep(0.1)
    log = (folder / "scheduler.log").read_text(errors="replace")[-2000:]
    raise RuntimeError(f"the Dask scheduler did not start within {timeout:g} s:\n{log}")
