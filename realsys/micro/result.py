"""Design A result service: outcomes keyed by (job, attempt), so a stale attempt cannot overwrite the
winning one. The job service decides which attempt won; this service only stores bytes."""

from __future__ import annotations

import grpc

from dtq.v1 import internal_pb2, internal_pb2_grpc
from model.errors import InvalidArgument, NotFound
from model.job import CancelledByWorker, Failed, Succeeded
from realsys.config import NodeConfig
from realsys.convert import error_from_pb
from realsys.metrics import NodeMetrics
from realsys.micro.base import Context, MicroRole, add_servicer, job_error_pb
from realsys.status import grpc_errors
from realsys.storage import open_results


class ResultRole(MicroRole, internal_pb2_grpc.ResultStoreServicer):
    service_names = ("dtq.v1.ResultStore",)

    def __init__(self, config: NodeConfig, metrics: NodeMetrics) -> None:
        super().__init__(config)
        self.metrics = metrics
        self.results = open_results(config)

    def add_to_server(self, server: grpc.aio.Server) -> None:
        add_servicer(internal_pb2_grpc.add_ResultStoreServicer_to_server, self, server)

    async def close(self) -> None:
        await super().close()
        self.results.close()

    # ------------------------------------------------------------------ ResultStore
    @grpc_errors
    async def PutResult(
        self, request: internal_pb2.PutResultRequest, context: Context
    ) -> internal_pb2.PutResultResponse:
        _check_key(request.job_id, request.attempt)
        kind = request.WhichOneof("outcome")
        if kind == "response":
            self.results.put(request.job_id, request.attempt, Succeeded(request.response.output))
        elif kind == "error":
            self.results.put(request.job_id, request.attempt, Failed(error_from_pb(request.error)))
        else:
            raise InvalidArgument("PutResult needs an outcome: response or error")
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
