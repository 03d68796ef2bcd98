"""The gRPC services of a Design B node: TaskQueue (clients), Workers (external and peer workers)
and Peer (other nodes). Requests about one job go to its owner: served here, or forwarded once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import grpc

from dtq.v1 import (
    client_pb2,
    client_pb2_grpc,
    internal_pb2,
    internal_pb2_grpc,
    job_pb2,
    worker_pb2,
    worker_pb2_grpc,
)
from model.errors import DtqError, FailedPrecondition, InvalidArgument, NotFound
from model.ids import parse_job_id, route, split_by_owner
from model.job import Job
from model.listing import ListQuery, Page, decode_page_token, effective_page_size, merge_pages
from model.states import JobState
from model.workers import validate_worker_id
from realsys.coalesce import MAX_BATCH_ITEMS, item_error
from realsys.convert import (
    assignment_to_pb,
    fill_assignment_pb,
    from_duration,
    from_timestamp,
    heartbeat_response,
    job_to_pb,
    outcome_from_pb,
    query_from_pb,
    result_to_pb,
    running_from_pb,
    running_to_pb,
    spec_from_pb,
    status_to_pb,
    submit_response,
)
from realsys.logs import get_logger
from realsys.metrics import NodeMetrics
from realsys.mono.core import LocalCore
from realsys.mono.idempotency import IdempotentSubmits
from realsys.mono.peers import FORWARDED, PeerLinks, cap_wait, is_forwarded, remaining
from realsys.status import error_from_rpc, grpc_errors, unwrap_errors

log = get_logger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
RunningList = list[tuple[str, int]]


# ---------------------------------------------------------------------------- shared helpers
@dataclass(frozen=True, slots=True)
class Listed:
    """A protobuf Job as model.merge_pages sees it (sort key, state, create time)."""

    pb: job_pb2.Job

    @property
    def sort_key(self) -> tuple[float, str]:
        return (self.create_time, self.pb.job_id)

    @property
    def state(self) -> JobState:
        return JobState(self.pb.state)

    @property
    def create_time(self) -> float:
        return from_timestamp(self.pb.create_time)


def listed_bytes(item: Listed) -> int:
    """Its bytes in a ListJobsResponse: the message plus its field tag and length prefix."""
    return item.pb.ByteSize() + 8


def local_page(core: LocalCore, request: client_pb2.ListJobsRequest) -> tuple[ListQuery, Page[Job]]:
    query = query_from_pb(request.filter)
    return query, core.list_page(query, request.page_size, request.page_token)


async def heartbeat_owners(
    links: PeerLinks,
    worker_id: str,
    by_owner: dict[str, RunningList],
    context: Context | None = None,
) -> tuple[RunningList, RunningList]:
    """Renews leases of jobs owned by other nodes (stolen work) at their owners, concurrently.

    Sent with zero slots: the owner must not count a thief's free slots as its own when it decides
    how much to let others steal. An owner that does not answer is skipped (the worker keeps running
    the job; if the owner stays away, the lease expires there and the late report is refused).
    """

    async def one(owner: str, running: RunningList) -> worker_pb2.HeartbeatResponse:
        request = worker_pb2.HeartbeatRequest(
            worker_id=worker_id, total_slots=0, free_slots=0, running=running_to_pb(running)
        )
        stub = await links.workers(owner, context)
        response: worker_pb2.HeartbeatResponse = await stub.WorkerHeartbeat(
            request, timeout=links.timeout(context), metadata=FORWARDED
        )
        return response

    owners = list(by_owner)
    replies = await asyncio.gather(*(one(o, by_owner[o]) for o in owners), return_exceptions=True)
    cancel: RunningList = []
    abandon: RunningList = []
    for owner, reply in zip(owners, replies, strict=True):
        if isinstance(reply, BaseException):
            if not isinstance(reply, grpc.RpcError | DtqError):
                raise reply
            log.warning("heartbeat to owner failed", extra={"owner": owner, "error": str(reply)})
            continue
        cancel.extend(running_from_pb(list(reply.cancel)))
        abandon.extend(running_from_pb(list(reply.abandon)))
    return cancel, abandon


def _wellformed(job_id: str) -> bool:
    try:
        parse_job_id(job_id)
    except InvalidArgument:
        return False
    return True


def route_known(links: PeerLinks, job_id: str, node: str, context: Context) -> str | None:
    """model.ids.route, plus: an id naming a node outside the cluster is an unknown job (NOT_FOUND,
    as Design A answers), not an unreachable peer."""
    owner = route(job_id, node, is_forwarded(context))
    if owner is not None and owner not in links.addresses:
        raise NotFound(f"job {job_id} not found: its owner {owner} is not a node of this cluster")
    return owner


# ---------------------------------------------------------------------------- TaskQueue
class TaskQueueService(client_pb2_grpc.TaskQueueServicer):
    def __init__(
        self, core: LocalCore, links: PeerLinks, metrics: NodeMetrics, idempotent: IdempotentSubmits
    ) -> None:
        self.core = core
        self.links = links
        self.metrics = metrics
        self.idempotent = idempotent
        self._relayed: set[Any] = set()  # long-poll calls relayed to an owner (grpc.aio calls)
        self._cut: set[Any] = set()  # of those, the ones a drain cancelled

    @property
    def node(self) -> str:
        return self.core.node

    def _owner(self, job_id: str, context: Context) -> str | None:
        return route_known(self.links, job_id, self.node, context)

    async def _at_owner(self, method: str, request: Any, context: Context, wait: float | None = None) -> Any:
        """The owner's answer when another node owns request.job_id (the call relayed once, after
        the relay rules pass a long-poll's `wait`); None when this node owns the job."""
        owner = self._owner(request.job_id, context)
        if owner is None:
            return None
        if wait is not None:
            self.core.driver.check_relay(wait)
        return await self._forward(owner, method, request, context, wait or 0.0)

    async def _forward(
        self, node: str, method: str, request: Any, context: Context, wait: float = 0.0
    ) -> Any:
        """Sends the call on, once, to the node that must answer it (marked so it goes no further).

        A relayed long-poll is cut when this node starts draining: its caller gets UNAVAILABLE with
        a retry-after of 0 and asks another node, instead of CANCELLED when the server stops."""
        self.metrics.forwarded.inc()
        stub = await self.links.task_queue(node, context)
        started = time.perf_counter()
        call = getattr(stub, method)(request, timeout=self.links.timeout(context, wait), metadata=FORWARDED)
        if wait <= 0:
            try:
                return await call
            finally:
                self.metrics.observe_hop(node, method, time.perf_counter() - started)
        self._relayed.add(call)
        try:
            return await call
        except asyncio.CancelledError:
            if call not in self._cut:
                raise
            raise self.core.driver.relay_cut() from None
        finally:
            self._relayed.discard(call)
            self._cut.discard(call)
            self.metrics.observe_hop(node, method, time.perf_counter() - started)

    def start_draining(self) -> None:
        """Cuts the long-polls this node relays to other owners (see _forward)."""
        for call in list(self._relayed):
            self._cut.add(call)
            call.cancel()

    @grpc_errors
    async def SubmitJob(
        self, request: client_pb2.SubmitJobRequest, context: Context
    ) -> client_pb2.SubmitJobResponse:
        # checked first: a bad wait makes no job
        wait = (
            from_duration(request.wait_timeout, "wait_timeout") if request.HasField("wait_timeout") else 0.0
        )
        # The node that accepts a job owns it. A submit with a request_id is accepted by one of that
        # key's two homes, so a retry sent to any node finds the original job (idempotency.py); one
        # without is kept here.
        if request.request_id:
            return await self.idempotent.submit(request, context, wait)
        result = self.core.submit(spec_from_pb(request.spec), request.request_id)
        job = result.job
        if wait > 0:  # synchronous invocation: the same wait as WaitJob's, on the record itself
            await self.core.wait_end(job, cap_wait(wait, remaining(context)))
        if self.core.uncommitted:  # answer once the state it shows is committed (core.py)
            await self.core.committed()
        return submit_response(job, self.node, result.deduplicated)

    @grpc_errors
    async def GetJobStatus(self, request: client_pb2.GetJobStatusRequest, context: Context) -> job_pb2.Job:
        forwarded: job_pb2.Job | None = await self._at_owner("GetJobStatus", request, context)
        if forwarded is not None:
            return forwarded
        record = self.core.get(request.job_id)
        if self.core.uncommitted:  # answer once the state it shows is committed (core.py)
            await self.core.committed()
        return status_to_pb(record, self.node, self.core.estimate(record))

    @grpc_errors
    async def GetJobResult(
        self, request: client_pb2.GetJobResultRequest, context: Context
    ) -> client_pb2.GetJobResultResponse:
        wait = from_duration(request.wait_timeout, "wait_timeout")
        response: client_pb2.GetJobResultResponse | None = await self._at_owner(
            "GetJobResult", request, context, wait
        )
        if response is not None:
            return response
        job = await self.core.wait_done(request.job_id, cap_wait(wait, remaining(context)))
        if self.core.uncommitted:  # answer once the state it shows is committed (core.py)
            await self.core.committed()
        if not job.done:
            raise FailedPrecondition(f"job {job.job_id} is {job.state.name}: it has no result yet")
        return result_to_pb(job, self.node, self.core.output_of(job))

    @grpc_errors
    async def WaitJob(self, request: client_pb2.WaitJobRequest, context: Context) -> job_pb2.Job:
        wait = from_duration(request.timeout, "timeout")
        forwarded: job_pb2.Job | None = await self._at_owner("WaitJob", request, context, wait)
        if forwarded is not None:
            return forwarded
        job = await self.core.wait_done(request.job_id, cap_wait(wait, remaining(context)))
        if self.core.uncommitted:  # answer once the state it shows is committed (core.py)
            await self.core.committed()
        return job_to_pb(job, self.node)

    @grpc_errors
    async def CancelJob(self, request: client_pb2.CancelJobRequest, context: Context) -> job_pb2.Job:
        forwarded: job_pb2.Job | None = await self._at_owner("CancelJob", request, context)
        if forwarded is not None:
            return forwarded
        cancelled = self.core.cancel(request.job_id)
        if self.core.uncommitted:  # answer once the state it shows is committed (core.py)
            await self.core.committed()
        return job_to_pb(cancelled, self.node)

    @grpc_errors
    async def ListJobs(
        self, request: client_pb2.ListJobsRequest, context: Context
    ) -> client_pb2.ListJobsResponse:
        """Scatter-gather: every node's first page after the cursor, merged (model.merge_pages).

        The token is the core's (filter fingerprint + last key), so any node can continue a listing
        another node started. A peer that does not answer fails the call (UNAVAILABLE): a page that
        silently lacks a node's jobs would break exactly-once pagination.
        """
        query = query_from_pb(request.filter)
        size = effective_page_size(request.page_size, self.core.config)
        decode_page_token(query, request.page_token)  # bad token or changed filter: refuse before fan-out
        scatter = client_pb2.ListJobsRequest()
        scatter.CopyFrom(request)
        scatter.page_size = size

        async def ask(peer: str) -> client_pb2.ListJobsResponse:
            response: client_pb2.ListJobsResponse = await (
                await self.links.peer(peer, context)
            ).ListLocalJobs(scatter, timeout=self.links.timeout(context))
            return response

        replies = await asyncio.gather(*(ask(p) for p in self.links.names), return_exceptions=True)
        if self.core.uncommitted:  # answer once the state it shows is committed (core.py)
            await self.core.committed()
        _, own = local_page(self.core, scatter)
        parts: list[Page[Listed]] = [
            Page([Listed(job_to_pb(j, self.node)) for j in own.items], own.has_more, own.next_page_token)
        ]
        for reply in replies:
            if isinstance(reply, grpc.RpcError):
                raise error_from_rpc(reply) from reply
            if isinstance(reply, BaseException):
                raise reply
            parts.append(Page([Listed(j) for j in reply.jobs], bool(reply.next_page_token)))
        merged = merge_pages(query, parts, size, self.core.config.max_reply_bytes, listed_bytes)
        return client_pb2.ListJobsResponse(
            jobs=[item.pb for item in merged.items], next_page_token=merged.next_page_token
        )


