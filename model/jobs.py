"""JobTable: the owner's job records, their lifecycle, leases, fencing, retries and listing.

This is Design A's job service and the heart of every Design B node. It is sans-I/O: every call
takes `now` and returns its decisions (commands) as data.

Leases: dispatch gives an attempt a lease until now + lease_duration; heartbeats push it forward.
One timer entry per leased attempt sits in a heap at min(lease deadline, run deadline); when it comes
due and the attempt still holds the job, the attempt ends: requeued as attempt + 1 after a backoff,
or FAILED once max_attempts is spent. A report carrying an old attempt is refused (StaleAttempt).

Retention: a terminal job is dropped result_ttl seconds after it ended, and the oldest terminal jobs
first once more than max_retained_jobs are kept; handle_timer emits JobsExpired so the driver deletes
the stored rows. An expired job is unknown from then on (NOT_FOUND), and its request_id is released:
a retry with that id after the TTL creates a new job (a client retrying a day later wants it run).
A finished job is kept as a row of columns (model/terminal.py), not as a Job: `find` builds an equal
Job from it. Retention (below) is the generic rule set, for keys of other kinds (the result service).
"""

from __future__ import annotations

import heapq
import itertools
import math
from array import array
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Generic, Protocol, TypeVar

from model.commands import (
    Command,
    Enqueue,
    JobFinished,
    JobsExpired,
    LeaseExpired,
    NotifyCancel,
    StoreOutput,
    Unqueue,
)
from model.config import MAX_REQUEST_ID_CHARS, CoreConfig
from model.errors import FailedPrecondition, InvalidArgument, NotFound, ResourceExhausted, StaleAttempt
from model.ids import JobIdFactory, SequenceIds, parse_job_id
from model.job import (
    Assignment,
    CancelledByWorker,
    EffectiveSpec,
    Failed,
    Job,
    JobError,
    JobSpec,
    Outcome,
    RetryPolicy,
    Succeeded,
    assignment_bytes,
    bounded_outcome,
    validate_spec,
)
from model.listing import (
    ListQuery,
    OrderedIndex,
    Page,
    decode_page_token,
    effective_page_size,
    encode_page_token,
)
from model.retention import RetentionRule
from model.states import ACTIVE, Event, JobState, next_state
from model.terminal import TerminalStore

K = TypeVar("K", bound=Hashable)
V = TypeVar("V", bound=Hashable)
# a spec's settings but its payload
SpecKey = tuple[str, int, RetryPolicy, float, tuple[tuple[str, str], ...]]
RETENTION_GRANULARITY = 1.0  # seconds: expired jobs are dropped in batches at most this late
# distinct specs, effective specs and worker names a table shares among its jobs; past this many it
# starts its sharing tables over (sharing only saves memory: any object with the same value answers
# the same)
SHARED_LIMIT = 4096


