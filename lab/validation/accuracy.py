"""The validation matrix and its error table: the simulator, fed only the calibration, against the
real local cluster (issue 7). `dtq validate EXPERIMENT.yaml [--real] [--sim] [--table]`.

A validation file (data/experiments/validation.yaml) names a base workload and the axes:

    name: validation
    calibration: local                       # data/calibration/<name>.json: the sim's only input
    workload: {arrival: {kind: open, rate: 1, max_in_flight: 1024}, run_time: 4, warmup: 1, seed: 11}
    replications: 3
    designs: [micro, mono]
    durations: {noop: {kind: constant, mean: 0}, exp50ms: {kind: exponential, mean: 0.05}}
    mixes: {submit: {submit: 1.0}, mixed: {submit: 0.5, status: 0.25, result: 0.25}}
    fractions: [0.1, 0.3, 0.5, 0.7, 0.9]     # open-loop rates as fractions of the measured saturation
    own_fractions: [0.7, 0.9]                # extra rates for the stronger design, of its own saturation
    store: sqlite                            # the store the calibration's commit costs are for
    slots: 12
    saturation: {clients: 32, run_time: 3, warmup: 1, replications: 1}
    bands: [0.5, 0.8]                        # utilisation bands: rho <= 0.5, 0.5 < rho <= 0.8, rho > 0.8
    options: {settle: 0.5, drain: 5}         # the experiment runner's options

Method (decided here, see data/experiments/validation.yaml):
1. Saturation, per design x duration x mix: one closed-loop run with `saturation.clients` clients that do
   not wait for their jobs (they keep the system full). Its saturation rate (requests/s) is
   min(served requests/s, completed jobs/s / submit fraction): the request path's capacity, or the rate
   whose submits the workers can just finish, whichever is lower.
2. Points, per duration x mix: open-loop Poisson rates = fraction x min over designs of the saturation,
   so both designs see the same offered rate (a winner can be named at every point); each design's
   rho = rate / its own saturation, which puts the points into utilisation bands.
3. Every real run found on disk is simulated with the same workload (same trace seed: common random
   numbers), replication and settings, from the calibration alone (nothing is fitted to these runs).

This module is the sim side and the arithmetic; it imports nothing from realsys (the real runs are made
by realsys/experiment.py from the experiment mappings built here) and reads runs from disk.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from model.errors import InvalidArgument
from model.results.stats import mean_ci, winner
from model.workload import workload_from_mapping, workload_to_mapping

DESIGNS = ("micro", "mono")
_TOP_KEYS = frozenset(
    {
        "name",
        "description",
        "calibration",
        "workload",
        "replications",
        "designs",
        "durations",
        "mixes",
        "fractions",
        "own_fractions",
        "store",
        "slots",
        "saturation",
        "bands",
        "options",
        "host_scale",
        "sim_overrides",
    }
)
# (column name, path in summary.json, +1 when higher is better / -1 when lower is better)
METRICS: tuple[tuple[str, tuple[str, ...], int], ...] = (
    ("throughput", ("throughput", "requests_per_s"), +1),
    ("completed", ("throughput", "completed_per_s"), +1),
    ("p50", ("latency_ms", "all", "p50"), -1),
    ("p95", ("latency_ms", "all", "p95"), -1),
    ("p99", ("latency_ms", "all", "p99"), -1),
    ("done_p50", ("completion_ms", "p50"), -1),
)
WINNER_METRICS = ("p50", "p99", "done_p50", "throughput")
DEFAULT_OUT = Path("data/validation")


# ---------------------------------------------------------------------------- the validation file
@dataclass(frozen=True, slots=True)
class Saturation:
    clients: int = 32
    run_time: float = 3.0
    warmup: float = 1.0
    replications: int = 1


@dataclass(frozen=True, slots=True)
class Validation:
    name: str
    calibration: str
    base: Mapping[str, Any]  # the base workload mapping (validated, every value explicit)
    replications: int
    designs: tuple[str, ...]
    durations: tuple[tuple[str, Any], ...]
    mixes: tuple[tuple[str, Any], ...]
    fractions: tuple[float, ...]
    own_fractions: tuple[float, ...] = ()
    store: str = "sqlite"
    slots: int = 12
    saturation: Saturation = Saturation()
    bands: tuple[float, ...] = (0.5, 0.8)
    options: Mapping[str, Any] = field(default_factory=dict)
    description: str = ""
    # move each twin to its run's host speed (sim.params.HostScale) when the run and the calibration
    # carry host probes (options.host_probe: true)
    host_scale: bool = True
    # what-ifs laid over the calibration for every twin (SimParams.with_overrides dotted keys),
    # recorded in each twin's config.json; empty: the calibration alone
    sim_overrides: Mapping[str, Any] = field(default_factory=dict)

    @property
    def cells(self) -> list[tuple[str, str]]:
        """(duration label, mix label) pairs: the cells whose rates share one saturation base."""
        return [(d, m) for d, _ in self.durations for m, _ in self.mixes]

    def submit_fraction(self, mix_label: str) -> float:
        return float(dict(self.mixes)[mix_label].get("submit", 0.0))


def _fail(message: str) -> InvalidArgument:
    return InvalidArgument(f"validation: {message}")


def _labelled(value: Any, key: str) -> tuple[tuple[str, Any], ...]:
    if not isinstance(value, Mapping) or not value:
        raise _fail(f"{key} must be a non-empty mapping of label -> value")
    for label in value:
        if not str(label).replace("_", "").replace(".", "").isalnum():
            raise _fail(f"{key}: label {label!r} may only use letters, digits, '_' and '.'")
    return tuple((str(k), v) for k, v in value.items())


def validation_from_mapping(d: Any, *, default_name: str = "validation") -> Validation:
    if not isinstance(d, Mapping):
        raise _fail("the file must hold one mapping")
    unknown = sorted(set(d) - _TOP_KEYS)
    if unknown:
        raise _fail(f"unknown keys {unknown}; known: {sorted(_TOP_KEYS)}")
    base = workload_to_mapping(
        workload_from_mapping(d.get("workload") or {"arrival": {"kind": "open", "rate": 1}})
    )
    designs = tuple(d.get("designs", DESIGNS))
    if not designs or any(x not in DESIGNS for x in designs) or len(set(designs)) != len(designs):
        raise _fail(f"designs must be distinct values of {DESIGNS}")
    fractions = tuple(float(f) for f in d.get("fractions", ()))
    if not fractions or any(not 0 < f <= 1.5 for f in fractions) or len(set(fractions)) != len(fractions):
        raise _fail("fractions must be distinct numbers in (0, 1.5]")
    own_fractions = tuple(float(f) for f in d.get("own_fractions", ()))
    if any(not 0 < f <= 1.5 for f in own_fractions) or len(set(own_fractions)) != len(own_fractions):
        raise _fail("own_fractions must be distinct numbers in (0, 1.5]")
    bands = tuple(float(b) for b in d.get("bands", (0.5, 0.8)))
    if list(bands) != sorted(set(bands)) or any(b <= 0 for b in bands):
        raise _fail("bands must be increasing positive rho edges")
    sat = d.get("saturation") or {}
    if not isinstance(sat, Mapping) or set(sat) - {"clients", "run_time", "warmup", "replications"}:
        raise _fail("saturation takes clients, run_time, warmup, replications")
    saturation = Saturation(**{k: type(getattr(Saturation(), k))(v) for k, v in sat.items()})
    if (
        saturation.clients < 1
        or saturation.run_time <= 0
        or saturation.warmup < 0
        or saturation.replications < 1
    ):
        raise _fail("saturation needs clients >= 1, run_time > 0, warmup >= 0, replications >= 1")
    replications = d.get("replications", 1)
    if isinstance(replications, bool) or not isinstance(replications, int) or replications < 1:
        raise _fail("replications must be an integer >= 1")
    store = str(d.get("store", "sqlite"))
    slots = d.get("slots", 12)
    if (
        store not in ("sqlite", "memory")
        or isinstance(slots, bool)
        or not isinstance(slots, int)
        or slots < 1
    ):
        raise _fail("store is sqlite or memory; slots an integer >= 1")
    options = d.get("options") or {}
    if not isinstance(options, Mapping):
        raise _fail("options must be a mapping")
    what_ifs = d.get("sim_overrides") or {}
    if not isinstance(what_ifs, Mapping):
        raise _fail("sim_overrides must be a mapping of simulator parameter -> value")
    from sim.params import SimParams

    try:  # checked against the simulator's parameters when the file loads, not at the first twin
        SimParams().with_overrides(what_ifs)
    except InvalidArgument as exc:
        raise _fail(f"sim_overrides: {exc.message}") from None
    v = Validation(
        name=str(d.get("name") or default_name),
        calibration=str(d.get("calibration", "local")),
        base=base,
        replications=replications,
        designs=designs,
        durations=_labelled(d.get("durations"), "durations"),
        mixes=_labelled(d.get("mixes"), "mixes"),
        fractions=fractions,
        own_fractions=own_fractions,
        store=store,
        slots=slots,
        saturation=saturation,
        bands=bands,
        options=dict(options),
        description=str(d.get("description", "")),
        host_scale=bool(d.get("host_scale", True)),
        sim_overrides={str(k): value for k, value in what_ifs.items()},
    )
    for _, mix in v.mixes:  # every point needs submits: completion and job throughput are compared
        if not isinstance(mix, Mapping) or not float(mix.get("submit", 0)) > 0:
            raise _fail("every mix needs a submit fraction > 0")
    return v


def load_validation(path: Path | str) -> Validation:
    path = Path(path)
    try:
        return validation_from_mapping(yaml.safe_load(path.read_text()), default_name=path.stem)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{path}: {exc.message}") from None


# ---------------------------------------------------------------------------- plans (experiment mappings)
def saturation_name(v: Validation) -> str:
    return f"{v.name}_sat"


def saturation_mapping(v: Validation) -> dict[str, Any]:
    """The experiment (realsys/experiment.py's file format) that measures each cell's saturation."""
    s = v.saturation
    workload = {
        **v.base,
        "arrival": {"kind": "closed", "clients": 1, "wait_for_completion": False},
        "run_time": s.run_time,
        "warmup": s.warmup,
    }
    return {
        "name": saturation_name(v),
        "workload": workload,
        "replications": s.replications,
        "sweep": {
            "design": list(v.designs),
            "concurrency": [s.clients],
            "duration": dict(v.durations),
            "mix": dict(v.mixes),
            "store": [v.store],
            "slots": [v.slots],
        },
        "options": dict(v.options),
    }


def rates_of(v: Validation, base_rate: float, fractions: Sequence[float] | None = None) -> list[float]:
    """The open-loop rates of one cell: fraction x base, to 3 significant digits (they name runs)."""
    fractions = v.fractions if fractions is None else fractions
    rates = [float(f"{f * base_rate:.3g}") for f in fractions]
    if len(set(rates)) != len(rates):
        raise _fail(f"fractions {fractions} of {base_rate:.3g} req/s round to equal rates {rates}")
    return rates


def point_mappings(v: Validation, saturation: Mapping[tuple[str, str, str], float]) -> list[dict[str, Any]]:
    """Per cell with a measured saturation for every design, one experiment with both designs at
    fraction x min(saturation over designs) (common rates: a winner at each), and for each design
    whose own saturation is > 10% above that base, one with it alone at own_fractions x its own
    saturation (else the stronger design would never reach the high-utilisation bands)."""
    out: list[dict[str, Any]] = []
    for d_label, m_label in v.cells:
        sats = {design: saturation.get((design, d_label, m_label)) for design in v.designs}
        if any(s is None or not s > 0 for s in sats.values()):
            continue
        base_rate = min(s for s in sats.values() if s is not None)
        common = rates_of(v, base_rate)
        sweeps: list[tuple[list[str], list[float]]] = [(list(v.designs), common)]
        for design, sat in sats.items():
            if v.own_fractions and sat is not None and sat > 1.1 * base_rate:
                own = [r for r in rates_of(v, sat, v.own_fractions) if r not in common]
                if own:
                    sweeps.append(([design], own))
        out.extend(_cell_mapping(v, d_label, m_label, designs, rates) for designs, rates in sweeps)
    return out


def _cell_mapping(
    v: Validation, d_label: str, m_label: str, designs: list[str], rates: list[float]
) -> dict[str, Any]:
    return {
        "name": v.name,
        "workload": dict(v.base),
        "replications": v.replications,
        "sweep": {
            "design": designs,
            "rate": rates,
            "duration": {d_label: dict(v.durations)[d_label]},
            "mix": {m_label: dict(v.mixes)[m_label]},
            "store": [v.store],
            "slots": [v.slots],
        },
        "options": dict(v.options),
    }


# ---------------------------------------------------------------------------- runs on disk
@dataclass(frozen=True, slots=True)
class RunInfo:
    run_id: str
    kind: str
    design: str
    point: Mapping[str, str]  # axis -> label (the runner's parameters.point)
    workload: Mapping[str, Any]
    replication: int
    summary: Mapping[str, Any]
    started_at: str = ""
    probe: Mapping[str, Any] | None = None  # lab.calibration.hostprobe at its start, when taken


def _runs(root: Path, kind: str, experiment: str) -> list[RunInfo]:
    """Complete runs of `kind` made for `experiment` (run ids <kind>-<design>-<experiment>.<labels>-...)."""
    from model.results.runs import load_config, load_summary, run_exists

    out = []
    for design in DESIGNS:
        for path in sorted(root.glob(f"{kind}-{design}-{experiment}.*")):
            if not path.is_dir() or not run_exists(root, path.name):
                continue
            config = load_config(path)
            out.append(
                RunInfo(
                    run_id=path.name,
                    kind=kind,
                    design=str(config["design"]),
                    point=dict(config.get("parameters", {}).get("point", {})),
                    workload=config["workload"],
                    replication=int(config.get("replication", 0)),
                    summary=load_summary(path),
                    started_at=str(config.get("started_at", "")),
                    probe=config.get("parameters", {}).get("host_probe"),
                )
            )
    return out


def metric(summary: Mapping[str, Any], path: tuple[str, ...]) -> float | None:
    value: Any = summary
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def saturation_rate(summary: Mapping[str, Any], submit_fraction: float) -> float | None:
    """min(served requests/s, completed jobs/s / submit fraction): see the module docstring."""
    served = metric(summary, ("throughput", "requests_per_s"))
    done = metric(summary, ("throughput", "completed_per_s"))
    if served is None or done is None or not submit_fraction > 0:
        return None
    return min(served, done / submit_fraction)


def measured_saturation(v: Validation, root: Path, kind: str = "real") -> dict[tuple[str, str, str], float]:
    """(design, duration, mix) -> mean saturation rate over the saturation runs of `kind` on disk."""
    values: dict[tuple[str, str, str], list[float]] = {}
    for run in _runs(root, kind, saturation_name(v)):
        if run.workload["arrival"].get("clients") != v.saturation.clients:
            continue
        key = (run.design, run.point.get("duration", ""), run.point.get("mix", ""))
        rate = saturation_rate(run.summary, v.submit_fraction(key[2])) if key[2] in dict(v.mixes) else None
        if rate is not None:
            values.setdefault(key, []).append(rate)
    return {k: statistics.fmean(xs) for k, xs in values.items()}


# ---------------------------------------------------------------------------- the sim side
def sim_overrides(v: Validation, processes: int = 1) -> dict[str, Any]:
    """The experiment's own settings laid over the calibration (slots, store, drain, generators)."""
    overrides: dict[str, Any] = {"slots": v.slots, "store": v.store, "loadgen_processes": processes}
    if "drain" in v.options:
        overrides["drain"] = float(v.options["drain"])
    overrides.update(v.sim_overrides)
    return overrides


def sim_params(v: Validation, processes: int = 1) -> Any:
    """The calibration with sim_overrides: everything the simulator is told."""
    from sim.params import load_params

    return load_params(v.calibration).with_overrides(sim_overrides(v, processes))


def params_digest(params: Any) -> str:
    import hashlib

    return hashlib.sha256(json.dumps(params.to_mapping(), sort_keys=True).encode()).hexdigest()[:16]


def sim_run_id(real_run_id: str) -> str:
    kind, _, rest = real_run_id.partition("-")
    if kind != "real":
        raise InvalidArgument(f"{real_run_id!r} is not a real run id")
    return f"sim-{rest}"


PROBE_NEIGHBOURS = 9  # a run's host speed: the median probe of this many runs nearest in start time


def host_scales(v: Validation, runs: Sequence[RunInfo]) -> dict[str, Any]:
    """Per real run id, the sim.params.HostScale from the calibration's probe to the run's host, or
    None (no scaling: host_scale off, or a probe missing). A run's own probe is noisy (+-20% from one
    probe to the next) while the host drifts over minutes, so a run's speed is the field-by-field
    median of the PROBE_NEIGHBOURS probed runs of its design nearest to it in start time (itself
    included), against the calibration's probes taken with that design's cluster up."""
    from sim.params import HostScale, load_host_probe, median_probe

    out: dict[str, Any] = {r.run_id: None for r in runs}
    if not v.host_scale:
        return out
    references = {d: load_host_probe(v.calibration, d) for d in {r.design for r in runs}}
    half = PROBE_NEIGHBOURS // 2
    for design, reference in references.items():
        if reference is None:
            continue
        probed = sorted(
            (r for r in runs if r.probe and r.design == design), key=lambda r: (r.started_at, r.run_id)
        )
        for i, run in enumerate(probed):
            lo = max(0, min(i - half, len(probed) - PROBE_NEIGHBOURS))
            window = [r.probe for r in probed[lo : lo + PROBE_NEIGHBOURS] if r.probe]
            try:
                out[run.run_id] = HostScale.between(median_probe(window), reference)
            except InvalidArgument:  # a degenerate probe median (a wake-up of 0): leave the twin unmoved
                out[run.run_id] = None
    return out


def simulate(
    v: Validation, root: Path | str, *, records: bool = True, log: Any = print, force: bool = False
) -> list[str]:
    """Simulates every real run of the validation found under `root` (points and saturation runs) that
    has no up-to-date simulated twin (same workload, inputs and host scale; the simulator's own code
    is not compared: `force` re-makes every twin after a change to it); returns the run ids written.
    Same workload, seed, replication."""
    import sim
    from model.results.runs import load_config, provenance, run_config, run_exists, utc_now, write_run

    root = Path(root)
    params = sim_params(v, int(v.options.get("processes", 1)))
    # a digest, not the ~90 kB mapping (empirical samples), keeps each twin's config.json small
    wanted = params_digest(params)
    stamp = provenance()
    written = []
    reals = _runs(root, "real", saturation_name(v)) + _runs(root, "real", v.name)
    scales = host_scales(v, reals)
    for real in reals:
        run_id = sim_run_id(real.run_id)
        scale = scales[real.run_id]
        scale_mapping = scale.to_mapping() if scale is not None else None
        if run_exists(root, run_id) and not force:
            old = load_config(root / run_id)
            old_parameters = old.get("parameters", {})
            if (
                old.get("workload") == real.workload
                and old_parameters.get("params_sha256") == wanted
                and old_parameters.get("host_scale") == scale_mapping
            ):
                continue  # up to date: same workload, same calibration, settings and host scale
        workload = workload_from_mapping(real.workload)
        config = sim.SimConfig(
            design=real.design,  # type: ignore[arg-type]
            workload=workload,
            params=params if scale is None else params.on_host(scale),
            replication=real.replication,
            run_id=run_id,
        )
        started = utc_now()
        result = sim.run(config)
        cfg = run_config(
            run_id=run_id,
            kind="sim",
            design=real.design,
            workload=workload,
            parameters={
                "calibration": params.name,
                "sim_seed": config.sim_seed,
                "params_sha256": wanted,  # of the calibration + overrides, before the host scale
                "host_scale": scale_mapping,
                "overrides": sim_overrides(v, int(v.options.get("processes", 1))),
                "point": dict(real.point),
                "real_run": real.run_id,
            },
            replication=real.replication,
            started_at=started,
            provenance_info=stamp,
        )
        write_run(
            root, run_id, cfg, result.requests, result.jobs, result.summary, records=records, overwrite=True
        )
        written.append(run_id)
        log(f"simulated {run_id} ({result.stats['wall_seconds']:.1f}s)")
    return written


# ---------------------------------------------------------------------------- more twin sets
@dataclass(frozen=True, slots=True)
class TwinSet:
    """The same real runs simulated another way: from another calibration, on its own host speed or
    moved, or with what-ifs laid over it. `folder` is under data/ ("validation" is the main set)."""

    folder: str
    calibration: str
    host_scale: bool = True
    sim_overrides: Mapping[str, Any] = field(default_factory=dict)
    # the kernel's fair scheduler with the time slice the calibration measured (cpu_slice = its
    # measurements.scheduler_slice) instead of FIFO per burst
    fair_scheduler: bool = False

    @property
    def name(self) -> str:
        return self.folder.rpartition("/")[2]

    def what_ifs(self) -> dict[str, Any]:
        """What this set lays over the calibration (sim.params dotted keys)."""
        from sim.params import load_scheduler_slice

        out = dict(self.sim_overrides)
        if self.fair_scheduler:
            measured = load_scheduler_slice(self.calibration)
            if measured is None:
                raise InvalidArgument(f"calibration {self.calibration} has no measurements.scheduler_slice")
            out["cpu_slice"] = measured
        return out

    def applied(self, v: Validation) -> Validation:
        return replace(
            v,
            calibration=self.calibration,
            host_scale=self.host_scale,
            sim_overrides={**v.sim_overrides, **self.what_ifs()},
        )


MAIN_FOLDER = "validation"
TWIN_SETS = (
    TwinSet(MAIN_FOLDER, "local"),
    TwinSet("validation/after", "local-after"),
    TwinSet("validation/unscaled", "local", host_scale=False),
    TwinSet("validation/after-unscaled", "local-after", host_scale=False),
    TwinSet("validation/rounds-a", "local-rounds-a"),
    TwinSet("validation/rounds-b", "local-rounds-b"),
    TwinSet("validation/fair", "local", fair_scheduler=True),
    TwinSet("validation/after-fair", "local-after", fair_scheduler=True),
)


def make_twin_set(
    v: Validation, twin_set: TwinSet, runs: Path | str, data: Path | str, log: Any = print
) -> dict[str, Any] | None:
    """Simulates every real run of `v` under `runs` the twin set's way, in a scratch root of links to
    the real runs (the main twins stay), and writes its tables to data/<folder>/. None (skipped) when
    its calibration file is missing."""
    import tempfile

    from sim.params import calibration_path

    if twin_set.folder == MAIN_FOLDER:
        raise InvalidArgument("the main twin set is `dtq validate` itself")
    if not calibration_path(twin_set.calibration).is_file():
        log(f"{twin_set.folder}: skipped (no calibration {twin_set.calibration})")
        return None
    varied = twin_set.applied(v)
    with tempfile.TemporaryDirectory(prefix=f"dtq-twins-{twin_set.name}-") as tmp:
        scratch = Path(tmp)
        for real in sorted(Path(runs).glob(f"real-*-{v.name}*")):
            (scratch / real.name).symlink_to(real.resolve(), target_is_directory=True)
        written = simulate(varied, scratch, records=False, log=lambda _: None)
        tables = build_tables(varied, scratch, Path(data) / twin_set.folder)
    log(f"{twin_set.folder}: {len(written)} twins")
    return tables


# ---------------------------------------------------------------------------- the arithmetic
def rel_error(sim_value: float, real_value: float) -> float:
    """(sim - real) / real; NaN when either is missing or the real value is 0."""
    if math.isnan(sim_value) or math.isnan(real_value) or real_value == 0:
        return math.nan
    return (sim_value - real_value) / real_value


def replication_spread(values: Sequence[float]) -> list[float]:
    """|x_r - mean| / mean of each replication: the real system's run-to-run noise (the floor)."""
    if len(values) < 2:
        return []
    mean = math.fsum(values) / len(values)
    return [abs(x - mean) / mean for x in values] if mean != 0 else []


def band_of(rho: float, edges: Sequence[float]) -> str:
    """'rho<=0.5', '0.5<rho<=0.8', 'rho>0.8' for edges (0.5, 0.8)."""
    if not edges:
        return "all"
    if rho <= edges[0]:
        return f"rho<={edges[0]:g}"
    for lo, hi in itertools.pairwise(edges):
        if rho <= hi:
            return f"{lo:g}<rho<={hi:g}"
    return f"rho>{edges[-1]:g}"


def band_names(edges: Sequence[float]) -> list[str]:
    probes = [edges[0] / 2, *((a + b) / 2 for a, b in itertools.pairwise(edges)), edges[-1] * 2]
    return [band_of(r, edges) for r in probes] if edges else ["all"]


def quantiles(values: Sequence[float]) -> tuple[float, float, float]:
    """(q25, median, q75), linear interpolation (numpy's default); NaNs when empty."""
    import numpy as np

    if not values:
        return math.nan, math.nan, math.nan
    q = np.quantile(np.asarray(values, dtype=float), [0.25, 0.5, 0.75])
    return float(q[0]), float(q[1]), float(q[2])


@dataclass(slots=True)
class Point:
    """One design at one (duration, mix, rate): real and simulated values per replication."""

    design: str
    duration: str
    mix: str
    rate: float
    saturation: float  # this design's measured (real) saturation, requests/s
    sim_saturation: float = math.nan  # the simulator's, from the twins of the saturation runs
    real: dict[str, list[float]] = field(default_factory=dict)
    sim: dict[str, list[float]] = field(default_factory=dict)
    # the generator's CPU share of one core per run, by kind ("real", "sim"): a suspect when they differ
    loadgen_cpu: dict[str, list[float]] = field(default_factory=dict)
    loadgen_bottlenecked: int = 0

    @property
    def rho(self) -> float:
        return self.rate / self.saturation if self.saturation > 0 else math.inf

    def real_mean(self, name: str) -> tuple[float, float]:
        return mean_ci(self.real.get(name, []))

    def sim_mean(self, name: str) -> float:
        return mean_ci(self.sim.get(name, []))[0]

    def error(self, name: str) -> float:
        return rel_error(self.sim_mean(name), self.real_mean(name)[0])


def collect_points(v: Validation, root: Path | str) -> tuple[list[Point], dict[tuple[str, str, str], float]]:
    """The points of the validation with real runs on disk (at the rates planned from the measured
    saturation), their simulated twins, and the saturation table."""
    root = Path(root)
    saturation = measured_saturation(v, root, "real")
    sim_saturation = measured_saturation(v, root, "sim")
    planned: dict[tuple[str, str, str, float], Point] = {}
    for mapping in point_mappings(v, saturation):
        sweep = mapping["sweep"]
        (d_label,), (m_label,) = sweep["duration"], sweep["mix"]
        for design in sweep["design"]:
            for rate in sweep["rate"]:
                sat = saturation[(design, d_label, m_label)]
                sim_sat = sim_saturation.get((design, d_label, m_label), math.nan)
                planned[(design, d_label, m_label, rate)] = Point(
                    design, d_label, m_label, rate, sat, sim_sat
                )
    for kind in ("real", "sim"):
        for run in _runs(root, kind, v.name):
            arrival = run.workload["arrival"]
            if arrival.get("kind") != "open":
                continue
            key = (
                run.design,
                run.point.get("duration", ""),
                run.point.get("mix", ""),
                float(arrival["rate"]),
            )
            point = planned.get(key)
            if point is None or run.replication >= v.replications:
                continue  # a stale rate (an earlier saturation) or an extra replication
            target = point.real if kind == "real" else point.sim
            for name, path, _ in METRICS:
                value = metric(run.summary, path)
                if value is not None:
                    target.setdefault(name, []).append(value)
            lg = run.summary.get("loadgen", {})
            cpu = lg.get("cpu_utilisation")
            if isinstance(cpu, int | float):
                point.loadgen_cpu.setdefault(kind, []).append(float(cpu))
            if kind == "real":
                point.loadgen_bottlenecked += bool(lg.get("bottleneck"))
    points = [p for p in planned.values() if p.real]
    points.sort(key=lambda p: (p.duration, p.mix, p.rate, p.design))
    return points, saturation


def point_rows(points: Iterable[Point], edges: Sequence[float]) -> list[dict[str, Any]]:
    """points.csv: one row per point with rho, band, real mean/CI, sim mean, error, spread."""
    rows = []
    for p in points:
        row: dict[str, Any] = {
            "design": p.design,
            "duration": p.duration,
            "mix": p.mix,
            "rate": p.rate,
            "saturation": p.saturation,
            "rho": p.rho,
            "rho_sim": p.rate / p.sim_saturation if p.sim_saturation > 0 else math.nan,
            "band": band_of(p.rho, edges),
            "n_real": max((len(x) for x in p.real.values()), default=0),
            "n_sim": max((len(x) for x in p.sim.values()), default=0),
        }
        for name, _, _ in METRICS:
            mean, ci = p.real_mean(name)
            spread = replication_spread(p.real.get(name, []))
            row[f"{name}_real"] = mean
            row[f"{name}_real_ci95"] = ci
            row[f"{name}_sim"] = p.sim_mean(name)
            row[f"{name}_err"] = p.error(name)
            row[f"{name}_spread"] = statistics.median(spread) if spread else math.nan
        for kind in ("real", "sim"):
            cpu = p.loadgen_cpu.get(kind, [])
            row[f"loadgen_cpu_{kind}"] = statistics.fmean(cpu) if cpu else math.nan
        row["loadgen_bottlenecked"] = p.loadgen_bottlenecked
        rows.append(row)
    return rows


def error_table(points: Sequence[Point], edges: Sequence[float]) -> list[dict[str, Any]]:
    """error_table.csv: per band (and 'all') x metric, the median and IQR of |relative error|, the
    median signed error (the bias), and the floor: the median relative deviation of a real replication
    from its point's mean, pooled over the band's points."""
    rows = []
    for band in [*band_names(edges), "all"]:
        members = [p for p in points if band == "all" or band_of(p.rho, edges) == band]
        for name, _, _ in METRICS:
            errors = [e for e in (p.error(name) for p in members) if not math.isnan(e)]
            floor = [d for p in members for d in replication_spread(p.real.get(name, []))]
            q25, med, q75 = quantiles([abs(e) for e in errors])
            rows.append(
                {
                    "band": band,
                    "metric": name,
                    "points": len(errors),
                    "median_abs_err": med,
                    "q25_abs_err": q25,
                    "q75_abs_err": q75,
                    "median_signed_err": quantiles(errors)[1],
                    "floor_median_dev": quantiles(floor)[1],
                    "floor_q75_dev": quantiles(floor)[2],
                }
            )
    return rows


def winner_rows(points: Sequence[Point], designs: Sequence[str] = DESIGNS) -> list[dict[str, Any]]:
    """winners.csv: at each (duration, mix, rate) run by both designs, the real winner (decisive only
    outside the CIs) and the simulator's (by its means), per metric."""
    if len(designs) != 2:
        return []
    a_name, b_name = designs
    by_key: dict[tuple[str, str, float], dict[str, Point]] = {}
    for p in points:
        by_key.setdefault((p.duration, p.mix, p.rate), {})[p.design] = p
    rows = []
    for (duration, mix, rate), pair in sorted(by_key.items()):
        if a_name not in pair or b_name not in pair:
            continue
        a, b = pair[a_name], pair[b_name]
        row: dict[str, Any] = {"duration": duration, "mix": mix, "rate": rate, "rho_a": a.rho, "rho_b": b.rho}
        for name in WINNER_METRICS:
            better = dict((m, s) for m, _, s in METRICS)[name]
            (ra, ra_ci), (rb, rb_ci) = a.real_mean(name), b.real_mean(name)
            real_w = winner(ra, rb, higher_is_better=better > 0, a_ci=ra_ci, b_ci=rb_ci)
            sim_w = winner(a.sim_mean(name), b.sim_mean(name), higher_is_better=better > 0)
            names = {"a": a_name, "b": b_name, "tie": "tie", "": ""}
            row[f"{name}_real"] = names[real_w]
            row[f"{name}_sim"] = names[sim_w]
            row[f"{name}_agree"] = "" if real_w in ("tie", "") or not sim_w else str(real_w == sim_w)
            # the weaker question, asked at every point: does the sim order the real means the same way
            by_means = winner(ra, rb, higher_is_better=better > 0)
            row[f"{name}_agree_means"] = (
                "" if by_means in ("tie", "") or not sim_w else str(by_means == sim_w)
            )
        rows.append(row)
    return rows


def winner_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, int]]:
    """Per metric: points where the real winner is decisive, where the sim agrees, and real ties."""
    out = {}
    for name in WINNER_METRICS:
        agree = [r[f"{name}_agree"] for r in rows]
        out[name] = {
            "decisive": sum(a in ("True", "False") for a in agree),
            "agree": sum(a == "True" for a in agree),
            "real_ties": sum(r[f"{name}_real"] == "tie" for r in rows),
            "ordered_by_means": sum(r[f"{name}_agree_means"] in ("True", "False") for r in rows),
            "agree_by_means": sum(r[f"{name}_agree_means"] == "True" for r in rows),
        }
    return out


