"""The faults the real injector applies, and how it applies them to local processes (the local
backend's mechanism; compose.py maps them onto a container engine):

- `kill`: SIGKILL of `target`, restarted on the same port and data after `--downtime` seconds.
  Design A: each role in turn (gateway, job, queue, coordinator, worker, result); Design B: a node.
- `stop`: SIGSTOP of `target` for `--pause` seconds, then SIGCONT (a "zombie": the simulator's
  `pause` fault, so its rows say `pause`). Default target: the worker (A), n1 (B).
- `restart`: SIGTERM (a graceful stop: the node drains), restarted `--downtime` seconds after it exited.
- `partition`: `target` runs in its own network namespace, reachable over a veth pair (every other
  node listens on the host end's address, the target on the namespace end's); the fault sets the
  namespace's end down for `--cut` seconds (the target's calls fail at once with "network
  unreachable"; calls to it time out: their packets vanish), then up again. Needs root and
  iproute2 (`ip netns`). Default target: the worker (A), n1 (B).
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from model.errors import InvalidArgument
from realsys import cluster

FAULTS = ("kill", "stop", "restart", "partition")
POLL = 0.05
_EXIT_WAIT = 30.0  # a SIGTERM'd node drains (DTQ_DRAIN_TIMEOUT, 10 s by default) before it exits


@dataclass(frozen=True, slots=True)
class RealFault:
    action: str  # one of FAULTS
    target: str  # a node name of the cluster (cluster.MICRO_ROLES or cluster.MONO_NODES)
    at: float  # seconds from the run start
    downtime: float  # kill/restart: seconds down before the restart; stop: the pause


@dataclass(frozen=True, slots=True)
class Injection:
    """What the injector did, in record time (seconds from the run start)."""

    fault: RealFault
    injected_at: float  # just before the signal was sent
    healed_at: float  # restart healthy again / SIGCONT sent
    restart_s: float  # kill/restart: how long cluster.start took until the node was healthy


@dataclass(frozen=True, slots=True)
class Namespace:
    """A network namespace joined to the host by a veth pair (partition faults)."""

    name: str
    host_if: str
    ns_if: str
    host_ip: str
    ns_ip: str


def _ip(*args: str, netns: str = "") -> None:
    command = ["ip", "netns", "exec", netns, "ip", *args] if netns else ["ip", *args]
    done = subprocess.run(command, capture_output=True, text=True, timeout=10, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")


def namespace_up() -> Namespace:
    """A fresh namespace and veth pair; the subnet and names are made unique by this process's id."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise RuntimeError("the partition fault needs root and iproute2 (ip netns)")
    k = 20 + os.getpid() % 200
    space = Namespace(f"dtqf{k}", f"dtqf{k}h", f"dtqf{k}n", f"10.77.{k}.1", f"10.77.{k}.2")
    namespace_down(space)  # left over from an interrupted run with the same pid
    _ip("netns", "add", space.name)
    try:
        _ip("link", "add", space.host_if, "type", "veth", "peer", "name", space.ns_if)
        _ip("link", "set", space.ns_if, "netns", space.name)
        _ip("addr", "add", f"{space.host_ip}/24", "dev", space.host_if)
        _ip("link", "set", space.host_if, "up")
        _ip("addr", "add", f"{space.ns_ip}/24", "dev", space.ns_if, netns=space.name)
        _ip("link", "set", space.ns_if, "up", netns=space.name)
        _ip("link", "set", "lo", "up", netns=space.name)
    except BaseException:
        namespace_down(space)
        raise
    return space


def namespace_down(space: Namespace) -> None:
    """Deletes the namespace (and with it the veth pair); no error when it is not there."""
    for command in (["ip", "netns", "del", space.name], ["ip", "link", "del", space.host_if]):
        subprocess.run(command, capture_output=True, timeout=10, check=False)


def cut(space: Namespace) -> None:
    _ip("link", "set", space.ns_if, "down", netns=space.name)


