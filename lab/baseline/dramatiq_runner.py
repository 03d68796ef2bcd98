"""The Dramatiq + Redis baseline as a local cluster: a private redis-server (as the Celery baseline's,
`runner.BaselineCluster`) and one `dramatiq` command, which starts `processes` worker processes of
`threads` threads each (2 x 8 by default: Dramatiq's own default is one process per CPU with 8
threads, and this machine kind has 2 CPUs).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from lab.baseline.dramatiq_target import DramatiqTarget, target_spec
from lab.baseline.runner import BaselineCluster

DEFAULT_PROCESSES = 2
DEFAULT_THREADS = 8


class DramatiqCluster(BaselineCluster):
    """redis-server + one `dramatiq` master and its worker processes, on loopback."""

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        processes: int = DEFAULT_PROCESSES,
        threads: int = DEFAULT_THREADS,
        log_level: str = "WARNING",
    ) -> None:
        if processes < 1 or threads < 1:
            raise ValueError("processes and threads must be >= 1")
        super().__init__(
            directory, slots=processes * threads, worker_processes=processes, log_level=log_level
        )
        self.threads = threads

    def parameters(self) -> dict[str, Any]:
        return {
            "store": "redis",
            "total_slots": self.slots,
            "worker_processes": self.worker_processes,
            "threads": self.threads,
            "results": "redis",
        }

    def target_spec(self, submit_threads: int = 16) -> dict[str, Any]:
        return target_spec(self.redis_url, submit_threads)

    def _start_workers(self, timeout: float) -> None:
        env = {
            **os.environ,
            "DTQ_BASELINE_REDIS_URL": self.redis_url,
            "DTQ_BASELINE_DRAMATIQ_WORKER": "1",
            "PYTHONUNBUFFERED": "1",
        }
        argv = [
            sys.executable, "-m", "dramatiq", "lab.baseline.dramatiq_app",
            "--processes", str(self.worker_processes),
            "--threads", str(self.threads),
            "--queues", "dtq-baseline",
        ]  # fmt: skip
        self._workers = [self._spawn(argv, "dramatiq.log", env)]
        self._wait_workers(timeout)

    def _wait_workers(self, timeout: float) -> None:
        """Up when a no-op job sent now comes back done (Dramatiq has no ping)."""
        deadline = time.monotonic() + timeout
        asyncio.run(self._probe(deadline))

    async def _probe(self, deadline: float) -> None:
        target = DramatiqTarget(self.redis_url, submit_threads=1)
        try:
            job_id = await target.submit("echo", b"")
            while True:
                if self._workers[0].poll() is not None:
                    raise RuntimeError(f"dramatiq exited at start-up; see {self.directory / 'dramatiq.log'}")
                state, _ = await target.wait(job_id, 1.0)
                if state == "SUCCEEDED":
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError("the dramatiq workers did not run a job within the start-up time")
        finally:
            await target.close()

    def restart_worker(self, index: int = 0, timeout: float = 30.0) -> None:
        raise NotImplementedError("the Dramatiq baseline restarts as a whole: down() then up()")
