"""Every simulator parameter's key, and what an override of it means: the one grammar that `dtq sim
--set`, sweep grids, a validation file's `sim_overrides` and `SimParams.with_overrides` share.

    KEY=VALUE                       the value itself (type-checked: int, number, true/false, string)
    DIST=0.002                      a distribution replaced by a constant (seconds)
    DIST=exponential(0.002)         ... by a parametric one: constant(m), exponential(m),
    DIST=lognormal(0.002, 0.5)          lognormal(m, sigma) (mean m in seconds), or a mapping
                                        {"kind": ..., "mean": ..., "sigma": ..., "samples": [...]}
    DIST.scale=2                    every duration (every sample of a measured one) times 2
    DIST.shift=0.001                every duration plus 1 ms (negative while none goes below 0)
    DIST.mean=0.005                 the same shape rescaled to mean 5 ms (= DIST.scale=0.005/mean);
                                        on a constant, its value
    DIST.sigma=0.8                  a lognormal's sigma (its mean kept); other kinds refuse it

A distribution key (DIST) is one of DIST_FIELDS or `service.<role>.<method>`; `per_item.<role>.<method>`
is seconds per item, `per_byte.<role>.<method>` (and `per_byte.commit`) seconds per payload byte,
`core.<field>` a model.config.CoreConfig field. Overrides apply in the order
given. An unknown key, a key no design reads (or that the design being run does not), and a value of
the wrong type are errors naming the key and the nearest valid ones.

The service and per-item methods below are the ones sim/mono.py, sim/micro.py and sim/worker.py
charge (tests/sim/test_keys.py checks them against what runs charge); a method without its own entry
costs its role's `*` entry.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from model.config import CoreConfig
from model.errors import InvalidArgument
from sim.placeholders import DEFAULT_METHOD, ROLES

MICRO, MONO = "micro", "mono"
BOTH = (MICRO, MONO)
DIST_OPS = ("scale", "shift", "mean", "sigma")

SERVICE_METHODS: Mapping[str, tuple[str, ...]] = {
    "node": (
        "SubmitJob", "GetJobStatus", "GetJobResult", "CancelJob", "ListJobs", "ListJobs.merge",
        "ListLocalJobs", "WaitJob", "WaitJob.wake", "QueueDepth", "StealWork", "ReportResult",
        "WorkerHeartbeat", "fetch", "heartbeat", "report", "launch", "finish", "forward", "steal_plan",
        "timer",
    ),
    "gateway": (
        "SubmitJob", "GetJobStatus", "GetJobResult", "CancelJob", "WaitJob", "ListJobs", "ListJobs.relay",
    ),
    "job": (
        "CreateJob", "GetJobStatus", "GetJob", "CancelJob", "WaitJob", "WaitJob.wake", "ListJobs",
        "LeaseJobs", "RenewLeases", "CompleteAttempt", "ReleaseWorker", "flush", "sweep", "timer",
    ),
    "queue": ("Enqueue", "Reserve", "Reserve.wake", "Ack", "timer"),
    "coordinator": ("FetchWork", "WorkerHeartbeat", "ReportResult", "NotifyCancel", "timer"),
    "result": ("GetResult", "PutResult"),
    "worker": ("launch", "finish"),
}  # fmt: skip
PER_ITEM_METHODS: Mapping[str, tuple[str, ...]] = {
    "node": ("ListJobs.merge", "ListLocalJobs", "StealWork", "WorkerHeartbeat", "fetch", "heartbeat"),
    "gateway": ("ListJobs.relay",),
    "job": ("LeaseJobs", "ListJobs", "RenewLeases", "flush", "sweep"),
    "queue": ("Ack", "Enqueue", "Reserve", "Reserve.wake"),
}
# the bursts that move a job's payload (sim/cpu.py Proc.byte_cost); "loadgen" is the generator's side
PER_BYTE_METHODS: Mapping[str, tuple[str, ...]] = {
    "loadgen": ("SubmitJob",),
    "node": ("SubmitJob", "StealWork", "launch"),
    "gateway": ("SubmitJob",),
    "job": ("CreateJob", "LeaseJobs"),
    "coordinator": ("FetchWork",),
    "worker": ("launch",),
}
ROLE_DESIGNS: Mapping[str, tuple[str, ...]] = {
    role: (MONO,) if role == "node" else (MICRO,) for role in ROLES
}


@dataclass(frozen=True, slots=True)
class Key:
    """One parameter: `kind` int | float | bool | str | dist | pairs | core; `label`: recorded in
    config.json and run ids but read by no design (it names, it does not change a prediction)."""

    name: str
    kind: str
    unit: str
    doc: str
    designs: tuple[str, ...] = BOTH
    label: bool = False
    cost: bool = False  # a cost a calibration measures (else one of the real system's settings)


def _k(name: str, kind: str, unit: str, doc: str, designs: tuple[str, ...] = BOTH, **kw: Any) -> Key:
    return Key(name, kind, unit, doc, designs, **kw)


# SimParams' own fields (not core, service, per_item), in its order
FIELDS: Mapping[str, Key] = {
    k.name: k
    for k in (
        _k("name", "str", "", "the calibration's name, recorded in config.json", label=True),
        _k("cores", "int", "cores", "cores per host"),
        _k("hosts", "int", "hosts", "hosts; processes are placed in creation order, procs_per_host each"),
        _k("procs_per_host", "int", "processes", "processes per host (0: all on host 0)"),
        _k("nodes", "int", "nodes", "Design B node count", (MONO,)),
        _k("slots", "int", "slots", "total worker slots (Design B splits them evenly)"),
        _k(
            "node_slots",
            "int",
            "slots",
            "Design B slots per node when > 0 (instead of slots // nodes)",
            (MONO,),
        ),
        _k("store", "str", "", "the store the commit costs were measured on (recorded only)", label=True),
        _k("fetch_wait", "float", "s", "the worker's FetchWork long-poll"),
        _k("steal_interval", "float", "s", "an idle node's QueueDepth round at most this often", (MONO,)),
        _k("max_idle_poll", "float", "s", "... backing off to this when rounds steal nothing", (MONO,)),
        _k("steal_fanout", "int", "peers", "peers a depth round asks, at random (0: every peer)", (MONO,)),
        _k("min_empty_poll", "float", "s", "worker runtime: pause after an empty fetch this fast"),
        _k("wait_poll", "float", "s", "the load generator's WaitJob long-poll"),
        _k("sweep_interval", "float", "s", "Design A job service sweep (0: as realsys)", (MICRO,)),
        _k("rpc_timeout", "float", "s", "Design A internal call deadline", (MICRO,)),
        _k("loadgen_processes", "int", "processes", "load generator processes"),
        _k("loadgen_host", "int", "host", "the host the load generator runs on"),
        _k("track_jobs", "bool", "", "one WaitJob waiter per accepted job, as the real generator"),
        _k("max_waiters", "int", "waiters", "concurrent WaitJob waiters per generator process"),
        _k("list_page_size", "int", "jobs", "ListJobs page size"),
        _k("drain", "float", "s", "after the trace: time for outstanding requests and jobs"),
        _k("client_call", "dist", "s", "caller CPU per internal RPC, send + receive", cost=True),
        _k("wakeup", "dist", "s", "CPU a sleeping loop spends to take an event (0: off)", cost=True),
        _k("wakeup_idle", "pairs", "[s, x]", "(idle seconds, factor on wakeup) pairs", cost=True),
        _k("client_send_fraction", "float", "fraction", "of client_call, spent before the request leaves"),
        _k("network", "dist", "s", "one-way hop latency", cost=True),
        _k("host_hop", "dist", "s", "one way, added to network between hosts (needs hosts > 1)", cost=True),
        _k("commit", "dist", "s", "one storage transaction", cost=True),
        _k("commit_per_row", "float", "s/row", "storage time per row written", cost=True),
        _k("loadgen_request", "dist", "s", "load generator CPU per request", cost=True),
        _k("checkpoint", "dist", "s", "SQLite WAL checkpoint CPU per checkpoint (0: off)", cost=True),
        _k("checkpoint_interval", "float", "s", "time between WAL checkpoints (needs checkpoint > 0)"),
        _k("cpu_slice", "float", "s", "> 0: cores shared as the kernel's fair scheduler (0: FIFO bursts)"),
        _k("rpc_thread", "dist", "s", "gRPC's threads' CPU per call served, beside the loop", cost=True),
        _k("rpc_thread_client", "dist", "s", "gRPC's threads' CPU per call made, beside the loop", cost=True),
        _k(
            "wakeup_warm_handover", "bool", "", "a loop that queues for a core takes it warm (no cold factor)"
        ),
        _k(
            "wakeup_idle_scope",
            "str",
            "",
            "whose idle sets wakeup_idle: process, host or overlap (sim/README.md)",
        ),
        _k("background_procs", "int", "processes", "per host: processes outside the cluster (0: off)"),
        _k("background_run", "dist", "s", "a background process's CPU run between sleeps"),
        _k("background_sleep", "dist", "s", "a background process's sleep between runs"),
        _k("background_chunk", "float", "s", "a background run's bursts (a fair host preempts between them)"),
    )
}
DIST_FIELDS = tuple(name for name, k in FIELDS.items() if k.kind == "dist")
_CORE_DEFAULTS = CoreConfig()
_UNITLESS = ("default_backoff_multiplier", "backoff_jitter", "policy_burst")


def _core_key(f: dataclasses.Field[Any]) -> Key:
    value = getattr(_CORE_DEFAULTS, f.name)
    kind = {bool: "bool", int: "int", str: "str"}.get(type(value), "float")
    unit = "bytes" if f.name.endswith("_bytes") else "chars" if f.name.endswith("_chars") else ""
    if f.name == "policy_rate":
        unit = "1/s"
    elif kind == "float" and not unit and f.name not in _UNITLESS:
        unit = "s"
    return Key(f"core.{f.name}", kind, unit, "model.config.CoreConfig (the real system's core setting)")


CORE_KEYS: Mapping[str, Key] = {k.name: k for k in map(_core_key, dataclasses.fields(CoreConfig))}


def service_key(role: str, method: str) -> Key:
    return Key(
        f"service.{role}.{method}",
        "dist",
        "s",
        f"{role} CPU per {method}" if method != DEFAULT_METHOD else f"{role}: every method without its own",
        ROLE_DESIGNS[role],
        cost=True,
    )


def per_item_key(role: str, method: str) -> Key:
    doc = f"{role} CPU per item of {method}"
    return Key(f"per_item.{role}.{method}", "float", "s/item", doc, ROLE_DESIGNS[role], cost=True)


def per_byte_key(role: str, method: str) -> Key:
    if role == "commit":
        doc = "the store's CPU per payload byte it writes"
        return Key("per_byte.commit", "float", "s/byte", doc, cost=True)
    designs = ROLE_DESIGNS.get(role, BOTH)
    doc = f"{role} CPU per payload byte of {method}"
    return Key(f"per_byte.{role}.{method}", "float", "s/byte", doc, designs, cost=True)


SERVICE_KEYS: Mapping[str, Key] = {
    k.name: k
    for role in ROLES
    for k in (service_key(role, m) for m in (DEFAULT_METHOD, *SERVICE_METHODS.get(role, ())))
}
PER_ITEM_KEYS: Mapping[str, Key] = {
    k.name: k for role, methods in PER_ITEM_METHODS.items() for k in (per_item_key(role, m) for m in methods)
}
PER_BYTE_KEYS: Mapping[str, Key] = {
    k.name: k
    for k in (
        per_byte_key("commit", ""),
        *(per_byte_key(role, m) for role, methods in PER_BYTE_METHODS.items() for m in methods),
    )
}
KEYS: Mapping[str, Key] = {**FIELDS, **CORE_KEYS, **SERVICE_KEYS, **PER_ITEM_KEYS, **PER_BYTE_KEYS}


@dataclass(frozen=True, slots=True)
class Target:
    """What an override key names: `key` (in KEYS) and the distribution operation, if any."""

    key: Key
    op: str = ""

    @property
    def text(self) -> str:
        return f"{self.key.name}.{self.op}" if self.op else self.key.name


def every_key() -> list[str]:
    """Every key an override may name, distribution operations included."""
    out: list[str] = []
    for name, key in KEYS.items():
        out.append(name)
        if key.kind == "dist":
            out += [f"{name}.{op}" for op in DIST_OPS]
    return out


def nearest(name: str, candidates: Iterable[str] | None = None, n: int = 3) -> list[str]:
    pool = list(candidates) if candidates is not None else every_key()
    found = difflib.get_close_matches(name, pool, n=n, cutoff=0.6)
    if not found:  # a wrong last part (e.g. service.node.Submit): the keys that share the rest
        head = name.rpartition(".")[0]
        found = difflib.get_close_matches(
            name, [k for k in pool if k.startswith(head + ".")], n=n, cutoff=0.3
        )
    return found


def _unknown(name: str, why: str = "unknown simulator parameter") -> InvalidArgument:
    near = nearest(name)
    hint = f"; nearest: {', '.join(near)}" if near else "; `dtq sim params` lists every key"
    if name.startswith("workload."):  # a sweep's grid takes these; --set and params do not
        hint = "; the workload's fields are set in its file (or varied by a sweep file's grid)"
    return InvalidArgument(f"{why} {name!r}{hint}")


def target(name: str) -> Target:
    """The key and operation `name` names, or InvalidArgument naming the nearest valid keys."""
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f"a parameter key is a non-empty string, got {name!r}")
    key = KEYS.get(name)
    if key is not None:
        return Target(key)
    head, _, op = name.rpartition(".")
    key = KEYS.get(head)
    if key is not None:
        if key.kind == "dist" and op in DIST_OPS:
            return Target(key, op)
        if key.kind == "dist" and op in ("kind", "samples"):
            raise InvalidArgument(
                f"{name}: replace the whole distribution instead ({head}=exponential(0.002), "
                f"{head}=lognormal(0.002, 0.5), or a mapping with kind and samples)"
            )
        if key.kind != "dist":
            raise InvalidArgument(
                f"{name}: {head} is a {key.kind} ({key.unit or 'no unit'}), set it: {head}=..."
            )
    parts = name.split(".")
    if parts[0] in ("service", "per_item", "per_byte") and len(parts) >= 3 and parts[1] not in ROLES:
        raise _unknown(name, f"unknown role {parts[1]!r} (roles: {', '.join(ROLES)}) in")
    raise _unknown(name)


def flatten(overrides: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Overrides as (dotted key, value) in order: `core`, `service`, `per_item` and `per_byte` given
    as mappings ({"core": {"lease_duration": 5}}, {"service": {"node": {"SubmitJob": 3e-4}}}) become
    dotted keys."""
    if not isinstance(overrides, Mapping):
        raise InvalidArgument(f"overrides are a mapping of key -> value, got {type(overrides).__name__}")
    out: list[tuple[str, Any]] = []
    for raw, value in overrides.items():
        name = str(raw)
        if name in ("core", "per_item", "per_byte") and isinstance(value, Mapping):
            out += [(f"{name}.{k}", v) for k, v in value.items()]
        elif name == "service" and isinstance(value, Mapping):
            for role, methods in value.items():
                if not isinstance(methods, Mapping):
                    raise InvalidArgument(f"service.{role}: expected a mapping of method -> distribution")
                out += [(f"service.{role}.{m}", d) for m, d in methods.items()]
        else:
            out.append((name, value))
    return out


def design_check(names: Iterable[str], designs: Iterable[str]) -> None:
    """InvalidArgument for a key none of `designs` reads (e.g. `nodes` for Design A alone)."""
    wanted = set(designs)
    for name in names:
        key = target(name).key
        if not wanted & set(key.designs):
            which = ", ".join(sorted(wanted))
            only = " and ".join(key.designs)
            raise InvalidArgument(f"{name} has no effect on {which}: only {only} reads it")
