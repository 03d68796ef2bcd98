"""Design A gateway: serves the client API (TaskQueue) and holds no state of its own.

Every call becomes one call to the job service, except GetJobResult: the job service says whether the
job is done and which attempt won, and for a success the result service has its output under
(job, attempt). Failures and cancellations carry their error in the job record itself: a failure by
lease expiry or timeout never reached a worker's report, so the result service has nothing for it.

With DTQ_BATCHING=on, submits without a wait go coalesced (CreateJobs), and the gateway subscribes to
job ends (WatchJobs): a WaitJob for a job it created while subscribed is answered here, from the
pushed notice, without a second hop. Anything it cannot vouch for (the stream broke, a job made
elsewhere or before the subscription, a notice dropped from the bounded table) is forwarded as before.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import grpc

from dtq.v1 import client_pb2, client_pb2_grpc, internal_pb2, internal_pb2_grpc, job_pb2
from model.errors import DtqError, FailedPrecondition
from model.states import JobState
from realsys.coalesce import Coalescer, error_of_item, message_coalescer
from realsys.config import NodeConfig
from realsys.convert import from_duration, to_duration
from realsys.decoding import add_servicer
from realsys.metrics import NodeMetrics
from realsys.micro.base import (
    MAX_POLL,
    Context,
    MicroRole,
    hop_timeout,
    make_stub,
    park,
    poll_budget,
    rpc_code,
    settle,
)
from realsys.status import grpc_errors


class GatewayRole(MicroRole, client_pb2_grpc.TaskQueueServicer):
    service_names = ("dtq.v1.TaskQueue",)
    calls = ("job", "result")

    def __init__(self, config: NodeConfig, metrics: NodeMetrics) -> None:
        super().__init__(config)
        self.metrics = metrics
        self._job: Any = None
        self._result: Any = None
        self._watch = _Watch()
        # DTQ_BATCHING=on: submits without a wait go to the job service coalesced, as CreateJobs
        self._creates: Coalescer[client_pb2.SubmitJobRequest, client_pb2.SubmitJobResponse] | None = None
        if config.batching == "on":
            self._creates = message_coalescer("CreateJobs", self._create_jobs, config.core.max_reply_bytes)

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
        if self._creates is not None and wait <= 0:
            return await self._creates.call(request)
        response: client_pb2.SubmitJobResponse = await self.job.CreateJob(
            request, timeout=hop_timeout(self.config, context, wait=wait)
        )
        return response

    async def _create_jobs(
        self, requests: list[client_pb2.SubmitJobRequest]
    ) -> list[client_pb2.SubmitJobResponse | DtqError]:
        epoch = self._watch.epoch if self._watch.live else -1  # subscribed before these jobs exist
        reply = await self.job.CreateJobs(
            internal_pb2.CreateJobsRequest(requests=requests), timeout=self.config.rpc_timeout
        )
        results: list[client_pb2.SubmitJobResponse | DtqError] = []
        for r in reply.results:
            if r.HasField("error"):
                results.append(error_of_item(r.error.code, r.error.message, r.error.retry_after))
                continue
            if not r.response.deduplicated and not r.response.job.done:
                self._watch.created(r.response.job_id, epoch)
            results.append(r.response)
        return results

    async def start(self) -> None:
        await super().start()
        if self.config.batching == "on":
            self.spawn(self._follow(), "watch-jobs")

    async def _follow(self) -> None:
        """Keeps the WatchJobs subscription open; while it is down, every WaitJob is forwarded."""
        delay = 0.05
        while True:
            try:
                call = self.job.WatchJobs(internal_pb2.WatchJobsRequest())
                async for message in call:
                    if not self._watch.live:
                        self._watch.subscribed()
                        delay = 0.05
                    for notice in message.notices:
                        self._watch.ended(notice)
            except grpc.aio.AioRpcError as exc:
                self.log.info("WatchJobs ended; waits are forwarded", extra={"code": rpc_code(exc)})
            except Exception:  # anything else: log it, and subscribe again
                self.log.warning("WatchJobs failed; waits are forwarded", exc_info=True)
            finally:
                self._watch.lost()
            await asyncio.sleep(delay)
            delay = min(2 * delay, 1.0)

    async def close(self) -> None:
        if self._creates is not None:
            await self._creates.close()
        await super().close()

    @grpc_errors
    async def GetJobStatus(self, request: client_pb2.GetJobStatusRequest, context: Context) -> job_pb2.Job:
        response: job_pb2.Job = await self.job.GetJob(request, timeout=hop_timeout(self.config, context))
        return response

    @grpc_errors
    async def WaitJob(self, request: client_pb2.WaitJobRequest, context: Context) -> job_pb2.Job:
        wait = min(from_duration(request.timeout, "timeout"), MAX_POLL)
        watch = self._watch
        job_id = request.job_id
        if watch.live and job_id in watch.tracked:
            ended = watch.take(job_id)
            if ended is not None:
                return ended
            budget = poll_budget(wait, context)
            if budget > 0:
                loop = asyncio.get_running_loop()
                started = loop.time()
                future: asyncio.Future[bool] = loop.create_future()
                watch.add_waiter(job_id, future)
                try:
                    await park(future, budget)
                finally:
                    watch.waiter_gone(job_id, future)
                ended = watch.take(job_id)
                if ended is not None:
                    return ended
                # the wait ran out (the job service answers with the job as it is now), or the
                # subscription broke or the job is gone (the job service waits out the rest)
                wait = max(0.0, budget - (loop.time() - started))
                request = client_pb2.WaitJobRequest(job_id=job_id, timeout=to_duration(wait))
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


# The most jobs the gateway tracks (made while subscribed, end not yet heard) and the most ended jobs
# it keeps until their WaitJob comes; past either bound it forwards WaitJob as without a subscription.
MAX_TRACKED = 65536
MAX_ENDED = 8192


class _Watch:
    """What the WatchJobs subscription tells the gateway: the jobs made while it was live whose end
    it will hear of (`tracked`), the ended ones not yet asked for, and the parked WaitJob calls.
    `epoch` counts subscriptions: a job counts as tracked only if the subscription that was live
    when its CreateJobs call went out is still the live one."""

    def __init__(self) -> None:
        self.live = False
        self.epoch = 0
        self.tracked: set[str] = set()
        self._ended: OrderedDict[str, job_pb2.Job] = OrderedDict()
        self._waiters: dict[str, list[asyncio.Future[bool]]] = {}

    def subscribed(self) -> None:
        self.live = True

    def lost(self) -> None:
        """The stream ended: no job is vouched for any more; parked waits go ask the job service."""
        self.live = False
        self.epoch += 1
        self.tracked.clear()
        self._ended.clear()
        waiters, self._waiters = self._waiters, {}
        for futures in waiters.values():
            for future in futures:
                settle(future, False)

    def created(self, job_id: str, epoch: int) -> None:
        if self.live and epoch == self.epoch and len(self.tracked) < MAX_TRACKED:
            self.tracked.add(job_id)

    def ended(self, notice: internal_pb2.JobNotice) -> None:
        job_id = notice.job_id
        if job_id not in self.tracked:
            # its CreateJobs reply may still be on its way: keep the notice (bounded) for it
            if notice.HasField("job"):
                self._keep(job_id, notice.job)
            return
        if notice.HasField("job"):
            self._keep(job_id, notice.job)
        else:
            self.tracked.discard(job_id)  # gone already: WaitJob asks the job service
        for future in self._waiters.pop(job_id, ()):
            settle(future, True)

    def _keep(self, job_id: str, job: job_pb2.Job) -> None:
        self._ended[job_id] = job
        while len(self._ended) > MAX_ENDED:
            dropped, _ = self._ended.popitem(last=False)
            self.tracked.discard(dropped)

    def take(self, job_id: str) -> job_pb2.Job | None:
        """The ended job, once: a later WaitJob for it is forwarded."""
        job = self._ended.pop(job_id, None)
        if job is not None:
            self.tracked.discard(job_id)
        return job

    def add_waiter(self, job_id: str, future: asyncio.Future[bool]) -> None:
        self._waiters.setdefault(job_id, []).append(future)

    def waiter_gone(self, job_id: str, future: asyncio.Future[bool]) -> None:
        futures = self._waiters.get(job_id)
        if futures is not None:
            if future in futures:
                futures.remove(future)
            if not futures:
                del self._waiters[job_id]
