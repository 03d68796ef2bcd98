"""Where the rest of realsys asks for tracing, without importing OpenTelemetry when it is off.

realsys/tracing.py (and OpenTelemetry with it) is imported only when a node's NodeConfig.trace is
on; these hooks answer None, or the object unchanged, otherwise. Also here: `dtq trace`, which reads
spans files (a traced cluster's, or a simulated run's RUN/spans.jsonl: the same records) without
OpenTelemetry, and prints a job's timeline or a real job beside a simulated one (model/spans.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import model.spans as spans_mod
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
    """`dtq trace`: one job's timeline from a traced cluster, a trace directory or a spans file (a
    simulated run's RUN/spans.jsonl), or a real job beside a simulated one (--compare)."""
    p = sub.add_parser(
        "trace",
        help="print one job's timeline from the spans a traced cluster or a simulated run wrote, or a "
        "real job's hops beside a simulated job's (--compare)",
    )
    p.add_argument(
        "job_id",
        nargs="?",
        default="",
        help="e.g. n1-1-0000000001 (needed with --dir/--trace-dir; --file, --compare: default the first "
        "job in the file; --compare: the real job)",
    )
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--dir", help="a cluster directory started with `dtq cluster up --trace-dir`")
    where.add_argument("--trace-dir", help="a trace directory (DTQ_TRACE_DIR)")
    where.add_argument(
        "--file", metavar="SPANS", help="a spans file: a simulated run's RUN/spans.jsonl, or a node's file"
    )
    where.add_argument(
        "--compare",
        nargs=2,
        metavar=("REAL", "SIM"),
        help="a job's hops in REAL beside a job's in SIM (each a spans file, a trace, cluster or simulated "
        "run directory): per-hop durations and their ratio SIM/REAL",
    )
    p.add_argument("--sim-job", default="", help="--compare: the job in SIM (default: its first job)")
    p.add_argument(
        "--json", action="store_true", help="the job's spans (pairs) as JSON lines instead of a table"
    )
    p.set_defaults(handler=_trace_command)


def _trace_command(args: Any) -> int:
    from realsys import cluster  # the launcher: off a node's start-up path

    if args.sim_job and not args.compare:
        raise ValueError("--sim-job is for --compare")
    if args.compare:
        return _compare(args, cluster)
    if args.file:
        source = Path(args.file)
        spans = load_spans(source, cluster)
    else:
        if not args.job_id:
            raise ValueError("dtq trace --dir/--trace-dir needs the JOB_ID")
        source = Path(args.trace_dir) if args.trace_dir else _trace_dir_of(cluster, Path(args.dir))
        if not source.is_dir():
            raise FileNotFoundError(f"no trace directory {source}")
        spans = load_spans(source, cluster, empty_ok=True)  # a trace directory with no span yet: no such job
    job_id = args.job_id or _first_job(spans, source)
    rows = spans_mod.timeline(spans, job_id)
    if not rows:
        raise ValueError(f"no spans of job {job_id} in {source}")
    if args.json:
        for row in rows:
            print(json.dumps(row.span.to_json()))
    else:
        print(spans_mod.format_timeline(rows))
    return 0


def _compare(args: Any, cluster: Any) -> int:
    real_path, sim_path = (Path(p) for p in args.compare)
    real, sim = load_spans(real_path, cluster), load_spans(sim_path, cluster)
    real_job = args.job_id or _first_job(real, real_path)
    sim_job = args.sim_job or _first_job(sim, sim_path)
    left, right = spans_mod.timeline(real, real_job), spans_mod.timeline(sim, sim_job)
    for rows, job, path in ((left, real_job, real_path), (right, sim_job, sim_path)):
        if not rows:
            raise ValueError(f"no spans of job {job} in {path}")
    pairs = spans_mod.compare(left, right)
    if args.json:
        for pair in pairs:
            print(
                json.dumps({"real": _row_json(pair.left), "sim": _row_json(pair.right), "ratio": pair.ratio})
            )
        return 0
    design = {r.span.design for r in left} | {r.span.design for r in right}
    title = f"real job {real_job} ({real_path}) beside simulated job {sim_job} ({sim_path}); " + (
        f"design {design.pop()}" if len(design) == 1 else f"designs {', '.join(sorted(design))}"
    )
    print(spans_mod.format_comparison(pairs, "real", "sim", title))
    return 0


def _row_json(row: spans_mod.TimelineRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {**row.span.to_json(), "depth": row.depth, "offset": row.offset}


def _first_job(spans: list[spans_mod.HopSpan], source: Path) -> str:
    jobs = spans_mod.jobs_of(spans)
    if not jobs:
        raise ValueError(f"no spans in {source}")
    return jobs[0]


def load_spans(path: Path, cluster: Any, empty_ok: bool = False) -> list[spans_mod.HopSpan]:
    """The spans in a spans file, or in a directory: a simulated run's (RUN/spans.jsonl), a trace
    directory's (*.spans.jsonl), or a cluster's trace directory. A directory without any is an error,
    unless `empty_ok` (a named trace directory that has no span yet)."""
    if path.is_file():
        files = [path]
    elif not path.is_dir():
        raise FileNotFoundError(f"{path}: no such file or directory")
    elif (path / spans_mod.SPANS_FILE).is_file():
        files = [path / spans_mod.SPANS_FILE]
    elif (path / cluster.CLUSTER_FILE).is_file():
        return load_spans(_trace_dir_of(cluster, path), cluster, empty_ok)
    else:
        files = sorted(path.glob(f"*{spans_mod.SPAN_SUFFIX}"))
        if not files and not empty_ok:
            raise ValueError(
                f"no spans in {path}: not a spans file, trace, cluster or simulated run directory"
            )
    spans: list[spans_mod.HopSpan] = []
    for file in files:
        try:
            with file.open(encoding="utf-8") as lines:
                spans.extend(spans_mod.parse_spans(lines))
        except UnicodeDecodeError:
            raise ValueError(f"{file}: not a spans file (JSON lines)") from None
    return spans


def _trace_dir_of(cluster: Any, directory: Path) -> Path:
    """The trace directory of the cluster in `directory`; a trace directory given as `--dir` (its
    meaning before --trace-dir) is taken as it is, with a warning."""
    if not (directory / cluster.CLUSTER_FILE).exists() and any(directory.glob(f"*{spans_mod.SPAN_SUFFIX}")):
        print("dtq trace: --dir TRACE_DIR is deprecated: use --trace-dir TRACE_DIR", file=sys.stderr)
        return directory
    info = cluster.load(directory)  # FileNotFoundError: no cluster there
    dirs = {n.env["DTQ_TRACE_DIR"] for n in info.nodes if n.env.get("DTQ_TRACE_DIR")}
    if not dirs:
        raise ValueError(
            f"the cluster in {directory} does not trace: start it with `dtq cluster up --trace-dir D`"
        )
    return Path(sorted(dirs)[0])
