"""Design B in simulated time: N identical nodes, each one process running a whole task queue.

Per node, as realsys/mono/: one model.Scheduler (jobs, ready queue, workers), its CoreTimer, the
LocalCore driver logic (commit the touched jobs, then perform the commands: wake fetchers with
model.pick_waiter, wake WaitJob waiters, push cancels to the local worker), and a worker runtime whose
backend calls the Scheduler in-process and steals from peers (model.StealPacer on QueueDepth polls,
Peer.StealWork, the victim leasing through Scheduler.steal and staying the owner).

Hops per client request (the load generator picks nodes round-robin, one counter per method):
- SubmitJob: lg -> node (accepts and owns the job; one commit) -> lg.
- GetJobStatus / GetJobResult / CancelJob / WaitJob: lg -> node; when the node is not the job's owner
  it forwards once: node -> owner -> node (CPU on both, two more hops) -> lg.
- ListJobs: lg -> node; the node asks every peer's ListLocalJobs concurrently, then its own page, and
  merges (model.merge_pages) -> lg.
Per job: the owner's worker fetches in-process (a commit), or a peer idle for steal_interval steals it
(QueueDepth to every peer at most every poll interval (steal_interval, doubling up to max_idle_poll while
rounds steal nothing; model.StealPacer, shared with the real node), then StealWork: one RPC, a commit
at the owner); the report
is in-process at the owner, or an RPC from the thief; heartbeats renew leases locally and, for stolen
jobs, at their owners.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import simpy

from model.commands import Command, JobFinished, LeaseExpired, NotifyCancel, WorkAvailable, WorkerLost
from model.errors import DtqError, FailedPrecondition, StaleAttempt
from model.ids import JobIdFactory, owner_of, split_by_owner
from model.job import Assignment, Outcome
from model.jobs import Renewal
from model.listing import ListQuery, Page, effective_page_size, merge_pages
from model.scheduler import Scheduler
from model.states import JobState
from model.stealing import StealPacer
from model.workers import pick_waiter
from sim.cpu import Component, CostModel, Proc, stream
from sim.engine import Cluster, LoadgenPart, SimGen, SimTimer, rows_of, status_of, wake
from sim.params import SimParams
from sim.worker import RunningList, SimWorker

Reply = tuple[str, Any]


@dataclass(eq=False, slots=True)
class _FetchWaiter:
    worker_id: str
    free_slots: int
    event: simpy.Event


class MonoNode:
    def __init__(self, cluster: MonoCluster, index: int) -> None:
        self.cluster = cluster
        self.env = cluster.env
        self.index = index
        self.name = f"n{index + 1}"
        params = cluster.params
        self.proc: Proc = cluster.add_proc(self.name, "node", index)
        rng = stream(cluster.costs.seed, Component.CORE, index) if params.core.backoff_jitter else None
        self.sched = Scheduler(params.core, JobIdFactory(node=self.name, incarnation="1"), rng)
        self.timer = SimTimer(self.env, self.proc, self.sched.next_deadline, self._on_timer)
        self._fetch_waiters: dict[int, _FetchWaiter] = {}
        self._next_waiter = 0
        self._done_waiters: dict[str, list[simpy.Event]] = {}
        self.worker: SimWorker | None = None
        self._incarnations = 0
        # the same pacing object the real node uses: when to poll peers' depths and steal
        self.pacer = StealPacer(
            params.steal_interval,
            params.max_idle_poll,
            params.steal_fanout,
            stream(cluster.costs.seed, Component.STEAL, index) if params.steal_fanout else None,
        )
        self.stolen = 0
        self.forwarded = 0

    @property
    def peers(self) -> list[MonoNode]:
        return [n for n in self.cluster.nodes if n is not self]

    def start(self) -> None:
        self.timer.start()
        self.cluster.start_checkpointer(self.proc)
        if self.cluster.params.slots_per_node > 0:
            self.start_worker()

    def start_worker(self) -> None:
        suffix = f"{self._incarnations}" if self._incarnations else ""
        self._incarnations += 1
        self.worker = SimWorker(
            self.cluster, f"{self.name}-w{suffix}", self.cluster.params.slots_per_node, self.proc, self
        )
        self.worker.start()

    # ---------------------------------------------------------------- LocalCore: commit and perform
    def _commit(self, touched: Sequence[str], commands: list[Command]) -> float:
        """Performs the commands (wake-ups run after this burst: same loop) and pokes the timer;
        returns the commit's time."""
        cost = self.proc.commit(rows_of(touched, commands))
        for command in commands:
            self._perform(command)
        self.timer.poke()
        return cost

    def _perform(self, command: Command) -> None:
        if isinstance(command, WorkAvailable):
            self._wake_fetchers(command.count)
        elif isinstance(command, JobFinished):
            for event in self._done_waiters.pop(command.job_id, ()):
                wake(event)
            self.cluster.job_finished(command.job_id)
        elif isinstance(command, NotifyCancel):
            worker = self.worker
            if worker is not None and command.worker_id == worker.worker_id:
                worker.cancel(command.job_id, command.attempt)
            # other workers (a thief node's) hear it in their next heartbeat
        elif isinstance(command, LeaseExpired):
            self.cluster.count("lease_expired")
        elif isinstance(command, WorkerLost):
            self.cluster.count("workers_lost")

    def _wake_fetchers(self, count: int) -> None:
        waiters = self._fetch_waiters
        tokens = [str(t) for t, w in waiters.items() if not w.event.triggered]
        free = {str(t): w.free_slots for t, w in waiters.items()}
        while count > 0 and tokens:
            chosen = pick_waiter(tokens, free)
            if chosen is None:
                break
            tokens.remove(chosen)
            waiter = waiters[int(chosen)]
            wake(waiter.event)
            count -= waiter.free_slots

    def _note_free_slots(self, now: float, worker_id: str, free_slots: int) -> None:
        info = self.sched.workers.workers.get(worker_id)
        if info is not None and info.total_slots:
            free = max(0, min(free_slots, info.total_slots))
            self.sched.workers.heartbeat(now, worker_id, info.total_slots, free)

    def _on_timer(self, now: float) -> float:
        commands = self.sched.handle_timer(now)
        return self.proc.cost("timer") + self._commit((), commands)

    # ---------------------------------------------------------------- client side, at the owner
    def submit(self, duration: float) -> SimGen[Reply]:
        proc = self.proc

        def action(now: float) -> tuple[float, Reply]:
            cost = proc.cost("SubmitJob")
            try:
                submitted = self.sched.submit(now, self.cluster.spec)
            except DtqError as exc:
                return cost, (status_of(exc), "")
            job_id = submitted.job.job_id
            self.cluster.submit_duration(job_id, duration)
            size = self.cluster.payload_of(job_id)  # parsing it and the store writing it
            cost += proc.byte_cost("SubmitJob", size) + proc.byte_cost("commit", size)
            return cost + self._commit((job_id,), submitted.commands), ("OK", job_id)

        reply: Reply = yield proc.run(action)
        return reply

    def status(self, job_id: str) -> SimGen[Reply]:
        proc = self.proc

        def action(now: float) -> tuple[float, Reply]:
            try:
                job = self.sched.jobs.get(job_id)
            except DtqError as exc:
                return proc.cost("GetJobStatus"), (status_of(exc), None)
            return proc.cost("GetJobStatus"), ("OK", job.state)

        reply: Reply = yield proc.run(action)
        return reply

    def result(self, job_id: str) -> SimGen[Reply]:
        proc = self.proc

        def action(now: float) -> tuple[float, Reply]:
            try:
                job = self.sched.jobs.get(job_id)
                if not job.done:
                    raise FailedPrecondition(f"job {job_id} is {job.state.name}: it has no result yet")
            except DtqError as exc:
                return proc.cost("GetJobResult"), (status_of(exc), None)
            return proc.cost("GetJobResult"), ("OK", job.state)

        reply: Reply = yield proc.run(action)
        return reply

    def cancel(self, job_id: str) -> SimGen[Reply]:
        proc = self.proc

        def action(now: float) -> tuple[float, Reply]:
            cost = proc.cost("CancelJob")
            try:
                transition = self.sched.cancel(now, job_id)
            except DtqError as exc:
                return cost, (status_of(exc), None)
            return cost + self._commit((job_id,), transition.commands), ("OK", transition.job.state)

        reply: Reply = yield proc.run(action)
        return reply

    def wait(self, job_id: str, poll: float) -> SimGen[Reply]:
        """WaitJob at the owner: LocalCore.wait_done (look, and if not done register a waiter, in one
        step), then the job as it is. The reply value is (state, attempt)."""
        proc = self.proc

        def look(method: str) -> Callable[[float], tuple[float, tuple[Reply, bool]]]:
            def action(now: float) -> tuple[float, tuple[Reply, bool]]:
                try:
                    job = self.sched.jobs.get(job_id)
                except DtqError as exc:
                    return proc.cost(method), ((status_of(exc), None), True)
                return proc.cost(method), (("OK", (job.state, job.attempt)), job.done)

            return action

        reply: Reply
        reply, done = yield proc.run(look("WaitJob"))
        if done or poll <= 0:
            return reply
        event = self.cluster.waitable(poll)
        self._done_waiters.setdefault(job_id, []).append(event)
        yield event
        waiting = self._done_waiters.get(job_id)
        if waiting is not None and event in waiting:
            waiting.remove(event)
            if not waiting:
                del self._done_waiters[job_id]
        reply, _ = yield proc.run(look("WaitJob.wake"))
        return reply

    def list_local(self, query: ListQuery, size: int) -> SimGen[Page[Any]]:
        proc = self.proc

        def action(now: float) -> tuple[float, Page[Any]]:
            page = self.sched.jobs.list_page(query, size, "")
            return proc.cost("ListLocalJobs", len(page.items)), page

        page: Page[Any] = yield proc.run(action)
        return page

    def queue_depth(self) -> SimGen[int]:
        proc = self.proc
        depth: int = yield proc.run(lambda now: (proc.cost("QueueDepth"), self.sched.queue.ready_count))
        return depth

    # ---------------------------------------------------------------- Workers / Peer services (remote)
    def steal_work(self, thief_worker_id: str, max_jobs: int) -> SimGen[list[Assignment]]:
        proc = self.proc

        def action(now: float) -> tuple[float, list[Assignment]]:
            taken = self.sched.steal(now, thief_worker_id, max_jobs)
            self.sched.workers.touch(now, thief_worker_id)
            cost = proc.cost("StealWork", len(taken)) + self._commit([a.job_id for a in taken], [])
            cost += proc.byte_cost("StealWork", sum(self.cluster.payload_of(a.job_id) for a in taken))
            return cost, taken

        taken: list[Assignment] = yield proc.run(action)
        return taken

    def remote_heartbeat(self, worker_id: str, running: RunningList) -> SimGen[Renewal]:
        """WorkerHeartbeat forwarded by a thief: renews its stolen jobs here, with zero slots."""
        proc = self.proc

        def action(now: float) -> tuple[float, Renewal]:
            renewal = self.sched.heartbeat(now, worker_id, 0, 0, running)
            kept = _renewed(running, renewal)
            return proc.cost("WorkerHeartbeat", len(running)) + self._commit(kept, []), renewal

        renewal: Renewal = yield proc.run(action)
        return renewal

    def report_here(
        self, method: str, worker_id: str, job_id: str, attempt: int, outcome: Outcome, pre: float = 0.0
    ) -> SimGen[str]:
        proc = self.proc

        def action(now: float) -> tuple[float, str]:
            cost = pre + proc.cost(method)
            try:
                transition = self.sched.report(now, worker_id, job_id, attempt, outcome)
            except StaleAttempt:
                self.cluster.count("stale_reports")
                return cost, "ABORTED"
            except DtqError as exc:
                return cost, status_of(exc)
            return cost + self._commit((job_id,), transition.commands), "OK"

        status: str = yield proc.run(action)
        return status

    # ---------------------------------------------------------------- the node's own worker (backend)
    def fetch(self, worker: SimWorker, free_slots: int, wait: float) -> SimGen[list[Assignment]]:
        """InProcessBackend.fetch: local work first, else steal, else wait for local work for at most
        the poll interval (so an idle node rechecks its peers that often)."""
        env = self.env
        proc = self.proc
        start = env.now
        deadline = start + wait

        def fetch_now(now: float) -> tuple[float, list[Assignment]]:
            if free_slots <= 0 or not worker.alive:  # a dead worker's fetch died with it
                return proc.cost("fetch"), []
            assignments = self.sched.fetch(now, worker.worker_id, free_slots)
            self._note_free_slots(now, worker.worker_id, free_slots - len(assignments))
            cost = proc.cost("fetch", len(assignments)) + self._commit([a.job_id for a in assignments], [])
            return cost, assignments

        while True:
            assignments: list[Assignment] = yield proc.run(fetch_now)
            if not worker.alive:
                return []  # the fetch died with the worker; what it leased comes back by lease expiry
            if assignments or free_slots <= 0:
                return assignments
            pause = self.pacer.idle_wait(start, env.now)
            if pause == 0:
                stolen = yield from self._steal(worker, free_slots)
                if stolen or not worker.alive:
                    return stolen
                pause = self.pacer.poll_interval
            left = deadline - env.now
            if left <= 0:
                return []
            yield from self._wait_for_work(worker, free_slots, min(left, pause))

    def _wait_for_work(self, worker: SimWorker, free_slots: int, timeout: float) -> SimGen[None]:
        if timeout <= 0:
            return
        self._note_free_slots(self.env.now, worker.worker_id, free_slots)
        token = self._next_waiter
        self._next_waiter += 1
        waiter = _FetchWaiter(worker.worker_id, free_slots, self.cluster.waitable(timeout))
        self._fetch_waiters[token] = waiter
        yield waiter.event
        self._fetch_waiters.pop(token, None)

    def _steal(self, worker: SimWorker, free_slots: int) -> SimGen[list[Assignment]]:
        env = self.env
        cluster = self.cluster
        peers = self.peers
        if not peers:
            return []
        if self.pacer.needs_depths(env.now):
            asked = self.pacer.peers_to_ask(peers)
            cluster.count("depth_rounds")
            cluster.count("depth_asks", len(asked))
            replies = yield from cluster.gather(
                [cluster.call(self.proc, p.queue_depth(), to=p.proc) for p in asked]
            )
            self.pacer.record_depths(env.now, {p.name: d for p, d in zip(asked, replies, strict=True)})
            yield self.proc.run(self.proc.cost("steal_plan"))  # resuming after the gather: a loop pass
        plan = self.pacer.plan(self.name, free_slots, self.sched.queue.ready_count)
        if plan is None:
            return []
        victim = cluster.by_name[plan.victim]
        got = yield from cluster.call(
            self.proc, victim.steal_work(worker.worker_id, plan.max_jobs), to=victim.proc
        )
        self.pacer.record_steal(plan, len(got))
        if got:
            self.stolen += len(got)
            cluster.count("stolen", len(got))
        return got

    def heartbeat(
        self, worker: SimWorker, total_slots: int, free_slots: int, running: RunningList
    ) -> SimGen[tuple[RunningList, RunningList] | None]:
        cluster = self.cluster
        proc = self.proc
        local, remote = split_by_owner(self.name, running)

        def action(now: float) -> tuple[float, Renewal]:
            renewal = self.sched.heartbeat(now, worker.worker_id, total_slots, free_slots, local)
            cost = proc.cost("heartbeat", len(local)) + self._commit(_renewed(local, renewal), [])
            return cost, renewal

        renewal: Renewal = yield proc.run(action)
        cancel, abandon = list(renewal.cancel), list(renewal.abandon)
        if remote:
            owners = [cluster.by_name[o] for o in remote]
            replies = yield from cluster.gather(
                [
                    cluster.call(
                        proc, owner.remote_heartbeat(worker.worker_id, remote[owner.name]), to=owner.proc
                    )
                    for owner in owners
                ]
            )
            for reply in replies:
                cancel.extend(reply.cancel)
                abandon.extend(reply.abandon)
        return cancel, abandon

    def report(
        self, worker: SimWorker, job_id: str, attempt: int, outcome: Outcome, pre: float = 0.0
    ) -> SimGen[None]:
        """InProcessBackend.report: synchronous at the owner when that is this node (one loop step
        with the handler's end, `pre`), else ReportResult to the owner."""
        owner = self.cluster.by_name.get(owner_of(job_id))
        if owner is None:
            return
        if owner is self:
            yield from self.report_here("report", worker.worker_id, job_id, attempt, outcome, pre)
        else:
            yield from self.cluster.call(
                self.proc,
                owner.report_here("ReportResult", worker.worker_id, job_id, attempt, outcome),
                pre=pre,
                to=owner.proc,
            )


