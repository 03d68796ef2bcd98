from __future__ import annotations

import dataclasses
import sqlite3
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from model.ids import JobIdFactory
from model.job import (
    CancelledByWorker,
    EffectiveSpec,
    Failed,
    Job,
    JobError,
    JobSpec,
    RetryPolicy,
    Succeeded,
)
from model.states import JobState
from realsys.config import NodeConfig, SecurityConfig, load_config
from realsys.convert import spec_to_pb
from realsys.storage import (
    JobRecords,
    MemoryJobRecords,
    SqliteJobRecords,
    StoredOutcome,
    open_job_records,
    open_queue_entries,
    open_results,
)

STORES = ["sqlite", "memory"]


def make_config(tmp_path: Path, store: str) -> NodeConfig:
    return load_config(
        {
            "DTQ_ROLE": "node",
            "DTQ_NAME": "n1",
            "DTQ_PEERS": "n1=h:1",
            "DTQ_DATA_DIR": str(tmp_path / "d"),
            "DTQ_STORE": store,
        }
    )


SPEC = JobSpec.make(
    "sleep",
    payload=b'{"seconds": 0.1}\x00\xff',
    priority=-7,
    retry=RetryPolicy(max_attempts=4, initial_backoff=0.25, max_backoff=8.5, backoff_multiplier=1.5),
    execution_timeout=12.000000001,
    labels={"team": "a", "kind": "ünïcode"},
)
EFFECTIVE = EffectiveSpec(4, 0.25, 8.5, 1.5, 12.000000001)


def job_in(state: JobState, n: int = 1) -> Job:
    """A job with every field set to something other than its default."""
    done = state in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
    output = b"\x00out" if state is JobState.SUCCEEDED else (b"" if state is JobState.CANCELLED else None)
    return Job(
        job_id=f"n1-1-{n:010x}",
        spec=dataclasses.replace(SPEC, payload=b"") if done else SPEC,  # the core drops it at the end
        effective=EFFECTIVE,
        create_time=1_700_000_000.123456 + n,
        request_id=f"req-{n}",
        state=state,
        attempt=n + 1,
        update_time=1_700_000_010.5 + n,
        start_time=1_700_000_001.25 + n if state is not JobState.PENDING else None,
        end_time=1_700_000_002.75 + n if done else None,
        worker_id=f"w{n}",
        lease_deadline=1_700_000_020.0625,
        run_deadline=1_700_000_030.03125,
        not_before=1_700_000_005.5,
        error=JobError("boom", retryable=True, reason="TIMEOUT") if state is JobState.FAILED else None,
        output=output,
        output_size=len(output or b""),
    )


ALL_STATES = list(JobState)


