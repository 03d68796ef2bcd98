"""`dtq faults run`: one fault injected under load into a real cluster, then an audit.

Each run starts a fresh cluster from a BACKEND: `local` (default), six processes (realsys.cluster), or
`compose`, six containers of one Compose project (docker/compose.<design>.yml, see `ComposeBackend`).
Both use the durable sqlite store by default. The run drives it with the project's load generator
(realsys.loadgen.run_load) on sim/faults.py's `fault_workload` (submits only, constant short jobs; by
default one closed-loop waiting client per worker slot, as `dtq sim faults` does), and injects ONE
fault `--fault-at` seconds after the run start (the local backend's mechanism first):

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

After the load generator's drain, the AUDITOR (`audit`) reads the run's records (the same
requests.csv.gz / jobs.csv.gz the run directory gets) AND the cluster's own state (ListJobs over all
states, every page, through DtqClient, polled until no accepted job is still pending or running, or
`--settle` seconds pass), and reports:

- accepted: submits answered OK (each has a job id).
- lost: accepted job ids the cluster does not know at all (neither terminal nor pending/running
  there). Must be 0 with the sqlite store. `unfinished` (accepted, still pending or running in the
  cluster after the settle time) and `failed` (terminal but not SUCCEEDED) are printed beside it.
- duplicates: jobs the cluster dispatched more than once, i.e. `Job.attempt > 1` in the cluster's
  record. The worker keeps no execution log, so this is the definition: an upper bound on "execution
  started more than once" (a lease handed to a worker that died before it read the reply counts too).
- recovery_s, unavailable_s: model/audit.py's `recovery_time` (job completion times from the
  client's records) and `unavailable_time` (request start times and statuses), the functions the
  simulator's audit uses, with the fault time being the measured moment the signal was sent.

The compose backend maps the faults onto the engine (`compose_fault_commands`): kill = `docker kill
--signal KILL` then `docker start`; stop = `docker pause` / `docker unpause` (the cgroup freezer: every
process of the container, not just its PID 1); restart = `docker stop` (SIGTERM, the node drains) then
`docker start` (with `--downtime 0` that is `docker restart`); partition = `docker network disconnect`
then `connect` with the container's aliases (its service name), so the others find it again by DNS.
The load generator and the auditor run on the host and reach the containers only through their
ports published on 127.0.0.1 (every role of Design A, every node of Design B; fixed for the run, so
a restarted container is found again at the same address).

Rows use sim/faults.py's ROW_KEYS (so data/faults/real-D.json and compose-D.json line up with
sim-D.json) and go to `--out`; a CSV beside it adds the extra columns. Every wait is bounded in count
and time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import functools
import json
import math
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from model.audit import recovery_time, unavailable_time
from model.config import CoreConfig
from model.errors import DtqError, InvalidArgument, NotFound
from model.results.schema import JobRecord, RequestRecord
from model.states import TERMINAL, JobState
from model.workload import Op, WorkloadSpec
from realsys import cluster
from sim.faults import ROW_KEYS, core_for, fault_workload

FAULTS = ("kill", "stop", "restart", "partition")
ROW_FAULT = {"kill": "kill", "stop": "pause", "restart": "restart", "partition": "partition"}
_POLL = 0.05
_SETTLE_POLL = 0.5
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
class ClusterJob:
    """One job as the cluster's ListJobs shows it."""

    job_id: str
    state: JobState
    attempt: int


@dataclass(frozen=True, slots=True)
class RealAudit:
    accepted: int
    lost: int
    unfinished: int
    failed: int
    duplicates: int
    recovery_s: float  # inf: the completion rate never came back before the trace's end
    unavailable_s: float
    unacknowledged: int  # jobs in the cluster whose submit the client did not see answered OK
    lost_ids: tuple[str, ...] = ()
    duplicate_ids: tuple[str, ...] = ()


