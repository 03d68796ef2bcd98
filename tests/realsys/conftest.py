"""Payloads, core configs and cluster start/stop helpers shared by the real-system tests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import grpc
import pytest

from model.config import CoreConfig
from model.errors import Unavailable
from realsys.client import DtqClient
from realsys.cluster import free_ports
from realsys.config import NodeConfig, SecurityConfig
from realsys.metrics import NodeMetrics
from realsys.micro.coordinator import CoordinatorRole
from realsys.micro.gateway import GatewayRole
from realsys.micro.job import JobRole
from realsys.micro.queue import QueueRole
from realsys.micro.result import ResultRole
from realsys.mono import MonoNode
from realsys.security import ClusterPki
from realsys.server import RunningRole, start_role
from realsys.status import RETRY_AFTER_KEY

# heartbeats, backoffs and payload caps short enough that failure paths finish in about a second
FAST: dict[str, Any] = {
    "heartbeat_interval": 0.2,
    "default_initial_backoff": 0.05,
    "default_max_backoff": 0.2,
    "max_payload_bytes": 4096,
}


def fast_core(**overrides: Any) -> CoreConfig:
    """A CoreConfig with FAST's short timings, and `overrides` on top."""
    return CoreConfig(**{**FAST, **overrides})


def sleep_payload(seconds: float) -> bytes:
    """The payload of the built-in `sleep` job type."""
    return json.dumps({"seconds": seconds}).encode()


class Closing:
    """A test cluster that an `async with` block closes at its end (await close())."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


async def stop_roles(running: Sequence[RunningRole], channels: Iterable[grpc.aio.Channel] = ()) -> None:
    """Closes the channels, then stops the roles in reverse start order (10 s each at most)."""
    for channel in channels:
        await channel.close(None)
    for role in reversed(running):
        await asyncio.wait_for(role.stop(), 10)


def serve_errors(env: Mapping[str, str]) -> list[str]:
    """`python -m realsys serve` with `env`, which must refuse to start (exit status 2): its stderr's
    non-blank lines."""
    out = subprocess.run(
        [sys.executable, "-m", "realsys", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2, out
    return [line for line in out.stderr.splitlines() if line.strip()]


async def assert_wait_backs_off(
    client: DtqClient, job_id: str, wait_calls: Callable[[], float], most: int
) -> None:
    """client.wait on a draining owner gives up with Unavailable within its 3 s timeout, having made
    between 1 and `most` WaitJob calls (`wait_calls` counts them): it waited the 1 s the owner asks
    for between tries instead of re-polling at once."""
    before = wait_calls()
    started = time.monotonic()
    with pytest.raises(Unavailable):
        await client.wait(job_id, timeout=3.0)
    assert time.monotonic() - started < 4.0
    assert 1 <= wait_calls() - before <= most, wait_calls() - before


async def assert_unavailable(calls: Iterable[Awaitable[Any]], retry_after: str) -> None:
    """Each call fails UNAVAILABLE with `retry_after` (milliseconds) in its retry-after trailer."""
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE
        assert dict(info.value.trailing_metadata() or ())[RETRY_AFTER_KEY] == retry_after


# Design A's roles in start order (callees first), without a worker: the tests that use them act as it
MICRO_ROLES: dict[str, Any] = {
    "result": ResultRole,
    "queue": QueueRole,
    "job": JobRole,
    "coordinator": CoordinatorRole,
    "gateway": GatewayRole,
}


async def start_roles(
    design: str,
    root: Path,
    names: Sequence[str],
    security: Callable[[str], SecurityConfig] | None = None,
    **settings: Any,
) -> tuple[list[RunningRole], dict[str, str]]:
    """Starts Design A's roles `names` (of MICRO_ROLES) or Design B's nodes `names`, in this process on
    loopback ports, one after another: each with its data in root/<name>, `security(name)` if given,
    and `settings` (NodeConfig fields). Returns the running roles and every name's address."""
    addresses = {n: f"127.0.0.1:{p}" for n, p in zip(names, free_ports(len(names)), strict=True)}
    running: list[RunningRole] = []
    for name in names:
        role = name if design == "micro" else "node"
        config = NodeConfig(
            **settings,
            design=design,  # type: ignore[arg-type]
            role=role,  # type: ignore[arg-type]
            name=name,
            listen=addresses[name],
            data_dir=root / name,
            **({"services": addresses} if design == "micro" else {"peers": addresses}),
            **({"security": security(name)} if security else {}),
        )
        metrics = NodeMetrics(name, role, design)
        node = MICRO_ROLES[name](config, metrics) if design == "micro" else MonoNode(config, metrics)
        running.append(await start_role(config, node, metrics))
    return running, addresses


def security_config(
    pki: ClusterPki, name: str, client: str, good: str, evil: str, internal: str
) -> SecurityConfig:
    """`name`'s TLS files from `pki`; the client token, the worker tokens of "good" and of "evil" (a
    worker-token holder that may act only as evil or evil-<suffix>), and the nodes' internal token."""
    return SecurityConfig(
        tls_cert=pki.nodes[name].cert,
        tls_key=pki.nodes[name].key,
        tls_ca=pki.ca,
        client_tokens=(client,),
        worker_tokens=(f"good:{good}", f"evil:{evil}"),
        internal_token=internal,
    )
