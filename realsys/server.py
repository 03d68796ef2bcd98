"""Runs one role: a gRPC aio server with health, reflection, metrics, JSON logs and a SIGTERM drain.

    start_role(config, role) -> RunningRole   # in-process (tests); `await running.stop()` drains
    run_role(config, role)                    # until SIGTERM/SIGINT, then drains; what a process runs
    serve_main()                              # `python -m realsys.server`: role from DTQ_* env vars

Start order: bind the port, `role.start()` (state restored before any request is served), start serving,
health SERVING, then write data_dir/<name>.addr and .metrics (so a launcher that sees the files can call).

Security (realsys/security.py): with DTQ_TLS_* set the port is TLS-only (PEM files read here, at start);
with DTQ_INTERNAL_TOKEN set an AuthInterceptor checks every call's bearer token (health stays open).
Without it the server has no interceptor at all: metrics and malformed-request handling are wrapped
around each handler once, at registration (realsys/decoding.py), which is cheaper per call.

Stop order: health NOT_SERVING, `role.drain()`, `server.stop(grace)`, `role.close()`; the drain and the
grace share one `config.drain_timeout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import importlib
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, Protocol, cast

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import _async as reflection_aio
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from model.errors import InvalidArgument
from realsys.config import GcMode, NodeConfig, address_host, load_config, misspelt_settings, server_options
from realsys.decoding import ServingRegistrar
from realsys.eventloop import loop_factory
from realsys.logs import bind_node, configure_logging, get_logger
from realsys.metrics import GcPauses, MetricsServer, NodeMetrics, start_metrics_server, stop_metrics_server
from realsys.security import auth_interceptor, server_credentials
from realsys.trace_hooks import node_tracer

log = get_logger(__name__)

# grpc-stubs lacks the health module's asyncio servicer
AioHealthServicer: Any = health.aio.HealthServicer  # type: ignore[attr-defined]
HEALTH_SERVICE = health.SERVICE_NAME
REFLECTION_SERVICE = reflection.SERVICE_NAME
add_reflection: Any = reflection_pb2_grpc.add_ServerReflectionServicer_to_server  # untyped generated code

# role -> (module, class); imported only when that role runs
ROLE_CLASSES: dict[str, tuple[str, str]] = {
    "node": ("realsys.mono.node", "MonoNode"),
    "gateway": ("realsys.micro.gateway", "GatewayRole"),
    "job": ("realsys.micro.job", "JobRole"),
    "queue": ("realsys.micro.queue", "QueueRole"),
    "coordinator": ("realsys.micro.coordinator", "CoordinatorRole"),
    "worker": ("realsys.micro.worker", "WorkerRole"),
    "result": ("realsys.micro.result", "ResultRole"),
}


class Role(Protocol):
    @property
    def service_names(self) -> tuple[str, ...]:
        """Full gRPC service names, for health and reflection. A plain class attribute will do."""
        ...

    def add_to_server(self, server: grpc.aio.Server) -> None: ...

    async def start(self) -> None:
        """After the port is bound, before serving: restore state, timers, background loops.
        Must not wait for other nodes (they may be starting too)."""

    async def drain(self) -> None:
        """SIGTERM: stop taking new work, let in-flight work finish."""

    async def close(self) -> None:
        """Flush and close stores."""


class RunningRole:
    """A started role. `address` is connectable ("127.0.0.1:port" for a wildcard listen)."""

    def __init__(
        self,
        config: NodeConfig,
        role: Role,
        server: grpc.aio.Server,
        health_servicer: Any,
        metrics: NodeMetrics,
        metrics_server: MetricsServer | None,
        address: str,
        context: contextvars.Context,
    ) -> None:
        self.config = config
        self.role = role
        self.server = server
        self.health = health_servicer
        self.metrics = metrics
        self.address = address
        self.metrics_port = metrics_server.port if metrics_server is not None else -1
        self._metrics_server = metrics_server
        self._context = context
        self._refresh = asyncio.create_task(metrics.refresh_forever(), context=context.copy())
        self._stop_task: asyncio.Task[None] | None = None
        self.tracer: Any = None  # realsys.tracing.NodeTracer when the node traces: flushed at stop

    async def stop(self) -> None:
        """Drains and stops; safe to call more than once (later calls wait for the first)."""
        if self._stop_task is None:
            self._stop_task = asyncio.create_task(self._stop(), context=self._context.copy())
        await asyncio.shield(self._stop_task)

    async def _stop(self) -> None:
        timeout = self.config.drain_timeout
        deadline = time.monotonic() + timeout
        log.info("draining", extra={"timeout": timeout})
        await self.health.enter_graceful_shutdown()
        try:
            await asyncio.wait_for(self.role.drain(), timeout)
        except TimeoutError:
            log.warning("role drain timed out", extra={"timeout": timeout})
        except Exception:
            log.exception("role drain failed")
        await self.server.stop(grace=max(deadline - time.monotonic(), 0.0))
        self._refresh.cancel()
        try:
            await self.role.close()
        finally:
            # in a thread: shutting the HTTP server down waits for its 0.5 s poll
            await asyncio.to_thread(stop_metrics_server, self._metrics_server)
            if self.tracer is not None:
                await asyncio.to_thread(self.tracer.shutdown)  # exports what is buffered
            log.info("stopped")


async def start_role(config: NodeConfig, role: Role, metrics: NodeMetrics | None = None) -> RunningRole:
    """Starts `role` on config.listen in this process (see the module docstring for the order)."""
    context = contextvars.copy_context()
    context.run(bind_node, config.name, config.role)  # logs of every task started below carry node/role
    return await asyncio.create_task(_start(config, role, metrics, context), context=context)


async def _start(
    config: NodeConfig, role: Role, metrics: NodeMetrics | None, context: contextvars.Context
) -> RunningRole:
    metrics = metrics or NodeMetrics(config.name, config.role, config.design)
    try:
        credentials = server_credentials(config.security)  # reads the PEM files: fails before binding
    except BaseException:
        with contextlib.suppress(Exception):
            await role.close()
        raise
    # Calls are timed and counted where handlers are registered (realsys.decoding), not by an
    # interceptor; with auth on, the one interceptor records the calls it refuses the same way.
    auth = auth_interceptor(config.security, metrics)
    interceptors: list[grpc.aio.ServerInterceptor[Any, Any]] = [auth] if auth is not None else []
    # no SO_REUSEPORT: a second node on a taken port must fail, not share the port's traffic
    options = [*server_options(), ("grpc.so_reuseport", 0)]
    server = grpc.aio.server(options=options, interceptors=interceptors)
    tracer = node_tracer(config)
    registrar = ServingRegistrar(server, metrics, tracer.wrap if tracer is not None else None)
    # it stands in for the server: roles only register servicers on what they are given
    role.add_to_server(cast(grpc.aio.Server, registrar))
    health_servicer = AioHealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registrar)
    # enable_server_reflection, registered through the registrar (it checks for a real aio server)
    names = (*role.service_names, HEALTH_SERVICE, REFLECTION_SERVICE)
    add_reflection(reflection_aio.ReflectionServicer(names), registrar)
    for service in ("", *role.service_names):
        await health_servicer.set(service, health_pb2.HealthCheckResponse.NOT_SERVING)

    metrics_server: MetricsServer | None = None
    try:
        try:  # both raise RuntimeError when the port is taken
            if credentials is None:
                port = server.add_insecure_port(config.listen)
            else:
                port = server.add_secure_port(config.listen, credentials)
        except RuntimeError:
            port = 0
        if port == 0:  # a setting that cannot work: one line at start-up (serve_main), no traceback
            raise InvalidArgument(
                f"DTQ_LISTEN {config.listen}: cannot listen there (the port is in use, or the "
                "address is not this host's)"
            )
        address = f"{_connect_host(config.listen)}:{port}"
        try:
            metrics_server = start_metrics_server(metrics, address_host(config.listen), config.metrics_port)
        except OSError as exc:
            raise InvalidArgument(
                f"DTQ_METRICS_PORT {config.metrics_port}: cannot listen on it ({exc.strerror or exc})"
            ) from None
        await role.start()
        metrics.refresh()
        await server.start()
        for service in ("", *role.service_names):
            await health_servicer.set(service, health_pb2.HealthCheckResponse.SERVING)
        metrics_port = metrics_server.port if metrics_server is not None else -1
        config.data_dir.mkdir(parents=True, exist_ok=True)
        write_atomically(config.data_dir / f"{config.name}.addr", address + "\n")
        write_atomically(config.data_dir / f"{config.name}.metrics", f"{metrics_port}\n")
    except BaseException:  # the role is ours from here on: close it whatever failed
        await server.stop(grace=None)
        with contextlib.suppress(Exception):
            await role.close()
        stop_metrics_server(metrics_server)
        raise
    running = RunningRole(config, role, server, health_servicer, metrics, metrics_server, address, context)
    running.tracer = tracer
    log.info(
        "serving",
        extra={
            "address": address,
            "metrics_port": running.metrics_port,
            "services": list(role.service_names),
            "tls": config.security.tls,
            "auth": config.security.auth,
            "loop": type(asyncio.get_running_loop()).__module__,  # "uvloop" when installed
        },
    )
    return running


async def run_role(config: NodeConfig, role: Role, metrics: NodeMetrics | None = None) -> None:
    """Serves until SIGTERM or SIGINT, then drains and returns."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    # handlers first: a launcher may signal as soon as it sees the .addr file, and the default action kills
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        running = await start_role(config, role, metrics)
        try:
            await stop.wait()
        finally:
            await running.stop()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def load_role(config: NodeConfig, metrics: NodeMetrics) -> Role:
    """Constructs the role class for config.role as `Cls(config, metrics)`."""
    module_name, class_name = ROLE_CLASSES[config.role]
    cls = getattr(importlib.import_module(module_name), class_name)
    role: Role = cls(config, metrics)
    return role


