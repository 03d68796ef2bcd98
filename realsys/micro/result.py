"""Design A result service: outcomes keyed by (job, attempt), so a stale attempt cannot overwrite the
winning one. The job service decides which attempt won; this service only stores bytes. It performs
the result-service driver (model/result_service.py: retention of stored outcomes, timed from when each
was stored, by count and by output bytes; after a restart from the restart, as the store keeps no
timestamps)."""

from __future__ import annotations

import time

import grpc

from dtq.v1 import internal_pb2, internal_pb2_grpc
from model.errors import DtqError, InvalidArgument, NotFound
from model.job import CancelledByWorker, Failed, Succeeded
from model.result_service import ResultService, check_key
from realsys.coalesce import item_error
from realsys.config import NodeConfig
from realsys.convert import error_from_pb
from realsys.decoding import add_servicer
from realsys.metrics import NodeMetrics
from realsys.micro.base import Clock, Context, StoredRole, job_error_pb
from realsys.status import grpc_errors
from realsys.storage import open_results
from realsys.timer import CoreTimer


class ResultRole(StoredRole, internal_pb2_grpc.ResultStoreServicer):
    service_names = ("dtq.v1.ResultStore",)

    def __init__(self, config: NodeConfig, metrics: NodeMetrics, *, clock: Clock = time.time) -> None:
        super().__init__(config, metrics, clock)
        self.results = self._store = open_results(config)
        self.service = ResultService(config.core)
        self.retention = self.service.retention
        self.service.restore(self.clock(), self.results.stored_sizes())
        self._timer = CoreTimer(self.service.timer, self._on_timer)

    @property
    def expired(self) -> int:
        return self.service.expired

    def _on_timer(self, now: float) -> None:
        expired = self.service.on_timer(now)
        if expired:
            self.results.delete(expired)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        add_servicer(internal_pb2_grpc.add_ResultStoreServicer_to_server, self, server)

    # ------------------------------------------------------------------ ResultStore
    @grpc_errors
    async def PutResult(
        self, request: internal_pb2.PutResultRequest, context: Context
    ) -> internal_pb2.PutResultResponse:
        self._put(request)
        return internal_pb2.PutResultResponse()

    @grpc_errors
    async def PutResults(
        self, request: internal_pb2.PutResultsRequest, context: Context
    ) -> internal_pb2.PutResultsResponse:
        response = internal_pb2.PutResultsResponse()
        for one in request.results:
            error = response.errors.add()
            try:
                self._put(one)
            except DtqError as exc:
                error.code, error.message, error.retry_after = item_error(exc)
        return response

    def _put(self, request: internal_pb2.PutResultRequest) -> None:
        check_key(request.job_id, request.attempt)
        kind = request.WhichOneof("outcome")
        size = 0
        if kind == "response":
            size = len(request.response.output)
            self.results.put(request.job_id, request.attempt, Succeeded(request.response.output))
        elif kind == "error":
            self.results.put(request.job_id, request.attempt, Failed(error_from_pb(request.error)))
        else:
            raise InvalidArgument("PutResult needs an outcome: response or error")
        if self.service.stored(self.clock(), (request.job_id, request.attempt), size):
            self._timer.arm()

    @grpc_errors
    async def GetResult(
        self, request: internal_pb2.GetResultRequest, context: Context
    ) -> internal_pb2.GetResultResponse:
        check_key(request.job_id, request.attempt)
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
