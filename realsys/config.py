"""Node configuration: one frozen dataclass, loaded from `DTQ_*` environment variables only.

`load_config(env)` validates everything and raises InvalidArgument with a message naming the variable;
`config_to_env(config)` is its inverse (used by the cluster launcher and compose files). `SETTINGS` says
what each variable means and where its default comes from; `settings_help()` is `dtq serve --help`'s list;
`misspelt_settings(env)` names a DTQ_* variable that is close to a setting but none (a node warns).

Core tunables: every `CoreConfig` field `f` is read from `DTQ_<F>` (upper case), e.g.
`DTQ_LEASE_DURATION`; fields left unset keep the `CoreConfig` default, and `CoreConfig` checks the values.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import math
import re
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, TypeVar, cast

from model.config import CoreConfig
from model.errors import InvalidArgument
from model.ids import validate_node_name
from model.policies import queue_service_policy

Design = Literal["micro", "mono"]
RoleName = Literal["gateway", "job", "queue", "coordinator", "worker", "result", "node"]
Store = Literal["sqlite", "memory"]
GcMode = Literal["default", "freeze", "off"]
GC_MODES: tuple[GcMode, ...] = ("default", "freeze", "off")
Batching = Literal["off", "on"]
BATCHING: tuple[Batching, ...] = ("off", "on")

MICRO_ROLES: tuple[RoleName, ...] = ("gateway", "job", "queue", "coordinator", "worker", "result")
# Design A: which services each role calls (see ARCHITECTURE.md, Design A).
CALLS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "gateway": ("job", "result", "coordinator"),
        "job": ("queue", "coordinator", "result"),
        "queue": (),
        "coordinator": ("queue", "job"),
        "worker": ("coordinator",),
        "result": (),
    }
)
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

# Payloads are capped at CoreConfig.max_payload_bytes (1 MiB by default); a message also carries the spec,
# labels and, for list pages, many jobs, so the transport limit is well above it.
MAX_MESSAGE_BYTES = 8 * 1024 * 1024
# CoreConfig.max_reply_bytes (what a reply's jobs may take) may not pass this: the rest of the limit is
# room for the envelope (issue 26: replies built over the limit after leasing)
MAX_REPLY_BYTES = MAX_MESSAGE_BYTES // 2

_EMPTY: Mapping[str, str] = MappingProxyType({})
_NAME_RANGE = re.compile(r"([A-Za-z][A-Za-z_-]*?)(\d+)\.\.\1(\d+)")
# Design B node count: DEFAULT_NODES unless told otherwise (local clusters, the Compose, Swarm and
# Kubernetes files); at least 1, and at most MAX_NODES, which keeps a full mesh of peers (every node
# keeps a channel to every other) and a local cluster's processes within reason
DEFAULT_NODES = 6
MAX_NODES = 100
_HOST_PORT = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")


def grpc_options() -> list[tuple[str, int]]:
    """Options for every gRPC server and channel in dtq.

    Keepalive pings find dead peers under idle long-polls (FetchWork, WaitJob); the receive side must
    accept pings at least as often as the send side makes them, or it answers GOAWAY "too_many_pings":
    Design B's peer channels ping every second (realsys/mono/peers.py), so servers accept a ping
    every 0.5 s (a margin for jitter: two early pings would close the connection).
    """
    return [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", 20_000),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_ping_interval_without_data_ms", 500),
        ("grpc.http2.max_ping_strikes", 2),
    ]


# On every channel: a peer that restarts is called again within about a second. gRPC's default
# reconnect backoff (1 s, growing by 1.6x to 120 s) leaves a channel failing calls at once
# ("connection refused") for seconds after its peer is back.
RECONNECT_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


# gRPC core sheds calls that arrive while its queue of calls the server has not started yet is long
# (random early detection between a soft and a hard limit, 1000 and 3000 by default): the caller gets
# CANCELLED before any handler runs. grpc.aio starts calls one by one from its loop, so a burst of
# 5,000 WaitJob long-polls lost 10-36% that way (issue 26, measured with a bare grpc.aio server too).
# Higher limits let bursts of long-polls in; a burst beyond them is still shed (README: CANCELLED).
SERVER_PENDING_CALLS = 5_000  # soft limit: below it no call is shed
SERVER_PENDING_CALLS_HARD = 10_000  # at or above it every new call is shed


def server_options() -> list[tuple[str, int]]:
    """grpc_options() plus what only a server takes: its backlog of calls not yet started."""
    return [
        *grpc_options(),
        ("grpc.server.max_pending_requests", SERVER_PENDING_CALLS),
        ("grpc.server.max_pending_requests_hard_limit", SERVER_PENDING_CALLS_HARD),
    ]


@dataclass(frozen=True, slots=True)
class SecurityConfig:
    """TLS and bearer tokens (realsys/security.py); all empty: plaintext, no auth (loopback default).

    PEM files are read at start-up by the server, not here. Tokens are kept out of repr (and so out of logs).
    """

    tls_cert: Path | None = None  # this node's certificate chain (PEM)
    tls_key: Path | None = None  # its private key (PEM)
    tls_ca: Path | None = None  # the CA that signed every node's certificate: channels verify with it
    client_tokens: tuple[str, ...] = field(default=(), repr=False)  # accepted on dtq.v1.TaskQueue
    # on dtq.v1.Workers, each "NAME:TOKEN" or "TOKEN"; a worker sends [0]. A worker token may act only
    # as worker NAME or NAME-<anything> (worker_token_name: a bare token's NAME is derived from it)
    worker_tokens: tuple[str, ...] = field(default=(), repr=False)
    internal_token: str = field(default="", repr=False)  # node-to-node hops; accepted on every service

    @property
    def tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def auth(self) -> bool:
        return bool(self.internal_token)

    @property
    def worker_name(self) -> str:
        """The worker identity of this process's worker token ("" without one)."""
        return split_worker_token(self.worker_tokens[0])[0] if self.worker_tokens else ""


