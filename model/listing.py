"""ListJobs semantics (Google AIP-158 pagination, AIP-160 typed filters).

Order: (create_time, job_id), ascending. New jobs sort after every existing one, so a client
paging while jobs arrive sees each job at most once and never skips an existing one.
A page token is opaque to clients: base64url of JSON holding the last key and a fingerprint of the
filter, so a token replayed with another filter is refused. Never pickle.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import hashlib
import heapq
import json
import math
from array import array
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from model.config import CoreConfig
from model.errors import InvalidArgument
from model.ids import SequenceIds
from model.states import JobState

SortKey = tuple[float, str]
_TOKEN_VERSION = 1
_MAX_TOKEN_CHARS = 512


class Listable(Protocol):
    @property
    def sort_key(self) -> SortKey: ...

    @property
    def state(self) -> JobState: ...

    @property
    def create_time(self) -> float: ...


T = TypeVar("T", bound=Listable)


@dataclass(frozen=True, slots=True)
class ListQuery:
    states: frozenset[JobState] = frozenset()
    job_type: str = ""
    created_after: float | None = None  # inclusive
    created_before: float | None = None  # exclusive
    labels: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        if JobState.STATE_UNSPECIFIED in self.states:
            raise InvalidArgument("filter.states must not contain STATE_UNSPECIFIED")
        if (
            self.created_after is not None
            and self.created_before is not None
            and self.created_after > self.created_before
        ):
            raise InvalidArgument("filter.created_after must not be later than filter.created_before")

    @staticmethod
    def make(
        states: Iterable[JobState] = (),
        job_type: str = "",
        created_after: float | None = None,
        created_before: float | None = None,
        labels: dict[str, str] | None = None,
    ) -> ListQuery:
        return ListQuery(
            frozenset(states), job_type, created_after, created_before, tuple(sorted((labels or {}).items()))
        )

    def fingerprint(self) -> str:
        canonical = json.dumps(
            [
                sorted(int(s) for s in self.states),
                self.job_type,
                self.created_after,
                self.created_before,
                list(self.labels),
            ],
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def matches(self, job: Listable, job_type: str, labels: dict[str, str] | None = None) -> bool:
        if self.states and job.state not in self.states:
            return False
        if self.job_type and job_type != self.job_type:
            return False
        if self.created_after is not None and job.create_time < self.created_after:
            return False
        if self.created_before is not None and job.create_time >= self.created_before:
            return False
        if self.labels:
            have = labels or {}
            return all(have.get(k) == v for k, v in self.labels)
        return True


def effective_page_size(page_size: int, config: CoreConfig) -> int:
    if page_size < 0:
        raise InvalidArgument(f"page_size must not be negative, got {page_size}")
    if page_size == 0:
        return config.default_page_size
    return min(page_size, config.max_page_size)


def encode_page_token(query: ListQuery, last_key: SortKey) -> str:
    body = json.dumps({"v": _TOKEN_VERSION, "f": query.fingerprint(), "t": last_key[0], "id": last_key[1]})
    return base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")


def decode_page_token(query: ListQuery, token: str) -> SortKey | None:
    """None for the first page; InvalidArgument for a token that is malformed or from another filter."""
    if not token:
        return None
    if len(token) > _MAX_TOKEN_CHARS:
        raise InvalidArgument("page_token is too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        body = json.loads(raw)
        version, fingerprint, t, job_id = body["v"], body["f"], body["t"], body["id"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise InvalidArgument("page_token is malformed") from exc
    # bool is an int subclass; a huge int overflows float(); NaN or inf never came from a create time
    if type(version) is not int or version != _TOKEN_VERSION or not isinstance(job_id, str):
        raise InvalidArgument("page_token is malformed")
    if type(t) not in (int, float):
        raise InvalidArgument("page_token is malformed")
    try:
        create_time = float(t)
    except OverflowError as exc:
        raise InvalidArgument("page_token is malformed") from exc
    if not math.isfinite(create_time):
        raise InvalidArgument("page_token is malformed")
    if fingerprint != query.fingerprint():
        raise InvalidArgument("page_token was issued for a different filter")
    return (create_time, job_id)


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool
    next_page_token: str = ""


class OrderedIndex:
    """Keys (create_time, job_id) in ascending order; appends are O(1) because new jobs arrive in key
    order. Held as two parallel columns of raw numbers: the times as doubles, and the ids as codes,
    an own id (`ids`, model.ids.SequenceIds) as its sequence number, any other id as a negative code
    into a small table of strings: 16 bytes a key, with no string kept per job."""

    __slots__ = ("_codes", "_ids", "_next_other", "_others", "_times")

    def __init__(self, ids: SequenceIds | None = None) -> None:
        self._times = array("d")
        self._codes = array("q")
        self._ids = ids
        self._others: dict[int, str] = {}  # negative code -> id (a new code for each key added)
        self._next_other = -1

    def __len__(self) -> int:
        return len(self._codes)

    @property
    def keys(self) -> list[SortKey]:
        """Every key in order, as tuples (a copy: for tests and small tables)."""
        return [(t, self._decode(c)) for t, c in zip(self._times, self._codes, strict=True)]

    def _encode(self, job_id: str) -> int:
        seq = None if self._ids is None else self._ids.sequence(job_id)
        if seq is not None:
            return seq
        code = self._next_other
        self._others[code] = job_id
        self._next_other -= 1
        return code

    def _decode(self, code: int) -> str:
        if code < 0:
            return self._others[code]
        assert self._ids is not None
        return self._ids.job_id(code)

    def _forget(self, code: int) -> None:
        if code < 0:
            del self._others[code]

    def _position(self, key: SortKey, right: bool) -> int:
        """Where `key` sits: bisect_right(keys, key) when `right`, else bisect_left."""
        t, job_id = key
        lo = bisect.bisect_left(self._times, t)
        hi = bisect.bisect_right(self._times, t, lo)
        if right:
            return bisect.bisect_right(self._codes, job_id, lo, hi, key=self._decode)
        return bisect.bisect_left(self._codes, job_id, lo, hi, key=self._decode)

    def add(self, key: SortKey) -> None:
        times = self._times
        if (
            not times
            or key[0] > times[-1]
            or (key[0] == times[-1] and key[1] >= self._decode(self._codes[-1]))
        ):
            times.append(key[0])
            self._codes.append(self._encode(key[1]))
        else:  # a clock that stepped back; rare
            i = self._position(key, right=True)
            times.insert(i, key[0])
            self._codes.insert(i, self._encode(key[1]))

    def discard(self, key: SortKey) -> None:
        i = self._position(key, right=False)
        if i < len(self._codes) and self._decode(self._codes[i]) == key[1] and self._times[i] == key[0]:
            self._forget(self._codes[i])
            del self._times[i]
            del self._codes[i]

    def drop(self, gone: Collection[str]) -> None:
        """Removes the keys whose ids are in `gone` (each present once): one slice when they are the
        oldest (the usual case: retention drops the oldest jobs), else one pass."""
        codes, decode = self._codes, self._decode
        oldest = 0
        while oldest < len(codes) and decode(codes[oldest]) in gone:
            oldest += 1
        if oldest == len(gone):
            for code in codes[:oldest]:
                self._forget(code)
            del self._times[:oldest]
            del codes[:oldest]
            return
        keep = []
        for i, code in enumerate(codes):
            if decode(code) in gone:
                self._forget(code)
            else:
                keep.append(i)
        self._times = array("d", (self._times[i] for i in keep))
        self._codes = array("q", (codes[i] for i in keep))

    def after(self, cursor: SortKey | None) -> Iterable[SortKey]:
        start = 0 if cursor is None else self._position(cursor, right=True)
        times, codes, decode = self._times, self._codes, self._decode
        return ((times[i], decode(codes[i])) for i in range(start, len(codes)))


def merge_pages(
    query: ListQuery,
    parts: Sequence[Page[T]],
    page_size: int,
    max_bytes: int | None = None,
    size_of: Callable[[T], int] | None = None,
) -> Page[T]:
    """Merges pages that several owners returned for the same query and cursor (Design B's
    scatter-gather). Each part holds up to page_size items after the cursor, in order; a part may
    have ended early at its byte budget.

    `page_size` is the effective size the parts were fetched with (effective_page_size), never 0.
    The merged page ends at page_size items, before their sizes (`size_of`) pass `max_bytes` (it
    always holds one), and never past the last item of a part that has more: an item of that owner
    that the part did not carry may sort before anything later."""
    if page_size < 1:
        raise InvalidArgument(f"merge_pages needs the effective page size (>= 1), got {page_size}")
    if max_bytes is not None and size_of is None:
        raise InvalidArgument("merge_pages needs size_of with max_bytes")
    bound: SortKey | None = None  # the smallest last key of a part that has more
    for part in parts:
        if part.has_more and part.items:
            last = part.items[-1].sort_key
            bound = last if bound is None or last < bound else bound
    items: list[T] = []
    used = 0
    has_more = any(p.has_more for p in parts)
    for item in heapq.merge(*(p.items for p in parts), key=lambda j: j.sort_key):
        full = len(items) == page_size or (bound is not None and item.sort_key > bound)
        if not full and max_bytes is not None and size_of is not None:
            used += size_of(item)
            full = bool(items) and used > max_bytes
        if full:
            has_more = True
            break
        items.append(item)
    token = encode_page_token(query, items[-1].sort_key) if has_more and items else ""
    return Page(items, has_more and bool(items), token)
