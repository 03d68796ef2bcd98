"""MonoNode: Design B's role. Six identical nodes; each runs a whole task queue in one process.

scheduler (model.Scheduler) + JobRecords      LocalCore: persistence, timer, long-poll wake-ups
TaskQueue / Workers / Peer servicers          services.py: forward to owners, scatter ListJobs
WorkerRuntime + InProcessBackend              backend.py: local work, else steal from peers
PeerLinks                                     peers.py: one channel per peer, hop deadlines
"""

from __future__ import annotations

from typing import Any

import grpc

from dtq.v1 import client_pb2, client_pb2_grpc, internal_pb2, internal_pb2_grpc, worker_pb2, worker_pb2_grpc
from model.errors import InvalidArgument
from realsys.config import NodeConfig
from realsys.decoding import add_servicer
from realsys.logs import get_logger
from realsys.metrics import NodeMetrics
from realsys.mono.backend import InProcessBackend
from realsys.mono.core import LocalCore
from realsys.mono.idempotency import IdempotentSubmits
from realsys.mono.peers import PeerLinks
from realsys.mono.services import PeerService, TaskQueueService, WorkersService
from realsys.security import internal_channel_security
from realsys.storage import open_job_records
from realsys.timer import CoreTimer
from realsys.trace_hooks import traced_backend
from realsys.worker import HandlerRegistry, WorkerRuntime, load_job_modules, registry

log = get_logger(__name__)

SERVICE_NAMES: tuple[str, ...] = (
    client_pb2.DESCRIPTOR.services_by_name["TaskQueue"].full_name,
    worker_pb2.DESCRIPTOR.services_by_name["Workers"].full_name,
    internal_pb2.DESCRIPTOR.services_by_name["Peer"].full_name,
)


class MonoNode:
    """One Design B node (server.Role). Jobs it accepts carry its name as their id prefix."""

    service_names: tuple[str, ...] = SERVICE_NAMES

    def __init__(
        self, config: NodeConfig, metrics: NodeMetrics, handlers: HandlerRegistry = registry
    ) -> None:
        if config.name not in config.peers:
            raise InvalidArgument(f"peers must list this node ({config.name}) too")
        self.config = config
        self.metrics = metrics
        self.worker_id = f"{config.name}-w"
        self.records = open_job_records(config)
        self.core = LocalCore(config.name, config.core, self.records, metrics)
        self.core.local_worker_id = self.worker_id
        restored = self.core.restore()
        if restored:
            log.info("restored jobs", extra={"jobs": restored})
        self.links = PeerLinks(
            config.name, config.peers, config.rpc_timeout, internal_channel_security(config.security)
        )
        self.backend = InProcessBackend(
            self.core, self.links, metrics, config.steal_interval, config.steal_fanout
        )
        self.runtime: WorkerRuntime | None = None
        if config.slots > 0:
            added = load_job_modules(config.job_modules)  # InvalidArgument: one line, exit 2
            if added:
                log.info("job types loaded", extra={"modules": list(config.job_modules), "types": added})
            self.runtime = WorkerRuntime(
                self.worker_id,
                config.slots,
                traced_backend(self.backend, config),
                handlers,
                heartbeat_interval=config.core.heartbeat_interval,
                fetch_wait=config.fetch_wait,
            )
            self.core.cancel_local = self.runtime.cancel  # push path for NotifyCancel
        self.timer = CoreTimer(self.core.driver.timer, self.core.on_timer)
        self.core.rearm = self.timer.arm
        self.idempotent = IdempotentSubmits(self.core, self.links, metrics)
        self.task_queue = TaskQueueService(self.core, self.links, metrics, self.idempotent)
        self.workers = WorkersService(self.core, self.links, metrics)
        self.peer = PeerService(self.core, self.idempotent)
        self._closed = False

    # ---------------------------------------------------------------- server.Role
    def add_to_server(self, server: grpc.aio.Server) -> None:
        # the generated add_*_to_server functions are untyped: call them through Any
        adders: list[tuple[Any, object]] = [
            (client_pb2_grpc.add_TaskQueueServicer_to_server, self.task_queue),
            (worker_pb2_grpc.add_WorkersServicer_to_server, self.workers),
            (internal_pb2_grpc.add_PeerServicer_to_server, self.peer),
        ]
        for add, servicer in adders:
            add_servicer(add, servicer, server)

    async def start(self) -> None:
        # Attempts the previous process's worker held died with it: requeue them now rather than
        # after their leases run out. Peers' workers (stolen jobs) keep their leases and may report.
        self.core.release_worker(self.worker_id)
        self.metrics.set_sources(
            queue_depth=lambda: len(self.core.scheduler.queue),
            oldest_pending_age=self.core.oldest_ready_age,
            jobs_by_state=lambda: {s.name: n for s, n in self.core.scheduler.jobs.count_by_state.items()},
        )
        self.links.open()
        self.timer.start()
        if self.runtime is not None:
            await self.runtime.start()

    async def drain(self) -> None:
        self.core.start_draining()  # long-polls return empty; no new local or stolen work
        self.task_queue.start_draining()  # long-polls relayed to other owners: UNAVAILABLE, ask elsewhere
        if self.runtime is not None:
            # server.py bounds the whole drain by drain_timeout: keep time for the release below
            await self.runtime.drain(0.8 * self.config.drain_timeout)
        # whatever did not finish in time goes back to the queue now (a peer may still steal it)
        self.core.release_worker(self.worker_id)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.core.start_draining()
        if self.runtime is not None:
            await self.runtime.stop()
        self.timer.stop()
        await self.idempotent.close()
        await self.links.close()
        self.records.close()