# ---------------------------------------------------------------------------- the auditor
def audit(
    requests: Sequence[RequestRecord],
    jobs: Sequence[JobRecord],
    cluster_jobs: Mapping[str, ClusterJob],
    fault_at: float,
    end: float,
) -> RealAudit:
    """The fault measures of one run (see the module docstring); `fault_at` and `end` in record time."""
    accepted = {r.job_id for r in requests if r.op is Op.SUBMIT and r.status == "OK"}
    if "" in accepted:
        raise InvalidArgument("an accepted submit without a job id: the records are corrupt")
    gone = JobState.STATE_UNSPECIFIED  # ListJobs never returns it; a defensive "not known"
    lost = sorted(j for j in accepted if j not in cluster_jobs or cluster_jobs[j].state is gone)
    known = [cluster_jobs[j] for j in accepted if j in cluster_jobs and cluster_jobs[j].state is not gone]
    duplicates = sorted(c.job_id for c in cluster_jobs.values() if c.attempt > 1)
    return RealAudit(
        accepted=len(accepted),
        lost=len(lost),
        unfinished=sum(c.state not in TERMINAL for c in known),
        failed=sum(c.state in TERMINAL and c.state is not JobState.SUCCEEDED for c in known),
        duplicates=len(duplicates),
        recovery_s=recovery_time([j.end_time for j in jobs], fault_at, end),
        unavailable_s=unavailable_time(
            [r.start_time for r in requests], [r.status == "OK" for r in requests], fault_at, end
        ),
        unacknowledged=len(set(cluster_jobs) - accepted),
        lost_ids=tuple(lost),
        duplicate_ids=tuple(duplicates),
    )


async def read_cluster_jobs(
    addresses: Sequence[str],
    accepted: set[str],
    settle: float,
    security: Mapping[str, Any] | None = None,
) -> dict[str, ClusterJob]:
    """Every job of the cluster (ListJobs, all states, all pages), re-read every 0.5 s until no accepted
    job is pending or running any more, or `settle` seconds pass (then the last view is returned).
    An accepted job the listing lacks is asked for by id (GetJobStatus) before it may count as lost;
    a cluster that never answers a whole listing is an error, not a loss of every job."""
    from realsys.client import DtqClient

    deadline = time.monotonic() + settle
    latest: dict[str, ClusterJob] | None = None
    error: DtqError | None = None
    async with DtqClient(addresses, timeout=10.0, **(security or {})) as client:
        for _ in range(int(settle / _SETTLE_POLL) + 2):  # bounded: one pass per poll interval
            try:
                latest = {
                    j.job_id: ClusterJob(j.job_id, JobState(j.state), j.attempt)
                    async for j in client.list_all(page_size=1000)
                }
            except DtqError as exc:  # a node still starting (Design B's listing needs every node)
                error = exc
            else:
                waiting = [j for j in accepted if j in latest and latest[j].state not in TERMINAL]
                if not waiting:
                    break
            if time.monotonic() >= deadline:
                break
            await asyncio.sleep(_SETTLE_POLL)
        if latest is None:
            raise RuntimeError(f"the cluster never answered a whole listing: {error}")
        for job_id in sorted(accepted - set(latest)):
            try:
                job = await client.status(job_id)
            except NotFound:
                continue  # lost
            latest[job_id] = ClusterJob(job_id, JobState(job.state), job.attempt)
    return latest


# ---------------------------------------------------------------------------- injection
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
        time.sleep(_POLL)
    raise TimeoutError(f"{name} did not exit within {timeout}s of SIGTERM")


