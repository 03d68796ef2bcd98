"""CeleryTarget: the load generator's Target for the Celery + Redis baseline.

- submit: Celery's own client (`app.send_task`: Celery's message protocol, kombu, the Redis broker),
  run in a thread pool because it blocks. The task id is chosen here, before sending, so that a result
  that arrives before `send_task` returns is not missed.
- status / result: one Redis GET of the task's result key, decoded by Celery's backend codec: what
  `AsyncResult(id).state` does, without a thread hop. Celery cannot tell an unknown id from a pending one.
- wait: no polling. The Redis result backend PUBLISHes every state it stores on the channel named after
  the result key; one asyncio pub/sub connection per target PSUBSCRIBEs to all of them and completes the
  waiters. This is the mechanism of `AsyncResult.get()` on this backend, but asyncio-native: get() would
  need a blocking thread per concurrent waiter and shares one synchronous pub/sub connection among them.
  (The client app's backend therefore does not subscribe per sent task: `ClientRedisBackend`.)
- cancel: `app.control.revoke` (a broadcast to the workers). It is asynchronous and cannot stop a task
  that already runs on the threads pool, so the answer is CANCELLING; a finished task is
  FAILED_PRECONDITION, as in dtq.
- list: Celery has no way to list tasks (the Redis backend only has keys per task):
  TargetError("UNIMPLEMENTED"). Baseline workloads must not include `list` in their mix.

State names (Celery -> dtq): PENDING, RECEIVED, RETRY -> PENDING (a retry waits in the queue, as a dtq
job waits for its backoff); STARTED -> RUNNING; SUCCESS -> SUCCEEDED; FAILURE, REJECTED -> FAILED;
REVOKED -> CANCELLED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from lab.baseline.celery_app import JOB_TYPES, QUEUE, make_app, task_name
from realsys.targets import TargetError

log = logging.getLogger(__name__)

STATE_NAMES = {
    "PENDING": "PENDING",
    "RECEIVED": "PENDING",
    "RETRY": "PENDING",
    "STARTED": "RUNNING",
    "SUCCESS": "SUCCEEDED",
    "FAILURE": "FAILED",
    "REJECTED": "FAILED",
    "REVOKED": "CANCELLED",
}
TERMINAL_STATES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
MAX_PAYLOAD_BYTES = 1 << 20  # model.config.CoreConfig.max_payload_bytes, so both reject the same
_RECONNECT_DELAY = 0.1


def state_name(celery_state: str) -> str:
    """The dtq state name of a Celery state (unknown custom states count as PENDING)."""
    return STATE_NAMES.get(celery_state, "PENDING")


def outcome(meta: dict[str, Any] | None) -> tuple[str, int]:
    """(dtq state name, attempts) from a decoded result record; attempts is 0 while not terminal."""
    if not meta:
        return "PENDING", 0
    state = state_name(str(meta.get("status", "PENDING")))
    if state not in TERMINAL_STATES:
        return state, 0
    result = meta.get("result")
    attempts = 1 if state == "FAILED" else 0
    if isinstance(result, dict):
        if isinstance(result.get("attempts"), int):  # our tasks' success value
            attempts = result["attempts"]
        elif result.get("exc_type") == "JobFailed":  # JobFailed(message, attempts)
            args = result.get("exc_message")
            if isinstance(args, list | tuple) and len(args) == 2 and isinstance(args[1], int):
                attempts = args[1]
    return state, attempts


class CeleryTarget:
    design = "celery"

    def __init__(self, redis_url: str, *, submit_threads: int = 16) -> None:
        self.redis_url = redis_url
        self._app = make_app(redis_url, client=True)
        self._app.conf.broker_pool_limit = max(1, submit_threads)
        self._backend = self._app.backend  # thread-local in Celery: use this one only on the loop
        key = self._backend.get_key_for_task("x")  # "celery-task-meta-x" (str or bytes by version)
        self._prefix = (key.decode() if isinstance(key, bytes) else str(key))[:-1]
        self._pool = ThreadPoolExecutor(max(1, submit_threads), thread_name_prefix="celery-submit")
        self._inline = submit_threads == 0
        self._redis = aioredis.Redis.from_url(redis_url)
        self._waiters: dict[str, list[asyncio.Future[tuple[str, int]]]] = {}
        self._submitted: set[str] = set()  # ours and not finished yet: the listener will see them
        self._finished: dict[str, tuple[str, int]] = {}
        self._listener: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()
        self._closed = False

    # ------------------------------------------------------------------ Target
    async def submit(self, job_type: str, payload: bytes) -> str:
        if job_type not in JOB_TYPES:
            raise TargetError("INVALID_ARGUMENT", f"unknown job type {job_type!r}; known: {JOB_TYPES}")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise TargetError("RESOURCE_EXHAUSTED", f"payload of {len(payload)} bytes is too large")
        await self._ensure_listening()
        # surrogateescape: any bytes survive the JSON message (built-in payloads are JSON text anyway)
        text = payload.decode("utf-8", "surrogateescape")
        job_id = str(uuid.uuid4())
        self._submitted.add(job_id)
        try:
            if self._inline:
                self._send(task_name(job_type), text, job_id)
            else:
                await asyncio.get_running_loop().run_in_executor(
                    self._pool, self._send, task_name(job_type), text, job_id
                )
        except Exception as exc:
            self._submitted.discard(job_id)
            raise TargetError("UNAVAILABLE", f"send_task failed: {exc!r}") from exc
        return job_id

    async def status(self, job_id: str) -> str:
        # always a Redis read, as AsyncResult(id).state is: a status request must cost what it costs
        return (await self._read(job_id))[0]

    async def result(self, job_id: str) -> str:
        state = await self.status(job_id)
        if state not in TERMINAL_STATES:
            raise TargetError("FAILED_PRECONDITION", f"job {job_id} is {state}, not finished")
        return state

    async def list(self, page_size: int) -> int:
        raise TargetError("UNIMPLEMENTED", "Celery cannot list tasks; leave `list` out of the request mix")

    async def cancel(self, job_id: str) -> str:
        state = await self.status(job_id)
        if state in TERMINAL_STATES:
            raise TargetError("FAILED_PRECONDITION", f"job {job_id} already finished ({state})")
        try:
            await asyncio.get_running_loop().run_in_executor(self._pool, self._app.control.revoke, job_id)
        except Exception as exc:
            raise TargetError("UNAVAILABLE", f"revoke failed: {exc!r}") from exc
        return "CANCELLING"

    async def wait(self, job_id: str, timeout: float) -> tuple[str, int]:
        if job_id in self._finished:
            return self._finished[job_id]
        await self._ensure_listening()
        future: asyncio.Future[tuple[str, int]] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(job_id, []).append(future)
        try:
            if job_id not in self._submitted:  # not sent by us: the listener may have missed it
                self._resolve(job_id, await self._read(job_id))
            return await asyncio.wait_for(asyncio.shield(future), timeout)
        except TimeoutError:
            return (await self._read(job_id))[0], 0
        finally:
            waiters = self._waiters.get(job_id, [])
            if future in waiters:
                waiters.remove(future)
                if not waiters:
                    del self._waiters[job_id]

    async def close(self) -> None:
        self._closed = True
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError, RedisError, OSError):
                await self._listener
        for futures in self._waiters.values():
            for f in futures:
                if not f.done():
                    f.set_exception(TargetError("UNAVAILABLE", "target closed"))
        self._waiters.clear()
        await self._redis.aclose()
        await asyncio.get_running_loop().run_in_executor(None, self._shutdown_sync)

    # ------------------------------------------------------------------ internals
    def _send(self, name: str, text: str, job_id: str) -> None:
        self._app.send_task(name, args=[text], task_id=job_id, queue=QUEUE)

    def _shutdown_sync(self) -> None:
        self._pool.shutdown(wait=True)
        self._app.close()  # closes the broker connection pool

    async def _read(self, job_id: str) -> tuple[str, int]:
        try:
            raw = await self._redis.get(self._prefix + job_id)
        except (RedisError, OSError) as exc:
            raise TargetError("UNAVAILABLE", f"redis: {exc!r}") from exc
        found = outcome(self._backend.decode(raw) if raw is not None else None)
        if found[0] in TERMINAL_STATES:
            self._resolve(job_id, found)
        return found

    def _resolve(self, job_id: str, found: tuple[str, int]) -> None:
        if found[0] not in TERMINAL_STATES:
            return
        self._submitted.discard(job_id)
        self._finished[job_id] = found
        for future in self._waiters.pop(job_id, []):
            if not future.done():
                future.set_result(found)

    async def _ensure_listening(self) -> None:
        if self._listener is not None:
            return
        async with self._start_lock:
            if self._listener is None:
                if self._closed:
                    raise TargetError("UNAVAILABLE", "target closed")
                try:
                    pubsub = await self._subscribe()
                except (RedisError, OSError) as exc:
                    raise TargetError("UNAVAILABLE", f"redis: {exc!r}") from exc
                self._listener = asyncio.create_task(self._listen(pubsub), name="celery-results")

    async def _subscribe(self) -> Any:
        """A pub/sub connection whose PSUBSCRIBE the server has confirmed: later results reach it."""
        pubsub = self._redis.pubsub()
        await pubsub.psubscribe(self._prefix + "*")
        while True:
            message = await pubsub.get_message(timeout=None)
            if message is not None and message["type"] == "psubscribe":
                return pubsub

    async def _listen(self, pubsub: Any) -> None:
        while not self._closed:
            try:
                while True:
                    message = await pubsub.get_message(timeout=None)
                    if message is not None and message["type"] == "pmessage":
                        self._on_message(message["channel"], message["data"])
            except (RedisError, OSError) as exc:
                log.warning("celery result listener lost redis (%r); reconnecting", exc)
            finally:
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()
            while not self._closed:
                await asyncio.sleep(_RECONNECT_DELAY)
                try:
                    pubsub = await self._subscribe()
                    break
                except (RedisError, OSError):
                    continue
            # results published while we were away: read what the waiters wait for
            for job_id in list(self._waiters):
                with contextlib.suppress(TargetError):
                    await self._read(job_id)

    def _on_message(self, channel: bytes, data: bytes) -> None:
        job_id = channel.decode(errors="replace")[len(self._prefix) :]
        if job_id not in self._submitted and job_id not in self._waiters:
            return  # another client's job (every client process hears every result)
        try:
            meta = self._backend.decode(data)
        except Exception:  # a foreign publisher on a matching channel: not ours to judge
            log.debug("undecodable result message ignored", exc_info=True)
            return
        if not isinstance(meta, dict):
            return
        job_id = str(meta.get("task_id", ""))
        found = outcome(meta)
        if found[0] in TERMINAL_STATES and (job_id in self._submitted or job_id in self._waiters):
            self._resolve(job_id, found)