def split_worker_token(entry: str) -> tuple[str, str]:
    """(NAME, TOKEN) of a DTQ_WORKER_TOKENS entry "NAME:TOKEN" or "TOKEN"; a bare token's NAME is "w"
    and 12 hex digits of its SHA-256 (so two workers with two tokens can never claim each other's ids)."""
    name, sep, token = entry.rpartition(":")
    if not sep:
        return "w" + hashlib.sha256(entry.encode()).hexdigest()[:12], entry
    return name, token


@dataclass(frozen=True, slots=True)
class TraceConfig:
    """OpenTelemetry traces of each job's hops (realsys/tracing.py); off unless a target is set.

    DTQ_TRACE_DIR: each process appends its spans, one JSON object a line, to DIR/<node>.spans.jsonl
    (read by `dtq trace JOB_ID --dir DIR`). DTQ_TRACE_OTLP: also export to an OTLP/gRPC collector at
    this endpoint (needs the opentelemetry-exporter-otlp-proto-grpc package)."""

    directory: Path | None = None
    otlp_endpoint: str = ""

    @property
    def enabled(self) -> bool:
        return self.directory is not None or bool(self.otlp_endpoint)


@dataclass(frozen=True, slots=True)
class NodeConfig:
    design: Design
    role: RoleName
    name: str  # job-id prefix and log name: mono "n1".."n6"; micro: the role name
    listen: str  # "127.0.0.1:0" binds an ephemeral port
    data_dir: Path  # sqlite files live here; the bound address is written to data_dir/<name>.addr
    store: Store
    slots: int  # worker slots in this process (micro worker: 12 by default; mono node: 2)
    core: CoreConfig
    peers: Mapping[str, str] = field(default_factory=lambda: _EMPTY)  # mono: node name -> address
    services: Mapping[str, str] = field(default_factory=lambda: _EMPTY)  # micro: role -> address
    metrics_port: int = 0  # 0: ephemeral, -1: off; the bound port goes to data_dir/<name>.metrics
    rpc_timeout: float = 5.0  # deadline on every internal hop
    fetch_wait: float = 5.0  # FetchWork long-poll
    steal_interval: float = 0.05  # mono: how often an idle node looks for work to steal
    steal_fanout: int = 0  # mono: peers a depth round asks, drawn at random (0: every peer)
    drain_timeout: float = 10.0  # SIGTERM grace
    log_level: str = "INFO"
    security: SecurityConfig = field(default_factory=SecurityConfig)
    # CPython's cyclic GC in a node process: "default"; "freeze" (gc.freeze() once started, so full
    # collections skip everything start-up made); "off" (gc.disable(): no pauses, cycles never freed;
    # for experiments, lab/diagnose.py)
    gc_mode: GcMode = "default"
    # modules imported before a worker runtime starts, so the job types they register with
    # @realsys.worker.job_type run here (DTQ_JOB_MODULES="pkg.mod,other.mod"; realsys/examples/jobs.py)
    job_modules: tuple[str, ...] = ()
    trace: TraceConfig = field(default_factory=TraceConfig)
    # Design A's transport: "off", one call per job on every internal hop (what sim/micro.py models);
    # "on", the per-job hops coalesced into batch calls (realsys/micro/base.py's Coalescer:
    # CreateJobs, CompleteAttempts, PutResults, the worker's ReportResults)
    batching: Batching = "off"