# ---------------------------------------------------------------------------- Workers
class WorkersService(worker_pb2_grpc.WorkersServicer):
    """For external workers attached to this node, and for peers' workers running stolen jobs."""

    def __init__(self, core: LocalCore, links: PeerLinks, metrics: NodeMetrics) -> None:
        self.core = core
        self.links = links
        self.metrics = metrics

    @grpc_errors
    async def WorkerHeartbeat(
        self, request: worker_pb2.HeartbeatRequest, context: Context
    ) -> worker_pb2.HeartbeatResponse:
        running = running_from_pb(list(request.running))
        local: RunningList = running
        remote: dict[str, RunningList] = {}
        strangers: RunningList = []  # attempts of jobs whose owner is no node of ours: abandon them
        if not is_forwarded(context):
            # a malformed id cannot be a job the worker holds: abandon it (as Design A's renewal does)
            # rather than refuse the heartbeat and let the worker's real leases lapse
            wellformed: RunningList = []
            for pair in running:
                (wellformed if _wellformed(pair[0]) else strangers).append(pair)
            local, remote = split_by_owner(self.core.node, wellformed)
            for owner in [o for o in remote if o not in self.links.addresses]:
                strangers += remote.pop(owner)
        # (a forwarded heartbeat names only this node's jobs; any other id is unknown here: abandon)
        renewal = self.core.heartbeat(request.worker_id, request.total_slots, request.free_slots, local)
        cancel, abandon = list(renewal.cancel), list(renewal.abandon) + strangers
        if remote:
            self.metrics.forwarded.inc(len(remote))
            more_cancel, more_abandon = await heartbeat_owners(self.links, request.worker_id, remote, context)
            cancel += more_cancel
            abandon += more_abandon
        config = self.core.config
        if self.core.uncommitted:  # answer once the state it shows is committed (core.py)
            await self.core.committed()
        return heartbeat_response(cancel, abandon, config.heartbeat_interval, config.lease_duration)

    @grpc_errors
    async def FetchWork(
        self, request: worker_pb2.FetchWorkRequest, context: Context
    ) -> worker_pb2.FetchWorkResponse:
        validate_worker_id(request.worker_id)  # before anything else, as Design A's coordinator does
        if request.free_slots < 0:
            raise InvalidArgument("free_slots must not be negative")
        response = worker_pb2.FetchWorkResponse()
        if request.reports:  # report-and-fetch: the reports first, each answered as ReportResult
            if len(request.reports) > MAX_BATCH_ITEMS:
                raise InvalidArgument(f"FetchWork carries at most {MAX_BATCH_ITEMS} reports")
            await self._report_items(request.reports, response.report_results, context, request.worker_id)
        wait = cap_wait(from_duration(request.wait_timeout, "wait_timeout"), remaining(context))
        assignments = await self.core.fetch(request.worker_id, request.free_slots, wait)
        if self.core.uncommitted:  # answer once the state it shows is committed (core.py)
            await self.core.committed()
        for a in assignments:
            fill_assignment_pb(response.assignments.add(), a, self.core.node)
        return response

    @grpc_errors
    async def ReportResult(
        self, request: worker_pb2.ReportResultRequest, context: Context
    ) -> worker_pb2.ReportResultResponse:
        # the checks in Design A's order (coordinator): worker id, outcome, attempt, job id
        validate_worker_id(request.worker_id)
        outcome = outcome_from_pb(request)
        if request.attempt < 1:
            raise InvalidArgument("attempt must be >= 1")
        owner = route_known(self.links, request.job_id, self.core.node, context)
        if owner is not None:
            self.metrics.forwarded.inc()
            stub = await self.links.workers(owner, context)
            started = time.perf_counter()
            try:
                response: worker_pb2.ReportResultResponse = await stub.ReportResult(
                    request, timeout=self.links.timeout(context), metadata=FORWARDED
                )
            finally:
                self.metrics.observe_hop(owner, "ReportResult", time.perf_counter() - started)
            return response
        job = self.core.report(request.worker_id, request.job_id, request.attempt, outcome)
        if self.core.uncommitted:  # answer once the state it shows is committed (core.py)
            await self.core.committed()
        return worker_pb2.ReportResultResponse(state=cast(job_pb2.JobState, int(job.state)))

    @grpc_errors
    async def ReportResults(
        self, request: worker_pb2.ReportResultsRequest, context: Context
    ) -> worker_pb2.ReportResultsResponse:
        """ReportResult for each report, answered one by one and in order (a worker with DTQ_BATCHING
        coalesces its reports into this call); a refused report fails alone, not the call."""
        if len(request.reports) > MAX_BATCH_ITEMS:
            raise InvalidArgument(f"ReportResults takes at most {MAX_BATCH_ITEMS} reports")
        response = worker_pb2.ReportResultsResponse()
        await self._report_items(request.reports, response.results, context)
        return response

    async def _report_items(
        self,
        reports: Sequence[worker_pb2.ReportResultRequest],
        items: Any,
        context: Context,
        worker_id: str | None = None,
    ) -> None:
        """Adds to `items` each report's verdict, as ReportResult would answer it: the job's state, or
        the refusal's code and message. `worker_id`: the fetching worker's, which a carried report
        must name."""
        report_one = unwrap_errors(self.ReportResult)  # its errors are the item's, not the call's
        assert report_one is not None
        for report in reports:
            item = items.add()
            try:
                if worker_id is not None and report.worker_id != worker_id:
                    raise InvalidArgument("a carried report must name the fetching worker")
                item.state = (await report_one(report, context)).state
            except grpc.aio.AioRpcError as exc:  # forwarded to the job's owner
                item.code, item.message, _ = item_error(error_from_rpc(exc))
            except DtqError as exc:
                item.code, item.message, _ = item_error(exc)


