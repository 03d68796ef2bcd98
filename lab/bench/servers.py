"""The server processes the bench starts for itself: a bare grpc.aio echo server (`python -m
lab.bench.servers LISTEN`) and one Design B node with no worker slots.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from realsys import cluster
from realsys.config import grpc_options
from realsys.eventloop import loop_factory


async def _echo_serve(listen: str) -> None:
    """The bare RPC: a grpc.aio server (dtq's channel options, uvloop) whose one method returns its
    request bytes unparsed. No interceptor, health, or logging: what any gRPC service costs at least."""

    async def echo(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    server = grpc.aio.server(options=grpc_options())
    handler = grpc.method_handlers_generic_handler(
        "dtq.bench.Echo", {"Echo": grpc.unary_unary_rpc_method_handler(echo)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port(listen)
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


def _echo_main(listen: str) -> int:
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        runner.run(_echo_serve(listen))
    return 0


@dataclass
class Processes:
    """Every server process the bench started, stopped (only these) at the end."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()


def start_echo(procs: Processes) -> tuple[str, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab.bench.servers", "127.0.0.1:0"], stdout=subprocess.PIPE
    )
    procs.procs.append(proc)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.isdigit():
        raise RuntimeError(f"echo server did not start ({line!r})")
    return f"127.0.0.1:{int(line)}", proc.pid


def start_single_node(procs: Processes, directory: Path, store: str) -> tuple[str, int]:
    """One Design B node with no worker slots: a SubmitJob costs only the submit path."""
    (port,) = cluster.free_ports(1)
    address = f"127.0.0.1:{port}"
    env = {
        **os.environ,
        "DTQ_DESIGN": "mono",
        "DTQ_ROLE": "node",
        "DTQ_NAME": "n1",
        "DTQ_LISTEN": address,
        "DTQ_DATA_DIR": str(directory),
        "DTQ_STORE": store,
        "DTQ_SLOTS": "0",
        "DTQ_PEERS": f"n1={address}",
        "DTQ_METRICS_PORT": "-1",
    }
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "node.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "realsys", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    procs.procs.append(proc)
    cluster.wait_healthy(address, 30.0, proc.pid)
    return address, proc.pid


if __name__ == "__main__":
    sys.exit(_echo_main(sys.argv[1]))