def _renewed(running: RunningList, renewal: Renewal) -> list[str]:
    abandoned = set(renewal.abandon)
    return [job_id for job_id, attempt in running if (job_id, attempt) not in abandoned]


class MonoCluster(Cluster):
    design = "mono"

    def __init__(self, env: simpy.Environment, params: SimParams, costs: CostModel) -> None:
        super().__init__(env, params, costs)
        params.slots_per_node  # noqa: B018  (refuses a total that does not split evenly, before anything runs)
        self.nodes = [MonoNode(self, i) for i in range(params.nodes)]
        self.by_name = {n.name: n for n in self.nodes}

    def start(self) -> None:
        for node in self.nodes:
            node.start()

    # ---------------------------------------------------------------- client requests
    def _entry(self, lg: LoadgenPart, method: str) -> MonoNode:
        return self.nodes[lg.pick(len(self.nodes), method)]

    def _routed(self, entry: MonoNode, job_id: str, serve: Any) -> SimGen[Reply]:
        """Serve at the owner, forwarding once when the entry node is not it (model.ids.route). The
        lookup is pure, so it may run when the generator is made; the local case adds no frame."""
        owner = self.by_name.get(owner_of(job_id))
        if owner is entry:
            served: SimGen[Reply] = serve(entry)
            return served
        return self._forward(entry, owner, serve)

    def _forward(self, entry: MonoNode, owner: MonoNode | None, serve: Any) -> SimGen[Reply]:
        if owner is None:
            yield entry.proc.run(entry.proc.cost("forward"))
            return "UNAVAILABLE", None
        entry.forwarded += 1
        self.count("forwarded")
        reply: Reply = yield from self.call(
            entry.proc, serve(owner), pre=entry.proc.cost("forward"), to=owner.proc
        )
        return reply

    def _hop_in(self, lg: LoadgenPart, entry: MonoNode, server: SimGen[Reply]) -> SimGen[Reply]:
        d = self.hop(lg.proc, entry.proc)
        if d:
            yield self.env.timeout(d)
        taken = entry.proc.rpc_in()  # gRPC's threads (rpc_thread), beside the loops
        if taken is not None:
            yield taken
        reply: Reply = yield from server
        d = self.hop(entry.proc, lg.proc)
        if d:
            yield self.env.timeout(d)
        taken = lg.proc.rpc_out()
        if taken is not None:
            yield taken
        return reply

    def request_submit(self, lg: LoadgenPart, duration: float) -> SimGen[tuple[str, str]]:
        entry = self._entry(lg, "SubmitJob")
        return self._hop_in(lg, entry, entry.submit(duration))

    def request_status(self, lg: LoadgenPart, job_id: str) -> SimGen[Reply]:
        entry = self._entry(lg, "GetJobStatus")
        return self._hop_in(lg, entry, self._routed(entry, job_id, lambda n: n.status(job_id)))

    def request_result(self, lg: LoadgenPart, job_id: str) -> SimGen[Reply]:
        entry = self._entry(lg, "GetJobResult")
        return self._hop_in(lg, entry, self._routed(entry, job_id, lambda n: n.result(job_id)))

    def request_cancel(self, lg: LoadgenPart, job_id: str) -> SimGen[Reply]:
        entry = self._entry(lg, "CancelJob")
        return self._hop_in(lg, entry, self._routed(entry, job_id, lambda n: n.cancel(job_id)))

    def request_wait(self, lg: LoadgenPart, job_id: str, poll: float) -> SimGen[Reply]:
        entry = self._entry(lg, "WaitJob")
        return self._hop_in(lg, entry, self._routed(entry, job_id, lambda n: n.wait(job_id, poll)))

    def request_list(self, lg: LoadgenPart, page_size: int) -> SimGen[Reply]:
        entry = self._entry(lg, "ListJobs")
        return self._hop_in(lg, entry, self._list(entry, page_size))

    def _list(self, entry: MonoNode, page_size: int) -> SimGen[Reply]:
        """TaskQueueService.ListJobs: scatter to every peer, then the own page, merge."""
        proc = entry.proc
        query = ListQuery()
        try:
            size = effective_page_size(page_size, self.params.core)
        except DtqError as exc:
            yield proc.run(proc.cost("ListJobs"))
            return status_of(exc), None
        yield proc.run(proc.cost("ListJobs"))
        parts: list[Page[Any]] = yield from self.gather(
            [self.call(proc, peer.list_local(query, size), to=peer.proc) for peer in entry.peers]
        )

        def merge(now: float) -> tuple[float, Page[Any]]:
            own = entry.sched.jobs.list_page(query, size, "")
            budget = entry.sched.config.max_reply_bytes  # pages end at the real nodes' byte budget
            merged = merge_pages(query, [own, *parts], size, budget, lambda job: job.status_bytes)
            gathered = len(own.items) + sum(len(p.items) for p in parts)
            return proc.cost("ListJobs.merge", gathered), merged

        merged: Page[Any] = yield proc.run(merge)
        return "OK", len(merged.items)

    # ---------------------------------------------------------------- faults and inspection
    def kill_worker(self, target: str, restart_after: float | None) -> None:
        node = self.by_name[target]
        if node.worker is not None:
            node.worker.kill()
            node.worker = None
        if restart_after is not None:
            self.env.timeout(restart_after).callbacks.append(lambda _: node.start_worker())

    def job_state(self, job_id: str) -> tuple[JobState, int]:
        node = self.by_name[owner_of(job_id)]
        job = node.sched.jobs.get(job_id)
        return job.state, job.attempt

    def core_counters(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for node in self.nodes:
            jobs = node.sched.jobs
            for key, value in (
                ("jobs", len(jobs)),
                ("lease_expiries", jobs.lease_expiries),
                ("requeues", jobs.requeues),
                ("dispatched", node.sched.dispatched),
                ("stolen_out", node.sched.stolen_out),
            ):
                out[key] = out.get(key, 0) + value
            for state, n in jobs.count_by_state.items():
                if n:
                    out[f"state_{state.name.lower()}"] = out.get(f"state_{state.name.lower()}", 0) + n
        return out
