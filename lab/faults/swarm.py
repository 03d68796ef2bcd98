"""Fault runs on a Docker Swarm stack: `python -m lab.faults.swarm --design D --hosts ... --faults ...`.

A backend of lab/faults/'s runner (`run_fault(..., backend=SwarmBackend(...))`): each run deploys a
fresh stack of the design (docker/stack.<design>.yml, rendered by realsys.deploy for `--nodes` nodes over
the given hosts), drives it with the project's load generator from this machine through the ports the
services publish on their hosts, injects one fault, and audits with lab.faults' auditor (every
accepted job must be known to the cluster and end there). The stack is removed after each run.

Faults (`--faults`, comma-separated):
- `kill:NAME`: `docker kill --signal KILL` of the task of node or role NAME, on the daemon of the host it
  runs on; the swarm restarts it there (restart policy `any`), on the same volume.
- `host:hK`: every process of host hK (its dockerd, containerd, shims and containers) killed at once by
  `HOST_COMMAND down hK`, and the host started again `--downtime` seconds later by `HOST_COMMAND up hK`
  (docker/swarm-test.sh provides both for its network-namespace hosts); the swarm starts the host's tasks
  again once its daemon is back. The rows say fault `kill`, target `host:hK`.

Hosts are given as LABEL=ADDRESS=DOCKER_HOST (`h1=10.78.0.1=unix:///run/dtq-swarm/h1.sock`, the first
one a manager): ADDRESS is where the host's published ports are reached, DOCKER_HOST its daemon.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import tempfile
import time
import traceback
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab.faults.backends import FaultCluster
from lab.faults.cli import format_runs, run_with_flags, write_rows
from lab.faults.inject import Injection, RealFault
from lab.faults.run import FaultRun
from model.config import CoreConfig
from model.errors import InvalidArgument
from realsys import cluster, deploy
from realsys.cli_common import deprecated_alias
from realsys.config import DEFAULT_NODES
from sim.faults import FAULT_AT, core_for, fault_workload

MICRO_PORTS = {
    "gateway": 50051,
    "job": 50052,
    "queue": 50053,
    "coordinator": 50054,
    "worker": 50055,
    "result": 50056,
}
_DOCKER_TIMEOUT = 60.0
_READY_TIMEOUT = 180.0  # a task (re)started by the swarm answering gRPC health: image pull, start-up
_POLL = 0.5
_CONTAINER_WAIT = 30.0
_ATTEMPTS = 2  # a run that raised (deploy, readiness, docker: never an audit finding) is tried once more


@dataclass(frozen=True, slots=True)
class SwarmHost:
    label: str  # the value of the node label dtq.host
    address: str  # where its published ports are reached from this machine
    docker_host: str  # its daemon (DOCKER_HOST)


def parse_hosts(spec: str) -> tuple[SwarmHost, ...]:
    hosts = []
    for item in filter(None, (p.strip() for p in spec.split(","))):
        parts = item.split("=", 2)
        if len(parts) != 3 or not all(parts):
            raise InvalidArgument(f"--hosts: {item!r} must be LABEL=ADDRESS=DOCKER_HOST")
        hosts.append(SwarmHost(*parts))
    if not hosts or len({h.label for h in hosts}) != len(hosts):
        raise InvalidArgument("--hosts: give at least one host, each label once")
    return tuple(hosts)


def run_docker(docker_host: str, args: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    done = subprocess.run(
        ["docker", *args],
        capture_output=True,
        text=True,
        timeout=_DOCKER_TIMEOUT,
        check=False,
        env={**os.environ, **(env or {}), "DOCKER_HOST": docker_host},
    )
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-1500:]}")
    return done.stdout


def placement(design: str, nodes: int, hosts: Sequence[SwarmHost]) -> dict[str, tuple[SwarmHost, int]]:
    """Each node or role of the rendered stack: its host and published port (realsys.deploy's rules)."""
    names = cluster.MICRO_ROLES if design == "micro" else cluster.mono_nodes(nodes)
    by_label = {h.label: h for h in hosts}
    out = {}
    for index, name in enumerate(names, 1):
        port = MICRO_PORTS[name] if design == "micro" else deploy.FIRST_NODE_PORT + index
        out[name] = (by_label[deploy.host_of(index, len(hosts))], port)
    return out


@dataclass(frozen=True, slots=True)
class SwarmCluster:
    design: str
    stack: str
    clients: list[str]
    where: dict[str, tuple[SwarmHost, int]]
    host_command: tuple[str, ...]
    ready: Callable[[str, float], None]
    info: dict[str, Any] = field(default_factory=dict)

    def client_security(self) -> dict[str, Any]:
        return {}  # the stacks run plaintext

    def _address(self, name: str) -> str:
        host, port = self.where[name]
        return f"{host.address}:{port}"

    def _container(self, name: str) -> str:
        """The one running container of task NAME; polled for up to _CONTAINER_WAIT s, since the swarm may
        be replacing the task (a failed health probe on a loaded host) when the fault is due."""
        host, _ = self.where[name]
        deadline = time.monotonic() + _CONTAINER_WAIT
        while True:
            ids = run_docker(
                host.docker_host,
                ["ps", "--quiet", "--filter", f"label=com.docker.swarm.service.name={self.stack}_{name}"],
            ).split()
            if len(ids) == 1:
                return ids[0]
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{self.stack}_{name}: {len(ids)} running containers on {host.label}, not 1"
                )
            time.sleep(_POLL)

    async def inject(self, fault: RealFault, now: Callable[[], float]) -> Injection:
        if fault.target.startswith("host:"):
            label = fault.target.split(":", 1)[1]
            names = [n for n, (h, _) in self.where.items() if h.label == label]
            injected = now()
            await asyncio.to_thread(_run, [*self.host_command, "down", label])
            await asyncio.sleep(fault.downtime)
            began = time.monotonic()
            await asyncio.to_thread(_run, [*self.host_command, "up", label])
        else:
            names = [fault.target]
            container = await asyncio.to_thread(self._container, fault.target)
            host = self.where[fault.target][0]
            injected = now()
            await asyncio.to_thread(run_docker, host.docker_host, ["kill", "--signal", "KILL", container])
            began = time.monotonic()
        healed = now()
        await asyncio.gather(
            *(asyncio.to_thread(self.ready, self._address(n), _READY_TIMEOUT) for n in names)
        )
        return Injection(fault, injected, healed, time.monotonic() - began)

    def describe(self) -> dict[str, Any]:
        return {"backend": "swarm", "stack": self.stack, **self.info}


