"""How much CPU a full garbage collection takes in a process holding a node's modules, as the core's
job table grows. Importing this module loads a node's heap (gRPC, protobuf, the services) and
nothing of the lab or the simulator, so run it in a fresh interpreter:

    python -c "from lab.gcprobe import full_collection_ms; print(full_collection_ms([0, 5000, 40000]))"
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Sequence

import realsys.server  # noqa: F401  (a node's heap: gRPC, protobuf, the services)
from model.config import CoreConfig
from model.ids import JobIdFactory
from model.job import JobSpec, Succeeded
from model.jobs import JobTable


def full_collection_ms(retained: Sequence[int], repeats: int = 5) -> list[dict[str, float]]:
    """How much CPU a full collection (gc.collect()) takes in this process, with the node's modules
    imported, as a model.jobs.JobTable holds more finished jobs (24 h retention keeps them all):
    per count, the median of `repeats` collections and the tracked objects. In-process and
    cumulative, so run it in a fresh interpreter."""
    table = JobTable(CoreConfig(), JobIdFactory("n1", "a"))
    out, done = [], 0
    for target in sorted(retained):
        while done < target:
            job = table.submit(float(done), JobSpec.make("sleep", payload=b"")).job
            table.lease(float(done), job.job_id, "w1")
            table.complete(float(done), job.job_id, 1, "w1", Succeeded(b""))
            done += 1
        pauses = []
        for _ in range(repeats):
            t0 = time.process_time()  # CPU, not wall: the host's other load does not count
            gc.collect()
            pauses.append((time.process_time() - t0) * 1e3)
        out.append(
            {
                "jobs": done,
                "objects": len(gc.get_objects()),
                "full_gc_ms": round(statistics.median(pauses), 2),
            }
        )
    return out
