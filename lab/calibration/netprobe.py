"""The cost of a hop between hosts, for the simulator's `host_hop`: `python -m lab.calibration.netprobe`.

The multi-host set-up of docker/swarm-test.sh makes its hosts from network namespaces joined by veth
pairs to a bridge. This probe builds the same path (two namespaces, each with a veth pair into one
bridge) and times a bare gRPC echo (a grpc.aio health server, as calibrate.py's; one call in flight,
back to back) from the second namespace to the first across it, and within the first namespace over
loopback, interleaved in rounds so that a host whose speed drifts moves both alike. The extra one-way
latency of a hop between hosts is half the difference of the median round trips (the CPU on both ends
is the same call's in both cases). It does not include the overlay (VXLAN) a swarm's containers add on
top, nor any real network: on separate machines the hop is the network's own latency.

    flock /tmp/dtq-measure.lock .venv/bin/python -m lab.calibration.netprobe --out data/calibration/hosts.json

writes {"parameters": {"host_hop": {...}}, "measurements": {...}, "provenance": {...}}: the simulator
takes the hop with `--set host_hop.mean=...` (sim/params.py), and placement with `hosts` and
`procs_per_host`. Needs root and iproute2; the namespaces and the bridge are removed on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
import numpy as np
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from model.results.runs import provenance

SPACES = ("dtqp1", "dtqp2")
BRIDGE = "dtqpbr"
SUBNET = "10.78.1"  # namespace k at .k, the bridge at .254 (docker/swarm-test.sh's rig uses 10.78.0)
WARMUP_CALLS = 200


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@contextmanager
def namespaces() -> Iterator[dict[str, str]]:
    """Two namespaces on a bridge, as two swarm-test hosts: name -> its address."""
    addresses = {}
    try:
        _ip("link", "add", BRIDGE, "type", "bridge")
        _ip("addr", "add", f"{SUBNET}.254/24", "dev", BRIDGE)
        _ip("link", "set", BRIDGE, "up")
        for k, space in enumerate(SPACES, 1):
            _ip("netns", "add", space)
            _ip("link", "add", f"{space}h", "type", "veth", "peer", "name", f"{space}n")
            _ip("link", "set", f"{space}h", "master", BRIDGE, "up")
            _ip("link", "set", f"{space}n", "netns", space)
            _ip("-n", space, "addr", "add", f"{SUBNET}.{k}/24", "dev", f"{space}n")
            _ip("-n", space, "link", "set", f"{space}n", "up")
            _ip("-n", space, "link", "set", "lo", "up")
            addresses[space] = f"{SUBNET}.{k}"
        # bridged frames pass the root namespace's FORWARD chain when br_netfilter is on (a dockerd
        # turns it on and sets the policy to DROP): accept what stays on this bridge
        subprocess.run(
            ["iptables", "-I", "FORWARD", "1", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"], check=False
        )
        yield addresses
    finally:
        for space in SPACES:
            subprocess.run(["ip", "netns", "del", space], capture_output=True, check=False)
            subprocess.run(["ip", "link", "del", f"{space}h"], capture_output=True, check=False)
        subprocess.run(["ip", "link", "del", BRIDGE], capture_output=True, check=False)
        while (
            subprocess.run(
                ["iptables", "-D", "FORWARD", "-i", BRIDGE, "-o", BRIDGE, "-j", "ACCEPT"],
                capture_output=True,
                check=False,
            ).returncode
            == 0
        ):
            pass


# ---------------------------------------------------------------------------- the two ends
async def _serve() -> None:
    server = grpc.aio.server()
    servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]  # grpc stubs lack health.aio
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("0.0.0.0:0")
    await server.start()
    print(port, flush=True)
    await server.wait_for_termination()


async def _client(address: str, calls: int) -> list[float]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="")
        for _ in range(WARMUP_CALLS):
            await stub.Check(request, timeout=5.0)
        rtts = []
        for _ in range(calls):
            t0 = time.perf_counter()
            await stub.Check(request, timeout=5.0)
            rtts.append(time.perf_counter() - t0)
    return rtts


def _in(space: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", space, sys.executable, "-m", "lab.calibration.netprobe", *args]


def round_trips(space: str, address: str, calls: int) -> list[float]:
    done = subprocess.run(
        _in(space, "client", address, str(calls)), capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"the echo client in {space} failed: {done.stderr.strip()[-800:]}")
    return [float(x) for x in json.loads(done.stdout)]


# ---------------------------------------------------------------------------- the probe
def measure(calls: int, rounds: int) -> dict[str, Any]:
    with namespaces() as addresses:
        server_space, client_space = SPACES
        server = subprocess.Popen(_in(server_space, "serve"), stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None
            port = int(server.stdout.readline())
            loopback: list[list[float]] = []
            veth: list[list[float]] = []
            for _ in range(rounds):  # interleaved: a drifting host moves both alike
                loopback.append(round_trips(server_space, f"127.0.0.1:{port}", calls))
                veth.append(round_trips(client_space, f"{addresses[server_space]}:{port}", calls))
        finally:
            server.terminate()
            server.wait(10)
    lo_medians = [float(np.median(r)) for r in loopback]
    veth_medians = [float(np.median(r)) for r in veth]
    hops = [max((v - lo) / 2, 0.0) for v, lo in zip(veth_medians, lo_medians, strict=True)]

    def pct(samples: Sequence[list[float]]) -> dict[str, float]:
        pooled = np.concatenate([np.asarray(s) for s in samples]) * 1e6
        return {f"p{q}": round(float(np.percentile(pooled, q)), 1) for q in (5, 50, 95, 99)}

    return {
        "parameters": {"host_hop": {"kind": "constant", "mean": float(np.median(hops))}},
        "measurements": {
            "method": "gRPC health Check, one call in flight, back to back; client in namespace dtqp2 -> "
            "server in dtqp1 over veth + bridge + veth (veth), and client and server in dtqp1 over "
            "127.0.0.1 (loopback); interleaved rounds; host_hop = median over rounds of "
            "(median veth RTT - median loopback RTT) / 2, floored at 0",
            "calls_per_round": calls,
            "rounds": rounds,
            "loopback_rtt_us": pct(loopback),
            "veth_rtt_us": pct(veth),
            "round_medians_us": {
                "loopback": [round(x * 1e6, 1) for x in lo_medians],
                "veth": [round(x * 1e6, 1) for x in veth_medians],
                "host_hop": [round(x * 1e6, 2) for x in hops],
            },
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["serve"]:
        asyncio.run(_serve())
        return 0
    if args[:1] == ["client"]:
        print(json.dumps(asyncio.run(_client(args[1], int(args[2])))))
        return 0
    parser = argparse.ArgumentParser(
        prog="python -m lab.calibration.netprobe", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--calls", type=int, default=2000, help="round trips per round and path")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default="", help="write the result here (JSON); default: print it")
    parser.add_argument("--force", action="store_true", help="overwrite an existing --out")
    parsed = parser.parse_args(args)
    if parsed.calls < 1 or parsed.rounds < 1:
        print("lab.calibration.netprobe: --calls and --rounds must be >= 1", file=sys.stderr)
        return 2
    out = Path(parsed.out) if parsed.out else None
    if out is not None and out.exists() and not parsed.force:
        print(f"lab.calibration.netprobe: {out} exists (--force overwrites it)", file=sys.stderr)
        return 2
    result = measure(parsed.calls, parsed.rounds)
    result["provenance"] = provenance()
    result["measured_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    text = json.dumps(result, indent=1) + "\n"
    if out is None:
        print(text, end="")
    else:
        out.write_text(text)
        print(f"host_hop {result['parameters']['host_hop']['mean'] * 1e6:.1f} us one way; written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
