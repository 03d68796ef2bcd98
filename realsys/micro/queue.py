"""Design A queue service: a ReadyQueue persisted through QueueEntries.

Reserve hands entries out under a hold; an entry not acknowledged in time returns to the queue, so a
coordinator that dies between Reserve and LeaseJobs loses nothing. Reservations are not persisted: after
a restart every stored entry is ready again, and the job service's lease fence drops any that are stale.

Enqueue dedups by job id: an entry already waiting (ready or delayed) keeps its place in line when the
new one asks for the same priority and ready time; a reserved entry is always replaced, because its
reservation may belong to an attempt that has since ended.
"""

from __future__ import annotations

import asyncio
import time

import grpc

from dtq.v1 import internal_pb2, internal_pb2_grpc
from model.errors import InvalidArgument
from model.queue import QueueEntry, ReadyQueue
from realsys.config import NodeConfig
from realsys.convert import from_duration, from_timestamp, to_timestamp
from realsys.decoding import add_servicer
from realsys.metrics import NodeMetrics
from realsys.micro.base import Context, MicroRole, Waker, poll_budget
from realsys.status import grpc_errors
from realsys.storage import open_queue_entries
from realsys.timer import CoreTimer

MAX_HOLD = 300.0
MAX_ITEMS = 1000
MAX_JOB_ID_CHARS = 128


class QueueRole(MicroRole, internal_pb2_grpc.QueueServicer):
    service_names = ("dtq.v1.Queue",)

    def __init__(self, config: NodeConfig, metrics: NodeMetrics) -> None:
        super().__init__(config)
        self.metrics = metrics
        self.store = open_queue_entries(config)
        self.queue = ReadyQueue()
        now = time.time()
        for job_id, priority, not_before in self.store.load_all():
            self.queue.push(now, job_id, priority, not_before)
        self._waker = Waker()
        self._timer = CoreTimer(self.queue.next_deadline, self._on_timer)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        add_servicer(internal_pb2_grpc.add_QueueServicer_to_server, self, server)

    async def start(self) -> None:
        await super().start()
        self._timer.start()
        self.metrics.set_sources(queue_depth=self._depth, oldest_pending_age=self._oldest_age)

    async def drain(self) -> None:
        await super().drain()
        self._waker.wake()  # parked Reserve calls answer now instead of holding up shutdown

    async def close(self) -> None:
        self._timer.stop()
        await super().close()
        self.store.close()

    # ------------------------------------------------------------------ Queue
    @grpc_errors
    async def Enqueue(
        self, request: internal_pb2.EnqueueRequest, context: Context
    ) -> internal_pb2.EnqueueResponse:
        now = time.time()
        rows: list[tuple[str, int, float]] = []
        for pb in request.entries:
            if not pb.job_id or len(pb.job_id) > MAX_JOB_ID_CHARS:
                raise InvalidArgument("queue entries need a job_id of 1-128 characters")
            not_before = from_timestamp(pb.not_before) if pb.HasField("not_before") else 0.0
            if self.queue.has_waiting(now, pb.job_id, pb.priority, not_before):
                continue
            rows.append((pb.job_id, pb.priority, not_before))
        self.store.put(rows)  # durable before we answer: the job service then forgets the command
        for job_id, priority, not_before in rows:
            self.queue.push(now, job_id, priority, not_before)
        if rows:
            self._timer.poke()
            if self.queue.ready_count:
                self._waker.wake()
        return internal_pb2.EnqueueResponse(depth=len(self.queue))

    @grpc_errors
    async def Reserve(
        self, request: internal_pb2.ReserveRequest, context: Context
    ) -> internal_pb2.ReserveResponse:
        if request.max_items < 0:
            raise InvalidArgument("max_items must not be negative")
        max_items = min(request.max_items, MAX_ITEMS)
        hold = from_duration(request.hold, "hold") or self.config.core.reservation_hold
        hold = min(hold, MAX_HOLD)
        wait = poll_budget(from_duration(request.wait_timeout, "wait_timeout"), context)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait
        taken: list[QueueEntry] = []
        while max_items:
            taken = self.queue.reserve(time.time(), max_items, hold)
            left = give_up - loop.time()
            if taken or left <= 0 or self.draining:
                break
            await self._waker.wait(left)
        if taken:
            self._timer.poke()  # the holds are new deadlines
        return internal_pb2.ReserveResponse(
            entries=[
                internal_pb2.QueueEntry(
                    job_id=e.job_id, priority=e.priority, not_before=to_timestamp(e.not_before)
                )
                for e in taken
            ]
        )

    @grpc_errors
    async def Ack(self, request: internal_pb2.AckRequest, context: Context) -> internal_pb2.AckResponse:
        # Only reserved entries go: an entry replaced by a newer Enqueue since the reservation stays.
        acked = [job_id for job_id in request.job_ids if self.queue.ack(job_id)]
        self.store.delete(acked)
        return internal_pb2.AckResponse()

    @grpc_errors
    async def Stats(
        self, request: internal_pb2.QueueStatsRequest, context: Context
    ) -> internal_pb2.QueueStats:
        self._on_timer(time.time())  # count due entries as ready even if the timer has not fired yet
        oldest = self.queue.oldest_ready_enqueue_time()
        return internal_pb2.QueueStats(
            ready=self.queue.ready_count,
            delayed=self.queue.delayed_count,
            reserved=self.queue.reserved_count,
            oldest_enqueue_time=to_timestamp(oldest),
        )

    # ------------------------------------------------------------------ internals
    def _on_timer(self, now: float) -> None:
        if self.queue.handle_timer(now):
            self._waker.wake()

    def _depth(self) -> float:
        return self.queue.ready_count + self.queue.delayed_count

    def _oldest_age(self) -> float:
        oldest = self.queue.oldest_ready_enqueue_time()
        return 0.0 if oldest is None else max(0.0, time.time() - oldest)
