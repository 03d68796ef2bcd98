"""The in-process WorkerBackend of a Design B node: its WorkerRuntime talks to the local Scheduler
directly (no gRPC inside a node), and steals from peers when it has nothing to do.

Stolen jobs stay owned by the victim: their heartbeats and reports go to the owner's Workers service
(the owner is the job-id prefix, model.ids.owner_of).
"""

from __future__ import annotations

import asyncio
import time

import grpc

from dtq.v1 import internal_pb2, worker_pb2
from model.errors import DtqError, StaleAttempt, Unavailable
from model.ids import owner_of
from model.job import Assignment, Outcome
from model.stealing import plan_steal
from realsys.convert import assignment_from_pb, outcome_to_pb
from realsys.logs import get_logger
from realsys.metrics import NodeMetrics
from realsys.mono.core import LocalCore
from realsys.mono.peers import FORWARDED, PeerLinks
from realsys.mono.services import heartbeat_owners, split_by_owner
from realsys.status import error_from_rpc

log = get_logger(__name__)

RunningList = list[tuple[str, int]]
MAX_IDLE_POLL = 0.8  # seconds between depth rounds in a cluster with nothing to steal


class InProcessBackend:
    def __init__(
        self, core: LocalCore, links: PeerLinks, metrics: NodeMetrics, steal_interval: float
    ) -> None:
        self.core = core
        self.links = links
        self.metrics = metrics
        self.steal_interval = steal_interval
        self.stolen = 0  # jobs this node's worker took from peers
        self._depths: dict[str, int] = {}
        self._depths_at = -float("inf")  # monotonic time of the last QueueDepth round
        self._backed_off_at = -float("inf")  # the depth round the interval was last doubled for
        # An idle cluster must not spend its cores polling: each round that steals nothing doubles
        # the poll interval, up to MAX_IDLE_POLL; only a steal that got work resets it. (Resetting on
        # any peer depth > 0 kept a busy, balanced cluster polling every steal_interval: about one
        # QueueDepth RPC per job, for steals the victims refused because their own slots take it.)
        self._poll_interval = steal_interval

    # ---------------------------------------------------------------- WorkerBackend
    async def heartbeat(
        self, worker_id: str, total_slots: int, free_slots: int, running: RunningList
    ) -> tuple[RunningList, RunningList, float]:
        local, remote = split_by_owner(self.core.node, running)
        renewal = self.core.heartbeat(worker_id, total_slots, free_slots, local)
        cancel, abandon = list(renewal.cancel), list(renewal.abandon)
        if remote:
            more_cancel, more_abandon = await heartbeat_owners(self.links, worker_id, remote)
            cancel += more_cancel
            abandon += more_abandon
        return cancel, abandon, self.core.config.heartbeat_interval

    async def fetch(self, worker_id: str, free_slots: int, wait: float) -> list[Assignment]:
        """Local work first; when there is none for steal_interval, steal; in between, wait for local
        work to appear for at most the poll interval (so an idle node rechecks its peers that often).

        A node only steals once it has been idle for a steal_interval: in a busy cluster local work
        usually arrives within milliseconds, and polling peers the moment a slot frees cost about
        one QueueDepth RPC per job, plus StealWork and remote reports for jobs the owner's own
        slots would have taken moments later."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        deadline = start + wait
        while True:
            assignments = self.core.fetch_now(worker_id, free_slots)
            if assignments or self.core.draining or free_slots <= 0:
                return assignments
            now = loop.time()
            idle_for = now - start
            if idle_for >= self.steal_interval:
                stolen = await self._steal(worker_id, free_slots)
                if stolen:
                    return stolen
                pause = self._poll_interval
            else:
                pause = self.steal_interval - idle_for
            left = deadline - loop.time()
            if left <= 0:
                return []
            await self.core.wait_for_work(worker_id, free_slots, min(left, pause))

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
        """Reports a stolen job to its owner. An owner that is down (restarting) is retried for up to
        a lease duration: its lease on this attempt is persisted, so the result still counts once it
        is back. After that the runtime's own few retries apply, then lease expiry (at-least-once)."""
        request = worker_pb2.ReportResultRequest(worker_id=worker_id, job_id=job_id, attempt=attempt)
        outcome_to_pb(outcome, request)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.core.config.lease_duration
        delay = 0.05
        while True:
            try:
                stub = await self.links.workers(owner)
                await stub.ReportResult(request, timeout=self.links.timeout(), metadata=FORWARDED)
                return
            except (grpc.RpcError, Unavailable) as exc:
                error = error_from_rpc(exc) if isinstance(exc, grpc.RpcError) else exc
                if not isinstance(error, Unavailable) or loop.time() + delay >= give_up:
                    raise error from exc
            await asyncio.sleep(delay)
            delay = min(1.0, delay * 2)

    # ---------------------------------------------------------------- stealing
    async def _steal(self, worker_id: str, free_slots: int) -> list[Assignment]:
        if not self.links.names:
            return []
        depths = await self._peer_depths()
        plan = plan_steal(self.core.node, free_slots, self.core.ready_count, depths)
        if plan is None:
            self._back_off()
            return []
        request = internal_pb2.StealWorkRequest(
            thief_node=self.core.node, worker_id=worker_id, max_jobs=plan.max_jobs
        )
        try:
            stub = await self.links.peer(plan.victim)
            response: worker_pb2.FetchWorkResponse = await stub.StealWork(
                request, timeout=self.links.timeout()
            )
        except (grpc.RpcError, DtqError) as exc:
            log.info("steal failed", extra={"victim": plan.victim, "error": str(exc)})
            self._depths[plan.victim] = 0  # do not retry this victim before the next depth round
            self._back_off()
            return []
        got = [assignment_from_pb(a, worker_id) for a in response.assignments]
        # the victim may grant fewer than its depth said (it keeps work for its own idle slots)
        self._depths[plan.victim] = 0 if len(got) < plan.max_jobs else max(0, depths[plan.victim] - len(got))
        if got:
            self.stolen += len(got)
            self.metrics.stolen.inc(len(got))
            self._poll_interval = self.steal_interval
        else:
            self._back_off()
        return got

    def _back_off(self) -> None:
        """Nothing stolen: the next depth round comes later (once per round, not per fetch)."""
        if self._backed_off_at != self._depths_at:
            self._backed_off_at = self._depths_at
            self._poll_interval = min(MAX_IDLE_POLL, max(self._poll_interval, self.steal_interval) * 2)

    async def _peer_depths(self) -> dict[str, int]:
        """Every peer's ready count, asked at most once per steal_interval (a down peer counts 0)."""
        now = time.monotonic()
        if now - self._depths_at < self._poll_interval:
            return self._depths
        timeout = min(self.links.rpc_timeout, max(self.steal_interval * 10, 0.5))

        async def ask(peer: str) -> int:
            response: internal_pb2.QueueDepthResponse = await self.links.peer_nowait(peer).QueueDepth(
                internal_pb2.QueueDepthRequest(), timeout=timeout
            )
            return response.ready

        names = self.links.names
        replies = await asyncio.gather(*(ask(p) for p in names), return_exceptions=True)
        depths: dict[str, int] = {}
        for peer, reply in zip(names, replies, strict=True):
            if isinstance(reply, BaseException):
                if not isinstance(reply, grpc.RpcError | DtqError):
                    raise reply
                depths[peer] = 0
            else:
                depths[peer] = reply
        self._depths = depths
        self._depths_at = time.monotonic()
        return depths
