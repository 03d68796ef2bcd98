"""Access control (realsys/security.py): TLS from config, bearer tokens checked per service, health open.

In-process servers on pre-picked loopback ports with a throwaway CA, for both designs; then a real
six-process `dtq cluster up --secure` per design running jobs end to end (workers authenticate too).
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from dtq.v1 import client_pb2, client_pb2_grpc, internal_pb2_grpc, job_pb2, worker_pb2, worker_pb2_grpc
from model.config import CoreConfig
from model.errors import InvalidArgument
from model.states import JobState
from realsys import cluster
from realsys.client import DtqClient, grpc_code
from realsys.cluster import free_ports
from realsys.config import (
    NodeConfig,
    SecurityConfig,
    config_to_env,
    grpc_options,
    load_config,
    split_worker_token,
)
from realsys.metrics import NodeMetrics
from realsys.micro.worker import WorkerRole
from realsys.mono import MonoNode
from realsys.security import (
    ChannelSecurity,
    ClusterPki,
    new_token,
    open_aio_channel,
    worker_channel_security,
    write_cluster_pki,
)
from realsys.server import RunningRole, start_role
from tests.realsys.conftest import MICRO_ROLES, Closing, security_config, stop_roles

pytestmark = pytest.mark.timeout(60)

CLIENT, WORKER, INTERNAL = new_token(), new_token(), new_token()
EVIL = new_token()  # a second worker token: a worker-token holder who is not the cluster's worker
MICRO_ORDER = ("result", "queue", "job", "coordinator", "worker", "gateway")  # callees first
MONO_NODES = ("n1", "n2")
CORE = CoreConfig(lease_duration=2.0, heartbeat_interval=0.2, worker_ttl=2.0)
MICRO_TYPES: dict[str, Any] = {**MICRO_ROLES, "worker": WorkerRole}


def make_stub(factory: Any, channel: grpc.aio.Channel) -> Any:
    """Generated stubs are untyped (no *_grpc.pyi)."""
    return factory(channel)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> ClusterPki:
    return write_cluster_pki(tmp_path_factory.mktemp("tls"), [*MICRO_ORDER, *MONO_NODES])


def security_for(pki: ClusterPki, name: str) -> SecurityConfig:
    # the worker process acts as good-<random>; EVIL may act only as evil or evil-<suffix>
    return security_config(pki, name, CLIENT, WORKER, EVIL, INTERNAL)


class SecureCluster(Closing):
    """One design's nodes in this process, every one with TLS and tokens."""

    def __init__(self, design: str, root: Path, pki: ClusterPki, store: str = "memory") -> None:
        self.design = design
        self.root = root
        self.pki = pki
        self.store = store
        self.ca = pki.ca.read_bytes()
        names = MICRO_ORDER if design == "micro" else MONO_NODES
        self.addresses = {n: f"127.0.0.1:{p}" for n, p in zip(names, free_ports(len(names)), strict=True)}
        self.running: list[RunningRole] = []
        self.channels: list[grpc.aio.Channel] = []

    def config(self, name: str) -> NodeConfig:
        micro = self.design == "micro"
        return NodeConfig(
            design="micro" if micro else "mono",
            role=name if micro else "node",  # type: ignore[arg-type]
            name=name,
            listen=self.addresses[name],
            data_dir=self.root / name,
            store=self.store,  # type: ignore[arg-type]
            slots=2 if name in ("worker", "n1", "n2") else 0,
            core=CORE,
            peers={} if micro else dict(self.addresses),
            services={k: v for k, v in self.addresses.items() if k != "worker"} if micro else {},
            metrics_port=-1,
            rpc_timeout=2.0,
            fetch_wait=0.5,
            drain_timeout=1.0,
            security=security_for(self.pki, name),
        )

    async def start(self) -> None:
        for name in self.addresses:
            config = self.config(name)
            metrics = NodeMetrics(name, config.role, config.design)
            role = MonoNode(config, metrics) if self.design == "mono" else MICRO_TYPES[name](config, metrics)
            self.running.append(await start_role(config, role, metrics))

    @property
    def client_address(self) -> str:
        return self.addresses["gateway" if self.design == "micro" else "n1"]

    @property
    def workers_address(self) -> str:
        return self.addresses["coordinator" if self.design == "micro" else "n1"]

    def client(self, token: str = CLIENT) -> DtqClient:
        return DtqClient(self.client_address, timeout=5.0, token=token, root_certificates=self.ca)

    def channel(self, address: str, token: str = "", tls: bool = True) -> grpc.aio.Channel:
        security = ChannelSecurity(self.ca if tls else None, token)
        channel = open_aio_channel(address, grpc_options(), security)
        self.channels.append(channel)
        return channel

    def internal_call(self, token: str) -> Any:
        """An internal API call (Design A: JobStore.ListJobs; Design B: Peer.ListLocalJobs)."""
        if self.design == "micro":
            stub: Any = make_stub(internal_pb2_grpc.JobStoreStub, self.channel(self.addresses["job"], token))
            return stub.ListJobs(client_pb2.ListJobsRequest(), timeout=3.0)
        peer: Any = make_stub(internal_pb2_grpc.PeerStub, self.channel(self.addresses["n1"], token))
        return peer.ListLocalJobs(client_pb2.ListJobsRequest(), timeout=3.0)

    async def close(self) -> None:
        await stop_roles(self.running, self.channels)


