"""Workload specification and arrival traces, shared by the real load generator and the simulator.

A workload says how requests arrive (open loop, closed loop, or the replay of a recorded run), which
requests they are (the mix), and what each submitted job is: its type, duration, payload size and
parameters, priority, retry policy, execution timeout, labels and CPU fraction, each a constant or a
distribution. `open_loop_trace` and `closed_loop_scripts` are the one arrival-trace generator: both
load generators replay what they draw, so the real system and the simulator see the same requests
and the same jobs.

Every random draw comes from its own stream, spawned from one seed (numpy.random.SeedSequence), so
arrivals, the request mix, job durations, targets and every per-job setting stay the same when one of
them changes (common random numbers across configurations). The streams of the per-job settings are
keyed by name (a label's or a payload parameter's own key), so adding one leaves the others alone.

The core reads no files: a workload that names one (empirical samples, a recorded run) is parsed with
a `WorkloadFiles` reader, which model/results/runs.py provides (`load_workload`).
"""

from __future__ import annotations

import functools
import json
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import IntEnum
from types import MappingProxyType
from typing import Any, Literal, Protocol, TypeAlias, TypeVar

import numpy as np
import numpy.typing as npt

from model.errors import InvalidArgument
from model.job import JobSpec, RetryPolicy

T = TypeVar("T")
N = TypeVar("N", int, float)
Scalar: TypeAlias = bool | int | float | str
INT32 = (-(2**31), 2**31 - 1)
MAX_EMPIRICAL_SAMPLES = 1_000_000
MAX_PREFILL = 10_000_000


class Op(IntEnum):
    SUBMIT = 0
    STATUS = 1
    RESULT = 2
    LIST = 3
    CANCEL = 4


_OP_VALUES = frozenset(int(op) for op in Op)


# ---------------------------------------------------------------------------- distributions
DIST_KINDS = ("constant", "exponential", "lognormal", "mixture", "empirical")