def heal(space: Namespace) -> None:
    _ip("link", "set", space.ns_if, "up", netns=space.name)


def default_targets(design: str, action: str) -> list[str]:
    if action in ("kill", "restart"):
        # Design A: every role; Design B: one node (they are identical)
        return ["gateway", "job", "queue", "coordinator", "worker", "result"] if design == "micro" else ["n1"]
    return ["worker"] if design == "micro" else ["n1"]


def plan_faults(
    design: str,
    actions: Sequence[str],
    targets: Sequence[str] | None,
    at: float,
    downtime: float,
    pause: float,
    cut: float = 4.0,
) -> list[RealFault]:
    """The runs, in order: for each action, each target (given, or the design's defaults). A target
    `ACTION:NAME` applies to that action only (`stop:worker,kill:job`); a plain NAME to every action
    that has no ACTION: target of its own."""
    names = cluster.MICRO_ROLES if design == "micro" else cluster.MONO_NODES
    scoped: dict[str, list[str]] = {}
    plain = []
    for entry in targets or ():
        action, sep, name = entry.partition(":")
        if sep:
            scoped.setdefault(action, []).append(name)
        else:
            plain.append(entry)
    if set(scoped) - set(actions):
        raise InvalidArgument(f"targets for faults not run: {sorted(set(scoped) - set(actions))}")
    out = []
    for action in actions:
        if action not in FAULTS:
            raise InvalidArgument(f"unknown fault {action!r}; known: {', '.join(FAULTS)}")
        chosen = scoped.get(action) or plain or default_targets(design, action)
        for target in chosen:
            if target not in names:
                raise InvalidArgument(f"target {target!r} is not a node of design {design}: {list(names)}")
            length = {"stop": pause, "partition": cut}.get(action, downtime)
            out.append(RealFault(action, target, at, length))
    if not (math.isfinite(at) and at > 0 and downtime >= 0 and pause > 0 and cut > 0):
        raise InvalidArgument("need --fault-at > 0, --downtime >= 0, --pause > 0 and --cut > 0")
    return out


def _wait_exit(directory: Path, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not any(row["alive"] for row in cluster.status(directory) if row["name"] == name):
            return
        time.sleep(POLL)
    raise TimeoutError(f"{name} did not exit within {timeout}s of SIGTERM")


async def inject_local(
    directory: Path, fault: RealFault, now: Callable[[], float], space: Namespace | None = None
) -> Injection:
    """Applies `fault` now; returns once the target is back (restarted and healthy, continued, or
    reachable again)."""
    if fault.action == "partition":
        if space is None:
            raise InvalidArgument("a partition needs the target's namespace")
        injected = now()
        await asyncio.to_thread(cut, space)
        try:
            await asyncio.sleep(fault.downtime)
        finally:
            await asyncio.to_thread(heal, space)
        return Injection(fault, injected, now(), 0.0)
    if fault.action == "stop":
        injected = now()
        cluster.kill(directory, fault.target, signal.SIGSTOP)
        try:
            await asyncio.sleep(fault.downtime)
        finally:  # never leave a stopped process behind
            cluster.kill(directory, fault.target, signal.SIGCONT)
        return Injection(fault, injected, now(), 0.0)
    injected = now()
    if fault.action == "kill":
        # kill() waits (bounded) until the process is gone: off the event loop
        await asyncio.to_thread(cluster.kill, directory, fault.target, signal.SIGKILL)
    else:  # restart: a graceful stop, then the same restart
        cluster.kill(directory, fault.target, signal.SIGTERM)
        await asyncio.to_thread(_wait_exit, directory, fault.target, _EXIT_WAIT)
    await asyncio.sleep(fault.downtime)
    began = time.monotonic()
    await asyncio.to_thread(cluster.start, directory, fault.target, 60.0)
    return Injection(fault, injected, now(), time.monotonic() - began)
