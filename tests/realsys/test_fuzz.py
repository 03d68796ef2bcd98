"""Hostile input at the gRPC edge of both designs (issue 8): hypothesis builds raw protobuf requests —
random ids and page tokens, enum values outside the proto, page sizes across the int32 range,
payloads around the cap, stale attempts, duplicate results — and raw garbage bytes.

Both designs run in-process on loopback (a background event loop thread; the tests call them with
blocking stubs). Every example goes to BOTH designs and must get the same status code, from the set
the API conventions allow, with a non-empty message. After each batch: every node still serves, and
every job accepted before is still there in a legal state.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import duration_pb2, timestamp_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dtq.v1 import (
    client_pb2,
    client_pb2_grpc,
    internal_pb2,
    internal_pb2_grpc,
    job_pb2,
    worker_pb2,
    worker_pb2_grpc,
)
from model.config import CoreConfig
from model.states import JobState
from realsys.config import SecurityConfig, grpc_options
from realsys.security import ChannelSecurity, may_act_as, new_token, open_channel, write_cluster_pki
from realsys.server import RunningRole
from tests.realsys.conftest import MICRO_ROLES, security_config, start_roles, stop_roles

pytestmark = pytest.mark.timeout(120)

PAYLOAD_CAP = 2048
CORE = CoreConfig(
    lease_duration=30.0,  # long: fuzzing must not race real lease expiries
    heartbeat_interval=1.0,
    worker_ttl=20.0,
    max_pending=500,
    max_payload_bytes=PAYLOAD_CAP,
)
FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
OK = grpc.StatusCode.OK
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
T = TypeVar("T")
Security = Callable[[str], SecurityConfig]  # node name -> its security settings


class LoopThread:
    """An asyncio loop in a daemon thread: the servers live there, the tests call them with blocking stubs."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


# the NodeConfig fields every fuzzed role and node shares (no in-process workers: the tests act as them)
SETTINGS: dict[str, Any] = {
    "slots": 0,
    "metrics_port": -1,
    "rpc_timeout": 2.0,
    "fetch_wait": 0.2,
    "drain_timeout": 0.5,
}


async def start_micro(
    root: Path, core: CoreConfig, store: str = "memory", security: Security | None = None
) -> tuple[list[RunningRole], str, str]:
    """Design A's five services (no worker: the tests act as the worker).

    Returns (roles, the gateway's address, the coordinator's: the worker API)."""
    running, services = await start_roles(
        "micro", root, tuple(MICRO_ROLES), security, store=store, core=core, **SETTINGS
    )
    return running, services["gateway"], services["coordinator"]


async def start_mono(
    root: Path, core: CoreConfig, store: str = "memory", nodes: int = 2, security: Security | None = None
) -> tuple[list[RunningRole], str, str]:
    """Design B nodes without in-process workers. Returns (nodes, n1's address twice: both APIs)."""
    names = [f"n{i + 1}" for i in range(nodes)]
    running, peers = await start_roles("mono", root, names, security, store=store, core=core, **SETTINGS)
    return running, peers[names[0]], peers[names[0]]


@dataclass
class Target:
    """One design as the tests see it: blocking stubs plus what was accepted so far."""

    design: str
    address: str
    channel: grpc.Channel
    worker_channel: grpc.Channel
    client: client_pb2_grpc.TaskQueueStub
    workers: worker_pb2_grpc.WorkersStub
    accepted: list[str] = field(default_factory=list)
    leased: list[tuple[str, int]] = field(default_factory=list)  # (job id, attempt) the fake worker holds
    pending: str = ""  # a seed job that stays PENDING (the fake worker takes at most 4 of 6)
    entries: list[Any] = field(default_factory=list)  # a TaskQueue stub on every client-facing node


