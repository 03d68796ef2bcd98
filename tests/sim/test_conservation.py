"""Every accepted job ends in exactly one terminal state, and the core agrees with the records."""

from __future__ import annotations

import math
from collections import Counter

import pytest

import sim
from model.states import TERMINAL, JobState
from model.workload import Op
from tests.sim.conftest import mixed_workload


@pytest.mark.parametrize("design", ["mono", "micro"])
def test_every_job_ends_once(design: str) -> None:
    workload = mixed_workload(rate=200.0, run_time=3.0)
    env, cluster, loadgen = sim.api.build(sim.SimConfig(design, workload))  # type: ignore[arg-type]
    cluster.start()
    loadgen.start()
    env.run(until=loadgen.done)
    requests, jobs = loadgen.finish()

    accepted = [r.job_id for r in requests if r.op is Op.SUBMIT and r.status == "OK"]
    assert len(accepted) == len(set(accepted)) > 300
    assert sorted(j.job_id for j in jobs) == sorted(accepted)  # one record per accepted job
    assert all(r.status != "CANCELLED" for r in requests)  # all answered before the hard end
    for job in jobs:
        assert job.final_state in TERMINAL and math.isfinite(job.end_time), job
        state, attempts = cluster.job_state(job.job_id)
        assert (state, attempts) == (job.final_state, job.attempts)  # the client saw the owner's truth
    states = Counter(j.final_state for j in jobs)
    assert states[JobState.SUCCEEDED] > 0 and states[JobState.CANCELLED] > 0  # cancels hit live jobs
    core = cluster.core_counters()
    assert core["jobs"] == len(accepted)
    assert sum(core.get(f"state_{s.name.lower()}", 0) for s in TERMINAL) == len(accepted)