def default_slots(role: str) -> int:
    return {"worker": 12, "node": 2}.get(role, 0)


# ---------------------------------------------------------------------------- what each variable means
@dataclass(frozen=True, slots=True)
class Setting:
    """One DTQ_* variable of a node: its meaning, and its default: the NodeConfig `field`'s default,
    else `default` (the text load_config uses when the variable is unset), else `derived` (in words,
    for a default that depends on other settings)."""

    var: str
    meaning: str
    field: str = ""
    default: str = ""
    derived: str = ""

    def default_text(self) -> str:
        if self.field:
            value = _field_default(self.field)
            return value if isinstance(value, str) else repr(value)
        return self.derived or self.default


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "DTQ_ROLE", f"the process's role: {', '.join(MICRO_ROLES)} (Design A) or node (B)", derived="required"
    ),
    Setting("DTQ_DESIGN", "micro (Design A) or mono (Design B)", derived="mono for role node, else micro"),
    Setting("DTQ_NAME", "job-id prefix and log name", derived="the role (Design A); required for B, e.g. n1"),
    Setting("DTQ_LISTEN", "gRPC address host:port (port 0: any free one)", default="127.0.0.1:0"),
    Setting("DTQ_DATA_DIR", "SQLite files and <name>.addr / <name>.metrics go here", default="data"),
    Setting("DTQ_STORE", "sqlite (durable) or memory", default="sqlite"),
    Setting(
        "DTQ_SLOTS",
        "worker slots in this process",
        derived=", ".join(f"{r} {default_slots(r)}" for r in ("worker", "node")) + ", other roles 0",
    ),
    Setting("DTQ_PEERS", "Design B: every node, this one too: n1=host:port,... (or n1..n6=n{i}.dtq:50051)"),
    Setting("DTQ_SERVICES", "Design A: the roles this one calls: job=host:port,..."),
    Setting("DTQ_METRICS_PORT", "Prometheus /metrics port (0: any free one, -1: off)", field="metrics_port"),
    Setting("DTQ_RPC_TIMEOUT", "deadline of every internal hop (s)", field="rpc_timeout"),
    Setting("DTQ_FETCH_WAIT", "a worker's FetchWork long-poll (s)", field="fetch_wait"),
    Setting(
        "DTQ_STEAL_INTERVAL",
        "Design B: how often an idle node looks for work to steal (s)",
        field="steal_interval",
    ),
    Setting(
        "DTQ_STEAL_FANOUT", "Design B: peers one steal round asks, at random (0: all)", field="steal_fanout"
    ),
    Setting("DTQ_DRAIN_TIMEOUT", "SIGTERM: grace to finish running work (s)", field="drain_timeout"),
    Setting("DTQ_LOG_LEVEL", f"one of {', '.join(LOG_LEVELS)}", field="log_level"),
    Setting("DTQ_GC", f"CPython's cyclic GC: {', '.join(GC_MODES)}", field="gc_mode"),
    Setting(
        "DTQ_BATCHING",
        "Design A: on coalesces the per-job internal hops into batch calls (off: as the simulator models)",
        field="batching",
    ),
    Setting("DTQ_JOB_MODULES", "comma-separated modules whose @job_type handlers the worker imports"),
    Setting("DTQ_TRACE_DIR", "append each hop's span to DIR/<name>.spans.jsonl (off when unset)"),
    Setting("DTQ_TRACE_OTLP", "also export spans to this OTLP/gRPC collector host:port"),
    Setting("DTQ_TLS_CERT", "this node's certificate chain, PEM (with DTQ_TLS_KEY, DTQ_TLS_CA: TLS only)"),
    Setting("DTQ_TLS_KEY", "its private key, PEM"),
    Setting("DTQ_TLS_CA", "the CA that signed every node's certificate, PEM"),
    Setting("DTQ_CLIENT_TOKENS", "comma-separated tokens accepted on the client API (needs TLS)"),
    Setting("DTQ_WORKER_TOKENS", "comma-separated NAME:TOKEN or TOKEN accepted on the Workers API"),
    Setting("DTQ_INTERNAL_TOKEN", "the token of node-to-node hops (needed with any token)"),
)