@dataclass
class Pair:
    targets: list[Target]

    def each(self, call: Callable[[Target], Any]) -> list[tuple[grpc.StatusCode, str, Any]]:
        """Calls `call` on both designs; returns (code, details, response) for each."""
        out: list[tuple[grpc.StatusCode, str, Any]] = []
        for target in self.targets:
            try:
                out.append((OK, "", call(target)))
            except grpc.RpcError as exc:
                assert isinstance(exc, grpc.Call)
                out.append((exc.code(), exc.details() or "", None))
        return out


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    loop = LoopThread()
    root = tmp_path_factory.mktemp("fuzz")
    micro, *micro_addresses = loop.run(start_micro(root / "micro", CORE))
    mono, *mono_addresses = loop.run(start_mono(root / "mono", CORE))
    targets: list[Target] = []
    for design, (address, worker_address) in (("micro", micro_addresses), ("mono", mono_addresses)):
        channel = grpc.insecure_channel(address, options=grpc_options())
        worker_channel = grpc.insecure_channel(worker_address, options=grpc_options())
        targets.append(
            Target(
                design,
                address,
                channel,
                worker_channel,
                client_pb2_grpc.TaskQueueStub(channel),
                worker_pb2_grpc.WorkersStub(worker_channel),
            )
        )
    pair = Pair(targets)
    targets[0].entries = [targets[0].client]
    for node in mono:  # Design B: every node takes client calls
        channel = grpc.insecure_channel(node.address, options=grpc_options())
        targets[1].entries.append(client_pb2_grpc.TaskQueueStub(channel))
    # some jobs in every state a fuzzer can reach: pending, running (leased by the fake worker), done
    for target in targets:
        for i in range(6):
            spec = job_pb2.JobSpec(job_type="echo", payload=b"x", labels={"seed": str(i)})
            reply = target.client.SubmitJob(
                client_pb2.SubmitJobRequest(spec=spec, request_id=f"seed-{i}"), timeout=5
            )
            target.accepted.append(reply.job_id)
        fetched = target.workers.FetchWork(
            worker_pb2.FetchWorkRequest(worker_id="fuzz-w", free_slots=4, wait_timeout=_dur(1.0)),
            timeout=5,
        )
        target.leased = [(a.job_id, a.attempt) for a in fetched.assignments]
        held = {job_id for job_id, _ in target.leased}
        target.pending = next(job_id for job_id in target.accepted if job_id not in held)
        assert len(target.leased) >= 2, f"{design}: the fake worker got no work"
        done_id, done_attempt = target.leased.pop()
        target.workers.ReportResult(
            worker_pb2.ReportResultRequest(
                worker_id="fuzz-w",
                job_id=done_id,
                attempt=done_attempt,
                success=job_pb2.JobResult(output=b"done"),
            ),
            timeout=5,
        )
    try:
        yield pair
    finally:
        for target in targets:
            target.channel.close()
            target.worker_channel.close()
        loop.run(stop_roles(micro))
        loop.run(stop_roles(mono))
        loop.close()


def _dur(seconds: float) -> duration_pb2.Duration:
    d = duration_pb2.Duration()
    d.FromNanoseconds(int(seconds * 1e9))
    return d


def assert_same_code(
    results: list[tuple[grpc.StatusCode, str, Any]], allowed: set[grpc.StatusCode], what: str
) -> grpc.StatusCode:
    codes = [code for code, _, _ in results]
    assert codes[0] == codes[1], f"{what}: micro gave {codes[0]}, mono {codes[1]}: {results}"
    assert codes[0] in allowed, f"{what}: {codes[0]} not in {allowed}: {results}"
    for code, details, _ in results:
        if code is not OK:
            assert details.strip(), f"{what}: {code} without a message"
    return codes[0]


def assert_healthy(pair: Pair) -> None:
    """Every node serves, and every job accepted before is there in a legal state."""
    for target in pair.targets:
        for job_id in target.accepted:
            job = target.client.GetJobStatus(client_pb2.GetJobStatusRequest(job_id=job_id), timeout=5)
            assert job.job_id == job_id
            assert JobState(job.state) is not JobState.STATE_UNSPECIFIED


# ---------------------------------------------------------------------------- strategies
JOB_IDS = st.one_of(
    st.text(max_size=100),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
    # well-formed, but nobody's job: an unknown owner, or a sequence never handed out
    st.builds(
        lambda node, inc, seq: f"{node}-{inc:x}-{seq:010x}",
        st.sampled_from(["n1", "n2", "job", "zz9", "a"]),
        st.integers(0, 2**32),
        st.integers(2**20, 2**40),
    ),
)
ENUM_INTS = st.integers(-(2**31), 2**31 - 1)
INT32 = st.integers(-(2**31), 2**31 - 1)


def _timestamp(seconds: int) -> timestamp_pb2.Timestamp:
    return timestamp_pb2.Timestamp(seconds=seconds)


@st.composite
def filters(draw: st.DrawFn) -> job_pb2.JobFilter:
    f = job_pb2.JobFilter(job_type=draw(st.text(max_size=300)))
    for value in draw(st.lists(st.one_of(st.integers(0, 7), ENUM_INTS), max_size=3)):
        f.states.append(value)  # proto3 keeps unknown enum numbers
    if draw(st.booleans()):
        f.created_after.CopyFrom(_timestamp(draw(st.integers(-(2**40), 2**40))))
    if draw(st.booleans()):
        f.created_before.CopyFrom(_timestamp(draw(st.integers(-(2**40), 2**40))))
    for key, value in draw(st.dictionaries(st.text(max_size=300), st.text(max_size=300), max_size=3)).items():
        f.labels[key] = value
    return f


