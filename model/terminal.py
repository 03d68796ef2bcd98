"""TerminalStore: a JobTable's finished jobs, kept in columns, and their retention.

A node keeps up to max_retained_jobs (a million) finished jobs for result_ttl, because the API can
still read them. As `Job` objects (a slotted object, five boxed floats, an id string, a dict slot,
a retention entry) they cost about 440 bytes each; here each is one row of parallel columns of raw
numbers (seven times as doubles, the attempt, output size and sequence number as ints, the state as a
byte) and two references (an interned tuple of its spec, effective spec, worker, request id and
error, shared by every job with the same ones, and its inline output), about 100 bytes. An id the
table's factory made is its sequence number (model.ids.SequenceIds); any other id (a restored job
of an earlier incarnation) is kept as a string. `get` builds the `Job` again, equal field by field.

Rows are appended as jobs end, so they sit in end-time order (the usual case), and retention drops
them from the front: the order is (end time, insertion number), as a heap's was; a row that ended
before the newest (a clock that stepped back, a restore) goes to a small heap. Times `None` (a start
or end that never happened) are stored as NaN: a real time is never NaN.
"""

from __future__ import annotations

import heapq
import math
import struct
from array import array
from collections.abc import Iterator
from typing import TypeAlias

from model.ids import SequenceIds
from model.job import EffectiveSpec, Job, JobError, JobSpec
from model.retention import RetentionRule
from model.states import JobState

# distinct (spec, effective, worker, request id, error) shapes interned; past this many the table of
# them starts over (sharing only saves memory: equal tuples answer the same)
SHAPE_LIMIT = 4096
RECLAIM_ROWS = 4096  # dropped rows at the front are freed in slices of at least this many
_GONE = -1  # a row's sequence once it was dropped
_OTHER = -2  # a row whose id is not a sequence number (see _other_ids)
_DOUBLE_BITS = struct.Struct("<d"), struct.Struct("<q")
_MAGNITUDE = (1 << 63) - 1
_ROW = (1 << 64) - 1

Shape = tuple[JobSpec, EffectiveSpec, str, str, JobError | None]
Column: TypeAlias = "array[int] | array[float] | bytearray | list[Shape] | list[bytes | None]"


def _opt(value: float | None) -> float:
    return math.nan if value is None else value


def _unopt(value: float) -> float | None:
    return None if math.isnan(value) else value


def _late_key(ended: float, row: int) -> int:
    """(retention time, absolute row) as one non-negative int in the same order: the double's bits
    made monotonic, above the row's 64. A late row costs its heap ~53 bytes (an int and its slot),
    where a tuple of its float end time and an int was ~91 (tests/model/test_terminal.py)."""
    as_double, as_int = _DOUBLE_BITS
    bits: int = as_int.unpack(as_double.pack(ended + 0.0))[0]  # + 0.0: -0.0 sorts as 0.0
    order = bits if bits >= 0 else -(bits & _MAGNITUDE) - 1
    return ((order + (1 << 63)) << 64) | row


