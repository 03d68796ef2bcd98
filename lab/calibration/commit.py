"""The store's commit costs, timed in-process: JobRecords.save (one row) and save_many (a batch)."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from model.config import CoreConfig
from model.ids import JobIdFactory
from model.job import JobSpec
from model.jobs import JobTable
from realsys.storage import JobRecords, MemoryJobRecords, SqliteJobRecords


def measure_commit(
    store: str, count: int, rows: int = 20, payload: bytes = b'{"seconds": 0}'
) -> dict[str, list[float]]:
    """JobRecords.save (one row) and save_many(`rows`) wall times of jobs with this payload;
    commit_per_row from the slope."""
    table = JobTable(CoreConfig(), JobIdFactory("cal", "1"))
    spec = JobSpec.make("sleep", payload)
    jobs = [table.submit(float(i), spec).job for i in range(count + rows)]
    tmp = Path(tempfile.mkdtemp(prefix="dtq-cal-"))
    try:
        records: JobRecords = SqliteJobRecords(tmp / "jobs.db") if store == "sqlite" else MemoryJobRecords()
        one: list[float] = []
        many: list[float] = []
        for job in jobs[:count]:
            t0 = time.perf_counter()
            records.save(job)
            one.append(time.perf_counter() - t0)
        batch = jobs[count:]
        for _ in range(max(count // 10, 3)):
            t0 = time.perf_counter()
            records.save_many(batch)
            many.append(time.perf_counter() - t0)
        records.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {"commit": one, "commit_many": many, "rows": [float(rows)]}