@pytest.fixture(params=["micro", "mono"])
async def secure(
    request: pytest.FixtureRequest, tmp_path: Path, pki: ClusterPki
) -> AsyncIterator[SecureCluster]:
    async with SecureCluster(request.param, tmp_path, pki) as c:
        await c.start()
        yield c


async def rpc_failure(call: Any) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value


async def job_count(c: SecureCluster) -> int:
    async with c.client() as client:
        return len([job async for job in client.list_all()])


# ---------------------------------------------------------------------------- in-process
async def test_right_token_over_tls_runs_jobs_end_to_end(secure: SecureCluster) -> None:
    async with secure.client() as client:
        echo = await client.submit("echo", b"over tls")
        sleeps = [await client.submit("sleep", json.dumps({"seconds": 0.05})) for _ in range(3)]
        jobs = await asyncio.gather(*(client.wait(j, timeout=15) for j in [echo, *sleeps]))
        assert [JobState(j.state) for j in jobs] == [JobState.SUCCEEDED] * 4
        assert (await client.result(echo)).response.output == b"over tls"
        listed = [j.job_id async for j in client.list_all()]  # Design B: scatters to n2 over TLS
        assert sorted(listed) == sorted([echo, *sleeps])


async def test_missing_and_wrong_tokens_are_unauthenticated_and_store_nothing(secure: SecureCluster) -> None:
    before = await job_count(secure)
    request = client_pb2.SubmitJobRequest(spec=job_pb2.JobSpec(job_type="echo", payload=b"x"))

    stub: Any = make_stub(client_pb2_grpc.TaskQueueStub, secure.channel(secure.client_address))
    missing = await rpc_failure(stub.SubmitJob(request, timeout=3.0))
    assert missing.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "missing credentials" in (missing.details() or "")
    assert "authorization: Bearer" in (missing.details() or "")

    wrong_token = new_token()
    stub = make_stub(client_pb2_grpc.TaskQueueStub, secure.channel(secure.client_address, wrong_token))
    wrong = await rpc_failure(stub.SubmitJob(request, timeout=3.0))
    assert wrong.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "invalid token" in (wrong.details() or "")
    assert wrong_token not in (wrong.details() or "")

    # a bare header that is not "Bearer <token>"
    raw = secure.channel(secure.client_address)
    stub = make_stub(client_pb2_grpc.TaskQueueStub, raw)
    malformed = await rpc_failure(stub.SubmitJob(request, timeout=3.0, metadata=(("authorization", CLIENT),)))
    assert malformed.code() is grpc.StatusCode.UNAUTHENTICATED

    # the client surfaces the status code, and does not retry it as UNAVAILABLE
    async with secure.client(token=new_token()) as client:
        with pytest.raises(Exception) as caught:
            await client.submit("echo", b"x", request_id="retry-me")
        assert grpc_code(caught.value) is grpc.StatusCode.UNAUTHENTICATED

    assert await job_count(secure) == before
    # refused calls are counted (and timed) by their code, as served ones are
    registry = secure.running[-1 if secure.design == "micro" else 0].metrics.registry
    method = "/dtq.v1.TaskQueue/SubmitJob"
    refused = registry.get_sample_value("dtq_rpc_total", {"method": method, "code": "UNAUTHENTICATED"})
    assert refused == 4
    timed = registry.get_sample_value("dtq_rpc_latency_seconds_count", {"method": method})
    assert timed is not None and timed >= 4


