"""The Celery + Redis baseline as a local cluster, and one baseline run end to end.

`BaselineCluster` starts a private redis-server (its own loopback port and directory, no persistence)
and the Celery worker process(es), and stops exactly the processes it started. On a machine without
redis-server it installs Debian's package when running as root, and otherwise fails saying so.

Worker pool: `threads`, `slots` (12) threads in one process by default, because that is how a dtq
worker runs its 12 slots (one process, concurrent handlers) and a sleep job then costs a thread, not a
process. Prefork with 12 processes on this 2-core machine is the other defensible choice (it gets
both cores for `cpu` jobs); it is a constructor option (`pool="prefork"`), and `worker_processes`
splits the slots over several worker processes of either pool.

    python -m lab.baseline.runner WORKLOAD.yaml [--out data/runs] [--run-id ID]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import redis

from lab.baseline.celery_app import DEFAULT_PROFILE, PROFILES, make_app, profile_settings
from lab.procfs import descendants
from model.results.runs import load_workload, new_run_id, provenance, utc_now
from model.results.summary import format_summary
from model.workload import WorkloadSpec
from realsys import loadgen
from realsys.loadgen import DEFAULT_DRAIN

DEFAULT_SLOTS = 12  # realsys.cluster.DEFAULT_TOTAL_SLOTS: the same total concurrency as dtq
POOLS = ("threads", "prefork", "solo")
KIND, DESIGN = "baseline", "celery"


class RedisUnavailable(RuntimeError):
    pass


def ensure_redis_server() -> str:
    """The path of redis-server; installs Debian's package first when missing and we are root."""
    found = shutil.which("redis-server")
    if found:
        return found
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RedisUnavailable(
            "redis-server is not installed and cannot be installed here (needs root and apt-get): "
            "install it with `apt-get install -y redis-server`"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "redis-server"]
    # a fresh machine may have no package lists yet: update only when the first attempt fails
    if subprocess.run(install, env=env, capture_output=True, timeout=600, check=False).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, timeout=600, check=False)
        done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=600, check=False)
        if done.returncode != 0:
            raise RedisUnavailable(f"`apt-get install -y redis-server` failed: {done.stderr[-2000:]}")
    found = shutil.which("redis-server")
    if not found:
        raise RedisUnavailable("redis-server still missing after apt-get install")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BaselineCluster:
    """redis-server + Celery worker(s) on loopback. Use as a context manager, or up() / down()."""

    def __init__(
        self,
        directory: Path | str | None = None,
        *,
        slots: int = DEFAULT_SLOTS,
        pool: str = "threads",
        worker_processes: int = 1,
        visibility_timeout: float = 300.0,
        log_level: str = "WARNING",
        profile: str = DEFAULT_PROFILE,
    ) -> None:
        profile_settings(profile)  # an unknown profile fails here, before anything starts
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, not {pool!r}")
        if worker_processes < 1 or slots < worker_processes or slots % worker_processes:
            raise ValueError(f"{slots} slots do not split evenly over {worker_processes} worker processes")
        if pool == "solo" and slots != worker_processes:
            raise ValueError("the solo pool runs one task per process: use worker_processes == slots")
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="dtq-baseline-")
            directory = self._tmp.name
        self.directory = Path(directory).resolve()
        self.slots = slots
        self.pool = pool
        self.worker_processes = worker_processes
        self.visibility_timeout = visibility_timeout
        self.log_level = log_level
        self.profile = profile
        self.port = 0
        self._redis: subprocess.Popen[bytes] | None = None
        self._workers: list[subprocess.Popen[bytes]] = []

    @property
    def redis_url(self) -> str:
        if not self.port:
            raise RuntimeError("the baseline cluster is not up")
        return f"redis://127.0.0.1:{self.port}/0"

    def parameters(self) -> dict[str, Any]:
        """The design settings a run records in config.json (keys as `dtq load` records dtq's)."""
        per_process = self.slots // self.worker_processes
        return {
            "store": "redis",
            "total_slots": self.slots,
            "slots": {f"worker{i + 1}": per_process for i in range(self.worker_processes)},
            "pool": self.pool,
            "worker_processes": self.worker_processes,
            "profile": self.profile,
            **profile_settings(self.profile),
            "visibility_timeout": self.visibility_timeout,
        }

    def target_spec(self, submit_threads: int = 16) -> dict[str, Any]:
        """The realsys.targets.make_target mapping of a CeleryTarget on this cluster."""
        return {
            "factory": "lab.baseline.target:CeleryTarget",
            "kwargs": {"redis_url": self.redis_url, "submit_threads": submit_threads},
        }

    def server_pids(self) -> list[int]:
        """redis-server, the worker processes and every process they started (prefork children):
        what serves the jobs, for reading its CPU time."""
        pids = [proc.pid for proc in [self._redis, *self._workers] if proc is not None]
        return sorted({*pids, *(child for pid in pids for child in descendants(pid))})

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> BaselineCluster:
        self.up()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.down()

    def up(self, timeout: float = 30.0) -> None:
        if self._redis is not None:
            raise RuntimeError("the baseline cluster is already up")
        server = ensure_redis_server()
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            self._start_redis(server, timeout)
            self._start_workers(timeout)
        except BaseException:
            self.down(grace=5.0)
            raise

    def _spawn(
        self, argv: list[str], log_name: str, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        with open(self.directory / log_name, "ab") as log:
            return subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                # own process group: a terminal's Ctrl-C does not reach it (down() stops it); the
                # caller's session, as dtq's nodes (realsys/cluster.py): with sched_autogroup a session
                # is a CPU scheduling group, and the systems compared must be scheduled alike
                process_group=0,
            )

    def _start_redis(self, server: str, timeout: float) -> None:
        self.port = _free_port()
        data = self.directory / "redis"
        data.mkdir(exist_ok=True)
        argv = [
            server,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(data),
            "--save", "",  # no snapshots: nothing persists, as with dtq's memory store
            "--appendonly", "no",
            "--daemonize", "no",
            "--protected-mode", "yes",
            "--databases", "1",
        ]  # fmt: skip
        self._redis = self._spawn(argv, "redis.log")
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_timeout=1.0)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self._redis.poll() is not None:
                    raise RuntimeError(f"redis-server exited at start-up; see {self.directory / 'redis.log'}")
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.TimeoutError):
                    pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server on port {self.port} did not answer in {timeout}s")
                time.sleep(0.05)
        finally:
            client.close()

    def _start_workers(self, timeout: float) -> None:
        self._workers = [self._spawn_worker(i) for i in range(self.worker_processes)]
        self._wait_workers(timeout)

    def _spawn_worker(self, index: int) -> subprocess.Popen[bytes]:
        env = {
            **os.environ,
            "DTQ_BASELINE_REDIS_URL": self.redis_url,
            "DTQ_BASELINE_VISIBILITY_TIMEOUT": str(self.visibility_timeout),
            "DTQ_BASELINE_CELERY_PROFILE": self.profile,
            "PYTHONUNBUFFERED": "1",
        }
        argv = [
            sys.executable, "-m", "celery", "-A", "lab.baseline.celery_app:app", "worker",
            "--pool", self.pool,
            "--concurrency", str(self.slots // self.worker_processes),
            "--hostname", f"dtq{index + 1}-{self.port}@%h",
            "--loglevel", self.log_level,
            # peers need no worker-to-worker chatter: it only adds broker traffic
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]  # fmt: skip
        return self._spawn(argv, f"worker{index + 1}.log", env)

    def _wait_workers(self, timeout: float) -> None:
        app = make_app(self.redis_url, client=True)
        deadline = time.monotonic() + timeout
        try:
            while True:
                for i, proc in enumerate(self._workers):
                    if proc.poll() is not None:
                        log = self.directory / f"worker{i + 1}.log"
                        raise RuntimeError(f"celery worker {i + 1} exited at start-up; see {log}")
                replies = app.control.ping(timeout=0.5)
                if len(replies) >= self.worker_processes:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{len(replies)}/{self.worker_processes} celery workers up after {timeout}s"
                    )
        finally:
            app.close()

    def down(self, grace: float = 15.0) -> None:
        """Stops the workers (warm shutdown: running tasks finish, unacked messages go back) and then
        redis; whatever does not stop within `grace` is killed. Only processes this object started."""
        _stop(self._workers, grace)
        self._workers = []
        if self._redis is not None:
            _stop([self._redis], grace)
            self._redis = None
        self.port = 0
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def kill_worker(self, index: int = 0, sig: int = signal.SIGKILL) -> None:
        """Fault injection: signals one worker process (and reaps it when the signal kills)."""
        proc = self._workers[index]
        if proc.poll() is None:
            proc.send_signal(sig)
            if sig in (signal.SIGKILL, signal.SIGTERM):
                proc.wait(timeout=30.0)

    def restart_worker(self, index: int = 0, timeout: float = 30.0) -> None:
        """Starts worker `index` again after it stopped (same name, same settings)."""
        if self._workers[index].poll() is None:
            raise RuntimeError(f"worker {index + 1} is still running")
        self._workers[index] = self._spawn_worker(index)
        self._wait_workers(timeout)


