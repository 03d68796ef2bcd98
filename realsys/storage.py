"""Durable state: job records (job role, mono nodes), queue entries (queue role) and results (result role).

Each store has a SQLite implementation and an in-memory one; `open_*(config)` picks by `config.store`.
Rows are plain columns plus protobuf bytes for nested values (JobSpec, JobError). Never pickle.

SQLite runs in WAL mode with synchronous=NORMAL: a committed write survives a crash of the process, not
necessarily a power cut. One connection per store, used only from the event loop thread: a store call
blocks the loop for one small transaction. Measured on the 2-CPU dev machine (busy): `save` of a new job
~80 us median (the spec is serialised once), of a known job ~30 us, `save_many` ~11 us per job.
"""

from __future__ import annotations

import dataclasses
import secrets
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeAlias

from dtq.v1 import job_pb2
from model.job import CancelledByWorker, EffectiveSpec, Failed, Job, JobError, Succeeded
from model.states import JobState
from realsys.config import NodeConfig
from realsys.convert import error_from_pb, error_to_pb, spec_from_pb, spec_to_pb
from realsys.logs import get_logger

log = get_logger(__name__)

StoredOutcome: TypeAlias = Succeeded | Failed | CancelledByWorker
QueueRow: TypeAlias = tuple[str, int, float]  # (job_id, priority, not_before)


# ---------------------------------------------------------------------------- interfaces
class JobRecords(ABC):
    @abstractmethod
    def save(self, job: Job) -> None:
        """Upsert; committed when it returns. The spec, effective spec, create time and request id are
        written by the first save only: they never change after submit."""

    @abstractmethod
    def save_many(self, jobs: Iterable[Job]) -> None:
        """Upsert all in one transaction."""

    @abstractmethod
    def load_all(self) -> list[Job]:
        """Every job, in (create_time, job_id) order."""

    @abstractmethod
    def next_incarnation(self) -> str:
        """A fresh incarnation for JobIdFactory (1-16 lowercase hex digits), never returned before."""

    @abstractmethod
    def delete(self, job_ids: Iterable[str]) -> None:
        """Removes these jobs (retention: they expired); unknown ids are ignored. Committed on return."""

    def close(self) -> None:  # noqa: B027 - memory stores have nothing to close
        pass


class QueueEntries(ABC):
    @abstractmethod
    def put(self, entries: Iterable[QueueRow]) -> None:
        """Inserts or replaces; a replaced entry moves to the back (as ReadyQueue.push does)."""

    @abstractmethod
    def delete(self, job_ids: Iterable[str]) -> None: ...

    @abstractmethod
    def load_all(self) -> list[QueueRow]:
        """In the order they were put, so FIFO within a priority survives a restart."""

    def close(self) -> None:  # noqa: B027
        pass


class Results(ABC):
    @abstractmethod
    def put(self, job_id: str, attempt: int, outcome: StoredOutcome) -> None:
        """Stores the outcome of one attempt. The first put wins: a worker retrying its report sends the
        same outcome, and a duplicate report must not overwrite the result a client may have read."""

    @abstractmethod
    def get(self, job_id: str, attempt: int) -> StoredOutcome | None: ...

    @abstractmethod
    def delete(self, keys: Iterable[tuple[str, int]]) -> None:
        """Removes these (job, attempt) outcomes (retention); unknown keys are ignored."""

    @abstractmethod
    def stored_keys(self) -> list[tuple[str, int]]:
        """Every stored (job, attempt), so a restarted result service can apply retention to them."""

    def close(self) -> None:  # noqa: B027
        pass


def open_job_records(config: NodeConfig) -> JobRecords:
    if config.store == "memory":
        return MemoryJobRecords()
    return SqliteJobRecords(_db_path(config, "jobs"))


def open_queue_entries(config: NodeConfig) -> QueueEntries:
    if config.store == "memory":
        return MemoryQueueEntries()
    return SqliteQueueEntries(_db_path(config, "queue"))


def open_results(config: NodeConfig) -> Results:
    if config.store == "memory":
        return MemoryResults()
    return SqliteResults(_db_path(config, "results"))


def _db_path(config: NodeConfig, kind: str) -> Path:
    config.data_dir.mkdir(parents=True, exist_ok=True)
    return config.data_dir / f"{config.name}.{kind}.sqlite3"


