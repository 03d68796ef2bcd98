"""GrpcWorkerBackend: a WorkerRuntime's backend that talks to a `Workers` service over gRPC
(Design A's coordinator, or a Design B node for an external worker).

One long-lived grpc.aio channel serves every call, with a reconnect backoff capped at a second
(realsys.config.RECONNECT_OPTIONS): gRPC's default grows to two minutes, and a restarted coordinator
would go on seeing "connection refused" from this worker for seconds after it was back. Every call
carries a deadline: `timeout`, and for FetchWork the long-poll wait plus `timeout`, so the server
answers before the call times out.
Errors are raised as core errors (realsys.status.error_from_rpc) so the runtime backs off, except an
ABORTED report: the attempt lost its lease meanwhile, which is logged and dropped.
"""

from __future__ import annotations

import logging
from typing import Any

import grpc

from dtq.v1 import worker_pb2, worker_pb2_grpc
from model.errors import DtqError, StaleAttempt
from model.job import Assignment, Outcome
from model.runtime import HeartbeatReply, Key
from realsys.client import channel_options, make_stub, rpc_error
from realsys.coalesce import Coalescer, error_of_item, message_coalescer
from realsys.convert import assignment_from_pb, from_duration, outcome_to_pb, running_to_pb, to_duration
from realsys.security import ChannelSecurity, open_aio_channel

log = logging.getLogger("dtq.worker")


class GrpcWorkerBackend:
    def __init__(
        self,
        address: str,
        timeout: float = 5.0,
        security: ChannelSecurity | None = None,
        *,
        batching: bool = False,
        max_report_bytes: int = 0,
    ) -> None:
        """`security`: TLS and the worker's token (security.worker_channel_security), read on first use.
        `batching`: reports go coalesced as ReportResults calls (realsys/coalesce.py), at most
        about `max_report_bytes` each (0: no byte budget)."""
        if timeout <= 0:
            raise ValueError("timeout must be > 0")
        self.address = address
        self.timeout = timeout
        self.security = security
        self._channel: grpc.aio.Channel | None = None
        self._stub: Any = None
        self._reports: Coalescer[worker_pb2.ReportResultRequest, None] | None = None
        if batching:
            self._reports = message_coalescer("ReportResults", self._report_batch, max_report_bytes)

    def _workers(self) -> Any:
        if self._stub is None:  # opened on first use: an aio channel belongs to the running loop
            self._channel = open_aio_channel(self.address, channel_options(), self.security)
            self._stub = make_stub(worker_pb2_grpc.WorkersStub, self._channel)
        return self._stub

    async def close(self) -> None:
        if self._reports is not None:
            await self._reports.close()
        channel, self._channel, self._stub = self._channel, None, None
        if channel is not None:
            await channel.close(None)

    async def heartbeat(
        self, worker_id: str, total_slots: int, free_slots: int, running: list[tuple[str, int]]
    ) -> HeartbeatReply:
        request = worker_pb2.HeartbeatRequest(
            worker_id=worker_id,
            total_slots=total_slots,
            free_slots=free_slots,
            running=running_to_pb(running),
        )
        try:
            response: worker_pb2.HeartbeatResponse = await self._workers().WorkerHeartbeat(
                request, timeout=self.timeout
            )
        except grpc.RpcError as exc:
            raise rpc_error(exc) from exc
        return HeartbeatReply(
            cancel=[(r.job_id, r.attempt) for r in response.cancel],
            abandon=[(r.job_id, r.attempt) for r in response.abandon],
            interval=from_duration(response.heartbeat_interval, "heartbeat_interval"),
            lease_duration=from_duration(response.lease_duration, "lease_duration"),
        )

    async def fetch(self, worker_id: str, free_slots: int, wait: float) -> list[Assignment]:
        request = worker_pb2.FetchWorkRequest(
            worker_id=worker_id, free_slots=free_slots, wait_timeout=to_duration(max(0.0, wait))
        )
        try:
            response: worker_pb2.FetchWorkResponse = await self._workers().FetchWork(
                request, timeout=max(0.0, wait) + self.timeout
            )
        except grpc.RpcError as exc:
            raise rpc_error(exc) from exc
        return [assignment_from_pb(a, worker_id) for a in response.assignments]

    async def fetch_and_report(
        self, worker_id: str, free_slots: int, wait: float, reports: tuple[tuple[Key, Outcome], ...]
    ) -> tuple[list[Assignment], list[DtqError | None]]:
        """FetchWork carrying `reports` (report-and-fetch): the assignments, and each report's verdict
        in order (a stale one counts as through: the server kept the truth, as in `report`). An older
        server answers no verdicts: the runtime then sends those reports on their own."""
        request = worker_pb2.FetchWorkRequest(
            worker_id=worker_id, free_slots=free_slots, wait_timeout=to_duration(max(0.0, wait))
        )
        for (job_id, attempt), outcome in reports:
            outcome_to_pb(outcome, request.reports.add(worker_id=worker_id, job_id=job_id, attempt=attempt))
        try:
            response: worker_pb2.FetchWorkResponse = await self._workers().FetchWork(
                request, timeout=max(0.0, wait) + self.timeout
            )
        except grpc.RpcError as exc:
            raise rpc_error(exc) from exc
        verdicts: list[DtqError | None] = []
        for ((job_id, attempt), _), item in zip(reports, response.report_results, strict=False):
            error = error_of_item(item.code, item.message) if item.code else None
            if isinstance(error, StaleAttempt):
                log.info("report of %s attempt %d is stale: %s", job_id, attempt, error.message)
                error = None
            verdicts.append(error)
        return [assignment_from_pb(a, worker_id) for a in response.assignments], verdicts

    async def report(self, worker_id: str, job_id: str, attempt: int, outcome: Outcome) -> None:
        request = worker_pb2.ReportResultRequest(worker_id=worker_id, job_id=job_id, attempt=attempt)
        outcome_to_pb(outcome, request)
        try:
            if self._reports is not None:
                await self._reports.call(request)
            else:
                await self._workers().ReportResult(request, timeout=self.timeout)
        except grpc.RpcError as exc:
            error = rpc_error(exc)
        except StaleAttempt as exc:
            error = exc
        else:
            return
        if isinstance(error, StaleAttempt):  # ABORTED: the lease moved on; the server kept the truth
            log.info("report of %s attempt %d is stale: %s", job_id, attempt, error.message)
            return
        raise error

    async def _report_batch(self, requests: list[worker_pb2.ReportResultRequest]) -> list[DtqError | None]:
        response: worker_pb2.ReportResultsResponse = await self._workers().ReportResults(
            worker_pb2.ReportResultsRequest(reports=requests), timeout=self.timeout
        )
        return [error_of_item(r.code, r.message) if r.code else None for r in response.results]
