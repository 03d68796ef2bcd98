"""Design A worker role: a WorkerRuntime whose backend is the coordinator's Workers service.

It serves no API of its own (only health, added by the server). The worker id is its worker token's
name (else the role's name) with a random suffix, so a restarted process is a new worker: the
coordinator declares the old one lost and its attempts are requeued, instead of the new process
inheriting leases it knows nothing about.
"""

from __future__ import annotations

import secrets

import grpc

from realsys.config import NodeConfig
from realsys.metrics import NodeMetrics
from realsys.micro.base import MicroRole
from realsys.security import worker_channel_security
from realsys.trace_hooks import traced_backend
from realsys.worker import GrpcWorkerBackend, HandlerRegistry, WorkerRuntime, load_job_modules, registry


class WorkerRole(MicroRole):
    service_names: tuple[str, ...] = ()

    def __init__(
        self, config: NodeConfig, metrics: NodeMetrics, *, handlers: HandlerRegistry | None = None
    ) -> None:
        super().__init__(config)
        self.metrics = metrics
        address = config.services.get("coordinator", "")
        if not address:
            raise ValueError("the worker role needs DTQ_SERVICES to name the coordinator")
        load_job_modules(config.job_modules)  # the user's job types (DTQ_JOB_MODULES); one-line error
        # with a worker token, ids must carry its name (realsys/security.py: one worker cannot act as another)
        self.worker_id = f"{config.security.worker_name or config.name}-{secrets.token_hex(4)}"
        self.backend = GrpcWorkerBackend(
            address,
            timeout=config.rpc_timeout,
            security=worker_channel_security(config.security),
            batching=config.batching == "on",
            max_report_bytes=config.core.max_reply_bytes,
        )
        self.runtime = WorkerRuntime(
            self.worker_id,
            max(1, config.slots),
            traced_backend(self.backend, config),
            handlers or registry,
            heartbeat_interval=config.core.heartbeat_interval,
            fetch_wait=config.fetch_wait,
            carry_reports=config.batching == "on",  # report-and-fetch: reports ride FetchWork
        )

    def add_to_server(self, server: grpc.aio.Server) -> None:
        pass  # health only

    async def start(self) -> None:
        await super().start()
        await self.runtime.start()

    async def drain(self) -> None:
        await super().drain()
        # leave part of the shared drain budget for the server's own shutdown
        await self.runtime.drain(0.9 * self.config.drain_timeout)

    async def close(self) -> None:
        await self.runtime.stop()
        await self.backend.close()
        await super().close()
