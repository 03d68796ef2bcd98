"""Links to the other nodes: one long-lived grpc.aio channel per peer, and the hop rules.

A hop's deadline is min(rpc_timeout, the caller's remaining time) (plus the long-poll wait for
forwarded long-polls), and a request forwarded to an owner carries ("dtq-forwarded", "1") so it is
forwarded at most once (model.ids.route). With auth on, only the internal token may send that
metadata (realsys/security.py); in plaintext anyone may, and a forged mark only makes routing refuse
(UNAVAILABLE) or, for a submit with a request id, go to the id's home node anyway.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import grpc

from dtq.v1 import client_pb2_grpc, internal_pb2_grpc, worker_pb2_grpc
from model.errors import Unavailable
from model.ids import request_homes
from realsys.config import RECONNECT_OPTIONS, grpc_options
from realsys.security import FORWARDED_KEY, ChannelSecurity, open_aio_channel

Context = grpc.aio.ServicerContext[Any, Any]

# A peer that is down (or not up yet: nodes start in any order) is retried within about a second
# (RECONNECT_OPTIONS). A channel-local subchannel pool keeps that state out of other channels to the
# same address in this process. Keepalive pings every PEER_KEEPALIVE_MS: a peer that stops answering
# them (SIGSTOP, a hung host) has its connection closed after PEER_KEEPALIVE_TIMEOUT_MS, so its calls
# fail instead of hanging until their deadlines, and `suspected` names it (idempotent submits then go
# to the fallback home).
PEER_KEEPALIVE_MS = 1000
PEER_KEEPALIVE_TIMEOUT_MS = 1500
_PEER_OPTIONS: list[tuple[str, int]] = [
    ("grpc.use_local_subchannel_pool", 1),
    *RECONNECT_OPTIONS,
    ("grpc.keepalive_time_ms", PEER_KEEPALIVE_MS),
    ("grpc.keepalive_timeout_ms", PEER_KEEPALIVE_TIMEOUT_MS),
    # gRPC 1.85's transport times a ping out after this (default 60 s), whatever keepalive_timeout says
    ("grpc.http2.ping_timeout_ms", PEER_KEEPALIVE_TIMEOUT_MS),
]
_CONNECT_BUDGET = 1.5  # longer than one reconnect backoff (max 1 s): a peer that is up is found
FORWARDED: tuple[tuple[str, str], ...] = ((FORWARDED_KEY, "1"),)


def is_forwarded(context: Context) -> bool:
    return any(k == FORWARDED_KEY and v == "1" for k, v in context.invocation_metadata() or ())


def request_home(request_id: str, nodes: list[str]) -> str:
    """The primary home of an idempotency key (model.ids.request_homes; the fallback is the other)."""
    return request_homes(request_id, nodes)[0]


def remaining(context: Context | None) -> float | None:
    """Seconds left before the caller's deadline; None when the caller set none."""
    if context is None:
        return None
    left: float | None = context.time_remaining()
    return left


def cap_wait(wait: float, left: float | None) -> float:
    """A long-poll's wait, capped below the call's remaining deadline so the answer gets back in time."""
    if left is None:
        return max(0.0, wait)
    margin = min(0.1, 0.1 * left)
    return max(0.0, min(wait, left - margin))