def _run(args: Sequence[str]) -> None:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=300, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()[-1500:]}")


@dataclass(frozen=True, slots=True)
class SwarmBackend:
    """A fresh stack per run from an image every host can pull (`image`), on a swarm whose first host
    is a manager; removed (with its volumes, on every host) after the run."""

    image: str
    hosts: tuple[SwarmHost, ...]
    nodes: int = DEFAULT_NODES
    stack: str = ""
    host_command: tuple[str, ...] = ()
    health_interval: str = "5s"  # the engine's own probe (the swarm starts a task only once healthy)
    ready: Callable[[str, float], None] = cluster.wait_healthy
    name: str = "swarm"
    run_prefix: str = "swarm-faults"

    def _manager(self, args: Sequence[str], env: Mapping[str, str] | None = None) -> str:
        return run_docker(self.hosts[0].docker_host, args, env)

    def _remove(self, stack: str) -> None:
        """The stack, then its volumes on every host once its containers are gone (bounded waits)."""
        with contextlib.suppress(RuntimeError):
            self._manager(["stack", "rm", stack])
        for host in self.hosts:
            for _ in range(120):
                ids = run_docker(
                    host.docker_host, ["ps", "-aq", "--filter", f"label=com.docker.stack.namespace={stack}"]
                ).split()
                if not ids:
                    break
                time.sleep(_POLL)
            volumes = run_docker(
                host.docker_host,
                ["volume", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}"],
            ).split()
            if volumes:
                run_docker(host.docker_host, ["volume", "rm", "--force", *volumes])
        for _ in range(60):  # the stack's network goes last, asynchronously
            if not self._manager(
                ["network", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={stack}"]
            ):
                return
            time.sleep(_POLL)

    @contextlib.asynccontextmanager
    async def open(
        self, design: str, fault: RealFault, store: str, slots: int, settings: Mapping[str, str]
    ) -> AsyncIterator[FaultCluster]:
        stack = self.stack or f"dtq-faults-{design}"
        where = placement(design, self.nodes, self.hosts)
        per = cluster.slots_per_node(design, slots, self.nodes)
        env = {
            "DTQ_IMAGE": self.image,
            "DTQ_STORE": store,
            "DTQ_HEALTH_INTERVAL": self.health_interval,
            **(
                {"DTQ_WORKER_SLOTS": str(per["worker"])}
                if design == "micro"
                else {"DTQ_NODE_SLOTS": str(per["n1"])}
            ),
            **settings,
        }
        text = deploy.Deployment("swarm", design, self.nodes, len(self.hosts), slots).render()
        await asyncio.to_thread(self._remove, stack)  # leftovers of an interrupted run
        with tempfile.TemporaryDirectory(prefix="dtq-stack-") as tmp:
            path = Path(tmp) / f"stack.{design}.yml"
            path.write_text(text)
            try:
                await asyncio.to_thread(
                    self._manager, ["stack", "deploy", "--compose-file", str(path), stack], env
                )
                addresses = {n: f"{h.address}:{p}" for n, (h, p) in where.items()}
                await asyncio.gather(
                    *(asyncio.to_thread(self.ready, a, _READY_TIMEOUT) for a in addresses.values())
                )
                clients = [addresses["gateway"]] if design == "micro" else list(addresses.values())
                engine = self._manager(["version", "--format", "{{.Server.Version}}"]).strip()
                info = {
                    "image": self.image,
                    "engine": engine,
                    "hosts": [h.label for h in self.hosts],
                    "placement": {n: h.label for n, (h, _) in where.items()},
                }
                yield SwarmCluster(design, stack, clients, where, self.host_command, self.ready, info)
            finally:
                await asyncio.to_thread(self._remove, stack)


def plan(
    design: str, spec: str, nodes: int, hosts: Sequence[SwarmHost], at: float, downtime: float
) -> list[RealFault]:
    """`kill:NAME` and `host:hK` items (see the module docstring) as the runner's faults."""
    names = set(cluster.MICRO_ROLES if design == "micro" else cluster.mono_nodes(nodes))
    labels = {h.label for h in hosts}
    faults = []
    for item in filter(None, (p.strip() for p in spec.split(","))):
        kind, _, target = item.partition(":")
        if kind == "kill" and target in names:
            faults.append(RealFault("kill", target, at, downtime))
        elif kind == "host" and target in labels - {hosts[0].label}:
            faults.append(RealFault("kill", f"host:{target}", at, downtime))
        else:
            raise InvalidArgument(
                f"--faults: {item!r} must be kill:NAME (a node or role: {sorted(names)}) or host:LABEL "
                f"(a host other than the manager {hosts[0].label}: {sorted(labels - {hosts[0].label})})"
            )
    if not faults:
        raise InvalidArgument("--faults: name at least one fault")
    return faults


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m lab.faults.swarm", description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--design", choices=["micro", "mono"], required=True)
    p.add_argument("--image", required=True, help="an image every host can pull")
    p.add_argument("--hosts", required=True, help="LABEL=ADDRESS=DOCKER_HOST,... (the first a manager)")
    p.add_argument("--host-command", default="", help="a command taking `down LABEL` / `up LABEL`")
    p.add_argument("--faults", required=True, help="kill:NAME or host:LABEL, comma-separated")
    p.add_argument("--nodes", type=int, default=DEFAULT_NODES, help="Design B's node count")
    p.add_argument("--stack", default="", help="stack name (default dtq-faults-<design>)")
    p.add_argument("--rate", type=float, default=30.0, help="Poisson submits/s")
    p.add_argument("--job-duration", type=float, default=0.05)
    p.add_argument("--fault-at", type=float, default=FAULT_AT)
    p.add_argument("--after", type=float, default=12.0, help="trace seconds after the injection")
    p.add_argument("--downtime", type=float, default=3.0, help="host: seconds before it starts again")
    p.add_argument("--lease", type=float, default=5.0)
    p.add_argument("--heartbeat", type=float, default=1.0)
    p.add_argument("--drain", type=float, default=60.0)
    p.add_argument("--settle", type=float, default=60.0)
    p.add_argument("--slots", type=int, default=cluster.DEFAULT_TOTAL_SLOTS)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", required=True, help="JSON rows; a CSV beside it (lab/faults/'s columns)")
    p.add_argument("--runs-dir", default="", help="root of the run directories ('': none)")
    deprecated_alias(p, "--runs-out", "--runs-dir", "runs_dir")
    args = p.parse_args(argv)
    try:
        hosts = parse_hosts(args.hosts)
        faults = plan(args.design, args.faults, args.nodes, hosts, args.fault_at, args.downtime)
        if any(f.target.startswith("host:") for f in faults) and not args.host_command:
            raise InvalidArgument("a host fault needs --host-command")
        if args.fault_at < 7.0:
            raise InvalidArgument("--fault-at must be >= 7 s (2 s warm-up + the 5 s recovery baseline)")
    except (InvalidArgument, ValueError) as exc:
        print(f"lab.faults.swarm: {getattr(exc, 'message', exc)}", flush=True)
        return 2
    backend = SwarmBackend(args.image, hosts, args.nodes, args.stack, tuple(args.host_command.split()))
    core = core_for(CoreConfig(), args.lease, args.heartbeat)
    spec = fault_workload(args.rate, args.job_duration, args.fault_at - 2.0 + args.after, args.seed)
    runs: list[FaultRun] = []
    for fault in faults:
        started = time.monotonic()
        for attempt in range(1, _ATTEMPTS + 1):
            run_id = (  # lab.faults' scheme, with a host target's colon made a dash (a directory name)
                f"{backend.run_prefix}-{args.design}-{fault.action}-{fault.target.replace(':', '-')}"
                f"-L{core.lease_duration:g}-H{core.heartbeat_interval:g}-{spec.seed}"
                f"-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
            )
            try:
                run = run_with_flags(args, fault, spec, core, backend, run_id=run_id)
                break
            except Exception as exc:  # the rig's failure, not a finding: lost jobs are counted, not raised
                traceback.print_exc()
                first = str(exc).splitlines()[0] if str(exc) else ""
                print(
                    f"lab.faults.swarm: {args.design} {fault.action}:{fault.target} attempt {attempt} of "
                    f"{_ATTEMPTS} failed: {type(exc).__name__}: {first}",
                    flush=True,
                )
                if attempt == _ATTEMPTS:
                    return 1
        runs.append(run)
        print(f"{format_runs([run]).splitlines()[-1]}   ({time.monotonic() - started:.0f}s)", flush=True)
        if run.found.lost:
            print(json.dumps({"lost_ids": run.found.lost_ids[:10]}), flush=True)
    print(format_runs(runs))
    table = write_rows(runs, Path(args.out))
    print(f"rows written to {args.out} and {table}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
