"""The simulator's model parameters: frozen dataclasses, loaded from a mapping (a calibration file
`data/calibration/<name>.json`, or `--set key=value` overrides). Changing a parameter never needs code.

What the parameters describe is what the real world adds around the shared core (model/):
- CPU time a process spends serving each RPC method (server side), per role;
- CPU time a caller spends on each outgoing internal RPC (client side: serialize, send, receive);
- one-way network latency per hop, storage commit time, the load generator's CPU per request;
- the machine: cores per host, and which processes share them (one event loop = one GIL each);
- the real system's own knobs (core config, long-poll waits, steal interval, slots, node count).

Before a calibration exists the simulator runs on sim/placeholders.py's round numbers, which are NOT
measurements; a calibration replaces all of them.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from model.config import CoreConfig
from model.errors import InvalidArgument
from model.results.documents import read_document
from model.runtime import MIN_EMPTY_POLL
from sim.dist import ZERO, Dist
from sim.hostscale import HostScale, median_probe
from sim.keys import KEYS, SERVICE_METHODS, Target, design_check, flatten, nearest, target
from sim.placeholders import (
    DEFAULT_METHOD,
    PLACEHOLDER_CLIENT_CALL,
    PLACEHOLDER_COMMIT,
    PLACEHOLDER_COMMIT_PER_ROW,
    PLACEHOLDER_LOADGEN_REQUEST,
    PLACEHOLDER_NETWORK,
    PLACEHOLDER_PER_ITEM,
    PLACEHOLDER_SERVICE,
    ROLES,
)

BACKGROUND_RUN = Dist.of({"kind": "exponential", "mean": 0.003})  # a background process's CPU run
BACKGROUND_SLEEP = Dist.of({"kind": "exponential", "mean": 0.003})  # ... and its sleep between runs
_META = frozenset({"overrides", "marks"})  # bookkeeping fields: not parameters, not in mappings
WAKEUP_IDLE_SCOPES = ("process", "host", "overlap")  # wakeup_idle_scope: whose idle time sets the cold factor


def _freeze_service(service: Mapping[str, Mapping[str, Dist]]) -> Mapping[str, Mapping[str, Dist]]:
    return MappingProxyType({role: MappingProxyType(dict(methods)) for role, methods in service.items()})


@dataclass(frozen=True, slots=True)
class SimParams:
    """Everything the simulator needs besides the workload. All times in seconds."""

    name: str = "placeholder-defaults"  # the calibration's name (recorded in config.json)
    # ---- the machine
    cores: int = 2  # cores per host
    hosts: int = 1  # processes are spread over hosts in order, `procs_per_host` each
    procs_per_host: int = 0  # 0: every process on host 0
    # ---- topology and the real system's settings
    nodes: int = 6  # Design B nodes (Design A always runs its six roles)
    slots: int = 12  # total worker slots: Design A's worker holds all, Design B splits them evenly
    node_slots: int = 0  # Design B: slots per node when > 0 (instead of slots // nodes)
    store: str = "sqlite"  # recorded only: the commit costs below are the store's
    core: CoreConfig = field(default_factory=CoreConfig)
    fetch_wait: float = 5.0  # worker FetchWork long-poll
    steal_interval: float = 0.05  # Design B: an idle node's QueueDepth round at most this often
    max_idle_poll: float = 0.8  # Design B: ... backing off to this when rounds steal nothing
    steal_fanout: int = 0  # Design B: peers a depth round asks, drawn at random (0: every peer)
    min_empty_poll: float = MIN_EMPTY_POLL  # worker runtime: pause after an empty fetch this fast
    wait_poll: float = 30.0  # the load generator's WaitJob long-poll (re-issued until the job ends)
    sweep_interval: float = 0.0  # Design A job service sweep; 0: as realsys (min(60, max(5, 3 lease)))
    rpc_timeout: float = 5.0
    # ---- the load generator (realsys/loadgen.py)
    loadgen_processes: int = 1
    loadgen_host: int = 0  # the host its processes run on (sharing its cores)
    track_jobs: bool = True  # one WaitJob long-poll per accepted job, as the real generator
    max_waiters: int = 4096  # concurrent WaitJob waiters per generator process
    list_page_size: int = 100
    drain: float = 10.0  # after the trace: time for outstanding requests and jobs
    # ---- costs
    service: Mapping[str, Mapping[str, Dist]] = field(
        default_factory=lambda: _freeze_service(PLACEHOLDER_SERVICE)
    )
    per_item: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType(dict(PLACEHOLDER_PER_ITEM))
    )
    client_call: Dist = PLACEHOLDER_CLIENT_CALL  # caller CPU per internal RPC, send + receive
    # CPU a process's loop spends waking from sleep (epoll, gRPC's poller thread handing the event to
    # the loop): charged to every burst that finds its loop idle, so per-request CPU falls with load
    # as it really does (0: off; sim/cpu.py Proc)
    wakeup: Dist = ZERO
    # how waking grows with the time the loop slept: ((idle seconds, factor on `wakeup`), ...), idle
    # ascending, factors non-decreasing; log-linear in between, flat outside (empty: factor 1).
    # Measured on the bare echo with gaps between calls: caches and an idle CPU cool down.
    wakeup_idle: tuple[tuple[float, float], ...] = ()
    client_send_fraction: float = 0.5  # of client_call, spent before the request leaves
    network: Dist = PLACEHOLDER_NETWORK  # one way, per hop
    # one way, added to `network` on a hop between processes on different hosts (0: the hosts are one
    # machine's loopback). Measured across a veth pair between network namespaces against loopback
    # (lab/calibration/netprobe.py, data/calibration/hosts.json); a calibration on one host leaves it 0
    host_hop: Dist = ZERO
    commit: Dist = PLACEHOLDER_COMMIT  # one storage transaction (save_many, put, delete)
    commit_per_row: float = PLACEHOLDER_COMMIT_PER_ROW
    loadgen_request: Dist = PLACEHOLDER_LOADGEN_REQUEST  # generator CPU per request, send + receive
    checkpoint: Dist = ZERO  # SQLite WAL checkpoint thread: CPU per checkpoint per store (0: off)
    checkpoint_interval: float = 0.5
    # > 0: the host shares its cores as the kernel's fair scheduler does, with this time slice
    # (sim/cpu.py); 0: FIFO per CPU burst. A calibration measures the slice (measurements.
    # scheduler_slice) but does not set it: the fair model is a what-if (REPORT.md)
    cpu_slice: float = 0.0
    # ---- beyond a call's CPU on its loop (issue 23; measured by dtq calibrate, zero/empty: off)
    # CPU per payload byte on each path that carries one, by "role.method" as per_item (the burst that
    # moves it: loadgen/gateway/node.SubmitJob, job.CreateJob, node.StealWork, job.LeaseJobs,
    # coordinator.FetchWork, node/worker.launch) and "commit" (the store writing it at submit)
    per_byte: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))
    # CPU gRPC's own threads spend per RPC, on a core but not on the loop (sim/cpu.py): the server's
    # per call it serves (as the request arrives), the caller's per call it makes (as the reply does)
    rpc_thread: Dist = ZERO
    rpc_thread_client: Dist = ZERO
    # true: a waking loop that has to queue for a core takes it warm, straight from the process before
    # it, and pays no cold factor (wakeup_idle); one woken onto an idle core pays it by its own sleep
    # (sim/cpu.py Host.warm_handover)
    wakeup_warm_handover: bool = False
    # whose sleep sets wakeup_idle's cold factor: "process" (its own loop's idle time), "host" (the
    # time since any core of its host last ran a burst, 0 while one runs: the cold cost is the idle
    # CPU's, C-states and cold caches; sim/cpu.py Host.idle_time) or "overlap" (the part of its loop's
    # idle time during which every core of the host was free; sim/cpu.py OverlapHost). What-ifs
    wakeup_idle_scope: str = "process"
    # ---- the host's background load (issue 23; off: 0 processes, every output as before)
    # processes outside the cluster (other builds, tests, helpers) sharing each host's cores: each
    # alternates a CPU run (background_run) and a sleep (background_sleep), its run cut in bursts of
    # background_chunk so that a fair host (cpu_slice > 0) can preempt it between them (sim/cpu.py
    # start_background); lab/validation/background.py sets them from a run's measured host load
    background_procs: int = 0
    background_run: Dist = BACKGROUND_RUN
    background_sleep: Dist = BACKGROUND_SLEEP
    background_chunk: float = 0.001
    # ---- bookkeeping (not parameters: left out of to_mapping and of equality)
    # the overrides applied so far, in order, as (key, JSON value): run ids hash them
    overrides: tuple[tuple[str, Any], ...] = field(default=(), compare=False)
    # the cost keys still at their placeholders when that cannot be seen by comparing values any more
    # (on_host scaled them); None: compare with sim/placeholders.py
    marks: frozenset[str] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.cores < 1 or self.hosts < 1 or self.procs_per_host < 0:
            raise InvalidArgument("need cores >= 1, hosts >= 1 and procs_per_host >= 0")
        if not 0 <= self.loadgen_host < self.hosts:
            raise InvalidArgument("loadgen_host must name one of the hosts")
        if self.nodes < 1 or self.slots < 1 or self.node_slots < 0:
            raise InvalidArgument("need nodes >= 1, slots >= 1 and node_slots >= 0")
        if self.steal_fanout < 0:
            raise InvalidArgument("steal_fanout must be >= 0 (0: every peer)")
        if self.loadgen_processes < 1 or self.max_waiters < 1 or self.list_page_size < 0:
            raise InvalidArgument("need loadgen_processes >= 1, max_waiters >= 1, list_page_size >= 0")
        if not 0 <= self.client_send_fraction <= 1:
            raise InvalidArgument("client_send_fraction must be in [0, 1]")
        positive = {
            "fetch_wait": self.fetch_wait,
            "steal_interval": self.steal_interval,
            "max_idle_poll": self.max_idle_poll,
            "wait_poll": self.wait_poll,
            "rpc_timeout": self.rpc_timeout,
            "checkpoint_interval": self.checkpoint_interval,
        }
        for key, value in positive.items():
            if not (value > 0 and math.isfinite(value)):
                raise InvalidArgument(f"{key} must be > 0")
        if self.background_procs < 0 or not (
            self.background_chunk > 0 and math.isfinite(self.background_chunk)
        ):
            raise InvalidArgument("need background_procs >= 0 and background_chunk > 0")
        if self.background_procs and not self.background_run.mean > 0:
            raise InvalidArgument("background_run must have a mean > 0 when background_procs > 0")
        for key, value in {
            "min_empty_poll": self.min_empty_poll,
            "drain": self.drain,
            "cpu_slice": self.cpu_slice,
        }.items():
            if not (value >= 0 and math.isfinite(value)):
                raise InvalidArgument(f"{key} must be >= 0")
        if self.wakeup_idle_scope not in WAKEUP_IDLE_SCOPES:
            raise InvalidArgument(f"wakeup_idle_scope must be one of {', '.join(WAKEUP_IDLE_SCOPES)}")
        unknown = set(self.service) - set(ROLES)
        if unknown:
            raise InvalidArgument(f"service: unknown roles {sorted(unknown)} (roles: {', '.join(ROLES)})")
        for group in ("per_item", "per_byte"):
            for key, value in getattr(self, group).items():
                if not (value >= 0 and math.isfinite(value)):
                    raise InvalidArgument(f"{group}.{key} must be finite and >= 0")
        curve = self.wakeup_idle
        if any(not (i > 0 and f >= 0 and math.isfinite(i) and math.isfinite(f)) for i, f in curve) or any(
            b[0] <= a[0] or b[1] < a[1] for a, b in itertools.pairwise(curve)
        ):
            raise InvalidArgument(
                "wakeup_idle: (idle seconds > 0, factor >= 0) pairs, idle ascending, factors non-decreasing"
            )

    @property
    def slots_per_node(self) -> int:
        """Design B's slots per node (realsys/cluster.py splits the total evenly)."""
        if self.node_slots == 0 and self.slots % self.nodes:
            raise InvalidArgument(
                f"Design B splits slots evenly: {self.slots} slots over {self.nodes} nodes does not "
                "divide (set node_slots)"
            )
        return self.node_slots or self.slots // self.nodes

    def service_dist(self, role: str, method: str) -> Dist:
        methods = self.service.get(role, {})
        return methods.get(method) or methods.get(DEFAULT_METHOD) or ZERO

    def item_cost(self, role: str, method: str) -> float:
        return self.per_item.get(f"{role}.{method}", 0.0)

    def wakeup_factor(self, idle: float) -> float:
        """`wakeup_idle` at `idle` seconds of sleep: log-linear between points, flat outside."""
        curve = self.wakeup_idle
        if not curve:
            return 1.0
        if idle <= curve[0][0]:
            return curve[0][1]
        for (i0, f0), (i1, f1) in itertools.pairwise(curve):
            if idle <= i1:
                return f0 + (f1 - f0) * math.log(idle / i0) / math.log(i1 / i0)
        return curve[-1][1]

    def on_host(self, scale: HostScale) -> SimParams:
        """These costs moved to another host's speed: every CPU cost of a busy loop (service times,
        per-item and per-byte costs, gRPC's threads, client_call, commits, the generator's request,
        checkpoints) times `scale.cpu`,
        `wakeup` times `scale.wake`, and the cold wake-up curve times a factor rising log-linearly
        from 1 at its first point to `scale.cold` at `scale.gap` seconds of sleep, flat beyond (longer
        sleeps are assumed to move as the probed one). `network` and `host_hop` (off-CPU) are kept."""
        cpu = scale.cpu
        curve = self.wakeup_idle
        if curve and scale.cold != 1.0:
            first = curve[0][0]
            moved: list[tuple[float, float]] = []
            for idle, factor in curve:
                if idle <= first:
                    r = 1.0
                elif scale.gap <= first:
                    r = scale.cold
                else:
                    r = scale.cold ** min(math.log(idle / first) / math.log(scale.gap / first), 1.0)
                moved.append((idle, max(factor * r, moved[-1][1] if moved else 0.0)))
            curve = tuple(moved)
        return dataclasses.replace(
            self,
            service=_freeze_service(
                {role: {m: d.scaled(cpu) for m, d in ms.items()} for role, ms in self.service.items()}
            ),
            per_item=MappingProxyType({k: v * cpu for k, v in self.per_item.items()}),
            per_byte=MappingProxyType({k: v * cpu for k, v in self.per_byte.items()}),
            rpc_thread=self.rpc_thread.scaled(cpu),
            rpc_thread_client=self.rpc_thread_client.scaled(cpu),
            client_call=self.client_call.scaled(cpu),
            commit=self.commit.scaled(cpu),
            commit_per_row=self.commit_per_row * cpu,
            loadgen_request=self.loadgen_request.scaled(cpu),
            checkpoint=self.checkpoint.scaled(cpu),
            wakeup=self.wakeup.scaled(scale.wake),
            wakeup_idle=curve,
            marks=frozenset(self.placeholder_keys()),
        )

    # ------------------------------------------------------------------ mappings
    def to_mapping(self) -> dict[str, Any]:
        """JSON-able; from_mapping(to_mapping()) == self."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name in _META:
                continue
            value = getattr(self, f.name)
            if isinstance(value, Dist):
                out[f.name] = value.to_mapping()
            elif isinstance(value, CoreConfig):
                out[f.name] = dataclasses.asdict(value)
            elif f.name == "service":
                out[f.name] = {r: {m: d.to_mapping() for m, d in ms.items()} for r, ms in value.items()}
            elif f.name in ("per_item", "per_byte"):
                out[f.name] = dict(value)
            elif f.name == "wakeup_idle":
                out[f.name] = [list(pair) for pair in value]
            else:
                out[f.name] = value
        return out

    @staticmethod
    def from_mapping(data: Mapping[str, Any], base: SimParams | None = None) -> SimParams:
        """Builds params from a mapping (a calibration's `parameters`); keys left out keep `base`
        (default: the placeholders). `service` merges per role and method into the base's table (a
        calibration may hold methods no design charges: they are kept, and change nothing);
        `per_item` and `per_byte` merge into the base's."""
        base = base or SimParams()
        names = {f.name: f for f in dataclasses.fields(SimParams) if f.name not in _META}
        unknown = sorted(set(data) - set(names))
        if unknown:
            near = nearest(unknown[0], names)
            raise InvalidArgument(
                f"unknown simulator parameters {unknown}" + (f"; nearest: {', '.join(near)}" if near else "")
            )
        changes: dict[str, Any] = {}
        for key, value in data.items():
            current = getattr(base, key)
            if isinstance(current, Dist):
                changes[key] = Dist.of(value, key)
            elif isinstance(current, CoreConfig):
                if not isinstance(value, Mapping):
                    raise InvalidArgument("core: expected a mapping of CoreConfig fields")
                changes[key] = _core(current, value.items())
            elif key == "service":
                changes[key] = _merge_service(base.service, value)
            elif key == "wakeup_idle":
                changes[key] = _pairs(key, value)
            elif key in ("per_item", "per_byte"):
                if not isinstance(value, Mapping):
                    raise InvalidArgument(f"{key}: expected a mapping of 'role.method' to seconds")
                items = {k: _seconds(f"{key}.{k}", v) for k, v in value.items()}
                changes[key] = MappingProxyType({**getattr(base, key), **items})
            else:
                changes[key] = _coerce(key, value, current)
        return dataclasses.replace(base, **changes)

    def with_overrides(self, overrides: Mapping[str, Any]) -> SimParams:
        """These params with `overrides` applied in order: dotted keys with the meanings of sim/keys.py,
        e.g. {"cores": 4, "network.scale": 2, "service.node.SubmitJob.shift": 1e-4,
        "service.node.WaitJob.wake": "exponential(6e-5)", "core.lease_duration": 5,
        "per_item.node.ListJobs.merge": 1e-5, "per_byte.node.SubmitJob": 2e-9}. An unknown key, a
        wrong value, or a key that cannot matter with the result (host_hop on one host) is an
        InvalidArgument naming it."""
        params = self
        applied: list[tuple[str, Any]] = []
        for name, value in flatten(overrides):
            aim = target(name)
            try:
                params = _apply(params, aim, value)
            except InvalidArgument as exc:
                message = exc.message if exc.message.startswith(name) else f"{name}: {exc.message}"
                raise InvalidArgument(message) from None
            applied.append((aim.text, _plain(value)))
        for name, _ in applied:
            why = params.inert(name)
            if why:
                raise InvalidArgument(f"{name} has no effect: {why}")
        return dataclasses.replace(params, overrides=(*self.overrides, *applied))

    def inert(self, name: str) -> str:
        """Why the key `name` cannot change a run with these params ('' when it can)."""
        key = target(name).key.name
        if key in ("host_hop", "procs_per_host") and self.hosts == 1:
            return "every process is on one host (set hosts > 1)"
        if key == "checkpoint_interval" and self.checkpoint.is_zero:
            return "checkpoints are off (set checkpoint > 0)"
        if key == "wakeup_idle" and self.wakeup.is_zero:
            return "wake-ups cost nothing (set wakeup > 0)"
        if key.startswith("background_") and key != "background_procs" and not self.background_procs:
            return "no background processes (set background_procs > 0)"
        if key in ("wakeup_warm_handover", "wakeup_idle_scope") and (
            self.wakeup.is_zero or not self.wakeup_idle
        ):
            return "no cold wake-up to place (set wakeup > 0 and wakeup_idle)"
        return ""

    def check_design(self, design: str) -> None:
        """InvalidArgument when an override names a key `design` does not read (nodes on Design A)."""
        design_check((name for name, _ in self.overrides), (design,))

    # ------------------------------------------------------------------ where values come from
    def placeholder_keys(self, design: str | None = None) -> list[str]:
        """The cost keys still at sim/placeholders.py's round numbers (not measurements), of those
        `design` reads (None: either design)."""
        overridden = {_key_of(name) for name, _ in self.overrides}
        if self.marks is not None:
            found = set(self.marks) - overridden
        else:
            found = {name for name, key in KEYS.items() if key.cost and _at_placeholder(self, name)}
            found -= overridden
        for role, methods in SERVICE_METHODS.items():  # a `*` no method falls back to costs nothing
            if all(m in self.service.get(role, {}) for m in methods):
                found.discard(f"service.{role}.{DEFAULT_METHOD}")
        designs = (design,) if design else ("micro", "mono")
        return sorted(k for k in found if set(KEYS[k].designs) & set(designs))

    def source(self, name: str, calibration: Mapping[str, Any] | None = None) -> str:
        """override, measured, calibration (set by the calibration file but not a measured cost),
        placeholder, or default (the real system's setting, or a cost that is off by default)."""
        if any(_key_of(n) == name for n, _ in self.overrides):
            return "override"
        if calibration is not None and name in calibration.get("measured", ()):
            return "measured"
        if name in self.placeholder_keys():
            return "placeholder"
        if calibration is not None and _in_parameters(calibration.get("parameters", {}), name):
            return "calibration"
        return "default"

    def value_text(self, name: str) -> str:
        """A key's value for people (distributions in microseconds)."""
        key = KEYS[name]
        if name.startswith("service."):
            role, method = name.split(".", 2)[1:]
            return self.service_dist(role, method).describe()
        if name.startswith(("per_item.", "per_byte.")):
            group, _, item = name.partition(".")
            return f"{getattr(self, group).get(item, 0.0):g}"
        if name.startswith("core."):
            return f"{getattr(self.core, name.partition('.')[2])!r}"
        value = getattr(self, name)
        if key.kind == "dist":
            return str(value.describe())
        if key.kind == "pairs":
            return ", ".join(f"({i:g} s, x{f:.3g})" for i, f in value) or "()"
        return f"{value!r}" if isinstance(value, str) else f"{value}"

    @staticmethod
    def ideal(**changes: Any) -> SimParams:
        """Every cost zero: only the core's decisions and the jobs' durations take time (queueing-theory
        checks; e.g. one node with c slots is an M/M/c queue under Poisson submits)."""
        service = {role: {DEFAULT_METHOD: ZERO} for role in ROLES}
        params = SimParams(
            name="ideal",
            service=_freeze_service(service),
            per_item=MappingProxyType({}),
            client_call=ZERO,
            wakeup=ZERO,
            network=ZERO,
            host_hop=ZERO,
            commit=ZERO,
            commit_per_row=0.0,
            loadgen_request=ZERO,
            min_empty_poll=0.0,
        )
        return dataclasses.replace(params, **changes)


