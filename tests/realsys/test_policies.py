"""Scheduling policies on real local clusters of both designs (model/policies.py, selected by DTQ_POLICY):
the key label is checked at the API, and a rate limit holds back a flooding tenant's jobs and releases
them on the owner's timer, while the other tenant's go at once. Every wait is bounded."""

from __future__ import annotations

import time

import pytest

from model.errors import InvalidArgument
from realsys import cluster
from realsys.client import SyncClient

JOB = b'{"seconds": 0}'


@pytest.mark.parametrize("design", ["mono", "micro"])
def test_rate_limit_and_key_label_on_a_real_cluster(design: str) -> None:
    overrides = {"DTQ_POLICY": "ratelimit", "DTQ_POLICY_RATE": "4", "DTQ_POLICY_BURST": "1"}
    with (
        cluster.running(
            design, total_slots=4, store="memory", overrides=overrides, nodes=1, grace=5, prefix="dtq-pol-"
        ) as info,
        SyncClient(info.clients[0]) as client,
    ):
        with pytest.raises(InvalidArgument, match="label 'tenant' is the scheduling policy's key"):
            client.submit("sleep", JOB, labels={"tenant": ""})
        start = time.monotonic()
        flood = [client.submit("sleep", JOB, labels={"tenant": "x"}) for _ in range(5)]
        other = client.submit("sleep", JOB, labels={"tenant": "y"})
        assert client.wait(other, timeout=10).done
        other_done = time.monotonic() - start
        for job_id in flood:
            assert client.wait(job_id, timeout=20).done
        flood_done = time.monotonic() - start
    # x's 5th job needs its 4th token after the first: 4 / (4 per s) = 1 s after x's first dispatch
    assert flood_done >= 0.95, flood_done
    assert other_done < flood_done - 0.5, (other_done, flood_done)  # y was not stuck behind x
