"""Scheduling policies: which ready job an owner dispatches next. Plug-ins, registered by name in one
line (`@register("name")`), selected by CoreConfig.policy in the real nodes and the simulator alike.

A policy is a small pure object: no clock (`now` comes in), no randomness. The ready queue
(model/queue.py) asks it to `choose` a key among the keys that have ready work, given each key's best
entry (priority first, FIFO within a priority: `Head`); it then takes that key's best entry and tells
the policy (`dispatched`), and tells it again if the entry comes back undispatched (`returned`: a
reply that was full) or when a dispatched job's attempt ends (`finished`, for policies that count
running jobs). A job's key is the value of its label CoreConfig.policy_key ("tenant" by default);
jobs without that label share the key "" (an empty value is refused at submit: `check_key`).

- fifo: priority, then first in first out, across all jobs (the queue's own order; the default).
- fair: weighted fair share between keys (start-time fair queueing over dispatches): a key that stays
  backlogged with weight w, among K keys with total weight W, gets at least w*(n - K)/W of any n
  consecutive dispatches. Within a key: priority, then FIFO.
- concurrency: at most policy_limit running jobs per key; among the keys under their limit, the
  best entry by priority then FIFO.
- ratelimit: a token bucket per key (policy_rate jobs/s, policy_burst deep): at most
  burst + rate*T dispatches per key in any window of T seconds. A key without a token waits; the
  queue's next deadline includes the time its next token arrives, so the owner's timer wakes for it.

Limits hold per owner: each Design B node schedules its own jobs (and the ones it lends to thieves);
Design A's one queue service schedules them all.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import ClassVar

from model.errors import InvalidArgument

Head = tuple[int, int]  # (-priority, seq) of a key's best ready entry: smaller goes first

_EMPTY: Mapping[str, float] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class PolicySettings:
    """A policy's settings as CoreConfig carries them (model/config.py validates through `build`)."""

    name: str = "fifo"
    key: str = "tenant"  # the label whose value keys a job
    weights: Mapping[str, float] = field(default_factory=lambda: _EMPTY)  # fair: key -> weight (else 1)
    limit: int = 0  # concurrency: running jobs per key
    rate: float = 0.0  # ratelimit: tokens per second per key
    burst: float = 1.0  # ratelimit: bucket depth


class Policy:
    """The base: FIFO within priority over every ready entry; a subclass's constructor takes the
    PolicySettings. `keyed` False means the queue keeps its one heap and never calls the methods
    below (today's behaviour, byte for byte)."""

    name: ClassVar[str] = ""
    keyed: ClassVar[bool] = True
    counts_running: ClassVar[bool] = False  # needs `finished` when a dispatched attempt ends

    def __init__(self, settings: PolicySettings) -> None:
        pass

    def choose(self, now: float, heads: Mapping[str, Head]) -> str | None:
        """The key whose best entry goes next, or None: none may go now."""
        return min(heads, key=heads.__getitem__) if heads else None

    def activated(self, key: str) -> None:
        """The key had no ready entry and now has one."""

    def dispatched(self, now: float, key: str) -> None:
        """The queue handed out the key's best entry."""

    def returned(self, key: str) -> None:
        """An entry `dispatched` just handed out came back undispatched."""

    def finished(self, key: str) -> None:
        """A dispatched job's attempt ended (only for `counts_running` policies)."""

    def next_eligible(self, keys: Mapping[str, int]) -> float | None:
        """When a key of `keys` (those with ready entries) that may not go now may go, or None."""
        return None

    def wake(self, now: float, keys: Mapping[str, int]) -> int:
        """At the timer: how many of `keys` (those with ready entries) were held back and may go now."""
        return 0


POLICIES: dict[str, type[Policy]] = {}


def register(name: str) -> Callable[[type[Policy]], type[Policy]]:
    """Registers a policy class under `name`; its constructor takes the PolicySettings."""

    def add(cls: type[Policy]) -> type[Policy]:
        cls.name = name
        POLICIES[name] = cls
        return cls

    return add


def build(settings: PolicySettings) -> Policy:
    """A fresh policy object (per owner), or InvalidArgument naming the setting that is wrong."""
    make = POLICIES.get(settings.name)
    if make is None:
        raise InvalidArgument(f"policy must be one of {', '.join(sorted(POLICIES))}, got {settings.name!r}")
    if not settings.key:
        raise InvalidArgument("policy_key (the label that keys a job) must not be empty")
    return make(settings)


def queue_service_policy(settings: PolicySettings) -> Policy:
    """The policy for Design A's queue service, which hands entries out but never hears when their
    jobs end: a policy that counts running jobs is refused (one line, naming the setting)."""
    policy = build(settings)
    if policy.counts_running:
        raise InvalidArgument(
            f"policy {settings.name} counts running jobs, which Design A's queue service cannot see: "
            "use it with Design B (mono), or choose fifo, fair or ratelimit"
        )
    return policy


def parse_weights(text: str) -> dict[str, float]:
    """ "x=1,y=4" -> {"x": 1.0, "y": 4.0}; InvalidArgument for anything else. "" -> {}."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        try:
            weight = float(value)
        except ValueError:
            weight = math.nan
        if not sep or not key.strip() or not (math.isfinite(weight) and weight > 0):
            raise InvalidArgument(
                f"policy_weights is KEY=WEIGHT,... with weights > 0 (e.g. x=1,y=4), got {part!r}"
            )
        if key.strip() in weights:
            raise InvalidArgument(f"policy_weights names {key.strip()!r} twice")
        weights[key.strip()] = weight
    return weights


def job_key(labels: Mapping[str, str], label: str) -> str:
    """The job's policy key: its `label` value ("" without it)."""
    return labels.get(label, "")


