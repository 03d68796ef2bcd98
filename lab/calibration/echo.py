"""The bare gRPC echo: a grpc.aio health server in a subprocess (as a node runs: uvloop), measured for
the client's CPU per call, the one-way hop, and how waking a sleeping server's loop costs more.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from lab.calibration.measure import (
    BUSY_IN_FLIGHT,
    IDLE_GAPS,
    IDLE_SWEEP_SECONDS,
    idle_rates,
    measure_busy,
    measure_calls,
)

_ECHO_SERVER = """
import asyncio, sys
import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
async def main():
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()
try:
    import uvloop  # as every dtq node runs (realsys/server.py)
    loop_factory = uvloop.new_event_loop
except ImportError:
    loop_factory = None
with asyncio.Runner(loop_factory=loop_factory) as runner:
    runner.run(main())
"""
EchoCall = Callable[[int], Awaitable[object]]


@contextlib.asynccontextmanager
async def echo_server() -> AsyncIterator[tuple[EchoCall, int]]:
    """A bare grpc.aio health server in a subprocess (as a node runs: uvloop): (one Check call, its pid)."""
    proc = subprocess.Popen([sys.executable, "-c", _ECHO_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            request = health_pb2.HealthCheckRequest(service="")

            async def call(_: int) -> object:
                return await stub.Check(request, timeout=5.0)

            yield call, proc.pid
    finally:
        proc.terminate()
        proc.wait(10)


async def measure_echo(count: int) -> dict[str, list[float]]:
    """A bare grpc.aio health Check against a server subprocess: RTT, client CPU, server CPU."""
    async with echo_server() as (call, pid):
        await measure_calls(call, {}, max(count // 5, 5))  # warm-up
        idle = await idle_rates({"server": pid}, 0.2)
        out = await measure_calls(call, {"server": pid}, count, idle)
        busy = await measure_busy(call, {"server": pid}, count, BUSY_IN_FLIGHT)
        out["busy_server"], out["busy_client"] = busy["server"], busy["client"]
        # gRPC's own threads per call, beside the loops: the process's CPU less its main thread's
        out["thread_server"] = [a - b for a, b in zip(busy["server"], busy["server_loop"], strict=True)]
        out["thread_client"] = [a - b for a, b in zip(busy["client"], busy["client_loop"], strict=True)]
        for gap in IDLE_GAPS:  # the same call after the server slept `gap` seconds
            n = max(5, min(count // 5, int(IDLE_SWEEP_SECONDS / len(IDLE_GAPS) / gap)))
            slept = await measure_calls(call, {"server": pid}, n, idle, gap=gap)
            out[f"idle_{gap:g}_server"], out[f"idle_{gap:g}_client"] = slept["server"], slept["client"]
    out["network"] = [
        max((r - c - s) / 2, 0.0) for r, c, s in zip(out["rtt"], out["client"], out["server"], strict=True)
    ]
    return out