# what each CoreConfig field means (its default is CoreConfig's): DTQ_<FIELD>
CORE_MEANINGS: Mapping[str, str] = MappingProxyType(
    {
        "lease_duration": "a lease lives this long past the latest heartbeat (s)",
        "heartbeat_interval": "what workers are told to use (s); shorter than the lease",
        "worker_ttl": "a worker silent this long is lost and its jobs released (s)",
        "default_execution_timeout": "a job's execution timeout when its spec gives none (s)",
        "max_execution_timeout": "the longest execution timeout a spec may ask for (s)",
        "default_max_attempts": "attempts when a spec gives none",
        "max_attempts_cap": "the most attempts a spec may ask for",
        "default_initial_backoff": "first retry delay when a spec gives none (s)",
        "default_max_backoff": "longest retry delay when a spec gives none (s)",
        "default_backoff_multiplier": "retry delay growth per attempt when a spec gives none",
        "backoff_jitter": "fraction of each retry delay drawn at random",
        "max_pending": "SubmitJob gets RESOURCE_EXHAUSTED beyond this many unfinished jobs (per owner)",
        "max_pending_bytes": "... or beyond this many payload bytes of unfinished jobs (per owner)",
        "max_payload_bytes": "largest payload a job may carry",
        "max_result_bytes": "largest output; a larger one fails its job (RESULT_TOO_LARGE)",
        "max_error_chars": "a worker's error message is cut to this length",
        "max_reply_bytes": "replies that carry payloads or many jobs end before this many bytes",
        "max_retained_bytes": "result bytes of finished jobs kept per owner (oldest dropped first)",
        "max_inline_result_bytes": "results above this size stay in the store, not in RAM",
        "max_worker_slots": "the most slots one worker's heartbeat may claim",
        "max_labels": "labels per job",
        "max_label_chars": "characters per label key or value",
        "default_page_size": "ListJobs page size when a request gives none",
        "max_page_size": "ListJobs page size cap",
        "reservation_hold": "queue reservations not acknowledged in time return to the queue (s)",
        "result_ttl": "finished jobs are dropped this long after they end (s; 0: never)",
        "max_retained_jobs": "finished jobs kept per owner (oldest dropped first)",
        "policy": "scheduling policy, per owner: fifo, fair, concurrency or ratelimit (model/policies.py)",
        "policy_key": "the job label whose value keys a job for the policy (jobs without it share one key)",
        "policy_weights": "fair: KEY=WEIGHT,... (keys not named weigh 1), e.g. x=1,y=4",
        "policy_limit": "concurrency: running jobs per key (per owner)",
        "policy_rate": "ratelimit: dispatches per second per key (per owner)",
        "policy_burst": "ratelimit: the token bucket's depth (dispatches at once)",
        "estimate_window": "GetJobStatus estimates start/end times from the mean of this many "
        "latest service times (0: off)",
    }
)


def _field_default(name: str) -> Any:
    """The default of NodeConfig field `name` (the one place it is written)."""
    return next(f.default for f in dataclasses.fields(NodeConfig) if f.name == name)


def _setting_default(var: str) -> str:
    return next(s.default for s in SETTINGS if s.var == var)


def core_settings() -> list[Setting]:
    """A Setting for every CoreConfig field, DTQ_<FIELD>, with CoreConfig's default."""
    defaults = CoreConfig()
    return [
        Setting(_core_var(f.name), CORE_MEANINGS.get(f.name, ""), default=repr(getattr(defaults, f.name)))
        for f in dataclasses.fields(CoreConfig)
    ]


def settings_help(width: int = 100) -> str:
    """Every DTQ_* variable a node reads, with its default and meaning (`dtq serve --help`)."""
    lines: list[str] = []
    for title, settings in (
        ("node settings (environment variables):", SETTINGS),
        ("core settings (model/config.py CoreConfig: field f is DTQ_<F>):", core_settings()),
    ):
        lines.append(title)
        for s in settings:
            default = s.default_text()
            tail = "[required]" if default == "required" else f"[default: {default or 'unset'}]"
            lines.extend(textwrap.wrap(f"  {s.var}: {s.meaning} {tail}", width, subsequent_indent="      "))
    return "\n".join(lines)