@dataclass(frozen=True, slots=True)
class Distribution:
    """A non-negative random quantity (seconds, or bytes for payload sizes).

    - constant `mean`; exponential with `mean`; lognormal with `mean` (the distribution's mean) and
      `sigma` (the standard deviation of the underlying normal);
    - mixture: `components` (weight, distribution) pairs of any kind; a draw picks a component by
      weight, then draws from it. `mean` is derived;
    - empirical: draws uniformly from `samples` (a bootstrap of a measured sample); `source` names
      the file they came from, if any. `mean` is derived.
    """

    kind: Literal["constant", "exponential", "lognormal", "mixture", "empirical"] = "constant"
    mean: float = 0.0
    sigma: float = 0.0
    components: tuple[tuple[float, Distribution], ...] = ()
    samples: tuple[float, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        if self.kind not in DIST_KINDS:
            raise InvalidArgument(
                f"unknown distribution kind {self.kind!r} (allowed: {', '.join(sorted(DIST_KINDS))})"
            )
        if self.kind == "mixture":
            self._check_mixture()
            total = math.fsum(w for w, _ in self.components)
            object.__setattr__(self, "mean", math.fsum(w * d.mean for w, d in self.components) / total)
            return
        if self.kind == "empirical":
            if not self.samples or len(self.samples) > MAX_EMPIRICAL_SAMPLES:
                raise InvalidArgument(f"empirical needs 1 to {MAX_EMPIRICAL_SAMPLES} samples")
            if not all(math.isfinite(x) and x >= 0 for x in self.samples):
                raise InvalidArgument("empirical samples must be finite and >= 0")
            object.__setattr__(self, "mean", math.fsum(self.samples) / len(self.samples))
            return
        if self.components or self.samples:
            raise InvalidArgument(f"{self.kind} takes neither components nor samples")
        if not (math.isfinite(self.mean) and self.mean >= 0):
            raise InvalidArgument("distribution mean must be finite and >= 0")
        if self.kind == "lognormal" and not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise InvalidArgument("lognormal needs sigma > 0")
        if self.kind == "exponential" and self.mean <= 0:
            raise InvalidArgument("exponential needs mean > 0")

    def _check_mixture(self) -> None:
        if not self.components:
            raise InvalidArgument("mixture needs at least one component")
        for weight, component in self.components:
            if not isinstance(component, Distribution):
                raise InvalidArgument("mixture components must be distributions")
            if isinstance(weight, bool) or not (math.isfinite(weight) and weight > 0):
                raise InvalidArgument("mixture weights must be finite and > 0")

    @staticmethod
    def mixture(*components: tuple[float, Distribution]) -> Distribution:
        return Distribution("mixture", components=tuple(components))

    @staticmethod
    def empirical(samples: Sequence[float], source: str = "") -> Distribution:
        return Distribution("empirical", samples=tuple(float(x) for x in samples), source=source)

    @property
    def is_constant(self) -> bool:
        return self.kind == "constant"

    @property
    def upper(self) -> float:
        """The largest value a draw can take (inf when unbounded)."""
        if self.kind == "constant":
            return self.mean
        if self.kind == "mixture":
            return max(d.upper for _, d in self.components)
        if self.kind == "empirical":
            return max(self.samples)
        return 0.0 if self.kind == "lognormal" and self.mean == 0 else math.inf

    def weights(self) -> npt.NDArray[np.float64]:
        """A mixture's component weights, normalised to sum to 1."""
        w = np.asarray([w for w, _ in self.components], dtype=np.float64)
        out: npt.NDArray[np.float64] = w / w.sum()
        return out

    def sample(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
        if self.kind == "constant":
            return np.full(n, self.mean)
        if self.kind == "exponential":
            return rng.exponential(self.mean, n)
        if self.kind == "mixture":
            picks = rng.choice(len(self.components), size=n, p=self.weights())
            out = np.empty(n)
            for j, (_, component) in enumerate(self.components):
                chosen = picks == j
                count = int(chosen.sum())
                if count:
                    out[chosen] = component.sample(rng, count)
            return out
        if self.kind == "empirical":
            return np.asarray(self.samples, dtype=np.float64)[rng.integers(0, len(self.samples), n)]
        if self.mean == 0:
            return np.zeros(n)
        mu = math.log(self.mean) - self.sigma**2 / 2  # so that E[X] == mean
        return rng.lognormal(mu, self.sigma, n)


@dataclass(frozen=True, slots=True)
class Choice:
    """A categorical distribution: `values` are (value, weight) pairs; a draw picks one by weight."""

    values: tuple[tuple[Scalar, float], ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise InvalidArgument("categorical needs at least one value")
        seen: set[tuple[type, Scalar]] = set()
        for value, weight in self.values:
            if isinstance(weight, bool) or not (math.isfinite(weight) and weight > 0):
                raise InvalidArgument("categorical weights must be finite and > 0")
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidArgument("categorical values must be finite")
            if (type(value), value) in seen:
                raise InvalidArgument(f"categorical value {value!r} is listed twice")
            seen.add((type(value), value))

    def weights(self) -> npt.NDArray[np.float64]:
        w = np.asarray([w for _, w in self.values], dtype=np.float64)
        out: npt.NDArray[np.float64] = w / w.sum()
        return out

    def options(self) -> list[Scalar]:
        return [v for v, _ in self.values]

    def sample(self, rng: np.random.Generator, n: int) -> list[Scalar]:
        options = self.options()
        if len(options) == 1:
            return [options[0]] * n
        picks = rng.choice(len(options), size=n, p=self.weights()).tolist()
        return [options[k] for k in picks]

    @property
    def mean(self) -> float:
        """The weighted mean of numeric values."""
        numbers = [float(v) for v in self.options() if not isinstance(v, str)]
        if len(numbers) != len(self.values):
            raise InvalidArgument("a categorical of strings has no mean")
        return float(np.dot(numbers, self.weights()))


Numeric: TypeAlias = float | int | Distribution | Choice  # a per-job number: constant or drawn
Text: TypeAlias = str | Choice  # a per-job string: constant or drawn


def numeric_mean(value: Numeric) -> float:
    return float(value) if isinstance(value, int | float) else value.mean


def numeric_bounds(value: Numeric) -> tuple[float, float]:
    """(lowest, highest) value a draw can take."""
    if isinstance(value, int | float):
        return float(value), float(value)
    if isinstance(value, Choice):
        numbers = [float(v) for v in value.options()]
        return min(numbers), max(numbers)
    return 0.0, value.upper


def draw_numbers(value: Numeric, rng: Callable[[], np.random.Generator], n: int) -> list[float] | float:
    """n draws as a list, or the constant itself (no stream used)."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, Distribution) and value.is_constant:
        return value.mean
    if isinstance(value, Choice):
        return [float(x) for x in value.sample(rng(), n)]
    drawn: list[float] = value.sample(rng(), n).tolist()
    return drawn


# ---------------------------------------------------------------------------- arrivals and mix
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


@dataclass(frozen=True, slots=True)
class Recording:
    """A recorded run's requests, as a replay needs them (model/results/runs.py reads it from a run
    directory): intended times from the run start, ops, each submit's recorded job duration (NaN when
    the run has no record of it), and each status/result/cancel's target fraction (which of the jobs
    accepted before it, in acceptance order, it was about)."""

    path: str
    times: tuple[float, ...]
    ops: tuple[int, ...]
    durations: tuple[float, ...]
    targets: tuple[float, ...]
    run_time: float
    warmup: float

    def __post_init__(self) -> None:
        n = len(self.times)
        if not (len(self.ops) == len(self.durations) == len(self.targets) == n):
            raise InvalidArgument("a recording's columns must have equal lengths")
        if any(not (math.isfinite(t) and t >= 0) for t in self.times):
            raise InvalidArgument("a recording's times must be finite and >= 0")
        if any(op not in _OP_VALUES for op in self.ops):
            raise InvalidArgument("a recording's ops must be Op values")


@dataclass(frozen=True, slots=True)
class Replay:
    """The requests of a recorded run, at their recorded intended times (divided by `speed`), sent
    open loop (at most `max_in_flight` outstanding). Submits keep their recorded durations; every other
    per-job setting is drawn from the workload as for any trace."""

    recording: Recording
    max_in_flight: int = 1024
    speed: float = 1.0

    def __post_init__(self) -> None:
        if self.max_in_flight < 1:
            raise InvalidArgument("max_in_flight must be >= 1")
        if not (self.speed > 0 and math.isfinite(self.speed)):
            raise InvalidArgument("replay speed must be > 0")

    def rate(self, start: float, end: float) -> float:
        """Requests per second intended in [start, end) (the measurement window) of the replay."""
        sent = sum(start <= t / self.speed < end for t in self.recording.times)
        return sent / (end - start) if end > start else 0.0


Arrival: TypeAlias = OpenLoop | ClosedLoop | Replay


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


# ---------------------------------------------------------------------------- per-job settings
@dataclass(frozen=True, slots=True)
class Backoff:
    """A job's retry backoff: the first delay, its growth per attempt and its cap (0: server default)."""

    initial: Numeric = 0.0
    multiplier: Numeric = 0.0
    max: Numeric = 0.0

    def __post_init__(self) -> None:
        for name in ("initial", "max"):
            low, high = numeric_bounds(getattr(self, name))
            if low < 0 or math.isnan(high):
                raise InvalidArgument(f"backoff.{name} must be >= 0")
        low, high = numeric_bounds(self.multiplier)
        if not (low >= 1 or high == 0):
            raise InvalidArgument("backoff.multiplier must be >= 1 in every draw (or 0: the server default)")
        if numeric_bounds(self.max)[0] > 0 and numeric_bounds(self.initial)[1] > numeric_bounds(self.max)[0]:
            raise InvalidArgument("backoff.max must be >= backoff.initial in every draw")

    @property
    def is_default(self) -> bool:
        return self == Backoff()


JOB_STATES = ("succeeded", "failed", "cancelled")


@dataclass(frozen=True, slots=True)
class Prefill:
    """The table state a run starts from: `finished` terminal jobs (final states drawn from `states`)
    and `pending` jobs queued when the trace starts, each drawn from the workload's own job settings."""

    finished: int = 0
    pending: int = 0
    states: Choice = Choice((("succeeded", 1.0),))

    def __post_init__(self) -> None:
        if not (0 <= self.finished <= MAX_PREFILL and 0 <= self.pending <= MAX_PREFILL):
            raise InvalidArgument(f"prefill counts must be in [0, {MAX_PREFILL}]")
        if any(v not in JOB_STATES for v in self.states.options()):
            raise InvalidArgument(f"prefill states must be among {', '.join(JOB_STATES)}")