@st.composite
def specs(draw: st.DrawFn) -> job_pb2.JobSpec:
    size = draw(st.sampled_from([0, 1, PAYLOAD_CAP - 1, PAYLOAD_CAP, PAYLOAD_CAP + 1, 4 * PAYLOAD_CAP]))
    spec = job_pb2.JobSpec(
        job_type=draw(st.text(max_size=200)),
        payload=b"p" * size,
        priority=draw(INT32),
    )
    if draw(st.booleans()):
        spec.retry.max_attempts = draw(INT32)
        spec.retry.backoff_multiplier = draw(st.floats(allow_nan=True, allow_infinity=True))
        spec.retry.initial_backoff.CopyFrom(_dur(draw(st.floats(-10, 100))))
    if draw(st.booleans()):
        spec.execution_timeout.seconds = draw(st.integers(-(2**40), 2**40))
    for key, value in draw(st.dictionaries(st.text(max_size=300), st.text(max_size=20), max_size=3)).items():
        spec.labels[key] = value
    return spec


# ---------------------------------------------------------------------------- client API
@FUZZ
@given(job_id=JOB_IDS, call=st.sampled_from(["status", "result", "cancel", "wait"]))
def test_unknown_and_forged_ids(pair: Pair, job_id: str, call: str) -> None:
    def run(t: Target) -> Any:
        if call == "status":
            return t.client.GetJobStatus(client_pb2.GetJobStatusRequest(job_id=job_id), timeout=5)
        if call == "result":
            return t.client.GetJobResult(client_pb2.GetJobResultRequest(job_id=job_id), timeout=5)
        if call == "cancel":
            return t.client.CancelJob(client_pb2.CancelJobRequest(job_id=job_id), timeout=5)
        return t.client.WaitJob(client_pb2.WaitJobRequest(job_id=job_id, timeout=_dur(0.01)), timeout=5)

    results = pair.each(run)
    code = assert_same_code(
        results, {grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT}, f"{call}({job_id!r})"
    )
    if code is grpc.StatusCode.NOT_FOUND:
        assert all("not found" in details for _, details, _ in results)
    else:
        assert all("malformed job_id" in details for _, details, _ in results)


@FUZZ
@given(f=filters(), page_size=INT32, token=st.one_of(st.just(""), st.text(max_size=600)))
def test_bad_filters_page_sizes_and_tokens(
    pair: Pair, f: job_pb2.JobFilter, page_size: int, token: str
) -> None:
    results = pair.each(
        lambda t: t.client.ListJobs(
            client_pb2.ListJobsRequest(filter=f, page_size=page_size, page_token=token), timeout=5
        )
    )
    code = assert_same_code(
        results, {OK, grpc.StatusCode.INVALID_ARGUMENT}, f"ListJobs({page_size}, {token!r})"
    )
    if page_size < 0:
        assert code is grpc.StatusCode.INVALID_ARGUMENT
    if code is OK:
        for _, _, response in results:
            assert len(response.jobs) <= CORE.max_page_size


# SubmitJob's wait_timeout: absent, hostile (negative, out of range), or a short real wait (nothing runs
# the job here, so a valid wait runs out and the reply shows it still PENDING)
WAITS = st.one_of(
    st.none(),
    st.tuples(st.integers(-(2**40), -1), st.integers(0, 10**9 - 1)),
    st.tuples(st.integers(0, 3), st.integers(-(10**9), -1)),
    st.tuples(st.integers(0, 3), st.integers(10**9, 2**31 - 1)),
    st.tuples(st.integers(10**10 + 1, 2**62), st.just(0)),
    st.tuples(st.just(0), st.integers(1, 30_000_000)),
)


@FUZZ
@given(spec=specs(), request_id=st.text(max_size=200), wait=WAITS)
def test_hostile_submits(
    pair: Pair, spec: job_pb2.JobSpec, request_id: str, wait: tuple[int, int] | None
) -> None:
    request = client_pb2.SubmitJobRequest(spec=spec, request_id=request_id)
    if wait is not None:
        request.wait_timeout.seconds, request.wait_timeout.nanos = wait
    results = pair.each(lambda t: t.client.SubmitJob(request, timeout=5))
    allowed = {OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED}
    code = assert_same_code(results, allowed, f"SubmitJob(payload={len(spec.payload)}B, wait={wait})")
    if wait is not None and (wait[0] < 0 or wait[1] < 0 or wait[1] >= 10**9 or wait[0] > 10**10):
        assert code is grpc.StatusCode.INVALID_ARGUMENT  # refused before anything else, no job made
    if len(spec.payload) > PAYLOAD_CAP:
        assert code is not OK  # never accepted, so never stored
    if code is OK:
        for target, (_, _, response) in zip(pair.targets, results, strict=True):
            if not response.deduplicated:
                target.accepted.append(response.job_id)
            # anything accepted can be cancelled at once, so the fake worker never sees it
            target.client.CancelJob(client_pb2.CancelJobRequest(job_id=response.job_id), timeout=5)
    assert_healthy(pair)


