"""A simulated run's records on their way out: collected as the load generator makes them, kept in
memory while few, spilled to sorted chunk files on disk beyond `chunk` records and merged into one
sorted requests.csv.gz / jobs.csv.gz (model/results' format) at the end, so a long run's memory does
not grow with its records. Either way the order is the real generator's (requests by intended time,
client, start time; jobs by submit time, id) and the bytes written are the same.

`Records` is what a SimResult holds: iterable (record objects, streamed from disk when spilled),
sized, and `frame()` gives the pandas DataFrame.
"""

from __future__ import annotations

import csv
import gzip
import heapq
import itertools
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar, overload

from model.results.runs import JOBS_FILE, REQUESTS_FILE, write_csv_gz
from model.results.schema import (
    JOB_FIELDS,
    OP_NAMES,
    REQUEST_FIELDS,
    JobRecord,
    RequestRecord,
    job_from_row,
    job_rows,
    request_from_row,
    request_rows,
    sort_jobs,
    sort_requests,
)

if TYPE_CHECKING:  # pandas is imported when a frame is asked for (a heavy import, kept off `dtq sim`)
    import pandas as pd

R = TypeVar("R", RequestRecord, JobRecord)
# records a sink holds before it spills them, sorted, to a chunk file: a job record, its submit's
# request record and its id are ~440 bytes, so full buffers of both kinds are ~9 MB (44 at 100,000)
CHUNK = 20_000


@dataclass(frozen=True, slots=True)
class Kind(Generic[R]):
    """How one kind of record is named, ordered, written and read back."""

    name: str
    file: str
    fields: tuple[str, ...]
    rows: Callable[[Iterable[R]], Iterable[list[str]]]
    parse: Callable[[Sequence[str]], R]
    key: Callable[[R], tuple[Any, ...]]
    sort: Callable[[list[R]], None]  # in place, in `key`'s order without a key tuple per record
    floats: tuple[str, ...]
    ints: tuple[str, ...]
    categories: tuple[str, ...]


def _request_key(r: RequestRecord) -> tuple[float, int, float]:
    return (r.intended_time, r.client, r.start_time)


def _job_key(j: JobRecord) -> tuple[float, str]:
    return (j.submit_time, j.job_id)


REQUESTS: Kind[RequestRecord] = Kind(
    "requests",
    REQUESTS_FILE,
    REQUEST_FIELDS,
    request_rows,
    request_from_row,
    _request_key,
    sort_requests,
    floats=("intended_time", "start_time", "end_time"),
    ints=("client",),
    categories=("op", "status"),
)
JOBS: Kind[JobRecord] = Kind(
    "jobs",
    JOBS_FILE,
    JOB_FIELDS,
    job_rows,
    job_from_row,
    _job_key,
    sort_jobs,
    floats=("submit_time", "accept_time", "end_time", "duration"),
    ints=("attempts",),
    categories=("final_state",),
)
OPS = tuple(OP_NAMES.values())


