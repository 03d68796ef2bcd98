"""A simulator parameter's distribution: a non-negative random duration in seconds (constant,
exponential, lognormal by its mean, or the empirical samples a calibration measured).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from model.errors import InvalidArgument

DistKind = Literal["constant", "exponential", "lognormal", "empirical"]
_KINDS = ("constant", "exponential", "lognormal", "empirical")
DIST_FIELDS = frozenset({"kind", "mean", "sigma", "samples"})


@dataclass(frozen=True, slots=True)
class Dist:
    """A non-negative random duration in seconds.

    constant: `mean`; exponential: mean `mean`; lognormal: mean `mean` (not the median) and `sigma`
    of the underlying normal (as model.workload.Distribution); empirical: uniform over `samples`.
    """

    kind: DistKind = "constant"
    mean: float = 0.0
    sigma: float = 0.0
    samples: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise InvalidArgument(f"unknown distribution kind {self.kind!r} (one of {', '.join(_KINDS)})")
        if self.kind == "empirical":
            if not self.samples or not all(math.isfinite(s) and s >= 0 for s in self.samples):
                raise InvalidArgument("an empirical distribution needs finite, non-negative samples")
            object.__setattr__(self, "mean", float(np.mean(self.samples)))
            return
        if not (math.isfinite(self.mean) and self.mean >= 0):
            raise InvalidArgument(f"distribution mean must be finite and >= 0, got {self.mean}")
        if self.kind == "lognormal" and self.mean > 0 and not (self.sigma > 0 and math.isfinite(self.sigma)):
            raise InvalidArgument("a lognormal distribution needs sigma > 0")
        if self.kind == "exponential" and self.mean <= 0:
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
            return rng.exponential(self.mean, n)
        if self.kind == "lognormal":
            mu = math.log(self.mean) - self.sigma**2 / 2  # so that E[X] == mean
            return rng.lognormal(mu, self.sigma, n)
        return rng.choice(np.asarray(self.samples, dtype=np.float64), n)

    @staticmethod
    def of(value: object, path: str = "dist") -> Dist:
        """A number is a constant; a mapping has `kind`, `mean`, `sigma` or `samples`."""
        if isinstance(value, Dist):
            return value
        if isinstance(value, bool):
            raise InvalidArgument(f"{path}: expected a number or a distribution mapping, got {value!r}")
        if isinstance(value, int | float):
            return Dist("constant", float(value))
        if not isinstance(value, Mapping):
            raise InvalidArgument(f"{path}: expected a number or a distribution mapping, got {value!r}")
        unknown = set(value) - {"kind", "mean", "sigma", "samples"}
        if unknown:
            raise InvalidArgument(f"{path}: unknown keys {sorted(unknown)}")
        kind = value.get("kind", "empirical" if "samples" in value else "constant")
        try:
            return Dist(
                kind,
                float(value.get("mean", 0.0)),
                float(value.get("sigma", 0.0)),
                tuple(float(s) for s in value.get("samples", ())),
            )
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(f"{path}: {exc}") from None
        except InvalidArgument as exc:
            raise InvalidArgument(f"{path}: {exc.message}") from None

    def scaled(self, factor: float) -> Dist:
        """The same shape, every duration times `factor` (> 0)."""
        if not (factor > 0 and math.isfinite(factor)):
            raise InvalidArgument(f"a duration scale must be finite and > 0, got {factor}")
        if self.kind == "empirical":
            return Dist("empirical", samples=tuple(s * factor for s in self.samples))
        return Dist(self.kind, self.mean * factor, self.sigma)

    def to_mapping(self) -> dict[str, Any]:
        if self.kind == "empirical":
            return {"kind": "empirical", "samples": list(self.samples)}
        out: dict[str, Any] = {"kind": self.kind, "mean": self.mean}
        if self.kind == "lognormal":
            out["sigma"] = self.sigma
        return out


ZERO = Dist()
