"""The Celery app of the baseline: dtq's built-in job types as Celery tasks, Redis as broker and backend.

The worker runs `celery -A lab.baseline.celery_app:app worker ...` (see `runner.BaselineCluster`);
the app reads its Redis URL from DTQ_BASELINE_REDIS_URL. Clients build their own app with
`make_app(url, client=True)` and send tasks by name (`task_name(job_type)`), so they import no task code.

Settings profiles (DTQ_BASELINE_CELERY_PROFILE; `PROFILES`), because more than one is defensible:
- "durable" (the default: experiments, faults): dtq's guarantees, at a price in speed.
  - `task_acks_late` + `task_reject_on_worker_lost`: a message is acknowledged only after the task
    ran, so a worker killed mid-task does not lose it (Celery #3541, #1628); with the prefork pool, a
    child that dies mid-task has its message requeued instead of the task marked FAILED
    (WorkerLostError). A redelivered task runs again from the start and counts as the same attempt
    (Celery keeps no delivery count for Redis), so `attempts` undercounts such reruns. Caveat: with
    the Redis broker an unacknowledged message only comes back after `visibility_timeout`
    (DTQ_BASELINE_VISIBILITY_TIMEOUT, 300 s here; Celery's default is an hour), and only when a
    worker's periodic sweep finds it (kombu sweeps every 100 s by default; here every quarter of the
    timeout). A task that runs longer than the timeout is delivered a second time (Celery #2599,
    #7009): there is no heartbeat that extends it, unlike dtq's leases.
  - `worker_prefetch_multiplier = 1`: each execution slot reserves at most one message, as a dtq
    worker slot leases one job; a deeper prefetch would hide queueing inside the worker.
  - `task_track_started`: the worker stores STARTED, so `status` can say RUNNING as dtq's does. It
    costs one more backend write and PUBLISH per task, which dtq also pays (its store records the
    RUNNING transition).
- "lean": as durable (acks late: no task is lost with its worker), but no STARTED state (`status`
  says PENDING until the end) and Celery's default prefetch of 4 per slot. The fastest measured
  (2026-12-07, 3 interleaved rounds, shared host): server CPU 1.9 ms/job against durable's 3.0. Two
  causes: STARTED costs a backend write + PUBLISH per task and a second result message for the
  clients; and with prefetch 1 and acks late, the threads pool's acks do not wake the worker's event
  loop (Celery #6941, #7718), so a freed slot can wait for its next message. `dtq bench` measures
  durable and lean and compares dtq with the better one: an end-to-end figure never reads RUNNING.
- "default": Celery's own defaults for those four settings (ack on receipt, so a task whose worker
  dies is lost; prefetch 4 per slot; no STARTED state): what most deployments run; measured no
  faster than lean.
Every profile:
- `result_expires`: results carry a TTL (DTQ_BASELINE_RESULT_EXPIRES, 1 h), so the backend does not grow
  without bound (Celery #7801). Redis applies it natively (SETEX), no beat process is needed.
- JSON only: the payloads are JSON text, and no pickle ever crosses the broker.

Failures mirror dtq's defaults: `fail` retries a retryable failure up to 3 attempts in all, with
exponential backoff 0.5 s x 2^n capped at 30 s; bad JSON fails at once. Every task returns
{"attempts": n, "output": text} and a final failure is `JobFailed(message, attempts)`, so a client can
report attempts without Celery's extended result metadata.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from typing import Any

from celery import Celery
from celery.backends.redis import RedisBackend

QUEUE = "dtq-baseline"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
MAX_ATTEMPTS = 3  # model.config.CoreConfig.default_max_attempts
INITIAL_BACKOFF = 0.5  # CoreConfig.default_initial_backoff
MAX_BACKOFF = 30.0  # CoreConfig.default_max_backoff
_MAX_SECONDS = 24 * 3600.0

# the worker settings that differ between the two profiles (see the module docstring)
PROFILES: dict[str, dict[str, Any]] = {
    "durable": {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_track_started": True,
        "worker_prefetch_multiplier": 1,
    },
    "lean": {
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_track_started": False,
        "worker_prefetch_multiplier": 4,
    },
    "default": {
        "task_acks_late": False,
        "task_reject_on_worker_lost": False,
        "task_track_started": False,
        "worker_prefetch_multiplier": 4,
    },
}
DEFAULT_PROFILE = "durable"


def profile_settings(name: str | None = None) -> dict[str, Any]:
    """The settings of profile `name` (default: DTQ_BASELINE_CELERY_PROFILE, else "durable")."""
    name = name or os.environ.get("DTQ_BASELINE_CELERY_PROFILE") or DEFAULT_PROFILE
    if name not in PROFILES:
        raise ValueError(f"unknown Celery baseline profile {name!r}; known: {sorted(PROFILES)}")
    return dict(PROFILES[name])


def task_name(job_type: str) -> str:
    return f"dtq.{job_type}"


class JobFailed(Exception):
    """The job's final failure. args = (message, attempts): JSON-serialisable, read back by the client."""


