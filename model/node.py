"""Design B's node driver, sans-I/O: what a node does around its Scheduler, written once for the real
node (realsys/mono/core.py) and the simulated one (sim/mono.py).

aioquic's connection object is the model: an event goes in (a client or worker call, a timer firing,
a waiter registering, a drain) with `now`; the core's answer comes back with a `Step`
(model/actions.py), the actions the adapter performs in order: store large results out of RAM
(StoreOutput), save the records the call changed,
delete those retention dropped, wake waiters, report ended jobs, push a cancel to this node's own
worker (other workers hear it in their next heartbeat), log lease expiries and lost workers, re-arm
the core timer (the driver's TimerRule, `timer`).

Long-poll waiters are opaque tokens the adapter chooses (an asyncio future, a simpy event): the
driver keeps who waits for what (fetchers with their free slots, in arrival order; WaitJob waiters per
job) and says whom to wake. Newly ready work wakes the fetchers model.pick_waiter picks until their
free slots cover it. A waiter that stops waiting (timed out, or resumed) is dropped with `*_gone`.

Status estimates (CoreConfig.estimate_window > 0; model/eta.py): `estimate(now, job)` for a job this
node owns, from its own ready queue (the job's place in line, through ReadyQueue.ahead_of) and its own
worker's slots as the registry knows them (total, and busy = total - free). It approximates the
node's queue as served by its own worker alone: thieves that take its work make jobs start earlier
than estimated, and its worker's slots held by stolen jobs count as busy. The service times come from
every report of this node's jobs (its own worker's and thieves'): dispatch to report.
"""

from __future__ import annotations

from collections.abc import Sequence

from model.actions import NOTHING, DoneWaiters, Effect, Step, T, Wake, check_wait_end
from model.commands import (
    Command,
    JobFinished,
    JobsExpired,
    LeaseExpired,
    NotifyCancel,
    StoreOutput,
    WorkAvailable,
    WorkerLost,
)
from model.driver import CoreDriver
from model.errors import InvalidArgument, Unavailable
from model.eta import Estimate, Estimator, attempt_start
from model.job import Assignment, Job, JobSpec, Outcome
from model.jobs import Renewal, Submitted
from model.scheduler import Scheduler
from model.timer import TimerRule
from model.workers import pick_waiter


