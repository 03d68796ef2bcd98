"""Design A queue service: performs the queue-service driver (model/queue_service.py: a ReadyQueue
with reservations, Enqueue dedup, parked Reserve calls) with QueueEntries, gRPC and futures.

Rows are stored before the entries become visible: Enqueue stores what the driver says is new, then
pushes it, then answers and wakes parked Reserve calls.
"""

from __future__ import annotations

import asyncio
import time

import grpc

from dtq.v1 import internal_pb2, internal_pb2_grpc
from model.policies import queue_service_policy
from model.queue import QueueEntry
from model.queue_service import QueueService
from realsys.config import NodeConfig
from realsys.convert import from_duration, from_timestamp, to_timestamp
from realsys.decoding import add_servicer
from realsys.metrics import NodeMetrics
from realsys.micro.base import Clock, Context, StoredRole, park, poll_budget, settle
from realsys.status import grpc_errors
from realsys.storage import open_queue_entries
from realsys.timer import CoreTimer

Token = asyncio.Future[bool]


class QueueRole(StoredRole, internal_pb2_grpc.QueueServicer):
    service_names = ("dtq.v1.Queue",)

    def __init__(self, config: NodeConfig, metrics: NodeMetrics, *, clock: Clock = time.time) -> None:
        super().__init__(config, metrics, clock)
        self.store = self._store = open_queue_entries(config)
        policy = queue_service_policy(config.core.policy_settings)
        self.service: QueueService[Token] = QueueService(config.core.reservation_hold, policy)
        self.queue = self.service.queue
        self.service.restore(self.clock(), self.store.load_all())
        self._timer = CoreTimer(self.service.timer, self._on_timer)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        add_servicer(internal_pb2_grpc.add_QueueServicer_to_server, self, server)

    async def start(self) -> None:
        await super().start()
        self.metrics.set_sources(queue_depth=self._depth, oldest_pending_age=self._oldest_age)

    async def drain(self) -> None:
        await super().drain()
        _wake(self.service.start_draining())  # parked Reserve calls answer now

    # ------------------------------------------------------------------ Queue
    @grpc_errors
    async def Enqueue(
        self, request: internal_pb2.EnqueueRequest, context: Context
    ) -> internal_pb2.EnqueueResponse:
        now = self.clock()
        rows = self.service.new_rows(
            now,
            (
                (
                    pb.job_id,
                    pb.priority,
                    from_timestamp(pb.not_before) if pb.HasField("not_before") else 0.0,
                    pb.key,
                )
                for pb in request.entries
            ),
        )
        self.store.put(rows)  # durable before we answer: the job service then forgets the command
        woken, rearm = self.service.push(now, rows)
        if rearm:
            self._timer.arm()
        _wake(woken)
        return internal_pb2.EnqueueResponse(depth=len(self.queue))

    @grpc_errors
    async def Reserve(
        self, request: internal_pb2.ReserveRequest, context: Context
    ) -> internal_pb2.ReserveResponse:
        if request.ack_job_ids:  # acknowledgements carried by this call instead of an Ack call
            self.store.delete(self.service.ack(request.ack_job_ids))
        max_items = self.service.max_items(request.max_items)
        hold = self.service.hold(from_duration(request.hold, "hold"))
        wait = poll_budget(from_duration(request.wait_timeout, "wait_timeout"), context)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait
        taken: list[QueueEntry] = []
        while max_items:
            taken, rearm = self.service.reserve(self.clock(), max_items, hold)
            if rearm:
                self._timer.arm()  # the holds are new deadlines
            left = give_up - loop.time()
            if taken or left <= 0 or self.draining:
                break
            future: Token = loop.create_future()
            if not self.service.add_waiter(future):
                break
            try:
                await park(future, left)
            finally:
                self.service.waiter_gone(future)
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
        self.store.delete(self.service.ack(request.job_ids))
        return internal_pb2.AckResponse()

    @grpc_errors
    async def Stats(
        self, request: internal_pb2.QueueStatsRequest, context: Context
    ) -> internal_pb2.QueueStats:
        self._on_timer(self.clock())  # count due entries as ready even if the timer has not fired yet
        oldest = self.queue.oldest_ready_enqueue_time()
        return internal_pb2.QueueStats(
            ready=self.queue.ready_count,
            delayed=self.queue.delayed_count,
            reserved=self.queue.reserved_count,
            oldest_enqueue_time=to_timestamp(oldest),
        )

    # ------------------------------------------------------------------ internals
    def _on_timer(self, now: float) -> None:
        _wake(self.service.on_timer(now))

    def _depth(self) -> float:
        return self.queue.ready_count + self.queue.delayed_count

    def _oldest_age(self) -> float:
        return self.service.oldest_ready_age(self.clock())


def _wake(futures: list[Token]) -> None:
    for future in futures:
        settle(future, True)
