"""The in-process WorkerBackend of a Design B node: its WorkerRuntime talks to the local Scheduler
directly (no gRPC inside a node), and steals from peers when it has nothing to do.

Stolen jobs stay owned by the victim: their heartbeats and reports go to the owner's Workers service
(the owner is the job-id prefix, model.ids.owner_of).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc
import numpy as np

from dtq.v1 import internal_pb2, worker_pb2
from model.errors import DtqError, StaleAttempt
from model.ids import owner_of, split_by_owner
from model.job import Assignment, Outcome
from model.runtime import HeartbeatReply
from model.stealing import (
    FETCH_LOCAL,
    AskDepths,
    StealFrom,
    StealPacer,
    StealPlan,
    WaitForWork,
    fetch_done,
    fetch_loop,
)
from realsys.convert import assignment_from_pb, outcome_to_pb
from realsys.logs import get_logger
from realsys.metrics import NodeMetrics
from realsys.mono.core import LocalCore
from realsys.mono.peers import FORWARDED, PeerLinks
from realsys.mono.services import heartbeat_owners
from realsys.status import error_from_rpc

log = get_logger(__name__)

RunningList = list[tuple[str, int]]


class InProcessBackend:
    def __init__(
        self,
        core: LocalCore,
        links: PeerLinks,
        metrics: NodeMetrics,
        steal_interval: float,
        steal_fanout: int = 0,
    ) -> None:
        self.core = core
        self.links = links
        self.metrics = metrics
        self.stolen = 0  # jobs this node's worker took from peers
        # when to poll peers and steal (model/stealing.py); peers drawn from fresh OS entropy
        rng = np.random.default_rng() if steal_fanout else None
        self.pacer = StealPacer(steal_interval, fanout=steal_fanout, rng=rng)

    # ---------------------------------------------------------------- WorkerBackend
    async def heartbeat(
        self, worker_id: str, total_slots: int, free_slots: int, running: RunningList
    ) -> HeartbeatReply:
        local, remote = split_by_owner(self.core.node, running)
        renewal = self.core.heartbeat(worker_id, total_slots, free_slots, local)
        cancel, abandon = list(renewal.cancel), list(renewal.abandon)
        if remote:
            more_cancel, more_abandon = await heartbeat_owners(self.links, worker_id, remote)
            cancel += more_cancel
            abandon += more_abandon
        config = self.core.config
        return HeartbeatReply(cancel, abandon, config.heartbeat_interval, config.lease_duration)

    async def fetch(self, worker_id: str, free_slots: int, wait: float) -> list[Assignment]:
        """Performs model.stealing.fetch_loop: local work first; once idle for steal_interval, steal
        (model.StealPacer says when); in between, wait for local work for at most the pacer's
        interval."""
        loop = asyncio.get_running_loop()
        core = self.core
        start = loop.time()
        got = core.fetch_now(worker_id, free_slots)
        if fetch_done(got, core.draining, free_slots):
            if core.uncommitted:  # the leases are committed before their jobs run (core.py)
                await core.committed()
            return got
        plan = fetch_loop(
            self.pacer,
            core.node,
            self.links.names,
            free_slots,
            wait,
            start,
            (loop.time(), got, core.draining),
            lambda: core.ready_count,
        )
        reply: Any = None
        while True:
            try:
                op = plan.send(reply)
            except StopIteration as done:
                assignments: list[Assignment] = done.value
                if core.uncommitted:
                    await core.committed()
                return assignments
            if op is FETCH_LOCAL:
                got = core.fetch_now(worker_id, free_slots)
                reply = (loop.time(), got, core.draining)
            elif isinstance(op, WaitForWork):
                await core.wait_for_work(worker_id, free_slots, op.timeout)
                reply = None
            elif isinstance(op, AskDepths):
                depths = await self._peer_depths(op.peers)
                reply = (loop.time(), depths)
            else:
                assert isinstance(op, StealFrom)
                stolen = await self._steal(worker_id, op.plan)
                reply = (loop.time(), stolen)

    async def report(self, worker_id: str, job_id: str, attempt: int, outcome: Outcome) -> None:
        owner = owner_of(job_id)
        try:
            if owner == self.core.node:
                self.core.report(worker_id, job_id, attempt, outcome)
            else:
                await self._report_to_owner(owner, worker_id, job_id, attempt, outcome)
        except StaleAttempt as exc:
            log.warning(
                "stale report dropped", extra={"job_id": job_id, "attempt": attempt, "error": exc.message}
            )

    async def _report_to_owner(
        self, owner: str, worker_id: str, job_id: str, attempt: int, outcome: Outcome
    ) -> None:
        """Reports a stolen job to its owner. An owner that is down (restarting) raises Unavailable:
        the runtime keeps the report and retries it while the attempt's lease holds (model/runtime.py);
        the owner persisted that lease, so the result still counts once it is back."""
        request = worker_pb2.ReportResultRequest(worker_id=worker_id, job_id=job_id, attempt=attempt)
        outcome_to_pb(outcome, request)
        try:
            stub = await self.links.workers(owner)
            await stub.ReportResult(request, timeout=self.links.timeout(), metadata=FORWARDED)
        except grpc.RpcError as exc:
            raise error_from_rpc(exc) from exc

    # ---------------------------------------------------------------- stealing
    async def _steal(self, worker_id: str, plan: StealPlan) -> list[Assignment] | None:
        """Peer.StealWork from the plan's victim; None: the call failed."""
        request = internal_pb2.StealWorkRequest(
            thief_node=self.core.node, worker_id=worker_id, max_jobs=plan.max_jobs
        )
        try:
            stub = await self.links.peer(plan.victim)
            started = time.perf_counter()
            response: worker_pb2.FetchWorkResponse = await stub.StealWork(
                request, timeout=self.links.timeout()
            )
            self.metrics.observe_hop(plan.victim, "StealWork", time.perf_counter() - started)
        except (grpc.RpcError, DtqError) as exc:
            log.info("steal failed", extra={"victim": plan.victim, "error": str(exc)})
            return None
        got = [assignment_from_pb(a, worker_id) for a in response.assignments]
        if got:
            self.stolen += len(got)
            self.metrics.stolen.inc(len(got))
        return got

    async def _peer_depths(self, names: list[str]) -> dict[str, int]:
        """The ready count of every peer the pacer asks this round (a down peer counts 0)."""
        timeout = min(self.links.rpc_timeout, max(self.pacer.steal_interval * 10, 0.5))

        async def ask(peer: str) -> int:
            response: internal_pb2.QueueDepthResponse = await self.links.peer_nowait(peer).QueueDepth(
                internal_pb2.QueueDepthRequest(), timeout=timeout
            )
            return response.ready

        replies = await asyncio.gather(*(ask(p) for p in names), return_exceptions=True)
        depths: dict[str, int] = {}
        for peer, reply in zip(names, replies, strict=True):
            if isinstance(reply, BaseException):
                if not isinstance(reply, grpc.RpcError | DtqError):
                    raise reply
                depths[peer] = 0
            else:
                depths[peer] = reply
        return depths