class Retention(Generic[K]):
    """Which finished things to drop: those older than `ttl` (0 = no age limit), and the oldest first
    once more than `limit` are kept or their sizes (`add`'s `size`, e.g. result bytes) sum to more
    than `max_bytes` (None: no byte bound). Keys are added once, when their thing ends; re-adding a
    key moves it to the new time. Sans-I/O: the caller passes `now` and deletes what `expire` returns.

    Deletions come in batches, so a driver pays its per-call costs (a transaction, re-indexing) per
    batch, not per job: the deadline is `granularity` seconds after the oldest is due (expire(now)
    still drops everything due by `now`), and over a bound it drops 1% below it.

    Kept compact, since a node keeps up to a million finished jobs: entries in end-time order (the
    usual case: things end as time goes on) sit in three parallel columns (the keys, end times as raw
    doubles, insertion numbers as raw ints), about 24 bytes an entry; an entry older than the newest
    goes to a small heap. The order is (end time, insertion number) either way, as one heap's was."""

    def __init__(
        self, ttl: float, limit: int, granularity: float = 0.0, max_bytes: int | None = None
    ) -> None:
        self.rule = RetentionRule(ttl, limit, granularity, max_bytes)
        # the kept keys -> None when their one queued entry is the live one, else the insertion
        # number of the live entry (the key also has dead entries queued: see _dead)
        self._kept: dict[K, int | None] = {}
        self._dead: dict[K, int] = {}  # keys with entries queued for an earlier add, and how many
        self._sizes: dict[K, int] = {}  # only the keys with a size
        self.bytes = 0  # the sum of the kept keys' sizes
        # the queue: the in-order run from _head on, and a heap of (end time, number, key) for the rest
        self._keys: list[K] = []
        self._times = array("d")
        self._numbers = array("q")
        self._head = 0
        self._late: list[tuple[float, int, K]] = []
        self._counter = 0

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, key: object) -> bool:
        return key in self._kept

    def add(self, end_time: float, key: K, size: int = 0) -> None:
        self.discard(key)
        self._counter += 1
        number = self._counter
        self._kept[key] = number if key in self._dead else None
        if size:
            self._sizes[key] = size
            self.bytes += size
        times = self._times
        if len(times) == self._head or end_time >= times[-1]:
            self._keys.append(key)
            times.append(end_time)
            self._numbers.append(number)
        else:  # ended before the newest entry (a clock that stepped back, a restore)
            heapq.heappush(self._late, (end_time, number, key))

    def discard(self, key: K) -> None:
        if key in self._kept:
            del self._kept[key]  # its queued entry is skipped when it surfaces
            self._dead[key] = self._dead.get(key, 0) + 1
            self.bytes -= self._sizes.pop(key, 0)

    def _peek(self) -> tuple[float, int, K] | None:
        """The first queued entry, dead or alive."""
        run: tuple[float, int, K] | None = None
        if self._head < len(self._keys):
            head = self._head
            run = (self._times[head], self._numbers[head], self._keys[head])
        if self._late and (run is None or self._late[0][:2] < run[:2]):
            return self._late[0]
        return run

    def _pop(self, entry: tuple[float, int, K]) -> None:
        if self._late and self._late[0] is entry:
            heapq.heappop(self._late)
            return
        self._head += 1
        head = self._head
        if head == len(self._keys):
            del self._keys[:], self._times[:], self._numbers[:]
            self._head = 0
        elif head >= 4096 and 2 * head >= len(self._keys):  # reclaim the consumed front
            del self._keys[:head], self._times[:head], self._numbers[:head]
            self._head = 0

    def _oldest(self) -> tuple[float, K] | None:
        """The oldest kept key and its end time; dead entries on the way are dropped."""
        while (entry := self._peek()) is not None:
            end_time, number, key = entry
            live = self._kept.get(key, -1)
            if live is None or live == number:
                return end_time, key
            self._pop(entry)  # dead: discarded or re-added since
            left = self._dead[key] - 1
            if left:
                self._dead[key] = left
            else:
                del self._dead[key]
                if key in self._kept:  # its one remaining entry is the live one
                    self._kept[key] = None
        return None

    def next_deadline(self) -> float | None:
        oldest = self._oldest()
        return None if oldest is None else self.rule.deadline(oldest[0], len(self._kept), self.bytes)

    def expire(self, now: float) -> list[K]:
        dropped: list[K] = []
        targets = self.rule.targets(len(self._kept), self.bytes)
        while (oldest := self._oldest()) is not None:
            end_time, key = oldest
            if not self.rule.due(end_time, len(self._kept), self.bytes, targets, now):
                break
            entry = self._peek()
            assert entry is not None
            self._pop(entry)
            del self._kept[key]
            self.bytes -= self._sizes.pop(key, 0)
            dropped.append(key)
        return dropped


