"""Durable state: job records (job role, mono nodes), queue entries (queue role) and results (result role).

Each store has a SQLite implementation and an in-memory one; `open_*(config)` picks by `config.store`.
Rows are plain columns plus protobuf bytes for nested values (JobSpec, JobError). Never pickle.

SQLite runs in WAL mode with synchronous=NORMAL: a committed write survives a crash of the process, not
necessarily a power cut. Job payloads live in their own table, written once and deleted when the job
ends, so the frequent small updates of a job row never rewrite its payload (a flood of 256 KiB jobs
grew the files to 2.4 GB when they did); results over max_inline_result_bytes live in an outputs
table the core never holds in RAM (model.commands.StoreOutput). The WAL restarts once past
WAL_RESTART_BYTES and is then cut back to WAL_SIZE_LIMIT (a flood of 256 KiB jobs left 400-500 MiB
of files behind before). With TLS on (`--secure`) the data directory is 0700 and every
database file 0600: data at rest is the owner's only.

One connection per store, used only from the event loop thread: a store call blocks the loop for one
small transaction. Measured on the 2-CPU dev machine (busy), before payloads had their own table:
`save` of a new job ~80 us median (the spec is serialised once), of a known job ~30 us, `save_many`
~11 us per job. So job records also take a group commit (`stage` now, `commit` later): a Design B
node commits every save of one loop iteration in one transaction (realsys/mono/core.py); a new
job's row then costs ~12 us of CPU at 16 per commit against ~44 us in autocommit.
"""

from __future__ import annotations

import dataclasses
import os
import secrets
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any, TypeAlias

from dtq.v1 import job_pb2
from model.job import CancelledByWorker, EffectiveSpec, Failed, Job, JobError, JobSpec, RetryPolicy, Succeeded
from model.states import TERMINAL, JobState
from realsys.config import NodeConfig
from realsys.convert import error_from_pb, error_to_pb, spec_from_pb, spec_to_pb
from realsys.logs import get_logger

log = get_logger(__name__)

StoredOutcome: TypeAlias = Succeeded | Failed | CancelledByWorker
QueueRow: TypeAlias = tuple[str, int, float, str]  # (job_id, priority, not_before, policy key)


# ---------------------------------------------------------------------------- interfaces
class JobRecords(ABC):
    @abstractmethod
    def save(self, job: Job) -> None:
        """Upsert; committed when it returns. The spec, effective spec, create time and request id are
        written by the first save only: they never change after submit."""

    @abstractmethod
    def save_many(self, jobs: Iterable[Job]) -> None:
        """Upsert all in one transaction."""

    # group commit: a store whose commits cost (SQLite) keeps staged jobs until commit()
    group_commit: bool = False

    def stage(self, jobs: Iterable[Job]) -> None:
        """Saves these jobs at the next `commit()` (at their state then), all in one transaction; a
        store without group commit saves them now. The caller must tell no one of their new state
        before commit() returns: an acknowledged state must survive a kill -9."""
        self.save_many(jobs)

    def commit(self) -> None:  # noqa: B027 - only a store with group_commit stages anything
        """Saves every staged job in one transaction; committed when it returns."""

    @abstractmethod
    def load_all(self) -> list[Job]:
        """Every job, in (create_time, job_id) order."""

    @abstractmethod
    def next_incarnation(self) -> str:
        """A fresh incarnation for JobIdFactory (1-16 lowercase hex digits), never returned before."""

    @abstractmethod
    def delete(self, job_ids: Iterable[str]) -> None:
        """Removes these jobs (retention: they expired), their payloads and outputs; unknown ids are
        ignored. Committed on return."""

    @abstractmethod
    def save_output(self, job_id: str, output: bytes) -> None:
        """Keeps a result the core holds only by size (StoreOutput); committed on return."""

    @abstractmethod
    def load_output(self, job_id: str) -> bytes | None:
        """A result saved by save_output, or None."""

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
        """Stores the outcome of one attempt; a later put of the same key replaces it. The job service is
        the only writer, and writes only for the attempt that holds the lease, before that attempt
        ends (model/job_service.py: fence): once a client can read a result, nothing writes its key
        again, and a put made ahead of time by anyone else is replaced by the lease holder's."""

    @abstractmethod
    def get(self, job_id: str, attempt: int) -> StoredOutcome | None: ...

    @abstractmethod
    def delete(self, keys: Iterable[tuple[str, int]]) -> None:
        """Removes these (job, attempt) outcomes (retention); unknown keys are ignored."""

    @abstractmethod
    def stored_keys(self) -> list[tuple[str, int]]:
        """Every stored (job, attempt), so a restarted result service can apply retention to them."""

    @abstractmethod
    def stored_sizes(self) -> list[tuple[tuple[str, int], int]]:
        """Every stored (job, attempt) with its output's bytes (retention by bytes after a restart)."""

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
    path = config.data_dir / f"{config.name}.{kind}.sqlite3"
    if config.security.tls:
        owner_only(config.data_dir, [path, *(path.with_name(path.name + s) for s in SQLITE_SIDE_FILES)])
    else:
        config.data_dir.mkdir(parents=True, exist_ok=True)
    return path


SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def owner_only(directory: Path, files: Iterable[Path]) -> None:
    """`directory` (made if missing) 0700 and `files` 0600; the first file is created (empty) if
    missing, so SQLite opens it instead of creating it 0644 (its -wal and -shm copy its mode)."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    for number, path in enumerate(files):
        if number == 0:
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
        if path.exists():
            os.chmod(path, 0o600)


# ---------------------------------------------------------------------------- sqlite
CHECKPOINT_INTERVAL = 0.5  # seconds between background WAL checkpoints
WAL_SIZE_LIMIT = 8 << 20  # bytes a WAL file is truncated to when it restarts
# Under a steady stream of writes a PASSIVE checkpoint never catches up with the last frame, so the
# WAL never restarts and grows without end (hundreds of MB under a flood of 256 KiB jobs). Past this
# size the checkpointer runs a RESTART checkpoint, which holds writers off while it copies (once per
# this many bytes written) and lets the next write start the WAL over.
WAL_RESTART_BYTES = 16 << 20
RESTART_RETRY = 0.05  # seconds to the next try when a RESTART checkpoint found the WAL busy
WAL_HARD_BYTES = 2 * WAL_RESTART_BYTES  # past this a group commit restarts the WAL itself (_bound_wal)


class _SqliteFile:
    """One connection, used from the loop thread, in autocommit mode (each statement is its own
    transaction unless wrapped in `_Transaction`).

    Under synchronous=NORMAL a commit does not fsync; only WAL checkpoints do, and SQLite's automatic
    checkpoint runs inside whichever commit crosses the threshold, stalling the loop for milliseconds.
    So a daemon thread with its own connection checkpoints instead (sqlite3 releases the GIL meanwhile),
    and restarts the WAL once it passes WAL_RESTART_BYTES.
    """

    def __init__(self, path: Path | str, schema: str) -> None:
        self._conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.execute("PRAGMA busy_timeout=5000")
        self._conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        self._conn.executescript(schema)
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        self._wal: Path | None = None
        if str(path) != ":memory:":
            self._wal = Path(str(path) + "-wal")
            self._conn.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = threading.Thread(
                target=self._checkpoint_loop, args=(str(path),), name=f"checkpoint {path}", daemon=True
            )
            self._checkpointer.start()

    def _checkpoint_loop(self, path: str) -> None:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=1000")  # RESTART waits this long for the writer at most
        wal = Path(path + "-wal")
        interval = CHECKPOINT_INTERVAL
        try:
            while not self._stop.wait(interval):
                interval = CHECKPOINT_INTERVAL
                try:
                    size = wal.stat().st_size
                except OSError:  # not there (yet, or any more)
                    size = 0
                try:
                    mode = "RESTART" if size > WAL_RESTART_BYTES else "PASSIVE"  # PASSIVE never waits
                    busy = conn.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
                    if mode == "RESTART" and busy and busy[0]:
                        # a writer held it off (a group commit's transaction can be large): try again
                        # soon, or the WAL grows by another interval's writes before the next turn
                        interval = RESTART_RETRY
                except sqlite3.Error:
                    log.exception("WAL checkpoint failed", extra={"path": path})
        finally:
            conn.close()

    def _bound_wal(self) -> None:
        """After a group commit: past WAL_HARD_BYTES (the checkpointer fell behind a flood of large
        batches) the writer restarts the WAL itself, so it stays within about that plus one batch."""
        wal = self._wal
        if wal is None:
            return
        try:
            if wal.stat().st_size > WAL_HARD_BYTES:
                self._conn.execute("PRAGMA wal_checkpoint(RESTART)")
        except (OSError, sqlite3.Error):  # no WAL yet, or busy: the checkpointer's next turn does it
            pass

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
-- an unfinished job's payload (its spec column is stored without it); deleted when the job ends
CREATE TABLE IF NOT EXISTS payloads (job_id TEXT PRIMARY KEY, payload BLOB NOT NULL);
-- results the core keeps by size only (StoreOutput)
CREATE TABLE IF NOT EXISTS outputs (job_id TEXT PRIMARY KEY, output BLOB NOT NULL);
"""
_SELECT_JOBS = (
    f"SELECT {', '.join('jobs.' + c for c in _JOB_COLUMNS)}, payloads.payload, length(outputs.output) "
    "FROM jobs LEFT JOIN payloads USING (job_id) LEFT JOIN outputs USING (job_id) "
    "ORDER BY jobs.create_time, jobs.job_id"
)
_PUT_PAYLOAD = "INSERT OR REPLACE INTO payloads (job_id, payload) VALUES (?, ?)"
_DROP_PAYLOAD = "DELETE FROM payloads WHERE job_id = ?"
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
        _spec_bytes(job.spec),  # without the payload: it has its own table
        eff.max_attempts,
        eff.initial_backoff,
        eff.max_backoff,
        eff.backoff_multiplier,
        eff.execution_timeout,
        job.create_time,
        job.request_id,
    )
    return fixed + _changing_values(job)