def saturation_winners(
    rows: Sequence[Mapping[str, Any]], designs: Sequence[str] = DESIGNS
) -> list[dict[str, Any]]:
    """Per (duration, mix): the design with the higher saturation rate, real and simulated."""
    by_cell: dict[tuple[str, str], dict[str, Mapping[str, Any]]] = {}
    for r in rows:
        by_cell.setdefault((r["duration"], r["mix"]), {})[r["design"]] = r
    out = []
    for (duration, mix), pair in sorted(by_cell.items()):
        if len(designs) != 2 or not all(d in pair for d in designs):
            continue
        a, b = (pair[d] for d in designs)
        real_w = winner(a["real_rate"], b["real_rate"], higher_is_better=True)
        sim_w = winner(a["sim_rate"], b["sim_rate"], higher_is_better=True)
        names = {"a": designs[0], "b": designs[1], "tie": "tie", "": ""}
        agree = "" if real_w in ("tie", "") or not sim_w else str(real_w == sim_w)
        out.append(
            {"duration": duration, "mix": mix, "real": names[real_w], "sim": names[sim_w], "agree": agree}
        )
    return out


def saturation_rows(v: Validation, root: Path | str) -> list[dict[str, Any]]:
    """Measured vs simulated saturation rate per (design, duration, mix)."""
    real = measured_saturation(v, Path(root), "real")
    simulated = measured_saturation(v, Path(root), "sim")
    return [
        {
            "design": k[0],
            "duration": k[1],
            "mix": k[2],
            "real_rate": real[k],
            "sim_rate": simulated.get(k, math.nan),
            "err": rel_error(simulated.get(k, math.nan), real[k]),
        }
        for k in sorted(real)
    ]


