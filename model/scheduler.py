"""Scheduler: one owner's whole scheduling state in one object — jobs, ready queue and workers.

A Design B node runs one Scheduler in-process; the simulator runs one per simulated owner.
Design A splits the same parts across services (JobTable in the job service, ReadyQueue in the
queue service, WorkerRegistry in the coordinator) and routes the commands between them over gRPC.

Drivers call a method with `now`, perform the commands it returns, and call `handle_timer(now)`
whenever `next_deadline()` comes due (aioquic's get_timer/handle_timer contract).
"""

from __future__ import annotations

from collections.abc import Sequence

from model.commands import Command, Enqueue, Unqueue, WorkAvailable
from model.config import CoreConfig
from model.errors import FailedPrecondition
from model.ids import JobIdFactory
from model.job import Assignment, Job, JobSpec, Outcome, assignment_bytes
from model.jobs import JobTable, RandomSource, Renewal, Submitted, Transition
from model.policies import build, job_key
from model.queue import ReadyQueue
from model.states import ACTIVE
from model.stealing import grant_steal
from model.workers import WorkerRegistry, validate_worker_id


class Scheduler:
    def __init__(self, config: CoreConfig, ids: JobIdFactory, rng: RandomSource | None = None) -> None:
        self.config = config
        self.jobs = JobTable(config, ids, rng)
        self.policy = build(config.policy_settings)
        self.queue = ReadyQueue(self.policy)
        self.workers = WorkerRegistry(config)
        self.dispatched = 0
        self.stolen_out = 0
        self._keyed = self.queue.policy is not None
        # jobs dispatched under a policy that counts running jobs: job id -> key, until the attempt ends
        self._running: dict[str, str] | None = {} if self.policy.counts_running else None

    @property
    def node(self) -> str:
        return self.jobs.ids.node

    # ---------------------------------------------------------------- client API
    def submit(self, now: float, spec: JobSpec, request_id: str = "") -> Submitted:
        result = self.jobs.submit(now, spec, request_id)
        return Submitted(result.job, result.deduplicated, self._route(now, result.commands))

    def cancel(self, now: float, job_id: str) -> Transition:
        result = self.jobs.cancel(now, job_id)
        return Transition(result.job, self._route(now, result.commands))

    # ---------------------------------------------------------------- worker API
    def heartbeat(
        self,
        now: float,
        worker_id: str,
        total_slots: int,
        free_slots: int,
        running: Sequence[tuple[str, int]],
    ) -> Renewal:
        self.workers.heartbeat(now, worker_id, total_slots, free_slots, holds_work=bool(running))
        return self.jobs.renew(now, worker_id, running)

    def fetch(
        self, now: float, worker_id: str, max_jobs: int, max_bytes: int | None = None
    ) -> list[Assignment]:
        """Leases up to max_jobs ready jobs to the worker, best priority first, FIFO within one, as
        many as fit in max_bytes (config.max_reply_bytes by default; the first always fits). The rest
        stay queued in their place: nothing is leased that the reply could not carry."""
        validate_worker_id(worker_id)
        self.workers.touch(now, worker_id)
        taken = self._lease_ready(now, worker_id, max_jobs, max_bytes)
        if taken:
            self.workers.note_work(worker_id)
        return taken

    def steal(
        self, now: float, thief_worker_id: str, requested: int, max_bytes: int | None = None
    ) -> list[Assignment]:
        """A peer's idle worker asks for work. This node stays the owner of what it hands over; the
        reply is bounded by max_bytes as fetch's is."""
        validate_worker_id(thief_worker_id)
        local_free = sum(w.free_slots for w in self.workers.workers.values())
        granted = grant_steal(requested, self.queue.ready_count, local_free)
        taken = self._lease_ready(now, thief_worker_id, granted, max_bytes)
        self.stolen_out += len(taken)
        return taken

    def report(self, now: float, worker_id: str, job_id: str, attempt: int, outcome: Outcome) -> Transition:
        self.workers.touch(now, worker_id)
        result = self.jobs.complete(now, job_id, attempt, worker_id, outcome)
        return Transition(result.job, self._route(now, result.commands))

    # ---------------------------------------------------------------- timers
    def next_deadline(self) -> float | None:
        # the earliest of the three (drivers call this after every call: no temporary lists)
        best = self.jobs.next_deadline()
        t = self.queue.next_deadline()
        if t is not None and (best is None or t < best):
            best = t
        t = self.workers.next_deadline()
        if t is not None and (best is None or t < best):
            best = t
        return best

    def handle_timer(self, now: float) -> list[Command]:
        commands: list[Command] = []
        for lost in self.workers.handle_timer(now):
            commands.append(lost)
            commands.extend(self.jobs.release_worker(now, lost.worker_id))
        commands.extend(self.jobs.handle_timer(now))
        routed = self._route(now, commands)
        moved = self.queue.handle_timer(now)
        if moved:
            routed.append(WorkAvailable(moved))
        return routed

    def restore(self, now: float, job: Job) -> list[Command]:
        """Loads a saved job record (a driver restarting from its store); a pending one is queued again
        (a running one counts against its key's limit, under a policy that counts running jobs)."""
        commands = self._route(now, self.jobs.restore(job))
        if self._running is not None and job.state in ACTIVE:
            key = job_key(job.spec.labels, self.config.policy_key)
            self._running[job.job_id] = key
            self.policy.dispatched(now, key)
        return commands

    def release_worker(self, now: float, worker_id: str) -> list[Command]:
        """A worker left on purpose (drain) or was found dead by other means."""
        self.workers.forget(worker_id)
        return self._route(now, self.jobs.release_worker(now, worker_id, reason="WORKER_LEFT"))

    # ---------------------------------------------------------------- internals
    def _lease_ready(
        self, now: float, worker_id: str, max_jobs: int, max_bytes: int | None
    ) -> list[Assignment]:
        budget = self.config.max_reply_bytes if max_bytes is None else max_bytes
        assignments: list[Assignment] = []
        used = 0
        while len(assignments) < max_jobs:
            entries = self.queue.pop(now, max_jobs - len(assignments))
            if not entries:
                break
            for i, entry in enumerate(entries):
                job = self.jobs.find(entry.job_id)
                if job is None:
                    continue  # nothing to lease (cannot happen: retention drops only finished jobs)
                size = assignment_bytes(entry.job_id, job.spec)
                if assignments and used + size > budget:
                    # the reply is full: this entry and the rest go back in their places
                    self.queue.put_back(entries[i:])
                    self.dispatched += len(assignments)
                    return assignments
                try:
                    assignments.append(self.jobs.lease(now, entry.job_id, worker_id))
                except FailedPrecondition:
                    self.queue.returned(entry.key)
                    continue  # a stale entry (the job was cancelled meanwhile): the lease is the fence
                if self._running is not None:
                    self._running[entry.job_id] = entry.key
                used += size
        self.dispatched += len(assignments)
        return assignments

    def _key(self, job_id: str) -> str:
        job = self.jobs.find(job_id)
        return "" if job is None else job_key(job.spec.labels, self.config.policy_key)

    def _route(self, now: float, commands: list[Command]) -> list[Command]:
        """Applies queue commands here; returns the rest (and a wake-up when work became ready)."""
        out: list[Command] = []
        ready = 0
        if self._running:
            ready += self._note_ended(commands)
        for command in commands:
            if isinstance(command, Enqueue):
                key = self._key(command.job_id) if self._keyed else ""
                self.queue.push(now, command.job_id, command.priority, command.not_before, key)
                ready += command.not_before <= now
            elif isinstance(command, Unqueue):
                self.queue.remove(command.job_id)
            else:
                out.append(command)
        if ready:
            out.append(WorkAvailable(ready))
        return out

    def _note_ended(self, commands: list[Command]) -> int:
        """Tells the policy about dispatched jobs whose attempt ended (they hold no lease any more).
        Returns how many of them freed room for a key with ready work (fetchers to wake)."""
        assert self._running is not None
        freed = 0
        for command in commands:
            job_id = getattr(command, "job_id", None)
            if job_id is None or job_id not in self._running:
                continue
            job = self.jobs.find(job_id)
            if job is None or job.state not in ACTIVE:
                freed += self.queue.finished(self._running.pop(job_id))
        return freed