async def test_client_token_cannot_call_worker_or_internal_apis(secure: SecureCluster) -> None:
    heartbeat = worker_pb2.HeartbeatRequest(worker_id="good-1", total_slots=1, free_slots=1)

    workers: Any = make_stub(worker_pb2_grpc.WorkersStub, secure.channel(secure.workers_address, CLIENT))
    denied = await rpc_failure(workers.WorkerHeartbeat(heartbeat, timeout=3.0))
    assert denied.code() is grpc.StatusCode.PERMISSION_DENIED
    assert "client token may not call dtq.v1.Workers" in (denied.details() or "")

    internal = await rpc_failure(secure.internal_call(CLIENT))
    assert internal.code() is grpc.StatusCode.PERMISSION_DENIED
    internal = await rpc_failure(secure.internal_call(WORKER))
    assert internal.code() is grpc.StatusCode.PERMISSION_DENIED
    internal = await rpc_failure(secure.internal_call(""))
    assert internal.code() is grpc.StatusCode.UNAUTHENTICATED

    anonymous: Any = make_stub(worker_pb2_grpc.WorkersStub, secure.channel(secure.workers_address))
    missing = await rpc_failure(anonymous.WorkerHeartbeat(heartbeat, timeout=3.0))
    assert missing.code() is grpc.StatusCode.UNAUTHENTICATED

    # a worker token is not a client token either
    async with secure.client(token=WORKER) as client:
        with pytest.raises(Exception) as caught:
            await client.status("n1-0-1")
        assert grpc_code(caught.value) is grpc.StatusCode.PERMISSION_DENIED

    # while the right credentials pass the same calls
    worker_stub: Any = make_stub(worker_pb2_grpc.WorkersStub, secure.channel(secure.workers_address, WORKER))
    reply = await worker_stub.WorkerHeartbeat(heartbeat, timeout=3.0)
    assert reply.heartbeat_interval.ToTimedelta().total_seconds() > 0
    listed = await secure.internal_call(INTERNAL)
    assert list(listed.jobs) == []


async def test_plaintext_and_unknown_ca_fail_unavailable(secure: SecureCluster, tmp_path: Path) -> None:
    request = client_pb2.GetJobStatusRequest(job_id="n1-0-1")
    plaintext: Any = make_stub(
        client_pb2_grpc.TaskQueueStub, secure.channel(secure.client_address, tls=False)
    )
    failed = await rpc_failure(plaintext.GetJobStatus(request, timeout=3.0))
    assert failed.code() is grpc.StatusCode.UNAVAILABLE

    other = write_cluster_pki(tmp_path / "other", ["x"])
    channel = open_aio_channel(secure.client_address, grpc_options(), ChannelSecurity(other.ca, CLIENT))
    secure.channels.append(channel)
    stub: Any = make_stub(client_pb2_grpc.TaskQueueStub, channel)
    failed = await rpc_failure(stub.GetJobStatus(request, timeout=3.0))
    assert failed.code() is grpc.StatusCode.UNAVAILABLE


