"""The Prometheus metrics every node exposes, the RPC latency interceptor, and the /metrics HTTP server.

Each `NodeMetrics` owns its own CollectorRegistry (not the global one), so a test can run several nodes
in one process. Roles get theirs as a constructor argument (`Role(config, metrics)`) and use it so:

* counters: `metrics.lease_expiries.inc()`, also `requeues`, `forwarded`, `stolen`;
* gauges that describe core state: register callbacks once, at start:

      metrics.set_sources(
          queue_depth=lambda: len(queue),                  # jobs waiting to run
          oldest_pending_age=lambda: age_or_0,             # seconds the oldest ready job has waited
          jobs_by_state=lambda: {"PENDING": 3, ...},       # job counts by JobState name
      )

  `refresh()` reads every source and sets its gauge; the server calls it on the event loop every
  REFRESH_INTERVAL seconds, so sources may read core state without locks (the HTTP server runs in a
  thread and only reads the gauges). Sources must be cheap. A gauge without a source may be set directly
  (`metrics.queue_depth.set(n)`); a source, when given, overwrites it.
* RPC latency and counts by method and status code: every unary-unary handler is wrapped when it is
  registered (realsys.decoding.ServingRegistrar, which server.py hands to the role), recording into
  `metrics.recorder(method)`; calls the auth interceptor refuses are recorded the same way. No
  per-call interceptor: grpc.aio runs an interceptor as extra coroutines on every call.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from itertools import accumulate
from threading import Thread
from typing import Any
from wsgiref.simple_server import WSGIServer

import grpc
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from model.states import JobState
from realsys.logs import get_logger

log = get_logger(__name__)

REFRESH_INTERVAL = 1.0
# 100 µs to 10 s: an in-process hop is ~100 µs, a long-poll ends by 10 s at the latest
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
_STATES = tuple(s.name for s in JobState if s is not JobState.STATE_UNSPECIFIED)
GC_BUCKETS = (0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class NodeMetrics:
    def __init__(self, node: str = "", role: str = "", design: str = "") -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        Info("dtq_node", "Which node and role this process runs", registry=r).info(
            {"node": node, "role": role, "design": design}
        )
        self.queue_depth = Gauge("dtq_queue_depth", "Jobs waiting to run (ready or delayed)", registry=r)
        self.oldest_pending_age = Gauge(
            "dtq_oldest_pending_age_seconds", "How long the oldest ready job has waited", registry=r
        )
        self.jobs = Gauge("dtq_jobs", "Jobs known to this node, by state", ["state"], registry=r)
        # dtq_rpc_latency_seconds and dtq_rpc_total: plain counters per method, read at scrape time
        self._recorders: dict[str, RpcRecorder] = {}
        r.register(_RpcFigures(self._recorders))
        self.lease_expiries = Counter("dtq_lease_expiries_total", "Leases that expired", registry=r)
        self.requeues = Counter("dtq_requeues_total", "Jobs put back in the queue for a retry", registry=r)
        self.forwarded = Counter("dtq_forwarded_total", "Requests forwarded to the job's owner", registry=r)
        self.stolen = Counter("dtq_stolen_total", "Jobs taken from a peer's queue", registry=r)
        self.hop_latency = Histogram(
            "dtq_hop_latency_seconds",
            "Caller-side latency of a node-to-node hop (Design B: forwards, steals, request checks), "
            "by peer and method; Design A's hops are its internal services' dtq_rpc_latency_seconds",
            ["peer", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._hops: dict[tuple[str, str], Any] = {}
        self.submit_failovers = Counter(
            "dtq_submit_failovers_total",
            "Idempotent submits whose job the key's fallback home made (its primary was unreachable)",
            registry=r,
        )
        self._queue_depth_source: Callable[[], float] | None = None
        self._oldest_age_source: Callable[[], float] | None = None
        self._jobs_source: Callable[[], Mapping[str, int]] | None = None

    def set_sources(
        self,
        *,
        queue_depth: Callable[[], float] | None = None,
        oldest_pending_age: Callable[[], float] | None = None,
        jobs_by_state: Callable[[], Mapping[str, int]] | None = None,
    ) -> None:
        """Registers callbacks read by `refresh()` (on the loop). Only the sources given are replaced."""
        if queue_depth is not None:
            self._queue_depth_source = queue_depth
        if oldest_pending_age is not None:
            self._oldest_age_source = oldest_pending_age
        if jobs_by_state is not None:
            self._jobs_source = jobs_by_state

    def refresh(self) -> None:
        """Sets the gauges from their sources. A failing source is logged and leaves its gauge as it was."""
        try:
            if self._queue_depth_source is not None:
                self.queue_depth.set(self._queue_depth_source())
            if self._oldest_age_source is not None:
                self.oldest_pending_age.set(self._oldest_age_source())
            if self._jobs_source is not None:
                counts = self._jobs_source()
                for state in _STATES:  # every state, so a count that drops to zero shows as 0
                    self.jobs.labels(state).set(counts.get(state, 0))
        except Exception:
            log.exception("metrics source failed")

    async def refresh_forever(self, interval: float = REFRESH_INTERVAL) -> None:
        while True:
            self.refresh()
            await asyncio.sleep(interval)

    def observe_hop(self, peer: str, method: str, seconds: float) -> None:
        """One node-to-node call's latency as the caller saw it (children bound once per pair)."""
        child = self._hops.get((peer, method))
        if child is None:
            child = self._hops[(peer, method)] = self.hop_latency.labels(peer, method)
        child.observe(seconds)

    def recorder(self, method: str) -> RpcRecorder:
        """The RpcRecorder of a full method name ("/pkg.Service/Method"), made once per method."""
        found = self._recorders.get(method)
        if found is None:
            found = self._recorders[method] = RpcRecorder()
        return found