@pytest.fixture(params=STORES)
def store(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def records(tmp_path: Path, store: str) -> Iterator[JobRecords]:
    r = open_job_records(make_config(tmp_path, store))
    yield r
    r.close()


# ---------------------------------------------------------------------------- job records
def test_every_field_of_every_state_round_trips(records: JobRecords) -> None:
    jobs = [job_in(state, n) for n, state in enumerate(ALL_STATES)]
    for job in jobs:
        records.save(job)
    loaded = records.load_all()
    assert loaded == jobs  # dataclass equality covers every field
    for got, want in zip(loaded, jobs, strict=True):
        for f in dataclasses.fields(Job):
            assert getattr(got, f.name) == getattr(want, f.name), f.name
        assert type(got.state) is JobState
    # None and b"" outputs stay distinct
    assert [j.output for j in loaded if j.state in (JobState.PENDING, JobState.CANCELLED)] == [None, b""]


def test_sqlite_survives_a_restart(tmp_path: Path) -> None:
    config = make_config(tmp_path, "sqlite")
    first = open_job_records(config)
    jobs = [job_in(state, n) for n, state in enumerate(ALL_STATES)]
    first.save_many(jobs[:3])
    for job in jobs[3:]:
        first.save(job)
    first.close()
    assert (tmp_path / "d" / "n1.jobs.sqlite3").exists()
    second = open_job_records(config)
    assert second.load_all() == jobs
    second.close()


def test_a_crash_keeps_committed_saves(tmp_path: Path) -> None:
    """Not closing is what a killed process does: every returned save must be readable by a new process."""
    path = tmp_path / "jobs.sqlite3"
    first = SqliteJobRecords(path)
    first.save(job_in(JobState.RUNNING))
    # a second connection (as a restarted process) sees the write while the first is still open
    second = SqliteJobRecords(path)
    assert second.load_all() == [job_in(JobState.RUNNING)]
    second.close()
    first.close()


def test_checkpoints_run_in_the_background(tmp_path: Path) -> None:
    """Automatic checkpoints are off (they would stall the loop); the store's thread must do them."""
    path = tmp_path / "jobs.sqlite3"
    records = SqliteJobRecords(path)
    size = path.stat().st_size
    records.save_many(job_in(JobState.PENDING, n) for n in range(300))
    deadline = time.monotonic() + 10
    while path.stat().st_size < size + 100_000:  # the rows reach the main file only by a checkpoint
        assert time.monotonic() < deadline, "no checkpoint within 10 s"
        time.sleep(0.05)
    records.close()
    assert not path.with_name(path.name + "-wal").exists()  # closing the last connection removes the WAL


def test_saves_after_a_restart_update_the_row(tmp_path: Path) -> None:
    path = tmp_path / "jobs.sqlite3"
    first = SqliteJobRecords(path)
    first.save(job_in(JobState.PENDING))
    first.close()

    second = SqliteJobRecords(path)
    (job,) = second.load_all()
    job.state = JobState.RUNNING
    second.save(job)  # a loaded job: the plain update path
    second.close()

    third = SqliteJobRecords(path)  # saves without loading first: the upsert path
    job.attempt = 42
    third.save(job)
    assert third.load_all() == [job]
    third.close()


def test_save_updates_in_place(records: JobRecords) -> None:
    job = job_in(JobState.PENDING)
    records.save(job)
    job.state = JobState.RUNNING
    job.attempt = 9
    job.worker_id = "w9"
    job.lease_deadline = 123.5
    records.save(job)
    assert records.load_all() == [job]


def test_load_all_orders_by_create_time_then_id(records: JobRecords) -> None:
    a, b, c = (job_in(JobState.PENDING, n) for n in (1, 2, 3))
    c.create_time = a.create_time  # a tie broken by id
    b.create_time = a.create_time - 1
    records.save_many([c, a, b])
    assert [j.job_id for j in records.load_all()] == [b.job_id, a.job_id, c.job_id]


def test_saved_jobs_are_snapshots(records: JobRecords) -> None:
    job = job_in(JobState.PENDING)
    records.save(job)
    job.state = JobState.RUNNING  # JobTable mutates its records; the store must not see it unsaved
    loaded = records.load_all()
    assert loaded[0].state is JobState.PENDING
    loaded[0].attempt = 99
    assert records.load_all()[0].attempt == job.attempt


def test_save_many_is_one_transaction(tmp_path: Path) -> None:
    records = SqliteJobRecords(tmp_path / "j.sqlite3")
    good = job_in(JobState.PENDING, 1)
    bad = job_in(JobState.PENDING, 2)
    bad.worker_id = None  # type: ignore[assignment]  # violates NOT NULL inside the transaction
    with pytest.raises(sqlite3.IntegrityError):
        records.save_many([good, bad])
    assert records.load_all() == []
    records.save_many([])
    records.close()


def test_updates_never_rewrite_the_payload(tmp_path: Path) -> None:
    """Issue 26: a flood of 256 KiB jobs grew the SQLite files to 2.4 GB: every save of a job row
    (lease, renewals, end) rewrote its payload into the WAL. Payloads now have their own table,
    written once and deleted when the job ends."""
    path = tmp_path / "jobs.sqlite3"
    records = SqliteJobRecords(path)
    job = job_in(JobState.PENDING)
    job.spec = dataclasses.replace(SPEC, payload=b"p" * (256 << 10))
    records.save(job)
    for n in range(40):  # leases, retries and renewals: rows of changing sizes, saved each time
        job.state = JobState.RUNNING if n % 2 else JobState.PENDING
        job.worker_id = f"worker-{n}" * (n % 3)
        job.error = JobError(f"attempt {n} failed", retryable=True) if n % 2 == 0 else None
        job.lease_deadline += n
        records.save(job) if n % 4 else records.save_many([job])
    wal = path.with_name(path.name + "-wal")
    on_disk = path.stat().st_size + (wal.stat().st_size if wal.exists() else 0)
    assert on_disk < 2 << 20, on_disk  # one payload, not 40 copies of it (~10 MiB)
    assert records.load_all()[0].spec.payload == job.spec.payload
    job.state = JobState.SUCCEEDED
    job.spec = dataclasses.replace(job.spec, payload=b"")  # the core drops it at the end
    records.save(job)
    assert records.load_all() == [job]
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM payloads").fetchone() == (0,)
    records.close()


def test_rows_written_with_the_payload_in_the_spec_still_load(tmp_path: Path) -> None:
    """Records saved before payloads had their own table keep the payload inside the spec."""
    path = tmp_path / "jobs.sqlite3"
    records = SqliteJobRecords(path)
    job = job_in(JobState.PENDING)
    records.save(job)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE jobs SET spec = ?", (spec_to_pb(SPEC).SerializeToString(),))
        conn.execute("DELETE FROM payloads")
    records.close()
    again = SqliteJobRecords(path)
    assert again.load_all() == [job]
    again.close()


def test_an_orphan_payload_is_dropped_at_load(tmp_path: Path) -> None:
    """A crash between the payload and the job row (or after a job ended) leaves a payload row
    that belongs to no unfinished job; the next load drops it."""
    path = tmp_path / "jobs.sqlite3"
    records = SqliteJobRecords(path)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO payloads VALUES ('n1-1-00000000ff', x'00')")
    assert records.load_all() == []
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM payloads").fetchone() == (0,)
    records.close()


def test_stored_outputs_load_and_go_with_their_job(records: JobRecords) -> None:
    job = job_in(JobState.SUCCEEDED)
    job.output, job.output_size = None, 5  # the core keeps only the size (StoreOutput)
    records.save_output(job.job_id, b"big!!")
    records.save(job)
    assert records.load_output(job.job_id) == b"big!!"
    assert records.load_all() == [job]  # output_size comes back from the stored output
    records.delete([job.job_id])
    assert records.load_output(job.job_id) is None and records.load_all() == []


def test_secure_stores_are_owner_only(tmp_path: Path) -> None:
    """Issue 26: under --secure the SQLite files were 0644 in 0755 directories and another local
    user read the results. With TLS on, the data directory is 0700 and every file of it 0600."""
    base = make_config(tmp_path, "sqlite")
    tls = SecurityConfig(tls_cert=tmp_path / "c.pem", tls_key=tmp_path / "k.pem", tls_ca=tmp_path / "ca.pem")
    config = dataclasses.replace(base, security=tls)
    jobs, results = open_job_records(config), open_results(config)
    jobs.save_many([job_in(JobState.PENDING)])
    results.put("n1-1-0000000001", 1, Succeeded(b"secret"))
    directory = config.data_dir
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    files = sorted(directory.iterdir())
    assert len([f for f in files if f.name.endswith("-wal")]) == 2
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    jobs.close()
    results.close()


def test_sqlite_incarnation_is_a_persisted_counter(tmp_path: Path) -> None:
    config = make_config(tmp_path, "sqlite")
    seen = []
    for _ in range(3):
        records = open_job_records(config)
        seen.append(records.next_incarnation())
        records.close()
    assert seen == ["1", "2", "3"]
    JobIdFactory("n1", seen[-1])  # a valid incarnation


def test_memory_incarnations_are_random_hex() -> None:
    seen = {MemoryJobRecords().next_incarnation() for _ in range(20)}
    assert len(seen) == 20
    for incarnation in seen:
        assert len(incarnation) == 8
        JobIdFactory("n1", incarnation)


durations = st.builds(lambda s, ns: s + ns / 1e9, st.integers(0, 10**6), st.integers(0, 10**9 - 1))
times = st.floats(0, 4e9, allow_nan=False)
specs = st.builds(
    JobSpec.make,
    job_type=st.from_regex(r"[A-Za-z][A-Za-z0-9_.:-]{0,20}", fullmatch=True),
    payload=st.binary(max_size=64),
    priority=st.integers(-(2**31), 2**31 - 1),
    # spec durations come from protobuf Durations, so they are whole seconds plus nanoseconds
    retry=st.builds(RetryPolicy, st.integers(0, 100), durations, durations, st.floats(1, 10)),
    execution_timeout=durations,
    labels=st.dictionaries(st.text(min_size=1, max_size=8), st.text(max_size=8), max_size=3),
)


def as_the_core_keeps(job: Job) -> Job:
    """A finished job has no payload (the core drops it) and its output's size is recorded."""
    spec = dataclasses.replace(job.spec, payload=b"") if job.done else job.spec
    return dataclasses.replace(job, spec=spec, output_size=len(job.output or b""))


jobs_strategy = st.builds(
    Job,
    job_id=st.from_regex(r"n[0-9]-[0-9a-f]{1,4}-[0-9a-f]{10}", fullmatch=True),
    spec=specs,
    effective=st.builds(EffectiveSpec, st.integers(1, 100), times, times, st.floats(1, 10), times),
    create_time=times,
    request_id=st.text(max_size=10),
    state=st.sampled_from(JobState),
    attempt=st.integers(0, 100),
    update_time=times,
    start_time=st.none() | times,
    end_time=st.none() | times,
    worker_id=st.text(max_size=10),
    lease_deadline=times,
    run_deadline=times,
    not_before=times,
    error=st.none()
    | st.builds(JobError, st.text(max_size=20), st.booleans(), st.sampled_from(["TIMEOUT", "X"])),
    output=st.none() | st.binary(max_size=32),
).map(as_the_core_keeps)


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None)
@given(job=jobs_strategy)
def test_any_job_round_trips_through_sqlite(job: Job) -> None:
    records = SqliteJobRecords(":memory:")
    records.save(job)
    assert records.load_all() == [job]
    records.close()