async def test_health_passes_without_a_token(secure: SecureCluster) -> None:
    for address in secure.addresses.values():
        stub: Any = make_stub(health_pb2_grpc.HealthStub, secure.channel(address))
        reply = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=3.0)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


async def running_job(secure: SecureCluster, client: DtqClient) -> job_pb2.Job:
    """A sleep job the cluster's own worker is running, as GetJobStatus shows it (with its worker_id)."""
    job_id = await client.submit("sleep", json.dumps({"seconds": 1.5}))
    for _ in range(100):
        job = await client.status(job_id)
        if JobState(job.state) is JobState.RUNNING:
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"{job_id} never ran")


async def test_a_worker_token_cannot_act_as_another_worker(secure: SecureCluster) -> None:
    """Issue 26: any worker-token holder could finish any running job by copying the worker_id that
    GetJobStatus shows. A worker token now acts only as its own name: the report, the heartbeat, a
    fetch under someone else's id, and a batch of reports or a fetch carrying a report under someone
    else's id get PERMISSION_DENIED before the request reaches the service, and the job ends with its
    real worker's result."""
    evil: Any = make_stub(worker_pb2_grpc.WorkersStub, secure.channel(secure.workers_address, EVIL))
    async with secure.client() as client:
        job = await running_job(secure, client)
        assert job.worker_id.startswith("good-" if secure.design == "micro" else "n1-w")
        forged = worker_pb2.ReportResultRequest(
            worker_id=job.worker_id,
            job_id=job.job_id,
            attempt=job.attempt,
            success=job_pb2.JobResult(output=b"evil"),
        )
        for call in (
            evil.ReportResult(forged, timeout=3.0),
            evil.WorkerHeartbeat(
                worker_pb2.HeartbeatRequest(
                    worker_id=job.worker_id,
                    total_slots=1,
                    running=[worker_pb2.RunningJob(job_id=job.job_id, attempt=job.attempt)],
                ),
                timeout=3.0,
            ),
            evil.FetchWork(worker_pb2.FetchWorkRequest(worker_id=job.worker_id, free_slots=1), timeout=3.0),
            # a batch names its workers only in its reports, and a fetch may carry reports
            evil.ReportResults(worker_pb2.ReportResultsRequest(reports=[forged]), timeout=3.0),
            evil.FetchWork(
                worker_pb2.FetchWorkRequest(worker_id="evil-1", free_slots=0, reports=[forged]), timeout=3.0
            ),
        ):
            denied = await rpc_failure(call)
            assert denied.code() is grpc.StatusCode.PERMISSION_DENIED, denied.details()
            assert f"acts as worker 'evil' (or evil-<suffix>), not {job.worker_id!r}" in (
                denied.details() or ""
            )
        assert JobState((await client.status(job.job_id)).state) is JobState.RUNNING
        # its own identity passes the check, and the lease fence refuses the report (Design A's
        # coordinator stores a result before that fence: issue 26 defect 1, not checked here)
        if secure.design == "mono":
            own = worker_pb2.ReportResultRequest()
            own.CopyFrom(forged)
            own.worker_id = "evil-1"
            aborted = await rpc_failure(evil.ReportResult(own, timeout=3.0))
            assert aborted.code() is grpc.StatusCode.ABORTED
        done = await client.wait(job.job_id, timeout=15)
        assert JobState(done.state) is JobState.SUCCEEDED
        assert (await client.result(job.job_id)).response.output == b""  # the sleep's, not b"evil"
    serving = secure.running[MICRO_ORDER.index("coordinator") if secure.design == "micro" else 0]
    refused = serving.metrics.registry.get_sample_value(
        "dtq_rpc_total", {"method": "/dtq.v1.Workers/ReportResult", "code": "PERMISSION_DENIED"}
    )
    assert refused == 1  # counted as auth's refusals are


