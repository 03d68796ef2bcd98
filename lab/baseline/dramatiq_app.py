"""The Dramatiq app of the second peer baseline: a Redis broker, the Results middleware storing every
actor's return value in Redis, and actors for dtq's `echo` and `sleep` job types.

The worker runs `python -m dramatiq lab.baseline.dramatiq_app --processes P --threads T` (see
`dramatiq_runner.DramatiqCluster`) with DTQ_BASELINE_DRAMATIQ_WORKER=1: then the import builds the
broker from DTQ_BASELINE_REDIS_URL and makes it the global one, as Dramatiq's CLI expects. Clients build their
own with `make_broker(url)` and enqueue messages by actor name (`message(...)`), so they run no task.

Settings (Dramatiq's defaults unless said): the Redis broker acknowledges a message after the actor
ran (a killed worker's messages come back once its heartbeat is older than `heartbeat_timeout`);
actors store their results (`store_results=True`, TTL DTQ_BASELINE_RESULT_EXPIRES s, 1 h as the
Celery baseline's) and do not retry (dtq's `echo` and `sleep` cannot fail). JSON only.
"""

from __future__ import annotations

import json
import math
import os
import time
from typing import Any

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends.redis import RedisBackend

QUEUE = "dtq-baseline"
JOB_TYPES = ("echo", "sleep")
_MAX_SECONDS = 24 * 3600.0


def actor_name(job_type: str) -> str:
    return f"dtq.{job_type}"


def result_ttl_ms() -> int:
    return int(float(os.environ.get("DTQ_BASELINE_RESULT_EXPIRES", "3600")) * 1000)


def echo(payload: str) -> str:
    return payload


def sleep(payload: str) -> str:
    """Sleeps for the payload's {"seconds": s} (0 for an empty payload); ValueError for a bad one."""
    seconds = 0.0
    if payload.strip():
        value = json.loads(payload)
        if not isinstance(value, dict):
            raise ValueError("sleep: payload must be a JSON object")
        seconds = value.get("seconds", 0.0)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
            raise ValueError("sleep: 'seconds' must be a finite number")
        if not 0.0 <= seconds <= _MAX_SECONDS:
            raise ValueError(f"sleep: 'seconds' must be in [0, {_MAX_SECONDS:g}]")
    if seconds > 0:
        time.sleep(seconds)
    return ""


def make_broker(redis_url: str) -> tuple[RedisBroker, RedisBackend]:
    """A broker with the Results middleware and the actors declared (a client needs them declared
    too: the middleware looks an enqueued message's actor up for its options)."""
    backend = RedisBackend(url=redis_url)
    broker = RedisBroker(url=redis_url)
    broker.add_middleware(Results(backend=backend, store_results=True, result_ttl=result_ttl_ms()))
    for job_type, fn in (("echo", echo), ("sleep", sleep)):
        declare = dramatiq.actor(
            actor_name=actor_name(job_type),
            queue_name=QUEUE,
            broker=broker,
            store_results=True,
            max_retries=0,
        )
        declare(fn)
    return broker, backend


def message(job_type: str, payload: str) -> dramatiq.Message[Any]:
    """The message a client enqueues for one job (the actor's default options)."""
    return dramatiq.Message(
        queue_name=QUEUE, actor_name=actor_name(job_type), args=(payload,), kwargs={}, options={}
    )


if os.environ.get("DTQ_BASELINE_DRAMATIQ_WORKER") == "1":  # the worker's import: the global broker
    broker, _ = make_broker(os.environ["DTQ_BASELINE_REDIS_URL"])
    dramatiq.set_broker(broker)