# payload fields the generator sets itself: a workload's `payload` parameters may not name them
RESERVED_PARAMS = frozenset({"seconds", "cpu_fraction", "seed", "pad"})
CPU_JOB = "cpu"  # the built-in job type that burns CPU (realsys/worker/handlers.py), for cpu_fraction
FAIL_JOB = "fail"  # the built-in job type that fails by probability: it gets a per-job `seed`


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    arrival: Arrival
    mix: RequestMix = RequestMix()
    job_type: Text = "sleep"
    duration: Distribution | Choice = Distribution("constant", 0.0)
    payload_bytes: int | Distribution | Choice = 0
    run_time: float = 10.0  # seconds of measured load, after warm-up
    warmup: float = 1.0  # seconds at the start whose records are not summarised
    seed: int = 1
    labels: tuple[tuple[str, Text], ...] = field(default=())
    priority: int | Choice = 0
    max_attempts: int | Choice = 0  # 0: the server default
    backoff: Backoff = Backoff()
    execution_timeout: Numeric = 0.0  # 0: the server default
    payload: tuple[tuple[str, Scalar | Distribution | Choice], ...] = ()  # the job's own parameters
    cpu_fraction: Numeric | None = None  # `cpu` jobs: burn CPU for this share of the duration
    prefill: Prefill | None = None

    def __post_init__(self) -> None:
        if self.run_time <= 0 or self.warmup < 0:
            raise InvalidArgument("run_time must be > 0 and warmup >= 0")
        if isinstance(self.payload_bytes, int) and self.payload_bytes < 0:
            raise InvalidArgument("payload_bytes must be >= 0")
        if self.seed < 0:
            raise InvalidArgument("seed must be >= 0")
        if isinstance(self.duration, Choice) and numeric_bounds(self.duration)[0] < 0:
            raise InvalidArgument("duration must be >= 0")
        if not isinstance(self.payload_bytes, int) and numeric_bounds(self.payload_bytes)[0] < 0:
            raise InvalidArgument("payload_bytes must be >= 0")
        for name, value, least in (
            ("priority", self.priority, INT32[0]),
            ("max_attempts", self.max_attempts, 0),
        ):
            low, high = numeric_bounds(value)
            integral = isinstance(value, int) or all(
                isinstance(v, int) and not isinstance(v, bool) for v in value.options()
            )
            if not (integral and least <= low and high <= INT32[1]):
                raise InvalidArgument(f"{name} must be an integer in [{least}, {INT32[1]}]")
        low, high = numeric_bounds(self.execution_timeout)
        if low < 0:
            raise InvalidArgument("execution_timeout must be >= 0")
        names = [k for k, _ in self.payload]
        if len(set(names)) != len(names) or RESERVED_PARAMS & set(names):
            raise InvalidArgument(
                f"payload parameters must be distinct and not {', '.join(sorted(RESERVED_PARAMS))}"
            )
        if self.cpu_fraction is not None:
            low, high = numeric_bounds(self.cpu_fraction)
            if not (low >= 0 and high <= 1):
                raise InvalidArgument("cpu_fraction must stay within [0, 1]")
            if CPU_JOB not in self.job_types:
                raise InvalidArgument(f"cpu_fraction applies to {CPU_JOB!r} jobs, and no job here is one")

    @property
    def total_time(self) -> float:
        return self.warmup + self.run_time

    @property
    def job_types(self) -> list[str]:
        return (
            [str(v) for v in self.job_type.options()]
            if isinstance(self.job_type, Choice)
            else [self.job_type]
        )

    @property
    def has_job_settings(self) -> bool:
        """Whether jobs carry settings beyond a type and a payload (a client must send whole specs)."""
        return bool(
            self.priority != 0
            or self.max_attempts != 0
            or not self.backoff.is_default
            or self.execution_timeout != 0
            or self.labels
        )

    @property
    def is_open(self) -> bool:
        """Requests at pre-drawn times (open loop or a replay), not paced by answers."""
        return not isinstance(self.arrival, ClosedLoop)

    @property
    def max_in_flight(self) -> int:
        if isinstance(self.arrival, ClosedLoop):
            raise InvalidArgument("a closed loop has no max_in_flight")
        return self.arrival.max_in_flight

    def offered_rate(self) -> float | None:
        """Requests/s the trace offers (open loop, replay); None for a closed loop."""
        if isinstance(self.arrival, OpenLoop):
            return self.arrival.rate
        if isinstance(self.arrival, Replay):
            return self.arrival.rate(self.warmup, self.total_time)
        return None


# ---------------------------------------------------------------------------- streams
class Stream(IntEnum):
    """Independent random streams spawned from the workload seed, one per component."""

    ARRIVALS = 0
    MIX = 1
    DURATIONS = 2
    TARGETS = 3
    THINK = 4
    PAYLOAD = 5


class JobStream(IntEnum):
    """The per-job settings' streams: SeedSequence children keyed (parent key..., JOB_KEY, stream[, name
    hash]), so that they never coincide with the streams above or a closed-loop client's."""

    JOB_TYPE = 0
    PRIORITY = 1
    MAX_ATTEMPTS = 2
    BACKOFF_INITIAL = 3
    BACKOFF_MULTIPLIER = 4
    BACKOFF_MAX = 5
    TIMEOUT = 6
    LABELS = 7
    PARAMS = 8
    CPU_FRACTION = 9
    FAIL_SEED = 10
    PREFILL = 11


JOB_KEY = 1 << 20  # the spawn-key element under which the per-job streams live
_CLIENT_OFFSET = len(Stream)  # closed-loop client c's streams: child _CLIENT_OFFSET + c of the seed


def streams(seed: int) -> dict[Stream, np.random.Generator]:
    children = np.random.SeedSequence(seed).spawn(len(Stream))
    return {s: np.random.default_rng(children[s]) for s in Stream}


def keyed_rng(parent: np.random.SeedSequence, *key: int) -> np.random.Generator:
    """The generator of SeedSequence(parent's entropy, spawn_key=parent's key + key): a stable child
    that adding other children never shifts."""
    spawn_key = tuple(parent.spawn_key) + tuple(key)
    return np.random.default_rng(np.random.SeedSequence(parent.entropy, spawn_key=spawn_key))


def _name_key(name: str) -> int:
    return zlib.crc32(name.encode())


# ---------------------------------------------------------------------------- jobs as drawn
@dataclass(frozen=True, slots=True)
class JobDraw:
    """One job as the trace draws it: what the client sends (spec, payload) and what its handler is
    asked to do (type, duration, parameters, CPU fraction)."""

    job_type: str
    duration: float
    priority: int = 0
    max_attempts: int = 0
    initial_backoff: float = 0.0
    backoff_multiplier: float = 0.0
    max_backoff: float = 0.0
    execution_timeout: float = 0.0
    labels: tuple[tuple[str, str], ...] = ()
    params: tuple[tuple[str, Scalar], ...] = ()
    cpu_fraction: float | None = None
    payload_bytes: int = 0
    seed: int = 0  # `fail` jobs: the per-attempt verdicts' seed (attempt_uniform)

    def param(self, name: str, default: Scalar) -> Scalar:
        for key, value in self.params:
            if key == name:
                return value
        return default

    def payload(self) -> bytes:
        """The payload JSON: {"seconds": duration, parameters..., "cpu_fraction" (cpu jobs), "seed"
        (fail jobs)}, padded to payload_bytes (padded_json)."""
        if not self.params and self.seed == 0 and (self.cpu_fraction is None or self.job_type != CPU_JOB):
            return job_payload(self.duration, self.payload_bytes)
        fields: dict[str, Scalar] = {"seconds": self.duration}
        fields.update(self.params)
        if self.cpu_fraction is not None and self.job_type == CPU_JOB:
            fields["cpu_fraction"] = self.cpu_fraction
        if self.seed and self.job_type == FAIL_JOB:
            fields["seed"] = self.seed
        return padded_json(fields, self.payload_bytes)

    @property
    def plain(self) -> bool:
        """Only a type and a payload: every other setting is the server's default."""
        return (
            self.priority == 0
            and self.max_attempts == 0
            and self.initial_backoff == 0
            and self.backoff_multiplier == 0
            and self.max_backoff == 0
            and self.execution_timeout == 0
            and not self.labels
        )

    @property
    def retry(self) -> RetryPolicy:
        return RetryPolicy(self.max_attempts, self.initial_backoff, self.max_backoff, self.backoff_multiplier)

    def spec(self, payload: bytes = b"") -> JobSpec:
        """The JobSpec a client submits (with `payload`; the simulator passes none)."""
        return JobSpec(
            self.job_type,
            payload,
            self.priority,
            self.retry,
            self.execution_timeout,
            MappingProxyType(dict(self.labels)),
        )