# ---------------------------------------------------------------------------- Peer
class PeerService(internal_pb2_grpc.PeerServicer):
    def __init__(self, core: LocalCore, idempotent: IdempotentSubmits) -> None:
        self.core = core
        self.idempotent = idempotent

    @grpc_errors
    async def FindRequest(
        self, request: internal_pb2.FindRequestRequest, context: Context
    ) -> internal_pb2.FindRequestResponse:
        found = self.idempotent.find(request.request_id)
        if self.core.uncommitted:  # answer once the state it shows is committed (core.py)
            await self.core.committed()
        return internal_pb2.FindRequestResponse(found=found)

    @grpc_errors
    async def RecordRequest(
        self, request: internal_pb2.RecordRequestRequest, context: Context
    ) -> internal_pb2.RecordRequestResponse:
        self.idempotent.record(request.request_id, request.job)
        return internal_pb2.RecordRequestResponse()

    @grpc_errors
    async def ListLocalJobs(
        self, request: client_pb2.ListJobsRequest, context: Context
    ) -> client_pb2.ListJobsResponse:
        _, page = local_page(self.core, request)
        if self.core.uncommitted:  # answer once the state it shows is committed (core.py)
            await self.core.committed()
        return client_pb2.ListJobsResponse(
            jobs=[job_to_pb(j, self.core.node) for j in page.items], next_page_token=page.next_page_token
        )

    @grpc_errors
    async def StealWork(
        self, request: internal_pb2.StealWorkRequest, context: Context
    ) -> worker_pb2.FetchWorkResponse:
        assignments = self.core.steal(request.worker_id, request.max_jobs)
        if self.core.uncommitted:  # answer once the state it shows is committed (core.py)
            await self.core.committed()
        if assignments:  # debug: under load this is once per steal, a hot path
            log.debug(
                "work stolen",
                extra={"thief": request.thief_node, "worker_id": request.worker_id, "jobs": len(assignments)},
            )
        return worker_pb2.FetchWorkResponse(
            assignments=[assignment_to_pb(a, self.core.node) for a in assignments]
        )

    @grpc_errors
    async def QueueDepth(
        self, request: internal_pb2.QueueDepthRequest, context: Context
    ) -> internal_pb2.QueueDepthResponse:
        # a draining node still hands its ready work out: thieves help empty it
        return internal_pb2.QueueDepthResponse(node=self.core.node, ready=self.core.ready_count)