# ---------------------------------------------------------------------------- per-method RPC figures
class GcPauses:
    """How long CPython's cyclic collector stops this process, by generation (gc.callbacks): a pause
    no RPC handler's own time shows, but every request in flight on the loop waits through it.
    Process-wide, so only a node process installs it (server.serve_main), never a test's in-process
    nodes."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self.pauses = Histogram(
            "dtq_gc_pause_seconds",
            "Cyclic garbage collector pauses, by generation",
            ["generation"],
            buckets=GC_BUCKETS,
            registry=metrics.registry,
        )
        self._started = 0.0

    def __call__(self, phase: str, info: Mapping[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses.labels(str(info.get("generation", "?"))).observe(time.perf_counter() - self._started)

    def install(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def uninstall(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self)


class RpcRecorder:
    """One method's latency histogram and call counts by status code, as plain counters: a call
    costs a bisect and two additions, where prometheus_client's Histogram.observe and Counter.inc
    take a lock each (~14 us per call on the dev machine, more than the rest of the edge). Written on
    the loop thread only; `_RpcFigures` reads them when /metrics is scraped."""

    __slots__ = ("_by_code", "_counts", "_sum")

    def __init__(self) -> None:
        self._counts = [0] * (len(LATENCY_BUCKETS) + 1)  # per bucket (not cumulative); the last: +Inf
        self._sum = 0.0
        self._by_code: dict[grpc.StatusCode, int] = {}

    def record(self, code: grpc.StatusCode, seconds: float) -> None:
        self._counts[bisect_left(LATENCY_BUCKETS, seconds)] += 1  # a bucket's bound is inclusive
        self._sum += seconds
        by_code = self._by_code
        by_code[code] = by_code.get(code, 0) + 1

    def count(self, code: grpc.StatusCode) -> None:
        """One message counted in dtq_rpc_total without a latency (a stream's message: the stream's own
        call is timed once, when it ends)."""
        self._by_code[code] = self._by_code.get(code, 0) + 1


_LE = (*(repr(float(b)) for b in LATENCY_BUCKETS), "+Inf")  # as prometheus_client writes them


class _RpcFigures(Collector):
    """Exposes the recorders as dtq_rpc_latency_seconds (histogram by method) and dtq_rpc_total
    (counter by method and code). Read from the HTTP thread without a lock: each list and dict is
    copied first, and the count is the sum of the copied buckets, so a scrape is self-consistent
    up to a call recorded meanwhile (its sum may already hold it)."""

    def __init__(self, recorders: Mapping[str, RpcRecorder]) -> None:
        self._recorders = recorders

    def collect(self) -> Iterator[Metric]:
        latency = HistogramMetricFamily(
            "dtq_rpc_latency_seconds", "Server-side latency of unary RPCs", labels=["method"]
        )
        total = CounterMetricFamily(
            "dtq_rpc_total", "RPCs served, by method and status code", labels=["method", "code"]
        )
        for method, recorder in list(self._recorders.items()):
            counts = list(recorder._counts)
            buckets = list(zip(_LE, accumulate(counts), strict=True))
            latency.add_metric([method], buckets, recorder._sum)
            for code, n in list(recorder._by_code.items()):
                total.add_metric([method, code.name], n)
        yield latency
        yield total


# ---------------------------------------------------------------------------- HTTP
@dataclass(slots=True)
class MetricsServer:
    port: int
    _server: WSGIServer
    _thread: Thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_metrics_server(metrics: NodeMetrics, host: str, port: int) -> MetricsServer | None:
    """Serves /metrics from the node's registry on host:port (0: an ephemeral port; -1: off)."""
    if port < 0:
        return None
    server, thread = start_http_server(port, addr=host, registry=metrics.registry)
    return MetricsServer(server.server_port, server, thread)


def stop_metrics_server(server: MetricsServer | None) -> None:
    if server is not None:
        with contextlib.suppress(OSError):
            server.close()
