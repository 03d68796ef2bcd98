"""The validation file (data/experiments/validation.yaml), validated into a `Validation`.

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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from model.errors import InvalidArgument
from model.results.documents import read_document
from model.results.runs import workload_of
from model.results.schema import check_label
from model.workload import workload_to_mapping
from sim.params import SimParams

DESIGNS = ("micro", "mono")
# the top-level keys a semantics file (lab/validation/semantics.py) shares with a validation file
SHARED_KEYS = frozenset(
    {
        "name",
        "description",
        "calibration",
        "workload",
        "replications",
        "designs",
        "store",
        "slots",
        "saturation",
        "options",
        "host_scale",
        "sim_overrides",
    }
)
_TOP_KEYS = SHARED_KEYS | {"durations", "mixes", "fractions", "own_fractions", "bands"}


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
    # move each twin to its run's host speed (sim.hostscale.HostScale) when the run and the calibration
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


def fail(message: str) -> InvalidArgument:
    return InvalidArgument(f"validation: {message}")


def _labelled(value: Any, key: str) -> tuple[tuple[str, Any], ...]:
    if not isinstance(value, Mapping) or not value:
        raise fail(f"{key} must be a non-empty mapping of label -> value")
    return tuple((check_label(str(k), f"validation: {key}"), v) for k, v in value.items())


def validation_from_mapping(d: Any, *, default_name: str = "validation") -> Validation:
    if not isinstance(d, Mapping):
        raise fail("the file must hold one mapping")
    unknown = sorted(set(d) - _TOP_KEYS)
    if unknown:
        raise fail(f"unknown keys {unknown}; known: {sorted(_TOP_KEYS)}")
    base = workload_to_mapping(workload_of(d.get("workload") or {"arrival": {"kind": "open", "rate": 1}}))
    designs = tuple(d.get("designs", DESIGNS))
    if not designs or any(x not in DESIGNS for x in designs) or len(set(designs)) != len(designs):
        raise fail(f"designs must be distinct values of {DESIGNS}")
    fractions = tuple(float(f) for f in d.get("fractions", ()))
    if not fractions or any(not 0 < f <= 1.5 for f in fractions) or len(set(fractions)) != len(fractions):
        raise fail("fractions must be distinct numbers in (0, 1.5]")
    own_fractions = tuple(float(f) for f in d.get("own_fractions", ()))
    if any(not 0 < f <= 1.5 for f in own_fractions) or len(set(own_fractions)) != len(own_fractions):
        raise fail("own_fractions must be distinct numbers in (0, 1.5]")
    bands = tuple(float(b) for b in d.get("bands", (0.5, 0.8)))
    if list(bands) != sorted(set(bands)) or any(b <= 0 for b in bands):
        raise fail("bands must be increasing positive rho edges")
    sat = d.get("saturation") or {}
    if not isinstance(sat, Mapping) or set(sat) - {"clients", "run_time", "warmup", "replications"}:
        raise fail("saturation takes clients, run_time, warmup, replications")
    saturation = Saturation(**{k: type(getattr(Saturation(), k))(v) for k, v in sat.items()})
    if (
        saturation.clients < 1
        or saturation.run_time <= 0
        or saturation.warmup < 0
        or saturation.replications < 1
    ):
        raise fail("saturation needs clients >= 1, run_time > 0, warmup >= 0, replications >= 1")
    replications = d.get("replications", 1)
    if isinstance(replications, bool) or not isinstance(replications, int) or replications < 1:
        raise fail("replications must be an integer >= 1")
    store = str(d.get("store", "sqlite"))
    slots = d.get("slots", 12)
    if (
        store not in ("sqlite", "memory")
        or isinstance(slots, bool)
        or not isinstance(slots, int)
        or slots < 1
    ):
        raise fail("store is sqlite or memory; slots an integer >= 1")
    options = d.get("options") or {}
    if not isinstance(options, Mapping):
        raise fail("options must be a mapping")
    what_ifs = d.get("sim_overrides") or {}
    if not isinstance(what_ifs, Mapping):
        raise fail("sim_overrides must be a mapping of simulator parameter -> value")

    try:  # checked against the simulator's parameters when the file loads, not at the first twin
        SimParams().with_overrides(what_ifs)
    except InvalidArgument as exc:
        raise fail(f"sim_overrides: {exc.message}") from None
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
            raise fail("every mix needs a submit fraction > 0")
    return v


def load_validation(path: Path | str) -> Validation:
    path = Path(path)
    data = read_document(path, (".yaml", ".yml"))  # its errors name the file already
    try:
        return validation_from_mapping(data, default_name=path.stem)
    except InvalidArgument as exc:
        raise InvalidArgument(f"{path}: {exc.message}") from None
