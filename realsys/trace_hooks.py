"""Where the rest of realsys asks for tracing, without importing OpenTelemetry when it is off.

realsys/tracing.py (and OpenTelemetry with it) is imported only when a node's NodeConfig.trace is
on; these hooks answer None, or the object unchanged, otherwise.
"""

from __future__ import annotations

import sys
from pathlib import Path
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
    """`dtq trace JOB_ID --dir CLUSTER | --trace-dir DIR` (run by realsys.tracing.trace_command)."""
    p = sub.add_parser("trace", help="print one job's timeline from the spans a traced cluster wrote")
    p.add_argument("job_id", help="e.g. n1-1-0000000001")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--dir", help="a cluster directory started with `dtq cluster up --trace-dir`")
    where.add_argument("--trace-dir", help="a trace directory (DTQ_TRACE_DIR)")
    p.add_argument("--json", action="store_true", help="the job's spans as JSON lines instead of a table")
    p.set_defaults(handler=_trace_command)


def _trace_command(args: Any) -> int:
    from realsys import cluster, tracing  # OpenTelemetry and the launcher: off a node's start-up path

    if not args.trace_dir:
        args.trace_dir = str(_trace_dir_of(cluster, Path(args.dir)))
    return tracing.trace_command(args)


def _trace_dir_of(cluster: Any, directory: Path) -> Path:
    """The trace directory of the cluster in `directory`; a trace directory given as `--dir` (its
    meaning before --trace-dir) is taken as it is, with a warning."""
    if not (directory / cluster.CLUSTER_FILE).exists() and any(directory.glob("*.spans.jsonl")):
        print("dtq trace: --dir TRACE_DIR is deprecated: use --trace-dir TRACE_DIR", file=sys.stderr)
        return directory
    info = cluster.load(directory)  # FileNotFoundError: no cluster there
    dirs = {n.env["DTQ_TRACE_DIR"] for n in info.nodes if n.env.get("DTQ_TRACE_DIR")}
    if not dirs:
        raise ValueError(
            f"the cluster in {directory} does not trace: start it with `dtq cluster up --trace-dir D`"
        )
    return Path(sorted(dirs)[0])