def check_key(policy: str, label: str, labels: Mapping[str, str]) -> None:
    """InvalidArgument for a job whose key label is present but empty under a keyed policy (it would
    silently share the key of the unlabelled jobs)."""
    if labels.get(label) == "" and POLICIES[policy].keyed:
        raise InvalidArgument(f"label {label!r} is the scheduling policy's key: give it a non-empty value")


# ---------------------------------------------------------------------------------- the policies
@register("fifo")
class Fifo(Policy):
    keyed = False


@register("fair")
class FairShare(Policy):
    """Start-time fair queueing over dispatches: each key has a virtual start tag; the next dispatch
    goes to the backlogged key with the smallest tag (ties: the better head), whose tag then grows by
    1/weight. A key that becomes backlogged starts at the current virtual time, so idling earns no
    credit to spend later."""

    def __init__(self, settings: PolicySettings) -> None:
        self.weights = dict(settings.weights)
        self._tag: dict[str, float] = {}
        self._vtime = 0.0

    def weight(self, key: str) -> float:
        return self.weights.get(key, 1.0)

    def choose(self, now: float, heads: Mapping[str, Head]) -> str | None:
        tag = self._tag
        best: str | None = None
        for key, head in heads.items():
            if best is None or (tag.get(key, 0.0), head) < (tag.get(best, 0.0), heads[best]):
                best = key
        return best

    def activated(self, key: str) -> None:
        self._tag[key] = max(self._tag.get(key, 0.0), self._vtime)

    def dispatched(self, now: float, key: str) -> None:
        start = self._tag.get(key, 0.0)
        self._vtime = max(self._vtime, start)
        self._tag[key] = start + 1.0 / self.weight(key)

    def returned(self, key: str) -> None:
        self._tag[key] = self._tag.get(key, 0.0) - 1.0 / self.weight(key)


@register("concurrency")
class ConcurrencyLimit(Policy):
    """At most `limit` running jobs per key."""

    counts_running = True

    def __init__(self, settings: PolicySettings) -> None:
        if settings.limit < 1:
            raise InvalidArgument(f"policy concurrency needs policy_limit >= 1, got {settings.limit}")
        self.limit = settings.limit
        self.running: dict[str, int] = {}

    def choose(self, now: float, heads: Mapping[str, Head]) -> str | None:
        running, limit = self.running, self.limit
        best: str | None = None
        for key, head in heads.items():
            if running.get(key, 0) < limit and (best is None or head < heads[best]):
                best = key
        return best

    def dispatched(self, now: float, key: str) -> None:
        self.running[key] = self.running.get(key, 0) + 1

    def returned(self, key: str) -> None:
        self.finished(key)

    def finished(self, key: str) -> None:
        left = self.running.get(key, 0) - 1
        if left > 0:
            self.running[key] = left
        else:
            self.running.pop(key, None)


@register("ratelimit")
class RateLimit(Policy):
    """A token bucket per key: `rate` tokens a second up to `burst`; a dispatch takes one. A key that
    a dispatch leaves without a whole token is held until its next token: only a dispatch holds a key,
    so the calls that dispatch (and re-arm the owner's timer) are the only ones that move the
    deadline earlier."""

    def __init__(self, settings: PolicySettings) -> None:
        if not (math.isfinite(settings.rate) and settings.rate > 0):
            raise InvalidArgument(f"policy ratelimit needs policy_rate > 0 (jobs/s), got {settings.rate}")
        if not (math.isfinite(settings.burst) and settings.burst >= 1):
            raise InvalidArgument(f"policy ratelimit needs policy_burst >= 1, got {settings.burst}")
        self.rate = settings.rate
        self.burst = settings.burst
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._held: dict[str, float] = {}  # keys without a whole token -> when they get one

    def tokens(self, now: float, key: str) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            return self.burst
        tokens, at = bucket
        return min(self.burst, tokens + (now - at) * self.rate) if now > at else tokens

    def choose(self, now: float, heads: Mapping[str, Head]) -> str | None:
        best: str | None = None
        held = self._held
        for key, head in heads.items():
            if key in held and held[key] > now + EPSILON:
                continue
            if best is None or head < heads[best]:
                best = key
        return best

    def dispatched(self, now: float, key: str) -> None:
        tokens = max(0.0, self.tokens(now, key) - 1.0)
        self._buckets[key] = (tokens, now)
        if tokens < 1.0 - EPSILON * self.rate:
            self._held[key] = now + (1.0 - tokens) / self.rate
        else:
            self._held.pop(key, None)

    def returned(self, key: str) -> None:
        tokens, at = self._buckets[key]
        tokens = min(self.burst, tokens + 1.0)
        self._buckets[key] = (tokens, at)
        if tokens >= 1.0 - EPSILON * self.rate:
            self._held.pop(key, None)
        else:
            self._held[key] = at + (1.0 - tokens) / self.rate

    def next_eligible(self, keys: Mapping[str, int]) -> float | None:
        best: float | None = None
        for key, t in self._held.items():
            if key in keys and (best is None or t < best):
                best = t
        return best

    def wake(self, now: float, keys: Mapping[str, int]) -> int:
        woken = 0
        for key, t in list(self._held.items()):
            if t <= now + EPSILON:
                del self._held[key]
                woken += key in keys
        return woken


EPSILON = 1e-9  # seconds: a token due this close to `now` counts as there (float rounding)
