"""Per-hop spans of chosen jobs in simulated time: the records a traced real cluster writes
(model/spans.py's HopSpan, realsys/tracing.py), for the same hops of the same job, so that a reader
puts a real job's timeline beside a simulated one (`dtq trace --compare REAL SIM`).

Off by default (SimConfig.trace empty): this module is not installed and the hot path is unchanged.
On, `SimTracer(cluster, chosen)` installs itself on one cluster instance before it starts, replacing
some of that instance's methods by wrappers (no simulated event is added or moved: the run's records
are the same as untraced):

* the server side of each hop the real system traces (the generator that plays one RPC's handler on
  its process; MICRO_HOPS, MONO_HOPS name them and the parameters that carry the request's job and
  attempt, checked against the methods' signatures as the tracer installs) records a SERVER span
  from the moment the callee starts serving (after the hop and gRPC's threads) to its reply: the
  full gRPC method name, the serving process (node, role), the attempt, the status code name;
* the client-facing entries (Design A's gateway, Design B's entry node, and the node a request is
  forwarded to) record the TaskQueue method's span (ENTRIES);
* the worker's backend records `worker/run` (from the fetch that brought the attempt to its report)
  and `worker/report` (around the report), as realsys.tracing.TracedBackend does.

Which job a span is about follows realsys/tracing.py: the request's jobs when it names some (the
first one's span is the current one while the handler runs), else the response's (SubmitJob,
CreateJob, FetchWork, Reserve, StealWork: recorded when the call ends). Parent links follow the real
propagation: a hop's parent is the span its caller was serving when it called (the `traceparent` a
real call carries) when that is in the same job's trace, else the job's root (model.spans
.job_root_span_id). The simulator's "current span" is a stack per simpy process (a nested RPC runs
in its caller's process); `spawn` and `gather` hand the caller's current span to the processes they
start, as asyncio copies the context into a task. A task spawned from inside a CPU burst's action
(Design A's NotifyCancel after a cancel) that had to queue for its loop starts from no span: its span
hangs from the root.

Span ids come from model.spans.job_span_id (the job and a per-job count), so the same seed gives
the same file. Chosen jobs: an int N is the Nth job the load generator's submits created (1 = the
first; a workload's prefilled jobs do not count), a str a job id.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from model.errors import DtqError
from model.job import Assignment, Outcome
from model.spans import (
    HopSpan,
    job_root_span_id,
    job_span_id,
    job_trace_id,
    outcome_status,
    span_hex,
    trace_hex,
)
from sim.engine import SimGen, status_of

if TYPE_CHECKING:
    from sim.engine import Cluster
    from sim.micro import MicroCluster
    from sim.mono import MonoCluster, MonoNode
    from sim.worker import SimWorker

Frame = tuple[str, str] | None  # (job id, span id) of the span a process is serving; None: none
Chosen = int | str


@dataclass(frozen=True, slots=True)
class Hop:
    """One traced RPC: its full gRPC method name, where its jobs come from, and (Design A) the role
    of the process that serves it. `jobs` and `attempt` name the simulator method's parameters that
    carry the request's jobs (a job id, a list of ids, items with a `job_id`) and attempt
    ("param.attr": an attribute of one); a hop whose request names no job takes them from its reply."""

    name: str
    role: str = ""
    jobs: str = ""
    attempt: str = ""
    made: str = ""  # jobs named by the reply: "created" ("OK", job_id), "ids" [job_id], "assignments"


# MicroCluster's server-side generators (sim/micro.py) -> the hop they play (realsys/micro/)
MICRO_HOPS: dict[str, Hop] = {
    "_job_create": Hop("/dtq.v1.JobStore/CreateJob", "job", made="created"),
    "_job_get": Hop("/dtq.v1.JobStore/GetJob", "job", "job_id"),
    "_job_wait": Hop("/dtq.v1.JobStore/WaitJob", "job", "job_id"),
    "_job_cancel": Hop("/dtq.v1.JobStore/CancelJob", "job", "job_id"),
    "_job_lease": Hop("/dtq.v1.JobStore/LeaseJobs", "job", "job_ids"),
    "_job_complete": Hop("/dtq.v1.JobStore/CompleteAttempt", "job", "job_id", "attempt"),
    "_queue_enqueue": Hop("/dtq.v1.Queue/Enqueue", "queue", "entries"),
    "_queue_reserve": Hop("/dtq.v1.Queue/Reserve", "queue", made="ids"),
    "_queue_ack": Hop("/dtq.v1.Queue/Ack", "queue", "job_ids"),
    "_coord_fetch": Hop("/dtq.v1.Workers/FetchWork", "coordinator", made="assignments"),
    "_coord_report": Hop("/dtq.v1.Workers/ReportResult", "coordinator", "job_id", "attempt"),
    "_coord_notify_cancel": Hop("/dtq.v1.Coordinator/NotifyCancel", "coordinator", "job_id", "attempt"),
    "_result_put": Hop("/dtq.v1.ResultStore/PutResult", "result", "put", "put.attempt"),
    "_result_get": Hop("/dtq.v1.ResultStore/GetResult", "result", "job_id", "attempt"),
}
# MonoNode's server-side generators (sim/mono.py): Peer.StealWork, and a thief's ReportResult
MONO_HOPS: dict[str, Hop] = {
    "steal_work": Hop("/dtq.v1.Peer/StealWork", made="assignments"),
    "report_here": Hop("/dtq.v1.Workers/ReportResult", "", "job_id", "attempt"),
}
# the client API (Cluster.request_*) -> the TaskQueue method the entry process serves
ENTRIES: dict[str, Hop] = {
    "request_submit": Hop("/dtq.v1.TaskQueue/SubmitJob", made="created"),
    "request_status": Hop("/dtq.v1.TaskQueue/GetJobStatus", jobs="job_id"),
    "request_result": Hop("/dtq.v1.TaskQueue/GetJobResult", jobs="job_id"),
    "request_cancel": Hop("/dtq.v1.TaskQueue/CancelJob", jobs="job_id"),
    "request_wait": Hop("/dtq.v1.TaskQueue/WaitJob", jobs="job_id"),
}  # ListJobs names no job: no span, as in realsys/tracing.py


def _job_ids(value: Any) -> list[str]:
    """The jobs a request parameter names: a job id, ids, or items (one or many) with a job_id."""
    if isinstance(value, str):
        items = [value]
    elif hasattr(value, "job_id"):
        items = [value.job_id]
    else:
        items = [v if isinstance(v, str) else v.job_id for v in value]
    return [j for j in dict.fromkeys(items) if j]


class _Request:
    """Reads a hop's jobs and attempt from a call of the simulator method that plays it."""

    def __init__(self, hop: Hop, method: Callable[..., Any]) -> None:
        self.hop = hop
        self.signature = inspect.signature(method)
        for name in (hop.jobs, hop.attempt.partition(".")[0]):
            if name and name not in self.signature.parameters:  # a driver renamed a parameter
                raise TypeError(f"sim/tracing: {method.__qualname__} has no parameter {name!r} ({hop.name})")

    def read(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[list[str], int]:
        hop = self.hop
        if not (hop.jobs or hop.attempt):
            return [], 0
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        given = bound.arguments
        jobs = _job_ids(given[hop.jobs]) if hop.jobs else []
        attempt = 0
        if hop.attempt:
            name, _, attr = hop.attempt.partition(".")
            attempt = int(getattr(given[name], attr) if attr else given[name])
        return jobs, attempt


def _status(value: Any) -> str:
    """The status code name a server generator's reply says (a code name, or ("CODE", value))."""
    if isinstance(value, str):
        return value or "OK"
    if isinstance(value, tuple) and value and isinstance(value[0], str):
        return value[0]
    return "OK"


def _made(how: str, value: Any) -> list[tuple[str, int]]:
    """(job id, attempt) of the jobs a reply names (the attempt of a reply is 0, as the real
    response messages carry none at their top level)."""
    if how == "created":
        return [(value[1], 0)] if _status(value) == "OK" and value[1] else []
    if how == "ids":
        return [(job_id, 0) for job_id in value or ()]
    if how == "assignments":
        return [(a.job_id, 0) for a in value or ()]
    return []


def check_chosen(chosen: Sequence[Chosen]) -> tuple[Chosen, ...]:
    """The chosen jobs, checked: ints >= 1 (submit ordinals), non-empty strings (job ids)."""
    out: list[Chosen] = []
    for item in chosen:
        if isinstance(item, bool) or not isinstance(item, int | str):
            raise ValueError(
                f"trace: expected job ordinals (1 = the first submitted) or job ids, got {item!r}"
            )
        if isinstance(item, int) and item < 1:
            raise ValueError(f"trace: job ordinals count from 1, got {item}")
        if isinstance(item, str) and not item:
            raise ValueError("trace: an empty job id")
        out.append(item)
    return tuple(dict.fromkeys(out))


class SimTracer:
    """Records the spans of the chosen jobs of one simulated cluster (module docstring)."""

    def __init__(self, cluster: Cluster, chosen: Sequence[Chosen]) -> None:
        self.cluster = cluster
        self.env = cluster.env
        self.design = cluster.design
        chosen = check_chosen(chosen)
        self.ordinals = {c for c in chosen if isinstance(c, int)}
        self.ids = [c for c in chosen if isinstance(c, str)]
        self.traced: set[str] = set(self.ids)
        self.picked: dict[int, str] = {}  # ordinal -> the job id it picked
        self.submitted = 0
        self.spans: list[HopSpan] = []
        self._stacks: dict[Any, list[Frame]] = {}  # simpy process -> its current spans
        self._counts: dict[str, int] = {}
        self._prefilling = False
        self._entry: tuple[Hop, tuple[list[str], int]] | None = None  # a request being made (request_*)
        self._install()

    # ------------------------------------------------------------------ what was chosen
    def missing(self) -> list[Chosen]:
        """Chosen jobs with no span (an ordinal past the run's submits, an id it never made)."""
        have = {s.job_id for s in self.spans}
        out: list[Chosen] = [n for n in sorted(self.ordinals) if self.picked.get(n) not in have]
        out.extend(i for i in self.ids if i not in have)
        return out

    def sorted_spans(self) -> list[HopSpan]:
        """The spans in the order they ended (their recording order), a job's together in the order
        the jobs were chosen."""
        order = {job: k for k, job in enumerate([*(self.picked[n] for n in sorted(self.picked)), *self.ids])}
        return sorted(self.spans, key=lambda s: order.get(s.job_id, len(order)))

    # ------------------------------------------------------------------ installing
    def _install(self) -> None:
        cluster = self.cluster
        self._wrap(cluster, "submit_job", self._on_submit_job)
        self._wrap(cluster, "prefill", self._on_prefill)
        self._wrap(cluster, "spawn", self._on_spawn)
        self._wrap(cluster, "gather", self._on_gather)
        for attr, hop in ENTRIES.items():
            self._wrap(cluster, attr, partial(self._on_request, hop=hop))
        if self.design == "micro":
            self._install_micro(cast("MicroCluster", cluster))
        else:
            self._install_mono(cast("MonoCluster", cluster))

    def _install_micro(self, cluster: MicroCluster) -> None:
        for attr, hop in MICRO_HOPS.items():
            self._wrap(cluster, attr, partial(self._served, hop=hop, node=hop.role, role=hop.role))
        self._wrap(cluster, "_via_gateway", self._on_via_gateway)
        self._wrap(cluster, "start_worker", partial(self._on_start_worker, owner=cluster))

    def _install_mono(self, cluster: MonoCluster) -> None:
        self._wrap(cluster, "_hop_in", self._on_hop_in)
        self._wrap(cluster, "_forward", self._on_forward)
        for node in cluster.nodes:
            steal = partial(self._served, hop=MONO_HOPS["steal_work"], node=node.name, role="node")
            self._wrap(node, "steal_work", steal)
            self._wrap(node, "report_here", partial(self._on_report_here, node=node))
            self._wrap(node, "start_worker", partial(self._on_start_worker, owner=node))

    @staticmethod
    def _wrap(obj: Any, attr: str, make: Callable[[Any], Any]) -> None:
        """Replaces obj.attr (on the instance) by make(the original bound method)."""
        original = getattr(obj, attr)  # AttributeError: a driver renamed a method this table names
        setattr(obj, attr, make(original))

    # ------------------------------------------------------------------ spans
    def _stack(self) -> list[Frame]:
        key = self.env.active_process
        stack = self._stacks.get(key)
        if stack is None:
            stack = self._stacks[key] = []
        return stack

    def _top(self) -> Frame:
        stack = self._stacks.get(self.env.active_process)
        return stack[-1] if stack else None

    def _pop(self, stack: list[Frame]) -> None:
        stack.pop()
        if not stack:
            key = self.env.active_process
            if self._stacks.get(key) is stack:
                del self._stacks[key]

    def _new_id(self, job_id: str) -> str:
        n = self._counts.get(job_id, 0) + 1
        self._counts[job_id] = n
        return span_hex(job_span_id(job_id, n))

    def _record(
        self,
        job_id: str,
        name: str,
        kind: str,
        node: str,
        role: str,
        start: float,
        span_id: str,
        parent: Frame | str,
        status: str,
        attempt: int,
    ) -> None:
        if isinstance(parent, str):
            parent_id = parent
        elif parent is not None and parent[0] == job_id:
            parent_id = parent[1]  # the caller's span, in the same job's trace
        else:
            parent_id = span_hex(job_root_span_id(job_id))
        self.spans.append(
            HopSpan(
                job_id=job_id,
                name=name,
                kind=kind,
                node=node,
                role=role,
                design=self.design,
                start=start,
                end=self.env.now,
                trace_id=trace_hex(job_trace_id(job_id)),
                span_id=span_id,
                parent_id=parent_id,
                status=status,
                attempt=attempt,
            )
        )

    def serve(
        self, hop: Hop, node: str, role: str, request: tuple[list[str], int], gen: SimGen[Any]
    ) -> SimGen[Any]:
        """`gen` (a handler on `node`; `request`: the jobs and attempt its request names) recording
        hop's SERVER span for each traced job it is about when it replies or fails with a status (a
        handler closed unfinished, at the run's end, records nothing, as a process stopped mid-call
        exports nothing)."""
        start = self.env.now
        caller = self._top()
        jobs, attempt = request
        own: Frame = (jobs[0], self._new_id(jobs[0])) if jobs and jobs[0] in self.traced else None
        stack = self._stack()
        stack.append(own)
        try:
            value = yield from gen
        except DtqError as exc:
            self._served_spans(hop, node, role, start, caller, own, jobs, attempt, status_of(exc), None)
            raise
        finally:
            self._pop(stack)
        self._served_spans(hop, node, role, start, caller, own, jobs, attempt, _status(value), value)
        return value

    def _served_spans(
        self,
        hop: Hop,
        node: str,
        role: str,
        start: float,
        caller: Frame,
        own: Frame,
        jobs: list[str],
        attempt: int,
        status: str,
        value: Any,
    ) -> None:
        """The spans of one served call: the current one (the request's first job), the request's
        other jobs, or the jobs its reply names (a call that named none)."""
        if own is not None:
            self._record(own[0], hop.name, "SERVER", node, role, start, own[1], caller, status, attempt)
        named = [(j, attempt) for j in jobs[1:]]
        if not jobs and hop.made and status == "OK":
            named = _made(hop.made, value)
        for job_id, job_attempt in named:
            if job_id in self.traced:
                span_id = self._new_id(job_id)
                self._record(
                    job_id, hop.name, "SERVER", node, role, start, span_id, caller, status, job_attempt
                )

    def _served(
        self, orig: Callable[..., SimGen[Any]], hop: Hop, node: str, role: str
    ) -> Callable[..., SimGen[Any]]:
        request = _Request(hop, orig)

        def traced(*args: Any, **kwargs: Any) -> SimGen[Any]:
            return self.serve(hop, node, role, request.read(args, kwargs), orig(*args, **kwargs))

        return traced

    def _under(self, frame: Frame, gen: SimGen[Any]) -> SimGen[Any]:
        """`gen` run in a new process that starts from `frame` as its current span."""
        stack = self._stack()
        stack.append(frame)
        try:
            return (yield from gen)
        finally:
            self._pop(stack)

    # ------------------------------------------------------------------ the wrappers
    def _on_submit_job(self, orig: Callable[[str, Any], None]) -> Callable[[str, Any], None]:
        def submit_job(job_id: str, job: Any) -> None:
            orig(job_id, job)
            if self._prefilling:
                return
            self.submitted += 1
            if self.submitted in self.ordinals:
                self.picked[self.submitted] = job_id
                self.traced.add(job_id)

        return submit_job

    def _on_prefill(self, orig: Callable[..., None]) -> Callable[..., None]:
        def prefill(*args: Any) -> None:
            self._prefilling = True
            try:
                orig(*args)
            finally:
                self._prefilling = False

        return prefill

    def _on_spawn(self, orig: Callable[[SimGen[Any]], None]) -> Callable[[SimGen[Any]], None]:
        def spawn(gen: SimGen[Any]) -> None:
            orig(self._under(self._top(), gen))

        return spawn

    def _on_gather(
        self, orig: Callable[[list[SimGen[Any]]], SimGen[list[Any]]]
    ) -> Callable[..., SimGen[list[Any]]]:
        def gather(calls: list[SimGen[Any]]) -> SimGen[list[Any]]:
            frame = self._top()
            return orig([self._under(frame, c) for c in calls])

        return gather

    def _on_request(self, orig: Callable[..., SimGen[Any]], hop: Hop) -> Callable[..., SimGen[Any]]:
        """request_*: says which TaskQueue method the entry (_via_gateway, _hop_in) is serving."""

        reader = _Request(hop, orig)

        def request(*args: Any, **kwargs: Any) -> SimGen[Any]:
            self._entry = (hop, reader.read(args, kwargs))
            try:
                return orig(*args, **kwargs)
            finally:
                self._entry = None

        return request

    def _on_via_gateway(self, orig: Callable[..., SimGen[Any]]) -> Callable[..., SimGen[Any]]:
        def via_gateway(lg: Any, server: SimGen[Any]) -> SimGen[Any]:
            if self._entry is None:
                return orig(lg, server)
            hop, request = self._entry
            return orig(lg, self.serve(hop, "gateway", "gateway", request, server))

        return via_gateway

    def _on_hop_in(self, orig: Callable[..., SimGen[Any]]) -> Callable[..., SimGen[Any]]:
        def hop_in(lg: Any, entry: MonoNode, server: SimGen[Any]) -> SimGen[Any]:
            if self._entry is None:
                return orig(lg, entry, server)
            hop, request = self._entry
            return orig(lg, entry, self.serve(hop, entry.name, "node", request, server))

        return hop_in

    def _on_forward(self, orig: Callable[..., SimGen[Any]]) -> Callable[..., SimGen[Any]]:
        """The entry node's forward: the owner serves the same TaskQueue method, a child hop."""

        def forward(entry: MonoNode, owner: MonoNode | None, serve: Any, wait: float = 0.0) -> SimGen[Any]:
            if self._entry is None:
                return orig(entry, owner, serve, wait)
            hop, request = self._entry
            return orig(entry, owner, lambda n: self.serve(hop, n.name, "node", request, serve(n)), wait)

        return forward

    def _on_report_here(self, orig: Callable[..., SimGen[str]], node: MonoNode) -> Callable[..., SimGen[str]]:
        """A thief's ReportResult at the owner is an RPC; the node's own worker's report is not."""
        hop = MONO_HOPS["report_here"]
        request = _Request(hop, orig)

        def report_here(method: str, *rest: Any, **kwargs: Any) -> SimGen[str]:
            gen = orig(method, *rest, **kwargs)
            if method != "ReportResult":
                return gen
            return self.serve(hop, node.name, "node", request.read((method, *rest), kwargs), gen)

        return report_here

    def _on_start_worker(self, orig: Callable[[], None], owner: Any) -> Callable[[], None]:
        def start_worker() -> None:
            orig()
            worker: SimWorker | None = owner.worker
            if worker is not None:
                node, role = (worker.proc.name, worker.proc.role)
                worker.backend = TracedBackend(worker.backend, self, node, role)

        return start_worker


class TracedBackend:
    """A worker backend that records `worker/run` and `worker/report` (realsys.tracing.TracedBackend)."""

    def __init__(self, inner: Any, tracer: SimTracer, node: str, role: str) -> None:
        self.inner = inner
        self.tracer = tracer
        self.node, self.role = node, role
        self._arrived: dict[tuple[str, int], float] = {}

    def fetch(self, worker: SimWorker, free_slots: int, wait: float) -> SimGen[list[Assignment]]:
        got: list[Assignment] = yield from self.inner.fetch(worker, free_slots, wait)
        now = self.tracer.env.now
        for a in got:
            if a.job_id in self.tracer.traced:
                self._arrived[(a.job_id, a.attempt)] = now
        return got

    def heartbeat(self, worker: SimWorker, total_slots: int, free_slots: int, running: Any) -> SimGen[Any]:
        reply = yield from self.inner.heartbeat(worker, total_slots, free_slots, running)
        return reply

    def report(
        self, worker: SimWorker, job_id: str, attempt: int, outcome: Outcome, pre: float = 0.0
    ) -> SimGen[None]:
        tracer = self.tracer
        if job_id not in tracer.traced:
            yield from self.inner.report(worker, job_id, attempt, outcome, pre)
            return
        now = tracer.env.now
        arrived = self._arrived.pop((job_id, attempt), None)
        parent: Frame = None
        if arrived is not None:
            run_id = tracer._new_id(job_id)
            status = outcome_status(outcome)
            tracer._record(
                job_id, "worker/run", "INTERNAL", self.node, self.role, arrived, run_id, None, status, attempt
            )
            parent = (job_id, run_id)
        span_id = tracer._new_id(job_id)
        stack = tracer._stack()
        stack.append((job_id, span_id))

        def record(status: str) -> None:
            tracer._record(
                job_id,
                "worker/report",
                "INTERNAL",
                self.node,
                self.role,
                now,
                span_id,
                parent,
                status,
                attempt,
            )

        try:
            yield from self.inner.report(worker, job_id, attempt, outcome, pre)
        except DtqError as exc:
            record(status_of(exc))
            raise
        finally:
            tracer._pop(stack)
        record("OK")