class NodeDriver(CoreDriver[T]):
    def __init__(self, scheduler: Scheduler, local_worker_id: str = "") -> None:
        super().__init__(scheduler.jobs)
        self.scheduler = scheduler
        self.timer = TimerRule(scheduler.next_deadline)
        self.local_worker_id = local_worker_id  # NotifyCancel for it is pushed, not left to heartbeats
        self.draining = False
        self.workers_lost = 0
        self._jobs = scheduler.jobs
        self._fetchers: dict[T, int] = {}  # waiting fetchers: token -> free slots, in arrival order
        self._done: DoneWaiters[T] = DoneWaiters()  # WaitJob long-polls

    # ---------------------------------------------------------------- start-up
    def _restore_job(self, now: float, job: Job) -> None:
        """A saved job (a pending one goes back on the ready queue)."""
        self.scheduler.restore(now, job)

    # ---------------------------------------------------------------- client side
    def submit(self, now: float, spec: JobSpec, request_id: str = "") -> tuple[Submitted, Step[T]]:
        result = self.scheduler.submit(now, spec, request_id)
        if result.deduplicated:
            return result, NOTHING  # type: ignore[return-value]  # NOTHING holds no token
        return result, self._commit((result.job,), result.commands)

    def cancel(self, now: float, job_id: str) -> tuple[Job, Step[T]]:
        result = self.scheduler.cancel(now, job_id)
        return result.job, self._commit((result.job,), result.commands)

    # ---------------------------------------------------------------- worker side
    def heartbeat(
        self,
        now: float,
        worker_id: str,
        total_slots: int,
        free_slots: int,
        running: Sequence[tuple[str, int]],
    ) -> tuple[Renewal, Step[T]]:
        renewal = self.scheduler.heartbeat(now, worker_id, total_slots, free_slots, running)
        # renewed lease deadlines are persisted, so a restart does not expire leases that are alive
        return renewal, self._commit(self._renewed(running, renewal), ())

    def fetch_now(self, now: float, worker_id: str, free_slots: int) -> tuple[list[Assignment], Step[T]]:
        """Leases what is ready right now, without waiting."""
        if free_slots < 0:
            raise InvalidArgument("free_slots must not be negative")
        if free_slots == 0 or self.draining:
            return [], NOTHING  # type: ignore[return-value]
        assignments = self.scheduler.fetch(now, worker_id, free_slots)
        self._note_free_slots(now, worker_id, free_slots - len(assignments))
        get = self._jobs.get
        return assignments, self._commit([get(a.job_id) for a in assignments], ())

    def steal(self, now: float, thief_worker_id: str, max_jobs: int) -> tuple[list[Assignment], Step[T]]:
        if max_jobs < 0:
            raise InvalidArgument("max_jobs must not be negative")
        assignments = self.scheduler.steal(now, thief_worker_id, max_jobs)
        # the thief's worker heartbeats here only after it has the jobs; count this call as a sign of
        # life so the registry does not declare it lost in between
        self.scheduler.workers.touch(now, thief_worker_id)
        get = self._jobs.get
        return assignments, self._commit([get(a.job_id) for a in assignments], ())

    def report(
        self, now: float, worker_id: str, job_id: str, attempt: int, outcome: Outcome
    ) -> tuple[Job, Step[T]]:
        estimator = self.estimator
        started = attempt_start(self._jobs.find(job_id), attempt, worker_id) if estimator else None
        result = self.scheduler.report(now, worker_id, job_id, attempt, outcome)
        if started is not None and estimator is not None:
            estimator.observe(now - started)
        return result.job, self._commit((result.job,), result.commands)

    def release_worker(self, now: float, worker_id: str) -> Step[T]:
        """The worker is gone for sure (this node's own worker after a drain or restart): requeue now."""
        return self._commit((), self.scheduler.release_worker(now, worker_id))

    def on_timer(self, now: float) -> Step[T]:
        return self._commit((), self.scheduler.handle_timer(now))

    def start_draining(self) -> Step[T]:
        """Fetch long-polls return (empty) now, and so do WaitJob long-polls: the server's grace period
        then waits only for short calls, not for every client's long-poll to time out."""
        self.draining = True
        effects: list[Effect[T]] = []
        if self._fetchers:
            effects.append(Wake(list(self._fetchers)))
            self._fetchers.clear()
        if self._done:
            effects.append(Wake(self._done.take_all(), False))
        return Step((), (), effects, False)

    # ---------------------------------------------------------------- status estimates
    def _pending_estimate(self, now: float, job: Job, estimator: Estimator) -> Estimate | None:
        """`estimate` of a PENDING job this node owns: None while its own worker has not registered."""
        local = self.scheduler.workers.workers.get(self.local_worker_id)
        if local is None or local.total_slots < 1:
            return None
        queue = self.scheduler.queue
        ahead = queue.ahead_of(job.job_id)
        not_before = 0.0
        if ahead is None:  # in a retry backoff: behind every ready job, and no earlier than its due time
            ahead, not_before = queue.ready_count, job.not_before
        busy = local.total_slots - local.free_slots
        return estimator.pending(now, ahead, local.total_slots, busy, not_before)

    # ---------------------------------------------------------------- long-poll waiters
    def add_fetcher(self, now: float, token: T, worker_id: str, free_slots: int) -> bool:
        """A fetcher waits for ready work. False: do not wait (the node drains)."""
        if self.draining:
            return False
        # an idle fetcher's free slots are what the victim side of stealing keeps for itself
        self._note_free_slots(now, worker_id, free_slots)
        self._fetchers[token] = free_slots
        return True

    def fetcher_gone(self, token: T) -> None:
        """The fetcher stopped waiting (timed out or resumed); a no-op if it was woken."""
        self._fetchers.pop(token, None)

    def add_done_waiter(self, token: T, job_id: str) -> bool:
        """A WaitJob long-poll waits for the job's end (the caller checked it is not done yet).
        False: do not wait (the node drains)."""
        if self.draining:
            return False
        self._done.add(token, job_id)
        return True

    def wait_ended(self, job: Job, wait: float) -> None:
        """A long-poll for this node's job ended: UNAVAILABLE with a retry-after when it ended early
        because the node drains (model.actions.check_wait_end)."""
        if self.draining:  # else nothing to check (and no message to format)
            check_wait_end(f"node {self.scheduler.node}", job, wait, self.draining)

    def check_relay(self, wait: float) -> None:
        """A long-poll this node would relay to the job's owner: refused while it drains."""
        if wait > 0 and self.draining:
            raise self.relay_cut()

    def relay_cut(self) -> Unavailable:
        """The answer to a long-poll relayed to another owner that the drain cut, or refused: ask
        another node at once (retry-after 0), rather than CANCELLED when the server stops."""
        return Unavailable(f"node {self.scheduler.node} is draining: ask another node", retry_after=0.0)

    def done_waiter_gone(self, token: T, job_id: str) -> None:
        self._done.gone(token, job_id)

    @property
    def jobs_waited_on(self) -> int:
        """How many jobs have WaitJob long-polls waiting for their end (for tests and gauges)."""
        return len(self._done)

    # ---------------------------------------------------------------- internals
    def _note_free_slots(self, now: float, worker_id: str, free_slots: int) -> None:
        """Keeps a registered worker's free slots current between heartbeats (steal grants use them)."""
        workers = self.scheduler.workers
        info = workers.workers.get(worker_id)
        if info is not None and info.total_slots:
            workers.heartbeat(now, worker_id, info.total_slots, max(0, min(free_slots, info.total_slots)))

    def _commit(self, touched: Sequence[Job], commands: Sequence[Command]) -> Step[T]:
        """Every job the call changed is saved, then the commands are carried out. (The hot path of
        both adapters: one pass over the commands, no per-call containers where nothing needs them.)"""
        effects: list[Effect[T]] | tuple[()] = ()
        outputs: list[StoreOutput] | tuple[()] = ()
        expired: tuple[str, ...] = ()
        if not commands:
            if not touched:
                return NOTHING  # type: ignore[return-value]  # nothing changed: not even the deadline
            save: Sequence[Job] = (
                touched if len(touched) < 2 else list({j.job_id: j for j in touched}.values())
            )
        else:
            jobs = {job.job_id: job for job in touched}
            named: list[str] = []  # jobs the commands name: saved unless retention dropped them
            effects = []
            for command in commands:
                match command:  # class patterns: no isinstance calls on this hot path
                    case WorkAvailable():
                        woken = self._pick_fetchers(command.count)
                        if woken:
                            effects.append(Wake(woken))
                    case JobFinished():
                        named.append(command.job_id)
                        waiting = self._done.ended(command.job_id)
                        if waiting is not None:
                            effects.append(Wake(waiting))
                        effects.append(command)
                    case NotifyCancel():
                        named.append(command.job_id)
                        if command.worker_id == self.local_worker_id:
                            effects.append(command)
                    case LeaseExpired():
                        named.append(command.job_id)
                        effects.append(command)
                    case WorkerLost():
                        self.workers_lost += 1
                        effects.append(command)
                    case JobsExpired():
                        expired += command.job_ids
                    case StoreOutput():
                        if not outputs:
                            outputs = []
                        outputs.append(command)
            get = self._jobs.get
            for job_id in named:
                if job_id not in jobs and job_id not in expired:
                    jobs[job_id] = get(job_id)
            if not jobs and not effects and not expired and not outputs:
                return NOTHING  # type: ignore[return-value]  # e.g. work nobody waits for
            save = list(jobs.values())
        table = self._jobs
        expiries = table.lease_expiries - self._seen_expiries
        requeues = table.requeues - self._seen_requeues
        if expiries or requeues:
            self._seen_expiries, self._seen_requeues = table.lease_expiries, table.requeues
        return Step(save, expired, effects, self.timer.poke(), expiries, requeues, outputs=outputs)

    def _pick_fetchers(self, count: int) -> list[T]:
        """The long-polling fetchers that will take `count` new jobs (model.pick_waiter)."""
        fetchers = self._fetchers
        woken: list[T] = []
        while count > 0 and fetchers:
            chosen = pick_waiter(fetchers, fetchers)
            if chosen is None:
                break
            count -= fetchers.pop(chosen)
            woken.append(chosen)
        return woken