async def test_forwarding_metadata_is_accepted_only_from_nodes(secure: SecureCluster) -> None:
    """Issue 26: Design B trusted a client-set `dtq-forwarded` header, so one request_id could make
    two jobs (the header made a non-home node keep the submit). Only the internal token may send it."""
    forwarded = (("dtq-forwarded", "1"),)
    request = client_pb2.SubmitJobRequest(spec=job_pb2.JobSpec(job_type="echo"), request_id="only-once")
    for address in {secure.client_address, *([secure.addresses["n2"]] if secure.design == "mono" else [])}:
        stub: Any = make_stub(client_pb2_grpc.TaskQueueStub, secure.channel(address, CLIENT))
        denied = await rpc_failure(stub.SubmitJob(request, timeout=3.0, metadata=forwarded))
        assert denied.code() is grpc.StatusCode.PERMISSION_DENIED
        assert "'dtq-forwarded' is for calls between nodes" in (denied.details() or "")
    workers: Any = make_stub(worker_pb2_grpc.WorkersStub, secure.channel(secure.workers_address, WORKER))
    heartbeat = worker_pb2.HeartbeatRequest(worker_id="good-1", total_slots=1, free_slots=1)
    denied = await rpc_failure(workers.WorkerHeartbeat(heartbeat, timeout=3.0, metadata=forwarded))
    assert denied.code() is grpc.StatusCode.PERMISSION_DENIED
    assert await job_count(secure) == 0
    async with secure.client() as client:  # without the header: one job, however often it is sent
        first = await client.submit("echo", b"x", request_id="only-once")
        assert await client.submit("echo", b"x", request_id="only-once") == first
    assert await job_count(secure) == 1
    if secure.design == "mono":  # nodes themselves forward with it (the internal token), to the owner
        owner = secure.addresses[first.split("-")[0]]
        internal: Any = make_stub(client_pb2_grpc.TaskQueueStub, secure.channel(owner, INTERNAL))
        request_status = client_pb2.GetJobStatusRequest(job_id=first)
        assert (await internal.GetJobStatus(request_status, timeout=3.0, metadata=forwarded)).job_id == first


async def test_secure_data_at_rest_is_owner_only(pki: ClusterPki, tmp_path: Path) -> None:
    """Issue 26: under --secure the SQLite files were 0644 in 0755 directories and user `nobody`
    read the results. Every node's data directory is now 0700 and every database file 0600."""
    for design in ("micro", "mono"):
        c = SecureCluster(design, tmp_path / design, pki, store="sqlite")
        try:
            await c.start()
            async with c.client() as client:
                job_id = await client.submit("echo", b"private")
                assert JobState((await client.wait(job_id, timeout=15)).state) is JobState.SUCCEEDED
        finally:
            await c.close()
        files = [f for f in (tmp_path / design).rglob("*") if ".sqlite3" in f.name]
        assert files
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
            assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700, path.parent