def misspelt_settings(env: Mapping[str, str]) -> list[str]:
    """One line for each DTQ_* name in `env` that is no node setting but close to one (a likely typo,
    which load_config would otherwise ignore in silence); other DTQ_* names (the client's DTQ_TOKEN,
    the deploy and baseline tools' variables) are not a node's business and pass."""
    known = [s.var for s in (*SETTINGS, *core_settings())]
    lines: list[str] = []
    for name in sorted(env):
        if name.startswith("DTQ_") and name not in known:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
            if close:
                lines.append(f"{name} is not a setting (did you mean {close[0]}?); ignored")
    return lines


# ---------------------------------------------------------------------------- loading
def load_config(env: Mapping[str, str]) -> NodeConfig:
    """Builds and validates a NodeConfig from `DTQ_*` variables; InvalidArgument names what is wrong."""
    role = _choice(env, "DTQ_ROLE", (*MICRO_ROLES, "node"), None)
    design = _choice(env, "DTQ_DESIGN", ("micro", "mono"), "mono" if role == "node" else "micro")
    if design == "mono" and role != "node":
        raise InvalidArgument(f"DTQ_ROLE={role!r} is a micro role; DTQ_DESIGN=mono runs role 'node'")
    if design == "micro" and role == "node":
        raise InvalidArgument(f"DTQ_DESIGN=micro needs DTQ_ROLE in {', '.join(MICRO_ROLES)}, not 'node'")

    name = env.get("DTQ_NAME", "" if design == "mono" else role)
    if not name:
        raise InvalidArgument("DTQ_NAME is required for DTQ_DESIGN=mono (e.g. n1)")
    try:
        validate_node_name(name)
    except InvalidArgument as exc:
        raise InvalidArgument(f"DTQ_NAME: {exc.message}") from None

    listen = check_address(env.get("DTQ_LISTEN", _setting_default("DTQ_LISTEN")), "DTQ_LISTEN")
    data_dir = env.get("DTQ_DATA_DIR", _setting_default("DTQ_DATA_DIR"))
    if not data_dir:
        raise InvalidArgument("DTQ_DATA_DIR must not be empty")
    store = _choice(env, "DTQ_STORE", ("sqlite", "memory"), _setting_default("DTQ_STORE"))
    slots = _number(env, "DTQ_SLOTS", int, default_slots(role), minimum=0)

    peers = _address_map(env.get("DTQ_PEERS", ""), "DTQ_PEERS")
    services = _address_map(env.get("DTQ_SERVICES", ""), "DTQ_SERVICES")
    for peer in peers:
        try:
            validate_node_name(peer)
        except InvalidArgument as exc:
            raise InvalidArgument(f"DTQ_PEERS: {exc.message}") from None
    for service in services:  # the worker serves only health, but a launcher may list every role
        if service not in MICRO_ROLES:
            raise InvalidArgument(f"DTQ_SERVICES: unknown role {service!r}; known: {', '.join(MICRO_ROLES)}")
    if design == "mono" and name not in peers:
        raise InvalidArgument(f"DTQ_PEERS must list this node ({name}) too, e.g. {name}=127.0.0.1:5001")
    if design == "micro":
        missing = [s for s in CALLS[role] if s not in services]
        if missing:
            raise InvalidArgument(f"role {role} calls {', '.join(missing)}: add to DTQ_SERVICES")

    core = _core_config(env)
    if design == "micro":
        try:
            queue_service_policy(core.policy_settings)
        except InvalidArgument as exc:
            raise InvalidArgument(f"DTQ_POLICY: {exc.message}") from None
    if core.max_reply_bytes > MAX_REPLY_BYTES:
        raise InvalidArgument(
            f"DTQ_MAX_REPLY_BYTES must be at most {MAX_REPLY_BYTES} (half the {MAX_MESSAGE_BYTES}-byte "
            f"message limit: room for a reply's envelope), got {core.max_reply_bytes}"
        )
    if slots > core.max_worker_slots:
        raise InvalidArgument(
            f"DTQ_SLOTS ({slots}) must not exceed DTQ_MAX_WORKER_SLOTS ({core.max_worker_slots})"
        )

    security = _security_config(env)
    clash = sorted({split_worker_token(w)[0] for w in security.worker_tokens} & set(peers))
    if clash:
        raise InvalidArgument(
            f"DTQ_WORKER_TOKENS: the worker name {clash[0]!r} is a node's name: a token with it could act "
            f"as that node's own worker ({clash[0]}-w)"
        )

    log_level = env.get("DTQ_LOG_LEVEL", _field_default("log_level")).upper()
    if log_level not in LOG_LEVELS:
        raise InvalidArgument(f"DTQ_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {log_level!r}")

    return NodeConfig(
        design=cast(Design, design),
        role=cast(RoleName, role),
        name=name,
        listen=listen,
        data_dir=Path(data_dir),
        store=cast(Store, store),
        slots=slots,
        core=core,
        peers=MappingProxyType(peers),
        services=MappingProxyType(services),
        metrics_port=_number(
            env, "DTQ_METRICS_PORT", int, _field_default("metrics_port"), minimum=-1, maximum=65535
        ),
        rpc_timeout=_number(env, "DTQ_RPC_TIMEOUT", float, _field_default("rpc_timeout"), positive=True),
        fetch_wait=_number(env, "DTQ_FETCH_WAIT", float, _field_default("fetch_wait"), minimum=0.0),
        steal_interval=_number(
            env, "DTQ_STEAL_INTERVAL", float, _field_default("steal_interval"), positive=True
        ),
        steal_fanout=_number(env, "DTQ_STEAL_FANOUT", int, _field_default("steal_fanout"), minimum=0),
        drain_timeout=_number(env, "DTQ_DRAIN_TIMEOUT", float, _field_default("drain_timeout"), minimum=0.0),
        log_level=log_level,
        security=security,
        gc_mode=cast(GcMode, _choice(env, "DTQ_GC", GC_MODES, _field_default("gc_mode"))),
        batching=cast(Batching, _choice(env, "DTQ_BATCHING", BATCHING, _field_default("batching"))),
        job_modules=_module_names(env.get("DTQ_JOB_MODULES", ""), "DTQ_JOB_MODULES"),
        trace=_trace_config(env),
    )