# Serialised specs (payload left out) of unlabelled specs, by everything else they hold: most jobs
# share a handful of types and settings, and building the message is most of a new row's cost.
_SPEC_CACHE: dict[tuple[str, int, RetryPolicy, float], bytes] = {}
_SPEC_CACHE_LIMIT = 256


def _spec_bytes(spec: JobSpec) -> bytes:
    if spec.labels:
        return spec_to_pb(spec, include_payload=False).SerializeToString()
    key = (spec.job_type, spec.priority, spec.retry, spec.execution_timeout)
    found = _SPEC_CACHE.get(key)
    if found is None:
        found = spec_to_pb(spec, include_payload=False).SerializeToString()
        if len(_SPEC_CACHE) >= _SPEC_CACHE_LIMIT:
            _SPEC_CACHE.clear()
        _SPEC_CACHE[key] = found
    return found


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
    """A job from a _SELECT_JOBS row: the jobs columns, then the payload and the stored output's size."""
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
        payload,
        stored_output,
    ) = row
    spec_pb = job_pb2.JobSpec.FromString(spec)
    if payload is not None:  # rows saved before payloads had a table keep it in the spec
        spec_pb.payload = payload
    return Job(
        job_id=job_id,
        spec=spec_from_pb(spec_pb),
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
        output_size=len(output) if output is not None else (stored_output or 0),
    )


def _error_bytes(error: JobError) -> bytes:
    message = error_to_pb(error)
    assert message is not None  # only None for None
    return message.SerializeToString()


def _error_from_bytes(data: bytes) -> JobError:
    return error_from_pb(job_pb2.JobError.FromString(data))