def serve_main() -> None:
    """Entry point of a node process: config from os.environ; exit 0 after a drain, 2 on bad config."""
    try:
        config = load_config(os.environ)
    except InvalidArgument as exc:
        sys.stderr.write(f"dtq: bad configuration: {exc.message}\n")
        raise SystemExit(2) from None
    for line in misspelt_settings(os.environ):
        sys.stderr.write(f"dtq: warning: {line}\n")
    configure_logging(config)

    async def main() -> None:
        # the role is built inside the loop: constructors may create asyncio objects
        metrics = NodeMetrics(config.name, config.role, config.design)
        GcPauses(metrics).install()  # this process is one node: its collector pauses are the node's
        role = load_role(config, metrics)
        apply_gc_mode(config.gc_mode)
        await run_role(config, role, metrics)

    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            runner.run(main())
    except InvalidArgument as exc:  # e.g. a TLS file that cannot be read
        sys.stderr.write(f"dtq: bad configuration: {exc.message}\n")
        raise SystemExit(2) from None
    except Exception:
        log.exception("node failed")
        raise SystemExit(1) from None


def apply_gc_mode(mode: GcMode) -> None:
    """NodeConfig.gc_mode for this process, once its role is built (process-wide: node processes only)."""
    if mode == "freeze":
        gc.collect()
        gc.freeze()  # what start-up made is never traversed again
    elif mode == "off":
        gc.disable()


def write_atomically(path: Path, text: str) -> None:
    """Readers see the old file or the new one, never a partial write."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _connect_host(listen: str) -> str:
    host = address_host(listen)
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


if __name__ == "__main__":
    serve_main()