# ---------------------------------------------------------------------------- configuration
def test_config_validation_and_round_trip(pki: ClusterPki) -> None:
    base = {"DTQ_DESIGN": "mono", "DTQ_ROLE": "node", "DTQ_NAME": "n1", "DTQ_PEERS": "n1=127.0.0.1:1"}
    tls = {"DTQ_TLS_CERT": str(pki.nodes["n1"].cert), "DTQ_TLS_KEY": str(pki.nodes["n1"].key)}
    cases = {
        "DTQ_TLS_KEY is not": {"DTQ_TLS_CERT": "/c.pem"},
        "DTQ_TLS_CERT is not": {"DTQ_TLS_KEY": "/k.pem"},
        "DTQ_TLS_CA is required": tls,
        "serve plaintext": {"DTQ_TLS_CA": "/ca.pem"},
        "bearer tokens need TLS": {"DTQ_INTERNAL_TOKEN": INTERNAL},
        "DTQ_INTERNAL_TOKEN is required": {**tls, "DTQ_TLS_CA": str(pki.ca), "DTQ_CLIENT_TOKENS": CLIENT},
        "token #2 must be": {"DTQ_CLIENT_TOKENS": f"{CLIENT},short"},
        "given twice": {
            **tls,
            "DTQ_TLS_CA": str(pki.ca),
            "DTQ_CLIENT_TOKENS": INTERNAL,
            "DTQ_INTERNAL_TOKEN": INTERNAL,
        },
        "the worker name must match": {"DTQ_WORKER_TOKENS": f"Bad-Name:{WORKER}"},
        "the worker name 'w' is given twice": {"DTQ_WORKER_TOKENS": f"w:{WORKER},w:{EVIL}"},
        "is a node's name": {
            **tls,
            "DTQ_TLS_CA": str(pki.ca),
            "DTQ_WORKER_TOKENS": f"n1:{WORKER}",
            "DTQ_INTERNAL_TOKEN": INTERNAL,
        },
    }
    for expected, extra in cases.items():
        with pytest.raises(InvalidArgument) as caught:
            load_config({**base, **extra})
        assert expected in caught.value.message
        assert CLIENT not in caught.value.message and INTERNAL not in caught.value.message

    env = {
        **base,
        **tls,
        "DTQ_TLS_CA": str(pki.ca),
        "DTQ_CLIENT_TOKENS": f"{CLIENT},{new_token()}",
        "DTQ_WORKER_TOKENS": f"{WORKER},ext:{EVIL}",
        "DTQ_INTERNAL_TOKEN": INTERNAL,
    }
    config = load_config(env)
    assert config.security.tls and config.security.auth
    assert load_config(config_to_env(config)) == config
    # a bare worker token's identity is derived from it; a named one's is its name
    assert split_worker_token(f"ext:{EVIL}") == ("ext", EVIL)
    name, token = split_worker_token(WORKER)
    assert token == WORKER and config.security.worker_name == name and len(name) == 13
    assert worker_channel_security(config.security).token == WORKER
    for secret in (CLIENT, WORKER, INTERNAL):
        assert secret not in repr(config)  # never logged through the config
    insecure = load_config(base)
    assert not insecure.security.tls and not insecure.security.auth
    security_vars = {"DTQ_TLS_CERT", "DTQ_TLS_KEY", "DTQ_TLS_CA", "DTQ_CLIENT_TOKENS", "DTQ_WORKER_TOKENS"}
    assert security_vars <= set(config_to_env(config))
    assert not (security_vars | {"DTQ_INTERNAL_TOKEN"}) & set(config_to_env(insecure))


def test_a_token_without_tls_is_refused_by_the_client() -> None:
    with pytest.raises(ValueError, match="needs TLS"):
        DtqClient("127.0.0.1:1", token=CLIENT)


async def test_unreadable_certificate_fails_start_with_invalid_argument(
    pki: ClusterPki, tmp_path: Path
) -> None:
    c = SecureCluster("mono", tmp_path, pki)
    config = c.config("n1")
    config = replace(config, security=replace(config.security, tls_cert=tmp_path / "missing.pem"))
    metrics = NodeMetrics("n1", "node", "mono")
    with pytest.raises(InvalidArgument, match="DTQ_TLS_CERT: cannot read"):
        await start_role(config, MonoNode(config, metrics), metrics)


def test_docker_healthcheck_over_tls(secure_health_node: tuple[str, ClusterPki]) -> None:
    """docker/healthcheck.py dials TLS with DTQ_TLS_CA when the node has TLS (exit 0: SERVING)."""
    address, pki = secure_health_node
    script = Path(__file__).resolve().parents[2] / "docker" / "healthcheck.py"
    env = {**os.environ, "DTQ_LISTEN": f"0.0.0.0:{address.rsplit(':', 1)[1]}"}
    secure_env = {**env, "DTQ_TLS_CERT": str(pki.nodes["n1"].cert), "DTQ_TLS_CA": str(pki.ca)}
    ok = subprocess.run(
        [sys.executable, str(script)], env=secure_env, check=False, capture_output=True, timeout=30
    )
    assert ok.returncode == 0, ok.stderr
    plaintext = subprocess.run(
        [sys.executable, str(script)], env=env, check=False, capture_output=True, timeout=30
    )
    assert plaintext.returncode == 1
    assert b"UNAVAILABLE" in plaintext.stderr


