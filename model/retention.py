"""Retention's rule, once: when the oldest finished thing is due to be dropped, and down to which
count and bytes a drop goes. model/jobs.Retention (keys of any kind) and model/terminal.TerminalStore
(finished jobs in columns) keep their entries their own way and both ask this."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetentionRule:
    """Drop what ended more than `ttl` seconds ago (0 = no age limit), and the oldest first once more
    than `limit` are kept or their sizes sum to more than `max_bytes` (None: no byte bound). Deletions
    come in batches: the deadline is `granularity` seconds after the oldest is due, and over a bound a
    drop goes 1% below it."""

    ttl: float
    limit: int
    granularity: float = 0.0
    max_bytes: int | None = None

    def over(self, count: int, size: int) -> bool:
        return count > self.limit or (self.max_bytes is not None and size > self.max_bytes)

    def deadline(self, oldest_end: float, count: int, size: int) -> float | None:
        """When to call expire, given the oldest kept entry's end time (None: no age limit, in bounds)."""
        if self.over(count, size):
            return oldest_end  # over a bound: due at once
        return oldest_end + self.ttl + self.granularity if self.ttl > 0 else None

    def targets(self, count: int, size: int) -> tuple[int, int | None]:
        """(count, bytes) an expire keeps at most: the bounds, or 1% below a bound it is over."""
        keep = self.limit - self.limit // 100 if count > self.limit else self.limit
        keep_bytes = self.max_bytes
        if keep_bytes is not None and size > keep_bytes:
            keep_bytes -= keep_bytes // 100
        return keep, keep_bytes

    def due(self, end: float, count: int, size: int, targets: tuple[int, int | None], now: float) -> bool:
        """Whether the oldest entry (ended at `end`) goes now, with `count`/`size` kept before it goes."""
        keep, keep_bytes = targets
        within = count <= keep and (keep_bytes is None or size <= keep_bytes)
        return not within or (self.ttl > 0 and end + self.ttl <= now)