async def inject(
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


# ---------------------------------------------------------------------------- backends
class FaultCluster(Protocol):
    """A running cluster of one fault run: where clients connect, and how a fault is applied to it."""

    @property
    def design(self) -> str: ...

    @property
    def clients(self) -> list[str]: ...  # client-facing addresses

    def client_security(self) -> dict[str, Any]: ...

    async def inject(self, fault: RealFault, now: Callable[[], float]) -> Injection: ...

    def describe(self) -> dict[str, Any]: ...  # for the run's config.json


class Backend(Protocol):
    """Starts a fresh cluster for one fault run and tears it down afterwards."""

    @property
    def name(self) -> str: ...

    @property
    def run_prefix(self) -> str: ...  # of run ids: `<run_prefix>-<design>-<fault>-<target>-...`

    def open(
        self, design: str, fault: RealFault, store: str, slots: int, settings: Mapping[str, str]
    ) -> AbstractAsyncContextManager[FaultCluster]: ...


@dataclass(frozen=True, slots=True)
class LocalCluster:
    info: cluster.ClusterInfo
    space: Namespace | None

    @property
    def design(self) -> str:
        return self.info.design

    @property
    def clients(self) -> list[str]:
        return self.info.clients

    def client_security(self) -> dict[str, Any]:
        return self.info.client_security()

    async def inject(self, fault: RealFault, now: Callable[[], float]) -> Injection:
        return await inject(self.info.directory, fault, now, self.space)

    def describe(self) -> dict[str, Any]:
        return {"backend": "local"}


@dataclass(frozen=True, slots=True)
class LocalBackend:
    """Six local processes (realsys.cluster) in a temporary folder under `workdir`."""

    workdir: Path | None = None
    name: str = "local"
    run_prefix: str = "real-faults"

    @contextlib.asynccontextmanager
    async def open(
        self, design: str, fault: RealFault, store: str, slots: int, settings: Mapping[str, str]
    ) -> AsyncIterator[FaultCluster]:
        base = Path(tempfile.mkdtemp(prefix="dtq-faults-", dir=self.workdir))
        directory = base / design
        space = None
        try:
            space = namespace_up() if fault.action == "partition" else None
            hosts: dict[str, str] = {}
            netns: dict[str, str] = {}
            if space is not None:  # everyone on the veth's host end, the target behind it
                names = cluster.MICRO_ROLES if design == "micro" else cluster.MONO_NODES
                hosts = {name: space.host_ip for name in names} | {fault.target: space.ns_ip}
                netns = {fault.target: space.name}
            info = await asyncio.to_thread(
                functools.partial(
                    cluster.up,
                    design,
                    directory,
                    slots,
                    store,
                    dict(settings),
                    60.0,
                    hosts=hosts,
                    netns=netns,
                )
            )
            try:
                yield LocalCluster(info, space)
            finally:
                with contextlib.suppress(ProcessLookupError, KeyError, FileNotFoundError):
                    cluster.kill(directory, fault.target, signal.SIGCONT)  # in case a stop was interrupted
                await asyncio.to_thread(cluster.down, directory, 10.0)
        finally:
            if space is not None:
                namespace_down(space)
            shutil.rmtree(base, ignore_errors=True)


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
    root: Path = Path(__file__).resolve().parents[1]
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


# ---------------------------------------------------------------------------- one run
@dataclass(frozen=True, slots=True)
class FaultRun:
    design: str
    fault: RealFault
    core: CoreConfig
    store: str
    run_id: str
    injection: Injection
    found: RealAudit
    run_dir: Path | None

    def row(self) -> dict[str, Any]:
        """sim/faults.py's ROW_KEYS, in that order."""
        out = {
            "design": self.design,
            "fault": ROW_FAULT[self.fault.action],
            "target": self.fault.target,
            "lease_s": self.core.lease_duration,
            "heartbeat_s": self.core.heartbeat_interval,
            "accepted": self.found.accepted,
            "lost": self.found.lost,
            "duplicates": self.found.duplicates,
            "recovery_s": self.found.recovery_s if math.isfinite(self.found.recovery_s) else None,
            "unavailable_s": self.found.unavailable_s,
            "store": self.store,
            "run_id": self.run_id,
        }
        assert tuple(out) == ROW_KEYS
        return out

    def extra(self) -> dict[str, Any]:
        """The CSV's columns beyond ROW_KEYS."""
        return {
            "unfinished": self.found.unfinished,
            "failed": self.found.failed,
            "unacknowledged": self.found.unacknowledged,
            "injected_at": round(self.injection.injected_at, 3),
            "down_s": self.fault.downtime,
            "restart_s": round(self.injection.restart_s, 3),
        }


def overrides_for(core: CoreConfig) -> dict[str, str]:
    return {
        "DTQ_LEASE_DURATION": repr(core.lease_duration),
        "DTQ_HEARTBEAT_INTERVAL": repr(core.heartbeat_interval),
        "DTQ_WORKER_TTL": repr(core.worker_ttl),
    }


async def _load_with_fault(
    running: FaultCluster, spec: WorkloadSpec, fault: RealFault, drain: float
) -> tuple[Any, Injection]:
    from realsys.loadgen import run_load
    from realsys.targets import DtqTarget

    zero: list[float] = []

    async def ready() -> float:
        zero.append(time.perf_counter() + 0.2)  # the run's time zero, shared with the injector
        return zero[0]

    target = DtqTarget(running.clients, timeout=5.0, design=running.design)
    load = asyncio.create_task(run_load(target, spec, ready=ready, drain_timeout=drain))
    try:
        for _ in range(int(60 / _POLL)):  # the trace is built before ready() is called
            if zero or load.done():
                break
            await asyncio.sleep(_POLL)
        if not zero:
            await load  # raises what stopped it
            raise RuntimeError("the load generator never started")

        def now() -> float:
            return time.perf_counter() - zero[0]

        await asyncio.sleep(max(0.0, fault.at - now()))
        injection = await running.inject(fault, now)
        result = await load
    finally:
        if not load.done():
            load.cancel()
            with contextlib.suppress(BaseException):
                await load
        await target.close()
    return result, injection


async def run_fault(
    design: str,
    fault: RealFault,
    spec: WorkloadSpec,
    core: CoreConfig,
    *,
    store: str = "sqlite",
    slots: int = cluster.DEFAULT_TOTAL_SLOTS,
    drain: float = 15.0,
    settle: float = 30.0,
    runs_out: Path | None = None,
    run_id: str = "",
    workdir: Path | None = None,
    backend: Backend | None = None,
) -> FaultRun:
    """One fault run on a fresh cluster of `backend` (default: local processes under `workdir`; see
    the module docstring); the cluster is down on return."""
    from model.results.runs import provenance, run_config, utc_now, write_run
    from realsys.loadgen import summary_of

    chosen: Backend = backend or LocalBackend(workdir)
    run_id = run_id or (
        f"{chosen.run_prefix}-{design}-{fault.action}-{fault.target}-L{core.lease_duration:g}"
        f"-H{core.heartbeat_interval:g}-{spec.seed}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}"
    )
    started_at = utc_now()
    async with chosen.open(design, fault, store, slots, overrides_for(core)) as running:
        result, injection = await _load_with_fault(running, spec, fault, drain)
        accepted = {r.job_id for r in result.requests if r.op is Op.SUBMIT and r.status == "OK"}
        jobs = await read_cluster_jobs(running.clients, accepted, settle, running.client_security())
        described = running.describe()
    found = audit(result.requests, result.jobs, jobs, injection.injected_at, spec.total_time)
    run_dir = None
    if runs_out is not None:
        parameters = {
            "store": store,
            "total_slots": slots,
            "settings": overrides_for(core),
            "fault": asdict(fault),
            "injection": {k: v for k, v in asdict(injection).items() if k != "fault"},
            "cluster": described,
        }
        config = run_config(
            run_id=run_id,
            kind="real",
            design=design,
            workload=spec,
            parameters=parameters,
            started_at=started_at,
            provenance_info=provenance(),
        )
        summary = summary_of(result, spec, run_id=run_id, kind="real", design=design)
        run_dir = write_run(runs_out, run_id, config, result.requests, result.jobs, summary)
    return FaultRun(design, fault, core, store, run_id, injection, found, run_dir)


# ---------------------------------------------------------------------------- the command
def format_runs(runs: Sequence[FaultRun]) -> str:
    head = (
        f"{'design':6} {'fault':9} {'target':11} {'lease':>5} {'hb':>4} {'accepted':>8} {'lost':>4} "
        f"{'unfin':>5} {'failed':>6} {'dup':>4} {'recov_s':>7} {'unavail_s':>9} {'restart_s':>9}"
    )
    lines = [head]
    for run in runs:
        r, f = run.row(), run.found
        recovery = "never" if r["recovery_s"] is None else f"{r['recovery_s']:.1f}"
        lines.append(
            f"{r['design']:6} {r['fault']:9} {r['target']:11} {r['lease_s']:5g} {r['heartbeat_s']:4g} "
            f"{r['accepted']:8d} {r['lost']:4d} {f.unfinished:5d} {f.failed:6d} {r['duplicates']:4d} "
            f"{recovery:>7} {r['unavailable_s']:9.1f} {run.injection.restart_s:9.2f}"
        )
    return "\n".join(lines)


def write_rows(runs: Sequence[FaultRun], out: Path, append: bool = False) -> Path:
    """The JSON rows to `out` and the same rows plus the extra columns to `out` with .csv; with
    `append`, after the rows those files already hold (one locked measurement per invocation)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    table = out.with_suffix(".csv")
    rows: list[dict[str, Any]] = []
    lines: list[list[Any]] = []
    extra_keys = list(runs[0].extra()) if runs else []
    if append and out.exists():
        rows = list(json.loads(out.read_text()))
    if append and table.exists():
        with table.open(newline="") as f:
            old = list(csv.reader(f))
        if old and old[0] != [*ROW_KEYS, *extra_keys]:
            raise InvalidArgument(f"{table} has other columns: not appending to it")
        lines = old[1:]
    rows += [r.row() for r in runs]
    lines += [[*(r.row()[k] for k in ROW_KEYS), *(r.extra()[k] for k in extra_keys)] for r in runs]
    out.write_text(json.dumps(rows, indent=1) + "\n")
    with table.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow([*ROW_KEYS, *extra_keys])
        writer.writerows(lines)
    return table


def add_parser(sub: Any) -> None:
    """`dtq faults run` (sub is the dtq command's subparsers object)."""
    p = sub.add_parser("faults", help="fault injection under load into a real cluster, and an audit")
    fsub = p.add_subparsers(dest="faults_command", required=True)
    r = fsub.add_parser("run", help="one run per (fault, target); rows to --out (ROW_KEYS of sim/faults.py)")
    r.add_argument("--design", choices=["micro", "mono"], required=True)
    r.add_argument(
        "--backend",
        choices=["local", "compose"],
        default="local",
        help="local processes or Compose containers",
    )
    r.add_argument("--image", default="dtq:latest", help="compose: the dtq image to run (not built here)")
    r.add_argument("--project", default="", help="compose: project name (default dtq-faults-<design>)")
    r.add_argument("--store", choices=["sqlite", "memory"], default="sqlite")
    r.add_argument("--faults", default="kill,stop", help=f"comma-separated, of {','.join(FAULTS)}")
    r.add_argument(
        "--targets",
        default="",
        help="comma-separated node names, or FAULT:NAME for one fault (default: per fault)",
    )
    r.add_argument(
        "--out",
        default="",
        help="JSON rows (default data/faults/real-<design>.json; compose: compose-<design>.json)",
    )
    r.add_argument("--append", action="store_true", help="add the rows to --out's instead of replacing")
    r.add_argument("--runs-out", default="data/runs", help="run directories root ('' : none)")
    r.add_argument("--lease", type=float, default=5.0, help="lease duration (s)")
    r.add_argument("--heartbeat", type=float, default=1.0, help="heartbeat interval (s)")
    r.add_argument("--fault-at", type=float, default=8.0, help="injection time (s from the run start)")
    r.add_argument("--after", type=float, default=10.0, help="trace seconds after the injection")
    r.add_argument("--downtime", type=float, default=2.0, help="kill/restart: seconds down")
    r.add_argument("--pause", type=float, default=4.0, help="stop: seconds between SIGSTOP and SIGCONT")
    r.add_argument("--cut", type=float, default=4.0, help="partition: seconds the target is cut off")
    r.add_argument("--clients", type=int, default=-1, help="closed-loop waiting clients (default: slots)")
    r.add_argument("--rate", type=float, default=60.0, help="Poisson submits/s when --clients 0")
    r.add_argument("--job-duration", type=float, default=0.1, help="constant job duration (s)")
    r.add_argument("--slots", type=int, default=cluster.DEFAULT_TOTAL_SLOTS)
    r.add_argument("--seed", type=int, default=1)
    r.add_argument("--drain", type=float, default=15.0, help="load generator drain timeout (s)")
    r.add_argument("--settle", type=float, default=30.0, help="auditor: wait for pending jobs (s)")


def faults_command(args: argparse.Namespace) -> int:
    actions = [a.strip() for a in args.faults.split(",") if a.strip()]
    targets = [t.strip() for t in args.targets.split(",") if t.strip()] or None
    faults = plan_faults(args.design, actions, targets, args.fault_at, args.downtime, args.pause, args.cut)
    if args.fault_at < 2.0 + 5.0:  # warm-up, then model/audit.py's 5 s baseline before the fault
        raise InvalidArgument("--fault-at must be >= 7 s (2 s warm-up + the 5 s recovery baseline)")
    core = core_for(CoreConfig(), args.lease, args.heartbeat)
    clients = args.slots if args.clients < 0 else args.clients
    spec = fault_workload(args.rate, args.job_duration, args.fault_at - 2.0 + args.after, args.seed, clients)
    backend: Backend = (
        ComposeBackend(image=args.image, project=args.project)
        if args.backend == "compose"
        else LocalBackend()
    )
    out = Path(
        args.out or f"data/faults/{'compose' if args.backend == 'compose' else 'real'}-{args.design}.json"
    )
    runs_out = Path(args.runs_out) if args.runs_out else None
    runs: list[FaultRun] = []
    for fault in faults:
        run = asyncio.run(
            run_fault(
                args.design,
                fault,
                spec,
                core,
                store=args.store,
                slots=args.slots,
                drain=args.drain,
                settle=args.settle,
                runs_out=runs_out,
                backend=backend,
            )
        )
        runs.append(run)
        print(format_runs([run]).splitlines()[-1], flush=True)
    print(format_runs(runs))
    table = write_rows(runs, out, args.append)
    print(f"rows written to {out} and {table}")
    return 0
