"""DtqClient: the Python client of the TaskQueue API, for both designs.

Design A passes the gateway's address; Design B passes every node's, and the client spreads calls
over them round-robin (any node forwards a request about a job to its owner). A call about a job it
submitted goes straight to the address that accepted it (the job's owner), saving that forward. One
gRPC channel per address stays open for the client's lifetime.

Errors surface as the core's exceptions (`model.errors.NotFound`, `InvalidArgument`, ...) so callers
catch the same types in every design; the gRPC status code stays available as `exc.grpc_code`.
Transport failures and unmapped codes (DEADLINE_EXCEEDED, ...) become `Unavailable`.

Retries: reads (status, result, list) are retried on UNAVAILABLE against the next address; `wait`
re-polls until its own timeout; `submit` is retried only when a `request_id` makes it idempotent;
`cancel` is never retried. Retries back off exponentially and wait at least the server's retry-after
(UNAVAILABLE's `dtq-retry-after-ms` metadata: a draining node asks its callers to go elsewhere, or
to wait for its return); `wait` never re-polls in a tight loop, even when a server answers its
long-polls at once.

    async with DtqClient(["127.0.0.1:5001"]) as client:
        job_id = await client.submit("sleep", b'{"seconds": 1}', request_id="order-42")
        job = await client.wait(job_id, timeout=30)
        reply = await client.submit_wait("echo", b"hi", timeout=30)  # one call: submit, then wait

`SyncClient` offers the same calls without asyncio, for the CLI and scripts.

A cluster with TLS and tokens (realsys/security.py) needs its CA and a client token:
`DtqClient(addresses, token=..., root_certificates=Path("ca.pem").read_bytes())`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine, Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, TypeAlias, TypeVar

import grpc

from dtq.v1 import client_pb2, client_pb2_grpc, job_pb2
from model.errors import DtqError, InvalidArgument, Unavailable
from model.job import JobSpec
from model.states import JobState
from realsys.config import RECONNECT_OPTIONS, grpc_options
from realsys.convert import spec_to_pb, to_duration, to_timestamp
from realsys.security import ChannelSecurity, open_aio_channel
from realsys.status import error_from_rpc

_MAX_POLL = 30.0  # one WaitJob long-poll at most; wait() re-issues it
_RETRY_DELAY = 0.05
_MAX_RETRY_DELAY = 1.0
T = TypeVar("T")
JobPage: TypeAlias = tuple[list[job_pb2.Job], str]  # module level: `list` is a method name below


def channel_options() -> list[tuple[str, Any]]:
    """gRPC channel options: dtq's message limits and keepalives, and a reconnect backoff capped at
    a second (a restarted server is found again at once)."""
    return [*grpc_options(), *RECONNECT_OPTIONS]


def make_stub(factory: Any, channel: grpc.aio.Channel) -> Any:
    """A generated stub; they are untyped (no *_grpc.pyi), so calls through them return Any."""
    return factory(channel)


def address_list(addresses: Sequence[str] | str, who: str, timeout: float) -> list[str]:
    """`addresses` (a list, or one comma-separated string) as a list; ValueError, naming `who`, when
    there is none or the `timeout` (s) is not > 0."""
    if isinstance(addresses, str):
        addresses = [a for a in addresses.split(",") if a]
    if not addresses:
        raise ValueError(f"{who} needs at least one address")
    if timeout <= 0:
        raise ValueError("timeout must be > 0")
    return list(addresses)


def rpc_error(exc: grpc.RpcError) -> DtqError:
    """The core error for a failed call, with the original status code as `.grpc_code`."""
    error = error_from_rpc(exc)
    is_call = isinstance(exc, grpc.Call | grpc.aio.AioRpcError)
    error.grpc_code = exc.code() if is_call else grpc.StatusCode.UNKNOWN  # type: ignore[attr-defined]
    return error


def retry_pause(error: BaseException, backoff: float) -> float:
    """How long to wait before retrying after `error`: the backoff, or the server's retry-after when
    it asks for longer."""
    asked = getattr(error, "retry_after", None)
    return max(backoff, asked) if isinstance(asked, float | int) else backoff


def grpc_code(exc: BaseException) -> grpc.StatusCode | None:
    """The gRPC status code behind an error raised by this client, if any."""
    code = getattr(exc, "grpc_code", None)
    return code if isinstance(code, grpc.StatusCode) else None


class DtqClient:
    """Async client. Use it as `async with DtqClient(addresses) as client:` or call `close()`."""

    def __init__(
        self,
        addresses: Sequence[str] | str,
        timeout: float = 10.0,
        *,
        token: str = "",
        root_certificates: bytes | None = None,
    ) -> None:
        """`root_certificates` (PEM): use TLS and verify the servers with them; `token`: a client token
        sent as `authorization: Bearer <token>` (needs TLS)."""
        self.addresses = address_list(addresses, "DtqClient", timeout)
        self.timeout = timeout
        self._security = ChannelSecurity(root_certificates, token)  # ValueError: a token without TLS
        self._channels: list[grpc.aio.Channel] = []
        self._stubs: list[Any] = []
        self._next = 0
        self._owners: dict[str, int] = {}  # job-id prefix (owner node) -> index of the address that owns it

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> DtqClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        channels, self._channels, self._stubs = self._channels, [], []
        for channel in channels:
            await channel.close(None)

    # ------------------------------------------------------------------ calls
    async def submit(
        self,
        job_type: str,
        payload: bytes | str = b"",
        *,
        priority: int = 0,
        max_attempts: int = 0,
        execution_timeout: float = 0.0,
        labels: Mapping[str, str] | None = None,
        request_id: str = "",
    ) -> str:
        """Submits a job and returns its id. Zeros mean the server defaults.

        With `request_id` set the submit is idempotent (AIP-155), so it is retried on UNAVAILABLE;
        without it, an UNAVAILABLE submit is not retried (it may have been accepted).
        """
        spec = job_pb2.JobSpec(
            job_type=job_type,
            payload=payload.encode() if isinstance(payload, str) else payload,
            priority=priority,
            retry=job_pb2.RetryPolicy(max_attempts=max_attempts),
            execution_timeout=to_duration(execution_timeout),
            labels=dict(labels or {}),
        )
        response = await self._submit(spec, request_id)
        return response.job_id

    async def submit_spec(self, spec: JobSpec, request_id: str = "") -> client_pb2.SubmitJobResponse:
        """Submits a core JobSpec; the full response says whether request_id deduplicated it."""
        return await self._submit(spec_to_pb(spec), request_id)

    async def submit_wait(
        self,
        job_type: str,
        payload: bytes | str = b"",
        *,
        timeout: float,
        priority: int = 0,
        max_attempts: int = 0,
        execution_timeout: float = 0.0,
        labels: Mapping[str, str] | None = None,
        request_id: str = "",
    ) -> client_pb2.SubmitJobResponse:
        """Submits a job and waits up to `timeout` seconds for its end, in the same call
        (SubmitJob's `wait_timeout`): one RPC instead of submit + wait. The reply's `job` is the
        latest view (check `.done`); a wait longer than one long-poll continues with WaitJob.
        Retried on UNAVAILABLE only with a `request_id`, as `submit` is."""
        spec = job_pb2.JobSpec(
            job_type=job_type,
            payload=payload.encode() if isinstance(payload, str) else payload,
            priority=priority,
            retry=job_pb2.RetryPolicy(max_attempts=max_attempts),
            execution_timeout=to_duration(execution_timeout),
            labels=dict(labels or {}),
        )
        deadline = time.monotonic() + max(0.0, timeout)
        response = await self._submit(spec, request_id, wait=min(max(0.0, timeout), _MAX_POLL))
        left = deadline - time.monotonic()
        if not response.job.done and left > 0:
            response.job.CopyFrom(await self.wait(response.job_id, left))
        return response

    async def status(self, job_id: str) -> job_pb2.Job:
        job: job_pb2.Job = await self._call(
            "GetJobStatus", client_pb2.GetJobStatusRequest(job_id=job_id), retry=True, job_id=job_id
        )
        return job

    async def wait(self, job_id: str, timeout: float) -> job_pb2.Job:
        """Long-polls until the job is done or `timeout` seconds pass; returns the latest view either way
        (check `.done`). Each WaitJob asks for less than its own call deadline, so the server answers
        before the call times out; UNAVAILABLE (a node restarting) is re-polled within the timeout."""
        deadline = time.monotonic() + max(0.0, timeout)
        delay = _RETRY_DELAY
        to_owner = True  # after an UNAVAILABLE, the next poll goes round-robin (the owner may drain)
        while True:
            started = time.monotonic()
            poll = min(max(0.0, deadline - started), _MAX_POLL)
            request = client_pb2.WaitJobRequest(job_id=job_id, timeout=to_duration(poll))
            try:
                job: job_pb2.Job = await self._call(
                    "WaitJob", request, call_timeout=poll + self.timeout, job_id=job_id if to_owner else ""
                )
            except Unavailable as exc:
                pause = retry_pause(exc, delay)
                if time.monotonic() + pause >= deadline:
                    raise
                await asyncio.sleep(pause)
                delay = min(_MAX_RETRY_DELAY, delay * 2)
                to_owner = False
                continue
            now = time.monotonic()
            if job.done or now >= deadline:
                return job
            to_owner = True
            if now - started < poll / 2:
                # answered long before the wait it was asked for, and not done (a server that drains,
                # or caps long-polls short): back off instead of asking again at once
                await asyncio.sleep(min(delay, deadline - now))
                delay = min(_MAX_RETRY_DELAY, delay * 2)
            else:
                delay = _RETRY_DELAY

    async def result(self, job_id: str, wait: float = 0.0) -> client_pb2.GetJobResultResponse:
        """The outcome of a finished job; FailedPrecondition if still unfinished after `wait` seconds."""
        request = client_pb2.GetJobResultRequest(job_id=job_id, wait_timeout=to_duration(max(0.0, wait)))
        response: client_pb2.GetJobResultResponse = await self._call(
            "GetJobResult", request, call_timeout=max(0.0, wait) + self.timeout, retry=True, job_id=job_id
        )
        return response

    async def cancel(self, job_id: str, reason: str = "") -> job_pb2.Job:
        """Cancels a pending job at once, or asks the worker of a running one to stop (CANCELLING)."""
        job: job_pb2.Job = await self._call(
            "CancelJob", client_pb2.CancelJobRequest(job_id=job_id, reason=reason), job_id=job_id
        )
        return job

    async def list(
        self,
        states: Iterable[int | str] = (),
        job_type: str = "",
        created_after: float | None = None,
        created_before: float | None = None,
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> JobPage:
        """One page of jobs in (create time, id) order, and the token of the next page ("" at the end).
        `states` are JobState values or names; times are wall-clock seconds (created_before exclusive)."""
        request = client_pb2.ListJobsRequest(
            filter=_filter(states, job_type, created_after, created_before, labels),
            page_size=page_size,
            page_token=page_token,
        )
        response: client_pb2.ListJobsResponse = await self._call("ListJobs", request, retry=True)
        return list(response.jobs), response.next_page_token

    async def list_all(
        self,
        states: Iterable[int | str] = (),
        job_type: str = "",
        created_after: float | None = None,
        created_before: float | None = None,
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
    ) -> AsyncIterator[job_pb2.Job]:
        """Every matching job, fetching page after page."""
        states = tuple(states)
        token = ""
        while True:
            jobs, token = await self.list(
                states, job_type, created_after, created_before, labels, page_size, token
            )
            for job in jobs:
                yield job
            if not token:
                return

    # ------------------------------------------------------------------ internals
    async def _submit(
        self, spec: job_pb2.JobSpec, request_id: str, wait: float = 0.0
    ) -> client_pb2.SubmitJobResponse:
        request = client_pb2.SubmitJobRequest(spec=spec, request_id=request_id)
        if wait > 0:
            request.wait_timeout.CopyFrom(to_duration(wait))
        response: client_pb2.SubmitJobResponse
        served_by, response = await self._call_at(
            "SubmitJob", request, call_timeout=wait + self.timeout, retry=bool(request_id)
        )
        if not request_id:  # kept by the node it was sent to (a request_id may route it elsewhere)
            self._owners.setdefault(response.job.owner_node, served_by)
        return response

    def _pick(self, owner: int | None = None) -> int:
        """The index of the stub to call: `owner` when given, else the next one round-robin."""
        if not self._stubs:  # opened lazily: aio channels belong to the loop that first uses them
            options = channel_options()
            self._channels = [open_aio_channel(a, options, self._security) for a in self.addresses]
            self._stubs = [make_stub(client_pb2_grpc.TaskQueueStub, c) for c in self._channels]
        if owner is not None:
            return owner
        index = self._next % len(self._stubs)
        self._next += 1
        return index

    async def _call(
        self,
        method: str,
        request: Any,
        *,
        call_timeout: float | None = None,
        retry: bool = False,
        job_id: str = "",
    ) -> Any:
        """One unary call with a deadline; with `retry`, UNAVAILABLE moves on to the next address.

        A call about a job goes first to the address its owner answered from (Design B: the job id
        starts with the owner's name), saving the node-to-owner forward; retries go round-robin."""
        _, response = await self._call_at(
            method, request, call_timeout=call_timeout, retry=retry, job_id=job_id
        )
        return response

    async def _call_at(
        self,
        method: str,
        request: Any,
        *,
        call_timeout: float | None = None,
        retry: bool = False,
        job_id: str = "",
    ) -> tuple[int, Any]:
        """_call, also returning the index of the address that answered."""
        attempts = len(self.addresses) + 1 if retry else 1
        delay = _RETRY_DELAY
        owner = self._owners.get(job_id.partition("-")[0]) if job_id else None
        for i in range(attempts):
            index = self._pick(owner if i == 0 else None)
            try:
                stub = self._stubs[index]
                return index, await getattr(stub, method)(request, timeout=call_timeout or self.timeout)
            except grpc.RpcError as exc:
                error = rpc_error(exc)
                if grpc_code(error) is not grpc.StatusCode.UNAVAILABLE or i + 1 == attempts:
                    raise error from exc
            await asyncio.sleep(retry_pause(error, delay))
            delay = min(_MAX_RETRY_DELAY, delay * 2)
        raise AssertionError("unreachable")


def _filter(
    states: Iterable[int | str],
    job_type: str,
    created_after: float | None,
    created_before: float | None,
    labels: Mapping[str, str] | None,
) -> job_pb2.JobFilter:
    values: list[int] = []
    for state in states:
        if isinstance(state, str):
            try:
                values.append(int(JobState[state.upper()]))
            except KeyError:
                names = ", ".join(s.name for s in JobState if s is not JobState.STATE_UNSPECIFIED)
                raise InvalidArgument(f"unknown job state {state!r}; use one of {names}") from None
        else:
            values.append(int(state))
    return job_pb2.JobFilter(
        states=values,  # type: ignore[arg-type]  # the stub wants the enum type; values are checked server-side
        job_type=job_type,
        created_after=to_timestamp(created_after),
        created_before=to_timestamp(created_before),
        labels=dict(labels or {}),
    )


class SyncClient:
    """A blocking facade over DtqClient: runs its own event loop in the calling thread (not thread-safe)."""

    def __init__(
        self,
        addresses: Sequence[str] | str,
        timeout: float = 10.0,
        *,
        token: str = "",
        root_certificates: bytes | None = None,
    ) -> None:
        self._client = DtqClient(addresses, timeout, token=token, root_certificates=root_certificates)
        self._runner = asyncio.Runner()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._runner.run(coro)

    def close(self) -> None:
        try:
            self._run(self._client.close())
        finally:
            self._runner.close()

    def submit(
        self,
        job_type: str,
        payload: bytes | str = b"",
        *,
        priority: int = 0,
        max_attempts: int = 0,
        execution_timeout: float = 0.0,
        labels: Mapping[str, str] | None = None,
        request_id: str = "",
    ) -> str:
        return self._run(
            self._client.submit(
                job_type,
                payload,
                priority=priority,
                max_attempts=max_attempts,
                execution_timeout=execution_timeout,
                labels=labels,
                request_id=request_id,
            )
        )

    def submit_spec(self, spec: JobSpec, request_id: str = "") -> client_pb2.SubmitJobResponse:
        return self._run(self._client.submit_spec(spec, request_id))

    def submit_wait(
        self,
        job_type: str,
        payload: bytes | str = b"",
        *,
        timeout: float,
        priority: int = 0,
        max_attempts: int = 0,
        execution_timeout: float = 0.0,
        labels: Mapping[str, str] | None = None,
        request_id: str = "",
    ) -> client_pb2.SubmitJobResponse:
        return self._run(
            self._client.submit_wait(
                job_type,
                payload,
                timeout=timeout,
                priority=priority,
                max_attempts=max_attempts,
                execution_timeout=execution_timeout,
                labels=labels,
                request_id=request_id,
            )
        )

    def status(self, job_id: str) -> job_pb2.Job:
        return self._run(self._client.status(job_id))

    def wait(self, job_id: str, timeout: float) -> job_pb2.Job:
        return self._run(self._client.wait(job_id, timeout))

    def result(self, job_id: str, wait: float = 0.0) -> client_pb2.GetJobResultResponse:
        return self._run(self._client.result(job_id, wait))

    def cancel(self, job_id: str, reason: str = "") -> job_pb2.Job:
        return self._run(self._client.cancel(job_id, reason))

    def list(
        self,
        states: Iterable[int | str] = (),
        job_type: str = "",
        created_after: float | None = None,
        created_before: float | None = None,
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
        page_token: str = "",
    ) -> JobPage:
        return self._run(
            self._client.list(states, job_type, created_after, created_before, labels, page_size, page_token)
        )

    def list_all(
        self,
        states: Iterable[int | str] = (),
        job_type: str = "",
        created_after: float | None = None,
        created_before: float | None = None,
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
    ) -> Iterator[job_pb2.Job]:
        states = tuple(states)
        token = ""
        while True:
            jobs, token = self.list(states, job_type, created_after, created_before, labels, page_size, token)
            yield from jobs
            if not token:
                return