def test_status_codes_of_the_conventions(pair: Pair) -> None:
    """One of each convention, checked by code and message on both designs."""

    def result_of_pending(t: Target) -> Any:
        return t.client.GetJobResult(client_pb2.GetJobResultRequest(job_id=t.pending), timeout=5)

    results = pair.each(result_of_pending)
    assert_same_code(results, {grpc.StatusCode.FAILED_PRECONDITION}, "result of an unfinished job")
    assert all("no result" in details for _, details, _ in results)

    # cancelling a finished job: the seed job the fake worker completed
    finished: list[str] = []
    for t in pair.targets:
        listing = t.client.ListJobs(
            client_pb2.ListJobsRequest(filter=job_pb2.JobFilter(states=[job_pb2.SUCCEEDED])), timeout=5
        )
        assert listing.jobs, f"{t.design}: no succeeded job"
        finished.append(listing.jobs[0].job_id)
    results = pair.each(
        lambda t: t.client.CancelJob(
            client_pb2.CancelJobRequest(job_id=finished[pair.targets.index(t)]), timeout=5
        )
    )
    assert_same_code(results, {grpc.StatusCode.FAILED_PRECONDITION}, "cancel of a finished job")

    big = job_pb2.JobSpec(job_type="echo", payload=b"x" * (PAYLOAD_CAP + 1))
    results = pair.each(lambda t: t.client.SubmitJob(client_pb2.SubmitJobRequest(spec=big), timeout=5))
    assert_same_code(results, {grpc.StatusCode.RESOURCE_EXHAUSTED}, "oversized payload")
    assert all("limit" in details for _, details, _ in results)

    results = pair.each(lambda t: t.client.ListJobs(client_pb2.ListJobsRequest(page_size=-1), timeout=5))
    assert_same_code(results, {grpc.StatusCode.INVALID_ARGUMENT}, "negative page size")
    results = pair.each(
        lambda t: t.client.GetJobStatus(client_pb2.GetJobStatusRequest(job_id="n1-1-00ffffffff"), timeout=5)
    )
    assert_same_code(results, {grpc.StatusCode.NOT_FOUND}, "unknown job")
    assert_healthy(pair)


# ---------------------------------------------------------------------------- worker API
@FUZZ
@given(
    worker_id=st.one_of(st.just("fuzz-w"), st.text(max_size=200)),
    attempt_shift=st.sampled_from([-(2**31), -1, 1, 7, 2**31 - 2]),
    which=st.sampled_from(["stale", "forged", "garbage"]),
    job_id=JOB_IDS,
    kind=st.sampled_from(["response", "error", "cancelled", "none"]),
)
def test_stale_forged_and_duplicate_reports(
    pair: Pair, worker_id: str, attempt_shift: int, which: str, job_id: str, kind: str
) -> None:
    def report(t: Target) -> Any:
        held_id, held_attempt = t.leased[0]
        if which == "stale":  # the job we hold, under an attempt that is not ours
            target_id, attempt = held_id, held_attempt + attempt_shift
        elif which == "forged":  # nobody's job
            target_id, attempt = job_id, held_attempt
        else:  # a real job the fake worker does not hold (pending)
            target_id, attempt = t.pending, 1
        request = worker_pb2.ReportResultRequest(worker_id=worker_id, job_id=target_id, attempt=attempt)
        if kind == "response":
            request.success.output = b"r"
        elif kind == "error":
            request.failure.message = "boom"
        elif kind == "cancelled":
            request.cancelled = True
        return t.workers.ReportResult(request, timeout=5)

    results = pair.each(report)
    allowed = {
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
    }
    assert_same_code(results, allowed, f"ReportResult({which}, {kind}, shift={attempt_shift})")
    assert_healthy(pair)


def test_duplicate_result_is_aborted(pair: Pair) -> None:
    """The second report of an attempt that already won finds the lease gone: ABORTED, and the result
    stays the first one."""
    for t in pair.targets:
        job_id, attempt = t.leased.pop()
        request = worker_pb2.ReportResultRequest(
            worker_id="fuzz-w", job_id=job_id, attempt=attempt, success=job_pb2.JobResult(output=b"first")
        )
        t.workers.ReportResult(request, timeout=5)
        again = worker_pb2.ReportResultRequest(
            worker_id="fuzz-w", job_id=job_id, attempt=attempt, success=job_pb2.JobResult(output=b"second")
        )
        with pytest.raises(grpc.RpcError) as caught:
            t.workers.ReportResult(again, timeout=5)
        error = caught.value
        assert isinstance(error, grpc.Call)
        assert error.code() is grpc.StatusCode.ABORTED, (t.design, error.details())
        assert "does not hold the lease" in (error.details() or "")
        result = t.client.GetJobResult(client_pb2.GetJobResultRequest(job_id=job_id), timeout=5)
        assert result.response.output == b"first"


