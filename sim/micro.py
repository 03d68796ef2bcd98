"""Design A in simulated time: six processes (gateway, job, queue, coordinator, worker, result).

The core objects live where realsys/micro/ keeps them: a model.JobTable in the job service, a
model.ReadyQueue in the queue service, a model.WorkerRegistry in the coordinator; each has its own
CoreTimer. Commands travel between them as the real roles send them.

Hops per client request (lg = load generator):
- SubmitJob: lg -> gateway -> job.CreateJob (commit) -> gateway -> lg. Then, asynchronously, the job
  service's outbox flusher sends queue.Enqueue (batched; a commit in the queue's store) and wakes a
  parked Reserve.
- GetJobStatus / CancelJob / ListJobs / WaitJob: lg -> gateway -> job -> gateway -> lg (WaitJob parks
  in the job service). A cancel of a running job also sends job -> coordinator.NotifyCancel, delivered
  to the worker with its next heartbeat.
- GetJobResult: lg -> gateway -> job.GetJob (-> result.GetResult when SUCCEEDED) -> gateway -> lg.
Per job: FetchWork worker -> coordinator -> queue.Reserve (long-poll) -> job.LeaseJobs (commit) ->
coordinator -> worker, with queue.Ack (commit) sent in the background; ReportResult worker ->
coordinator -> result.PutResult (commit) -> job.CompleteAttempt (commit) -> coordinator -> worker.
Heartbeats: worker -> coordinator -> job.RenewLeases (commit) -> coordinator -> worker.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import simpy

from model.commands import Command, Enqueue, JobFinished, LeaseExpired, NotifyCancel
from model.errors import DtqError, FailedPrecondition, InvalidArgument, NotFound, StaleAttempt
from model.ids import JobIdFactory
from model.job import Assignment, CancelledByWorker, Outcome, Succeeded
from model.jobs import JobTable, Renewal
from model.listing import ListQuery
from model.queue import ReadyQueue
from model.states import JobState
from model.workers import WorkerRegistry
from sim.cpu import Component, CostModel, stream
from sim.engine import Cluster, LoadgenPart, SimGen, SimTimer, status_of, wake
from sim.params import SimParams
from sim.worker import RunningList, SimWorker

Reply = tuple[str, Any]
ROLES = ("gateway", "job", "queue", "coordinator", "worker", "result")  # realsys.config.MICRO_ROLES
OWNER = "job"
ENQUEUE_BATCH = 1000  # realsys/micro/job.py
MAX_FETCH = 1000  # realsys/micro/coordinator.py
MAX_ITEMS = 1000  # realsys/micro/queue.py
MAX_POLL = 60.0  # realsys/micro/base.py


class MicroCluster(Cluster):
    design = "micro"

    def __init__(self, env: simpy.Environment, params: SimParams, costs: CostModel) -> None:
        super().__init__(env, params, costs)
        p = {role: self.add_proc(role, role, i) for i, role in enumerate(ROLES)}
        self.gateway, self.jobp, self.queuep = p["gateway"], p["job"], p["queue"]
        self.coord, self.workerp, self.resultp = p["coordinator"], p["worker"], p["result"]
        core = params.core
        rng = stream(costs.seed, Component.CORE, 1) if core.backoff_jitter else None
        # job service
        self.table = JobTable(core, JobIdFactory(node=OWNER, incarnation="1"), rng)
        self.job_timer = SimTimer(env, self.jobp, self.table.next_deadline, self._job_on_timer)
        self._pending: dict[str, None] = {}
        self._outbox: dict[str, Enqueue] = {}
        self._outbox_ready: simpy.Event | None = None
        self._job_waiters: dict[str, list[simpy.Event]] = {}
        self.sweep_interval = params.sweep_interval or min(60.0, max(5.0, 3 * core.lease_duration))
        self.stale_after = core.reservation_hold + core.lease_duration + params.rpc_timeout
        # queue service
        self.queue = ReadyQueue()
        self.queue_timer = SimTimer(env, self.queuep, self.queue.next_deadline, self._queue_on_timer)
        self._reserve_waiters: list[simpy.Event] = []
        # coordinator
        self.registry = WorkerRegistry(core)
        self.coord_timer = SimTimer(env, self.coord, self.registry.next_deadline, self._coord_on_timer)
        self._cancels: dict[str, dict[tuple[str, int], None]] = {}
        # worker
        self.worker: SimWorker | None = None
        self._worker_incarnation = 0
        self._dead_workers: set[str] = set()

    def start(self) -> None:
        # callees first, as realsys/cluster.py starts them: result, queue, job, coordinator, worker
        for store in (self.resultp, self.queuep, self.jobp):
            self.start_checkpointer(store)
        self.queue_timer.start()
        self.job_timer.start()
        self.spawn(self._flush_outbox())
        self.spawn(self._sweep())
        self.coord_timer.start()
        self.start_worker()

    def start_worker(self) -> None:
        # a restarted worker process is a new worker (realsys/micro/worker.py: a random id suffix)
        self._worker_incarnation += 1
        worker_id = f"worker-{self._worker_incarnation:08x}"
        self.worker = SimWorker(self, worker_id, self.params.slots, self.workerp, _WorkerBackend(self))
        self.worker.start()

    # ================================================================ gateway (client API)
    def _via_gateway(self, lg: LoadgenPart, server: SimGen[Reply]) -> SimGen[Reply]:
        d = self.hop(lg.proc, self.gateway)
        if d:
            yield self.env.timeout(d)
        taken = self.gateway.rpc_in()  # gRPC's threads (rpc_thread), beside the loops
        if taken is not None:
            yield taken
        reply: Reply = yield from server
        d = self.hop(self.gateway, lg.proc)
        if d:
            yield self.env.timeout(d)
        taken = lg.proc.rpc_out()
        if taken is not None:
            yield taken
        return reply

    def _gw(self, method: str, then: SimGen[Reply], nbytes: int = 0) -> SimGen[Reply]:
        """A gateway method that is one call to the job service (the handler and the stub call are
        one loop step); `nbytes`: the payload it relays."""
        pre = self.gateway.cost(method) + self.gateway.byte_cost(method, nbytes)
        reply: Reply = yield from self.call(self.gateway, then, pre=pre, to=self.jobp)
        return reply

    def request_submit(self, lg: LoadgenPart, duration: float) -> SimGen[tuple[str, str]]:
        return self._via_gateway(lg, self._gw("SubmitJob", self._job_create(duration), self.payload_bytes))

    def request_status(self, lg: LoadgenPart, job_id: str) -> SimGen[Reply]:
        return self._via_gateway(lg, self._gw("GetJobStatus", self._job_get(job_id)))

    def request_cancel(self, lg: LoadgenPart, job_id: str) -> SimGen[Reply]:
        return self._via_gateway(lg, self._gw("CancelJob", self._job_cancel(job_id)))

    def request_wait(self, lg: LoadgenPart, job_id: str, poll: float) -> SimGen[Reply]:
        return self._via_gateway(lg, self._gw("WaitJob", self._job_wait(job_id, poll)))

    def request_list(self, lg: LoadgenPart, page_size: int) -> SimGen[Reply]:
        return self._via_gateway(lg, self._gw_list(page_size))

    def _gw_list(self, page_size: int) -> SimGen[Reply]:
        gateway = self.gateway
        reply: Reply = yield from self.call(
            gateway, self._job_list(page_size), pre=gateway.cost("ListJobs"), to=self.jobp
        )
        if reply[0] == "OK" and reply[1]:
            yield gateway.run(gateway.cost("ListJobs.relay", reply[1]))  # re-serializing the page
        return reply

    def request_result(self, lg: LoadgenPart, job_id: str) -> SimGen[Reply]:
        return self._via_gateway(lg, self._gw_result(job_id))

    def _gw_result(self, job_id: str) -> SimGen[Reply]:
        gateway = self.gateway
        status, value = yield from self.call(
            gateway, self._job_get(job_id), pre=gateway.cost("GetJobResult"), to=self.jobp
        )
        if status != "OK":
            return status, None
        state, attempt = value
        if state not in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
            return "FAILED_PRECONDITION", None
        if state is JobState.SUCCEEDED:
            found = yield from self.call(gateway, self._result_get(job_id, attempt), to=self.resultp)
            if not found:
                return "DATA_LOSS", None
        return "OK", state

    # ================================================================ job service
    def _save(self, job_ids: list[str]) -> float:
        """JobRole._save: commit the rows (durable before the answer) and track pending jobs."""
        if not job_ids:
            return 0.0
        table = self.table
        for job_id in job_ids:
            if table.get(job_id).state is JobState.PENDING:
                self._pending[job_id] = None
            else:
                self._pending.pop(job_id, None)
        return self.jobp.commit(len(job_ids))

    def _job_perform(self, commands: list[Command]) -> None:
        for command in commands:
            if isinstance(command, Enqueue):
                self._outbox[command.job_id] = command
                if self._outbox_ready is not None:
                    wake(self._outbox_ready)
            elif isinstance(command, JobFinished):
                for event in self._job_waiters.pop(command.job_id, ()):
                    wake(event)
                self.job_finished(command.job_id)
            elif isinstance(command, NotifyCancel):
                if command.worker_id:
                    self.spawn(
                        self.call(
                            self.jobp,
                            self._coord_notify_cancel(command.job_id, command.attempt, command.worker_id),
                            to=self.coord,
                        )
                    )
            elif isinstance(command, LeaseExpired):
                self.count("lease_expired")
            # Unqueue: nothing (the Queue API has no removal; LeaseJobs refuses the stale entry)

    def _jobs_in(self, commands: list[Command]) -> list[str]:
        ids = dict.fromkeys(getattr(c, "job_id", "") for c in commands)
        ids.pop("", None)
        return list(ids)

    def _job_create(self, duration: float) -> SimGen[Reply]:
        proc = self.jobp

        def action(now: float) -> tuple[float, Reply]:
            cost = proc.cost("CreateJob")
            try:
                submitted = self.table.submit(now, self.spec)
            except DtqError as exc:
                return cost, (status_of(exc), "")
            job_id = submitted.job.job_id
            self.submit_duration(job_id, duration)
            size = self.payload_of(job_id)  # parsing it and the store writing it
            cost += proc.byte_cost("CreateJob", size) + proc.byte_cost("commit", size)
            cost += self._save([job_id])
            self._job_perform(submitted.commands)
            self.job_timer.poke()
            return cost, ("OK", job_id)

        reply: Reply = yield proc.run(action)
        return reply

    def _job_look(self, method: str, job_id: str) -> Any:
        proc = self.jobp

        def action(now: float) -> tuple[float, Reply]:
            try:
                job = self.table.get(job_id)
            except DtqError as exc:
                return proc.cost(method), (status_of(exc), None)
            return proc.cost(method), ("OK", (job.state, job.attempt))

        return action

    def _job_get(self, job_id: str) -> SimGen[Reply]:
        reply: Reply = yield self.jobp.run(self._job_look("GetJob", job_id))
        return reply

    def _job_wait(self, job_id: str, poll: float) -> SimGen[Reply]:
        reply: Reply = yield self.jobp.run(self._job_look("WaitJob", job_id))
        if reply[0] != "OK" or reply[1][0] in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
            return reply
        wait = min(poll, MAX_POLL)
        if wait <= 0:
            return reply
        event = self.waitable(wait)
        self._job_waiters.setdefault(job_id, []).append(event)
        yield event
        waiting = self._job_waiters.get(job_id)
        if waiting is not None and event in waiting:
            waiting.remove(event)
            if not waiting:
                del self._job_waiters[job_id]
        reply = yield self.jobp.run(self._job_look("WaitJob.wake", job_id))
        return reply

    def _job_cancel(self, job_id: str) -> SimGen[Reply]:
        proc = self.jobp

        def action(now: float) -> tuple[float, Reply]:
            cost = proc.cost("CancelJob")
            try:
                transition = self.table.cancel(now, job_id)
            except DtqError as exc:
                return cost, (status_of(exc), None)
            cost += self._save([job_id])
            self._job_perform(transition.commands)
            return cost, ("OK", transition.job.state)

        reply: Reply = yield proc.run(action)
        return reply

    def _job_list(self, page_size: int) -> SimGen[Reply]:
        proc = self.jobp

        def action(now: float) -> tuple[float, Reply]:
            try:
                page = self.table.list_page(ListQuery(), page_size, "")
            except DtqError as exc:
                return proc.cost("ListJobs"), (status_of(exc), None)
            return proc.cost("ListJobs", len(page.items)), ("OK", len(page.items))

        reply: Reply = yield proc.run(action)
        return reply

    def _job_lease(self, worker_id: str, job_ids: list[str]) -> SimGen[list[Assignment]]:
        proc = self.jobp

        def action(now: float) -> tuple[float, list[Assignment]]:
            leased: list[Assignment] = []
            for job_id in dict.fromkeys(job_ids):
                try:
                    leased.append(self.table.lease(now, job_id, worker_id))
                except (FailedPrecondition, NotFound, InvalidArgument):
                    continue  # a stale queue entry: the lease is the fence
            cost = proc.cost("LeaseJobs", len(job_ids)) + self._save([a.job_id for a in leased])
            cost += proc.byte_cost("LeaseJobs", sum(self.payload_of(a.job_id) for a in leased))
            if leased:
                self.job_timer.poke()
            return cost, leased

        leased: list[Assignment] = yield proc.run(action)
        return leased

    def _job_renew(self, worker_id: str, running: RunningList) -> SimGen[Renewal]:
        proc = self.jobp

        def action(now: float) -> tuple[float, Renewal]:
            renewal = self.table.renew(now, worker_id, running)
            abandoned = set(renewal.abandon)
            kept = [job_id for job_id, attempt in running if (job_id, attempt) not in abandoned]
            return proc.cost("RenewLeases", len(running)) + self._save(kept), renewal

        renewal: Renewal = yield proc.run(action)
        return renewal

    def _job_complete(self, worker_id: str, job_id: str, attempt: int, outcome: Outcome) -> SimGen[str]:
        proc = self.jobp
        if isinstance(outcome, Succeeded):
            outcome = Succeeded(b"")  # the output lives in the result service

        def action(now: float) -> tuple[float, str]:
            cost = proc.cost("CompleteAttempt")
            try:
                transition = self.table.complete(now, job_id, attempt, worker_id, outcome)
            except StaleAttempt:
                self.count("stale_reports")
                return cost, "ABORTED"
            except DtqError as exc:
                return cost, status_of(exc)
            cost += self._save([job_id])
            self._job_perform(transition.commands)
            return cost, "OK"

        status: str = yield proc.run(action)
        return status

    def _job_release_worker(self, worker_id: str) -> SimGen[None]:
        proc = self.jobp

        def action(now: float) -> tuple[float, None]:
            commands = self.table.release_worker(now, worker_id)
            cost = proc.cost("ReleaseWorker") + self._save(self._jobs_in(commands))
            self._job_perform(commands)
            return cost, None

        yield proc.run(action)

    def _job_on_timer(self, now: float) -> float:
        commands = self.table.handle_timer(now)
        cost = self.jobp.cost("timer")
        if commands:
            cost += self._save(self._jobs_in(commands))
            self._job_perform(commands)
        return cost

    def _is_pending(self, job_id: str) -> bool:
        try:
            return self.table.get(job_id).state is JobState.PENDING
        except DtqError:
            return False

    def _flush_outbox(self) -> SimGen[None]:
        """JobRole._flush_outbox: one background task sends Enqueue batches to the queue service."""
        proc = self.jobp

        def take(now: float) -> tuple[float, list[Enqueue]]:
            batch = dict(list(self._outbox.items())[:ENQUEUE_BATCH])
            for job_id in batch:
                del self._outbox[job_id]
            entries = [c for c in batch.values() if self._is_pending(c.job_id)]
            return proc.cost("flush", len(batch)), entries

        while True:
            if not self._outbox:
                self._outbox_ready = simpy.Event(self.env)
                yield self._outbox_ready
                self._outbox_ready = None
                continue
            entries: list[Enqueue] = yield proc.run(take)
            if entries:
                yield from self.call(proc, self._queue_enqueue(entries), to=self.queuep)

    def _sweep(self) -> SimGen[None]:
        """JobRole._sweep: re-enqueue jobs PENDING for longer than a dispatch can take."""
        proc = self.jobp

        def action(now: float) -> tuple[float, None]:
            for command in self.table.stale_pending(now, list(self._pending), self.stale_after):
                self._outbox.setdefault(command.job_id, command)
            if self._outbox and self._outbox_ready is not None:
                wake(self._outbox_ready)
            return proc.cost("sweep", len(self._pending)), None

        while True:
            yield self.env.timeout(self.sweep_interval)
            yield proc.run(action)

    # ================================================================ queue service
    def _wake_reserves(self) -> None:
        waiters, self._reserve_waiters = self._reserve_waiters, []
        for event in waiters:
            wake(event)

    def _queue_enqueue(self, entries: list[Enqueue]) -> SimGen[None]:
        proc = self.queuep

        def action(now: float) -> tuple[float, None]:
            rows = [e for e in entries if not self.queue.has_waiting(now, e.job_id, e.priority, e.not_before)]
            cost = proc.cost("Enqueue", len(entries)) + proc.commit(len(rows))
            for e in rows:
                self.queue.push(now, e.job_id, e.priority, e.not_before)
            if rows:
                self.queue_timer.poke()
                if self.queue.ready_count:
                    self._wake_reserves()
            return cost, None

        yield proc.run(action)

    def _queue_reserve(
        self, max_items: int, hold: float, wait: float, cancelled: Callable[[], bool] = lambda: False
    ) -> SimGen[list[str]]:
        """Queue.Reserve. `cancelled`: the caller's call was cancelled (its worker died and the
        cancellation propagated through the coordinator): reserve nothing."""
        env = self.env
        proc = self.queuep
        max_items = min(max_items, MAX_ITEMS)
        give_up = env.now + min(wait, MAX_POLL)

        def reserve(method: str) -> Any:
            def action(now: float) -> tuple[float, list[str]]:
                if cancelled():
                    return proc.cost(method), []
                taken = self.queue.reserve(now, max_items, hold)
                if taken:
                    self.queue_timer.poke()  # the holds are new deadlines
                return proc.cost(method, len(taken)), [e.job_id for e in taken]

            return action

        taken: list[str] = yield proc.run(reserve("Reserve"))
        while max_items and not taken and not cancelled():
            left = give_up - env.now
            if left <= 0:
                break
            event = self.waitable(left)
            self._reserve_waiters.append(event)
            yield event
            taken = yield proc.run(reserve("Reserve.wake"))
        return taken

    def _queue_ack(self, job_ids: list[str]) -> SimGen[None]:
        proc = self.queuep

        def action(now: float) -> tuple[float, None]:
            acked = [job_id for job_id in job_ids if self.queue.ack(job_id)]
            return proc.cost("Ack", len(job_ids)) + proc.commit(len(acked)), None

        yield proc.run(action)

    def _queue_on_timer(self, now: float) -> float:
        if self.queue.handle_timer(now):
            self._wake_reserves()
        return self.queuep.cost("timer")

    # ================================================================ coordinator
    def _coord_heartbeat(
        self, worker_id: str, total_slots: int, free_slots: int, running: RunningList
    ) -> SimGen[tuple[RunningList, RunningList]]:
        proc = self.coord

        def step(now: float) -> float:
            self.registry.heartbeat(now, worker_id, total_slots, free_slots)
            self.coord_timer.poke()
            return proc.cost("WorkerHeartbeat")

        renewal = yield from self.call(proc, self._job_renew(worker_id, running), pre=step, to=self.jobp)
        cancel = list(renewal.cancel)
        pushed = self._cancels.pop(worker_id, None)
        if pushed:
            have = set(cancel)
            cancel.extend(key for key in pushed if key not in have)
        return cancel, list(renewal.abandon)

    def _coord_fetch(self, worker_id: str, free_slots: int, wait: float) -> SimGen[list[Assignment]]:
        env = self.env
        proc = self.coord

        def step(now: float) -> float:
            self.registry.touch(now, worker_id)
            return proc.cost("FetchWork")

        wanted = min(free_slots, MAX_FETCH)
        give_up = env.now + min(wait, MAX_POLL)
        hold = self.params.core.reservation_hold

        def gone() -> bool:  # the worker's process died: gRPC cancels this handler and its calls
            return worker_id in self._dead_workers

        first: float | Any = step
        while wanted and not gone():
            left = max(0.0, give_up - env.now)
            ids = yield from self.call(
                proc, self._queue_reserve(wanted, hold, left, gone), pre=first, to=self.queuep
            )
            first = 0.0
            if not ids or gone():
                break
            leased = yield from self.call(proc, self._job_lease(worker_id, ids), to=self.jobp)
            self.spawn(self.call(proc, self._queue_ack(ids), to=self.queuep))
            if leased:
                relay = proc.byte_cost("FetchWork", sum(self.payload_of(a.job_id) for a in leased))
                if relay:  # the payloads it received and sends on to the worker
                    yield proc.run(relay)
                return leased
            if env.now >= give_up:
                break
        return []

    def _coord_report(self, worker_id: str, job_id: str, attempt: int, outcome: Outcome) -> SimGen[str]:
        proc = self.coord

        def step(now: float) -> float:
            self.registry.touch(now, worker_id)
            return proc.cost("ReportResult")

        complete = self._job_complete(worker_id, job_id, attempt, outcome)
        if isinstance(outcome, CancelledByWorker):
            status: str = yield from self.call(proc, complete, pre=step, to=self.jobp)
            return status
        # before CompleteAttempt: a stale attempt's result is harmless under its own key
        yield from self.call(proc, self._result_put(job_id, attempt), pre=step, to=self.resultp)
        status = yield from self.call(proc, complete, to=self.jobp)
        return status

    def _coord_notify_cancel(self, job_id: str, attempt: int, worker_id: str) -> SimGen[None]:
        proc = self.coord

        def action(now: float) -> tuple[float, None]:
            if worker_id in self.registry.workers:
                self._cancels.setdefault(worker_id, {})[(job_id, attempt)] = None
            return proc.cost("NotifyCancel"), None

        yield proc.run(action)

    def _coord_on_timer(self, now: float) -> float:
        for lost in self.registry.handle_timer(now):
            self._cancels.pop(lost.worker_id, None)
            self.count("workers_lost")
            self.spawn(self.call(self.coord, self._job_release_worker(lost.worker_id), to=self.jobp))
        return self.coord.cost("timer")

    # ================================================================ result service
    def _result_put(self, job_id: str, attempt: int) -> SimGen[None]:
        proc = self.resultp
        yield proc.run(proc.cost("PutResult") + proc.commit(1))

    def _result_get(self, job_id: str, attempt: int) -> SimGen[bool]:
        proc = self.resultp
        yield proc.run(proc.cost("GetResult"))
        return True  # a SUCCEEDED job's result was stored before the job service recorded it

    # ================================================================ faults and inspection
    def kill_worker(self, target: str, restart_after: float | None) -> None:
        if self.worker is not None:
            self._dead_workers.add(self.worker.worker_id)
            self.worker.kill()
            self.worker = None
        if restart_after is not None:
            self.env.timeout(restart_after).callbacks.append(lambda _: self.start_worker())

    def job_state(self, job_id: str) -> tuple[JobState, int]:
        job = self.table.get(job_id)
        return job.state, job.attempt

    def core_counters(self) -> dict[str, int]:
        out = {
            "jobs": len(self.table),
            "lease_expiries": self.table.lease_expiries,
            "requeues": self.table.requeues,
        }
        for state, n in self.table.count_by_state.items():
            if n:
                out[f"state_{state.name.lower()}"] = n
        return out


class _WorkerBackend:
    """GrpcWorkerBackend: the worker process's calls to the coordinator."""

    def __init__(self, cluster: MicroCluster) -> None:
        self.cluster = cluster

    def fetch(self, worker: SimWorker, free_slots: int, wait: float) -> SimGen[list[Assignment]]:
        c = self.cluster
        leased = yield from c.call(
            worker.proc, c._coord_fetch(worker.worker_id, free_slots, wait), to=c.coord
        )
        return leased if worker.alive else []

    def heartbeat(
        self, worker: SimWorker, total_slots: int, free_slots: int, running: RunningList
    ) -> SimGen[tuple[RunningList, RunningList] | None]:
        c = self.cluster
        reply = yield from c.call(
            worker.proc, c._coord_heartbeat(worker.worker_id, total_slots, free_slots, running), to=c.coord
        )
        return reply

    def report(
        self, worker: SimWorker, job_id: str, attempt: int, outcome: Outcome, pre: float = 0.0
    ) -> SimGen[None]:
        c = self.cluster
        yield from c.call(
            worker.proc, c._coord_report(worker.worker_id, job_id, attempt, outcome), pre=pre, to=c.coord
        )
