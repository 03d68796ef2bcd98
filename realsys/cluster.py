"""Local process clusters: `dtq cluster up/down`. Processes on loopback, one per node or role: Design A's
six roles, or Design B's N nodes n1..nN (`--nodes`, default 6).

The launcher picks free loopback ports up front (peers must know each other's addresses at start),
passes every setting as DTQ_* environment variables (the one config loader reads them), and writes
DIR/cluster.json: the design, the client-facing addresses first, then every node's role, address,
metrics address (Prometheus /metrics; its port is picked up front too, so it survives a restart),
pid and environment (so a node can be restarted on the same ports and data).

`running(design)` is the context manager for a block of code: the cluster up (in a temporary folder
unless given one), and down again when the block ends, also when it raises.

`up(..., secure=True)` also makes a throwaway CA, a certificate per node and tokens in DIR/tls/
(realsys/security.py): every node serves TLS and checks tokens. cluster.json is the launcher's (mode
0600: every node's environment, internal token included); clients get DIR/client.json (mode 0600),
which holds only what a client needs: the client-facing addresses, the CA certificate and the client
token. With `secure`, DIR and every node's data directory are 0700 and the node logs 0600, so data at
rest is the owner's only (the nodes make their database files 0600 themselves: realsys/storage.py).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from realsys.config import DEFAULT_NODES, MAX_NODES
from realsys.security import ChannelSecurity, new_token, open_channel, write_cluster_pki

MICRO_ROLES = ("result", "queue", "job", "coordinator", "worker", "gateway")  # start order: callees first
DEFAULT_TOTAL_SLOTS = 12


def mono_nodes(count: int = DEFAULT_NODES) -> tuple[str, ...]:
    """Design B's node names n1..n<count>; ValueError unless 1 <= count <= config.MAX_NODES."""
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_NODES:
        raise ValueError(f"Design B needs 1 to {MAX_NODES} nodes, not {count!r}")
    return tuple(f"n{i}" for i in range(1, count + 1))


MONO_NODES = mono_nodes()
CLUSTER_FILE = "cluster.json"
CLIENT_FILE = "client.json"
WORKER_TOKEN_NAME = "worker"  # Design A's worker process acts as worker-<random> with this token


@dataclass(frozen=True, slots=True)
class NodeInfo:
    name: str
    role: str
    address: str
    pid: int
    env: dict[str, str]
    netns: str = ""  # a network namespace the node runs in (`ip netns exec`), for partition faults

    @property
    def metrics(self) -> str:
        """host:port of the node's Prometheus /metrics ("" when off): fixed when the cluster is
        planned, so it stays the same across a restart."""
        port = int(self.env.get("DTQ_METRICS_PORT", "-1") or -1)
        if port <= 0:
            return ""
        return f"{self.address.rsplit(':', 1)[0]}:{port}"


@dataclass(frozen=True, slots=True)
class ClusterInfo:
    design: str
    directory: Path
    clients: list[str]
    nodes: list[NodeInfo]
    tls_ca: str = ""  # secure clusters: the CA clients verify nodes with
    client_token: str = ""
    worker_token: str = ""

    def node(self, name: str) -> NodeInfo:
        for node in self.nodes:
            if node.name == name:
                return node
        raise ValueError(
            f"no node named {name!r} in {self.directory}; its nodes: {', '.join(n.name for n in self.nodes)}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "design": self.design,
            "clients": self.clients,
            "nodes": [
                {
                    "name": n.name,
                    "role": n.role,
                    "address": n.address,
                    "metrics": n.metrics,
                    "pid": n.pid,
                    "env": n.env,
                    **({"netns": n.netns} if n.netns else {}),
                }
                for n in self.nodes
            ],
            **(
                {"tls_ca": self.tls_ca, "client_token": self.client_token, "worker_token": self.worker_token}
                if self.tls_ca
                else {}
            ),
        }

    def client_security(self) -> dict[str, Any]:
        """DtqClient keyword arguments: `DtqClient(info.clients, **info.client_security())`."""
        if not self.tls_ca:
            return {}
        return {"token": self.client_token, "root_certificates": Path(self.tls_ca).read_bytes()}


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """What DIR/client.json gives a client: addresses, and for a secure cluster the CA and a client token."""

    clients: list[str]
    ca_pem: str = ""
    token: str = ""

    def security(self) -> dict[str, Any]:
        """DtqClient keyword arguments: `DtqClient(c.clients, **c.security())`."""
        if not self.ca_pem:
            return {}
        return {"token": self.token, "root_certificates": self.ca_pem.encode()}


def load_client(directory: Path) -> ClientInfo:
    """DIR/client.json; for a cluster started before it existed, the same taken from cluster.json."""
    path = directory.resolve() / CLIENT_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        info = load(directory)
        ca = Path(info.tls_ca).read_text() if info.tls_ca else ""
        return ClientInfo(info.clients, ca, info.client_token)
    return ClientInfo(list(raw["clients"]), raw.get("ca_pem", ""), raw.get("client_token", ""))


