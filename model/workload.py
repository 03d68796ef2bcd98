"""Workload specification and arrival traces, shared by the real load generator and the simulator.

Every random draw comes from its own stream, spawned from one seed
(numpy.random.SeedSequence(seed).spawn), so arrivals, the request mix, job durations and
targets stay the same when one of them changes (common random numbers across configurations).
Open-loop arrivals are pre-generated: the real system and the simulator replay the same trace.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Literal, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt

from model.errors import InvalidArgument

T = TypeVar("T")


class Op(IntEnum):
    SUBMIT = 0
    STATUS = 1
    RESULT = 2
    LIST = 3
    CANCEL = 4


@dataclass(frozen=True, slots=True)
class Distribution:
    """A non-negative random quantity in seconds. For lognormal, `mean` is the distribution's mean
    and `sigma` the standard deviation of the underlying normal."""

    kind: Literal["constant", "exponential", "lognormal"] = "constant"
    mean: float = 0.0
    sigma: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("constant", "exponential", "lognormal"):
            raise InvalidArgument(f"unknown distribution kind {self.kind!r}")
        if not (math.isfinite(self.mean) and self.mean >= 0):
            raise InvalidArgument("distribution mean must be finite and >= 0")
        if self.kind == "lognormal" and not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise InvalidArgument("lognormal needs sigma > 0")
        if self.kind == "exponential" and self.mean <= 0:
            raise InvalidArgument("exponential needs mean > 0")

    def sample(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
        if self.kind == "constant":
            return np.full(n, self.mean)
        if self.kind == "exponential":
            return rng.exponential(self.mean, n)
        if self.mean == 0:
            return np.zeros(n)
        mu = math.log(self.mean) - self.sigma**2 / 2  # so that E[X] == mean
        return rng.lognormal(mu, self.sigma, n)


@dataclass(frozen=True, slots=True)
class OpenLoop:
    """Poisson arrivals at `rate` requests/s; `max_in_flight` bounds the generator's concurrency."""

    rate: float
    max_in_flight: int = 1024

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise InvalidArgument("open-loop rate must be > 0")
        if self.max_in_flight < 1:
            raise InvalidArgument("max_in_flight must be >= 1")


@dataclass(frozen=True, slots=True)
class ClosedLoop:
    """`clients` each send a request, wait for the answer, think, and repeat.

    With `wait_for_completion`, a client that submitted a job also waits (WaitJob, no polling) until
    the job is terminal before it thinks: each client then has one job in the system at a time, so
    the loop settles and its completions/s is the end-to-end jobs/s.
    """

    clients: int
    think_time: Distribution = Distribution()
    wait_for_completion: bool = False

    def __post_init__(self) -> None:
        if self.clients < 1:
            raise InvalidArgument("closed loop needs >= 1 client")


Arrival: TypeAlias = OpenLoop | ClosedLoop


