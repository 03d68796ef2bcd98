"""The simulator's per-job maps keyed by job id, held as columns indexed by the id's sequence number.

A run keeps a few facts for every job it made (its draw's duration, when it ended, that it started,
the load generator's accepted ids). Keyed by id strings, each costs a dict or set slot and a boxed
value, and keeps the id string (about 65 bytes) alive after the core has let it go. An id the core's
factory made is `<prefix><10 hex digits>` (model.ids): here it is a prefix number and a sequence,
and a fact is a slot of an array per prefix indexed by the sequence (8 bytes, or a byte). Any other
id is kept as it is, in a dict. Reads give the same answers either way.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterator
from typing import overload

from model.ids import SequenceIds

PREFIX_LIMIT = 4096  # distinct prefixes encoded; ids of any more are kept as strings
_SEQ_BITS = 40


class IdCodec:
    """job id <-> int code ((prefix number << 40) | sequence), or None for an id of no such form."""

    __slots__ = ("_ids", "_number")

    def __init__(self) -> None:
        self._ids: list[SequenceIds] = []
        self._number: dict[str, int] = {}

    def split(self, job_id: str) -> tuple[int, int] | None:
        """(prefix number, sequence), or None."""
        prefix = job_id[:-10]
        number = self._number.get(prefix)
        if number is None:
            if len(self._ids) >= PREFIX_LIMIT or not prefix:
                return None
            ids = SequenceIds(prefix)
            if ids.sequence(job_id) is None:
                return None
            number = self._number[prefix] = len(self._ids)
            self._ids.append(ids)
        seq = self._ids[number].sequence(job_id)
        return None if seq is None or seq >= 1 << _SEQ_BITS else (number, seq)

    def code(self, job_id: str) -> int | None:
        found = self.split(job_id)
        return None if found is None else (found[0] << _SEQ_BITS) | found[1]

    def job_id(self, number: int, seq: int) -> str:
        return self._ids[number].job_id(seq)

    def decode(self, code: int) -> str:
        return self.job_id(code >> _SEQ_BITS, code & ((1 << _SEQ_BITS) - 1))


class JobFloats:
    """job id -> float (not NaN: NaN marks an empty slot), as an array of doubles per prefix."""

    __slots__ = ("_codec", "_columns", "_count", "_others")

    def __init__(self) -> None:
        self._codec = IdCodec()
        self._columns: list[array[float]] = []
        self._others: dict[str, float] = {}
        self._count = 0

    def _slot(self, job_id: str) -> tuple[array[float], int] | None:
        found = self._codec.split(job_id)
        if found is None:
            return None
        number, seq = found
        while len(self._columns) <= number:
            self._columns.append(array("d"))
        return self._columns[number], seq

    def __setitem__(self, job_id: str, value: float) -> None:
        assert not math.isnan(value), "NaN marks an empty slot"
        slot = self._slot(job_id)
        if slot is None:
            self._count += job_id not in self._others
            self._others[job_id] = value
            return
        column, seq = slot
        if seq >= len(column):
            column.extend([math.nan] * (seq + 1 - len(column) + len(column) // 4))
        self._count += math.isnan(column[seq])
        column[seq] = value

    @overload
    def get(self, job_id: str) -> float | None: ...
    @overload
    def get(self, job_id: str, default: float) -> float: ...
    def get(self, job_id: str, default: float | None = None) -> float | None:
        slot = self._slot(job_id)
        if slot is None:
            return self._others.get(job_id, default)
        column, seq = slot
        value = column[seq] if seq < len(column) else math.nan
        return default if math.isnan(value) else value

    def pop(self, job_id: str, default: float | None = None) -> float | None:
        value = self.get(job_id)
        if value is None:
            return default
        slot = self._slot(job_id)
        if slot is None:
            del self._others[job_id]
        else:
            slot[0][slot[1]] = math.nan
        self._count -= 1
        return value

    def __getitem__(self, job_id: str) -> float:
        value = self.get(job_id)
        if value is None:
            raise KeyError(job_id)
        return value

    def __contains__(self, job_id: object) -> bool:
        return isinstance(job_id, str) and self.get(job_id) is not None

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[str]:
        """The ids, by prefix (first seen first) and sequence, then the others as added."""
        for number, column in enumerate(self._columns):
            for seq, value in enumerate(column):
                if not math.isnan(value):
                    yield self._codec.job_id(number, seq)
        yield from self._others


class JobFlags:
    """Small flags (1-255) per job id, a byte per sequence; 0 is "none"."""

    __slots__ = ("_codec", "_columns", "_others")

    def __init__(self) -> None:
        self._codec = IdCodec()
        self._columns: list[bytearray] = []
        self._others: dict[str, int] = {}

    def get(self, job_id: str) -> int:
        found = self._codec.split(job_id)
        if found is None:
            return self._others.get(job_id, 0)
        number, seq = found
        if number < len(self._columns) and seq < len(column := self._columns[number]):
            return column[seq]
        return 0

    def set(self, job_id: str, flags: int) -> None:
        found = self._codec.split(job_id)
        if found is None:
            self._others[job_id] = flags
            return
        number, seq = found
        while len(self._columns) <= number:
            self._columns.append(bytearray())
        column = self._columns[number]
        if seq >= len(column):
            column.extend(bytes(seq + 1 - len(column) + len(column) // 4))
        column[seq] = flags

    def having(self, flags: int) -> Iterator[str]:
        """The ids whose flags are exactly `flags` (1-255), found by a byte search, not a loop."""
        mark = bytes([flags])
        for number, column in enumerate(self._columns):
            seq = column.find(mark)
            while seq >= 0:
                yield self._codec.job_id(number, seq)
                seq = column.find(mark, seq + 1)
        yield from (job_id for job_id, value in self._others.items() if value == flags)

    def items(self) -> Iterator[tuple[str, int]]:
        """(id, flags) of every id with flags, by prefix and sequence, then the others."""
        for number, column in enumerate(self._columns):
            for seq, flags in enumerate(column):
                if flags:
                    yield self._codec.job_id(number, seq), flags
        yield from ((job_id, flags) for job_id, flags in self._others.items() if flags)


class JobIds:
    """An append-only list of job ids, each held as its code (8 bytes)."""

    __slots__ = ("_codec", "_codes", "_others")

    def __init__(self) -> None:
        self._codec = IdCodec()
        self._codes = array("q")
        self._others: list[str] = []  # ids of no sequence form: code -(index + 1)

    def append(self, job_id: str) -> None:
        code = self._codec.code(job_id)
        if code is None:
            self._others.append(job_id)
            code = -len(self._others)
        self._codes.append(code)

    def __len__(self) -> int:
        return len(self._codes)

    def __getitem__(self, i: int) -> str:
        code = self._codes[i]
        return self._others[-code - 1] if code < 0 else self._codec.decode(code)

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self._codes)))
