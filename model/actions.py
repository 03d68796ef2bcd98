"""What a driver (model/node.py, model/job_service.py, ...) hands its adapter to perform, and the
waiter bookkeeping the drivers share. Waiters are opaque tokens the adapter chooses (an asyncio
future, a simpy event); the driver only says which to wake.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeAlias, TypeVar

from model.commands import JobFinished, LeaseExpired, NotifyCancel, StoreOutput, WorkerLost
from model.errors import Unavailable
from model.job import Job

T = TypeVar("T", bound=Hashable)


class Wake(Generic[T]):
    """Settle these waiters, in this order, with `value` (True: what they wait for may be there;
    False: stop waiting, e.g. the service drains)."""

    __slots__ = ("tokens", "value")

    def __init__(self, tokens: Sequence[T], value: bool = True) -> None:
        self.tokens = tokens
        self.value = value

    def __repr__(self) -> str:
        return f"Wake({len(self.tokens)}, {self.value})"


Effect: TypeAlias = "Wake[T] | JobFinished | NotifyCancel | LeaseExpired | WorkerLost"


@dataclass(slots=True, eq=False, repr=False)
class Step(Generic[T]):
    """The actions one event asks of the adapter, performed in this order:
    0. `outputs`: keep these results in the store, not in RAM (StoreOutput: over
       max_inline_result_bytes; durable before the record that says SUCCEEDED);
    1. `save`: upsert these job records (one transaction: durable before anything below is visible);
    2. `delete`: delete these job records (retention dropped them);
    3. `effects`, in order: Wake (settle waiters), JobFinished (a job ended), NotifyCancel (tell the
       attempt's worker now), LeaseExpired / WorkerLost (log lines and counters);
    4. `flush`: the Enqueue outbox has work (Design A's job service: wake its flusher);
    5. `rearm`: re-arm the core timer (the driver's TimerRule said the deadline moved earlier).
    `expiries` and `requeues` are the table's lease expiries and requeues since the previous step.
    """

    save: Sequence[Job]
    delete: Sequence[str]
    effects: Sequence[Effect[T]]
    rearm: bool
    expiries: int = 0
    requeues: int = 0
    flush: bool = False
    outputs: Sequence[StoreOutput] = ()

    def __repr__(self) -> str:
        return (
            f"Step(outputs={[o.job_id for o in self.outputs]}, save={[j.job_id for j in self.save]}, "
            f"delete={list(self.delete)}, effects={list(self.effects)}, flush={self.flush}, "
            f"rearm={self.rearm})"
        )


@dataclass(frozen=True, slots=True, repr=False)
class PutResult:
    """Store this attempt's result in Design A's result service, keyed by (job, attempt), before the
    attempt is completed (model/job_service.py: only for the attempt that holds the lease)."""

    job_id: str
    attempt: int
    output: bytes

    def __repr__(self) -> str:
        return f"PutResult({self.job_id!r}, {self.attempt}, {len(self.output)} bytes)"


# A step that asks nothing (its sequences are empty tuples: nothing shared can be changed).
NOTHING: Step[object] = Step((), (), (), False)


# How long a client should wait before it long-polls again for a job whose owner drains: about a
# restart's time (an owner that stops for good leaves its jobs unanswerable anyway)
DRAINING_OWNER_RETRY_AFTER = 1.0


def check_wait_end(owner: str, job: Job, wait: float, draining: bool) -> None:
    """A long-poll (WaitJob, GetJobResult with a wait) at the job's owner ended: if it ended early
    because the owner drains, UNAVAILABLE with a retry-after, so the client waits and asks again
    (the job stays with its owner, which answers again once restarted) instead of taking an
    unfinished job for the end of its wait."""
    if draining and wait > 0 and not job.done:
        raise Unavailable(
            f"{owner}, the owner of job {job.job_id}, is draining: ask again shortly",
            retry_after=DRAINING_OWNER_RETRY_AFTER,
        )


class DoneWaiters(Generic[T]):
    """WaitJob long-polls per job id: who to wake when a job ends. A waiter that stops waiting
    (timed out, or resumed) leaves with `gone`; an entry goes away with its last waiter."""

    __slots__ = ("_by_job",)

    def __init__(self) -> None:
        self._by_job: dict[str, list[T]] = {}

    def add(self, token: T, job_id: str) -> None:
        waiting = self._by_job.get(job_id)
        if waiting is None:
            self._by_job[job_id] = [token]
        else:
            waiting.append(token)

    def gone(self, token: T, job_id: str) -> None:
        waiting = self._by_job.get(job_id)
        if waiting is not None and token in waiting:
            waiting.remove(token)
            if not waiting:
                del self._by_job[job_id]

    def ended(self, job_id: str) -> list[T] | None:
        """The job ended: its waiters, who wait no more (None: nobody waited)."""
        return self._by_job.pop(job_id, None)

    def take_all(self) -> list[T]:
        """Every waiter (the service drains); none is left."""
        tokens = [token for waiting in self._by_job.values() for token in waiting]
        self._by_job.clear()
        return tokens

    def __len__(self) -> int:
        """How many jobs are waited on."""
        return len(self._by_job)

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_job)