@dataclass(frozen=True, slots=True)
class RequestMix:
    submit: float = 1.0
    status: float = 0.0
    result: float = 0.0
    list: float = 0.0
    cancel: float = 0.0

    def __post_init__(self) -> None:
        weights = self.weights()
        if any(w < 0 or not math.isfinite(w) for w in weights):
            raise InvalidArgument("request mix fractions must be finite and >= 0")
        if abs(sum(weights) - 1.0) > 1e-9:
            raise InvalidArgument(f"request mix fractions must sum to 1, got {sum(weights):g}")
        if self.submit <= 0:
            raise InvalidArgument("the request mix needs submits (other requests target submitted jobs)")

    def weights(self) -> tuple[float, float, float, float, float]:
        return (self.submit, self.status, self.result, self.list, self.cancel)


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    arrival: Arrival
    mix: RequestMix = RequestMix()
    job_type: str = "sleep"
    duration: Distribution = Distribution("constant", 0.0)
    payload_bytes: int = 0
    run_time: float = 10.0  # seconds of measured load, after warm-up
    warmup: float = 1.0  # seconds at the start whose records are not summarised
    seed: int = 1
    labels: tuple[tuple[str, str], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.run_time <= 0 or self.warmup < 0:
            raise InvalidArgument("run_time must be > 0 and warmup >= 0")
        if self.payload_bytes < 0:
            raise InvalidArgument("payload_bytes must be >= 0")
        if self.seed < 0:
            raise InvalidArgument("seed must be >= 0")

    @property
    def total_time(self) -> float:
        return self.warmup + self.run_time


class Stream(IntEnum):
    """Independent random streams spawned from the workload seed, one per component."""

    ARRIVALS = 0
    MIX = 1
    DURATIONS = 2
    TARGETS = 3
    THINK = 4
    PAYLOAD = 5


def streams(seed: int) -> dict[Stream, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(Stream))
    return {s: np.random.default_rng(children[s]) for s in Stream}


@dataclass(frozen=True, slots=True)
class Trace:
    """A pre-generated request sequence. For open loop, `times` are the intended send times; for a
    closed-loop client, times are zero and the client paces itself.
    `target` in [0, 1) picks which earlier submitted job a status/result/cancel request is about:
    index floor(target * jobs submitted so far)."""

    times: npt.NDArray[np.float64]
    ops: npt.NDArray[np.int8]
    durations: npt.NDArray[np.float64]  # job duration for submits, 0 otherwise
    targets: npt.NDArray[np.float64]

    def __len__(self) -> int:
        return len(self.ops)


def _draw_ops(spec: WorkloadSpec, rng: dict[Stream, np.random.Generator], n: int) -> Trace:
    weights = np.asarray(spec.mix.weights(), dtype=np.float64)
    ops = rng[Stream.MIX].choice(len(Op), size=n, p=weights / weights.sum()).astype(np.int8)
    if n:
        ops[0] = Op.SUBMIT  # the first request has no job to ask about
    durations = np.where(ops == Op.SUBMIT, spec.duration.sample(rng[Stream.DURATIONS], n), 0.0)
    targets = rng[Stream.TARGETS].random(n)
    return Trace(np.zeros(n), ops, durations, targets)


def open_loop_trace(spec: WorkloadSpec) -> Trace:
    """Poisson arrivals over warm-up + run time. Gaps are exact exponentials: no capping."""
    if not isinstance(spec.arrival, OpenLoop):
        raise InvalidArgument("open_loop_trace needs an open-loop arrival process")
    rng = streams(spec.seed)
    rate, horizon = spec.arrival.rate, spec.total_time
    times: list[npt.NDArray[np.float64]] = []
    t = 0.0
    chunk = max(16, int(rate * horizon * 1.1) + 16)
    while t <= horizon:
        gaps = rng[Stream.ARRIVALS].exponential(1.0 / rate, chunk)
        block = t + np.cumsum(gaps)
        times.append(block)
        t = float(block[-1])
    all_times = np.concatenate(times)
    all_times = all_times[all_times <= horizon]
    trace = _draw_ops(spec, rng, len(all_times))
    return Trace(all_times, trace.ops, trace.durations, trace.targets)


def closed_loop_scripts(spec: WorkloadSpec, max_requests_per_client: int) -> list[Trace]:
    """One request script per closed-loop client, each from its own child stream of the seed."""
    if not isinstance(spec.arrival, ClosedLoop):
        raise InvalidArgument("closed_loop_scripts needs a closed-loop arrival process")
    clients = np.random.SeedSequence(spec.seed).spawn(len(Stream) + spec.arrival.clients)[len(Stream) :]
    scripts = []
    for child in clients:
        rng = {s: np.random.default_rng(c) for s, c in zip(Stream, child.spawn(len(Stream)), strict=True)}
        trace = _draw_ops(spec, rng, max_requests_per_client)
        think = spec.arrival.think_time.sample(rng[Stream.THINK], max_requests_per_client)
        scripts.append(Trace(think, trace.ops, trace.durations, trace.targets))
    return scripts


# ---------------------------------------------------------------------------- mappings (workload files)
# The one place a workload mapping (a parsed YAML/TOML file, or config.json's "workload") is validated.
# Every error names the offending key as a dotted path, e.g. "workload.arrival.rate".
_TOP_KEYS = frozenset(
    {"arrival", "mix", "job_type", "duration", "payload_bytes", "run_time", "warmup", "seed", "labels"}
)
_OPEN_KEYS = frozenset({"kind", "rate", "max_in_flight"})
_CLOSED_KEYS = frozenset({"kind", "clients", "think_time", "wait_for_completion"})
_DIST_KEYS = frozenset({"kind", "mean", "sigma"})
_MIX_KEYS = frozenset(op.name.lower() for op in Op)


def _fail(path: str, message: str) -> InvalidArgument:
    return InvalidArgument(f"{path}: {message}")


def _table(value: object, path: str, allowed: frozenset[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, f"must be a mapping, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise _fail(path, f"keys must be strings, got {key!r}")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise _fail(f"{path}.{unknown[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
    return value


def _number(table: Mapping[str, Any], key: str, path: str, default: float | None = None) -> float:
    if key not in table:
        if default is None:
            raise _fail(f"{path}.{key}", "is required")
        return default
    value = table[key]
    # bool is an int subclass: `rate: true` is a mistake, not 1
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _fail(f"{path}.{key}", f"must be a number, got {value!r}")
    return float(value)


def _integer(table: Mapping[str, Any], key: str, path: str, default: int | None = None) -> int:
    if key not in table:
        if default is None:
            raise _fail(f"{path}.{key}", "is required")
        return default
    value = table[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(f"{path}.{key}", f"must be an integer, got {value!r}")
    return value


def _text(table: Mapping[str, Any], key: str, path: str, default: str) -> str:
    value = table.get(key, default)
    if not isinstance(value, str):
        raise _fail(f"{path}.{key}", f"must be a string, got {value!r}")
    return value


def _build(path: str, make: Callable[[], T]) -> T:
    """Runs a constructor, prefixing its own validation errors with the mapping path."""
    try:
        return make()
    except InvalidArgument as exc:
        raise _fail(path, exc.message) from None


def _distribution(value: object, path: str) -> Distribution:
    table = _table(value, path, _DIST_KEYS)
    kind = _text(table, "kind", path, "constant")
    mean = _number(table, "mean", path, 0.0)
    sigma = _number(table, "sigma", path, 0.0)
    return _build(path, lambda: Distribution(kind, mean, sigma))  # type: ignore[arg-type]


def _arrival(value: object, path: str) -> Arrival:
    if not isinstance(value, Mapping):
        raise _fail(path, f"must be a mapping, got {type(value).__name__}")
    kind = value.get("kind")
    if kind == "open":
        table = _table(value, path, _OPEN_KEYS)
        rate = _number(table, "rate", path)
        max_in_flight = _integer(table, "max_in_flight", path, OpenLoop(1.0).max_in_flight)
        return _build(path, lambda: OpenLoop(rate, max_in_flight))
    if kind == "closed":
        table = _table(value, path, _CLOSED_KEYS)
        clients = _integer(table, "clients", path)
        think = _distribution(table.get("think_time", {}), f"{path}.think_time")
        wait = table.get("wait_for_completion", False)
        if not isinstance(wait, bool):
            raise _fail(f"{path}.wait_for_completion", f"must be true or false, got {wait!r}")
        return _build(path, lambda: ClosedLoop(clients, think, wait))
    raise _fail(f"{path}.kind", f"must be 'open' or 'closed', got {kind!r}")


def _mix(value: object, path: str) -> RequestMix:
    table = _table(value, path, _MIX_KEYS)
    # fractions left out are 0 (not the dataclass defaults): a file lists the ops it sends
    fractions = {name: _number(table, name, path, 0.0) for name in sorted(_MIX_KEYS)}
    return _build(path, lambda: RequestMix(**fractions))


def _labels(value: object, path: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, Mapping):
        raise _fail(path, f"must be a mapping, got {type(value).__name__}")
    out = []
    for key, label in value.items():
        if not isinstance(key, str) or not isinstance(label, str):
            raise _fail(f"{path}.{key}", f"labels must map strings to strings, got {label!r}")
        out.append((key, label))
    return tuple(out)


def workload_from_mapping(d: Mapping[str, Any]) -> WorkloadSpec:
    """A WorkloadSpec from its mapping form (see data/workloads/*.yaml); InvalidArgument names the bad key.

    Only `arrival` is required; every other key has the WorkloadSpec default, except that `mix`
    fractions left out are 0.
    """
    path = "workload"
    table = _table(d, path, _TOP_KEYS)
    if "arrival" not in table:
        raise _fail(f"{path}.arrival", "is required")
    defaults = WorkloadSpec(OpenLoop(1.0))
    arrival = _arrival(table["arrival"], f"{path}.arrival")
    mix = _mix(table["mix"], f"{path}.mix") if "mix" in table else defaults.mix
    duration = (
        _distribution(table["duration"], f"{path}.duration") if "duration" in table else defaults.duration
    )
    labels = _labels(table["labels"], f"{path}.labels") if "labels" in table else defaults.labels
    job_type = _text(table, "job_type", path, defaults.job_type)
    payload_bytes = _integer(table, "payload_bytes", path, defaults.payload_bytes)
    run_time = _number(table, "run_time", path, defaults.run_time)
    warmup = _number(table, "warmup", path, defaults.warmup)
    seed = _integer(table, "seed", path, defaults.seed)
    if not (math.isfinite(run_time) and math.isfinite(warmup)):
        raise _fail(path, "run_time and warmup must be finite")
    return _build(
        path,
        lambda: WorkloadSpec(
            arrival=arrival,
            mix=mix,
            job_type=job_type,
            duration=duration,
            payload_bytes=payload_bytes,
            run_time=run_time,
            warmup=warmup,
            seed=seed,
            labels=labels,
        ),
    )


def _distribution_to_mapping(dist: Distribution) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": dist.kind, "mean": dist.mean}
    if dist.sigma:
        out["sigma"] = dist.sigma
    return out


def workload_to_mapping(spec: WorkloadSpec) -> dict[str, Any]:
    """The inverse of workload_from_mapping, with every value explicit (config.json records it)."""
    arrival: dict[str, Any]
    if isinstance(spec.arrival, OpenLoop):
        arrival = {"kind": "open", "rate": spec.arrival.rate, "max_in_flight": spec.arrival.max_in_flight}
    else:
        arrival = {
            "kind": "closed",
            "clients": spec.arrival.clients,
            "think_time": _distribution_to_mapping(spec.arrival.think_time),
            "wait_for_completion": spec.arrival.wait_for_completion,
        }
    out: dict[str, Any] = {
        "arrival": arrival,
        "mix": {op.name.lower(): spec.mix.weights()[op] for op in Op},
        "job_type": spec.job_type,
        "duration": _distribution_to_mapping(spec.duration),
        "payload_bytes": spec.payload_bytes,
        "run_time": spec.run_time,
        "warmup": spec.warmup,
        "seed": spec.seed,
    }
    if spec.labels:
        out["labels"] = dict(spec.labels)
    return out