class PeerLinks:
    def __init__(
        self,
        self_node: str,
        peers: Mapping[str, str],
        rpc_timeout: float,
        security: ChannelSecurity | None = None,  # TLS and the internal token, when the cluster has them
    ) -> None:
        self.self_node = self_node
        self.security = security
        self.addresses = {name: addr for name, addr in peers.items() if name != self_node}
        self.all_nodes = sorted(peers)  # every node, this one included: the same list on every node
        self.rpc_timeout = rpc_timeout
        self._channels: dict[str, grpc.aio.Channel] = {}
        # generated stubs are untyped (no *_grpc.pyi): calls through them return Any
        self._task_queue: dict[str, Any] = {}
        self._workers: dict[str, Any] = {}
        self._peer: dict[str, Any] = {}
        self._seen_up: set[str] = set()  # peers whose channel has been READY at least once
        self._watchers: list[asyncio.Task[None]] = []

    @property
    def names(self) -> list[str]:
        return sorted(self.addresses)

    @property
    def seen_up(self) -> frozenset[str]:
        """Peers this node has been connected to at least once."""
        return frozenset(self._seen_up)

    def open(self) -> None:
        """Creates the channels and starts connecting them (a peer that is not up yet is fine)."""
        for name, address in self.addresses.items():
            channel = open_aio_channel(address, merge_options(grpc_options(), _PEER_OPTIONS), self.security)
            self._channels[name] = channel
            self._task_queue[name] = _stub(client_pb2_grpc.TaskQueueStub, channel)
            self._workers[name] = _stub(worker_pb2_grpc.WorkersStub, channel)
            self._peer[name] = _stub(internal_pb2_grpc.PeerStub, channel)
            self._watchers.append(asyncio.create_task(self._watch(name, channel), name=f"peer-{name}"))

    async def _watch(self, name: str, channel: grpc.aio.Channel) -> None:
        """Keeps the channel connecting (a cheap probe) and notes when the peer has been up."""
        state = channel.get_state(try_to_connect=True)
        while state is not grpc.ChannelConnectivity.SHUTDOWN:
            if state is grpc.ChannelConnectivity.READY:
                self._seen_up.add(name)
            await channel.wait_for_state_change(state)
            state = channel.get_state(try_to_connect=True)

    async def close(self) -> None:
        watchers, self._watchers = self._watchers, []
        for task in watchers:
            task.cancel()
        await asyncio.gather(*watchers, return_exceptions=True)
        channels, self._channels = self._channels, {}
        for channel in channels.values():
            await channel.close(None)
        self._task_queue.clear()
        self._workers.clear()
        self._peer.clear()

    def timeout(self, context: Context | None = None, wait: float = 0.0) -> float:
        """The deadline of a hop made on behalf of `context` (None: the node's own call)."""
        budget = self.rpc_timeout + max(0.0, wait)
        left = remaining(context)
        return budget if left is None else max(0.0, min(budget, left))

    def suspected(self, node: str) -> bool:
        """A peer this node has been connected to and is not connected to now (killed, stopped past
        its keepalive, restarting, cut off). A peer never seen up is not suspected: at start-up nodes
        come up in any order, and `ready` waits for them a little."""
        if node not in self._seen_up:
            return False
        channel = self._channels.get(node)
        return channel is None or channel.get_state() is not grpc.ChannelConnectivity.READY

    async def ready(self, node: str, context: Context | None = None) -> None:
        """Waits for the channel to a peer that has never connected yet; fails fast for one that was
        connected and is now failing.

        A channel that failed to connect fails calls at once until its reconnect backoff ends, so
        when nodes start in any order a peer that comes up a moment after this node would otherwise
        look down for up to a second. A peer seen up before and failing now is reported UNAVAILABLE
        at once (clients retry reads against another node).
        """
        channel = self._channels.get(node)
        if channel is None:
            self._lookup(self._task_queue, node)  # raises the right Unavailable
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + min(self.timeout(context), _CONNECT_BUDGET)
        state = channel.get_state(try_to_connect=True)
        while state is not grpc.ChannelConnectivity.READY:
            if state is grpc.ChannelConnectivity.SHUTDOWN or (
                node in self._seen_up and state is grpc.ChannelConnectivity.TRANSIENT_FAILURE
            ):
                raise Unavailable(f"node {node} is unreachable from {self.self_node}")
            try:
                await asyncio.wait_for(channel.wait_for_state_change(state), deadline - loop.time())
            except TimeoutError:
                raise Unavailable(f"node {node} is unreachable from {self.self_node}") from None
            state = channel.get_state(try_to_connect=True)
        self._seen_up.add(node)

    async def task_queue(self, node: str, context: Context | None = None) -> Any:
        await self.ready(node, context)
        return self._lookup(self._task_queue, node)

    async def workers(self, node: str, context: Context | None = None) -> Any:
        await self.ready(node, context)
        return self._lookup(self._workers, node)

    async def peer(self, node: str, context: Context | None = None) -> Any:
        await self.ready(node, context)
        return self._lookup(self._peer, node)

    def peer_nowait(self, node: str) -> Any:
        """For polls where a peer that is not connected right now simply counts as empty."""
        return self._lookup(self._peer, node)

    def _lookup(self, stubs: dict[str, Any], node: str) -> Any:
        stub = stubs.get(node)
        if stub is None:
            if node in self.addresses:
                raise Unavailable(f"node {self.self_node} has no open channel to {node}")
            raise Unavailable(f"node {node} is not a known peer of {self.self_node}")
        return stub


def merge_options(base: list[tuple[str, int]], override: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """`base` with the keys of `override` replaced (gRPC does not promise which of two equal keys wins)."""
    keys = {k for k, _ in override}
    return [*((k, v) for k, v in base if k not in keys), *override]


def _stub(factory: Any, channel: grpc.aio.Channel) -> Any:
    return factory(channel)
