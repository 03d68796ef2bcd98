"""Where the rest of realsys asks for tracing, without importing OpenTelemetry when it is off.

realsys/tracing.py (and OpenTelemetry with it) is imported only when a node's NodeConfig.trace is
on; these hooks answer None, or the object unchanged, otherwise.
"""

from __future__ import annotations

from typing import Any

from realsys.config import NodeConfig


def node_tracer(config: NodeConfig) -> Any:
    """The node's realsys.tracing.NodeTracer, or None when tracing is off."""
    if not config.trace.enabled:
        return None
    from realsys import tracing  # OpenTelemetry is imported only by a node that traces

    return tracing.tracer_for(config)


def traced_backend(backend: Any, config: NodeConfig) -> Any:
    """A worker backend that records the worker's spans when the node traces; else `backend`."""
    if not config.trace.enabled:
        return backend
    from realsys import tracing  # OpenTelemetry is imported only by a node that traces

    return tracing.traced_backend(backend, config)


def add_trace_parser(sub: Any) -> None:
    """`dtq trace JOB_ID --dir DIR` (run by realsys.tracing.trace_command)."""
    p = sub.add_parser("trace", help="print one job's timeline from the spans a traced cluster wrote")
    p.add_argument("job_id")
    p.add_argument("--dir", required=True, help="the trace directory (DTQ_TRACE_DIR, cluster up --trace-dir)")
    p.add_argument("--json", action="store_true", help="the job's spans as JSON lines instead of a table")
    p.set_defaults(handler=_trace_command)


def _trace_command(args: Any) -> int:
    from realsys import tracing  # OpenTelemetry is imported only by the command that reads traces

    return tracing.trace_command(args)