@FUZZ
@given(
    worker_id=st.text(max_size=200),
    total=INT32,
    free=INT32,
    running=st.lists(st.tuples(JOB_IDS, INT32), max_size=4),
    wait=st.floats(-5, 0.05),
)
def test_hostile_heartbeats_and_fetches(
    pair: Pair, worker_id: str, total: int, free: int, running: list[tuple[str, int]], wait: float
) -> None:
    heartbeat = worker_pb2.HeartbeatRequest(
        worker_id=worker_id,
        total_slots=total,
        free_slots=free,
        running=[worker_pb2.RunningJob(job_id=j, attempt=a) for j, a in running],
    )
    allowed = {OK, grpc.StatusCode.INVALID_ARGUMENT}
    assert_same_code(
        pair.each(lambda t: t.workers.WorkerHeartbeat(heartbeat, timeout=5)), allowed, "heartbeat"
    )
    # free_slots 0 or less never leases anything, so no fuzzed fetch takes a job away from the seed worker
    fetch = worker_pb2.FetchWorkRequest(worker_id=worker_id, free_slots=min(free, 0), wait_timeout=_dur(wait))
    results = pair.each(lambda t: t.workers.FetchWork(fetch, timeout=5))
    code = assert_same_code(results, allowed, f"fetch(free={min(free, 0)}, wait={wait})")
    if code is OK:
        assert all(not r.assignments for _, _, r in results)
    assert_healthy(pair)


# ---------------------------------------------------------------------------- raw garbage
METHODS = [
    "/dtq.v1.TaskQueue/SubmitJob",
    "/dtq.v1.TaskQueue/GetJobStatus",
    "/dtq.v1.TaskQueue/ListJobs",
    "/dtq.v1.TaskQueue/GetJobResult",
    "/dtq.v1.Workers/ReportResult",
    "/dtq.v1.Workers/WorkerHeartbeat",
]