def padded_json(fields: Mapping[str, Scalar], payload_bytes: int) -> bytes:
    """Compact JSON of `fields`, padded to exactly `payload_bytes` when that is larger: with a "pad"
    string field, or with spaces when there is no room for one."""
    base = json.dumps(fields, separators=(",", ":"))
    room = payload_bytes - len(base)
    if room <= 0:
        return base.encode()
    pad_overhead = len(',"pad":""')
    if room < pad_overhead:
        return (base[:-1] + " " * room + "}").encode()
    return json.dumps({**fields, "pad": "x" * (room - pad_overhead)}, separators=(",", ":")).encode()


@functools.lru_cache(maxsize=4096)  # the generator's own CPU: constant durations repeat every request
def job_payload(duration: float, payload_bytes: int = 0) -> bytes:
    """{"seconds": duration} JSON, padded to `payload_bytes` (padded_json)."""
    return padded_json({"seconds": duration}, payload_bytes)


_MASK64 = (1 << 64) - 1


def attempt_uniform(seed: int, attempt: int) -> float:
    """A uniform number in [0, 1) for one attempt of a job with this `seed` (splitmix64): the `fail`
    job's verdict, drawn alike by the real handler and the simulator, so both fail the same attempts."""
    z = (seed + attempt * 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    z ^= z >> 31
    return (z >> 11) / float(1 << 53)


Column: TypeAlias = Any  # a list of n values, or one value shared by every row


def _at(column: Column, i: int) -> Any:
    return column[i] if isinstance(column, list) else column


@dataclass(frozen=True, slots=True)
class JobColumns:
    """Every per-job setting for each row of a trace (a list per setting, or one shared value)."""

    job_type: Column
    priority: Column
    max_attempts: Column
    initial_backoff: Column
    backoff_multiplier: Column
    max_backoff: Column
    execution_timeout: Column
    labels: tuple[tuple[str, Column], ...]
    params: tuple[tuple[str, Column], ...]
    cpu_fraction: Column
    payload_bytes: Column
    seed: Column

    def job(self, i: int, duration: float) -> JobDraw:
        return JobDraw(
            job_type=_at(self.job_type, i),
            duration=duration,
            priority=_at(self.priority, i),
            max_attempts=_at(self.max_attempts, i),
            initial_backoff=_at(self.initial_backoff, i),
            backoff_multiplier=_at(self.backoff_multiplier, i),
            max_backoff=_at(self.max_backoff, i),
            execution_timeout=_at(self.execution_timeout, i),
            labels=tuple((k, _at(c, i)) for k, c in self.labels),
            params=tuple((k, _at(c, i)) for k, c in self.params),
            cpu_fraction=_at(self.cpu_fraction, i),
            payload_bytes=_at(self.payload_bytes, i),
            seed=_at(self.seed, i),
        )

    def to_json(self) -> str:
        """Every column as JSON text (byte-identical for identical draws)."""
        return json.dumps(
            {
                name: getattr(self, name)
                for name in (
                    "job_type",
                    "priority",
                    "max_attempts",
                    "initial_backoff",
                    "backoff_multiplier",
                    "max_backoff",
                    "execution_timeout",
                    "cpu_fraction",
                    "payload_bytes",
                    "seed",
                )
            }
            | {"labels": [list(x) for x in self.labels], "params": [list(x) for x in self.params]},
            sort_keys=True,
        )


def _ints(values: list[float] | float) -> list[int] | int:
    return [round(x) for x in values] if isinstance(values, list) else round(values)


def _text_column(value: Text, rng: Callable[[], np.random.Generator], n: int) -> Column:
    return [str(x) for x in value.sample(rng(), n)] if isinstance(value, Choice) else value


def _scalar(value: Scalar | Distribution | Choice, rng: Callable[[], np.random.Generator], n: int) -> Column:
    if isinstance(value, Choice):
        return value.sample(rng(), n)
    if isinstance(value, Distribution):
        return draw_numbers(value, rng, n)
    return value


def draw_jobs(spec: WorkloadSpec, parent: np.random.SeedSequence, n: int) -> JobColumns:
    """The per-job settings of n rows, each setting from its own stream under `parent`."""

    def rng(stream: JobStream, name: str = "") -> Callable[[], np.random.Generator]:
        key = (JOB_KEY, int(stream)) + ((_name_key(name),) if name else ())
        return lambda: keyed_rng(parent, *key)

    job_type = _text_column(spec.job_type, rng(JobStream.JOB_TYPE), n)
    seeds: Column = 0
    if FAIL_JOB in spec.job_types:
        seeds = keyed_rng(parent, JOB_KEY, JobStream.FAIL_SEED).integers(1, 1 << 62, n).tolist()
    payload_bytes: Column = (
        spec.payload_bytes
        if isinstance(spec.payload_bytes, int)
        else _ints(draw_numbers(spec.payload_bytes, lambda: keyed_rng(parent, Stream.PAYLOAD), n))
    )
    return JobColumns(
        job_type=job_type,
        priority=_ints(draw_numbers(spec.priority, rng(JobStream.PRIORITY), n)),
        max_attempts=_ints(draw_numbers(spec.max_attempts, rng(JobStream.MAX_ATTEMPTS), n)),
        initial_backoff=draw_numbers(spec.backoff.initial, rng(JobStream.BACKOFF_INITIAL), n),
        backoff_multiplier=draw_numbers(spec.backoff.multiplier, rng(JobStream.BACKOFF_MULTIPLIER), n),
        max_backoff=draw_numbers(spec.backoff.max, rng(JobStream.BACKOFF_MAX), n),
        execution_timeout=draw_numbers(spec.execution_timeout, rng(JobStream.TIMEOUT), n),
        labels=tuple((k, _text_column(v, rng(JobStream.LABELS, k), n)) for k, v in spec.labels),
        params=tuple((k, _scalar(v, rng(JobStream.PARAMS, k), n)) for k, v in spec.payload),
        cpu_fraction=None
        if spec.cpu_fraction is None
        else draw_numbers(spec.cpu_fraction, rng(JobStream.CPU_FRACTION), n),
        payload_bytes=payload_bytes,
        seed=seeds,
    )


def streams_for(parent: np.random.SeedSequence) -> dict[Stream, np.random.Generator]:
    """The Stream generators under `parent` (streams(seed) when parent is SeedSequence(seed))."""
    return {s: keyed_rng(parent, int(s)) for s in Stream}


# ---------------------------------------------------------------------------- traces
@dataclass(frozen=True, slots=True)
class Trace:
    """A pre-generated request sequence. For open loop, `times` are the intended send times; for a
    closed-loop client, times are think times and the client paces itself.
    `target` in [0, 1) picks which earlier submitted job a status/result/cancel request is about:
    index floor(target * jobs submitted so far). `jobs` holds every row's per-job settings (rows
    that are not submits draw them too, so that a request sent as a submit instead has them)."""

    times: npt.NDArray[np.float64]
    ops: npt.NDArray[np.int8]
    durations: npt.NDArray[np.float64]  # job duration for submits, 0 otherwise
    targets: npt.NDArray[np.float64]
    jobs: JobColumns | None = None

    def __len__(self) -> int:
        return len(self.ops)

    def job(self, i: int, duration: float | None = None) -> JobDraw:
        """Row i's job (with its trace duration, or `duration`)."""
        d = float(self.durations[i]) if duration is None else duration
        if self.jobs is None:
            return JobDraw("sleep", d)
        return self.jobs.job(i, d)

    def to_bytes(self) -> bytes:
        """Every column: byte-identical traces give identical bytes."""
        jobs = self.jobs.to_json().encode() if self.jobs is not None else b""
        return b"|".join(
            (self.times.tobytes(), self.ops.tobytes(), self.durations.tobytes(), self.targets.tobytes(), jobs)
        )


def _durations(spec: WorkloadSpec, rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
    if isinstance(spec.duration, Choice):
        return np.asarray(spec.duration.sample(rng, n), dtype=np.float64)
    return spec.duration.sample(rng, n)


def _draw_ops(spec: WorkloadSpec, parent: np.random.SeedSequence, n: int) -> Trace:
    rng = streams_for(parent)
    weights = np.asarray(spec.mix.weights(), dtype=np.float64)
    ops = rng[Stream.MIX].choice(len(Op), size=n, p=weights / weights.sum()).astype(np.int8)
    if n:
        ops[0] = Op.SUBMIT  # the first request has no job to ask about
    durations = np.where(ops == Op.SUBMIT, _durations(spec, rng[Stream.DURATIONS], n), 0.0)
    targets = rng[Stream.TARGETS].random(n)
    return Trace(np.zeros(n), ops, durations, targets, draw_jobs(spec, parent, n))


def open_loop_trace(spec: WorkloadSpec) -> Trace:
    """Poisson arrivals over warm-up + run time (gaps are exact exponentials: no capping), or a
    replay's recorded requests within it."""
    if isinstance(spec.arrival, Replay):
        return _replay_trace(spec, spec.arrival)
    if not isinstance(spec.arrival, OpenLoop):
        raise InvalidArgument("open_loop_trace needs an open-loop arrival process")
    parent = np.random.SeedSequence(spec.seed)
    arrivals = streams_for(parent)[Stream.ARRIVALS]
    rate, horizon = spec.arrival.rate, spec.total_time
    times: list[npt.NDArray[np.float64]] = []
    t = 0.0
    chunk = max(16, int(rate * horizon * 1.1) + 16)
    while t <= horizon:
        gaps = arrivals.exponential(1.0 / rate, chunk)
        block = t + np.cumsum(gaps)
        times.append(block)
        t = float(block[-1])
    all_times = np.concatenate(times)
    all_times = all_times[all_times <= horizon]
    trace = _draw_ops(spec, parent, len(all_times))
    return replace(trace, times=all_times)


def _replay_trace(spec: WorkloadSpec, replay: Replay) -> Trace:
    rec = replay.recording
    times = np.asarray(rec.times, dtype=np.float64) / replay.speed
    order = np.argsort(times, kind="stable")
    keep = order[times[order] <= spec.total_time]
    parent = np.random.SeedSequence(spec.seed)
    n = len(keep)
    ops = np.asarray(rec.ops, dtype=np.int8)[keep]
    recorded = np.asarray(rec.durations, dtype=np.float64)[keep]
    drawn = _durations(spec, streams_for(parent)[Stream.DURATIONS], n)
    durations = np.where(ops == Op.SUBMIT, np.where(np.isfinite(recorded), recorded, drawn), 0.0)
    targets = np.asarray(rec.targets, dtype=np.float64)[keep]
    return Trace(times[keep], ops, durations, targets, draw_jobs(spec, parent, n))


def closed_loop_scripts(spec: WorkloadSpec, max_requests_per_client: int) -> list[Trace]:
    """One request script per closed-loop client, each from its own child stream of the seed."""
    if not isinstance(spec.arrival, ClosedLoop):
        raise InvalidArgument("closed_loop_scripts needs a closed-loop arrival process")
    clients = np.random.SeedSequence(spec.seed).spawn(_CLIENT_OFFSET + spec.arrival.clients)[_CLIENT_OFFSET:]
    scripts = []
    for child in clients:
        trace = _draw_ops(spec, child, max_requests_per_client)
        think = spec.arrival.think_time.sample(streams_for(child)[Stream.THINK], max_requests_per_client)
        scripts.append(replace(trace, times=think))
    return scripts


@dataclass(frozen=True, slots=True)
class PrefillJobs:
    """The jobs a run starts with (Prefill): the finished ones with their final states, then the pending."""

    finished: list[JobDraw]
    states: list[str]
    pending: list[JobDraw]


def prefill_jobs(spec: WorkloadSpec) -> PrefillJobs:
    """The prefill's jobs, drawn from the workload's job settings on the prefill's own streams."""
    prefill = spec.prefill
    if prefill is None:
        return PrefillJobs([], [], [])
    parent = np.random.SeedSequence(spec.seed, spawn_key=(JOB_KEY, JobStream.PREFILL))
    n = prefill.finished + prefill.pending
    rngs = streams_for(parent)
    durations = _durations(spec, rngs[Stream.DURATIONS], n).tolist()
    columns = draw_jobs(spec, parent, n)
    jobs = [columns.job(i, durations[i]) for i in range(n)]
    states = [str(s) for s in prefill.states.sample(rngs[Stream.MIX], prefill.finished)]
    return PrefillJobs(jobs[: prefill.finished], states, jobs[prefill.finished :])


# ---------------------------------------------------------------------------- mappings (workload files)
# The one place a workload mapping (a parsed YAML/TOML file, or config.json's "workload") is validated.
# Every error names the offending key as a dotted path, e.g. "workload.arrival.rate".
class WorkloadFiles(Protocol):
    """Reads the files a workload names (model/results/runs.py: relative to the workload file)."""

    def samples(self, path: str) -> tuple[str, tuple[float, ...]]:
        """(the file's resolved path, the numbers it holds)."""
        ...

    def recording(self, path: str) -> Recording:
        """A run directory's requests, for a replay."""
        ...


_TOP_KEYS = frozenset(
    {
        "arrival",
        "mix",
        "job_type",
        "duration",
        "payload_bytes",
        "run_time",
        "warmup",
        "seed",
        "labels",
        "priority",
        "max_attempts",
        "backoff",
        "execution_timeout",
        "payload",
        "cpu_fraction",
        "prefill",
    }
)
_OPEN_KEYS = frozenset({"kind", "rate", "max_in_flight"})
_CLOSED_KEYS = frozenset({"kind", "clients", "think_time", "wait_for_completion"})
_REPLAY_KEYS = frozenset({"kind", "run", "max_in_flight", "speed"})
_DIST_KEYS = {
    "constant": frozenset({"kind", "mean"}),
    "exponential": frozenset({"kind", "mean"}),
    "lognormal": frozenset({"kind", "mean", "sigma"}),
    "mixture": frozenset({"kind", "components"}),
    "empirical": frozenset({"kind", "samples", "file"}),
    "categorical": frozenset({"kind", "values"}),
}
_ALL_KINDS = ", ".join(sorted(_DIST_KEYS))
_MIX_KEYS = frozenset(op.name.lower() for op in Op)
_BACKOFF_KEYS = frozenset({"initial", "multiplier", "max"})
_PREFILL_KEYS = frozenset({"finished", "pending", "states"})


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


def _is_number(value: object) -> bool:
    # bool is an int subclass: `rate: true` is a mistake, not 1
    return isinstance(value, int | float) and not isinstance(value, bool)


def _default(key: str, path: str, default: N | None) -> N:
    """What a missing key stands for: `default` (None: the key is required)."""
    if default is None:
        raise _fail(f"{path}.{key}", "is required")
    return default


def _number(table: Mapping[str, Any], key: str, path: str, default: float | None = None) -> float:
    if key not in table:
        return _default(key, path, default)
    value = table[key]
    if not _is_number(value):
        raise _fail(f"{path}.{key}", f"must be a number, got {value!r}")
    return float(value)


def _integer(table: Mapping[str, Any], key: str, path: str, default: int | None = None) -> int:
    if key not in table:
        return _default(key, path, default)
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


def _pairs(value: object, path: str) -> list[tuple[Any, Any]]:
    """A categorical's `values`: a mapping {value: weight} or a list of [value, weight] pairs."""
    if isinstance(value, Mapping):
        return list(value.items())
    if isinstance(value, list) and all(isinstance(p, list | tuple) and len(p) == 2 for p in value):
        return [(p[0], p[1]) for p in value]
    raise _fail(path, "must be a mapping {value: weight} or a list of [value, weight] pairs")


def _as_number(value: object, path: str, integer: bool) -> int | float:
    """A categorical value of a numeric setting (keys of TOML or JSON tables come as strings)."""
    if isinstance(value, str):
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            raise _fail(
                path, f"values must be {'integers' if integer else 'numbers'}, got {value!r}"
            ) from None
    if not _is_number(value) or (integer and not isinstance(value, int)):
        raise _fail(path, f"values must be {'integers' if integer else 'numbers'}, got {value!r}")
    assert isinstance(value, int | float)
    return value


def _choice(table: Mapping[str, Any], path: str, convert: Callable[[object], Scalar]) -> Choice:
    if "values" not in table:
        raise _fail(f"{path}.values", "is required")
    pairs = []
    for value, weight in _pairs(table["values"], f"{path}.values"):
        if not _is_number(weight):
            raise _fail(f"{path}.values", f"weights must be numbers, got {weight!r}")
        pairs.append((convert(value), float(weight)))
    return _build(path, lambda: Choice(tuple(pairs)))


def _kind(value: object, path: str) -> tuple[str, Mapping[str, Any]]:
    if not isinstance(value, Mapping):
        raise _fail(path, f"must be a mapping, got {type(value).__name__}")
    kind = value.get("kind", "constant")
    if kind not in _DIST_KEYS:
        raise _fail(path, f"unknown distribution kind {kind!r} (allowed: {_ALL_KINDS})")
    return kind, _table(value, path, _DIST_KEYS[kind])


def _distribution(
    value: object, path: str, files: WorkloadFiles | None, categorical: bool = True
) -> Distribution | Choice:
    """A numeric distribution mapping: constant, exponential, lognormal, mixture, empirical, or (where
    `categorical`) categorical over numbers."""
    kind, table = _kind(value, path)
    if kind == "categorical":
        if not categorical:
            raise _fail(path, "categorical is not allowed here")
        return _choice(table, path, lambda v: _as_number(v, f"{path}.values", integer=False))
    if kind == "mixture":
        return _mixture(table, path, files)
    if kind == "empirical":
        return _empirical(table, path, files)
    mean = _number(table, "mean", path, 0.0)
    sigma = _number(table, "sigma", path, 0.0)
    return _build(path, lambda: Distribution(kind, mean, sigma))  # type: ignore[arg-type]


def _mixture(table: Mapping[str, Any], path: str, files: WorkloadFiles | None) -> Distribution:
    components = table.get("components")
    if not isinstance(components, list) or not components:
        raise _fail(f"{path}.components", "must be a non-empty list of {weight: w, kind: ..., ...}")
    parts: list[tuple[float, Distribution]] = []
    for k, item in enumerate(components):
        where = f"{path}.components[{k}]"
        if not isinstance(item, Mapping) or "weight" not in item:
            raise _fail(where, "must be a mapping with a `weight` and a distribution")
        weight = item["weight"]
        if not _is_number(weight):
            raise _fail(f"{where}.weight", f"must be a number, got {weight!r}")
        part = _distribution({k2: v for k2, v in item.items() if k2 != "weight"}, where, files)
        if isinstance(part, Choice):  # a categorical component: the mixture of its constants
            part = Distribution.mixture(*((w, Distribution("constant", float(v))) for v, w in part.values))
        parts.append((float(weight), part))
    return _build(path, lambda: Distribution("mixture", components=tuple(parts)))


def _empirical(table: Mapping[str, Any], path: str, files: WorkloadFiles | None) -> Distribution:
    source = table.get("file", "")
    if not isinstance(source, str):
        raise _fail(f"{path}.file", f"must be a path, got {source!r}")
    if "samples" in table:  # inline (config.json keeps them, and the file's name, for the record)
        samples = table["samples"]
        if not isinstance(samples, list) or not all(_is_number(x) for x in samples):
            raise _fail(f"{path}.samples", "must be a list of numbers")
        return _build(path, lambda: Distribution.empirical(samples, source))
    if not source:
        raise _fail(path, "empirical needs `samples` (a list) or `file` (a path)")
    if files is None:
        raise _fail(
            f"{path}.file", "a workload that names files must be loaded from its file (load_workload)"
        )
    try:
        resolved, numbers = files.samples(source)
    except InvalidArgument as exc:
        raise _fail(f"{path}.file", exc.message) from None
    return _build(path, lambda: Distribution.empirical(numbers, resolved))


def _numeric(
    value: object, path: str, files: WorkloadFiles | None, *, integer: bool, low: float, high: float
) -> Numeric:
    """A per-job number: a constant, or a distribution (integers: categorical only), within [low, high]."""
    setting: Numeric
    if _is_number(value):
        if integer and not isinstance(value, int):
            raise _fail(path, f"must be an integer, got {value!r}")
        assert isinstance(value, int | float)
        setting = value if integer else float(value)
    elif isinstance(value, Mapping):
        kind, table = _kind(value, path)
        if integer and kind != "categorical":
            raise _fail(path, f"must be an integer or {{kind: categorical, values: ...}}, got kind {kind!r}")
        if kind == "categorical":
            setting = _choice(table, path, lambda v: _as_number(v, f"{path}.values", integer))
        else:
            setting = _distribution(value, path, files)
    else:
        raise _fail(path, f"must be a number or a distribution mapping, got {value!r}")
    lo, hi = numeric_bounds(setting)
    if lo < low or hi > high:
        raise _fail(path, f"must be within [{low:g}, {high:g}] in every draw (draws span [{lo:g}, {hi:g}])")
    return setting


def _text_setting(value: object, path: str) -> Text:
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping):
        kind, table = _kind(value, path)
        if kind == "categorical":
            return _choice(table, path, lambda v: v if isinstance(v, str) else _text_value(v, path))
    raise _fail(path, f"must be a string or {{kind: categorical, values: {{a: 0.5, b: 0.5}}}}, got {value!r}")


def _text_value(value: object, path: str) -> str:
    if _is_number(value):
        return str(value)
    raise _fail(f"{path}.values", f"values must be strings, got {value!r}")


def _param(value: object, path: str, files: WorkloadFiles | None) -> Scalar | Distribution | Choice:
    if isinstance(value, bool | int | float | str):
        if isinstance(value, float) and not math.isfinite(value):
            raise _fail(path, "must be finite")
        return value
    if isinstance(value, Mapping):
        kind, table = _kind(value, path)
        if kind == "categorical":
            return _choice(table, path, lambda v: _param_value(v, path))
        return _distribution(value, path, files)
    raise _fail(path, f"must be a number, string, boolean or distribution mapping, got {value!r}")


def _param_value(value: object, path: str) -> Scalar:
    if isinstance(value, bool | int | float | str):
        return value
    raise _fail(f"{path}.values", f"values must be numbers, strings or booleans, got {value!r}")


def _params(
    value: object, path: str, files: WorkloadFiles | None
) -> tuple[tuple[str, Scalar | Distribution | Choice], ...]:
    if not isinstance(value, Mapping):
        raise _fail(path, f"must be a mapping of parameter -> value, got {type(value).__name__}")
    out = []
    for key, param in value.items():
        if not isinstance(key, str) or not key:
            raise _fail(path, f"parameter names must be non-empty strings, got {key!r}")
        if key in RESERVED_PARAMS:
            raise _fail(
                f"{path}.{key}",
                "is set by the generator (seconds: `duration`; cpu_fraction: `cpu_fraction`; seed, pad); "
                f"reserved: {', '.join(sorted(RESERVED_PARAMS))}",
            )
        out.append((key, _param(param, f"{path}.{key}", files)))
    return tuple(out)


def _arrival(value: object, path: str, files: WorkloadFiles | None) -> Arrival:
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
        think = _distribution(table.get("think_time", {}), f"{path}.think_time", files, categorical=False)
        assert isinstance(think, Distribution)
        wait = table.get("wait_for_completion", False)
        if not isinstance(wait, bool):
            raise _fail(f"{path}.wait_for_completion", f"must be true or false, got {wait!r}")
        return _build(path, lambda: ClosedLoop(clients, think, wait))
    if kind == "replay":
        table = _table(value, path, _REPLAY_KEYS)
        run = table.get("run")
        if not isinstance(run, str) or not run:
            raise _fail(f"{path}.run", "is required: a recorded run's directory")
        if files is None:
            raise _fail(f"{path}.run", "a replay must be loaded from its workload file (load_workload)")
        try:
            recording = files.recording(run)
        except InvalidArgument as exc:
            raise _fail(f"{path}.run", exc.message) from None
        max_in_flight = _integer(table, "max_in_flight", path, 1024)
        speed = _number(table, "speed", path, 1.0)
        return _build(path, lambda: Replay(recording, max_in_flight, speed))
    raise _fail(f"{path}.kind", f"must be 'open', 'closed' or 'replay', got {kind!r}")


def _mix(value: object, path: str) -> RequestMix:
    table = _table(value, path, _MIX_KEYS)
    # fractions left out are 0 (not the dataclass defaults): a file lists the ops it sends
    fractions = {name: _number(table, name, path, 0.0) for name in sorted(_MIX_KEYS)}
    return _build(path, lambda: RequestMix(**fractions))


def _labels(value: object, path: str) -> tuple[tuple[str, Text], ...]:
    if not isinstance(value, Mapping):
        raise _fail(path, f"must be a mapping, got {type(value).__name__}")
    out = []
    for key, label in value.items():
        if not isinstance(key, str):
            raise _fail(path, f"label keys must be strings, got {key!r}")
        if not isinstance(label, str | Mapping):
            raise _fail(
                f"{path}.{key}",
                f"labels must map strings to strings or {{kind: categorical, ...}}, got {label!r}",
            )
        out.append((key, _text_setting(label, f"{path}.{key}")))
    return tuple(out)


def _backoff(value: object, path: str, files: WorkloadFiles | None) -> Backoff:
    table = _table(value, path, _BACKOFF_KEYS)
    limits = {"initial": (0.0, math.inf), "multiplier": (0.0, math.inf), "max": (0.0, math.inf)}
    parts = {
        key: _numeric(table[key], f"{path}.{key}", files, integer=False, low=lo, high=hi)
        for key, (lo, hi) in limits.items()
        if key in table
    }
    return _build(path, lambda: Backoff(**parts))


def _prefill(value: object, path: str) -> Prefill:
    table = _table(value, path, _PREFILL_KEYS)
    finished = _integer(table, "finished", path, 0)
    pending = _integer(table, "pending", path, 0)
    states = Prefill().states
    if "states" in table:
        shares = _table(table["states"], f"{path}.states", frozenset(JOB_STATES))
        pairs = [(name, _number(shares, name, f"{path}.states")) for name in JOB_STATES if name in shares]
        pairs = [(name, w) for name, w in pairs if w != 0]
        states = _build(f"{path}.states", lambda: Choice(tuple(pairs)))
    return _build(path, lambda: Prefill(finished, pending, states))


def workload_from_mapping(d: Mapping[str, Any], files: WorkloadFiles | None = None) -> WorkloadSpec:
    """A WorkloadSpec from its mapping form (see data/README.md); InvalidArgument names the bad key.

    Only `arrival` is required; every other key has the WorkloadSpec default, except that `mix`
    fractions left out are 0, and a replay's run_time and warmup default to the recorded run's.
    `files` reads the files a workload names (empirical samples, a replay's run directory).
    """
    path = "workload"
    table = _table(d, path, _TOP_KEYS)
    if "arrival" not in table:
        raise _fail(f"{path}.arrival", "is required")
    defaults = WorkloadSpec(OpenLoop(1.0))
    arrival = _arrival(table["arrival"], f"{path}.arrival", files)
    mix = _mix(table["mix"], f"{path}.mix") if "mix" in table else defaults.mix
    duration = (
        _distribution(table["duration"], f"{path}.duration", files)
        if "duration" in table
        else defaults.duration
    )
    labels = _labels(table["labels"], f"{path}.labels") if "labels" in table else defaults.labels
    job_type = (
        _text_setting(table["job_type"], f"{path}.job_type") if "job_type" in table else defaults.job_type
    )
    payload_bytes: int | Distribution | Choice = defaults.payload_bytes
    if "payload_bytes" in table:
        value = table["payload_bytes"]
        if isinstance(value, Mapping):
            size = _numeric(value, f"{path}.payload_bytes", files, integer=False, low=0, high=INT32[1])
            assert isinstance(size, Distribution | Choice)
            payload_bytes = size
        else:
            payload_bytes = _integer(table, "payload_bytes", path)
    settings: dict[str, Any] = {}
    for key, integer, low, high in (
        ("priority", True, INT32[0], INT32[1]),
        ("max_attempts", True, 0, INT32[1]),
        ("execution_timeout", False, 0.0, math.inf),
        ("cpu_fraction", False, 0.0, 1.0),
    ):
        if key in table:
            settings[key] = _numeric(table[key], f"{path}.{key}", files, integer=integer, low=low, high=high)
    if "backoff" in table:
        settings["backoff"] = _backoff(table["backoff"], f"{path}.backoff", files)
    if "payload" in table:
        settings["payload"] = _params(table["payload"], f"{path}.payload", files)
    if "prefill" in table:
        settings["prefill"] = _prefill(table["prefill"], f"{path}.prefill")
    recording = arrival.recording if isinstance(arrival, Replay) else None
    run_time = _number(table, "run_time", path, recording.run_time if recording else defaults.run_time)
    warmup = _number(table, "warmup", path, recording.warmup if recording else defaults.warmup)
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
            **settings,
        ),
    )