# ---------------------------------------------------------------------------- queue entries
def test_queue_entries(tmp_path: Path, store: str) -> None:
    config = make_config(tmp_path, store)
    q = open_queue_entries(config)
    q.put([("a", 1, 0.0, ""), ("b", 5, 10.5, "x"), ("c", -3, 1.25, "")])
    q.put([("a", 2, 3.0, "y")])  # replaced: new values, moved to the back
    q.delete(["c", "missing"])
    want = [("b", 5, 10.5, "x"), ("a", 2, 3.0, "y")]
    assert q.load_all() == want
    q.put([])
    q.delete([])
    q.close()
    reopened = open_queue_entries(config)
    assert reopened.load_all() == (want if store == "sqlite" else [])
    reopened.close()


# ---------------------------------------------------------------------------- results
def test_results(tmp_path: Path, store: str) -> None:
    config = make_config(tmp_path, store)
    r = open_results(config)
    outcomes: dict[tuple[str, int], StoredOutcome] = {
        ("j1", 1): Failed(JobError("first try", retryable=True, reason="HANDLER_ERROR")),
        ("j1", 2): Succeeded(b"\x00result"),
        ("j2", 1): CancelledByWorker(),
        ("j3", 1): Succeeded(b""),
        ("j4", 1): Failed(JobError("lease", retryable=False, reason="LEASE_EXPIRED")),
    }
    for (job_id, attempt), outcome in outcomes.items():
        r.put(job_id, attempt, outcome)
    for (job_id, attempt), outcome in outcomes.items():
        assert r.get(job_id, attempt) == outcome
    assert r.get("j1", 3) is None
    assert r.get("nope", 1) is None
    r.put("j2", 1, Succeeded(b"again"))  # the job service's fenced write replaces an earlier one
    assert r.get("j2", 1) == Succeeded(b"again")
    r.delete([("j2", 1), ("nope", 9)])  # retention; unknown keys are ignored
    assert r.get("j2", 1) is None and ("j2", 1) not in r.stored_keys()
    r.close()
    reopened = open_results(config)
    assert reopened.get("j1", 2) == (Succeeded(b"\x00result") if store == "sqlite" else None)
    reopened.close()