class SqliteJobRecords(_SqliteFile, JobRecords):
    """Group commit: `stage` keeps jobs (by id, the objects themselves) until `commit` writes each at
    its state then, all in one transaction; `delete` and `close` account for what is staged."""

    group_commit = True

    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _JOB_SCHEMA)
        # ids with a row: their saves are a plain UPDATE that skips the spec (delete() keeps it true)
        self._stored: set[str] = set()
        self._payloads: set[str] = set()  # ids with a payload row
        self._staged: dict[str, Job] = {}  # saved at the next commit()

    def save(self, job: Job) -> None:
        if job.job_id in self._stored:
            self._conn.execute(_UPDATE_JOB, _update_row(job))
        else:
            if job.spec.payload and not job.done:
                # before the row: a crash in between leaves an orphan payload (dropped at load),
                # never a job without its payload; two autocommits cost less than a transaction
                self._conn.execute(_PUT_PAYLOAD, (job.job_id, job.spec.payload))
                self._payloads.add(job.job_id)
            self._conn.execute(_UPSERT_JOB, _job_row(job))
            self._stored.add(job.job_id)
        if job.done and job.job_id in self._payloads:  # the core dropped it: so does the store
            self._conn.execute(_DROP_PAYLOAD, (job.job_id,))
            self._payloads.discard(job.job_id)

    def stage(self, jobs: Iterable[Job]) -> None:
        staged = self._staged
        for job in jobs:
            staged[job.job_id] = job

    def commit(self) -> None:
        if self._staged:
            jobs, self._staged = self._staged, {}
            if len(jobs) == 1:  # one statement in autocommit: cheaper than BEGIN ... COMMIT
                (job,) = jobs.values()
                self.save(job)
            else:
                self.save_many(jobs.values())
            self._bound_wal()

    def save_many(self, jobs: Iterable[Job]) -> None:
        stored, payloads = self._stored, self._payloads
        updates: list[tuple[Any, ...]] = []
        inserts: list[tuple[Any, ...]] = []
        new_payloads: list[tuple[str, bytes]] = []
        dropped: list[tuple[str]] = []
        for job in jobs:
            job_id = job.job_id
            if job_id in stored:
                updates.append(_update_row(job))
            else:
                if job.spec.payload and not job.done:
                    new_payloads.append((job_id, job.spec.payload))
                inserts.append(_job_row(job))
            if job.done and job_id in payloads:
                dropped.append((job_id,))
        conn = self._conn
        with _Transaction(conn):
            if new_payloads:
                conn.executemany(_PUT_PAYLOAD, new_payloads)
            if inserts:
                conn.executemany(_UPSERT_JOB, inserts)
            if updates:
                conn.executemany(_UPDATE_JOB, updates)
            if dropped:
                conn.executemany(_DROP_PAYLOAD, dropped)
        # only once committed
        stored.update(row[0] for row in inserts)
        payloads.update(job_id for job_id, _ in new_payloads)
        payloads.difference_update(job_id for (job_id,) in dropped)

    def close(self) -> None:
        self.commit()
        super().close()

    def delete(self, job_ids: Iterable[str]) -> None:
        rows = [(job_id,) for job_id in job_ids]
        for (job_id,) in rows:
            self._staged.pop(job_id, None)  # retention dropped it: a later commit must not bring it back
        if rows:
            with _Transaction(self._conn):
                self._conn.executemany("DELETE FROM jobs WHERE job_id = ?", rows)
                self._conn.executemany(_DROP_PAYLOAD, rows)
                self._conn.executemany("DELETE FROM outputs WHERE job_id = ?", rows)
            ids = [row[0] for row in rows]
            self._stored.difference_update(ids)
            self._payloads.difference_update(ids)

    def save_output(self, job_id: str, output: bytes) -> None:
        self._conn.execute("INSERT OR REPLACE INTO outputs (job_id, output) VALUES (?, ?)", (job_id, output))

    def load_output(self, job_id: str) -> bytes | None:
        row = self._conn.execute("SELECT output FROM outputs WHERE job_id = ?", (job_id,)).fetchone()
        return None if row is None else bytes(row[0])

    def load_all(self) -> list[Job]:
        with _Transaction(self._conn):
            # orphans: a payload whose job row never committed, or a finished job's (crash in between)
            self._conn.execute(
                "DELETE FROM payloads WHERE job_id NOT IN "
                "(SELECT job_id FROM jobs WHERE state NOT IN (?, ?, ?))",
                tuple(int(s) for s in TERMINAL),
            )
        jobs = [_job_from_row(row) for row in self._conn.execute(_SELECT_JOBS)]
        self._stored.update(job.job_id for job in jobs)
        self._payloads.update(row[0] for row in self._conn.execute("SELECT job_id FROM payloads"))
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
    not_before REAL NOT NULL,
    key TEXT NOT NULL DEFAULT ''
);
"""


class SqliteQueueEntries(_SqliteFile, QueueEntries):
    def __init__(self, path: Path | str) -> None:
        super().__init__(path, _QUEUE_SCHEMA)
        columns = {row[1] for row in self._conn.execute("PRAGMA table_info(queue)")}
        if "key" not in columns:  # a queue file from before scheduling policies
            self._conn.execute("ALTER TABLE queue ADD COLUMN key TEXT NOT NULL DEFAULT ''")

    def put(self, entries: Iterable[QueueRow]) -> None:
        # REPLACE deletes and reinserts, so a replaced entry gets the highest rowid: it moves to the back
        rows = list(entries)
        if rows:
            with _Transaction(self._conn):
                self._conn.executemany(
                    "INSERT OR REPLACE INTO queue (job_id, priority, not_before, key) VALUES (?, ?, ?, ?)",
                    rows,
                )

    def delete(self, job_ids: Iterable[str]) -> None:
        rows = [(job_id,) for job_id in job_ids]
        if rows:
            with _Transaction(self._conn):
                self._conn.executemany("DELETE FROM queue WHERE job_id = ?", rows)

    def load_all(self) -> list[QueueRow]:
        cursor = self._conn.execute("SELECT job_id, priority, not_before, key FROM queue ORDER BY rowid")
        return [(job_id, priority, not_before, key) for job_id, priority, not_before, key in cursor]


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
            "INSERT OR REPLACE INTO results (job_id, attempt, kind, output, error) VALUES (?, ?, ?, ?, ?)",
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

    def stored_sizes(self) -> list[tuple[tuple[str, int], int]]:
        rows = self._conn.execute("SELECT job_id, attempt, coalesce(length(output), 0) FROM results")
        return [((job_id, attempt), size) for job_id, attempt, size in rows]

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
        self._outputs: dict[str, bytes] = {}

    def save(self, job: Job) -> None:
        self._jobs[job.job_id] = _copy_job(job)

    def save_many(self, jobs: Iterable[Job]) -> None:
        for job in jobs:
            self.save(job)

    def delete(self, job_ids: Iterable[str]) -> None:
        for job_id in job_ids:
            self._jobs.pop(job_id, None)
            self._outputs.pop(job_id, None)

    def save_output(self, job_id: str, output: bytes) -> None:
        self._outputs[job_id] = output

    def load_output(self, job_id: str) -> bytes | None:
        return self._outputs.get(job_id)

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
        self._results[(job_id, attempt)] = outcome

    def get(self, job_id: str, attempt: int) -> StoredOutcome | None:
        return self._results.get((job_id, attempt))

    def delete(self, keys: Iterable[tuple[str, int]]) -> None:
        for key in keys:
            self._results.pop(key, None)

    def stored_keys(self) -> list[tuple[str, int]]:
        return list(self._results)

    def stored_sizes(self) -> list[tuple[tuple[str, int], int]]:
        return [
            (key, len(outcome.output) if isinstance(outcome, Succeeded) else 0)
            for key, outcome in self._results.items()
        ]
