"""gRPC's threads as CPU consumers beside the event loop (rpc_thread, rpc_thread_client; sim/cpu.py
Proc.threads): every RPC costs its callee's threads and its caller's, on the host's cores but not on
the loops, so a loop-bound process serves more calls per second than with all its CPU on the loop."""

from __future__ import annotations

from typing import Any

import pytest

import sim
from model.workload import ClosedLoop, Distribution, OpenLoop, RequestMix, WorkloadSpec
from sim.dist import Dist
from sim.params import SimParams

SERVER, CLIENT = 2e-4, 1e-4


def _run(
    params: SimParams, workload: WorkloadSpec, design: str = "mono"
) -> tuple[list[Any], dict[str, float]]:
    """The request records and each process's CPU seconds."""
    env, cluster, loadgen = sim.api.build(sim.SimConfig(design, workload, params))  # type: ignore[arg-type]
    cluster.start()
    loadgen.start()
    env.run(until=loadgen.done)
    requests, _ = loadgen.finish()
    return requests, {p.name: p.busy_time for p in cluster.procs}


def _one_second(rate: float, mix: RequestMix) -> WorkloadSpec:
    """One second of open-loop requests at `rate`, zero-length jobs, no warm-up."""
    return WorkloadSpec(OpenLoop(rate), mix, duration=Distribution(), run_time=1.0, warmup=0.0, seed=3)


THREADS = {"rpc_thread": Dist("constant", SERVER), "rpc_thread_client": Dist("constant", CLIENT)}


def test_each_rpc_costs_its_callees_and_its_callers_threads() -> None:
    params = SimParams.ideal(**THREADS, nodes=1, slots=2, track_jobs=False)
    workload = _one_second(200.0, RequestMix(submit=0.5, status=0.5))
    requests, busy = _run(params, workload)
    n = len(requests)
    assert n > 150
    assert busy["n1-grpc"] == pytest.approx(n * SERVER)  # one call served per request
    assert busy["loadgen0-grpc"] == pytest.approx(n * CLIENT)  # one reply taken per request
    assert busy["n1"] == 0.0 and busy["loadgen0"] == 0.0  # ideal costs: nothing on the loops


def test_nested_calls_cost_both_sides_in_design_a() -> None:
    """A's gateway makes one call to the job service per status request: its threads take that
    call's reply, the job service's take the call."""
    params = SimParams.ideal(**THREADS, track_jobs=False)
    workload = _one_second(100.0, RequestMix(submit=0.2, status=0.8))
    requests, busy = _run(params, workload, "micro")
    statuses = sum(r.op.name == "STATUS" for r in requests)
    assert statuses > 50
    assert busy["gateway-grpc"] >= len(requests) * SERVER + statuses * CLIENT - 1e-12


def test_threads_off_the_loop_raise_a_loop_bound_capacity() -> None:
    """One node, one loop-bound method: with X of its S + X seconds per call on gRPC's threads (and
    cores to spare) the closed loop's throughput is (S + X) / S times that with all of it on the loop."""
    loop, thread = 4e-4, 2e-4
    workload = WorkloadSpec(
        ClosedLoop(16), RequestMix(), duration=Distribution(), run_time=2.0, warmup=0.5, seed=3
    )
    base = SimParams.ideal(nodes=1, slots=1, track_jobs=False, cores=4, min_empty_poll=0.01)
    all_on_loop = base.with_overrides({"service.node.SubmitJob.mean": loop + thread})
    split = base.with_overrides({"service.node.SubmitJob.mean": loop, "rpc_thread.mean": thread})
    served = []
    for params in (all_on_loop, split):
        result = sim.run(sim.SimConfig("mono", workload, params))
        served.append(result.summary["throughput"]["requests_per_s"])
    assert served[0] == pytest.approx(1 / (loop + thread), rel=0.03)
    assert served[1] / served[0] == pytest.approx((loop + thread) / loop, rel=0.05)


def test_threads_are_deterministic_and_never_pay_wakeups() -> None:
    params = SimParams().with_overrides(
        {
            "rpc_thread": {"kind": "exponential", "mean": SERVER},
            "rpc_thread_client.mean": CLIENT,
            "wakeup": 5e-5,
        }
    )
    workload = WorkloadSpec(
        OpenLoop(150.0),
        RequestMix(submit=0.6, status=0.4),
        duration=Distribution("exponential", 0.02),
        run_time=1.0,
        seed=9,
    )
    config = sim.SimConfig("mono", workload, params)
    first, again = sim.run(config), sim.run(config)
    assert first.requests == again.requests and first.jobs == again.jobs
    env, cluster, loadgen = sim.api.build(config)
    cluster.start()
    loadgen.start()
    env.run(until=loadgen.done)
    threads = [p for p in cluster.procs if p.role == "grpc"]
    assert len(threads) == 6 + 1 and all(p.wakeups == 0 and p.busy_time > 0 for p in threads)
