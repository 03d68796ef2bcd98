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
coordinator -> job.CompleteAttempt (the lease fence; -> result.PutResult (commit) for a success; then
the transition, a commit) -> coordinator -> worker.
Heartbeats: worker -> coordinator -> job.RenewLeases (commit) -> coordinator -> worker.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import simpy

from model.actions import PutResult, Step
from model.commands import Enqueue, NotifyCancel
from model.coordinator import Coordinator, fetch_limit
from model.errors import DtqError, StaleAttempt
from model.ids import JobIdFactory
from model.job import Assignment, Job, Outcome
from model.job_service import OWNER, JobService
from model.jobs import JobTable, Renewal
from model.listing import ListQuery
from model.policies import queue_service_policy
from model.queue_service import QueueService
from model.result_service import ResultService
from model.states import JobState
from model.workload import JobDraw
from sim.cpu import Component, CostModel, stream
from sim.engine import Cluster, LoadgenPart, SimGen, SimTimer, finished_record, status_of, wake
from sim.params import SimParams
from sim.service import Reply, cancel_action, perform_effects, submit_action
from sim.worker import RunningList, SimWorker

ROLES = ("gateway", "job", "queue", "coordinator", "worker", "result")  # realsys.config.MICRO_ROLES
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
        # job service: the driver realsys/micro/job.py performs (model/job_service.py)
        self.table = JobTable(core, JobIdFactory(node=OWNER, incarnation="1"), rng)
        self.jobs: JobService[simpy.Event] = JobService(
            self.table, params.rpc_timeout, sweep_every=params.sweep_interval
        )
        self.job_timer = SimTimer(env, self.jobp, self.jobs.timer, self._job_on_timer)
        self._outbox_ready: simpy.Event | None = None
        # queue service (model/queue_service.py)
        policy = queue_service_policy(core.policy_settings)
        self.queues: QueueService[simpy.Event] = QueueService(core.reservation_hold, policy)
        self.queue = self.queues.queue
        self.queue_timer = SimTimer(env, self.queuep, self.queues.timer, self._queue_on_timer)
        # coordinator (model/coordinator.py)
        self.coordinator = Coordinator(core)
        self.registry = self.coordinator.registry
        self.coord_timer = SimTimer(env, self.coord, self.coordinator.timer, self._coord_on_timer)
        # result service (model/result_service.py)
        self.results = ResultService(core)
        self.result_timer = SimTimer(env, self.resultp, self.results.timer, self._result_on_timer)
        # worker
        self.worker: SimWorker | None = None
        self._worker_incarnation = 0
        self._dead_workers: set[str] = set()

    def start(self) -> None:
        # callees first, as realsys/cluster.py starts them: result, queue, job, coordinator, worker
        for store in (self.resultp, self.queuep, self.jobp):
            self.start_checkpointer(store)
        self.result_timer.start()
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
        return self.entry_hops(lg.proc, self.gateway, server)

    def _gw(self, method: str, then: SimGen[Reply], nbytes: int = 0) -> SimGen[Reply]:
        """A gateway method that is one call to the job service (the handler and the stub call are
        one loop step); `nbytes`: the payload it relays."""
        pre = self.gateway.cost(method) + self.gateway.byte_cost(method, nbytes)
        reply: Reply = yield from self.call(self.gateway, then, pre=pre, to=self.jobp)
        return reply

    def request_submit(self, lg: LoadgenPart, job: JobDraw) -> SimGen[tuple[str, str]]:
        return self._via_gateway(lg, self._gw("SubmitJob", self._job_create(job), job.payload_bytes))

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
    def _perform(self, step: Step[simpy.Event]) -> float:
        """JobRole._perform: the commits (saves, then retention deletes; durable before the answer),
        then the effects; returns the commits' time."""
        proc = self.jobp
        cost = proc.commit(len(step.save))
        if step.delete:
            cost += proc.commit(len(step.delete))
        if step.effects:
            perform_effects(self, step.effects, self._notify_cancel)
        if step.flush and self._outbox_ready is not None:
            wake(self._outbox_ready)
        if step.rearm:
            self.job_timer.arm()
        return cost

    def _notify_cancel(self, effect: NotifyCancel) -> None:
        """job -> coordinator.NotifyCancel, in the background (the coordinator pushes it to the worker)."""
        self.spawn(
            self.call(
                self.jobp,
                self._coord_notify_cancel(effect.job_id, effect.attempt, effect.worker_id),
                to=self.coord,
            )
        )

    def job_start_draining(self) -> float:
        """JobRole.drain's step: WaitJob long-polls stop waiting (the simulator's runs never drain a
        service; the differential test does)."""
        return self._perform(self.jobs.start_draining())

    def _job_create(self, job: JobDraw) -> SimGen[Reply]:
        proc = self.jobp
        reply: Reply = yield proc.run(
            submit_action("CreateJob", self, proc, self.jobs.create, job, self._perform)
        )
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
        """JobRole.WaitJob: the job once it is done, or as it is when the wait runs out, or
        UNAVAILABLE when the wait ended early because the service drains (the driver's wait_ended)."""
        wait = min(poll, MAX_POLL)
        reply: Reply = yield self.jobp.run(self._job_look("WaitJob", job_id))
        if reply[0] != "OK" or reply[1][0] in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED):
            return reply
        if wait <= 0:
            return reply
        event = self.waitable(wait)
        if self.jobs.add_waiter(event, job_id):
            yield event
            self.jobs.waiter_gone(event, job_id)
            reply = yield self.jobp.run(self._job_look("WaitJob.wake", job_id))
            if reply[0] != "OK":
                return reply
        try:
            self.jobs.wait_ended(self.table.get(job_id), wait)
        except DtqError as exc:
            return status_of(exc), None
        return reply

    def _job_cancel(self, job_id: str) -> SimGen[Reply]:
        proc = self.jobp
        reply: Reply = yield proc.run(cancel_action(proc, self.jobs.cancel, job_id, self._perform))
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
            leased, step = self.jobs.lease(now, worker_id, job_ids)
            cost = proc.cost("LeaseJobs", len(job_ids)) + self._perform(step)
            cost += proc.byte_cost("LeaseJobs", sum(self.payload_of(a.job_id) for a in leased))
            return cost, leased

        leased: list[Assignment] = yield proc.run(action)
        return leased

    def _job_renew(self, worker_id: str, running: RunningList, total_slots: int) -> SimGen[Renewal]:
        proc = self.jobp

        def action(now: float) -> tuple[float, Renewal]:
            renewal, step = self.jobs.renew(now, worker_id, running, total_slots)
            return proc.cost("RenewLeases", len(running)) + self._perform(step), renewal

        renewal: Renewal = yield proc.run(action)
        return renewal

    def _job_complete(self, worker_id: str, job_id: str, attempt: int, box: list[Outcome]) -> SimGen[str]:
        """JobRole.CompleteAttempt: the lease fence, then (a success) result.PutResult, then the
        transition. Its two loop steps are the real handler's, split at its await: the fence with the
        PutResult call's send, and the receive with the transition. `box` holds the outcome the
        coordinator's step bounded (read when this step runs)."""
        proc = self.jobp
        put: PutResult | None = None
        send = receive = 0.0

        def complete(now: float) -> tuple[float, str]:
            try:
                _, step = self.jobs.complete(now, job_id, attempt, worker_id, box[0])
            except StaleAttempt:  # the lease ended while the result was stored
                self.count("stale_reports")
                return 0.0, "ABORTED"
            except DtqError as exc:
                return 0.0, status_of(exc)
            return self._perform(step), "OK"

        def fence(now: float) -> tuple[float, str]:
            nonlocal put, send, receive
            cost = proc.cost("CompleteAttempt")
            try:
                put = self.jobs.fence(job_id, attempt, worker_id, box[0])
            except StaleAttempt:
                self.count("stale_reports")
                return cost, "ABORTED"
            except DtqError as exc:
                return cost, status_of(exc)
            if put is None:  # nothing to store: the transition in the same step
                more, status = complete(now)
                return cost + more, status
            c = proc.client()
            send = c * self.params.client_send_fraction
            receive = c - send
            return cost + send, ""

        status: str = yield proc.run(fence)
        if put is None:
            return status
        # as Cluster.call, split at the handler's await (the send ran in the fence's step)
        d = self.hop(proc, self.resultp)
        if d:
            yield self.env.timeout(d)
        yield from self._result_put(put)
        d = self.hop(proc, self.resultp)
        if d:
            yield self.env.timeout(d)

        def finish(now: float) -> tuple[float, str]:
            more, status = complete(now)
            return receive + more, status

        status = yield proc.run(finish)
        return status

    def _job_release_worker(self, worker_id: str) -> SimGen[None]:
        proc = self.jobp

        def action(now: float) -> tuple[float, None]:
            _, step = self.jobs.release_worker(now, worker_id)
            return proc.cost("ReleaseWorker") + self._perform(step), None

        yield proc.run(action)

    def _job_on_timer(self, now: float) -> float:
        return self.jobp.cost("timer") + self._perform(self.jobs.on_timer(now))

    def _flush_outbox(self) -> SimGen[None]:
        """JobRole._flush_outbox: one background task sends Enqueue batches to the queue service."""
        proc = self.jobp
        jobs = self.jobs

        def take(now: float) -> tuple[float, list[Enqueue]]:
            batch, entries = jobs.take_batch()
            return proc.cost("flush", len(batch)), entries

        while True:
            if not jobs.outbox:
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
        jobs = self.jobs

        def action(now: float) -> tuple[float, None]:
            if jobs.sweep(now) and self._outbox_ready is not None:
                wake(self._outbox_ready)
            return proc.cost("sweep", jobs.pending_tracked), None

        while True:
            yield self.env.timeout(jobs.sweep_interval)
            yield proc.run(action)

    # ================================================================ queue service
    def _queue_enqueue(self, entries: list[Enqueue]) -> SimGen[None]:
        proc = self.queuep
        queues = self.queues

        def action(now: float) -> tuple[float, None]:
            rows = queues.new_rows(now, ((e.job_id, e.priority, e.not_before, e.key) for e in entries))
            cost = proc.cost("Enqueue", len(entries)) + proc.commit(len(rows))
            woken, rearm = queues.push(now, rows)
            if rearm:
                self.queue_timer.arm()
            for event in woken:
                wake(event)
            return cost, None

        yield proc.run(action)

    def _queue_reserve(
        self, max_items: int, hold: float, wait: float, cancelled: Callable[[], bool] = lambda: False
    ) -> SimGen[list[str]]:
        """Queue.Reserve. `cancelled`: the caller's call was cancelled (its worker died and the
        cancellation propagated through the coordinator): reserve nothing."""
        env = self.env
        proc = self.queuep
        queues = self.queues
        max_items = queues.max_items(max_items)
        hold = queues.hold(hold)
        give_up = env._now + min(wait, MAX_POLL)

        def reserve(method: str) -> Any:
            def action(now: float) -> tuple[float, list[str]]:
                if cancelled():
                    return proc.cost(method), []
                taken, rearm = queues.reserve(now, max_items, hold)
                if rearm:
                    self.queue_timer.arm()  # the holds are new deadlines
                return proc.cost(method, len(taken)), [e.job_id for e in taken]

            return action

        taken: list[str] = yield proc.run(reserve("Reserve"))
        while max_items and not taken and not cancelled():
            left = give_up - env._now
            if left <= 0:
                break
            event = self.waitable(left)
            queues.add_waiter(event)
            yield event
            queues.waiter_gone(event)
            taken = yield proc.run(reserve("Reserve.wake"))
        return taken

    def _queue_ack(self, job_ids: list[str]) -> SimGen[None]:
        proc = self.queuep

        def action(now: float) -> tuple[float, None]:
            acked = self.queues.ack(job_ids)
            return proc.cost("Ack", len(job_ids)) + proc.commit(len(acked)), None

        yield proc.run(action)

    def _queue_on_timer(self, now: float) -> float:
        for event in self.queues.on_timer(now):
            wake(event)
        return self.queuep.cost("timer")

    # ================================================================ coordinator
    def _coord_heartbeat(
        self, worker_id: str, total_slots: int, free_slots: int, running: RunningList
    ) -> SimGen[tuple[RunningList, RunningList]]:
        proc = self.coord

        def step(now: float) -> float:
            if self.coordinator.heartbeat(now, worker_id, total_slots, free_slots, bool(running)):
                self.coord_timer.arm()
            return proc.cost("WorkerHeartbeat")

        renew = self._job_renew(worker_id, running, total_slots)
        renewal = yield from self.call(proc, renew, pre=step, to=self.jobp)
        cancel = list(renewal.cancel)
        cancel.extend(self.coordinator.pushed_cancels(worker_id, cancel))
        return cancel, list(renewal.abandon)

    def _coord_fetch(self, worker_id: str, free_slots: int, wait: float) -> SimGen[list[Assignment]]:
        env = self.env
        proc = self.coord

        def step(now: float) -> float:
            self.coordinator.fetch(now, worker_id, free_slots)
            return proc.cost("FetchWork")

        wanted = fetch_limit(free_slots)
        give_up = env._now + min(wait, MAX_POLL)
        hold = self.params.core.reservation_hold

        def gone() -> bool:  # the worker's process died: gRPC cancels this handler and its calls
            return worker_id in self._dead_workers

        first: float | Any = step
        while wanted and not gone():
            left = max(0.0, give_up - env._now)
            ids = yield from self.call(
                proc, self._queue_reserve(wanted, hold, left, gone), pre=first, to=self.queuep
            )
            first = 0.0
            if not ids or gone():
                break
            leased = yield from self.call(proc, self._job_lease(worker_id, ids), to=self.jobp)
            self.spawn(self.call(proc, self._queue_ack(ids), to=self.queuep))
            if leased:
                self.coordinator.leased(worker_id)
                relay = proc.byte_cost("FetchWork", sum(self.payload_of(a.job_id) for a in leased))
                if relay:  # the payloads it received and sends on to the worker
                    yield proc.run(relay)
                return leased
            if env._now >= give_up:
                break
        return []

    def _coord_report(self, worker_id: str, job_id: str, attempt: int, outcome: Outcome) -> SimGen[str]:
        proc = self.coord
        box = [outcome]  # the driver's bounded outcome, once `step` ran

        def step(now: float) -> float:
            box[0] = self.coordinator.report(now, worker_id, job_id, attempt, outcome)
            return proc.cost("ReportResult")

        # the job service checks the lease, has the result stored and completes the attempt
        status: str = yield from self.call(
            proc, self._job_complete(worker_id, job_id, attempt, box), pre=step, to=self.jobp
        )
        return status

    def _coord_notify_cancel(self, job_id: str, attempt: int, worker_id: str) -> SimGen[None]:
        proc = self.coord

        def action(now: float) -> tuple[float, None]:
            self.coordinator.notify_cancel(job_id, attempt, worker_id)
            return proc.cost("NotifyCancel"), None

        yield proc.run(action)

    def _coord_on_timer(self, now: float) -> float:
        lost, release = self.coordinator.on_timer(now)
        if lost:
            self.count("workers_lost", len(lost))
        for worker_id in release:
            self.spawn(self.call(self.coord, self._job_release_worker(worker_id), to=self.jobp))
        return self.coord.cost("timer")

    # ================================================================ result service
    def _result_put(self, put: PutResult) -> SimGen[None]:
        proc = self.resultp

        def action(now: float) -> tuple[float, None]:
            cost = proc.cost("PutResult") + proc.commit(1)  # stored, then timed for retention
            if self.results.stored(now, (put.job_id, put.attempt), len(put.output)):
                self.result_timer.arm()
            return cost, None

        yield proc.run(action)

    def _result_on_timer(self, now: float) -> float:
        expired = self.results.on_timer(now)
        return self.resultp.cost("timer") + self.resultp.commit(len(expired))

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

    def find_job(self, job_id: str) -> Job | None:
        return self.table.find(job_id)

    def prefill(
        self, finished: Sequence[tuple[JobDraw, str]], pending: Sequence[JobDraw], now: float
    ) -> None:
        self.jobs.restore(
            now, [finished_record(self.table, now, self.spec_of(job), state) for job, state in finished]
        )
        for job in pending:
            submitted, step = self.jobs.create(now, self.spec_of(job))
            self.submit_job(submitted.job.job_id, job)
            self._perform(step)

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