# ---------------------------------------------------------------------------- output
def _csv_value(value: Any) -> str:
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def write_csv(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        if rows:
            writer.writerow(list(rows[0]))
            for row in rows:
                writer.writerow([_csv_value(row[c]) for c in rows[0]])
    tmp.replace(path)
    return path


def _json_safe(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _json_safe(x) for k, x in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(x) for x in value]
    return value


def build_tables(v: Validation, root: Path | str, out: Path | str = DEFAULT_OUT) -> dict[str, Any]:
    """Writes points.csv, error_table.csv, winners.csv, saturation.csv and summary.json under `out`."""
    out = Path(out)
    points, _ = collect_points(v, root)
    tables = {
        "points": point_rows(points, v.bands),
        "error_table": error_table(points, v.bands),
        "winners": winner_rows(points, v.designs),
        "saturation": saturation_rows(v, root),
    }
    for name, rows in tables.items():
        write_csv(rows, out / f"{name}.csv")
    summary = {
        "validation": v.name,
        "calibration": v.calibration,
        "bands": list(v.bands),
        "points": len(points),
        "replications": v.replications,
        "winner_agreement": winner_summary(tables["winners"]),
        "error_table": tables["error_table"],
        "saturation": tables["saturation"],
        "saturation_winners": saturation_winners(tables["saturation"], v.designs),
    }
    (out / "summary.json").write_text(json.dumps(_json_safe(summary), indent=1, sort_keys=True) + "\n")
    return {**tables, "summary": summary}


def _pct(x: float) -> str:
    return "-" if math.isnan(x) else f"{100 * x:.0f}%"


def format_tables(tables: Mapping[str, Any]) -> str:
    lines = ["saturation (requests/s): real vs sim"]
    for r in tables["saturation"]:
        lines.append(
            f"  {r['design']:5} {r['duration']:8} {r['mix']:7} real {r['real_rate']:7.1f}  "
            f"sim {r['sim_rate']:7.1f}  err {_pct(r['err'])}"
        )
    lines.append(
        "error table: |sim - real| / real, median [IQR] per band; floor = real run-to-run median dev"
    )
    header = f"  {'band':14} {'metric':10} {'n':>3}  {'median':>6} {'IQR':>13} {'bias':>6} {'floor':>6}"
    lines.append(header)
    for r in tables["error_table"]:
        iqr = f"[{_pct(r['q25_abs_err'])},{_pct(r['q75_abs_err'])}]"
        lines.append(
            f"  {r['band']:14} {r['metric']:10} {r['points']:>3}  {_pct(r['median_abs_err']):>6} {iqr:>13} "
            f"{_pct(r['median_signed_err']):>6} {_pct(r['floor_median_dev']):>6}"
        )
    agreement = tables["summary"]["winner_agreement"]
    lines.append(
        "winner (A vs B) agreement where the real winner is decisive: "
        + ", ".join(
            f"{m} {a['agree']}/{a['decisive']} (real ties {a['real_ties']})" for m, a in agreement.items()
        )
    )
    sat = tables["summary"]["saturation_winners"]
    lines.append(
        "by the real means at every shared point: "
        + ", ".join(f"{m} {a['agree_by_means']}/{a['ordered_by_means']}" for m, a in agreement.items())
        + f"; saturation winner: {sum(r['agree'] == 'True' for r in sat)}/{len(sat)} cells"
    )
    return "\n".join(lines)