LOWEST_PICKED_PORT = 10_000


def _ephemeral_range() -> tuple[int, int]:
    """The kernel's range for the source ports of outgoing connections (Linux), else IANA's."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        return low, high
    except (OSError, ValueError):
        return 49152, 65535


def free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 for servers that bind them a moment later. They are drawn
    below the kernel's ephemeral range when it leaves room (so no outgoing connection's source port
    can take one in between, as a port the kernel handed out by binding port 0 could), each checked
    by binding it; all are held until every one is picked, then released."""
    low, _ = _ephemeral_range()
    below = range(LOWEST_PICKED_PORT, low) if low - LOWEST_PICKED_PORT >= 1000 else range(0)
    # distinct candidates, at most 50 per port wanted (bounded); not seeded: any free port will do
    candidates = random.SystemRandom().sample(below, min(50 * count, len(below)))
    sockets: list[socket.socket] = []
    try:
        for port in candidates:
            if len(sockets) == count:
                break
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            sockets.append(s)
        while len(sockets) < count:  # no room below the range: let the kernel choose
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def slots_per_node(design: str, total_slots: int, nodes: int = DEFAULT_NODES) -> dict[str, int]:
    """Equal total slots across designs: Design A's worker gets them all; Design B splits them evenly
    over its `nodes` nodes (so the total must be a multiple of the node count)."""
    if total_slots < 1:
        raise ValueError("total slots must be >= 1")
    if design == "micro":
        return {role: (total_slots if role == "worker" else 0) for role in MICRO_ROLES}
    names = mono_nodes(nodes)
    if total_slots % len(names):
        raise ValueError(
            f"Design B splits slots evenly over {len(names)} nodes; {total_slots} does not divide "
            f"(give a total slot count that is a multiple of {len(names)})"
        )
    return {node: total_slots // len(names) for node in names}


def plan(
    design: str,
    directory: Path,
    total_slots: int,
    store: str,
    overrides: Mapping[str, str] | None = None,
    hosts: Mapping[str, str] | None = None,
    nodes: int = DEFAULT_NODES,
) -> list[tuple[str, str, dict[str, str]]]:
    """(name, role, env) for each process, in start order. `hosts`: a node's listen IP other than
    127.0.0.1 (partition faults put a node behind a veth pair; see lab/faults/inject.py). `nodes`:
    Design B's node count (Design A always runs its six roles)."""
    if design not in ("micro", "mono"):
        raise ValueError(f"design must be micro or mono, not {design!r}")
    if store not in ("sqlite", "memory"):
        raise ValueError(f"store must be sqlite or memory, not {store!r}")
    names = MICRO_ROLES if design == "micro" else mono_nodes(nodes)
    slots = slots_per_node(design, total_slots, nodes)
    picked = free_ports(2 * len(names))  # gRPC ports, then the metrics ports (known before start)
    ports = dict(zip(names, picked[: len(names)], strict=True))
    metrics_ports = dict(zip(names, picked[len(names) :], strict=True))
    addresses = {name: f"{(hosts or {}).get(name, '127.0.0.1')}:{port}" for name, port in ports.items()}
    table = ",".join(f"{name}={addr}" for name, addr in addresses.items())
    out = []
    for name in names:
        env = {
            "DTQ_DESIGN": design,
            "DTQ_ROLE": name if design == "micro" else "node",
            "DTQ_NAME": name,
            "DTQ_LISTEN": addresses[name],
            "DTQ_DATA_DIR": str(directory / name),
            "DTQ_STORE": store,
            "DTQ_SLOTS": str(slots[name]),
            "DTQ_METRICS_PORT": str(metrics_ports[name]),
            ("DTQ_SERVICES" if design == "micro" else "DTQ_PEERS"): table,
            **(overrides or {}),
        }
        out.append((name, env["DTQ_ROLE"], env))
    return out


def _spawn(directory: Path, name: str, env: Mapping[str, str], netns: str = "") -> int:
    secure = bool(env.get("DTQ_TLS_CERT"))
    data_dir = Path(env["DTQ_DATA_DIR"])
    data_dir.mkdir(mode=0o700 if secure else 0o777, parents=True, exist_ok=True)
    log_path = directory / f"{name}.log"
    if secure:  # owner-only at rest: the data and what the node logs about it
        os.chmod(data_dir, 0o700)
        os.close(os.open(log_path, os.O_WRONLY | os.O_CREAT, 0o600))
        os.chmod(log_path, 0o600)
    log = open(log_path, "ab")  # noqa: SIM115 - handed to the child
    full_env = {**os.environ, **env, "PYTHONUNBUFFERED": "1"}
    # `ip netns exec` execs the command (no fork), so the pid is the node's own
    prefix = ["ip", "netns", "exec", netns] if netns else []
    proc = subprocess.Popen(
        [*prefix, sys.executable, "-m", "realsys", "serve"],
        env=full_env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        # own process group: a terminal's Ctrl-C does not hit the nodes (`down` does); the caller's
        # session: with sched_autogroup each session is a CPU scheduling group, and a session per node
        # lengthened gRPC's I/O threads' run-queue waits to 100s of ms (extended/tails.md)
        process_group=0,
    )
    log.close()
    return proc.pid


def wait_healthy(address: str, timeout: float, pid: int | None = None, tls_ca: str = "") -> None:
    """Polls the node's health (no token needed; over TLS verified with `tls_ca` when given)."""
    deadline = time.monotonic() + timeout
    last_error = "no answer"
    with open_channel(address, security=ChannelSecurity(Path(tls_ca) if tls_ca else None)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        while time.monotonic() < deadline:
            if pid is not None and not _alive(pid):
                raise RuntimeError(f"process {pid} serving {address} exited during start-up")
            try:
                reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    return
                last_error = f"status {reply.status}"
            except grpc.RpcError as exc:
                last_error = exc.code().name if isinstance(exc, grpc.Call) else str(exc)
            time.sleep(0.05)
    raise TimeoutError(f"{address} not healthy after {timeout}s ({last_error})")


def up(
    design: str,
    directory: Path,
    total_slots: int = DEFAULT_TOTAL_SLOTS,
    store: str = "sqlite",
    overrides: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    secure: bool = False,
    hosts: Mapping[str, str] | None = None,
    netns: Mapping[str, str] | None = None,
    nodes: int = DEFAULT_NODES,
) -> ClusterInfo:
    """`hosts` and `netns` (by node name): listen IPs other than 127.0.0.1 and network namespaces
    to start nodes in; the caller sets the namespaces up (lab/faults/: the partition fault).
    `nodes`: Design B's node count, n1..n<nodes> (ValueError outside 1..config.MAX_NODES)."""
    slots_per_node(design, total_slots, nodes)  # a bad count or split fails before anything is made
    directory = directory.resolve()
    if directory.exists() and not directory.is_dir():  # mkdir would say only "File exists"
        raise ValueError(f"--dir {directory}: is a file, not a cluster's directory")
    directory.mkdir(parents=True, exist_ok=True)
    if secure:
        os.chmod(directory, 0o700)
    if (directory / CLUSTER_FILE).exists():
        raise FileExistsError(
            f"{directory / CLUSTER_FILE} exists: run `dtq cluster down --dir {directory}` first"
        )
    planned = plan(design, directory, total_slots, store, overrides, hosts, nodes)
    tokens = {"client": "", "worker": "", "ca": ""}
    if secure:
        planned, tokens = _secure(directory, planned)
    started: list[NodeInfo] = []
    try:
        for name, role, env in planned:
            space = (netns or {}).get(name, "")
            pid = _spawn(directory, name, env, space)
            started.append(NodeInfo(name, role, env["DTQ_LISTEN"], pid, env, space))
        for node in started:
            try:
                wait_healthy(node.address, timeout, node.pid, node.env.get("DTQ_TLS_CA", ""))
            except RuntimeError as exc:  # the node exited: its own last words say why
                raise RuntimeError(f"{node.name}: {exc}{_last_words(directory, node.name)}") from None
    except BaseException:
        _stop_pids([n.pid for n in started], grace=5.0)
        raise
    clients = [n.address for n in started if n.role in ("gateway", "node")]
    info = ClusterInfo(design, directory, clients, started, tokens["ca"], tokens["client"], tokens["worker"])
    _write(info)
    return info


@contextlib.contextmanager
def running(
    design: str,
    directory: Path | None = None,
    *,
    grace: float = 15.0,
    prefix: str = "",
    under: Path | None = None,
    **up_options: Any,
) -> Iterator[ClusterInfo]:
    """A local cluster for the block: `up(design, directory, **up_options)` on entry (total_slots,
    store, overrides, timeout, secure, hosts, netns), `down` (with `grace`) on exit, also when the
    block raises. Without `directory` it lives in a temporary folder (named from `prefix`, inside
    `under` if given), removed afterwards with the nodes' data and logs."""
    with contextlib.ExitStack() as stack:
        if directory is None:
            tmp = stack.enter_context(
                tempfile.TemporaryDirectory(prefix=prefix or f"dtq-{design}-", dir=under)
            )
            directory = Path(tmp) / design
        info = up(design, directory, **up_options)
        try:
            yield info
        finally:
            down(info.directory, grace)


def _last_words(directory: Path, name: str) -> str:
    """ ": <the last line of the node's log>", or "" when it wrote none."""
    try:
        lines = [
            line for line in (directory / f"{name}.log").read_text(errors="replace").splitlines() if line
        ]
    except OSError:
        return ""
    return f": {lines[-1][:300]}" if lines else ""


def _secure(
    directory: Path, planned: list[tuple[str, str, dict[str, str]]]
) -> tuple[list[tuple[str, str, dict[str, str]]], dict[str, str]]:
    """A throwaway CA, node certificates and tokens in DIR/tls, and each node's env pointing at them."""
    pki = write_cluster_pki(directory / "tls", [name for name, _, _ in planned])
    tokens = {"client": new_token(), "worker": new_token(), "ca": str(pki.ca)}
    internal = new_token()
    out = []
    for name, role, env in planned:
        secured = {
            **env,
            "DTQ_TLS_CERT": str(pki.nodes[name].cert),
            "DTQ_TLS_KEY": str(pki.nodes[name].key),
            "DTQ_TLS_CA": str(pki.ca),
            "DTQ_CLIENT_TOKENS": tokens["client"],
            "DTQ_WORKER_TOKENS": f"{WORKER_TOKEN_NAME}:{tokens['worker']}",
            "DTQ_INTERNAL_TOKEN": internal,
        }
        out.append((name, role, secured))
    return out, tokens


def load(directory: Path) -> ClusterInfo:
    path = directory.resolve() / CLUSTER_FILE
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"no cluster at {directory} (missing {CLUSTER_FILE})") from None
    nodes = [
        NodeInfo(n["name"], n["role"], n["address"], n["pid"], dict(n["env"]), n.get("netns", ""))
        for n in raw["nodes"]
    ]
    return ClusterInfo(
        raw["design"],
        path.parent,
        list(raw["clients"]),
        nodes,
        raw.get("tls_ca", ""),
        raw.get("client_token", ""),
        raw.get("worker_token", ""),
    )


def _write(info: ClusterInfo) -> None:
    """cluster.json (the launcher's) and client.json (a client's: no node's secrets)."""
    client: dict[str, Any] = {"clients": info.clients}
    if info.tls_ca:
        client.update(ca_pem=Path(info.tls_ca).read_text(), client_token=info.client_token)
    for name, content in ((CLUSTER_FILE, info.to_json()), (CLIENT_FILE, client)):
        path = info.directory / name
        tmp = path.with_suffix(".tmp")
        # a secure cluster's files hold tokens (and every node's env does): only the owner may read them
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if info.tls_ca else 0o644)
        with os.fdopen(fd, "w") as out:
            out.write(json.dumps(content, indent=2) + "\n")
        tmp.replace(path)


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)  # reap our own children
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie of a process that is not our child still answers kill(0)
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z":
            return False
    return True