@pytest.fixture
def secure_health_node(pki: ClusterPki, tmp_path: Path) -> Any:
    """A secure mono node served from a background loop thread, for blocking callers."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    c = SecureCluster("mono", tmp_path, pki)
    c.addresses = {"n1": c.addresses["n1"]}
    asyncio.run_coroutine_threadsafe(c.start(), loop).result(30)
    try:
        yield c.addresses["n1"], pki
    finally:
        asyncio.run_coroutine_threadsafe(c.close(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


# ---------------------------------------------------------------------------- real processes
@pytest.mark.slow
@pytest.mark.parametrize("design", ["micro", "mono"])
async def test_secure_six_process_cluster_runs_jobs(design: str, tmp_path: Path) -> None:
    directory = tmp_path / design
    overrides = {"DTQ_HEARTBEAT_INTERVAL": "0.3", "DTQ_DRAIN_TIMEOUT": "2.0"}
    info = await asyncio.to_thread(cluster.up, design, directory, 6, "sqlite", overrides, 60.0, True)
    try:
        assert stat.S_IMODE((directory / cluster.CLUSTER_FILE).stat().st_mode) == 0o600
        loaded = cluster.load(directory)
        assert loaded.client_token == info.client_token and Path(loaded.tls_ca).is_file()
        # issue 26: clients get a file with only client credentials, not every node's internal token
        client_file = directory / cluster.CLIENT_FILE
        assert stat.S_IMODE(client_file.stat().st_mode) == 0o600
        assert set(json.loads(client_file.read_text())) == {"clients", "ca_pem", "client_token"}
        internal = loaded.nodes[0].env["DTQ_INTERNAL_TOKEN"]
        assert internal not in client_file.read_text() and info.worker_token not in client_file.read_text()
        client_info = cluster.load_client(directory)
        assert client_info.clients == info.clients and client_info.token == info.client_token
        async with DtqClient(info.clients, timeout=10.0, **client_info.security()) as client:
            ids = [await client.submit("sleep", json.dumps({"seconds": 0.05})) for _ in range(6)]
            ids.append(await client.submit("echo", b"secure " + design.encode()))
            jobs = await asyncio.gather(*(client.wait(j, timeout=30) for j in ids))
            assert [JobState(j.state) for j in jobs] == [JobState.SUCCEEDED] * len(ids)
            assert (await client.result(ids[-1])).response.output == b"secure " + design.encode()
        # the same cluster refuses a client without the token
        async with DtqClient(
            info.clients, timeout=5.0, root_certificates=Path(info.tls_ca).read_bytes()
        ) as c:
            with pytest.raises(Exception) as caught:
                await c.status(ids[0])
            assert grpc_code(caught.value) is grpc.StatusCode.UNAUTHENTICATED
        # and the CLI finds the token and CA through --dir
        cli = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "realsys", "status", "--dir", str(directory), ids[-1]],
            capture_output=True,
            timeout=30,
        )
        assert cli.returncode == 0, cli.stderr
        assert json.loads(cli.stdout)["state"] == "SUCCEEDED"
        # issue 26: data at rest and logs are the owner's only
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700
        databases = list(directory.rglob("*.sqlite3*"))
        assert databases
        for path in [*directory.glob("*.log"), *databases]:
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        for node in loaded.nodes:
            assert stat.S_IMODE(Path(node.env["DTQ_DATA_DIR"]).stat().st_mode) == 0o700
    finally:
        await asyncio.to_thread(cluster.down, directory, 5.0)
