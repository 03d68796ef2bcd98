"""What the load generator drives: a `Target` (dtq's either design, and later the Celery baseline).

A Target answers with plain values and raises `TargetError(code)` with a gRPC status code name, so
the generator records the same statuses whatever system sits behind it.

`make_target(spec)` builds a target from a JSON-able mapping {"factory": "module:callable", "kwargs":
{...}}; load-generator child processes receive that mapping (never a pickled object).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import grpc

from dtq.v1 import client_pb2, client_pb2_grpc, job_pb2
from model.job import JobSpec
from model.states import TERMINAL, JobState
from realsys.client import address_list, channel_options, make_stub
from realsys.convert import fill_spec_pb, to_duration

_MAX_POLL = 30.0  # one WaitJob long-poll at most; wait() re-issues it until its own timeout
_MAX_ENDED = 100_000  # terminal submit replies kept for wait(); the oldest go first
_STATE_NAMES = {int(s): s.name for s in JobState}


class TargetError(Exception):
    """A failed call; `code` is a gRPC status code name ("NOT_FOUND", "UNAVAILABLE", ...)."""

    def __init__(self, code: str, message: str = "") -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.message = message


@runtime_checkable
class Target(Protocol):
    design: str

    async def submit(self, job_type: str, payload: bytes) -> str:
        """Submits a job; returns its id."""
        ...

    async def status(self, job_id: str) -> str:
        """The job's state name."""
        ...

    async def result(self, job_id: str) -> str:
        """The finished job's state name; TargetError("FAILED_PRECONDITION") if it has not finished."""
        ...

    async def list(self, page_size: int) -> int:
        """Lists one page of jobs; returns how many came back."""
        ...

    async def cancel(self, job_id: str) -> str:
        """Cancels the job; returns its state name after the call."""
        ...

    async def wait(self, job_id: str, timeout: float) -> tuple[str, int]:
        """Long-polls (no busy polling) until the job is terminal or `timeout` passes; returns its
        (state name, attempts) either way."""
        ...

    async def close(self) -> None: ...


@runtime_checkable
class JobTarget(Protocol):
    """A Target that also takes a job's own settings and tells why a job ended (DtqTarget): what a
    workload with per-job settings (priority, retries, timeout, labels) needs."""

    async def submit_job(self, spec: JobSpec) -> str:
        """Submits a job with its whole spec (type, payload, priority, retry policy, timeout, labels)."""
        ...

    def end_reason(self, job_id: str) -> str:
        """The error reason of a job a wait() saw end FAILED or CANCELLED ("" otherwise), once."""
        ...


def make_target(spec: Mapping[str, Any]) -> Target:
    """A Target from {"factory": "module:callable", "kwargs": {...}} (JSON-able, for child processes)."""
    factory = spec.get("factory")
    if not isinstance(factory, str) or ":" not in factory:
        raise ValueError(f"target factory must be 'module:callable', got {factory!r}")
    module_name, _, attr = factory.partition(":")
    make = getattr(importlib.import_module(module_name), attr)
    target = make(**dict(spec.get("kwargs", {})))
    if not isinstance(target, Target):
        raise TypeError(f"{factory} did not return a Target")
    return target


def dtq_target_spec(
    addresses: Sequence[str], timeout: float = 10.0, design: str = "", submit_wait: float = 0.0
) -> dict[str, Any]:
    """The make_target mapping of a DtqTarget."""
    kwargs: dict[str, Any] = {"addresses": list(addresses), "timeout": timeout, "design": design}
    if submit_wait > 0:
        kwargs["submit_wait"] = submit_wait
    return {"factory": "realsys.targets:DtqTarget", "kwargs": kwargs}


def status_name(exc: grpc.RpcError) -> str:
    """The status code's name of a failed call (UNKNOWN when it carries none)."""
    code = exc.code() if isinstance(exc, grpc.aio.AioRpcError | grpc.Call) else None
    return code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"


def _details(exc: grpc.RpcError) -> str:
    details = exc.details() if isinstance(exc, grpc.aio.AioRpcError | grpc.Call) else None
    return details or ""