def _is_ours(pid: int) -> bool:
    """Guards against signalling a recycled pid."""
    try:
        return b"realsys" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _stop_pids(pids: list[int], grace: float) -> None:
    for pid in pids:
        if _alive(pid) and _is_ours(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.05)
    for pid in pids:
        if _alive(pid) and _is_ours(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def down(directory: Path, grace: float = 15.0) -> None:
    info = load(directory)
    # clients' entry points first, so no new work arrives while the rest drains
    _stop_pids([n.pid for n in reversed(info.nodes)], grace)
    (info.directory / CLUSTER_FILE).unlink()
    (info.directory / CLIENT_FILE).unlink(missing_ok=True)


def kill(directory: Path, name: str, sig: int = signal.SIGKILL) -> None:
    node = load(directory).node(name)
    if _alive(node.pid) and _is_ours(node.pid):
        os.kill(node.pid, sig)
        if sig == signal.SIGKILL:
            deadline = time.monotonic() + 5
            while _alive(node.pid) and time.monotonic() < deadline:
                time.sleep(0.02)


def start(directory: Path, name: str, timeout: float = 30.0) -> NodeInfo:
    """(Re)starts one node with its recorded environment: same port, same data."""
    info = load(directory)
    old = info.node(name)
    if _alive(old.pid) and _is_ours(old.pid):
        raise RuntimeError(f"{name} is still running as pid {old.pid}")
    pid = _spawn(info.directory, name, old.env, old.netns)
    wait_healthy(old.address, timeout, pid, old.env.get("DTQ_TLS_CA", ""))
    new = NodeInfo(old.name, old.role, old.address, pid, old.env, old.netns)
    _write(dataclasses.replace(info, nodes=[new if n.name == name else n for n in info.nodes]))
    return new


def status(directory: Path) -> list[dict[str, Any]]:
    info = load(directory)
    return [
        {
            "name": n.name,
            "role": n.role,
            "address": n.address,
            "metrics": n.metrics,
            "pid": n.pid,
            "alive": _alive(n.pid),
        }
        for n in info.nodes
    ]
