"""Design B in simulated time: N identical nodes, each one process running a whole task queue.

Per node, as realsys/mono/: one model.Scheduler (jobs, ready queue, workers) driven by the node driver
the real node runs (model/node.py: what to save and delete, whom to wake, which cancels to push, when
the timer fires); this module performs its steps as commit time, simpy events and counters. A worker
runtime whose backend calls the driver in-process and steals from peers (model.StealPacer on
QueueDepth polls, Peer.StealWork, the victim leasing through Scheduler.steal and staying the owner).

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
from functools import cached_property, lru_cache
from typing import Any

import simpy

from model.actions import Step
from model.commands import NotifyCancel
from model.errors import DtqError, FailedPrecondition, StaleAttempt
from model.ids import JobIdFactory, owner_of, split_by_owner
from model.job import Assignment, Job, Outcome
from model.jobs import Renewal
from model.listing import ListQuery, Page, effective_page_size, merge_pages
from model.node import NodeDriver
from model.scheduler import Scheduler
from model.states import JobState
from model.stealing import FETCH_LOCAL, AskDepths, StealFrom, StealPacer, WaitForWork, fetch_done, fetch_loop
from model.workload import JobDraw
from sim.cpu import Component, CostModel, Proc, stream
from sim.engine import Cluster, LoadgenPart, SimGen, SimTimer, finished_record, status_of
from sim.params import SimParams
from sim.service import Reply, cancel_action, perform_effects, submit_action
from sim.worker import RunningList, SimWorker

# model.ids.owner_of, memoised: a job's id is parsed (a regex) by every request routed to its owner and
# by its report; a pure function, so the cache changes nothing but the time (errors are not cached)
_owner_of = lru_cache(maxsize=1 << 14)(owner_of)


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
        self.driver: NodeDriver[simpy.Event] = NodeDriver(self.sched)
        self.timer = SimTimer(self.env, self.proc, self.driver.timer, self._on_timer)
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

    @cached_property
    def peer_names(self) -> list[str]:
        """The other nodes' names, in node order (the real node asks the same set, sorted by name)."""
        return [n.name for n in self.cluster.nodes if n is not self]

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
        self.driver.local_worker_id = self.worker.worker_id
        self.worker.start()

    # ---------------------------------------------------------------- LocalCore: perform a step
    def _perform(self, step: Step[simpy.Event]) -> float:
        """Performs the driver's step (wake-ups run after this burst: same loop) and re-arms the timer;
        returns the time of its commits (results kept out of RAM, the saves, the retention deletes)."""
        proc = self.proc
        cost = 0.0
        for _ in step.outputs:  # a result kept out of RAM: one statement each, before the records
            cost += proc.commit(1)
        cost += proc.commit(len(step.save))
        if step.delete:
            cost += proc.commit(len(step.delete))
        if step.effects:
            perform_effects(self.cluster, step.effects, self._notify_cancel)
        if step.rearm:
            self.timer.arm()
        return cost

    def _notify_cancel(self, effect: NotifyCancel) -> None:
        worker = self.worker
        if worker is not None and effect.worker_id == worker.worker_id:
            worker.cancel(effect.job_id, effect.attempt)

    def _on_timer(self, now: float) -> float:
        return self.proc.cost("timer") + self._perform(self.driver.on_timer(now))

    def start_draining(self) -> float:
        """LocalCore.start_draining: long-polls stop waiting (the simulator's runs never drain a node;
        the differential test does)."""
        return self._perform(self.driver.start_draining())

    # ---------------------------------------------------------------- client side, at the owner
    def submit(self, job: JobDraw) -> SimGen[Reply]:
        proc = self.proc
        reply: Reply = yield proc.run(
            submit_action("SubmitJob", self.cluster, proc, self.driver.submit, job, self._perform)
        )
        return reply

    def status(self, job_id: str) -> SimGen[Reply]:
        return self._read("GetJobStatus", job_id, result=False)

    def result(self, job_id: str) -> SimGen[Reply]:
        return self._read("GetJobResult", job_id, result=True)

    def _read(self, method: str, job_id: str, result: bool) -> SimGen[Reply]:
        """GetJobStatus / GetJobResult at the owner: the job's state, or (`result`) FAILED_PRECONDITION
        while it has no result yet."""
        proc = self.proc

        def action(now: float) -> tuple[float, Reply]:
            try:
                job = self.sched.jobs.get(job_id)
                if result and not job.done:
                    raise FailedPrecondition(f"job {job_id} is {job.state.name}: it has no result yet")
            except DtqError as exc:
                return proc.cost(method), (status_of(exc), None)
            return proc.cost(method), ("OK", job.state)

        reply: Reply = yield proc.run(action)
        return reply

    def cancel(self, job_id: str) -> SimGen[Reply]:
        proc = self.proc
        reply: Reply = yield proc.run(cancel_action(proc, self.driver.cancel, job_id, self._perform))
        return reply

    def wait(self, job_id: str, poll: float) -> SimGen[Reply]:
        """WaitJob at the owner: LocalCore.wait_done (look, and if not done register a waiter, in one
        step), then the job as it is, or UNAVAILABLE when the wait ended early because the node
        drains (the driver's wait_ended). The reply value is (state, attempt)."""
        proc = self.proc
        driver = self.driver
        jobs = self.sched.jobs

        def look(method: str) -> Callable[[float], tuple[float, tuple[Reply, Job | None]]]:
            def action(now: float) -> tuple[float, tuple[Reply, Job | None]]:
                try:
                    job = jobs.get(job_id)
                except DtqError as exc:
                    return proc.cost(method), ((status_of(exc), None), None)
                return proc.cost(method), (("OK", (job.state, job.attempt)), job)

            return action

        reply: Reply
        job: Job | None
        reply, job = yield proc.run(look("WaitJob"))
        if job is None or job.done or poll <= 0:
            return reply
        event = self.cluster.waitable(poll)
        if driver.add_done_waiter(event, job_id):
            yield event
            driver.done_waiter_gone(event, job_id)
            reply, job = yield proc.run(look("WaitJob.wake"))
            if job is None:
                return reply
        try:
            driver.wait_ended(job, poll)
        except DtqError as exc:
            return status_of(exc), None
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
            taken, step = self.driver.steal(now, thief_worker_id, max_jobs)
            cost = proc.cost("StealWork", len(taken)) + self._perform(step)
            cost += proc.byte_cost("StealWork", sum(self.cluster.payload_of(a.job_id) for a in taken))
            return cost, taken

        taken: list[Assignment] = yield proc.run(action)
        return taken

    def remote_heartbeat(self, worker_id: str, running: RunningList) -> SimGen[Renewal]:
        """WorkerHeartbeat forwarded by a thief: renews its stolen jobs here, with zero slots."""
        proc = self.proc

        def action(now: float) -> tuple[float, Renewal]:
            renewal, step = self.driver.heartbeat(now, worker_id, 0, 0, running)
            return proc.cost("WorkerHeartbeat", len(running)) + self._perform(step), renewal

        renewal: Renewal = yield proc.run(action)
        return renewal

    def report_here(
        self, method: str, worker_id: str, job_id: str, attempt: int, outcome: Outcome, pre: float = 0.0
    ) -> SimGen[str]:
        proc = self.proc

        def action(now: float) -> tuple[float, str]:
            cost = pre + proc.cost(method)
            try:
                _, step = self.driver.report(now, worker_id, job_id, attempt, outcome)
            except StaleAttempt:
                self.cluster.count("stale_reports")
                return cost, "ABORTED"
            except DtqError as exc:
                return cost, status_of(exc)
            return cost + self._perform(step), "OK"

        status: str = yield proc.run(action)
        return status

    # ---------------------------------------------------------------- the node's own worker (backend)
    def fetch(self, worker: SimWorker, free_slots: int, wait: float) -> SimGen[list[Assignment]]:
        """InProcessBackend.fetch: performs model.stealing.fetch_loop (local work first, else steal,
        else wait for local work for at most the poll interval)."""
        env = self.env
        proc = self.proc
        driver = self.driver
        worker_id = worker.worker_id

        def fetch_now(now: float) -> tuple[float, list[Assignment]]:
            if free_slots <= 0 or not worker.alive:  # a dead worker's fetch died with it
                return proc.cost("fetch"), []
            assignments, step = driver.fetch_now(now, worker_id, free_slots)
            return proc.cost("fetch", len(assignments)) + self._perform(step), assignments

        start = env._now
        got: list[Assignment] = yield proc.run(fetch_now)
        if not worker.alive:
            return []  # the fetch died with the worker; what it leased comes back by lease expiry
        if fetch_done(got, driver.draining, free_slots):
            return got
        cluster = self.cluster
        queue = self.sched.queue
        plan = fetch_loop(
            self.pacer,
            self.name,
            self.peer_names,
            free_slots,
            wait,
            start,
            (env._now, got, driver.draining),
            lambda: queue.ready_count,
        )
        reply: Any = None
        while True:
            try:
                op = plan.send(reply)
            except StopIteration as done:
                result: list[Assignment] = done.value
                return result
            if op is FETCH_LOCAL:
                got = yield proc.run(fetch_now)
                reply = (env._now, got, driver.draining)
            elif isinstance(op, WaitForWork):
                yield from self._wait_for_work(worker, free_slots, op.timeout)
                reply = None
            elif isinstance(op, AskDepths):
                asked = [cluster.by_name[name] for name in op.peers]
                cluster.count("depth_rounds")
                cluster.count("depth_asks", len(asked))
                replies = yield from cluster.gather(
                    [cluster.call(proc, p.queue_depth(), to=p.proc) for p in asked]
                )
                yield proc.run(proc.cost("steal_plan"))  # resuming after the gather: a loop pass
                reply = (env._now, dict(zip(op.peers, replies, strict=True)))
            else:
                assert isinstance(op, StealFrom)
                victim = cluster.by_name[op.plan.victim]
                stolen = yield from cluster.call(
                    proc, victim.steal_work(worker_id, op.plan.max_jobs), to=victim.proc
                )
                if stolen:
                    self.stolen += len(stolen)
                    cluster.count("stolen", len(stolen))
                reply = (env._now, stolen)
            if not worker.alive:
                plan.close()
                return []  # the fetch died with the worker; what it leased comes back by lease expiry

    def _wait_for_work(self, worker: SimWorker, free_slots: int, timeout: float) -> SimGen[None]:
        if timeout <= 0:
            return
        event = self.cluster.waitable(timeout, self.driver.fetcher_gone)
        if not self.driver.add_fetcher(self.env._now, event, worker.worker_id, free_slots):
            return
        yield event
        self.driver.fetcher_gone(event)

    def heartbeat(
        self, worker: SimWorker, total_slots: int, free_slots: int, running: RunningList
    ) -> SimGen[tuple[RunningList, RunningList] | None]:
        cluster = self.cluster
        proc = self.proc
        local, remote = split_by_owner(self.name, running)

        def action(now: float) -> tuple[float, Renewal]:
            renewal, step = self.driver.heartbeat(now, worker.worker_id, total_slots, free_slots, local)
            return proc.cost("heartbeat", len(local)) + self._perform(step), renewal

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
        owner = self.cluster.by_name.get(_owner_of(job_id))
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

    def _routed(self, entry: MonoNode, job_id: str, serve: Any, wait: float = 0.0) -> SimGen[Reply]:
        """Serve at the owner, forwarding once when the entry node is not it (model.ids.route). The
        lookup is pure, so it may run when the generator is made; the local case adds no frame.
        `wait`: a long-poll's, which a draining entry node refuses to relay (the driver's check_relay)."""
        owner = self.by_name.get(_owner_of(job_id))
        if owner is entry:
            served: SimGen[Reply] = serve(entry)
            return served
        return self._forward(entry, owner, serve, wait)

    def _forward(
        self, entry: MonoNode, owner: MonoNode | None, serve: Any, wait: float = 0.0
    ) -> SimGen[Reply]:
        if owner is None:
            yield entry.proc.run(entry.proc.cost("forward"))
            return "UNAVAILABLE", None
        try:
            entry.driver.check_relay(wait)
        except DtqError as exc:
            yield entry.proc.run(entry.proc.cost("forward"))
            return status_of(exc), None
        entry.forwarded += 1
        self.count("forwarded")
        reply: Reply = yield from self.call(
            entry.proc, serve(owner), pre=entry.proc.cost("forward"), to=owner.proc
        )
        return reply

    def _hop_in(self, lg: LoadgenPart, entry: MonoNode, server: SimGen[Reply]) -> SimGen[Reply]:
        return self.entry_hops(lg.proc, entry.proc, server)

    def request_submit(self, lg: LoadgenPart, job: JobDraw) -> SimGen[tuple[str, str]]:
        entry = self._entry(lg, "SubmitJob")
        return self._hop_in(lg, entry, entry.submit(job))

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
        return self._hop_in(lg, entry, self._routed(entry, job_id, lambda n: n.wait(job_id, poll), poll))

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
        node = self.by_name[_owner_of(job_id)]
        job = node.sched.jobs.get(job_id)
        return job.state, job.attempt

    def find_job(self, job_id: str) -> Job | None:
        node = self.by_name.get(_owner_of(job_id))
        return None if node is None else node.sched.jobs.find(job_id)

    def prefill(
        self, finished: Sequence[tuple[JobDraw, str]], pending: Sequence[JobDraw], now: float
    ) -> None:
        nodes = self.nodes
        for k, (job, state) in enumerate(finished):
            node = nodes[k % len(nodes)]
            node.driver.restore(now, [finished_record(node.sched.jobs, now, self.spec_of(job), state)])
        for k, job in enumerate(pending):
            node = nodes[k % len(nodes)]
            submitted, step = node.driver.submit(now, self.spec_of(job))
            self.submit_job(submitted.job.job_id, job)
            node._perform(step)

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