def config_to_env(config: NodeConfig) -> dict[str, str]:
    """The inverse of load_config: `load_config(config_to_env(c)) == c` for every valid config."""
    env = {
        "DTQ_DESIGN": config.design,
        "DTQ_ROLE": config.role,
        "DTQ_NAME": config.name,
        "DTQ_LISTEN": config.listen,
        "DTQ_DATA_DIR": str(config.data_dir),
        "DTQ_STORE": config.store,
        "DTQ_SLOTS": str(config.slots),
        "DTQ_PEERS": ",".join(f"{k}={v}" for k, v in config.peers.items()),
        "DTQ_SERVICES": ",".join(f"{k}={v}" for k, v in config.services.items()),
        "DTQ_METRICS_PORT": str(config.metrics_port),
        "DTQ_RPC_TIMEOUT": repr(config.rpc_timeout),
        "DTQ_FETCH_WAIT": repr(config.fetch_wait),
        "DTQ_STEAL_INTERVAL": repr(config.steal_interval),
        "DTQ_STEAL_FANOUT": str(config.steal_fanout),
        "DTQ_DRAIN_TIMEOUT": repr(config.drain_timeout),
        "DTQ_LOG_LEVEL": config.log_level,
        "DTQ_GC": config.gc_mode,
        "DTQ_BATCHING": config.batching,
    }
    if config.job_modules:
        env["DTQ_JOB_MODULES"] = ",".join(config.job_modules)
    if config.trace.directory is not None:
        env["DTQ_TRACE_DIR"] = str(config.trace.directory)
    if config.trace.otlp_endpoint:
        env["DTQ_TRACE_OTLP"] = config.trace.otlp_endpoint
    for f in dataclasses.fields(CoreConfig):
        value = getattr(config.core, f.name)
        env[_core_var(f.name)] = value if isinstance(value, str) else repr(value)
    env.update(_security_env(config.security))
    return env


def address_host(address: str) -> str:
    """The host part of "host:port" ("[::1]:5000" -> "::1")."""
    host = address.rsplit(":", 1)[0]
    return host[1:-1] if host.startswith("[") else host


def address_port(address: str) -> int:
    return int(address.rsplit(":", 1)[1])


# ---------------------------------------------------------------------------- helpers
N = TypeVar("N", int, float)


def _core_var(field_name: str) -> str:
    return "DTQ_" + field_name.upper()


def _core_config(env: Mapping[str, str]) -> CoreConfig:
    defaults = CoreConfig()
    values: dict[str, int | float | str] = {}
    for f in dataclasses.fields(CoreConfig):
        var, default = _core_var(f.name), getattr(defaults, f.name)
        # annotations are strings here (postponed evaluation)
        if f.type in ("str", str):
            values[f.name] = env.get(var, default).strip()
        elif f.type in ("int", int):
            values[f.name] = _number(env, var, int, default)
        else:
            values[f.name] = _number(env, var, float, default)
    try:
        return CoreConfig(**values)  # type: ignore[arg-type]
    except InvalidArgument as exc:
        raise InvalidArgument(f"core config (DTQ_*): {exc.message}") from None