# ---------------------------------------------------------------------------- sqlite
CHECKPOINT_INTERVAL = 0.5  # seconds between background WAL checkpoints


class _SqliteFile:
    """One connection, used from the loop thread, in autocommit mode (each statement is its own
    transaction unless wrapped in `_Transaction`).

    Under synchronous=NORMAL a commit does not fsync; only WAL checkpoints do, and SQLite's automatic
    checkpoint runs inside whichever commit crosses the threshold, stalling the loop for milliseconds.
    So a daemon thread with its own connection checkpoints instead (sqlite3 releases the GIL meanwhile).
    """

    def __init__(self, path: Path | str, schema: str) -> None:
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.executescript(schema)
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if str(path) != ":memory:":
            self._conn.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, args=(str(path),), name=f"checkpoint {path}", daemon=True
            )
            self._checkpointer.start()

    def _checkpoint_loop(self, path: str) -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            while not self._stop.wait(CHECKPOINT_INTERVAL):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # never waits for the writer
                except sqlite3.Error:
                    log.exception("WAL checkpoint failed", extra={"path": path})
        finally:
            conn.close()

    def close(self) -> None:
        self._stop.set()
        if self._checkpointer is not None:
            self._checkpointer.join()
        self._conn.close()  # the last connection to close checkpoints and removes the WAL


