"""The bench's client-side target for Design B: the load generator's DtqTarget, but each WaitJob
goes to the job's owner, as DtqClient does.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import grpc

from dtq.v1 import client_pb2, job_pb2
from model.states import JobState
from realsys.targets import DtqTarget, TargetError, status_name

_STATE_NAMES = {int(s): s.name for s in JobState}


class RoutedDtqTarget(DtqTarget):
    """DtqTarget whose WaitJob goes to the job's owner (Design B); submits stay round-robin.

    The owner is the job id's prefix; which address serves it is learnt from the submit replies
    (`job.owner_node`), so the target needs no node table and a Design A gateway works unchanged.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # DtqTarget's
        super().__init__(*args, **kwargs)
        self._owner_stub: dict[str, Any] = {}

    async def submit(self, job_type: str, payload: bytes) -> str:
        stub = self._stub()
        request = self.submit_request(job_type, payload)
        try:
            response: client_pb2.SubmitJobResponse = await stub.SubmitJob(
                request, timeout=self.submit_timeout()
            )
        except grpc.RpcError as exc:
            raise TargetError(status_name(exc)) from None
        self._owner_stub.setdefault(response.job.owner_node, stub)
        self.note_submitted(response)
        return response.job_id

    async def wait(self, job_id: str, timeout: float) -> tuple[str, int]:
        ended = self.ended(job_id)
        if ended is not None:
            return ended
        stub = self._owner_stub.get(job_id.partition("-")[0]) or self._stub()
        deadline = time.monotonic() + timeout
        while True:
            poll = max(0.0, min(deadline - time.monotonic(), 30.0))
            request = client_pb2.WaitJobRequest(job_id=job_id)
            request.timeout.FromNanoseconds(int(poll * 1e9))
            try:
                job: job_pb2.Job = await stub.WaitJob(request, timeout=poll + self.timeout)
            except grpc.RpcError as exc:
                raise TargetError(status_name(exc)) from None
            if job.done or time.monotonic() >= deadline:
                return _STATE_NAMES.get(job.state, "STATE_UNSPECIFIED"), job.attempt


def routed_target_spec(addresses: Sequence[str], design: str, submit_wait: float = 0.0) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"addresses": list(addresses), "timeout": 10.0, "design": design}
    if submit_wait > 0:
        kwargs["submit_wait"] = submit_wait
    return {"factory": "lab.bench.targets:RoutedDtqTarget", "kwargs": kwargs}