def _stop(procs: list[subprocess.Popen[bytes]], grace: float) -> None:
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=5.0)


# ---------------------------------------------------------------------------- one run
def run_baseline(
    cluster: BaselineCluster,
    spec: WorkloadSpec,
    out: Path | str,
    run_id: str,
    *,
    replication: int = 0,
    processes: int = 1,
    records: bool = True,
    extra_parameters: dict[str, Any] | None = None,
    **load_options: Any,
) -> tuple[Path, dict[str, Any]]:
    """Drives `spec` through a CeleryTarget on a running cluster and writes the run (kind "baseline",
    design "celery"). Returns the run directory and its summary."""
    if spec.mix.list > 0:
        raise ValueError("Celery cannot list tasks: the baseline's request mix must not include `list`")
    started_at, stamp = utc_now(), provenance()
    result = loadgen.run(cluster.target_spec(), spec, processes, **load_options)
    return loadgen.write_load_run(
        out,
        run_id,
        result,
        spec,
        kind=KIND,
        design=DESIGN,
        parameters={**cluster.parameters(), "processes": processes, **(extra_parameters or {})},
        started_at=started_at,
        provenance_info=stamp,
        replication=replication,
        records=records,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.baseline.runner", description=__doc__)
    parser.add_argument("workload", help="a workload file (.yaml/.toml), as `dtq load` takes")
    parser.add_argument("--out", default="data/runs")
    parser.add_argument("--run-id", default="")
    parser.add_argument("--replication", type=int, default=0)
    parser.add_argument("--slots", type=int, default=DEFAULT_SLOTS)
    parser.add_argument("--pool", choices=POOLS, default="threads")
    parser.add_argument("--worker-processes", type=int, default=1)
    parser.add_argument("--profile", choices=sorted(PROFILES), default=DEFAULT_PROFILE, help="settings")
    parser.add_argument("--processes", type=int, default=1, help="load generator processes")
    parser.add_argument("--drain", type=float, default=DEFAULT_DRAIN)
    parser.add_argument("--no-records", action="store_true")
    args = parser.parse_args(argv)
    spec = load_workload(args.workload)
    run_id = args.run_id or new_run_id(KIND, DESIGN, Path(args.workload).stem, spec.seed)
    with BaselineCluster(
        slots=args.slots, pool=args.pool, worker_processes=args.worker_processes, profile=args.profile
    ) as cluster:
        path, summary = run_baseline(
            cluster,
            spec,
            args.out,
            run_id,
            replication=args.replication,
            processes=args.processes,
            records=not args.no_records,
            drain_timeout=args.drain,
        )
    print(format_summary(summary))
    print(f"run written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