@FUZZ
@given(method=st.sampled_from(METHODS), body=st.binary(max_size=300))
def test_raw_garbage_bytes(pair: Pair, method: str, body: bytes) -> None:
    """Bytes that may not even parse: an error code (or OK for bytes that happen to parse), never a
    dead server. Both designs parse with the same generated code, so they must agree."""
    results: list[tuple[grpc.StatusCode, str, Any]] = []
    for t in pair.targets:
        channel = t.worker_channel if "Workers" in method else t.channel
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        try:
            results.append((OK, "", call(body, timeout=5)))
        except grpc.RpcError as exc:
            assert isinstance(exc, grpc.Call)
            results.append((exc.code(), exc.details() or "", None))
    assert results[0][0] == results[1][0], f"{method} {body!r}: {results}"
    for code, details, _ in results:
        if "is not a valid" in details:
            # bytes that do not parse: refused before the servicer runs (realsys/decoding.py)
            assert code is grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    codes = {code for code, _, _ in results}
    bad = codes - {
        OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
    assert not bad, f"{method} {body!r}: {results}"
    assert_healthy(pair)


@pytest.mark.parametrize("method", METHODS)
def test_unparsable_bytes_get_invalid_argument(pair: Pair, method: str) -> None:
    """A truncated varint cannot parse as any message: INVALID_ARGUMENT naming the message type, in
    both designs, and the node stays healthy."""
    for t in pair.targets:
        channel = t.worker_channel if "Workers" in method else t.channel
        call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as info:
            call(b"\x08\xff", timeout=5)
        error = info.value
        assert isinstance(error, grpc.Call)
        assert error.code() is grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
        assert "is not a valid" in (error.details() or "")
    assert_healthy(pair)


# ---------------------------------------------------------------------------- forged node metadata
@FUZZ
@given(request_id=st.text(min_size=1, max_size=40), value=st.sampled_from(["1", "0", "", "yes"]))
def test_forged_forwarding_never_makes_a_second_job(pair: Pair, request_id: str, value: str) -> None:
    """Issue 26: in plaintext anyone may send `dtq-forwarded` (the threat model trusts local
    processes), but it cannot make two jobs of one request_id: a submit marked forwarded still goes
    to the id's home node, from every node it is sent to. (Under --secure it is refused outright:
    test_forwarding_metadata_is_refused_from_clients_and_workers below.)"""
    spec = job_pb2.JobSpec(job_type="echo", payload=b"f")
    request = client_pb2.SubmitJobRequest(spec=spec, request_id=f"forged-{request_id}")
    for target in pair.targets:
        ids = {target.client.SubmitJob(request, timeout=5).job_id}
        for entry in target.entries:
            ids.add(entry.SubmitJob(request, timeout=5, metadata=(("dtq-forwarded", value),)).job_id)
        assert len(ids) == 1, f"{target.design}: one request_id made jobs {sorted(ids)}"
        (job_id,) = ids
        if job_id not in target.accepted:
            target.accepted.append(job_id)
            target.client.CancelJob(client_pb2.CancelJobRequest(job_id=job_id), timeout=5)
    assert_healthy(pair)


# ---------------------------------------------------------------------------- worker identity (TLS)
CLIENT_TOKEN, GOOD_TOKEN, EVIL_TOKEN, INTERNAL_TOKEN = (new_token() for _ in range(4))


@dataclass
class SecureTarget:
    design: str
    client: Any  # TaskQueue stub with the client token
    good: Any  # Workers stub with the "good" worker token: the victim
    evil: Any  # Workers stub with the "evil" worker token: another worker-token holder
    victim: tuple[str, int] = ("", 0)  # (job id, attempt) leased to good-1
    channels: list[grpc.Channel] = field(default_factory=list)


@pytest.fixture(scope="module")
def secure_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[SecureTarget]]:
    """Both designs with TLS and tokens (no workers of their own: the tests are the workers)."""
    root = tmp_path_factory.mktemp("fuzz-tls")
    names = ["result", "queue", "job", "coordinator", "gateway", "n1", "n2"]
    pki = write_cluster_pki(root / "tls", names)

    def security(name: str) -> SecurityConfig:
        return security_config(pki, name, CLIENT_TOKEN, GOOD_TOKEN, EVIL_TOKEN, INTERNAL_TOKEN)

    loop = LoopThread()
    micro, *micro_addresses = loop.run(start_micro(root / "micro", CORE, security=security))
    mono, *mono_addresses = loop.run(start_mono(root / "mono", CORE, security=security))
    ca = pki.ca.read_bytes()
    targets = []
    for design, (address, worker_address) in (("micro", micro_addresses), ("mono", mono_addresses)):
        channels = [
            open_channel(a, grpc_options(), ChannelSecurity(ca, t))
            for a, t in ((address, CLIENT_TOKEN), (worker_address, GOOD_TOKEN), (worker_address, EVIL_TOKEN))
        ]
        target = SecureTarget(
            design,
            client_pb2_grpc.TaskQueueStub(channels[0]),
            worker_pb2_grpc.WorkersStub(channels[1]),
            worker_pb2_grpc.WorkersStub(channels[2]),
            channels=channels,
        )
        job_id = target.client.SubmitJob(
            client_pb2.SubmitJobRequest(spec=job_pb2.JobSpec(job_type="echo", payload=b"v")), timeout=5
        ).job_id
        target.good.WorkerHeartbeat(worker_pb2.HeartbeatRequest(worker_id="good-1", total_slots=1), timeout=5)
        fetched = target.good.FetchWork(
            worker_pb2.FetchWorkRequest(worker_id="good-1", free_slots=1, wait_timeout=_dur(1.0)), timeout=5
        )
        (assignment,) = fetched.assignments
        assert assignment.job_id == job_id
        target.victim = (job_id, assignment.attempt)
        targets.append(target)
    try:
        yield targets
    finally:
        for target in targets:
            for channel in target.channels:
                channel.close()
        loop.run(stop_roles(micro))
        loop.run(stop_roles(mono))
        loop.close()


def _each(
    targets: list[SecureTarget], call: Callable[[SecureTarget], Any]
) -> list[tuple[grpc.StatusCode, str, Any]]:
    return Pair(targets).each(call)  # type: ignore[arg-type]  # each only calls call(target)


WORKER_IDS = st.one_of(
    st.sampled_from(
        ["good-1", "good", "good-", "goodevil", "evil", "evil-1", "evil-good-1", "evilx", "Evil-1"]
    ),
    st.text(min_size=1, max_size=60),
    st.text(min_size=1, max_size=20).map(lambda t: "evil-" + t),
)


