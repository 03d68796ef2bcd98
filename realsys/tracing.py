"""OpenTelemetry traces of each job's hops; off unless DTQ_TRACE_DIR or DTQ_TRACE_OTLP is set.

The span record, the trace ids and the timeline are model/spans.py's. When a node traces:

* each unary handler is wrapped once, at registration (realsys/decoding.py): a call about a job
  records a SERVER span in the job's trace (`job_trace_id`). Its parent is the caller's span, read
  from the W3C `traceparent` metadata, when the caller traced the same job; else the job's root.
  The job comes from the request (`job_id`, `job_ids`, a list of entries with ids) or, for calls
  that make or hand out jobs (SubmitJob, CreateJob, FetchWork, Reserve, LeaseJobs, StealWork), from
  the response; such a span is recorded when the call ends, with the time it started.
  Heartbeats, listings, depth polls, health and reflection make no spans.
* while the handler runs its span is the current one, and every channel the process opens carries
  an interceptor that sends it on as `traceparent` (security.open_aio_channel): the next hop's span
  is its child.
* the worker runtime's backend is wrapped (`traced_backend`): `worker/run` from the assignment's
  arrival to its report, then `worker/report` around the report (its RPC carries the context).
Off, none of this is installed: no wrapper, no interceptor, the hot path is unchanged; this module
(and OpenTelemetry) is not even imported (server.py, the roles and security.py import it only when
a node traces).

Exporters: DIR/<node>.spans.jsonl (HopSpan records, one JSON object a line), written by the SDK's
BatchSpanProcessor on its own thread; and OTLP/gRPC to DTQ_TRACE_OTLP when the optional
`opentelemetry-exporter-otlp-proto-grpc` is installed (`pip install dtq[otlp]`).

    dtq trace JOB_ID --dir CLUSTER      # one job's timeline across every process that traced it
    dtq trace JOB_ID --trace-dir DIR    # the same from a trace directory (realsys/trace_hooks.py)
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from model.errors import InvalidArgument
from model.job import Assignment, Outcome
from model.runtime import Key
from model.spans import (
    SPAN_SUFFIX,
    HopSpan,
    job_root_span_id,
    job_trace_id,
    outcome_status,
    parse_spans,
    span_line,
)
from realsys.config import NodeConfig

TRACEPARENT = "traceparent"
# calls about many jobs at once, or about none: no per-job span
UNTRACED_METHODS = frozenset(
    {
        "WorkerHeartbeat",
        "RenewLeases",
        "ListJobs",
        "ListLocalJobs",
        "QueueDepth",
        "Check",
        "Watch",
        "ServerReflectionInfo",
        "FindRequest",
    }
)
_ARRIVALS_KEPT = 10_000  # worker/run start times of attempts not reported yet
_SAMPLED = TraceFlags(TraceFlags.SAMPLED)

Behavior = Callable[[Any, Any], Awaitable[Any]]

_tracers: dict[tuple[str, str, str], NodeTracer] = {}  # a node of this process traces: channels send
_lock = threading.Lock()  # traceparent (channel_interceptors)


# ---------------------------------------------------------------------------- job ids of a message
_plans: dict[str, tuple[tuple[str, str], ...]] = {}


def _plan(descriptor: Any) -> tuple[tuple[str, str], ...]:
    """(field, how) pairs that name jobs in a message type: "id" a job_id string, "ids" repeated
    job ids, "msg" a message with a job_id, "msgs" repeated such messages. Made once per type."""
    found = _plans.get(descriptor.full_name)
    if found is not None:
        return found
    plan: list[tuple[str, str]] = []
    for field in descriptor.fields:
        repeated = field.is_repeated
        if field.type == field.TYPE_STRING and field.name == "job_id" and not repeated:
            plan.append((field.name, "id"))
        elif field.type == field.TYPE_STRING and field.name == "job_ids" and repeated:
            plan.append((field.name, "ids"))
        elif field.type == field.TYPE_MESSAGE and "job_id" in field.message_type.fields_by_name:
            plan.append((field.name, "msgs" if repeated else "msg"))
    _plans[descriptor.full_name] = result = tuple(plan)
    return result


def job_ids_of(message: Any) -> list[str]:
    """Every job a request or response names (in order, without repeats)."""
    descriptor = getattr(message, "DESCRIPTOR", None)
    if descriptor is None:
        return []
    ids: list[str] = []
    for name, how in _plan(descriptor):
        value = getattr(message, name)
        if how == "id":
            ids.append(value)
        elif how == "ids":
            ids.extend(value)
        elif how == "msg":
            if message.HasField(name):
                ids.append(value.job_id)
        else:
            ids.extend(item.job_id for item in value)
    return [i for i in dict.fromkeys(ids) if i]


def _attempt_of(message: Any) -> int:
    value = getattr(message, "attempt", 0)
    return value if isinstance(value, int) else 0


def parse_traceparent(metadata: Any) -> SpanContext | None:
    for key, value in metadata or ():
        if key == TRACEPARENT and isinstance(value, str):
            parts = value.split("-")
            if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16:
                try:
                    return SpanContext(int(parts[1], 16), int(parts[2], 16), True, _SAMPLED)
                except ValueError:
                    return None
    return None


# ---------------------------------------------------------------------------- exporter
class JsonLinesExporter(SpanExporter):
    """Appends HopSpan records to one file, a JSON object a line (model/spans.py)."""

    def __init__(self, path: Path, node: str, role: str, design: str) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("a", encoding="utf-8")
        except OSError as exc:  # a bad setting: one line, exit 2 (server.serve_main)
            raise InvalidArgument(f"DTQ_TRACE_DIR: cannot write {path}: {exc.strerror or exc}") from None
        self.path = path
        self._node, self._role, self._design = node, role, design
        self._lock = threading.Lock()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        lines = []
        for span in spans:
            attributes = span.attributes or {}
            job_id = attributes.get("dtq.job_id")
            context = span.context
            if not isinstance(job_id, str) or context is None:
                continue
            record = HopSpan(
                job_id=job_id,
                name=span.name,
                kind="SERVER" if span.kind is SpanKind.SERVER else "INTERNAL",
                node=self._node,
                role=self._role,
                design=self._design,
                start=(span.start_time or 0) / 1e9,
                end=(span.end_time or 0) / 1e9,
                trace_id=f"{context.trace_id:032x}",
                span_id=f"{context.span_id:016x}",
                parent_id=f"{span.parent.span_id:016x}" if span.parent is not None else "",
                status=str(attributes.get("dtq.status", "OK")),
                attempt=int(str(attributes.get("dtq.attempt", 0))),
            )
            lines.append(span_line(record))
        with self._lock:
            if self._file.closed:
                return SpanExportResult.FAILURE
            self._file.writelines(lines)
            self._file.flush()
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        with self._lock:
            self._file.close()

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True


# ---------------------------------------------------------------------------- a node's tracer
class NodeTracer:
    """One process's (or one in-process test node's) tracer provider, exporters and span helpers."""

    def __init__(self, config: NodeConfig) -> None:
        self.node, self.role, self.design = config.name, config.role, config.design
        resource = Resource.create(
            {
                "service.name": f"dtq-{config.role}",
                "dtq.node": config.name,
                "dtq.role": config.role,
                "dtq.design": config.design,
            }
        )
        self.provider = TracerProvider(resource=resource)
        if config.trace.directory is not None:
            path = config.trace.directory / f"{config.name}{SPAN_SUFFIX}"
            exporter = JsonLinesExporter(path, config.name, config.role, config.design)
            self.provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
        if config.trace.otlp_endpoint:
            self.provider.add_span_processor(BatchSpanProcessor(_otlp_exporter(config.trace.otlp_endpoint)))
        self.tracer = self.provider.get_tracer("dtq")
        self._closed = False

    def span(
        self,
        name: str,
        job_id: str,
        *,
        parent: SpanContext | None = None,
        kind: SpanKind = SpanKind.SERVER,
        start: int | None = None,
        attempt: int = 0,
    ) -> trace.Span:
        """A started span in the job's trace, under `parent` when that is the same trace."""
        trace_id = job_trace_id(job_id)
        if parent is None or parent.trace_id != trace_id:
            parent = SpanContext(trace_id, job_root_span_id(job_id), True, _SAMPLED)
        return self.tracer.start_span(
            name,
            context=trace.set_span_in_context(NonRecordingSpan(parent)),
            kind=kind,
            start_time=start,
            attributes={"dtq.job_id": job_id, "dtq.attempt": attempt},
        )

    def wrap(self, method: str, behavior: Behavior) -> Behavior:
        """`behavior` (a unary handler) recording a span per job it serves (module docstring)."""
        if method.rsplit("/", 1)[-1] in UNTRACED_METHODS:
            return behavior

        async def traced(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            start = time.time_ns()
            parent = parse_traceparent(context.invocation_metadata())
            known = job_ids_of(request)
            attempt = _attempt_of(request)
            span = self.span(method, known[0], parent=parent, start=start, attempt=attempt) if known else None
            token = otel_context.attach(trace.set_span_in_context(span)) if span is not None else None
            status = "UNKNOWN"
            response: Any = None
            try:
                response = await behavior(request, context)
                status = "OK"
                return response
            except grpc.aio.AbortError:
                code: Any = context.code()
                status = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
                raise
            except BaseException as exc:
                status = "CANCELLED" if isinstance(exc, asyncio.CancelledError) else "UNKNOWN"
                raise
            finally:
                end = time.time_ns()
                if span is not None and token is not None:
                    otel_context.detach(token)
                    span.set_attribute("dtq.status", status)
                    span.end(end)
                    for other in known[1:]:
                        self._ended(method, other, parent, start, end, status, attempt)
                elif response is not None:
                    for job_id in job_ids_of(response):
                        self._ended(method, job_id, parent, start, end, status, _attempt_of(response))

        return traced

    def _ended(
        self,
        name: str,
        job_id: str,
        parent: SpanContext | None,
        start: int,
        end: int,
        status: str,
        attempt: int,
    ) -> None:
        span = self.span(name, job_id, parent=parent, start=start, attempt=attempt)
        span.set_attribute("dtq.status", status)
        span.end(end)

    def shutdown(self) -> None:
        if not self._closed:
            self._closed = True
            self.provider.shutdown()


def _otlp_exporter(endpoint: str) -> SpanExporter:
    try:  # optional dependency (dtq[otlp]); imported only when DTQ_TRACE_OTLP asks for it
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (  # type: ignore[import-not-found]
            OTLPSpanExporter,
        )
    except ImportError:
        raise InvalidArgument(
            "DTQ_TRACE_OTLP needs the opentelemetry-exporter-otlp-proto-grpc package "
            "(pip install 'dtq[otlp]')"
        ) from None
    exporter: SpanExporter = OTLPSpanExporter(endpoint=endpoint, insecure=not endpoint.startswith("https"))
    return exporter


def tracer_for(config: NodeConfig) -> NodeTracer | None:
    """The node's tracer (one per node and target, shared by its server and its worker), or None
    when tracing is off. The first one switches on traceparent for every channel opened after it."""
    if not config.trace.enabled:
        return None
    key = (config.name, str(config.trace.directory or ""), config.trace.otlp_endpoint)
    with _lock:
        found = _tracers.get(key)
        if found is None or found._closed:
            found = _tracers[key] = NodeTracer(config)
    return found


# ---------------------------------------------------------------------------- outgoing hops
class TraceparentInjector(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
    """Sends the current span (if any) as W3C `traceparent` metadata."""

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            metadata = grpc.aio.Metadata(*(tuple(details.metadata) if details.metadata else ()))
            metadata.add(TRACEPARENT, f"00-{context.trace_id:032x}-{context.span_id:016x}-01")
            details = details._replace(metadata=metadata)
        return await continuation(details, request)


def channel_interceptors() -> list[Any] | None:
    """For security.open_aio_channel: the injector once a node of this process traces, else None."""
    return [TraceparentInjector()] if _tracers else None


# ---------------------------------------------------------------------------- the worker's steps
class TracedBackend:
    """A WorkerBackend that records `worker/run` and `worker/report` spans (module docstring)."""

    def __init__(self, inner: Any, tracer: NodeTracer) -> None:
        self.inner = inner
        self.tracer = tracer
        self._arrived: dict[tuple[str, int], int] = {}

    async def heartbeat(
        self, worker_id: str, total_slots: int, free_slots: int, running: list[tuple[str, int]]
    ) -> tuple[list[tuple[str, int]], list[tuple[str, int]], float]:
        result: tuple[list[tuple[str, int]], list[tuple[str, int]], float] = await self.inner.heartbeat(
            worker_id, total_slots, free_slots, running
        )
        return result

    async def fetch(self, worker_id: str, free_slots: int, wait: float) -> list[Assignment]:
        assignments: list[Assignment] = await self.inner.fetch(worker_id, free_slots, wait)
        self._arrivals(assignments)
        return assignments

    def _arrivals(self, assignments: list[Assignment]) -> None:
        now = time.time_ns()
        for a in assignments:
            self._arrived[(a.job_id, a.attempt)] = now
        while len(self._arrived) > _ARRIVALS_KEPT:  # attempts abandoned without a report
            del self._arrived[next(iter(self._arrived))]

    async def fetch_and_report(
        self, worker_id: str, free_slots: int, wait: float, reports: tuple[tuple[Key, Outcome], ...]
    ) -> tuple[list[Assignment], list[Any]]:
        """Report-and-fetch: each carried report ends its `worker/run` span when the call goes out
        and gets a `worker/report` span until the verdict comes back."""
        now = time.time_ns()
        spans = []
        for (job_id, attempt), outcome in reports:
            parent = self._run_span(job_id, attempt, outcome, now)
            spans.append(
                self.tracer.span(
                    "worker/report", job_id, parent=parent, kind=SpanKind.INTERNAL, start=now, attempt=attempt
                )
            )
        verdicts: list[Any] = []
        try:
            assignments, verdicts = await self.inner.fetch_and_report(worker_id, free_slots, wait, reports)
        finally:
            for index, span in enumerate(spans):
                ok = index < len(verdicts) and verdicts[index] is None
                span.set_attribute("dtq.status", "OK" if ok else "UNKNOWN")
                span.end()
        self._arrivals(assignments)
        return assignments, verdicts

    def _run_span(self, job_id: str, attempt: int, outcome: Outcome, now: int) -> SpanContext | None:
        arrived = self._arrived.pop((job_id, attempt), None)
        if arrived is None:
            return None
        run = self.tracer.span("worker/run", job_id, kind=SpanKind.INTERNAL, start=arrived, attempt=attempt)
        run.set_attribute("dtq.status", outcome_status(outcome))
        run.end(now)
        context: SpanContext = run.get_span_context()
        return context

    async def report(self, worker_id: str, job_id: str, attempt: int, outcome: Outcome) -> None:
        now = time.time_ns()
        parent = self._run_span(job_id, attempt, outcome, now)
        span = self.tracer.span(
            "worker/report", job_id, parent=parent, kind=SpanKind.INTERNAL, start=now, attempt=attempt
        )
        status = "UNKNOWN"
        try:
            with trace.use_span(span, end_on_exit=False):
                await self.inner.report(worker_id, job_id, attempt, outcome)
            status = "OK"
        finally:
            span.set_attribute("dtq.status", status)
            span.end()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def traced_backend(backend: Any, config: NodeConfig) -> Any:
    """`backend` wrapped in a TracedBackend when the node traces; unchanged otherwise."""
    tracer = tracer_for(config)
    return backend if tracer is None else TracedBackend(backend, tracer)


# ---------------------------------------------------------------------------- reading: dtq trace
def read_spans(directory: Path) -> Iterator[HopSpan]:
    """Every span in DIR/*.spans.jsonl (a torn last line of a crashed process is skipped)."""
    for path in sorted(directory.glob(f"*{SPAN_SUFFIX}")):
        with path.open(encoding="utf-8") as lines:
            yield from parse_spans(lines)