class DtqTarget:
    """dtq over grpc.aio stubs: one channel per address kept open, each method spread round-robin.

    It calls the stubs directly, not DtqClient: no retries (a load generator must see every error,
    not hide it) and less per-call work. Every call has the `timeout` deadline; wait() long-polls
    WaitJob with a server-side timeout below its call deadline, as DtqClient does.

    `submit_wait` > 0 is the synchronous-invocation client: each SubmitJob carries that wait_timeout
    (its call deadline grows by it), so the submit's reply comes when the job has ended, and a
    wait() for a job whose reply was already terminal answers from that reply without a WaitJob.
    The submit's recorded latency then includes the job's run.
    """

    def __init__(
        self,
        addresses: Sequence[str] | str,
        timeout: float = 10.0,
        design: str = "",
        submit_wait: float = 0.0,
    ) -> None:
        self.addresses = address_list(addresses, "DtqTarget", timeout)
        if submit_wait < 0:
            raise ValueError("submit_wait must be >= 0")
        self.timeout = timeout
        self.design = design
        self.submit_wait = min(submit_wait, _MAX_POLL)
        self._wait_pb = to_duration(self.submit_wait)
        # (state, attempts) of jobs whose submit reply was terminal, until wait() reads them
        self._ended: dict[str, tuple[str, int]] = {}
        # the error reason of jobs that ended with one, until end_reason() reads it
        self._reasons: dict[str, str] = {}
        self._channels: list[grpc.aio.Channel] = []
        self._stubs: list[Any] = []
        # one counter per method, so each kind of call spreads evenly over the nodes (a single shared
        # counter let submits and WaitJobs alternate, which sent every submit to half the nodes)
        self._next: dict[str, int] = {}

    def _stub(self, method: str = "") -> Any:
        if not self._stubs:  # opened lazily: aio channels belong to the loop that first uses them
            options = channel_options()
            self._channels = [grpc.aio.insecure_channel(a, options=options) for a in self.addresses]
            self._stubs = [make_stub(client_pb2_grpc.TaskQueueStub, c) for c in self._channels]
        turn = self._next.get(method, 0)
        self._next[method] = turn + 1
        return self._stubs[turn % len(self._stubs)]

    async def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        try:
            return await getattr(self._stub(method), method)(request, timeout=timeout or self.timeout)
        except grpc.RpcError as exc:
            raise TargetError(status_name(exc), _details(exc)) from None

    def submit_request(self, job_type: str, payload: bytes) -> client_pb2.SubmitJobRequest:
        request = client_pb2.SubmitJobRequest()  # filled in place: nested constructors copy
        spec = request.spec
        spec.SetInParent()
        spec.job_type = job_type
        spec.payload = payload
        if self.submit_wait > 0:
            request.wait_timeout.CopyFrom(self._wait_pb)
        return request

    def submit_timeout(self) -> float:
        """The SubmitJob call deadline: the wait it may spend server-side on top of `timeout`."""
        return self.timeout + self.submit_wait

    def note_submitted(self, response: client_pb2.SubmitJobResponse) -> None:
        """Keeps a terminal submit reply for wait() (the synchronous-invocation mode)."""
        if self.submit_wait > 0 and response.job.done:
            if len(self._ended) >= _MAX_ENDED:  # never waited for (e.g. open loop without tracking)
                del self._ended[next(iter(self._ended))]
            job = response.job
            self._ended[response.job_id] = (_STATE_NAMES.get(job.state, "STATE_UNSPECIFIED"), job.attempt)
            self._note_reason(job)

    def _note_reason(self, job: job_pb2.Job) -> None:
        if job.done and job.error.reason:
            if len(self._reasons) >= _MAX_ENDED:
                del self._reasons[next(iter(self._reasons))]
            self._reasons[job.job_id] = job.error.reason

    def end_reason(self, job_id: str) -> str:
        return self._reasons.pop(job_id, "") if self._reasons else ""

    async def submit_job(self, spec: JobSpec) -> str:
        request = self.submit_request(spec.job_type, spec.payload)
        fill_spec_pb(request.spec, spec, include_payload=False)
        response: client_pb2.SubmitJobResponse = await self._call(
            "SubmitJob", request, timeout=self.submit_timeout()
        )
        self.note_submitted(response)
        return response.job_id

    def ended(self, job_id: str) -> tuple[str, int] | None:
        """The terminal (state, attempts) a submit reply already carried, once."""
        return self._ended.pop(job_id, None) if self._ended else None

    async def submit(self, job_type: str, payload: bytes) -> str:
        request = self.submit_request(job_type, payload)
        response: client_pb2.SubmitJobResponse = await self._call(
            "SubmitJob", request, timeout=self.submit_timeout()
        )
        self.note_submitted(response)
        return response.job_id

    async def status(self, job_id: str) -> str:
        job: job_pb2.Job = await self._call("GetJobStatus", client_pb2.GetJobStatusRequest(job_id=job_id))
        return _STATE_NAMES.get(job.state, "STATE_UNSPECIFIED")

    async def result(self, job_id: str) -> str:
        response: client_pb2.GetJobResultResponse = await self._call(
            "GetJobResult", client_pb2.GetJobResultRequest(job_id=job_id)
        )
        return _STATE_NAMES.get(response.job.state, "STATE_UNSPECIFIED")

    async def list(self, page_size: int) -> int:
        response: client_pb2.ListJobsResponse = await self._call(
            "ListJobs", client_pb2.ListJobsRequest(page_size=page_size)
        )
        return len(response.jobs)

    async def cancel(self, job_id: str) -> str:
        job: job_pb2.Job = await self._call("CancelJob", client_pb2.CancelJobRequest(job_id=job_id))
        return _STATE_NAMES.get(job.state, "STATE_UNSPECIFIED")

    async def wait(self, job_id: str, timeout: float) -> tuple[str, int]:
        ended = self.ended(job_id)
        if ended is not None:
            return ended
        deadline = time.monotonic() + max(0.0, timeout)
        state, attempts = "STATE_UNSPECIFIED", 0
        for _ in range(1_000_000):  # bounded: each pass is a long-poll or ends the loop
            poll = min(max(0.0, deadline - time.monotonic()), _MAX_POLL)
            request = client_pb2.WaitJobRequest(job_id=job_id, timeout=to_duration(poll))
            job: job_pb2.Job = await self._call("WaitJob", request, timeout=poll + self.timeout)
            state, attempts = _STATE_NAMES.get(job.state, "STATE_UNSPECIFIED"), job.attempt
            if job.done:
                self._note_reason(job)
                break
            if time.monotonic() >= deadline:
                break
        return state, attempts

    async def close(self) -> None:
        channels, self._channels, self._stubs = self._channels, [], []
        await asyncio.gather(*(c.close(None) for c in channels))