class _Transaction:
    """`with _Transaction(conn):` runs the block in one transaction (rolled back on error)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        self._conn.execute("ROLLBACK" if exc_type else "COMMIT")


_JOB_COLUMNS = (
    "job_id",
    "spec",  # JobSpec protobuf
    "max_attempts",
    "initial_backoff",
    "max_backoff",
    "backoff_multiplier",
    "execution_timeout",
    "create_time",
    "request_id",
    "state",
    "attempt",
    "update_time",
    "start_time",
    "end_time",
    "worker_id",
    "lease_deadline",
    "run_deadline",
    "not_before",
    "error",  # JobError protobuf or NULL
    "output",  # NULL: no output (as distinct from b"")
)
_JOB_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job_id TEXT PRIMARY KEY,
    spec BLOB NOT NULL,
    max_attempts INTEGER NOT NULL,
    initial_backoff REAL NOT NULL,
    max_backoff REAL NOT NULL,
    backoff_multiplier REAL NOT NULL,
    execution_timeout REAL NOT NULL,
    create_time REAL NOT NULL,
    request_id TEXT NOT NULL,
    state INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    update_time REAL NOT NULL,
    start_time REAL,
    end_time REAL,
    worker_id TEXT NOT NULL,
    lease_deadline REAL NOT NULL,
    run_deadline REAL NOT NULL,
    not_before REAL NOT NULL,
    error BLOB,
    output BLOB
);
CREATE INDEX IF NOT EXISTS jobs_by_create_time ON jobs (create_time, job_id);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
# Written once, at the first save: a job's spec, effective spec, create time and request id never change
# after submit, so later saves skip them (serialising the spec is most of the cost of a save).
_FIXED = 9  # job_id and the columns written once: the first nine
_UPSERT_JOB = (
    f"INSERT INTO jobs ({', '.join(_JOB_COLUMNS)}) VALUES ({', '.join('?' * len(_JOB_COLUMNS))}) "
    "ON CONFLICT (job_id) DO UPDATE SET " + ", ".join(f"{c} = excluded.{c}" for c in _JOB_COLUMNS[_FIXED:])
)
_UPDATE_JOB = "UPDATE jobs SET " + ", ".join(f"{c} = ?" for c in _JOB_COLUMNS[_FIXED:]) + " WHERE job_id = ?"


def _job_row(job: Job) -> tuple[Any, ...]:
    """Every column, in _JOB_COLUMNS order."""
    eff = job.effective
    fixed = (
        job.job_id,
        spec_to_pb(job.spec).SerializeToString(),
        eff.max_attempts,
        eff.initial_backoff,
        eff.max_backoff,
        eff.backoff_multiplier,
        eff.execution_timeout,
        job.create_time,
        job.request_id,
    )
    return fixed + _changing_values(job)


def _update_row(job: Job) -> tuple[Any, ...]:
    """Parameters of _UPDATE_JOB."""
    return (*_changing_values(job), job.job_id)


def _changing_values(job: Job) -> tuple[Any, ...]:
    """The columns after the first _FIXED, in order."""
    return (
        int(job.state),
        job.attempt,
        job.update_time,
        job.start_time,
        job.end_time,
        job.worker_id,
        job.lease_deadline,
        job.run_deadline,
        job.not_before,
        None if job.error is None else _error_bytes(job.error),
        job.output,
    )


def _job_from_row(row: Sequence[Any]) -> Job:
    (
        job_id,
        spec,
        max_attempts,
        initial_backoff,
        max_backoff,
        backoff_multiplier,
        execution_timeout,
        create_time,
        request_id,
        state,
        attempt,
        update_time,
        start_time,
        end_time,
        worker_id,
        lease_deadline,
        run_deadline,
        not_before,
        error,
        output,
    ) = row
    return Job(
        job_id=job_id,
        spec=spec_from_pb(job_pb2.JobSpec.FromString(spec)),
        effective=EffectiveSpec(
            max_attempts, initial_backoff, max_backoff, backoff_multiplier, execution_timeout
        ),
        create_time=create_time,
        request_id=request_id,
        state=JobState(state),
        attempt=attempt,
        update_time=update_time,
        start_time=start_time,
        end_time=end_time,
        worker_id=worker_id,
        lease_deadline=lease_deadline,
        run_deadline=run_deadline,
        not_before=not_before,
        error=None if error is None else _error_from_bytes(error),
        output=output,
    )


def _error_bytes(error: JobError) -> bytes:
    message = error_to_pb(error)
    assert message is not None  # only None for None
    return message.SerializeToString()


def _error_from_bytes(data: bytes) -> JobError:
    return error_from_pb(job_pb2.JobError.FromString(data))


class SqliteJobRecords(_SqliteFile, JobRecords):
    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _JOB_SCHEMA)
        # ids with a row: their saves are a plain UPDATE that skips the spec (delete() keeps it true)
        self._stored: set[str] = set()

    def save(self, job: Job) -> None:
        if job.job_id in self._stored:
            self._conn.execute(_UPDATE_JOB, _update_row(job))
        else:
            self._conn.execute(_UPSERT_JOB, _job_row(job))
            self._stored.add(job.job_id)

    def save_many(self, jobs: Iterable[Job]) -> None:
        added: list[str] = []
        with _Transaction(self._conn):
            for job in jobs:
                if job.job_id in self._stored:
                    self._conn.execute(_UPDATE_JOB, _update_row(job))
                else:
                    self._conn.execute(_UPSERT_JOB, _job_row(job))
                    added.append(job.job_id)
        self._stored.update(added)  # only once committed

    def delete(self, job_ids: Iterable[str]) -> None:
        rows = [(job_id,) for job_id in job_ids]
        if rows:
            with _Transaction(self._conn):
                self._conn.executemany("DELETE FROM jobs WHERE job_id = ?", rows)
            self._stored.difference_update(row[0] for row in rows)

    def load_all(self) -> list[Job]:
        cursor = self._conn.execute(
            f"SELECT {', '.join(_JOB_COLUMNS)} FROM jobs ORDER BY create_time, job_id"
        )
        jobs = [_job_from_row(row) for row in cursor]
        self._stored.update(job.job_id for job in jobs)
        return jobs

    def next_incarnation(self) -> str:
        with _Transaction(self._conn):
            self._conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('incarnation', 0)")
            self._conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'incarnation'")
            (value,) = self._conn.execute("SELECT value FROM meta WHERE key = 'incarnation'").fetchone()
        return format(value, "x")


_QUEUE_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    job_id TEXT PRIMARY KEY,
    priority INTEGER NOT NULL,
    not_before REAL NOT NULL
);
"""


class SqliteQueueEntries(_SqliteFile, QueueEntries):
    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _QUEUE_SCHEMA)

    def put(self, entries: Iterable[QueueRow]) -> None:
        # REPLACE deletes and reinserts, so a replaced entry gets the highest rowid: it moves to the back
        rows = list(entries)
        if rows:
            with _Transaction(self._conn):
                self._conn.executemany(
                    "INSERT OR REPLACE INTO queue (job_id, priority, not_before) VALUES (?, ?, ?)", rows
                )

    def delete(self, job_ids: Iterable[str]) -> None:
        rows = [(job_id,) for job_id in job_ids]
        if rows:
            with _Transaction(self._conn):
                self._conn.executemany("DELETE FROM queue WHERE job_id = ?", rows)

    def load_all(self) -> list[QueueRow]:
        cursor = self._conn.execute("SELECT job_id, priority, not_before FROM queue ORDER BY rowid")
        return [(job_id, priority, not_before) for job_id, priority, not_before in cursor]


