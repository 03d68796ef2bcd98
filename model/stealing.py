"""Design B's work stealing: an idle node takes pending work from the busiest peer it knows of.

Thief side: `plan_steal` decides whether and from whom to steal, `StealPacer` when, and `fetch_loop`
is the node's own worker's fetch long-poll around them (local work first, steal once idle, wait for
local work in between). Victim side: `grant_steal` decides how much to give, keeping enough for its
own free slots. The owner keeps ownership of stolen jobs: it leases them to the thief's worker, and
reports go back to it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar

from model.job import Assignment
from model.jobs import RandomSource

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class StealPlan:
    victim: str
    max_jobs: int


def plan_steal(
    self_node: str, free_slots: int, local_ready: int, peer_ready: Mapping[str, int]
) -> StealPlan | None:
    """Steal only when idle (no local ready work, free slots); take about half of the victim's
    ready queue, never more than the free slots. Ties go to the first node name (deterministic)."""
    if free_slots <= 0 or local_ready > 0:
        return None
    best: tuple[int, str] | None = None
    for node in sorted(peer_ready):
        depth = peer_ready[node]
        if node == self_node or depth <= 0:
            continue
        if best is None or depth > best[0]:
            best = (depth, node)
    if best is None:
        return None
    depth, victim = best
    return StealPlan(victim, min(free_slots, max(1, depth // 2)))


def grant_steal(requested: int, local_ready: int, local_free_slots: int) -> int:
    """How many ready jobs the victim hands over: what its own idle slots would not take at once."""
    return max(0, min(requested, local_ready - local_free_slots))


MAX_IDLE_POLL = 0.8  # seconds between depth rounds in a cluster with nothing to steal


class StealPacer:
    """When an idle node asks its peers for their queue depths and steals. One per node, shared by
    the real node (realsys/mono/backend.py) and the simulator, so the two cannot drift.

    - A node steals only after it has been idle for `steal_interval`: in a busy cluster local work
      usually arrives within milliseconds, and stealing the moment a slot frees costs a depth round
      per job plus steals of jobs the owner's own slots would have taken.
    - Depths are asked at most once per poll interval. Each round that steals nothing doubles the
      interval, up to `max_idle_poll`, so an idle cluster does not spend its cores polling; only a
      steal that got work resets it.
    - A round asks every peer (`fanout` 0), or `fanout` peers drawn afresh each round (the "power of
      d choices" of randomized load balancing): with N nodes polling all peers is N² RPCs a round,
      while d = 2..4 random peers already find a loaded victim with high probability.
    """

    def __init__(
        self,
        steal_interval: float,
        max_idle_poll: float = MAX_IDLE_POLL,
        fanout: int = 0,
        rng: RandomSource | None = None,
    ) -> None:
        if fanout < 0:
            raise ValueError("fanout must be >= 0 (0: every peer)")
        if fanout and rng is None:
            raise ValueError("a fanout needs a random generator to draw peers")
        self.steal_interval = steal_interval
        self.max_idle_poll = max_idle_poll
        self.fanout = fanout
        self._rng = rng
        self.poll_interval = steal_interval
        self.depths: dict[str, int] = {}
        self._depths_at = -float("inf")
        self._backed_off_at = -float("inf")  # the depth round the interval was last doubled for

    def idle_wait(self, idle_since: float, now: float) -> float:
        """Seconds until a fetch idle since `idle_since` may steal (0: steal now).

        Computed from the steal time, not as interval - (now - idle_since): a driver that sleeps
        exactly this long then lands on the steal time, where the subtraction could leave a residue
        too small to move a large clock, and a simulated fetch would spin at one instant."""
        steal_at = idle_since + self.steal_interval
        if now >= steal_at:
            return 0.0
        wait = steal_at - now
        # now + (steal_at - now) can round below steal_at; nudge up until the sleep lands on it
        while now + wait < steal_at:
            wait = math.nextafter(wait, math.inf)
        return wait

    def needs_depths(self, now: float) -> bool:
        return now - self._depths_at >= self.poll_interval

    def peers_to_ask(self, peers: Sequence[T]) -> list[T]:
        """The peers whose depths this round asks for, in their given order: all of them, or
        `fanout` drawn without replacement."""
        if not self.fanout or self.fanout >= len(peers):
            return list(peers)
        assert self._rng is not None
        order = list(range(len(peers)))
        for i in range(self.fanout):  # the first `fanout` steps of a Fisher-Yates shuffle
            j = i + min(int(self._rng.random() * (len(order) - i)), len(order) - i - 1)
            order[i], order[j] = order[j], order[i]
        return [peers[i] for i in sorted(order[: self.fanout])]

    def record_depths(self, now: float, depths: Mapping[str, int]) -> None:
        self.depths = dict(depths)
        self._depths_at = now

    def plan(self, self_node: str, free_slots: int, local_ready: int) -> StealPlan | None:
        plan = plan_steal(self_node, free_slots, local_ready, self.depths)
        if plan is None:
            self._back_off()
        return plan

    def record_steal(self, plan: StealPlan, got: int) -> None:
        # the victim may grant fewer than its depth said (it keeps work for its own idle slots)
        depth = self.depths.get(plan.victim, 0)
        self.depths[plan.victim] = 0 if got < plan.max_jobs else max(0, depth - got)
        if got:
            self.poll_interval = self.steal_interval
        else:
            self._back_off()

    def record_failure(self, plan: StealPlan) -> None:
        """The steal call failed: do not retry this victim before the next depth round."""
        self.depths[plan.victim] = 0
        self._back_off()

    def _back_off(self) -> None:
        """Nothing stolen: the next depth round comes later (once per round, not per fetch)."""
        if self._backed_off_at != self._depths_at:
            self._backed_off_at = self._depths_at
            self.poll_interval = min(self.max_idle_poll, max(self.poll_interval, self.steal_interval) * 2)


# ------------------------------------------------------------------------------ the fetch loop
@dataclass(frozen=True, slots=True)
class FetchLocal:
    """Lease what is ready on this node now (the node driver's fetch_now). Reply: (now, the
    assignments, whether the node drains)."""


@dataclass(frozen=True, slots=True)
class AskDepths:
    """Ask these peers for their ready counts, concurrently. Reply: (now, {peer: depth}); a peer that
    did not answer counts 0."""

    peers: list[str]


@dataclass(frozen=True, slots=True)
class StealFrom:
    """Peer.StealWork from the plan's victim. Reply: (now, the assignments), or (now, None) when the
    call failed."""

    plan: StealPlan


@dataclass(frozen=True, slots=True)
class WaitForWork:
    """Wait until local work may be ready (the node driver's fetcher wake-up) or `timeout` seconds
    pass. Reply: None (a FetchLocal follows)."""

    timeout: float


FetchOp: TypeAlias = FetchLocal | AskDepths | StealFrom | WaitForWork
FETCH_LOCAL = FetchLocal()


def fetch_done(assignments: Sequence[Assignment], draining: bool, free_slots: int) -> bool:
    """Whether a fetch answers with what its FetchLocal got: work, or a node that drains, or a worker
    without a free slot."""
    return bool(assignments) or draining or free_slots <= 0


def fetch_loop(
    pacer: StealPacer,
    node: str,
    peers: Sequence[str],
    free_slots: int,
    wait: float,
    start: float,
    first: tuple[float, list[Assignment], bool],
    local_ready: Callable[[], int],
) -> Generator[FetchOp, Any, list[Assignment]]:
    """One fetch long-poll of a Design B node's own worker, written once for the real node
    (realsys/mono/backend.py) and the simulated one (sim/mono.py), sans-I/O: it yields the I/O to
    perform (FetchLocal, AskDepths, StealFrom, WaitForWork), the adapter sends back the reply with
    its clock's `now`, and the generator returns the assignments. A fetch begins with FetchLocal,
    which the adapter performs before it makes the loop (`start`: its clock then, `first`: the
    reply), and needs no loop when `fetch_done` says so (the common case: local work).
    `local_ready()` is the node's ready count (read when a steal is planned).

    Local work first; once idle for steal_interval, steal (the pacer says when and from whom); in
    between, and after a steal round that got nothing, wait for local work for at most the pacer's
    interval, so an idle node rechecks its peers that often. Never past `wait`; at once while the node
    drains or when the worker has no free slot."""
    deadline = start + wait
    local = first
    while True:
        now, assignments, draining = local
        if fetch_done(assignments, draining, free_slots):
            return assignments
        pause = pacer.idle_wait(start, now)
        if pause == 0:
            if peers:
                if pacer.needs_depths(now):
                    asked: tuple[float, Mapping[str, int]] = yield AskDepths(pacer.peers_to_ask(peers))
                    now, depths = asked
                    pacer.record_depths(now, depths)
                plan = pacer.plan(node, free_slots, local_ready())
                if plan is not None:
                    stole: tuple[float, list[Assignment] | None] = yield StealFrom(plan)
                    now, got = stole
                    if got is None:
                        pacer.record_failure(plan)
                    else:
                        pacer.record_steal(plan, len(got))
                        if got:
                            return got
            pause = pacer.poll_interval
        left = deadline - now
        if left <= 0:
            return []
        yield WaitForWork(min(left, pause))
        local = yield FETCH_LOCAL