def _read_rows(path: Path, fields: Sequence[str], gz: bool) -> Iterator[list[str]]:
    opener: Any = gzip.open if gz else open  # chunk files are plain text
    with opener(path, "rt", encoding="utf-8", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != list(fields):
            raise ValueError(f"{path}: header {header} is not {list(fields)}")
        yield from reader


class Records(Sequence[R]):
    """One run's records of one kind, in order: a list in memory, or a sorted csv.gz file (model/results'
    format) read row by row on each iteration (indexing one streams the file up to it)."""

    def __init__(
        self, kind: Kind[R], items: list[R] | None = None, path: Path | None = None, count: int = 0
    ) -> None:
        self.kind: Kind[R] = kind
        self._items: list[R] | None = items
        self._path = path
        self._count = len(items) if items is not None else count

    @staticmethod
    def from_file(kind: Kind[R], path: Path) -> Records[R]:
        """A run directory's file (count read once, by streaming it)."""
        count = sum(1 for _ in _read_rows(path, kind.fields, gz=True))
        return Records(kind, path=path, count=count)

    @property
    def path(self) -> Path | None:
        """The csv.gz file behind these records (None while they are in memory)."""
        return self._path

    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[R]:
        if self._items is not None:
            return iter(self._items)
        assert self._path is not None
        return map(self.kind.parse, _read_rows(self._path, self.kind.fields, gz=True))

    def __repr__(self) -> str:
        where = f"in {self._path}" if self._path is not None else "in memory"
        return f"<Records: {self._count} {self.kind.name} {where}>"

    def __eq__(self, other: object) -> bool:
        """Equal to records (or a list of them) with the same items in the same order."""
        if not isinstance(other, Records | list | tuple):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # mutable-looking and compared by content

    @overload
    def __getitem__(self, index: int) -> R: ...

    @overload
    def __getitem__(self, index: slice) -> list[R]: ...

    def __getitem__(self, index: int | slice) -> R | list[R]:
        if self._items is not None:
            return self._items[index]
        if isinstance(index, slice):
            return list(self)[index]
        if index < 0:
            index += self._count
        if not 0 <= index < self._count:
            raise IndexError(index)
        return next(itertools.islice(iter(self), index, None))

    def write(self, path: Path) -> None:
        """To a csv.gz file (a copy of the file behind them when there is one: the same bytes)."""
        if self._path is not None:
            shutil.copyfile(self._path, path)
        else:
            write_csv_gz(path, self.kind.fields, self.kind.rows(self))

    def frame(self) -> pd.DataFrame:
        """The records as a DataFrame: one row each, the file's columns (times in seconds, float64;
        NaN for an end time the run never saw), plus `latency` (requests: end - intended) or
        `completion_time` (jobs: end - submit)."""
        import pandas as pd  # the sim extra's; a heavy import kept off the simulator's start-up

        kind = self.kind
        if self._path is not None:
            df = pd.read_csv(self._path, dtype=str, keep_default_na=False)
        else:
            df = pd.DataFrame(list(kind.rows(self)), columns=list(kind.fields), dtype=str)
        for name in kind.floats:
            df[name] = pd.to_numeric(df[name].replace("", "nan")).astype("float64")
        for name in kind.ints:
            df[name] = df[name].astype("int64")
        for name in kind.categories:
            df[name] = df[name].astype("category")
        if kind is REQUESTS:
            df["latency"] = df["end_time"] - df["intended_time"]
        else:
            df["completion_time"] = df["end_time"] - df["submit_time"]
        return df


class RecordSink(Generic[R]):
    """Collects one kind of record (`append`, as a list would); `finish()` gives them sorted.

    Beyond `chunk` records held it sorts them and writes them to a chunk file under a private
    temporary directory (in `spill_dir`, default the system's), and `finish()` merges the chunks
    into one csv.gz there. Python's sort and heapq.merge are both stable, so ties keep the order the
    records were made in, exactly as one sort of them all would. The directory goes when the
    Records made from it are collected (or at exit)."""

    def __init__(self, kind: Kind[R], chunk: int = CHUNK, spill_dir: Path | str | None = None) -> None:
        if chunk < 1:
            raise ValueError("chunk must be >= 1")
        self.kind: Kind[R] = kind
        self.chunk = chunk
        self.spill_dir = spill_dir
        self._buf: list[R] = []
        self._chunks: list[Path] = []
        self._dir: Path | None = None
        self.count = 0

    def append(self, record: R) -> None:
        self._buf.append(record)
        self.count += 1
        if len(self._buf) >= self.chunk:
            self._spill()

    def __iter__(self) -> Iterator[R]:
        """The records so far, unsorted (for checks while a run goes on; spilled ones re-read)."""
        for path in self._chunks:
            yield from map(self.kind.parse, _read_rows(path, self.kind.fields, gz=False))
        yield from self._buf

    @property
    def spilled(self) -> bool:
        return bool(self._chunks)

    def _spill(self) -> None:
        if self._dir is None:
            if self.spill_dir is not None:
                Path(self.spill_dir).mkdir(parents=True, exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix=f"dtq-sim-{self.kind.name}-", dir=self.spill_dir))
        self.kind.sort(self._buf)
        path = self._dir / f"chunk{len(self._chunks):05d}.csv"
        with open(path, "w", encoding="utf-8", newline="") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(self.kind.fields)
            writer.writerows(self.kind.rows(self._buf))
        self._chunks.append(path)
        self._buf = []

    def finish(self) -> Records[R]:
        kind = self.kind
        if not self._chunks:
            kind.sort(self._buf)
            items, self._buf = self._buf, []
            return Records(kind, items=items)
        if self._buf:
            self._spill()
        assert self._dir is not None
        streams = [map(kind.parse, _read_rows(p, kind.fields, gz=False)) for p in self._chunks]
        final = self._dir / kind.file
        write_csv_gz(final, kind.fields, kind.rows(heapq.merge(*streams, key=kind.key)))
        for path in self._chunks:
            path.unlink()
        self._chunks = []
        records = Records(kind, path=final, count=self.count)
        weakref.finalize(records, shutil.rmtree, self._dir, True)
        return records