def distribution_to_mapping(dist: Distribution | Choice) -> dict[str, Any]:
    if isinstance(dist, Choice):
        return {"kind": "categorical", "values": [[v, w] for v, w in dist.values]}
    if dist.kind == "mixture":
        return {
            "kind": "mixture",
            "components": [{"weight": w, **distribution_to_mapping(d)} for w, d in dist.components],
        }
    if dist.kind == "empirical":
        out: dict[str, Any] = {"kind": "empirical", "samples": list(dist.samples)}
        if dist.source:
            out["file"] = dist.source
        return out
    out = {"kind": dist.kind, "mean": dist.mean}
    if dist.sigma:
        out["sigma"] = dist.sigma
    return out


def _setting_to_mapping(value: Scalar | Distribution | Choice) -> Any:
    return distribution_to_mapping(value) if isinstance(value, Distribution | Choice) else value


def workload_to_mapping(spec: WorkloadSpec) -> dict[str, Any]:
    """The inverse of workload_from_mapping, with every value explicit (config.json records it); the
    per-job settings appear when they differ from the server defaults, empirical samples inline, and a
    replay by its run directory's path."""
    arrival: dict[str, Any]
    if isinstance(spec.arrival, OpenLoop):
        arrival = {"kind": "open", "rate": spec.arrival.rate, "max_in_flight": spec.arrival.max_in_flight}
    elif isinstance(spec.arrival, Replay):
        arrival = {
            "kind": "replay",
            "run": spec.arrival.recording.path,
            "max_in_flight": spec.arrival.max_in_flight,
            "speed": spec.arrival.speed,
        }
    else:
        think = distribution_to_mapping(spec.arrival.think_time)
        arrival = {
            "kind": "closed",
            "clients": spec.arrival.clients,
            "think_time": think,
            "wait_for_completion": spec.arrival.wait_for_completion,
        }
    out: dict[str, Any] = {
        "arrival": arrival,
        "mix": {op.name.lower(): spec.mix.weights()[op] for op in Op},
        "job_type": _setting_to_mapping(spec.job_type),
        "duration": distribution_to_mapping(spec.duration),
        "payload_bytes": _setting_to_mapping(spec.payload_bytes),
        "run_time": spec.run_time,
        "warmup": spec.warmup,
        "seed": spec.seed,
    }
    if spec.labels:
        out["labels"] = {k: _setting_to_mapping(v) for k, v in spec.labels}
    defaults = WorkloadSpec(OpenLoop(1.0))
    for key in ("priority", "max_attempts", "execution_timeout"):
        value = getattr(spec, key)
        if value != getattr(defaults, key):
            out[key] = _setting_to_mapping(value)
    if not spec.backoff.is_default:
        out["backoff"] = {
            key: _setting_to_mapping(getattr(spec.backoff, key))
            for key in ("initial", "multiplier", "max")
            if getattr(spec.backoff, key) != getattr(defaults.backoff, key)
        }
    if spec.payload:
        out["payload"] = {k: _setting_to_mapping(v) for k, v in spec.payload}
    if spec.cpu_fraction is not None:
        out["cpu_fraction"] = _setting_to_mapping(spec.cpu_fraction)
    if spec.prefill is not None:
        out["prefill"] = {
            "finished": spec.prefill.finished,
            "pending": spec.prefill.pending,
            "states": {str(v): w for v, w in spec.prefill.states.values},
        }
    return out
