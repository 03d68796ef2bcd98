"""A simulator parameter's distribution: a non-negative random duration in seconds (constant,
exponential, lognormal by its mean, or the empirical samples a calibration measured), and the
operations an override applies to one (sim/keys.py): scale, shift, set the mean, set sigma.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from model.errors import InvalidArgument

DistKind = Literal["constant", "exponential", "lognormal", "empirical"]
_KINDS = ("constant", "exponential", "lognormal", "empirical")
MAPPING_KEYS = frozenset({"kind", "mean", "sigma", "samples", "shift"})
# `kind(args)`: how a distribution is written as text (`--set network=exponential(0.002)`)
_CALL = re.compile(r"^\s*(constant|exponential|lognormal)\s*\(([^()]*)\)\s*$")


@dataclass(frozen=True, slots=True)
class Dist:
    """A non-negative random duration in seconds.

    constant: `mean`; exponential: mean `mean`; lognormal: mean `mean` (not the median) and `sigma`
    of the underlying normal (as model.workload.Distribution); empirical: uniform over `samples`
    (its `mean` is theirs, computed). `shift` (exponential and lognormal only): a fixed part of every
    duration; `mean` is then the whole mean and the random part has mean `mean - shift`. A shift of
    a constant or empirical distribution is folded into its value or samples (`shifted`).
    """

    kind: DistKind = "constant"
    mean: float = 0.0
    sigma: float = 0.0
    samples: tuple[float, ...] = ()
    shift: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise InvalidArgument(f"unknown distribution kind {self.kind!r} (one of {', '.join(_KINDS)})")
        if self.kind == "empirical":
            if not self.samples or not all(math.isfinite(s) and s >= 0 for s in self.samples):
                raise InvalidArgument("an empirical distribution needs finite, non-negative samples")
            if self.shift:
                raise InvalidArgument("an empirical distribution's shift is folded into its samples")
            object.__setattr__(self, "mean", float(np.mean(self.samples)))
            return
        if self.samples:
            raise InvalidArgument(f"a {self.kind} distribution has no samples")
        if not (math.isfinite(self.mean) and self.mean >= 0):
            raise InvalidArgument(f"distribution mean must be finite and >= 0, got {self.mean}")
        if self.shift and (self.kind == "constant" or not (0 <= self.shift < self.mean)):
            raise InvalidArgument(
                f"shift {self.shift} needs an exponential or lognormal distribution of a larger mean "
                f"(mean {self.mean})"
            )
        rest = self.mean - self.shift
        if self.kind == "lognormal" and rest > 0 and not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise InvalidArgument("a lognormal distribution needs sigma > 0")
        if self.kind == "exponential" and rest <= 0:
            raise InvalidArgument("an exponential distribution needs mean > 0")

    @property
    def is_zero(self) -> bool:
        return self.kind != "empirical" and self.mean == 0.0

    @property
    def is_constant(self) -> bool:
        return self.kind == "constant" or self.is_zero

    def sample(self, rng: np.random.Generator, n: int) -> npt.NDArray[np.float64]:
        if self.is_constant:
            return np.full(n, self.mean)
        if self.kind == "exponential":
            drawn = rng.exponential(self.mean - self.shift, n)
        elif self.kind == "lognormal":
            mu = math.log(self.mean - self.shift) - self.sigma**2 / 2  # so that E[X] == mean
            drawn = rng.lognormal(mu, self.sigma, n)
        else:
            return rng.choice(np.asarray(self.samples, dtype=np.float64), n)
        return drawn + self.shift if self.shift else drawn

    @staticmethod
    def of(value: object, path: str = "dist") -> Dist:
        """A number is a constant; a string is `constant(m)`, `exponential(m)` or `lognormal(m, sigma)`;
        a mapping has `kind` and `mean`, `sigma`, `shift`, or `samples` (empirical)."""
        if isinstance(value, Dist):
            return value
        if isinstance(value, bool):
            raise InvalidArgument(f"{path}: expected a number or a distribution, got {value!r}")
        if isinstance(value, int | float):
            return _checked(path, lambda: Dist("constant", float(value)))
        if isinstance(value, str):
            return _parse_call(value, path)
        if not isinstance(value, Mapping):
            raise InvalidArgument(f"{path}: expected a number or a distribution, got {value!r}")
        unknown = set(value) - MAPPING_KEYS
        if unknown:
            raise InvalidArgument(
                f"{path}: unknown keys {sorted(unknown)} (a distribution has kind, mean, ...)"
            )
        kind = value.get("kind", "empirical" if "samples" in value else "constant")
        if kind == "empirical" and "mean" in value:
            raise InvalidArgument(
                f"{path}: an empirical distribution's mean is its samples' (scale or shift them instead)"
            )
        try:
            return Dist(
                kind,
                float(value.get("mean", 0.0)),
                float(value.get("sigma", 0.0)),
                tuple(float(s) for s in value.get("samples", ())),
                float(value.get("shift", 0.0)),
            )
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"{path}: {exc}") from None
        except InvalidArgument as exc:
            raise InvalidArgument(f"{path}: {exc.message}") from None

    # ------------------------------------------------------------------ what-if operations
    def scaled(self, factor: float) -> Dist:
        """The same shape, every duration times `factor` (> 0)."""
        if not (factor > 0 and math.isfinite(factor)):
            raise InvalidArgument(f"a duration scale must be finite and > 0, got {factor}")
        if self.kind == "empirical":
            return Dist("empirical", samples=tuple(s * factor for s in self.samples))
        return Dist(self.kind, self.mean * factor, self.sigma, shift=self.shift * factor)

    def shifted(self, seconds: float) -> Dist:
        """Every duration plus `seconds` (may be negative while no duration goes below 0)."""
        if not math.isfinite(seconds):
            raise InvalidArgument(f"a shift must be finite seconds, got {seconds}")
        if self.kind == "empirical":
            low = min(self.samples)
            if low + seconds < 0:
                raise InvalidArgument(
                    f"shift {seconds:g} s would make the smallest sample ({low:g} s) negative"
                )
            return Dist("empirical", samples=tuple(s + seconds for s in self.samples))
        if self.is_constant:
            if self.mean + seconds < 0:
                raise InvalidArgument(f"shift {seconds:g} s would make the constant {self.mean:g} s negative")
            return Dist("constant", self.mean + seconds)
        if self.shift + seconds < 0:
            raise InvalidArgument(
                f"shift {seconds:g} s would make {self.kind} durations negative (their least is "
                f"{self.shift:g} s); scale it instead"
            )
        return Dist(self.kind, self.mean + seconds, self.sigma, shift=self.shift + seconds)

    def with_mean(self, mean: float) -> Dist:
        """The same shape with mean `mean`: every duration times mean / self.mean (a constant takes
        the value; a distribution of mean 0 other than a constant cannot be rescaled)."""
        if not (math.isfinite(mean) and mean >= 0):
            raise InvalidArgument(f"a mean must be finite seconds >= 0, got {mean}")
        if self.kind == "constant":
            return Dist("constant", mean)
        if mean == 0:
            return Dist()
        if self.mean == 0:
            raise InvalidArgument(
                f"this {self.kind} distribution's mean is 0: it has no shape to rescale (replace it, "
                f"e.g. constant({mean:g}))"
            )
        return self.scaled(mean / self.mean)

    def with_sigma(self, sigma: float) -> Dist:
        """A lognormal's sigma (the mean kept); any other kind has none."""
        if self.kind != "lognormal":
            raise InvalidArgument(
                f"sigma belongs to lognormal distributions, this one is {self.kind} (replace it: "
                "lognormal(mean, sigma))"
            )
        return _checked("sigma", lambda: Dist("lognormal", self.mean, float(sigma), shift=self.shift))

    # ------------------------------------------------------------------ text
    def to_mapping(self) -> dict[str, Any]:
        if self.kind == "empirical":
            return {"kind": "empirical", "samples": list(self.samples)}
        out: dict[str, Any] = {"kind": self.kind, "mean": self.mean}
        if self.kind == "lognormal":
            out["sigma"] = self.sigma
        if self.shift:
            out["shift"] = self.shift
        return out

    def describe(self) -> str:
        """One line for people: kind, mean (and the samples' spread), in microseconds."""
        if self.kind == "empirical":
            arr = np.asarray(self.samples)
            q = np.percentile(arr, [50, 99]) * 1e6
            return (
                f"empirical(n={len(arr)}, mean={self.mean * 1e6:.4g} us, p50={q[0]:.4g} us, "
                f"p99={q[1]:.4g} us)"
            )
        if self.is_constant:
            return f"constant({self.mean * 1e6:.4g} us)"
        extra = f", sigma={self.sigma:g}" if self.kind == "lognormal" else ""
        shift = f", shift={self.shift * 1e6:.4g} us" if self.shift else ""
        return f"{self.kind}(mean={self.mean * 1e6:.4g} us{extra}{shift})"


def _checked(path: str, make: Any) -> Dist:
    try:
        dist: Dist = make()
    except InvalidArgument as exc:
        raise InvalidArgument(f"{path}: {exc.message}") from None
    return dist


def _parse_call(text: str, path: str) -> Dist:
    """`constant(m)`, `exponential(m)`, `lognormal(m, sigma)`: seconds."""
    match = _CALL.match(text)
    if not match:
        raise InvalidArgument(
            f"{path}: expected a number (a constant), constant(m), exponential(m) or lognormal(m, sigma) "
            f"in seconds, got {text!r}"
        )
    kind, raw = match.group(1), [a.strip() for a in match.group(2).split(",") if a.strip()]
    want = 2 if kind == "lognormal" else 1
    try:
        args = [float(a) for a in raw]
    except ValueError:
        args = []
    if len(args) != want:
        shape = "lognormal(mean, sigma)" if kind == "lognormal" else f"{kind}(mean)"
        raise InvalidArgument(f"{path}: {shape} takes {want} number{'s' * (want > 1)}, got {text!r}")
    return _checked(path, lambda: Dist(kind, *args))  # type: ignore[arg-type]


ZERO = Dist()