@FUZZ
@given(worker_id=WORKER_IDS, call=st.sampled_from(["heartbeat", "fetch", "report", "cancelled"]))
def test_a_worker_token_holder_cannot_impersonate_another_worker(
    secure_pair: list[SecureTarget], worker_id: str, call: str
) -> None:
    """Issue 26: the "evil" worker token acts only as evil or evil-<suffix>: any other worker_id is
    PERMISSION_DENIED before the service sees the call (in both designs alike), and the victim's
    lease (good-1's) is untouched."""

    def run(t: SecureTarget) -> Any:
        job_id, attempt = t.victim
        if call == "heartbeat":
            running = [worker_pb2.RunningJob(job_id=job_id, attempt=attempt)]
            request = worker_pb2.HeartbeatRequest(worker_id=worker_id, total_slots=1, running=running)
            return t.evil.WorkerHeartbeat(request, timeout=5)
        if call == "fetch":  # no free slots: a fetch that passes takes nothing
            return t.evil.FetchWork(worker_pb2.FetchWorkRequest(worker_id=worker_id), timeout=5)
        report = worker_pb2.ReportResultRequest(worker_id=worker_id, job_id=job_id, attempt=attempt)
        if call == "report":
            report.failure.message = "forged"  # a failure: Design A's result store keeps no bytes of it
        else:
            report.cancelled = True
        return t.evil.ReportResult(report, timeout=5)

    results = _each(secure_pair, run)
    own = may_act_as("evil", worker_id)
    allowed = {OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.ABORTED} if own else {PERMISSION_DENIED}
    code = assert_same_code(results, allowed, f"{call} as {worker_id!r}")
    if code is PERMISSION_DENIED:
        assert all("acts as worker 'evil'" in details for _, details, _ in results)
    if code is OK and call == "heartbeat":  # its own id: the victim's attempt is not its to renew
        assert all(len(reply.abandon) == 1 for _, _, reply in results)
    for t in secure_pair:  # the victim still holds its lease
        job = t.client.GetJobStatus(client_pb2.GetJobStatusRequest(job_id=t.victim[0]), timeout=5)
        assert JobState(job.state) is JobState.RUNNING and job.worker_id == "good-1"
        assert job.attempt == t.victim[1]


@FUZZ
@given(
    value=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=20),  # ASCII: gRPC's rule
    which=st.sampled_from(["client", "worker"]),
)
def test_forwarding_metadata_is_refused_from_clients_and_workers(
    secure_pair: list[SecureTarget], value: str, which: str
) -> None:
    """Issue 26: `dtq-forwarded` is node-to-node metadata: with a client or worker token it is
    PERMISSION_DENIED whatever its value, in both designs, and nothing is created."""
    metadata = (("dtq-forwarded", value),)

    def run(t: SecureTarget) -> Any:
        if which == "client":
            request = client_pb2.SubmitJobRequest(spec=job_pb2.JobSpec(job_type="echo"), request_id="fwd")
            return t.client.SubmitJob(request, timeout=5, metadata=metadata)
        request_hb = worker_pb2.HeartbeatRequest(worker_id="good-1", total_slots=1)
        return t.good.WorkerHeartbeat(request_hb, timeout=5, metadata=metadata)

    assert_same_code(_each(secure_pair, run), {PERMISSION_DENIED}, f"{which} with dtq-forwarded={value!r}")
    for t in secure_pair:
        listing = t.client.ListJobs(client_pb2.ListJobsRequest(page_size=10), timeout=5)
        assert [j.job_id for j in listing.jobs] == [t.victim[0]]


# ---------------------------------------------------------------------------- results only from the lease
def _report(stub: Any, worker_id: str, job_id: str, attempt: int, output: bytes) -> grpc.StatusCode:
    request = worker_pb2.ReportResultRequest(
        worker_id=worker_id, job_id=job_id, attempt=attempt, success=job_pb2.JobResult(output=output)
    )
    try:
        stub.ReportResult(request, timeout=5)
    except grpc.RpcError as exc:
        assert isinstance(exc, grpc.Call)
        return exc.code()
    return grpc.StatusCode.OK


