"""Coalesced calls (DTQ_BATCHING, Design A): one hop's per-job calls sent as batch calls, and the
per-item errors those batch calls answer with.

A Coalescer sends an item at once when no batch call of its hop is in flight; while one is, later
items wait and go together as one call when it returns. At one caller it adds nothing; under load n
calls become about one. Used by the gateway (CreateJobs), the coordinator (CompleteAttempts) and a
worker's backend (ReportResults).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from google.protobuf.message import Message

from model.errors import ERROR_FOR_CODE, Code, DtqError, Unavailable

# The most items one batch call carries, the most batch calls of one hop in flight at once, and the
# most items waiting for a call (past it, callers get UNAVAILABLE).
MAX_BATCH_ITEMS = 64
MAX_BATCHES_IN_FLIGHT = 4
MAX_QUEUED_ITEMS = 4096

Item = TypeVar("Item")
Result = TypeVar("Result")
Request = TypeVar("Request", bound=Message)


class Coalescer(Generic[Item, Result]):
    """One hop's calls, coalesced (see the module docstring). `send(items)` makes the batch call and
    returns one result per item, in order: a value, or the DtqError that item alone failed with.
    When the whole call fails, every item of it fails with that exception (an AioRpcError is
    relayed with its code by grpc_errors). Bounds: at most `max_items` items and about `max_bytes`
    bytes (`size(item)`) per call (an item over the budget goes alone), `max_in_flight` calls at
    once, `max_queued` items waiting."""

    def __init__(
        self,
        name: str,
        send: Callable[[list[Item]], Awaitable[Sequence[Result | DtqError]]],
        *,
        size: Callable[[Item], int] | None = None,
        max_bytes: int = 0,
        max_items: int = MAX_BATCH_ITEMS,
        max_in_flight: int = MAX_BATCHES_IN_FLIGHT,
        max_queued: int = MAX_QUEUED_ITEMS,
    ) -> None:
        if max_items < 1 or max_in_flight < 1 or max_queued < 1:
            raise ValueError("a coalescer needs max_items, max_in_flight and max_queued >= 1")
        self.name = name
        self._send = send
        self._size = size
        self._max_bytes = max_bytes
        self._max_items = max_items
        self._max_in_flight = max_in_flight
        self._max_queued = max_queued
        self._queue: deque[tuple[Item, asyncio.Future[Result]]] = deque()
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.calls = 0  # batch calls made
        self.items = 0  # items they carried

    async def call(self, item: Item) -> Result:
        if len(self._queue) >= self._max_queued:
            raise Unavailable(f"{self.name}: {len(self._queue)} calls already wait for this hop", 0.05)
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._queue.append((item, future))
        self._start()
        return await future

    async def call_many(self, items: Sequence[Item]) -> list[Result | BaseException]:
        """Several items queued together (so they go in the same call when they fit), each answered
        on its own: its result, or the exception it failed with."""
        if len(self._queue) + len(items) > self._max_queued:
            raise Unavailable(f"{self.name}: {len(self._queue)} calls already wait for this hop", 0.05)
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Result]] = []
        for item in items:
            future: asyncio.Future[Result] = loop.create_future()
            self._queue.append((item, future))
            futures.append(future)
        self._start()
        return list(await asyncio.gather(*futures, return_exceptions=True))

    def _start(self) -> None:
        """Starts batch calls while items wait: one when none is in flight, more only while a full
        batch waits (so a burst is not held behind a single call)."""
        while self._queue and (
            self._in_flight == 0
            or (self._in_flight < self._max_in_flight and len(self._queue) >= self._max_items)
        ):
            batch = self._take()
            if not batch:
                continue  # every waiting caller had gone
            self._in_flight += 1
            task = asyncio.get_running_loop().create_task(self._run(batch), name=f"coalesce-{self.name}")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def _take(self) -> list[tuple[Item, asyncio.Future[Result]]]:
        batch: list[tuple[Item, asyncio.Future[Result]]] = []
        used = 0
        while self._queue and len(batch) < self._max_items:
            item, future = self._queue[0]
            if future.done():  # the caller gave up (its deadline): nothing to send for it
                self._queue.popleft()
                continue
            cost = self._size(item) if self._size is not None else 0
            if batch and self._max_bytes and used + cost > self._max_bytes:
                break
            self._queue.popleft()
            batch.append((item, future))
            used += cost
        return batch

    async def _run(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            self.calls += 1
            self.items += len(batch)
            try:
                results = await self._send([item for item, _ in batch])
            except asyncio.CancelledError:
                for _, future in batch:
                    future.cancel()
                raise
            except Exception as exc:  # the whole call failed: so did each of its items
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                return
            if len(results) != len(batch):
                error = Unavailable(f"{self.name}: {len(results)} results for {len(batch)} items")
                results = [error] * len(batch)
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if isinstance(result, DtqError):
                    future.set_exception(result)
                else:
                    future.set_result(result)
        finally:
            self._in_flight -= 1
            self._start()

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        while self._queue:
            _, future = self._queue.popleft()
            future.cancel()


def item_error(error: DtqError) -> tuple[str, str, float]:
    """A DtqError as one item's (code, message, retry_after; < 0: none) in a batched reply."""
    retry_after = getattr(error, "retry_after", None)
    return error.code.value, error.message, -1.0 if retry_after is None else float(retry_after)


def error_of_item(code: str, message: str, retry_after: float = -1.0) -> DtqError:
    """The DtqError one item of a batched reply failed with (its code, message and retry-after)."""
    try:
        kind = Code(code)
    except ValueError:
        return Unavailable(f"{message} ({code})")
    error = ERROR_FOR_CODE.get(kind, Unavailable)(message)
    if isinstance(error, Unavailable):
        error.retry_after = retry_after if retry_after >= 0 else None
    return error


def message_coalescer(
    name: str, send: Callable[[list[Request]], Awaitable[Sequence[Result | DtqError]]], max_bytes: int
) -> Coalescer[Request, Result]:
    """A hop of protobuf requests, coalesced: each sized by its encoding, about `max_bytes` a call
    (the gateway's CreateJobs, the coordinator's CompleteAttempts, a worker's ReportResults)."""
    return Coalescer(name, send, size=_encoded_size, max_bytes=max_bytes)


def _encoded_size(message: Message) -> int:
    return message.ByteSize()
