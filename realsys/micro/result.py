"""Design A result service: outcomes keyed by (job, attempt), so a stale attempt cannot overwrite the
winning one. The job service decides which attempt won; this service only stores bytes.

Retention: the same policy as the job table (model.jobs.Retention), timed from when each outcome was
stored: dropped result_ttl + RETENTION_GRACE after it, and the oldest first beyond 2 x max_retained_jobs
outcomes or 2 x max_retained_bytes of outputs (outcomes of lost attempts count too). The grace covers
the gap between storing an outcome and the job service recording the job as finished, so a result
never disappears before its job does (only the byte bound may drop it sooner: the job service does not
see output sizes). After a restart, stored outcomes are
timed from the restart (the store keeps no timestamps)."""

from __future__ import annotations

import time

import grpc

from dtq.v1 import internal_pb2, internal_pb2_grpc
from model.errors import InvalidArgument, NotFound
from model.job import CancelledByWorker, Failed, Succeeded
from model.jobs import Retention
from realsys.config import NodeConfig
from realsys.convert import error_from_pb
from realsys.decoding import add_servicer
from realsys.metrics import NodeMetrics
from realsys.micro.base import Context, MicroRole, job_error_pb
from realsys.status import grpc_errors
from realsys.storage import open_results
from realsys.timer import CoreTimer

RETENTION_GRACE = 60.0  # seconds past the job's own TTL (plus a lease): see the module docstring


class ResultRole(MicroRole, internal_pb2_grpc.ResultStoreServicer):
    service_names = ("dtq.v1.ResultStore",)

    def __init__(self, config: NodeConfig, metrics: NodeMetrics) -> None:
        super().__init__(config)
        self.metrics = metrics
        self.results = open_results(config)
        core = config.core
        ttl = core.result_ttl + core.lease_duration + RETENTION_GRACE if core.result_ttl > 0 else 0.0
        self.retention: Retention[tuple[str, int]] = Retention(
            ttl, 2 * core.max_retained_jobs, max_bytes=2 * core.max_retained_bytes
        )
        now = time.time()
        for key, size in self.results.stored_sizes():
            self.retention.add(now, key, size)
        self._timer = CoreTimer(self.retention.next_deadline, self._on_timer)
        self.expired = 0

    async def start(self) -> None:
        await super().start()
        self._timer.start()

    def _on_timer(self, now: float) -> None:
        expired = self.retention.expire(now)
        if expired:
            self.results.delete(expired)
            self.expired += len(expired)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        add_servicer(internal_pb2_grpc.add_ResultStoreServicer_to_server, self, server)

    async def close(self) -> None:
        self._timer.stop()
        await super().close()
        self.results.close()

    # ------------------------------------------------------------------ ResultStore
    @grpc_errors
    async def PutResult(
        self, request: internal_pb2.PutResultRequest, context: Context
    ) -> internal_pb2.PutResultResponse:
        _check_key(request.job_id, request.attempt)
        kind = request.WhichOneof("outcome")
        size = 0
        if kind == "response":
            size = len(request.response.output)
            self.results.put(request.job_id, request.attempt, Succeeded(request.response.output))
        elif kind == "error":
            self.results.put(request.job_id, request.attempt, Failed(error_from_pb(request.error)))
        else:
            raise InvalidArgument("PutResult needs an outcome: response or error")
        self.retention.add(time.time(), (request.job_id, request.attempt), size)
        self._timer.poke()
        return internal_pb2.PutResultResponse()

    @grpc_errors
    async def GetResult(
        self, request: internal_pb2.GetResultRequest, context: Context
    ) -> internal_pb2.GetResultResponse:
        _check_key(request.job_id, request.attempt)
        outcome = self.results.get(request.job_id, request.attempt)
        if outcome is None:
            raise NotFound(f"no result for job {request.job_id} attempt {request.attempt}")
        response = internal_pb2.GetResultResponse()
        if isinstance(outcome, Succeeded):
            response.response.output = outcome.output
        elif isinstance(outcome, Failed):
            response.error.CopyFrom(job_error_pb(outcome.error))
        else:
            assert isinstance(outcome, CancelledByWorker)
            response.error.message = "cancelled by client"
            response.error.reason = "CANCELLED"
        return response


def _check_key(job_id: str, attempt: int) -> None:
    if not job_id or len(job_id) > 128:
        raise InvalidArgument("job_id must be 1-128 characters")
    if attempt < 1:
        raise InvalidArgument("attempt must be >= 1")
