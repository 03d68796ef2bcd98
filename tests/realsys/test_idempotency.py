"""Design B's idempotent submits with a node down (realsys/mono/idempotency.py), and long-polls on a
draining node: in-process three-node clusters (test_mono's), and six-process clusters for kill -9 and
SIGSTOP. Every wait is bounded."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from dtq.v1 import client_pb2, client_pb2_grpc
from model.errors import Unavailable
from model.ids import owner_of, request_homes
from model.job import JobSpec
from realsys import cluster
from realsys.client import DtqClient
from tests.realsys.conftest import assert_unavailable, assert_wait_backs_off, sleep_payload
from tests.realsys.test_mono import NODES, Cluster, make_cluster

pytestmark = pytest.mark.timeout(120)


def keys_with(
    primary: str, fallback: str | None = None, count: int = 5, nodes: tuple[str, ...] = NODES
) -> list[str]:
    """`count` request ids whose homes are (primary, fallback), fallback any when None."""
    found = []
    for i in range(100_000):
        key = f"k-{primary}-{fallback}-{i}"
        p, f = request_homes(key, list(nodes))
        if p == primary and (fallback is None or f == fallback):
            found.append(key)
            if len(found) == count:
                return found
    raise AssertionError("no such keys")


@pytest.fixture
async def three(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with await make_cluster(tmp_path, "sqlite") as c:
        yield c


async def submit(client: DtqClient, key: str) -> tuple[str, bool, float]:
    started = time.monotonic()
    response = await client.submit_spec(JobSpec.make("echo", key.encode()), request_id=key)
    return response.job_id, response.deduplicated, time.monotonic() - started


async def test_concurrent_submits_of_one_key_on_every_node_make_one_job(three: Cluster) -> None:
    clients = [three.client(n) for n in NODES]
    for key in ["same-1", "same-2", *keys_with("n2", count=2)]:
        replies = await asyncio.gather(*(submit(clients[i % 3], key) for i in range(12)))
        assert len({job_id for job_id, _, _ in replies}) == 1, replies
        assert [dedup for _, dedup, _ in replies].count(False) == 1
        assert owner_of(replies[0][0]) == request_homes(key, list(NODES))[0]


async def test_a_stopped_primary_home_fails_over_and_its_return_makes_no_second_job(three: Cluster) -> None:
    keys = keys_with("n3", count=6)
    await three.stop("n3")
    client = three.client("n1", "n2")
    made = [await submit(client, k) for k in keys]
    assert all(not dedup for _, dedup, _ in made)
    assert all(
        owner_of(job_id) == request_homes(k, list(NODES))[1]
        for k, (job_id, _, _) in zip(keys, made, strict=True)
    )
    assert max(seconds for _, _, seconds in made) < 1.0, made
    assert sum(three.counter(n, "dtq_submit_failovers_total") for n in ("n1", "n2")) == len(keys)
    await three.start("n3")
    deadline = time.monotonic() + 5
    while any("n3" not in three.node(n).links.seen_up for n in ("n1", "n2")):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    for name in NODES:  # the primary is back: it finds each job at the fallback, wherever the retry lands
        again = [await submit(three.client(name), k) for k in keys]
        assert [j for j, _, _ in again] == [j for j, _, _ in made]
        assert all(dedup for _, dedup, _ in again)


async def test_a_retry_while_the_primary_is_down_finds_the_job_it_made(three: Cluster) -> None:
    keys = keys_with("n3", "n1", count=3)
    client = three.client("n2")
    made = [await submit(client, k) for k in keys]
    assert all(owner_of(job_id) == "n3" for job_id, _, _ in made)
    deadline = time.monotonic() + 5  # the records reach the fallback in the background
    while any(k not in three.node("n1").idempotent._replicas for k in keys):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.02)
    await three.stop("n3")
    again = [await submit(three.client("n2"), k) for k in keys]
    assert [j for j, _, _ in again] == [j for j, _, _ in made]
    assert all(dedup for _, dedup, _ in again)
    assert three.counter("n1", "dtq_submit_failovers_total") == 0


async def test_a_stopped_fallback_does_not_hold_up_the_primary(three: Cluster) -> None:
    keys = keys_with("n1", "n3", count=4)
    await three.stop("n3")
    made = [await submit(three.client("n2"), k) for k in keys]
    assert all(owner_of(job_id) == "n1" for job_id, _, _ in made)
    assert max(seconds for _, _, seconds in made) < 1.0


# ---------------------------------------------------------------------------- draining long-polls
async def test_a_draining_owner_answers_long_polls_unavailable_with_a_retry_after(three: Cluster) -> None:
    job_id = await three.client("n1").submit("sleep", sleep_payload(30))
    channel = grpc.aio.insecure_channel(three.addresses["n1"])
    relay = grpc.aio.insecure_channel(three.addresses["n2"])
    try:
        stub = client_pb2_grpc.TaskQueueStub(channel)
        relayed = client_pb2_grpc.TaskQueueStub(relay)
        request = client_pb2.WaitJobRequest(job_id=job_id)
        request.timeout.seconds = 20
        waiting = asyncio.ensure_future(stub.WaitJob(request, timeout=25))
        through = asyncio.ensure_future(relayed.WaitJob(request, timeout=25))
        await asyncio.sleep(0.3)
        started = time.monotonic()
        three.node("n1").core.start_draining()
        three.node("n1").task_queue.start_draining()
        await assert_unavailable((waiting, through), "1000")
        assert time.monotonic() - started < 2.0
    finally:
        await channel.close(None)
        await relay.close(None)


async def test_a_draining_relay_sends_callers_elsewhere(three: Cluster) -> None:
    job_id = await three.client("n1").submit("sleep", sleep_payload(30))
    channel = grpc.aio.insecure_channel(three.addresses["n2"])
    try:
        stub = client_pb2_grpc.TaskQueueStub(channel)
        request = client_pb2.WaitJobRequest(job_id=job_id)
        request.timeout.seconds = 20
        waiting = asyncio.ensure_future(stub.WaitJob(request, timeout=25))
        await asyncio.sleep(0.3)
        three.node("n2").core.start_draining()
        three.node("n2").task_queue.start_draining()
        # the long-poll n2 relayed to n1 is cut: UNAVAILABLE, go elsewhere at once
        await assert_unavailable([waiting], "0")
        with pytest.raises(grpc.aio.AioRpcError) as again:  # a new long-poll is refused as well
            await stub.WaitJob(request, timeout=25)
        assert again.value.code() is grpc.StatusCode.UNAVAILABLE
    finally:
        await channel.close(None)


async def test_wait_on_a_draining_owner_backs_off_instead_of_spinning(three: Cluster) -> None:
    job_id = await three.client("n1").submit("sleep", sleep_payload(30))
    three.node("n1").core.start_draining()
    three.node("n1").task_queue.start_draining()
    client = three.client(*NODES)

    def wait_calls() -> float:
        return sum(
            three.running[n].metrics.registry.get_sample_value(
                "dtq_rpc_total", {"method": "/dtq.v1.TaskQueue/WaitJob", "code": code}
            )
            or 0.0
            for n in NODES
            for code in ("OK", "UNAVAILABLE")
        )

    # relays count too (a call through n2 is two): a handful of calls in 3 s, not the thousands of a
    # client that re-polls at once
    await assert_wait_backs_off(client, job_id, wait_calls, most=12)


# ---------------------------------------------------------------------------- six processes
FAST = {"DTQ_DRAIN_TIMEOUT": "2.0", "DTQ_RPC_TIMEOUT": "5.0"}


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["SIGKILL", "SIGSTOP"])
def test_six_nodes_keep_idempotent_submits_available_with_one_node_down(fault: str, tmp_path: Path) -> None:
    info = cluster.up("mono", tmp_path / "b", store="sqlite", overrides=FAST, timeout=60)
    victim = "n3"
    nodes = [n.name for n in info.nodes]
    live = [n.address for n in info.nodes if n.name != victim]
    keys = keys_with(victim, count=12, nodes=tuple(nodes))  # every key's primary is the victim
    other = [f"other-{i}" for i in range(24)]  # keys of every home
    try:

        async def run() -> None:
            async with DtqClient(live, timeout=10.0) as client:
                # jobs made while all are up; one retry each finds them
                first = {k: await submit(client, k) for k in other[:12]}
                cluster.kill(info.directory, victim, getattr(signal, fault))
                await asyncio.sleep(0.2)
                during = {k: await submit(client, k) for k in [*keys, *other]}
                slowest = max(seconds for _, _, seconds in during.values())
                # SIGSTOP: the first submits wait for the peers' keepalive to cut the stopped node
                assert slowest < (4.0 if fault == "SIGSTOP" else 1.5), during
                for k in other[:12]:
                    assert during[k][0] == first[k][0], (k, during[k], first[k])
                if fault == "SIGSTOP":
                    cluster.kill(info.directory, victim, signal.SIGCONT)
                else:
                    cluster.start(info.directory, victim, timeout=60)
                await asyncio.sleep(1.5)  # the peers reconnect (backoff at most 1 s)
            async with DtqClient([n.address for n in info.nodes], timeout=10.0) as client:
                after = {k: await submit(client, k) for k in [*keys, *other] for _ in range(2)}
                for k in [*keys, *other]:
                    assert after[k][0] == during[k][0], (k, after[k], during[k])
                    assert after[k][1]
                listed = [j async for j in client.list_all(page_size=200)]
                per_key: dict[str, int] = {}
                for job in listed:
                    per_key[job.request_id] = per_key.get(job.request_id, 0) + 1
                assert all(n == 1 for n in per_key.values()), per_key
                assert set(per_key) == {*keys, *other}

        asyncio.run(run())
    finally:
        if fault == "SIGSTOP":
            cluster.kill(info.directory, victim, signal.SIGCONT)
        cluster.down(info.directory, grace=5)


async def test_a_partition_between_the_two_homes_is_where_the_guarantee_ends(
    three: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The documented limit (a): when a key's two homes cannot reach each other and each takes a
    submit of the key, each makes a job. Here n1 (primary) and n2 (fallback) are cut from each other
    (their peer links fail at once); n3 still reaches both."""
    (key,) = keys_with("n1", "n2", count=1)
    cut = {("n1", "n2"), ("n2", "n1")}
    for name in ("n1", "n2"):
        links = three.node(name).links
        original_ready = links.ready
        original_suspected = links.suspected

        async def ready(
            peer: str, context: object = None, *, _me: str = name, _orig: object = original_ready
        ) -> None:
            if (_me, peer) in cut:
                raise Unavailable(f"{peer} is cut off from {_me}")
            await _orig(peer, context)  # type: ignore[operator]

        def suspected(peer: str, *, _me: str = name, _orig: object = original_suspected) -> bool:
            return (_me, peer) in cut or _orig(peer)  # type: ignore[operator]

        monkeypatch.setattr(links, "ready", ready)
        monkeypatch.setattr(links, "suspected", suspected)
    on_primary = await submit(three.client("n1"), key)
    on_fallback = await submit(three.client("n2"), key)
    assert on_primary[0] != on_fallback[0]  # two jobs: the partition case the docstring names
    assert owner_of(on_primary[0]) == "n1" and owner_of(on_fallback[0]) == "n2"
    # a node that reaches both homes still routes the key to one job (the primary's)
    assert (await submit(three.client("n3"), key))[0] == on_primary[0]
