"""DramatiqTarget: the load generator's Target for the Dramatiq + Redis baseline.

- submit: Dramatiq's own client (`broker.enqueue`: its message encoding and the Redis broker's Lua
  enqueue script), in a thread pool because it blocks, as CeleryTarget does with Celery's.
- wait: what `message.get_result(block=True)` does on the Redis result backend, a BRPOPLPUSH of the
  message's result key onto itself (the result stays for other readers), but on redis.asyncio so
  that a waiting client costs a connection, not a thread. No polling.
- status / result: the result key's first element (LINDEX), as a non-blocking get_result. Dramatiq
  keeps no state before the result: PENDING until then; SUCCEEDED or FAILED after.
- cancel / list: Dramatiq has neither: TargetError("UNIMPLEMENTED").
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis.asyncio as aioredis
from dramatiq.results import ResultFailure
from redis.exceptions import RedisError

from lab.baseline.dramatiq_app import JOB_TYPES, make_broker, message
from realsys.targets import TargetError

MAX_PAYLOAD_BYTES = 1 << 20  # model.config.CoreConfig.max_payload_bytes, as the Celery baseline


class DramatiqTarget:
    design = "dramatiq"

    def __init__(self, redis_url: str, *, submit_threads: int = 16) -> None:
        self.redis_url = redis_url
        self._broker, self._backend = make_broker(redis_url)
        self._pool = ThreadPoolExecutor(max(1, submit_threads), thread_name_prefix="dramatiq-submit")
        self._redis = aioredis.Redis.from_url(redis_url)
        self._keys: dict[str, str] = {}  # job id (message id) -> its result key
        self._done: dict[str, tuple[str, int]] = {}

    async def submit(self, job_type: str, payload: bytes) -> str:
        if job_type not in JOB_TYPES:
            raise TargetError("INVALID_ARGUMENT", f"unknown job type {job_type!r}; known: {JOB_TYPES}")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise TargetError("RESOURCE_EXHAUSTED", f"payload of {len(payload)} bytes is too large")
        msg = message(job_type, payload.decode("utf-8", "surrogateescape"))
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._broker.enqueue, msg)
        except Exception as exc:
            raise TargetError("UNAVAILABLE", f"enqueue failed: {exc!r}") from exc
        self._keys[msg.message_id] = self._backend.build_message_key(msg)
        return str(msg.message_id)

    def _key(self, job_id: str) -> str:
        key = self._keys.get(job_id)
        if key is None:  # the result key is derived from the message, which only the sender has
            raise TargetError("NOT_FOUND", f"job {job_id} was not submitted through this target")
        return key

    def _outcome(self, job_id: str, raw: bytes | str) -> tuple[str, int]:
        try:
            data = raw.encode() if isinstance(raw, str) else raw
            self._backend.unwrap_result(self._backend.encoder.decode(data))
            found = ("SUCCEEDED", 1)
        except ResultFailure:
            found = ("FAILED", 1)
        self._done[job_id] = found
        self._keys.pop(job_id, None)
        return found

    async def status(self, job_id: str) -> str:
        if job_id in self._done:
            return self._done[job_id][0]
        try:
            raw = await self._redis.lindex(self._key(job_id), 0)
        except (RedisError, OSError) as exc:
            raise TargetError("UNAVAILABLE", f"redis: {exc!r}") from exc
        return "PENDING" if raw is None else self._outcome(job_id, raw)[0]

    async def result(self, job_id: str) -> str:
        state = await self.status(job_id)
        if state == "PENDING":
            raise TargetError("FAILED_PRECONDITION", f"job {job_id} is {state}, not finished")
        return state

    async def list(self, page_size: int) -> int:
        raise TargetError("UNIMPLEMENTED", "Dramatiq cannot list messages")

    async def cancel(self, job_id: str) -> str:
        raise TargetError("UNIMPLEMENTED", "Dramatiq cannot cancel a message")

    async def wait(self, job_id: str, timeout: float) -> tuple[str, int]:
        if job_id in self._done:
            return self._done[job_id]
        key = self._key(job_id)
        # BRPOPLPUSH takes whole seconds (0 = forever): round up, as get_result's timeout does not
        seconds = max(1, int(-(-timeout // 1)))
        try:
            raw = await self._redis.brpoplpush(key, key, timeout=seconds)
        except (RedisError, OSError) as exc:
            raise TargetError("UNAVAILABLE", f"redis: {exc!r}") from exc
        return ("PENDING", 0) if raw is None else self._outcome(job_id, raw)

    async def close(self) -> None:
        await self._redis.aclose()
        await asyncio.get_running_loop().run_in_executor(None, self._shutdown_sync)

    def _shutdown_sync(self) -> None:
        self._pool.shutdown(wait=True)
        self._broker.close()


def target_spec(redis_url: str, submit_threads: int = 16) -> dict[str, Any]:
    """The realsys.targets.make_target mapping of a DramatiqTarget."""
    return {
        "factory": "lab.baseline.dramatiq_target:DramatiqTarget",
        "kwargs": {"redis_url": redis_url, "submit_threads": submit_threads},
    }