_RESULTS_SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    kind TEXT NOT NULL,  -- 'succeeded', 'failed' or 'cancelled'
    output BLOB,
    error BLOB,  -- JobError protobuf
    PRIMARY KEY (job_id, attempt)
) WITHOUT ROWID;
"""


class SqliteResults(_SqliteFile, Results):
    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _RESULTS_SCHEMA)

    def put(self, job_id: str, attempt: int, outcome: StoredOutcome) -> None:
        output: bytes | None = None
        error: bytes | None = None
        if isinstance(outcome, Succeeded):
            kind, output = "succeeded", outcome.output
        elif isinstance(outcome, Failed):
            kind, error = "failed", _error_bytes(outcome.error)
        else:
            kind = "cancelled"
        self._conn.execute(
            "INSERT OR IGNORE INTO results (job_id, attempt, kind, output, error) VALUES (?, ?, ?, ?, ?)",
            (job_id, attempt, kind, output, error),
        )

    def delete(self, keys: Iterable[tuple[str, int]]) -> None:
        rows = list(keys)
        if rows:
            with _Transaction(self._conn):
                self._conn.executemany("DELETE FROM results WHERE job_id = ? AND attempt = ?", rows)

    def stored_keys(self) -> list[tuple[str, int]]:
        return [
            (job_id, attempt) for job_id, attempt in self._conn.execute("SELECT job_id, attempt FROM results")
        ]

    def get(self, job_id: str, attempt: int) -> StoredOutcome | None:
        row = self._conn.execute(
            "SELECT kind, output, error FROM results WHERE job_id = ? AND attempt = ?", (job_id, attempt)
        ).fetchone()
        if row is None:
            return None
        kind, output, error = row
        if kind == "succeeded":
            return Succeeded(output)
        if kind == "failed":
            return Failed(_error_from_bytes(error))
        return CancelledByWorker()


# ---------------------------------------------------------------------------- memory
class MemoryJobRecords(JobRecords):
    """Keeps copies: JobTable mutates its Job objects, and a store must hold what was saved."""

    def __init__(self) -> None:
        self._jobs: dict[str, Job] = {}

    def save(self, job: Job) -> None:
        self._jobs[job.job_id] = _copy_job(job)

    def save_many(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            self.save(job)

    def delete(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self._jobs.pop(job_id, None)

    def load_all(self) -> list[Job]:
        return [_copy_job(job) for job in sorted(self._jobs.values(), key=lambda j: j.sort_key)]

    def next_incarnation(self) -> str:
        # nothing persists across restarts, so a random 32-bit value stands in for the counter
        return secrets.token_hex(4)


_job_fields = attrgetter(*(f.name for f in dataclasses.fields(Job)))


def _copy_job(job: Job) -> Job:
    """A shallow copy (the nested values are frozen); 5x faster than dataclasses.replace."""
    return Job(*_job_fields(job))


class MemoryQueueEntries(QueueEntries):
    def __init__(self) -> None:
        self._entries: dict[str, QueueRow] = {}

    def put(self, entries: Iterable[QueueRow]) -> None:
        for entry in entries:
            self._entries.pop(entry[0], None)  # re-insert at the back
            self._entries[entry[0]] = entry

    def delete(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self._entries.pop(job_id, None)

    def load_all(self) -> list[QueueRow]:
        return list(self._entries.values())


class MemoryResults(Results):
    def __init__(self) -> None:
        self._results: dict[tuple[str, int], StoredOutcome] = {}

    def put(self, job_id: str, attempt: int, outcome: StoredOutcome) -> None:
        self._results.setdefault((job_id, attempt), outcome)

    def get(self, job_id: str, attempt: int) -> StoredOutcome | None:
        return self._results.get((job_id, attempt))

    def delete(self, keys: Iterable[tuple[str, int]]) -> None:
        for key in keys:
            self._results.pop(key, None)

    def stored_keys(self) -> list[tuple[str, int]]:
        return list(self._results)