class ClientRedisBackend(RedisBackend):  # type: ignore[misc]
    """The client side's result backend: it does not subscribe to each task's result channel on send.

    Celery's client subscribes a synchronous pub/sub connection to every task it sends and drains it
    only inside AsyncResult.get(); a load generator that never calls get() would let the messages pile
    up. CeleryTarget waits on its own asyncio pub/sub connection instead (the same channels).
    """

    def on_task_call(self, producer: Any, task_id: str) -> None:
        return None


def make_app(redis_url: str | None = None, *, client: bool = False) -> Celery:
    url = redis_url or os.environ.get("DTQ_BASELINE_REDIS_URL", DEFAULT_REDIS_URL)
    visibility = float(os.environ.get("DTQ_BASELINE_VISIBILITY_TIMEOUT", "300"))
    backend = f"{__name__}:ClientRedisBackend+{url}" if client else url
    app = Celery("dtq_baseline", broker=url, backend=backend, set_as_current=not client)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=QUEUE,
        **profile_settings(),
        result_expires=int(os.environ.get("DTQ_BASELINE_RESULT_EXPIRES", "3600")),
        broker_transport_options={
            "visibility_timeout": visibility,
            # kombu sweeps for expired unacked messages only every interval x throttle seconds
            # (10 x 10 by default): a quarter of the timeout, every time, bounds the extra delay
            "unacked_restore_interval": min(10.0, max(0.5, visibility / 4)),
            "unacked_restore_throttle": 1,
        },
        broker_connection_retry_on_startup=True,
        broker_pool_limit=int(os.environ.get("DTQ_BASELINE_POOL_LIMIT", "64")),
        worker_send_task_events=False,
        task_send_sent_event=False,
        worker_hijack_root_logger=False,
    )
    if not client:
        _register_tasks(app)
    return app


# ---------------------------------------------------------------------------- payload helpers
class _BadPayload(Exception):
    pass


def _args(job_type: str, payload: str) -> dict[str, Any]:
    if not payload.strip():
        return {}
    try:
        value = json.loads(payload)
    except ValueError as exc:
        raise _BadPayload(f"{job_type}: payload is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise _BadPayload(f"{job_type}: payload must be a JSON object, got {type(value).__name__}")
    return value


def _number(job_type: str, args: dict[str, Any], key: str, default: float, low: float, high: float) -> float:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _BadPayload(f"{job_type}: {key!r} must be a finite number")
    if not low <= value <= high:
        raise _BadPayload(f"{job_type}: {key!r} must be in [{low:g}, {high:g}]")
    return float(value)


def _done(task: Any, output: str = "") -> dict[str, Any]:
    return {"attempts": int(task.request.retries) + 1, "output": output}


def _burn(seconds: float) -> None:
    """CPU time of this thread, as dtq's `cpu` handler burns it: contention stretches the wall time."""
    end = time.thread_time() + seconds
    x = 0
    while time.thread_time() < end:
        for i in range(2000):
            x ^= i * i


def _parsed(task: Any, job_type: str, payload: str) -> tuple[dict[str, Any], float]:
    """The JSON args and their "seconds"; a bad payload fails the job at once, as in dtq."""
    try:
        args = _args(job_type, payload)
        return args, _number(job_type, args, "seconds", 0.0, 0.0, _MAX_SECONDS)
    except _BadPayload as exc:
        raise JobFailed(str(exc), int(task.request.retries) + 1) from None


def sleep_task(task: Any, payload: str) -> dict[str, Any]:
    _, seconds = _parsed(task, "sleep", payload)
    if seconds > 0:
        time.sleep(seconds)
    return _done(task)


def cpu_task(task: Any, payload: str) -> dict[str, Any]:
    _, seconds = _parsed(task, "cpu", payload)
    _burn(seconds)
    return _done(task)


def echo_task(task: Any, payload: str) -> dict[str, Any]:
    return _done(task, payload)


def fail_task(task: Any, payload: str) -> dict[str, Any]:
    args, seconds = _parsed(task, "fail", payload)
    attempt = int(task.request.retries) + 1
    try:
        probability = _number("fail", args, "probability", 1.0, 0.0, 1.0)
    except _BadPayload as exc:
        raise JobFailed(str(exc), attempt) from None
    retryable = args.get("retryable", True)
    if not isinstance(retryable, bool):
        raise JobFailed("fail: 'retryable' must be a boolean", attempt)
    # one stream per (job, attempt), never the global random state: a rerun gives the same verdict
    fails = random.Random(f"{task.request.id}:{attempt}").random() < probability
    if seconds > 0:
        time.sleep(seconds)
    if not fails:
        return _done(task)
    if retryable and attempt < MAX_ATTEMPTS:
        backoff = min(MAX_BACKOFF, INITIAL_BACKOFF * 2 ** (attempt - 1))
        raise task.retry(countdown=backoff, max_retries=MAX_ATTEMPTS - 1)
    raise JobFailed(f"fail: injected failure (probability {probability:g})", attempt)


TASKS = {"sleep": sleep_task, "cpu": cpu_task, "echo": echo_task, "fail": fail_task}
JOB_TYPES = tuple(TASKS)


def _register_tasks(app: Celery) -> None:
    for job_type, fn in TASKS.items():
        app.task(name=task_name(job_type), bind=True)(fn)


app = make_app()
