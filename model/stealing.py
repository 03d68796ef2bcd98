"""Design B's work stealing: an idle node takes pending work from the busiest peer it knows of.

Thief side: `plan_steal` decides whether and from whom to steal. Victim side: `grant_steal` decides
how much to give, keeping enough for its own free slots. The owner keeps ownership of stolen jobs:
it leases them to the thief's worker, and reports go back to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


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