@pytest.mark.parametrize("secure", [False, True], ids=["plaintext", "secure"])
@pytest.mark.parametrize("design", ["micro", "mono"])
def test_an_aborted_report_leaves_the_result_untouched(tmp_path: Path, design: str, secure: bool) -> None:
    """Issue 26, defect 1: a Workers-API caller whose worker_id does not hold the lease reports a success
    with its own bytes: ABORTED, and the job's result is the lease holder's. (Design A stored the forged
    bytes before the lease check, first write winning, and the job ended SUCCEEDED with them.) Under
    --secure the caller is another worker-token holder acting under its own name; in plaintext it uses
    another live worker's id."""
    pki = write_cluster_pki(
        tmp_path / "tls", ["result", "queue", "job", "coordinator", "gateway", "n1", "n2"]
    )

    def security(name: str) -> SecurityConfig:
        return security_config(pki, name, CLIENT_TOKEN, GOOD_TOKEN, EVIL_TOKEN, INTERNAL_TOKEN)

    start = start_micro if design == "micro" else start_mono
    loop = LoopThread()
    running, address, worker_address = loop.run(
        start(tmp_path / design, CORE, security=security if secure else None)
    )
    channels: list[grpc.Channel] = []
    try:
        if secure:
            ca = pki.ca.read_bytes()
            channels = [
                open_channel(a, grpc_options(), ChannelSecurity(ca, t))
                for a, t in (
                    (address, CLIENT_TOKEN),
                    (worker_address, GOOD_TOKEN),
                    (worker_address, EVIL_TOKEN),
                )
            ]
            attacker_id = "evil-1"  # its own name: the token check lets it through to the lease check
        else:
            channels = [grpc.insecure_channel(a, options=grpc_options()) for a in (address, worker_address)]
            channels.append(channels[1])
            attacker_id = "other-1"  # another live worker's id
        client = client_pb2_grpc.TaskQueueStub(channels[0])
        good, evil = worker_pb2_grpc.WorkersStub(channels[1]), worker_pb2_grpc.WorkersStub(channels[2])
        for stub, worker_id in ((good, "good-1"), (evil, attacker_id)):
            stub.WorkerHeartbeat(worker_pb2.HeartbeatRequest(worker_id=worker_id, total_slots=1), timeout=5)
        job_id = client.SubmitJob(
            client_pb2.SubmitJobRequest(spec=job_pb2.JobSpec(job_type="echo", payload=b"v")), timeout=5
        ).job_id
        fetched = good.FetchWork(
            worker_pb2.FetchWorkRequest(worker_id="good-1", free_slots=1, wait_timeout=_dur(2.0)), timeout=5
        )
        (assignment,) = fetched.assignments
        assert assignment.job_id == job_id

        assert _report(evil, attacker_id, job_id, assignment.attempt, b"forged") is grpc.StatusCode.ABORTED
        job = client.GetJobStatus(client_pb2.GetJobStatusRequest(job_id=job_id), timeout=5)
        assert JobState(job.state) is JobState.RUNNING and job.worker_id == "good-1"  # the lease stands
        assert _report(good, "good-1", job_id, assignment.attempt, b"real") is grpc.StatusCode.OK
        result = client.GetJobResult(client_pb2.GetJobResultRequest(job_id=job_id), timeout=5)
        assert JobState(result.job.state) is JobState.SUCCEEDED
        assert result.response.output == b"real"
    finally:
        for channel in dict.fromkeys(channels):
            channel.close()
        loop.run(stop_roles(running))
        loop.close()


def test_design_a_result_put_ahead_of_time_is_replaced_by_the_lease_holders(tmp_path: Path) -> None:
    """Issue 26, defect 1: job ids are sequential, so a local process in plaintext mode (trusted as a
    node) could PutResult for a job not yet submitted and, first write winning, decide its result. The
    result service is written by the job service for the lease holder, and that write stands."""
    loop = LoopThread()
    running, address, worker_address = loop.run(start_micro(tmp_path, CORE))
    result_address = next(r.address for r in running if r.config.role == "result")
    channels = [
        grpc.insecure_channel(a, options=grpc_options()) for a in (address, worker_address, result_address)
    ]
    try:
        client = client_pb2_grpc.TaskQueueStub(channels[0])
        workers = worker_pb2_grpc.WorkersStub(channels[1])
        results = internal_pb2_grpc.ResultStoreStub(channels[2])
        first = client.SubmitJob(
            client_pb2.SubmitJobRequest(spec=job_pb2.JobSpec(job_type="echo")), timeout=5
        )
        prefix, number = first.job_id.rsplit("-", 1)
        next_id = f"{prefix}-{int(number) + 1:0{len(number)}d}"
        early = internal_pb2.PutResultRequest(job_id=next_id, attempt=1)
        early.response.output = b"forged"
        results.PutResult(early, timeout=5)
        second = client.SubmitJob(
            client_pb2.SubmitJobRequest(spec=job_pb2.JobSpec(job_type="echo")), timeout=5
        )
        assert second.job_id == next_id
        fetched = workers.FetchWork(
            worker_pb2.FetchWorkRequest(worker_id="w-1", free_slots=2, wait_timeout=_dur(2.0)), timeout=5
        )
        assert {a.job_id for a in fetched.assignments} == {first.job_id, next_id}
        for a in fetched.assignments:
            assert _report(workers, "w-1", a.job_id, a.attempt, b"real") is grpc.StatusCode.OK
        result = client.GetJobResult(client_pb2.GetJobResultRequest(job_id=next_id), timeout=5)
        assert result.response.output == b"real"
    finally:
        for channel in channels:
            channel.close()
        loop.run(stop_roles(running))
        loop.close()