class RandomSource(Protocol):
    """What the core needs of a random generator (numpy.random.Generator fits)."""

    def random(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Submitted:
    job: Job
    deduplicated: bool
    commands: list[Command]


@dataclass(frozen=True, slots=True)
class Transition:
    job: Job
    commands: list[Command]


@dataclass(frozen=True, slots=True)
class Renewal:
    """The answer to a heartbeat's list of running attempts."""

    cancel: list[tuple[str, int]]  # stop these: a client cancelled them
    abandon: list[tuple[str, int]]  # stop these: the attempt no longer holds the job
    renewed: int


class JobTable:
    def __init__(
        self,
        config: CoreConfig,
        ids: JobIdFactory,
        rng: RandomSource | None = None,
    ) -> None:
        if config.backoff_jitter > 0 and rng is None:
            raise InvalidArgument("backoff_jitter needs a random source")
        self.config = config
        self.ids = ids
        self._rng = rng
        # unfinished jobs (and those that ended in the call under way: _finishing) as Job objects;
        # finished ones in columns, in self.retention
        self._jobs: dict[str, Job] = {}
        self._finishing: list[Job] = []
        self._by_request: dict[str, str] = {}
        self._index = OrderedIndex(SequenceIds(ids.prefix))
        self._timers: list[tuple[float, int, str]] = []  # (due, attempt, job_id)
        self._by_worker: dict[str, dict[str, None]] = {}  # worker -> job ids it holds
        self.count_by_state: dict[JobState, int] = {s: 0 for s in JobState}
        self.lease_expiries = 0
        self.requeues = 0
        self._validated: tuple[JobSpec, EffectiveSpec] | None = None  # the last spec that passed
        # one object for each distinct value, so that a million retained jobs share a few (a real
        # node decodes a new spec, effective spec and worker name for every request)
        self._specs: dict[SpecKey, JobSpec] = {}  # payload-free specs, by their settings
        self._retained: tuple[JobSpec, JobSpec] | None = None  # the last spec shared, and its share
        self._effectives: dict[EffectiveSpec, EffectiveSpec] = {}
        self._names: dict[str, str] = {}  # worker ids
        self.retention = TerminalStore(
            SequenceIds(ids.prefix),
            config.result_ttl,
            config.max_retained_jobs,
            RETENTION_GRANULARITY,
            config.max_retained_bytes,
        )
        self.expired = 0  # terminal jobs dropped by retention
        # payload bytes of unfinished jobs (a finished job's payload is dropped: nothing returns it)
        self.pending_bytes = 0

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self._jobs) + len(self.retention)

    def __iter__(self) -> Iterator[Job]:
        """Every job: the unfinished ones, then the finished ones in the order they ended."""
        return itertools.chain(self._jobs.values(), self.retention)

    def find(self, job_id: str) -> Job | None:
        """The job, or None if unknown (never existed here, or dropped by retention). A finished
        job is built from its columns for each call: an equal object, not the same one."""
        job = self._jobs.get(job_id)
        return self.retention.get(job_id) if job is None else job

    def get(self, job_id: str) -> Job:
        job = self.find(job_id)
        if job is None:
            parse_job_id(job_id)  # a malformed id is INVALID_ARGUMENT, a well-formed unknown one NOT_FOUND
            raise NotFound(
                f"job {job_id} not found: it never existed here, or it finished more than "
                f"{self.config.result_ttl:g}s ago (or beyond the newest {self.config.max_retained_jobs}, "
                f"or {self.config.max_retained_bytes} bytes of results) and was deleted"
            )
        return job

    def find_request(self, request_id: str) -> Job | None:
        """The job an idempotent submit with `request_id` made here, if it is still kept."""
        job_id = self._by_request.get(request_id) if request_id else None
        return None if job_id is None else self.find(job_id)

    @property
    def pending_count(self) -> int:
        return self.count_by_state[JobState.PENDING]

    def next_deadline(self) -> float | None:
        lease = self._timers[0][0] if self._timers else None
        retention = self.retention.next_deadline()
        if retention is None or (lease is not None and lease <= retention):
            return lease
        return retention

    def list_page(
        self, query: ListQuery, page_size: int = 0, page_token: str = "", max_bytes: int | None = None
    ) -> Page[Job]:
        """Up to page_size matching jobs after the token's cursor, ending early (with a next token)
        before their status views pass max_bytes (config.max_reply_bytes by default; a page always
        holds at least one job)."""
        size = effective_page_size(page_size, self.config)
        budget = self.config.max_reply_bytes if max_bytes is None else max_bytes
        cursor = decode_page_token(query, page_token)
        items: list[Job] = []
        has_more = False
        used = 0
        for key in self._index.after(cursor):
            job = self.find(key[1])
            assert job is not None, "the index holds kept jobs only"
            if not query.matches(job, job.spec.job_type, dict(job.spec.labels) if query.labels else None):
                continue
            if len(items) == size:
                has_more = True
                break
            used += job.status_bytes
            if items and used > budget:
                has_more = True
                break
            items.append(job)
        token = encode_page_token(query, items[-1].sort_key) if has_more else ""
        return Page(items, has_more, token)

    # ------------------------------------------------------------------ client side
    def submit(self, now: float, spec: JobSpec, request_id: str = "") -> Submitted:
        if len(request_id) > MAX_REQUEST_ID_CHARS:
            raise InvalidArgument(f"request_id is longer than {MAX_REQUEST_ID_CHARS} characters")
        if request_id and request_id in self._by_request:
            known = self.find(self._by_request[request_id])
            assert known is not None, "a request id is released with its job"
            return Submitted(known, True, [])
        validated = self._validated
        if validated is not None and validated[0] is spec:  # the same (frozen) spec: the same answer
            effective = validated[1]
        else:
            effective = self._shared(self._effectives, validate_spec(spec, self.config))
            self._validated = (spec, effective)
        if self.pending_count >= self.config.max_pending:
            raise ResourceExhausted(f"queue is full: {self.pending_count} jobs pending")
        if self.pending_bytes + len(spec.payload) > self.config.max_pending_bytes:
            raise ResourceExhausted(
                f"queue is full: {self.pending_bytes} payload bytes of unfinished jobs, and "
                f"{len(spec.payload)} more would pass the limit of {self.config.max_pending_bytes}"
            )
        job = Job(self.ids.new_id(), spec, effective, create_time=now, request_id=request_id)
        self._insert(job)
        self.pending_bytes += len(spec.payload)
        self._apply(job, Event.SUBMIT, now)
        if request_id:
            self._by_request[request_id] = job.job_id
        return Submitted(job, False, [Enqueue(job.job_id, spec.priority, now)])

    def cancel(self, now: float, job_id: str) -> Transition:
        job = self.get(job_id)
        before = job.state
        self._apply(job, Event.CANCEL, now)  # terminal states raise IllegalTransition
        if before is JobState.PENDING:
            job.error = JobError("cancelled by client", reason="CANCELLED")
            self._settle()
            return Transition(job, [Unqueue(job_id), JobFinished(job_id, job.state)])
        return Transition(job, [NotifyCancel(job_id, job.attempt, job.worker_id)])

    # ------------------------------------------------------------------ worker side
    def lease(self, now: float, job_id: str, worker_id: str) -> Assignment:
        """The dispatch fence: PENDING -> RUNNING under attempt + 1. Raises for any other state."""
        job = self.get(job_id)
        if not worker_id:
            raise InvalidArgument("worker_id is required")
        self._apply(job, Event.DISPATCH, now)
        job.attempt += 1
        job.worker_id = self._shared(self._names, worker_id)
        job.start_time = now
        job.lease_deadline = now + self.config.lease_duration
        job.run_deadline = now + job.effective.execution_timeout
        self._by_worker.setdefault(worker_id, {})[job_id] = None
        heapq.heappush(self._timers, (min(job.lease_deadline, job.run_deadline), job.attempt, job_id))
        return Assignment(job_id, job.attempt, job.spec, job.lease_deadline, job.run_deadline, worker_id)

    def lease_batch(
        self, now: float, job_ids: Sequence[str], worker_id: str, max_bytes: int | None = None
    ) -> tuple[list[Assignment], list[Enqueue]]:
        """Design A's LeaseJobs: leases the given (reserved) jobs in order while their assignments fit
        in `max_bytes` (config.max_reply_bytes by default; the first always does). Ids that are not
        leasable are skipped (stale queue entries: the lease is the fence); pending jobs past the
        budget come back as Enqueue commands, since their reservation is acknowledged anyway."""
        budget = self.config.max_reply_bytes if max_bytes is None else max_bytes
        leased: list[Assignment] = []
        requeue: list[Enqueue] = []
        used = 0
        for job_id in job_ids:
            job = self._jobs.get(job_id)
            if job is None or job.state is not JobState.PENDING:
                continue  # unknown, cancelled or already running
            size = assignment_bytes(job_id, job.spec)
            if leased and used + size > budget:
                requeue.append(Enqueue(job_id, job.spec.priority, job.not_before))
                continue
            try:
                leased.append(self.lease(now, job_id, worker_id))
            except FailedPrecondition:
                continue
            used += size
        return leased, requeue

    def renew(self, now: float, worker_id: str, running: Sequence[tuple[str, int]]) -> Renewal:
        cancel: list[tuple[str, int]] = []
        abandon: list[tuple[str, int]] = []
        renewed = 0
        for job_id, attempt in running:
            job = self._jobs.get(job_id)
            if job is None or job.attempt != attempt or job.worker_id != worker_id or job.state not in ACTIVE:
                abandon.append((job_id, attempt))
                continue
            job.lease_deadline = now + self.config.lease_duration
            renewed += 1
            if job.state is JobState.CANCELLING:
                cancel.append((job_id, attempt))
        return Renewal(cancel, abandon, renewed)

    def lease_holder(self, job_id: str, attempt: int, worker_id: str) -> Job:
        """The job, if `attempt` (of `worker_id`, when one is named) holds its lease: the fence every
        report passes. StaleAttempt otherwise (NotFound for an unknown job)."""
        job = self.get(job_id)
        if job.attempt != attempt or job.state not in ACTIVE or (worker_id and job.worker_id != worker_id):
            raise StaleAttempt(
                f"job {job_id} attempt {attempt} does not hold the lease "
                f"(job is {job.state.name} at attempt {job.attempt})"
            )
        return job

    def complete(
        self,
        now: float,
        job_id: str,
        attempt: int,
        worker_id: str,
        outcome: Outcome,
        output_elsewhere: bool = False,
    ) -> Transition:
        """Ends the attempt that holds the lease with the worker's outcome. `output_elsewhere`: another
        service keeps the output (Design A's result service); the table records only its size."""
        job = self.lease_holder(job_id, attempt, worker_id)
        outcome = bounded_outcome(outcome, self.config)
        if isinstance(outcome, Succeeded):
            output = outcome.output
            inline = output_elsewhere or len(output) <= self.config.max_inline_result_bytes
            commands: list[Command] = [] if inline else [StoreOutput(job_id, output)]
            job.output_size = len(output)  # before _apply: retention weighs the job by it
            self._apply(job, Event.SUCCEED, now)
            job.output = (b"" if output_elsewhere else output) if inline else None
            job.error = None
            self._release(job)
            self._settle()
            commands.append(JobFinished(job_id, job.state))
            return Transition(job, commands)
        if isinstance(outcome, CancelledByWorker):
            if job.state is not JobState.CANCELLING:
                raise StaleAttempt(f"job {job_id} was not asked to cancel; report a failure instead")
            self._apply(job, Event.CANCEL_ACK, now)
            job.error = JobError("cancelled by client", reason="CANCELLED")
            self._release(job)
            self._settle()
            return Transition(job, [JobFinished(job_id, job.state)])
        assert isinstance(outcome, Failed)
        commands = self._end_attempt(job, now, outcome.error)
        self._settle()
        return Transition(job, commands)

    def release_worker(self, now: float, worker_id: str, reason: str = "WORKER_LOST") -> list[Command]:
        """The worker is gone: every attempt it holds ends now."""
        commands: list[Command] = []
        for job_id in list(self._by_worker.get(worker_id, {})):
            job = self._jobs[job_id]
            error = JobError(f"worker {worker_id} was lost", retryable=True, reason=reason)
            commands.append(self._expiry(job, now, error))
            commands.extend(self._end_attempt(job, now, error))
        self._settle()
        return commands

    def handle_timer(self, now: float) -> list[Command]:
        commands: list[Command] = []
        while self._timers and self._timers[0][0] <= now:
            _, attempt, job_id = heapq.heappop(self._timers)
            job = self._jobs.get(job_id)
            if job is None or job.attempt != attempt or job.state not in ACTIVE:
                continue
            due = min(job.lease_deadline, job.run_deadline)
            if due > now:  # renewed since this entry was pushed
                heapq.heappush(self._timers, (due, attempt, job_id))
                continue
            if job.run_deadline <= now:
                error = JobError(
                    f"attempt {attempt} ran past its {job.effective.execution_timeout:g}s timeout",
                    retryable=True,
                    reason="TIMEOUT",
                )
            else:
                error = JobError(
                    f"lease of attempt {attempt} expired", retryable=True, reason="LEASE_EXPIRED"
                )
            commands.append(self._expiry(job, now, error))
            commands.extend(self._end_attempt(job, now, error))
        self._settle()
        expired = self.retention.expire(now)
        if expired:
            by_request = self._by_request
            for job_id, state, request_id in expired:
                self.count_by_state[state] -= 1
                if request_id and by_request.get(request_id) == job_id:
                    del by_request[request_id]  # the request id may be used again
            gone = tuple(job_id for job_id, _, _ in expired)
            self._index.drop(set(gone))  # one slice or one pass, not one deletion per job
            self.expired += len(gone)
            commands.append(JobsExpired(gone))
        return commands

    def stale_pending(self, now: float, job_ids: Iterable[str], older_than: float) -> list[Enqueue]:
        """Enqueue again the given jobs that are still PENDING and have been due for `older_than`:
        a queue that lost their entry (Design A's queue service, memory store) gets them back. The
        queue dedups by id and the lease is the fence, so a needless Enqueue is harmless."""
        cutoff = now - older_than
        commands: list[Enqueue] = []
        for job_id in job_ids:
            job = self._jobs.get(job_id)
            if (
                job is not None
                and job.state is JobState.PENDING
                and max(job.not_before, job.update_time) <= cutoff
            ):
                commands.append(Enqueue(job_id, job.spec.priority, job.not_before))
        return commands

    # ------------------------------------------------------------------ restore (drivers with storage)
    def restore(self, job: Job) -> list[Command]:
        """Loads a record saved earlier (same fields). Leased attempts keep their deadlines, so a
        worker that outlived the restart can still report; pending jobs must be requeued."""
        if job.done:
            if job.job_id in self._jobs or job.job_id in self.retention:
                raise InvalidArgument(f"duplicate job id {job.job_id}")
            job.spec = self._retained_spec(job.spec)  # payloads of old records are dropped here
            self.retention.add(job)  # an old one goes at the next timer
            self._index.add(job.sort_key)
            self.count_by_state[job.state] += 1
            if job.request_id:
                self._by_request[job.request_id] = job.job_id
            return []
        self._insert(job)
        if job.request_id:
            self._by_request[job.request_id] = job.job_id
        if job.state in ACTIVE:
            self._by_worker.setdefault(job.worker_id, {})[job.job_id] = None
            heapq.heappush(self._timers, (min(job.lease_deadline, job.run_deadline), job.attempt, job.job_id))
        self.pending_bytes += len(job.spec.payload)
        if job.state is JobState.PENDING:
            return [Enqueue(job.job_id, job.spec.priority, job.not_before)]
        return []

    # ------------------------------------------------------------------ internals
    def _insert(self, job: Job) -> None:
        if job.job_id in self._jobs or job.job_id in self.retention:
            raise InvalidArgument(f"duplicate job id {job.job_id}")
        self._jobs[job.job_id] = job
        self._index.add(job.sort_key)
        self.count_by_state[job.state] += 1

    def _apply(self, job: Job, event: Event, now: float) -> None:
        new = next_state(job.state, event)
        self.count_by_state[job.state] -= 1
        self.count_by_state[new] += 1
        job.state = new
        job.update_time = now
        if job.done:
            job.end_time = now
            self._finishing.append(job)  # to the columns when the call ends (_settle)
            # nothing returns a finished job's payload and it never runs again: free its bytes
            self.pending_bytes -= len(job.spec.payload)
            job.spec = self._retained_spec(job.spec)

    def _retained_spec(self, spec: JobSpec) -> JobSpec:
        """The spec a terminal job keeps: without its payload, and one object shared by every job
        with the same settings."""
        last = self._retained
        if last is not None and last[0] is spec:
            return last[1]
        key = (spec.job_type, spec.priority, spec.retry, spec.execution_timeout, tuple(spec.labels.items()))
        shared = self._specs.get(key)
        if shared is None:
            if len(self._specs) >= SHARED_LIMIT:
                self._specs.clear()
            shared = self._specs[key] = replace(spec, payload=b"") if spec.payload else spec
        self._retained = (spec, shared)
        return shared

    @staticmethod
    def _shared(table: dict[V, V], value: V) -> V:
        """`value`, or the equal one `table` already holds."""
        shared = table.get(value)
        if shared is None:
            if len(table) >= SHARED_LIMIT:
                table.clear()
            shared = table[value] = value
        return shared

    def _settle(self) -> None:
        """Moves the jobs that ended in this call (their fields all set) to the columns."""
        for job in self._finishing:
            if self._jobs.pop(job.job_id, None) is job:
                self.retention.add(job)
        self._finishing.clear()

    def _release(self, job: Job) -> None:
        held = self._by_worker.get(job.worker_id)
        if held is not None:
            held.pop(job.job_id, None)
            if not held:
                del self._by_worker[job.worker_id]

    def _expiry(self, job: Job, now: float, error: JobError) -> LeaseExpired:
        self.lease_expiries += 1
        requeue = (
            job.state is JobState.RUNNING and error.retryable and job.attempt < job.effective.max_attempts
        )
        return LeaseExpired(job.job_id, job.attempt, job.worker_id, error.reason, requeue)

    def _end_attempt(self, job: Job, now: float, error: JobError) -> list[Command]:
        """The attempt failed: retry after a backoff if allowed, else end the job."""
        self._release(job)
        job.error = error
        if job.state is JobState.RUNNING and error.retryable and job.attempt < job.effective.max_attempts:
            self._apply(job, Event.RETRY, now)
            job.worker_id = ""
            job.not_before = now + self.backoff(job)
            self.requeues += 1
            return [Enqueue(job.job_id, job.spec.priority, job.not_before)]
        was_cancelling = job.state is JobState.CANCELLING
        self._apply(job, Event.FAIL, now)
        if was_cancelling:
            job.error = JobError("cancelled by client", reason="CANCELLED")
        return [JobFinished(job.job_id, job.state)]

    def backoff(self, job: Job) -> float:
        """Delay before the attempt after `job.attempt`: exponential, capped, optionally jittered."""
        eff = job.effective
        try:
            grown = eff.initial_backoff * eff.backoff_multiplier ** max(0, job.attempt - 1)
        except OverflowError:  # float ** int raises instead of giving inf
            grown = math.inf if eff.initial_backoff > 0 else 0.0
        delay = min(eff.max_backoff, grown)
        if self.config.backoff_jitter and self._rng is not None:
            delay *= 1.0 - self.config.backoff_jitter * self._rng.random()
        return delay