class InMemoryTarget:
    """A Target without a network: a job "runs" for its payload's `seconds` (times `time_scale`) on
    the event loop, then succeeds. For tests of the load generator and of whatever drives it.

    `service_time` delays every call; `stalls` [(n, seconds), ...] makes the n-th call (0-based, over
    all calls but wait) take `seconds` longer: a system that stalls once.
    """

    def __init__(
        self,
        design: str = "mono",
        service_time: float = 0.0,
        time_scale: float = 1.0,
        stalls: Sequence[Sequence[float]] = (),
    ) -> None:
        self.design = design
        self.service_time = service_time
        self.time_scale = time_scale
        self.stalls = {int(n): float(s) for n, s in stalls}
        self.calls = 0
        self.wait_calls = 0
        self.states: dict[str, JobState] = {}
        self._done: dict[str, asyncio.Event] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        # unique across the processes of one run, whose records are merged
        self._prefix = f"{os.getpid()}.{id(self):x}"

    async def _serve(self) -> None:
        n, self.calls = self.calls, self.calls + 1
        delay = self.service_time + self.stalls.get(n, 0.0)
        if delay > 0:
            await asyncio.sleep(delay)

    def _get(self, job_id: str) -> JobState:
        if job_id not in self.states:
            raise TargetError("NOT_FOUND", f"no job {job_id!r}")
        return self.states[job_id]

    def _finish(self, job_id: str, state: JobState) -> None:
        self.states[job_id] = state
        self._done[job_id].set()
        timer = self._timers.pop(job_id, None)
        if timer is not None:
            timer.cancel()

    async def submit(self, job_type: str, payload: bytes) -> str:
        await self._serve()
        try:
            seconds = float(json.loads(payload or b"{}").get("seconds", 0.0))
        except (ValueError, AttributeError):
            raise TargetError("INVALID_ARGUMENT", "payload must be a JSON object") from None
        job_id = f"mem{self._prefix}-{len(self.states):010d}"
        self.states[job_id] = JobState.PENDING
        self._done[job_id] = asyncio.Event()
        self._timers[job_id] = asyncio.get_running_loop().call_later(
            seconds * self.time_scale, self._finish, job_id, JobState.SUCCEEDED
        )
        return job_id

    async def status(self, job_id: str) -> str:
        await self._serve()
        return self._get(job_id).name

    async def result(self, job_id: str) -> str:
        await self._serve()
        state = self._get(job_id)
        if state not in TERMINAL:
            raise TargetError("FAILED_PRECONDITION", f"job {job_id} is {state.name}")
        return state.name

    async def list(self, page_size: int) -> int:
        await self._serve()
        return min(page_size, len(self.states))

    async def cancel(self, job_id: str) -> str:
        await self._serve()
        if self._get(job_id) in TERMINAL:
            raise TargetError("FAILED_PRECONDITION", f"job {job_id} has finished")
        self._finish(job_id, JobState.CANCELLED)
        return JobState.CANCELLED.name

    async def wait(self, job_id: str, timeout: float) -> tuple[str, int]:
        self.wait_calls += 1
        self._get(job_id)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._done[job_id].wait(), max(0.0, timeout))
        state = self.states[job_id]
        return state.name, int(state in (JobState.SUCCEEDED, JobState.FAILED))

    async def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