class TerminalStore:
    """Finished jobs, by id, kept by model/retention.RetentionRule: dropped `ttl` seconds after they
    ended (0 = no age limit), and the oldest first once more than `limit` are kept or their output
    sizes sum to more than `max_bytes` (None: no byte bound). `expire(now)` returns the dropped jobs
    (id, state, request id); deletions come in batches (a deadline `granularity` seconds after the
    oldest is due; over a bound, 1% below it), so a driver pays its per-call costs per batch."""

    def __init__(
        self,
        ids: SequenceIds,
        ttl: float,
        limit: int,
        granularity: float = 0.0,
        max_bytes: int | None = None,
    ) -> None:
        self._ids = ids
        self.rule = RetentionRule(ttl, limit, granularity, max_bytes)
        self.bytes = 0  # the sum of the kept jobs' output sizes
        self._count = 0
        # sequence number -> absolute row + 1 (0: not here), for sequences from _seq_base on
        self._row_of = array("q")
        self._seq_base = 0
        self._other_ids: dict[int, str] = {}  # absolute row -> id, for ids that are not sequences
        self._other_rows: dict[str, int] = {}
        # the rows, from absolute row _row_base on
        self._row_base = 0
        self._head = 0  # the first row not yet dropped (absolute)
        self._seq = array("q")
        self._state = bytearray()
        self._attempt = array("q")
        self._size = array("q")
        self._create = array("d")
        self._update = array("d")
        self._start = array("d")
        self._end = array("d")
        self._lease = array("d")
        self._run = array("d")
        self._not_before = array("d")
        self._shape: list[Shape] = []
        self._output: list[bytes | None] = []
        self._shapes: dict[tuple[int, int, str, str, JobError | None], Shape] = {}
        self._late: list[int] = []  # _late_key(retention time, absolute row) of rows that ended out of order
        self._newest = -math.inf  # the latest retention time appended in order

    def __len__(self) -> int:
        return self._count

    def __contains__(self, job_id: object) -> bool:
        return isinstance(job_id, str) and self._row(job_id) is not None

    # ------------------------------------------------------------------ rows
    def _row(self, job_id: str) -> int | None:
        """The absolute row of a kept job."""
        seq = self._ids.sequence(job_id)
        if seq is not None:
            i = seq - self._seq_base
            if 0 <= i < len(self._row_of):
                found = self._row_of[i]
                if found:
                    return found - 1
        return self._other_rows.get(job_id)

    def _id_of(self, row: int) -> str:
        seq = self._seq[row - self._row_base]
        return self._other_ids[row] if seq == _OTHER else self._ids.job_id(seq)

    def _retention_time(self, row: int) -> float:
        i = row - self._row_base
        ended = self._end[i]
        return self._update[i] if math.isnan(ended) else ended

    def add(self, job: Job) -> None:
        """Keeps a finished job (its spec already without a payload). Its id must not be kept yet."""
        assert job.done, "the store keeps finished jobs only"
        row = self._row_base + len(self._seq)
        seq = self._ids.sequence(job.job_id)
        if seq is not None and seq >= self._seq_base:
            i = seq - self._seq_base
            if i >= len(self._row_of):
                self._row_of.frombytes(bytes(8 * (i + 1 - len(self._row_of))))
            assert not self._row_of[i], f"job {job.job_id} is kept already"
            self._row_of[i] = row + 1
            self._seq.append(seq)
        else:  # another incarnation's id, or one so old its slot was freed
            assert job.job_id not in self._other_rows, f"job {job.job_id} is kept already"
            self._other_rows[job.job_id] = row
            self._other_ids[row] = job.job_id
            self._seq.append(_OTHER)
        self._state.append(job.state)
        self._attempt.append(job.attempt)
        self._size.append(job.output_size)
        self._create.append(job.create_time)
        self._update.append(job.update_time)
        self._start.append(_opt(job.start_time))
        self._end.append(_opt(job.end_time))
        self._lease.append(job.lease_deadline)
        self._run.append(job.run_deadline)
        self._not_before.append(job.not_before)
        self._shape.append(self._shape_of(job))
        self._output.append(job.output)
        self._count += 1
        self.bytes += job.output_size
        ended = job.end_time if job.end_time is not None else job.update_time
        if ended >= self._newest:
            self._newest = ended
        else:  # ended before the newest row: ordered by the heap instead
            heapq.heappush(self._late, _late_key(ended, row))

    def _shape_of(self, job: Job) -> Shape:
        key = (id(job.spec), id(job.effective), job.worker_id, job.request_id, job.error)
        shape = self._shapes.get(key)
        if shape is None:
            if len(self._shapes) >= SHAPE_LIMIT:
                self._shapes.clear()
            # the value holds the objects whose ids are in the key, so those ids stay theirs
            shape = self._shapes[key] = (job.spec, job.effective, job.worker_id, job.request_id, job.error)
        return shape

    def get(self, job_id: str) -> Job | None:
        """The job, built again from its row, or None when not kept."""
        row = self._row(job_id)
        return None if row is None else self._job(row, job_id)

    def _job(self, row: int, job_id: str) -> Job:
        i = row - self._row_base
        spec, effective, worker_id, request_id, error = self._shape[i]
        return Job(
            job_id,
            spec,
            effective,
            self._create[i],
            request_id,
            JobState(self._state[i]),
            self._attempt[i],
            self._update[i],
            _unopt(self._start[i]),
            _unopt(self._end[i]),
            worker_id,
            self._lease[i],
            self._run[i],
            self._not_before[i],
            error,
            self._output[i],
            self._size[i],
        )

    def __iter__(self) -> Iterator[Job]:
        """The kept jobs, in the order they were added."""
        for i, seq in enumerate(self._seq):
            if seq != _GONE:
                row = self._row_base + i
                yield self._job(row, self._id_of(row))

    # ------------------------------------------------------------------ retention
    def _oldest(self) -> tuple[float, int] | None:
        """(retention time, absolute row) of the oldest kept job."""
        seqs, base = self._seq, self._row_base
        while self._head - base < len(seqs) and seqs[self._head - base] == _GONE:
            self._head += 1
        run = None
        if self._head - base < len(seqs):
            run = (self._retention_time(self._head), self._head)
        late = self._late
        # a late row below the head was dropped (the head passes dropped rows only), and its slot
        # may be freed already (row < _row_base)
        while late and ((row := late[0] & _ROW) < self._head or seqs[row - base] == _GONE):
            heapq.heappop(late)
        if late:
            row = late[0] & _ROW
            oldest = (self._retention_time(row), row)
            if run is None or oldest < run:
                return oldest
        return run

    def next_deadline(self) -> float | None:
        oldest = self._oldest()
        return None if oldest is None else self.rule.deadline(oldest[0], self._count, self.bytes)

    def expire(self, now: float) -> list[tuple[str, JobState, str]]:
        """Drops what is due by `now`: each as (job id, state, request id)."""
        dropped: list[tuple[str, JobState, str]] = []
        targets = self.rule.targets(self._count, self.bytes)
        while (oldest := self._oldest()) is not None:
            ended, row = oldest
            if not self.rule.due(ended, self._count, self.bytes, targets, now):
                break
            dropped.append(self._drop(row))
        self._reclaim()
        return dropped

    def _drop(self, row: int) -> tuple[str, JobState, str]:
        i = row - self._row_base
        job_id = self._id_of(row)
        seq = self._seq[i]
        if seq == _OTHER:
            del self._other_ids[row], self._other_rows[job_id]
        else:
            self._row_of[seq - self._seq_base] = 0
        self._seq[i] = _GONE
        state = JobState(self._state[i])
        request_id = self._shape[i][3]
        self._shape[i] = _NO_SHAPE  # let go of its objects now
        self._output[i] = None
        self._count -= 1
        self.bytes -= self._size[i]
        return job_id, state, request_id

    def _reclaim(self) -> None:
        """Frees the dropped rows at the front, and the sequence slots before the oldest kept."""
        gone = self._head - self._row_base
        if not gone or not (gone == len(self._seq) or (gone >= RECLAIM_ROWS and 2 * gone >= len(self._seq))):
            return
        for column in self._columns():
            del column[:gone]
        self._row_base = self._head
        # one pass per reclaim, which comes after at least as many drops: sequences before the oldest
        # kept one are not looked up here again, unless such a job is still running: it is kept by
        # its id string once it ends (add's else branch)
        row_of = self._row_of
        oldest_seq = min((s for s in self._seq if s >= 0), default=self._seq_base + len(row_of))
        free = oldest_seq - self._seq_base
        if free >= RECLAIM_ROWS and 2 * free >= len(row_of):
            del row_of[:free]
            self._seq_base = oldest_seq

    def _columns(self) -> tuple[Column, ...]:
        return (
            self._seq,
            self._state,
            self._attempt,
            self._size,
            self._create,
            self._update,
            self._start,
            self._end,
            self._lease,
            self._run,
            self._not_before,
            self._shape,
            self._output,
        )


_NO_SHAPE: Shape = (JobSpec("dropped"), EffectiveSpec(0, 0.0, 0.0, 0.0, 0.0), "", "", None)
