"""The compose backend: a fresh Compose project of the dtq image per fault run.

The compose backend maps the faults onto the engine (`compose_fault_commands`): kill = `docker kill
--signal KILL` then `docker start`; stop = `docker pause` / `docker unpause` (the cgroup freezer: every
process of the container, not just its PID 1); restart = `docker stop` (SIGTERM, the node drains) then
`docker start` (with `--downtime 0` that is `docker restart`); partition = `docker network disconnect`
then `connect` with the container's aliases (its service name), so the others find it again by DNS.
The load generator and the auditor run on the host and reach the containers only through their
ports published on 127.0.0.1 (every role of Design A, every node of Design B; fixed for the run, so
a restarted container is found again at the same address).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from lab.faults.backends import FaultCluster
from lab.faults.inject import Injection, RealFault
from model.errors import InvalidArgument
from realsys import cluster


class Runner(Protocol):
    """Runs one command to its end and returns its standard output; raises RuntimeError when it fails."""

    def __call__(
        self, args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 60.0
    ) -> str: ...


def run_command(args: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float = 60.0) -> str:
    done = subprocess.run(
        list(args),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env=dict(env) if env else None,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-2000:]}")
    return done.stdout


@dataclass(frozen=True, slots=True)
class Container:
    """One container of the Compose project, as `docker inspect` shows it after `up`."""

    service: str
    id: str
    network: str  # the project's network (Compose's `<project>_default`)
    aliases: tuple[str, ...]  # its names on that network (the service name among them)


_STOP_TIMEOUT = 30  # docker stop: SIGTERM, then SIGKILL after this many seconds (the node drains 10 s)
_DOCKER_TIMEOUT = 60.0  # one docker command
_COMPOSE_TIMEOUT = 300.0  # compose up/down of six containers (seconds each on a copy-based storage driver)
_READY_TIMEOUT = 120.0  # a container's gRPC health answering SERVING after up/start


def compose_fault_commands(fault: RealFault, c: Container) -> tuple[list[list[str]], list[list[str]]]:
    """The docker commands that apply `fault` to container `c`, and those that end it (after the
    fault's downtime; the injector then waits for the target's health after a kill or restart)."""
    if fault.action == "kill":
        # docker wait: returns (printing the exit code) once the container is gone
        return [["docker", "kill", "--signal", "KILL", c.id], ["docker", "wait", c.id]], [
            ["docker", "start", c.id]
        ]
    if fault.action == "stop":
        return [["docker", "pause", c.id]], [["docker", "unpause", c.id]]
    if fault.action == "restart":
        # returns once the node has drained and exited; start after the downtime (0: `docker restart`)
        return [["docker", "stop", "--time", str(_STOP_TIMEOUT), c.id]], [["docker", "start", c.id]]
    if fault.action == "partition":
        aliases = [a for alias in c.aliases for a in ("--alias", alias)]
        return (
            [["docker", "network", "disconnect", c.network, c.id]],
            [["docker", "network", "connect", *aliases, c.network, c.id]],
        )
    raise InvalidArgument(f"unknown fault {fault.action!r}")


@dataclass(frozen=True, slots=True)
class ComposeCluster:
    design: str
    project: str
    clients: list[str]
    addresses: dict[str, str]  # node name -> its published 127.0.0.1:port
    containers: dict[str, Container]
    runner: Runner
    ready: Callable[[str, float], None]
    info: dict[str, Any] = field(default_factory=dict)

    def client_security(self) -> dict[str, Any]:
        return {}  # the Compose files run plaintext

    async def inject(self, fault: RealFault, now: Callable[[], float]) -> Injection:
        c = self.containers[fault.target]
        apply, end = compose_fault_commands(fault, c)
        injected = now()
        outputs = [
            await asyncio.to_thread(self.runner, command, timeout=_DOCKER_TIMEOUT) for command in apply
        ]
        if fault.action == "kill" and outputs[-1].strip() != "137":  # docker wait: 128 + SIGKILL
            raise RuntimeError(
                f"{fault.target} exited with {outputs[-1].strip()!r} after docker kill, not 137"
            )
        try:
            await asyncio.sleep(fault.downtime)
        finally:  # never leave a paused or disconnected container behind
            began = time.monotonic()
            for command in end:
                await asyncio.to_thread(self.runner, command, timeout=_DOCKER_TIMEOUT)
        restart_s = 0.0
        if fault.action in ("kill", "restart"):
            await asyncio.to_thread(self.ready, self.addresses[fault.target], _READY_TIMEOUT)
            restart_s = time.monotonic() - began
        return Injection(fault, injected, now(), restart_s)

    def describe(self) -> dict[str, Any]:
        return {"backend": "compose", "project": self.project, **self.info}


def compose_env(
    design: str, image: str, store: str, slots: int, settings: Mapping[str, str], ports: Mapping[str, int]
) -> dict[str, str]:
    """The variables docker/compose.<design>.yml (and compose.micro.ports.yml) read, for one run."""
    per_node = cluster.slots_per_node(design, slots)
    env = {
        "DTQ_IMAGE": image,
        "DTQ_STORE": store,
        # the engine's own probe imports grpc in a new process (~0.3 s of CPU) per container and
        # interval: kept out of the measurement; readiness is asked over gRPC from the host instead
        "DTQ_HEALTH_INTERVAL": "1h",
        **settings,
    }
    if design == "micro":
        env["DTQ_WORKER_SLOTS"] = str(per_node["worker"])
    else:
        env["DTQ_NODE_SLOTS"] = str(per_node["n1"])
    for name, port in ports.items():
        env[f"DTQ_{name.upper()}_PORT"] = str(port)
    return env


def compose_files(root: Path, design: str) -> list[Path]:
    files = [root / "docker" / f"compose.{design}.yml"]
    if design == "micro":  # publishes the five internal roles too, for the host's health checks
        files.append(root / "docker" / "compose.micro.ports.yml")
    return files


def compose_command(runner: Runner) -> list[str]:
    """Compose v2 (`docker compose`) when the docker CLI has it, else v1 (`docker-compose`)."""
    try:
        runner(["docker", "compose", "version"], timeout=30.0)
    except (RuntimeError, OSError):
        if shutil.which("docker-compose") is None:
            raise RuntimeError("neither `docker compose` nor `docker-compose` is installed") from None
        return ["docker-compose"]
    return ["docker", "compose"]


@dataclass(frozen=True, slots=True)
class ComposeBackend:
    """A fresh Compose project per run, from an existing image (`--image`; `bash docker/test.sh
    image` builds one), on a Docker engine that answers. Project `--project` (default
    dtq-faults-<design>), taken down with its volumes before and after each run."""

    image: str = "dtq:latest"
    project: str = ""
    root: Path = Path(__file__).resolve().parents[2]
    runner: Runner = run_command
    ready: Callable[[str, float], None] = cluster.wait_healthy
    compose: tuple[str, ...] = ()  # the compose command; empty: found by compose_command
    name: str = "compose"
    run_prefix: str = "compose-faults"

    def _inspect(self, project: str, names: Sequence[str]) -> dict[str, Container]:
        ids = self.runner(
            ["docker", "ps", "--all", "--quiet", "--filter", f"label=com.docker.compose.project={project}"]
        ).split()
        found = {}
        for entry in json.loads(self.runner(["docker", "inspect", *ids])) if ids else []:
            service = entry["Config"]["Labels"].get("com.docker.compose.service", "")
            networks = entry["NetworkSettings"]["Networks"]
            network = next(iter(networks))  # the Compose files put every container on one network
            aliases = tuple(networks[network].get("Aliases") or (service,))
            found[service] = Container(service, entry["Id"], network, aliases)
        missing = sorted(set(names) - set(found))
        if missing:
            raise RuntimeError(f"Compose project {project}: no container for {missing}")
        return {name: found[name] for name in names}

    @contextlib.asynccontextmanager
    async def open(
        self, design: str, fault: RealFault, store: str, slots: int, settings: Mapping[str, str]
    ) -> AsyncIterator[FaultCluster]:
        names = cluster.MICRO_ROLES if design == "micro" else cluster.MONO_NODES
        project = self.project or f"dtq-faults-{design}"
        run = self.runner
        compose = list(self.compose) or await asyncio.to_thread(compose_command, run)
        try:
            image_id = run(["docker", "image", "inspect", "--format", "{{.Id}}", self.image]).strip()
        except RuntimeError:
            raise RuntimeError(
                f"no image {self.image}: build one first (`bash docker/test.sh image` builds dtq:test)"
            ) from None
        engine = run(["docker", "version", "--format", "{{.Server.Version}}"]).strip()
        ports = dict(zip(names, cluster.free_ports(len(names)), strict=True))
        env = {**os.environ, **compose_env(design, self.image, store, slots, settings, ports)}
        base = [
            *compose,
            "-p",
            project,
            *(a for f in compose_files(self.root, design) for a in ("-f", str(f))),
        ]
        down = [*base, "down", "--volumes", "--remove-orphans", "--timeout", "20"]
        await asyncio.to_thread(functools.partial(run, down, env=env, timeout=_COMPOSE_TIMEOUT))  # leftovers
        containers: dict[str, Container] = {}
        try:
            await asyncio.to_thread(
                functools.partial(
                    run, [*base, "up", "--detach", "--no-build"], env=env, timeout=_COMPOSE_TIMEOUT
                )
            )
            containers = await asyncio.to_thread(self._inspect, project, names)
            addresses = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
            await asyncio.gather(
                *(asyncio.to_thread(self.ready, a, _READY_TIMEOUT) for a in addresses.values())
            )
            clients = [addresses["gateway"]] if design == "micro" else [addresses[n] for n in names]
            info = {"image": self.image, "image_id": image_id, "engine": engine, "compose": " ".join(compose)}
            yield ComposeCluster(design, project, clients, addresses, containers, run, self.ready, info)
        finally:
            if fault.action == "stop" and fault.target in containers:  # an interrupted pause
                with contextlib.suppress(RuntimeError):  # not paused: the usual case
                    run(["docker", "unpause", containers[fault.target].id])
            await asyncio.to_thread(functools.partial(run, down, env=env, timeout=_COMPOSE_TIMEOUT))