def _merge_service(base: Mapping[str, Mapping[str, Dist]], value: object) -> Mapping[str, Mapping[str, Dist]]:
    if not isinstance(value, Mapping):
        raise InvalidArgument("service: expected a mapping of role -> method -> distribution")
    merged = {role: dict(methods) for role, methods in base.items()}
    for role, methods in value.items():
        if not isinstance(methods, Mapping):
            raise InvalidArgument(f"service.{role}: expected a mapping of method -> distribution")
        table = merged.setdefault(role, {})
        for method, dist in methods.items():
            table[method] = Dist.of(dist, f"service.{role}.{method}")
    return _freeze_service(merged)


def _pairs(key: str, value: object) -> tuple[tuple[float, float], ...]:
    try:
        pairs = tuple((float(a), float(b)) for a, b in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise InvalidArgument(f"{key}: expected a list of [idle seconds, factor] pairs") from None
    return pairs


def _coerce(key: str, value: object, current: object) -> object:
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise InvalidArgument(f"{key}: expected true or false, got {value!r}")
        return value
    if isinstance(current, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidArgument(f"{key}: expected an integer, got {value!r}")
        return value
    if isinstance(current, float):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise InvalidArgument(f"{key}: expected a finite number, got {value!r}")
        return float(value)
    if isinstance(current, str):
        if not isinstance(value, str):
            raise InvalidArgument(f"{key}: expected a string, got {value!r}")
        return value
    raise InvalidArgument(f"{key}: cannot be set")  # pragma: no cover


def _key_of(name: str) -> str:
    return target(name).key.name


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidArgument(f"{name}: expected a finite number, got {value!r}")
    return float(value)


def _seconds(name: str, value: object) -> float:
    seconds = _number(name, value)
    if seconds < 0:
        raise InvalidArgument(f"{name}: expected seconds >= 0, got {value!r}")
    return seconds


def _dist_op(current: Dist, aim: Target, value: object) -> Dist:
    if not aim.op:
        return Dist.of(value, aim.key.name)
    number = _number(aim.text, value)
    if aim.op == "scale":
        return current.scaled(number)
    if aim.op == "shift":
        return current.shifted(number)
    if aim.op == "mean":
        return current.with_mean(number)
    return current.with_sigma(number)


def _core(core: CoreConfig, items: Any) -> CoreConfig:
    changes: dict[str, Any] = {}
    for field_name, value in items:
        name = f"core.{field_name}"
        if name not in KEYS:
            target(name)  # raises, naming the nearest fields
        changes[field_name] = _coerce(name, value, getattr(core, field_name))
    return dataclasses.replace(core, **changes)


def _apply(params: SimParams, aim: Target, value: object) -> SimParams:
    """One override (sim/keys.py's meanings) on `params`."""
    key = aim.key
    name = key.name
    if name.startswith("service."):
        role, method = name.split(".", 2)[1:]
        dist = _dist_op(params.service_dist(role, method), aim, value)
        return dataclasses.replace(params, service=_merge_service(params.service, {role: {method: dist}}))
    if name.startswith(("per_item.", "per_byte.")):
        group, _, item = name.partition(".")
        merged: dict[str, Any] = {
            group: MappingProxyType({**getattr(params, group), item: _seconds(name, value)})
        }
        return dataclasses.replace(params, **merged)
    if name.startswith("core."):
        return dataclasses.replace(params, core=_core(params.core, [(name.partition(".")[2], value)]))
    changes: dict[str, Any] = {}
    if key.kind == "dist":
        changes[name] = _dist_op(getattr(params, name), aim, value)
    elif key.kind == "pairs":
        changes[name] = _pairs(name, value)
    else:
        changes[name] = _coerce(name, value, getattr(params, name))
    return dataclasses.replace(params, **changes)


def _plain(value: object) -> Any:
    """An override's value as JSON data (what config.json records and run ids hash)."""
    if isinstance(value, Dist):
        return value.to_mapping()
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise InvalidArgument(f"an override value must be JSON data, got {type(value).__name__}")


_PLACEHOLDER_FIELDS: Mapping[str, object] = {
    "client_call": PLACEHOLDER_CLIENT_CALL,
    "network": PLACEHOLDER_NETWORK,
    "commit": PLACEHOLDER_COMMIT,
    "commit_per_row": PLACEHOLDER_COMMIT_PER_ROW,
    "loadgen_request": PLACEHOLDER_LOADGEN_REQUEST,
}


def _at_placeholder(params: SimParams, name: str) -> bool:
    """True when cost key `name` holds sim/placeholders.py's value (a service method: as resolved,
    through its role's `*` entry when it has none of its own)."""
    if name.startswith("service."):
        role, method = name.split(".", 2)[1:]
        table = PLACEHOLDER_SERVICE.get(role, {})
        default = table.get(method) or table.get(DEFAULT_METHOD) or ZERO
        return not default.is_zero and params.service_dist(role, method) == default
    if name.startswith("per_item."):
        item = name.partition(".")[2]
        value = PLACEHOLDER_PER_ITEM.get(item, 0.0)
        return value > 0 and params.per_item.get(item, 0.0) == value
    placeholder = _PLACEHOLDER_FIELDS.get(name)
    return placeholder is not None and bool(getattr(params, name) == placeholder)


def _in_parameters(parameters: Mapping[str, Any], name: str) -> bool:
    head, _, rest = name.partition(".")
    if head not in parameters:
        return False
    if not rest:
        return True
    node: Any = parameters[head]
    if head == "service":
        role, _, method = rest.partition(".")
        return isinstance(node, Mapping) and method in node.get(role, {})
    return isinstance(node, Mapping) and rest in node


CALIBRATION_DIR = Path(__file__).resolve().parents[1] / "data" / "calibration"


def calibration_path(name_or_path: str | Path) -> Path:
    """A path to a calibration file as given, or a bare name's file under data/calibration/."""
    path = Path(name_or_path)
    return path if path.suffix else CALIBRATION_DIR / f"{name_or_path}.json"


def load_params(name_or_path: str | Path) -> SimParams:
    """A calibration: a path to a JSON file, or a name under data/calibration/. Its `parameters` key (or
    the whole file when there is none) is a SimParams mapping; other keys (provenance, fits) are kept
    by the calibration, not here."""
    path = calibration_path(name_or_path)
    data = read_document(path, (".json",))  # a broken file: one line naming it
    if not isinstance(data, Mapping):
        raise InvalidArgument(f"{path}: a calibration file holds one JSON object")
    params = data.get("parameters", data)
    if not isinstance(params, Mapping):
        raise InvalidArgument(f"{path}: 'parameters' must be an object")
    if "name" not in params:
        params = {**params, "name": path.stem}
    try:
        return SimParams.from_mapping(params)
    except InvalidArgument as exc:  # which file holds the bad key
        raise InvalidArgument(f"{path}: {exc.message}") from None


def load_host_probe(name_or_path: str | Path, design: str) -> dict[str, float] | None:
    """A calibration's host speed as a run of `design` would probe it: the median of the probes it
    took with an idle cluster of that design up, before and after its measurements
    (lab.calibration.hostprobe.calibration_probes); None for a calibration made without them."""
    data = json.loads(calibration_path(name_or_path).read_text())
    probes = data.get("host_probe") if isinstance(data, Mapping) else None
    if not isinstance(probes, Mapping) or not probes.get(design):
        return None
    return median_probe(probes[design])


def load_scheduler_slice(name_or_path: str | Path) -> float | None:
    """The kernel's time slice a calibration measured (seconds; lab.calibration.hostprobe.scheduler_slice,
    `measurements.scheduler_slice`), for `cpu_slice`; None for a calibration made without it."""
    data = json.loads(calibration_path(name_or_path).read_text())
    measured = data.get("measurements", {}).get("scheduler_slice") if isinstance(data, Mapping) else None
    if not isinstance(measured, Mapping) or not measured.get("run_ms_p50"):
        return None
    return float(measured["run_ms_p50"]) / 1e3


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` from the command line: the value is JSON when it parses, else a string."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise InvalidArgument(f"--set expects key=value, got {text!r}")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value