def _choice(env: Mapping[str, str], var: str, allowed: tuple[str, ...], default: str | None) -> str:
    value = env.get(var, default)
    if value is None:
        raise InvalidArgument(f"{var} is required: one of {', '.join(allowed)}")
    if value not in allowed:
        raise InvalidArgument(f"{var} must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _number(
    env: Mapping[str, str],
    var: str,
    kind: Callable[[str], N],
    default: N,
    minimum: N | None = None,
    maximum: N | None = None,
    positive: bool = False,
) -> N:
    raw = env.get(var)
    if raw is None:
        return default
    try:
        value = kind(raw.strip())
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise InvalidArgument(f"{var} must be {what}, got {raw!r}") from None
    if not math.isfinite(value):
        raise InvalidArgument(f"{var} must be finite, got {raw!r}")
    if positive and not value > 0:
        raise InvalidArgument(f"{var} must be > 0, got {raw!r}")
    if minimum is not None and value < minimum:
        raise InvalidArgument(f"{var} must be >= {minimum}, got {raw!r}")
    if maximum is not None and value > maximum:
        raise InvalidArgument(f"{var} must be <= {maximum}, got {raw!r}")
    return value


def check_address(value: str, var: str) -> str:
    match = _HOST_PORT.match(value)
    if match is None or int(match.group(1)) > 65535:
        raise InvalidArgument(
            f"{var}: address {value!r} must be host:port (port 0-65535, IPv6 as [::1]:port)"
        )
    return value


_TOKEN = re.compile(r"^[A-Za-z0-9._~+/=-]{16,4096}$")  # RFC 6750 b64token, and not guessable-short
_WORKER_NAME = re.compile(r"^[a-z][a-z0-9]{0,31}$")  # no "-": NAME-<suffix> ids stay unambiguous
_TOKEN_VARS = ("DTQ_CLIENT_TOKENS", "DTQ_WORKER_TOKENS", "DTQ_INTERNAL_TOKEN")


def _tokens(env: Mapping[str, str], var: str, named: bool = False) -> tuple[str, ...]:
    """The comma-separated tokens of `var`; with `named`, each may be "NAME:TOKEN" (worker tokens)."""
    tokens = tuple(filter(None, (t.strip() for t in env.get(var, "").split(","))))
    names: set[str] = set()
    for number, entry in enumerate(tokens, 1):
        name, token = split_worker_token(entry) if named else ("", entry)
        if _TOKEN.match(token) is None:  # the message never quotes the token
            raise InvalidArgument(
                f"{var}: token #{number} must be 16-4096 characters of A-Z a-z 0-9 . _ ~ + / = -"
                + (", after an optional NAME:" if named else "")
            )
        if named and _WORKER_NAME.match(name) is None:
            raise InvalidArgument(
                f"{var}: token #{number}: the worker name must match {_WORKER_NAME.pattern}"
            )
        if named and name in names:
            raise InvalidArgument(f"{var}: the worker name {name!r} is given twice: one identity per token")
        names.add(name)
    return tokens


