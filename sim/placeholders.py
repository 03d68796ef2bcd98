"""The simulator's parameters before any calibration. NOT measurements: round numbers of the right
order for CPython gRPC on loopback, so the simulator runs before data/calibration/<name>.json
exists. A calibration replaces all of them.
"""

from __future__ import annotations

from collections.abc import Mapping

from sim.dist import ZERO, Dist

# Roles whose processes serve requests. "node" is Design B's process; the others are Design A's six.
ROLES = ("node", "gateway", "job", "queue", "coordinator", "worker", "result")
DEFAULT_METHOD = "*"  # a role's fallback entry in `service`


def _lognormal(mean_us: float, sigma: float = 0.5) -> Dist:
    return Dist("lognormal", mean_us * 1e-6, sigma)


# NOT FITTED TO ANYTHING. Order-of-magnitude guesses for grpc.aio + CPython on loopback, so the
# simulator has something to run with until data/calibration/<name>.json exists.
PLACEHOLDER_SERVICE: Mapping[str, Mapping[str, Dist]] = {
    "node": {
        DEFAULT_METHOD: _lognormal(150),
        "SubmitJob": _lognormal(200),
        "ListJobs": _lognormal(250),
        "ListLocalJobs": _lognormal(150),
        "QueueDepth": _lognormal(60),
        "StealWork": _lognormal(150),
        "WaitJob.wake": _lognormal(60),  # a parked WaitJob answering once the job ended
        "ListJobs.merge": _lognormal(30),  # own page + merge_pages after the scatter-gather
        "steal_plan": _lognormal(20),  # resuming after a QueueDepth round: plan_steal
        "forward": _lognormal(120),  # a request relayed to the job's owner (parse, route, re-answer)
        "fetch": _lognormal(40),  # in-process: one pass of the worker's fetch loop (fetch_now, plan)
        "heartbeat": _lognormal(30),  # in-process heartbeat of the node's own worker
        "report": _lognormal(50),  # in-process report of the node's own worker
        "launch": _lognormal(50),  # worker runtime: start one attempt (task, context)
        "finish": _lognormal(30),  # worker runtime: the handler ended
        "timer": _lognormal(20),  # CoreTimer firing: handle_timer
    },
    "gateway": {DEFAULT_METHOD: _lognormal(150), "ListJobs.relay": ZERO},
    "job": {
        DEFAULT_METHOD: _lognormal(150),
        "CreateJob": _lognormal(180),
        "WaitJob.wake": _lognormal(60),
        "flush": _lognormal(40),  # building one Enqueue batch from the outbox
        "timer": _lognormal(20),
        "sweep": _lognormal(50),
    },
    "queue": {DEFAULT_METHOD: _lognormal(100), "Reserve.wake": _lognormal(50), "timer": _lognormal(20)},
    "coordinator": {DEFAULT_METHOD: _lognormal(120), "timer": _lognormal(20)},
    "result": {DEFAULT_METHOD: _lognormal(100)},
    "worker": {DEFAULT_METHOD: _lognormal(60), "launch": _lognormal(60), "finish": _lognormal(40)},
}
# seconds of CPU per item a call handles (jobs listed, leased, enqueued, renewed, ...), "role.method"
PLACEHOLDER_PER_ITEM: Mapping[str, float] = {
    "node.ListJobs.merge": 10e-6,  # merging and re-serializing each gathered job
    "node.ListLocalJobs": 15e-6,
    "node.fetch": 25e-6,
    "node.StealWork": 25e-6,
    "node.heartbeat": 5e-6,
    "node.WorkerHeartbeat": 5e-6,
    "job.ListJobs": 15e-6,
    "job.LeaseJobs": 30e-6,
    "job.RenewLeases": 5e-6,
    "job.flush": 5e-6,
    "job.sweep": 1e-6,
    "queue.Enqueue": 10e-6,
    "queue.Reserve": 10e-6,
    "queue.Ack": 5e-6,
    "gateway.ListJobs.relay": 10e-6,  # the gateway re-serializes the page it relays
}
PLACEHOLDER_CLIENT_CALL = _lognormal(100)
PLACEHOLDER_NETWORK = _lognormal(40, 0.3)
PLACEHOLDER_COMMIT = _lognormal(60, 0.6)
PLACEHOLDER_COMMIT_PER_ROW = 8e-6
PLACEHOLDER_LOADGEN_REQUEST = _lognormal(150)
