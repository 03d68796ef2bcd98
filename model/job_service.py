"""Design A's job service driver, sans-I/O: what the job service does around its JobTable, written
once for the real service (realsys/micro/job.py) and the simulated one (sim/micro.py).

Events in with `now`; a Step (model/actions.py) out: the records to save (durable before the call
answers) and to delete (retention), WaitJob waiters to wake, NotifyCancel to send to the coordinator
(best effort: the next heartbeat carries the cancel anyway), lease expiries to log, `flush` when the
Enqueue outbox has work, and the timer re-arm. Unqueue needs nothing: the Queue API has no removal,
and a cancelled job's stale entry is dropped when LeaseJobs refuses it.

- The outbox: Enqueue commands not yet accepted by the queue service, one per job (a newer one
  replaces an older one). The adapter's flusher takes batches (`take_batch`) and puts a failed one
  back (`put_back`). After a restart every PENDING job is enqueued again (the queue dedups by id;
  JobTable.lease is the fence).
- The sweep: every `sweep_interval`, jobs PENDING for longer than `stale_after` (a reservation hold,
  a lease and an RPC timeout: longer than a dispatch can take) are enqueued again, which repairs a
  queue that lost entries (memory store restarted, or an Ack that raced a re-enqueue).
- LeaseJobs leases what fits config.max_reply_bytes (JobTable.lease_batch); the rest go back to the queue.
- A restart gives every leased attempt a full lease (restore grace) to reach us with a heartbeat.
- A report (CompleteAttempt, from the coordinator) passes the lease fence before its result is stored
  (`fence`: PutResult to the result service, only for the attempt that holds the lease), then ends
  the attempt (`complete`, fenced again), so a refused report never leaves a result behind.
- Status estimates (CoreConfig.estimate_window > 0; model/eta.py): `estimate(now, job)`. The job
  service answers status but holds no ReadyQueue, so it estimates from what it can learn itself: the
  line is its PENDING jobs, ready ones ordered by (priority, the time they last became PENDING),
  which approximates the queue service's order (priority, then Enqueue arrival); jobs reserved by the
  coordinator but not yet leased, and jobs still in the outbox, count as in line. Slots are the
  total slots of the workers whose heartbeats (RenewLeases) reached it within worker_ttl; busy slots
  are its RUNNING and CANCELLING jobs. Service times: dispatch (LeaseJobs) to report (CompleteAttempt).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from model.actions import NOTHING, DoneWaiters, Effect, PutResult, Step, T, Wake, check_wait_end
from model.commands import Command, Enqueue, JobFinished, JobsExpired, LeaseExpired, NotifyCancel
from model.config import CoreConfig
from model.driver import CoreDriver
from model.eta import Estimate, Estimator, attempt_start
from model.job import Assignment, Job, JobSpec, Outcome, Succeeded, bounded_outcome
from model.jobs import JobTable, Renewal, Submitted
from model.policies import POLICIES, job_key
from model.states import ACTIVE, JobState
from model.timer import TimerRule
from model.workers import validate_worker_id

OWNER = "job"  # Job.owner_node in Design A: the service that owns the record
ENQUEUE_BATCH = 1000  # Enqueue commands per queue.Enqueue call


def sweep_interval(config: CoreConfig, override: float = 0.0) -> float:
    """How often the sweep runs: `override` when set, else min(60, max(5, 3 leases)) seconds."""
    return override or min(60.0, max(5.0, 3 * config.lease_duration))


def stale_after(config: CoreConfig, rpc_timeout: float) -> float:
    """How long a job may stay PENDING before the sweep enqueues it again."""
    return config.reservation_hold + config.lease_duration + rpc_timeout


class JobService(CoreDriver[T]):
    def __init__(self, table: JobTable, rpc_timeout: float, sweep_every: float = 0.0) -> None:
        super().__init__(table)
        self.table = table
        self.config = table.config
        self.timer = TimerRule(table.next_deadline)
        self.sweep_interval = sweep_interval(table.config, sweep_every)
        self.stale_after = stale_after(table.config, rpc_timeout)
        self.draining = False
        self._pending: dict[str, None] = {}  # PENDING jobs, for the sweep (in no particular order)
        self.outbox: dict[str, Enqueue] = {}  # job id -> the Enqueue the queue has not taken yet
        self._keyed = POLICIES[self.config.policy].keyed  # Enqueues carry the policy's key
        self._waiters: DoneWaiters[T] = DoneWaiters()
        self._slots: dict[str, tuple[int, float]] = {}  # worker -> (total slots, last heartbeat)

    # ------------------------------------------------------------------ start-up
    def _restore_job(self, now: float, job: Job) -> None:
        """A saved job: a pending one goes to the outbox, a leased one gets a full lease from `now`."""
        if job.state in ACTIVE:
            # a worker that outlived our restart gets a full lease to reach us with a heartbeat
            job.lease_deadline = max(job.lease_deadline, now + self.config.lease_duration)
        self._route(self.table.restore(job), [])
        self._track(job)

    # ------------------------------------------------------------------ client-facing (via the gateway)
    def create(self, now: float, spec: JobSpec, request_id: str = "") -> tuple[Submitted, Step[T]]:
        submitted = self.table.submit(now, spec, request_id)
        if submitted.deduplicated:
            return submitted, NOTHING  # type: ignore[return-value]  # NOTHING holds no token
        # a new PENDING job adds no deadline: no re-arm to consider
        return submitted, self._step([submitted.job], submitted.commands, poke=False)

    def cancel(self, now: float, job_id: str) -> tuple[Job, Step[T]]:
        transition = self.table.cancel(now, job_id)
        return transition.job, self._step([transition.job], transition.commands)

    def add_waiter(self, token: T, job_id: str) -> bool:
        """A WaitJob (or submit-with-wait) long-poll waits for the job's end. False: do not wait
        (the service drains)."""
        if self.draining:
            return False
        self._waiters.add(token, job_id)
        return True

    def wait_ended(self, job: Job, wait: float) -> None:
        """A WaitJob long-poll ended: UNAVAILABLE with a retry-after when it ended early because the
        service drains (model.actions.check_wait_end), as Design B's owner answers; a client's
        DtqClient.wait then backs off and asks again."""
        if self.draining:  # else nothing to check
            check_wait_end("the job service", job, wait, self.draining)

    def waiter_gone(self, token: T, job_id: str) -> None:
        self._waiters.gone(token, job_id)

    def start_draining(self) -> Step[T]:
        """WaitJob long-polls stop waiting now (and answer UNAVAILABLE: `wait_ended`)."""
        self.draining = True
        if not self._waiters:
            return NOTHING  # type: ignore[return-value]
        return Step((), (), [Wake(self._waiters.take_all())], False)

    # ------------------------------------------------------------------ coordinator-facing
    def lease(self, now: float, worker_id: str, job_ids: Iterable[str]) -> tuple[list[Assignment], Step[T]]:
        """LeaseJobs: the dispatch fence for reserved queue entries. Stale ones (cancelled, running,
        unknown) are skipped; the core leases what fits config.max_reply_bytes (JobTable.lease_batch)
        and the pending rest go back to the outbox (the coordinator acks every id it reserved, so they
        need a fresh entry)."""
        validate_worker_id(worker_id)
        table = self.table
        leased, requeue = table.lease_batch(now, list(dict.fromkeys(job_ids)), worker_id)
        get = table.get
        step = self._step([get(a.job_id) for a in leased], requeue, poke=bool(leased))
        return leased, step

    def renew(
        self, now: float, worker_id: str, running: Sequence[tuple[str, int]], total_slots: int = 0
    ) -> tuple[Renewal, Step[T]]:
        """RenewLeases: the new deadlines are saved, so a restart does not expire leases that
        heartbeats kept alive. `total_slots` (the heartbeat's) feeds status estimates only."""
        renewal = self.table.renew(now, worker_id, running)
        if self.estimator is not None and total_slots > 0:
            self._slots[worker_id] = (total_slots, now)
        # renewed deadlines only move later: no re-arm to consider
        return renewal, self._step(self._renewed(running, renewal), (), poke=False)

    def fence(self, job_id: str, attempt: int, worker_id: str, outcome: Outcome) -> PutResult | None:
        """CompleteAttempt, first half: a report whose attempt does not hold the lease (another
        worker's id, an old attempt, a job not yet made) is refused here, before anything is stored
        (StaleAttempt: ABORTED; NotFound). Returns the result to store in the result service before
        `complete` (a success's output, bounded: one over max_result_bytes fails the job and stores
        nothing), or None. The result service is written only through this fence."""
        self.table.lease_holder(job_id, attempt, worker_id)
        outcome = bounded_outcome(outcome, self.config)
        if isinstance(outcome, Succeeded):
            return PutResult(job_id, attempt, outcome.output)
        return None  # the job record keeps a failure's error; a cancel has no result

    def complete(
        self, now: float, job_id: str, attempt: int, worker_id: str, outcome: Outcome
    ) -> tuple[Job, Step[T]]:
        """CompleteAttempt, second half (after `fence` and the PutResult it asked for): the transition,
        fenced again (a lease that ended while the result was stored leaves it under its own
        (job, attempt) key, which nothing reads). The output lives in the result service: the table
        keeps only its size, so retention drops jobs by result bytes as the result service drops the
        results."""
        estimator = self.estimator
        started = attempt_start(self.table.find(job_id), attempt, worker_id) if estimator else None
        transition = self.table.complete(now, job_id, attempt, worker_id, outcome, output_elsewhere=True)
        if started is not None and estimator is not None:
            estimator.observe(now - started)
        return transition.job, self._step([transition.job], transition.commands)

    def release_worker(self, now: float, worker_id: str) -> tuple[int, Step[T]]:
        """ReleaseWorker (the coordinator lost the worker): its attempts end now. Returns how many
        jobs were requeued."""
        validate_worker_id(worker_id)
        self._slots.pop(worker_id, None)
        commands = self.table.release_worker(now, worker_id)
        requeued = sum(1 for c in commands if isinstance(c, LeaseExpired) and c.requeued)
        return requeued, self._step(self._jobs_in(commands), commands)

    def on_timer(self, now: float) -> Step[T]:
        commands = self.table.handle_timer(now)
        if not commands:
            return NOTHING  # type: ignore[return-value]
        return self._step(self._jobs_in(commands), commands, poke=False)  # the timer re-arms itself

    # ------------------------------------------------------------------ status estimates
    def _pending_estimate(self, now: float, job: Job, estimator: Estimator) -> Estimate | None:
        """`estimate` of a PENDING job: None with no live worker. O(pending jobs)."""
        ttl = self.config.worker_ttl
        slots = sum(total for total, seen in self._slots.values() if now - seen <= ttl)
        if slots < 1:
            return None
        counts = self.table.count_by_state
        busy = counts[JobState.RUNNING] + counts[JobState.CANCELLING]
        find = self.table.find
        ready = [j for job_id in self._pending if (j := find(job_id)) is not None and j.not_before <= now]
        if job.not_before <= now:
            key = (-job.spec.priority, job.update_time, job.job_id)
            ahead = sum(1 for j in ready if (-j.spec.priority, j.update_time, j.job_id) < key)
            return estimator.pending(now, ahead, slots, busy)
        # in a retry backoff: behind every ready job, and no earlier than its due time
        return estimator.pending(now, len(ready), slots, busy, job.not_before)

    # ------------------------------------------------------------------ the outbox and the sweep
    def sweep(self, now: float) -> bool:
        """Re-enqueues jobs PENDING for longer than a dispatch can take. True: the outbox has work."""
        for command in self.table.stale_pending(now, list(self._pending), self.stale_after):
            self.outbox.setdefault(command.job_id, self._with_key(command) if self._keyed else command)
        return bool(self.outbox)

    @property
    def pending_tracked(self) -> int:
        """Jobs the sweep looks at (for the simulated sweep's cost)."""
        return len(self._pending)

    def take_batch(self) -> tuple[dict[str, Enqueue], list[Enqueue]]:
        """The next batch off the outbox, and its entries still worth sending (jobs still PENDING;
        one cancelled meanwhile needs no entry). Send them; on failure `put_back(batch)`."""
        outbox = self.outbox
        batch: dict[str, Enqueue] = {}
        for job_id in outbox:
            batch[job_id] = outbox[job_id]
            if len(batch) == ENQUEUE_BATCH:
                break
        for job_id in batch:
            del outbox[job_id]
        entries = [c for c in batch.values() if self._is_pending(c.job_id)]
        return batch, entries

    def put_back(self, batch: dict[str, Enqueue]) -> None:
        """A batch the queue did not take goes back to the outbox; a newer command wins."""
        for job_id, command in batch.items():
            self.outbox.setdefault(job_id, command)

    # ------------------------------------------------------------------ internals
    def _is_pending(self, job_id: str) -> bool:
        job = self.table.find(job_id)
        return job is not None and job.state is JobState.PENDING

    def _jobs_in(self, commands: Sequence[Command]) -> list[Job]:
        ids = dict.fromkeys(getattr(c, "job_id", "") for c in commands)
        ids.pop("", None)
        # a job retention dropped in the same call has no record left to save
        find = self.table.find
        return [job for job_id in ids if (job := find(job_id)) is not None]

    def _with_key(self, command: Enqueue) -> Enqueue:
        job = self.table.find(command.job_id)
        key = "" if job is None else job_key(job.spec.labels, self.config.policy_key)
        return replace(command, key=key)

    def _track(self, job: Job) -> None:
        if job.state is JobState.PENDING:
            self._pending[job.job_id] = None
        else:
            self._pending.pop(job.job_id, None)

    def _route(self, commands: Sequence[Command], effects: list[Effect[T]]) -> tuple[bool, tuple[str, ...]]:
        """Carries out the table's commands into the outbox and `effects`. Returns (the outbox got
        work, the jobs retention dropped: rows to delete). Class patterns: no isinstance calls on
        this hot path."""
        flush = False
        delete: tuple[str, ...] = ()
        for command in commands:
            match command:
                case Enqueue():
                    self.outbox[command.job_id] = self._with_key(command) if self._keyed else command
                    flush = True
                case JobFinished():
                    waiting = self._waiters.ended(command.job_id)
                    if waiting is not None:
                        effects.append(Wake(waiting))
                    effects.append(command)
                case NotifyCancel():
                    if command.worker_id:
                        effects.append(command)
                case LeaseExpired():
                    effects.append(command)
                case JobsExpired():
                    # retention (result_ttl / max_retained_jobs): the table dropped them; the result
                    # service applies the same policy to the outcomes it holds
                    delete += command.job_ids
                    for job_id in command.job_ids:
                        self._pending.pop(job_id, None)
                        self.outbox.pop(job_id, None)
                # Unqueue: nothing (see the module docstring)
        return flush, delete

    def _step(self, save: list[Job], commands: Sequence[Command], poke: bool = True) -> Step[T]:
        """`poke`: the call may have moved the table's next deadline earlier (a lease, an ended job's
        retention), so the timer may need re-arming."""
        for job in save:
            self._track(job)
        effects: list[Effect[T]] = []
        delete: tuple[str, ...] = ()
        flush = False
        if commands:
            flush, delete = self._route(commands, effects)
        table = self.table
        expiries = table.lease_expiries - self._seen_expiries
        requeues = table.requeues - self._seen_requeues
        if expiries or requeues:
            self._seen_expiries, self._seen_requeues = table.lease_expiries, table.requeues
        return Step(save, delete, effects, poke and self.timer.poke(), expiries, requeues, flush)