def _security_config(env: Mapping[str, str]) -> SecurityConfig:
    paths = {var: env.get(var, "").strip() for var in ("DTQ_TLS_CERT", "DTQ_TLS_KEY", "DTQ_TLS_CA")}
    cert, key, ca = paths["DTQ_TLS_CERT"], paths["DTQ_TLS_KEY"], paths["DTQ_TLS_CA"]
    if cert and not key:
        raise InvalidArgument(
            "DTQ_TLS_CERT is set but DTQ_TLS_KEY is not: a certificate needs its private key"
        )
    if key and not cert:
        raise InvalidArgument("DTQ_TLS_KEY is set but DTQ_TLS_CERT is not: give the certificate too")
    if cert and not ca:
        raise InvalidArgument("DTQ_TLS_CA is required with DTQ_TLS_CERT: nodes verify each other with it")
    if ca and not cert:
        raise InvalidArgument(
            "DTQ_TLS_CA is set without DTQ_TLS_CERT/DTQ_TLS_KEY: the node would serve plaintext"
        )
    client, worker = _tokens(env, "DTQ_CLIENT_TOKENS"), _tokens(env, "DTQ_WORKER_TOKENS", named=True)
    internal = _tokens(env, "DTQ_INTERNAL_TOKEN")
    if len(internal) > 1:
        raise InvalidArgument("DTQ_INTERNAL_TOKEN takes one token")
    if (client or worker) and not internal:
        raise InvalidArgument(
            "DTQ_INTERNAL_TOKEN is required with DTQ_CLIENT_TOKENS/DTQ_WORKER_TOKENS: nodes authenticate "
            "to each other with it"
        )
    if internal and not cert:
        raise InvalidArgument(
            "bearer tokens need TLS (DTQ_TLS_CERT, DTQ_TLS_KEY, DTQ_TLS_CA): over plaintext they can be read"
        )
    every = [*client, *(split_worker_token(w)[1] for w in worker), *internal]
    if len(set(every)) != len(every):
        raise InvalidArgument(f"a token is given twice in {', '.join(_TOKEN_VARS)}: each kind needs its own")
    return SecurityConfig(
        tls_cert=Path(cert) if cert else None,
        tls_key=Path(key) if key else None,
        tls_ca=Path(ca) if ca else None,
        client_tokens=client,
        worker_tokens=worker,
        internal_token=internal[0] if internal else "",
    )


def _security_env(security: SecurityConfig) -> dict[str, str]:
    """Only what is set: an insecure node's environment is unchanged."""
    values = {
        "DTQ_TLS_CERT": str(security.tls_cert or ""),
        "DTQ_TLS_KEY": str(security.tls_key or ""),
        "DTQ_TLS_CA": str(security.tls_ca or ""),
        "DTQ_CLIENT_TOKENS": ",".join(security.client_tokens),
        "DTQ_WORKER_TOKENS": ",".join(security.worker_tokens),
        "DTQ_INTERNAL_TOKEN": security.internal_token,
    }
    return {var: value for var, value in values.items() if value}


_MODULE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")


def _module_names(value: str, var: str) -> tuple[str, ...]:
    """Comma-separated dotted module names (importable: checked when a worker imports them)."""
    names = tuple(dict.fromkeys(filter(None, (part.strip() for part in value.split(",")))))
    for name in names:
        if _MODULE.match(name) is None:
            raise InvalidArgument(f"{var}: {name!r} is not a module name (e.g. mypkg.jobs)")
    return names


def _trace_config(env: Mapping[str, str]) -> TraceConfig:
    directory = env.get("DTQ_TRACE_DIR", "").strip()
    endpoint = env.get("DTQ_TRACE_OTLP", "").strip()
    if endpoint and _HOST_PORT.match(endpoint.split("://", 1)[-1]) is None:
        raise InvalidArgument(f"DTQ_TRACE_OTLP: {endpoint!r} must be host:port or http(s)://host:port")
    return TraceConfig(directory=Path(directory) if directory else None, otlp_endpoint=endpoint)


def _address_map(value: str, var: str) -> dict[str, str]:
    """Parses "a=host:port,b=host:port"; empty means none. An item may also be a range of numbered
    names, "n1..n12=n{i}.dtq:50051": every name n1 to n12, `{i}` in the address replaced by its
    number (how an orchestrator's files name N nodes in one line)."""
    result: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in value.split(","))):
        key, sep, address = item.partition("=")
        key, address = key.strip(), address.strip()
        if not sep or not key:
            raise InvalidArgument(f"{var}: {item!r} must be name=host:port")
        for name, one in _expand(key, address, var):
            if name in result:
                raise InvalidArgument(f"{var}: {name!r} is given twice")
            result[name] = check_address(one, var)
    return result


def _expand(key: str, address: str, var: str) -> list[tuple[str, str]]:
    """One `name=address` item, or the names and addresses of a range item (see _address_map)."""
    if ".." not in key:
        return [(key, address)]
    match = _NAME_RANGE.fullmatch(key)
    if match is None:
        raise InvalidArgument(f"{var}: range {key!r} must be like n1..n12 (one prefix, two numbers)")
    prefix, first, last = match.group(1), int(match.group(2)), int(match.group(3))
    if not 1 <= first <= last or last - first + 1 > MAX_NODES:
        raise InvalidArgument(f"{var}: range {key!r} must count up from >= 1, at most {MAX_NODES} names")
    if "{i}" not in address:
        raise InvalidArgument(f"{var}: range {key!r} needs {{i}} (the number) in its address: {address!r}")
    return [(f"{prefix}{i}", address.replace("{i}", str(i))) for i in range(first, last + 1)]
