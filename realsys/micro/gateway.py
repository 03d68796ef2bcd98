"""Design A gateway: serves the client API (TaskQueue) and holds no state of its own.

Every call becomes one call to the job service, except GetJobResult: the job service says whether the
job is done and which attempt won, and for a success the result service has its output under
(job, attempt). Failures and cancellations carry their error in the job record itself: a failure by
lease expiry or timeout never reached a worker's report, so the result service has nothing for it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import grpc

from dtq.v1 import client_pb2, client_pb2_grpc, internal_pb2, internal_pb2_grpc, job_pb2
from model.errors import FailedPrecondition
from model.states import JobState
from realsys.config import NodeConfig
from realsys.convert import from_duration
from realsys.decoding import add_servicer
from realsys.metrics import NodeMetrics
from realsys.micro.base import MAX_POLL, Context, MicroRole, hop_timeout, make_stub
from realsys.status import grpc_errors


class GatewayRole(MicroRole, client_pb2_grpc.TaskQueueServicer):
    service_names = ("dtq.v1.TaskQueue",)
    calls = ("job", "result")

    def __init__(self, config: NodeConfig, metrics: NodeMetrics) -> None:
        super().__init__(config)
        self.metrics = metrics
        self._job: Any = None
        self._result: Any = None

    def add_to_server(self, server: grpc.aio.Server) -> None:
        add_servicer(client_pb2_grpc.add_TaskQueueServicer_to_server, self, server)

    def on_channels(self, channels: Mapping[str, grpc.aio.Channel]) -> None:
        self._job = make_stub(internal_pb2_grpc.JobStoreStub, channels["job"])
        self._result = make_stub(internal_pb2_grpc.ResultStoreStub, channels["result"])

    @property
    def job(self) -> Any:
        assert self._job is not None, "GatewayRole.start() was not called"
        return self._job

    # ------------------------------------------------------------------ TaskQueue
    @grpc_errors
    async def SubmitJob(
        self, request: client_pb2.SubmitJobRequest, context: Context
    ) -> client_pb2.SubmitJobResponse:
        # with wait_timeout the job service waits for the job's end in CreateJob: still one hop
        wait = min(from_duration(request.wait_timeout, "wait_timeout"), MAX_POLL)
        response: client_pb2.SubmitJobResponse = await self.job.CreateJob(
            request, timeout=hop_timeout(self.config, context, wait=wait)
        )
        return response

    @grpc_errors
    async def GetJobStatus(self, request: client_pb2.GetJobStatusRequest, context: Context) -> job_pb2.Job:
        response: job_pb2.Job = await self.job.GetJob(request, timeout=hop_timeout(self.config, context))
        return response

    @grpc_errors
    async def WaitJob(self, request: client_pb2.WaitJobRequest, context: Context) -> job_pb2.Job:
        wait = min(from_duration(request.timeout, "timeout"), MAX_POLL)
        response: job_pb2.Job = await self.job.WaitJob(
            request, timeout=hop_timeout(self.config, context, wait=wait)
        )
        return response

    @grpc_errors
    async def CancelJob(self, request: client_pb2.CancelJobRequest, context: Context) -> job_pb2.Job:
        response: job_pb2.Job = await self.job.CancelJob(request, timeout=hop_timeout(self.config, context))
        return response

    @grpc_errors
    async def ListJobs(
        self, request: client_pb2.ListJobsRequest, context: Context
    ) -> client_pb2.ListJobsResponse:
        response: client_pb2.ListJobsResponse = await self.job.ListJobs(
            request, timeout=hop_timeout(self.config, context)
        )
        return response

    @grpc_errors
    async def GetJobResult(
        self, request: client_pb2.GetJobResultRequest, context: Context
    ) -> client_pb2.GetJobResultResponse:
        assert self._result is not None
        wait = min(from_duration(request.wait_timeout, "wait_timeout"), MAX_POLL)
        job: job_pb2.Job
        if wait > 0:
            job = await self.job.WaitJob(
                client_pb2.WaitJobRequest(job_id=request.job_id, timeout=request.wait_timeout),
                timeout=hop_timeout(self.config, context, wait=wait),
            )
        else:
            job = await self.job.GetJob(
                client_pb2.GetJobStatusRequest(job_id=request.job_id),
                timeout=hop_timeout(self.config, context),
            )
        if not job.done:
            raise FailedPrecondition(
                f"job {job.job_id} is {JobState(job.state).name}: it has no result until it finishes"
            )
        response = client_pb2.GetJobResultResponse(job=job)
        if JobState(job.state) is JobState.SUCCEEDED:
            try:
                stored = await self._result.GetResult(
                    internal_pb2.GetResultRequest(job_id=job.job_id, attempt=job.attempt),
                    timeout=hop_timeout(self.config, context),
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() is not grpc.StatusCode.NOT_FOUND:
                    raise
                # SUCCEEDED is recorded only after the result was stored: it was lost since (memory
                # store), or dropped beyond the result service's byte budget
                await context.abort(
                    grpc.StatusCode.DATA_LOSS,
                    f"the result of job {job.job_id} attempt {job.attempt} is missing from the result "
                    "store (lost with a memory store, or dropped beyond 2 x max_retained_bytes)",
                )
            response.response.output = stored.response.output
        elif job.HasField("error"):
            response.error.CopyFrom(job.error)
        return response
