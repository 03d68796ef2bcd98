"""Idempotent submits in Design B: a request_id's job stays unique, and submits stay available with
one node down.

Each key has two homes, `model.ids.request_homes(key, nodes) -> (primary, fallback)`, the same on
every node, and `model.ids.route_submit` decides what a node does with a keyed submit. Only a home
makes the key's job (and owns it):

* Any other node forwards the submit to the primary, or to the fallback when the primary is
  unreachable from it (suspected: connected before and not now, `PeerLinks.suspected`; or the
  forward fails with UNAVAILABLE). Both unreachable: UNAVAILABLE, and the client retries.
* The primary, when it holds no job for the key, asks the fallback (`Peer.FindRequest`) whether
  the fallback made one while the primary was unreachable; if so the submit is delivered there.
  Else (not found, or the fallback unreachable) the primary makes the job and then tells the
  fallback (`Peer.RecordRequest`, in the background), which keeps a copy of the job's view.
* The fallback forwards to the primary when it can reach it. Otherwise it answers with its copy
  when it has one (the job exists on the primary; its status waits for the primary's return), and
  makes the job itself only when it has neither.
* On each home, submits of one key are handled one at a time (an in-flight map). A FindRequest
  that reaches the fallback while it is handling the same key marks the key claimed: the primary is
  up and about to make the job, so the fallback forwards to it rather than make a second one.

Guarantee. While both homes of a key are up and can reach each other, every submit of the key,
sent to any node, concurrently or as a retry, ends in the one job (its first submit made it; the
others answer `deduplicated`). With one home down (killed, stopped past its keepalive, restarting)
submits of the key are accepted by the other. Two jobs for one key are possible only when
  (a) the two homes cannot reach each other while both accept submits of the key (a partition
      between them, or a home that hangs longer than the keepalive without dying and then carries
      on), each making a job on its side; or
  (b) a home fails after committing the key's job and before the record reached the fallback and
      the reply reached the client (a window of milliseconds: the record is sent as the reply is),
      and the client's retry reaches the other home while the first is down; or
  (c) the fallback restarts (its copies are kept in memory only) and then, before the primary is
      back, serves a retry of a key the primary made.
The fallback logs a warning ("request_id has a job on two nodes") when it learns of case (a) or
(b) from a record. With both homes down, submits of the key fail with UNAVAILABLE until one is back.
A copy names at most `REPLICA_LIMIT` keys per node (the newest).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from typing import Any

import grpc

from dtq.v1 import client_pb2, internal_pb2, job_pb2
from model.errors import Unavailable
from model.ids import route_submit
from model.job import Job
from realsys.convert import job_to_pb, spec_from_pb, submit_response
from realsys.logs import get_logger
from realsys.metrics import NodeMetrics
from realsys.mono.core import LocalCore
from realsys.mono.peers import FORWARDED, PeerLinks, cap_wait, is_forwarded, remaining
from realsys.security import DELIVER_KEY

log = get_logger(__name__)

Context = grpc.aio.ServicerContext[Any, Any]
# sent by a primary to the fallback that holds the key's job: answer from it, never forward again
DELIVER: tuple[tuple[str, str], ...] = (*FORWARDED, (DELIVER_KEY, "1"))
REPLICA_LIMIT = 100_000


def _delivered(context: Context) -> bool:
    return any(k == DELIVER_KEY and v == "1" for k, v in context.invocation_metadata() or ())


class IdempotentSubmits:
    """One node's part of the protocol in the module docstring (SubmitJob with a request_id, and the
    FindRequest / RecordRequest peer calls)."""

    def __init__(self, core: LocalCore, links: PeerLinks, metrics: NodeMetrics) -> None:
        self.core = core
        self.links = links
        self.metrics = metrics
        self._inflight: dict[str, asyncio.Future[None]] = {}
        self._claimed: set[str] = set()
        self._replicas: OrderedDict[str, bytes] = OrderedDict()  # key -> the primary's Job view
        self._background: set[asyncio.Task[None]] = set()

    @property
    def node(self) -> str:
        return self.core.node

    # ---------------------------------------------------------------- SubmitJob
    async def submit(
        self, request: client_pb2.SubmitJobRequest, context: Context, wait: float
    ) -> client_pb2.SubmitJobResponse:
        key = request.request_id
        route = route_submit(
            key,
            self.node,
            self.links.all_nodes,
            forwarded=is_forwarded(context),
            delivered=_delivered(context),
            suspected=[n for n in self.links.names if self.links.suspected(n)],
        )
        if route.role == "deliver":
            return await self._serve_here(request, context, wait)
        if route.role in ("primary", "fallback"):
            job = await self._existing(key)  # either home answers at once with the job it holds
            if job is not None:
                return await self._answer(job, True, context, wait)
        if route.role == "primary":
            return await self._as_primary(request, key, context, wait, route.fallback)
        if route.role == "fallback":
            return await self._as_fallback(request, key, context, wait, route.primary)
        if route.role == "misrouted":
            raise Unavailable(
                f"node {self.node} is no home of request_id {key!r} ({route.primary}, {route.fallback}): "
                "the nodes' peer lists disagree"
            )
        for home in route.forward_to:
            response = await self._forward(home, request, context, wait)
            if response is not None:
                return response
        raise Unavailable(
            f"both homes of request_id {key!r} ({route.primary}, {route.fallback}) are unreachable"
        )

    async def _as_primary(
        self, request: client_pb2.SubmitJobRequest, key: str, context: Context, wait: float, fallback: str
    ) -> client_pb2.SubmitJobResponse:
        self._begin(key)
        try:
            if fallback != self.node and await self._found_at(fallback, key, context):
                delivered = await self._forward(fallback, request, context, wait, DELIVER)
                if delivered is not None:
                    return delivered
                raise Unavailable(f"the job of request_id {key!r} is on {fallback}, unreachable now")
            job, made = self._make(request)
        finally:
            self._end(key)
        if made and fallback != self.node:
            self._record(fallback, key, job)
        return await self._answer(job, not made, context, wait)

    async def _as_fallback(
        self, request: client_pb2.SubmitJobRequest, key: str, context: Context, wait: float, primary: str
    ) -> client_pb2.SubmitJobResponse:
        self._begin(key)
        try:
            if not self.links.suspected(primary):
                response = await self._forward(primary, request, context, wait)
                if response is not None:
                    return response
            if key in self._claimed:  # the primary asked about the key meanwhile: it is up
                response = await self._forward(primary, request, context, wait)
                if response is not None:
                    return response
                raise Unavailable(f"request_id {key!r}: its primary home {primary} is making the job")
            # nothing awaited from here to _make: a FindRequest sees the job, or claims before it
            replica = self._replicas.get(key)
            if replica is not None:  # the primary made the job and is unreachable now
                copy = job_pb2.Job.FromString(replica)
                return client_pb2.SubmitJobResponse(job_id=copy.job_id, job=copy, deduplicated=True)
            job, made = self._make(request)
            if made:
                self.metrics.submit_failovers.inc()
                log.info("fallback home made a job", extra={"job_id": job.job_id, "primary": primary})
        finally:
            self._end(key)
        return await self._answer(job, not made, context, wait)

    async def _serve_here(
        self, request: client_pb2.SubmitJobRequest, context: Context, wait: float
    ) -> client_pb2.SubmitJobResponse:
        job = await self._existing(request.request_id)
        made = False
        if job is None:  # gone since the primary asked (retention): make it again, here
            job, made = self._make(request)
        return await self._answer(job, not made, context, wait)

    # ---------------------------------------------------------------- peer calls served
    def find(self, key: str) -> bool:
        """Peer.FindRequest: whether this node owns a job for `key`. A key this node is handling
        right now is claimed by the asker (the primary): see the module docstring."""
        if key in self._inflight:
            self._claimed.add(key)
        return self.core.scheduler.jobs.find_request(key) is not None

    def record(self, key: str, job: job_pb2.Job) -> None:
        """Peer.RecordRequest: keeps the primary's job view for `key` (the newest REPLICA_LIMIT keys)."""
        own = self.core.scheduler.jobs.find_request(key)
        if own is not None and own.job_id != job.job_id:
            log.warning(
                "request_id has a job on two nodes",
                extra={"request_id": key, "job_id": own.job_id, "other_job_id": job.job_id},
            )
        self._replicas[key] = job.SerializeToString()
        self._replicas.move_to_end(key)
        while len(self._replicas) > REPLICA_LIMIT:
            self._replicas.popitem(last=False)

    async def close(self) -> None:
        tasks, self._background = self._background, set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---------------------------------------------------------------- internals
    async def _existing(self, key: str) -> Job | None:
        """The key's job on this node, once no other submit of the key is being handled here."""
        while True:
            job = self.core.scheduler.jobs.find_request(key)
            pending = self._inflight.get(key)
            if job is not None or pending is None:
                return job
            await asyncio.shield(pending)

    def _begin(self, key: str) -> None:
        self._inflight[key] = asyncio.get_running_loop().create_future()

    def _end(self, key: str) -> None:
        self._claimed.discard(key)
        future = self._inflight.pop(key, None)
        if future is not None and not future.done():
            future.set_result(None)

    def _make(self, request: client_pb2.SubmitJobRequest) -> tuple[Job, bool]:
        result = self.core.submit(spec_from_pb(request.spec), request.request_id)
        return result.job, not result.deduplicated

    async def _answer(
        self, job: Job, deduplicated: bool, context: Context, wait: float
    ) -> client_pb2.SubmitJobResponse:
        if wait > 0:  # synchronous invocation: the same wait as WaitJob's, on the record itself
            await self.core.wait_end(job, cap_wait(wait, remaining(context)))
        if self.core.uncommitted:  # answer once the job is committed (core.py: group commit)
            await self.core.committed()
        return submit_response(job, self.node, deduplicated)

    async def _forward(
        self,
        home: str,
        request: client_pb2.SubmitJobRequest,
        context: Context,
        wait: float,
        metadata: tuple[tuple[str, str], ...] = FORWARDED,
    ) -> client_pb2.SubmitJobResponse | None:
        """The home's answer; None when the home cannot be reached (the call could not be sent, or
        failed with UNAVAILABLE). Other errors are the home's answer and propagate."""
        try:
            stub = await self.links.task_queue(home, context)
        except Unavailable:
            return None
        self.metrics.forwarded.inc()
        started = time.perf_counter()
        try:
            response: client_pb2.SubmitJobResponse = await stub.SubmitJob(
                request, timeout=self.links.timeout(context, wait), metadata=metadata
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.UNAVAILABLE:
                log.info("home unreachable", extra={"home": home, "error": exc.details()})
                return None
            raise
        finally:
            self.metrics.observe_hop(home, "SubmitJob", time.perf_counter() - started)
        return response

    async def _found_at(self, peer: str, key: str, context: Context) -> bool:
        """Whether `peer` owns a job for `key`; False when it cannot be reached."""
        if self.links.suspected(peer):
            return False
        started = time.perf_counter()
        try:
            stub = await self.links.peer(peer, context)
            reply: internal_pb2.FindRequestResponse = await stub.FindRequest(
                internal_pb2.FindRequestRequest(request_id=key), timeout=self.links.timeout(context)
            )
            self.metrics.observe_hop(peer, "FindRequest", time.perf_counter() - started)
        except Unavailable:
            return False
        except grpc.aio.AioRpcError as exc:
            if exc.code() is grpc.StatusCode.UNAVAILABLE:
                return False
            raise
        return reply.found

    def _record(self, fallback: str, key: str, job: Job) -> None:
        if self.links.suspected(fallback):
            return
        view = job_to_pb(job, self.node)
        task = asyncio.create_task(self._send_record(fallback, key, view), name=f"record-{key[:32]}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _send_record(self, fallback: str, key: str, view: job_pb2.Job) -> None:
        try:
            stub = await self.links.peer(fallback)
            await stub.RecordRequest(
                internal_pb2.RecordRequestRequest(request_id=key, job=view), timeout=self.links.timeout()
            )
        except (Unavailable, grpc.aio.AioRpcError) as exc:
            log.info("request record not delivered", extra={"fallback": fallback, "error": str(exc)})
