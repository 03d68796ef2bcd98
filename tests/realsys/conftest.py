"""Payloads, core configs and cluster start/stop helpers shared by the real-system tests."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Self

import grpc
import pytest

from model.config import CoreConfig
from model.errors import Unavailable
from realsys.client import DtqClient
from realsys.server import RunningRole

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
