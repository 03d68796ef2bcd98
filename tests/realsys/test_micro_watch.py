"""The Design A gateway's record of pushed job ends (realsys/micro/gateway.py's _Watch): it vouches
only for jobs created while the subscription that is live now was live, answers each ended job once,
and on a broken subscription forgets everything and wakes its parked waits."""

from __future__ import annotations

import asyncio

from dtq.v1 import internal_pb2, job_pb2
from realsys.micro import gateway
from realsys.micro.gateway import _Watch


def notice(job_id: str, state: int = 4, gone: bool = False) -> internal_pb2.JobNotice:
    n = internal_pb2.JobNotice(job_id=job_id)
    if not gone:
        n.job.CopyFrom(job_pb2.Job(job_id=job_id, state=state, done=True))  # type: ignore[arg-type]
    return n


def test_only_jobs_created_under_the_live_subscription_are_tracked() -> None:
    watch = _Watch()
    watch.created("before", -1)  # sent while no subscription was live
    assert not watch.tracked
    watch.subscribed()
    epoch = watch.epoch
    watch.created("a", epoch)
    assert watch.tracked == {"a"}
    watch.lost()  # the stream broke: nothing is vouched for any more
    assert not watch.live and not watch.tracked
    watch.subscribed()
    watch.created("b", epoch)  # its CreateJobs went out under the old subscription
    assert not watch.tracked


async def test_an_ended_job_is_answered_once_and_wakes_its_waits() -> None:
    watch = _Watch()
    watch.subscribed()
    watch.created("a", watch.epoch)
    waiter: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    watch.add_waiter("a", waiter)
    watch.ended(notice("a"))
    assert waiter.done() and waiter.result() is True
    first = watch.take("a")
    assert first is not None and first.job_id == "a" and first.done
    assert watch.take("a") is None and "a" not in watch.tracked  # a second WaitJob is forwarded


async def test_a_notice_before_the_create_reply_is_kept_for_it() -> None:
    watch = _Watch()
    watch.subscribed()
    epoch = watch.epoch
    watch.ended(notice("a"))  # the job ended before its CreateJobs reply came back
    watch.created("a", epoch)
    ended = watch.take("a")
    assert ended is not None and ended.job_id == "a"


async def test_a_gone_job_and_a_broken_subscription_send_waits_to_the_job_service() -> None:
    watch = _Watch()
    watch.subscribed()
    watch.created("a", watch.epoch)
    watch.created("b", watch.epoch)
    loop = asyncio.get_running_loop()
    wait_a: asyncio.Future[bool] = loop.create_future()
    wait_b: asyncio.Future[bool] = loop.create_future()
    watch.add_waiter("a", wait_a)
    watch.add_waiter("b", wait_b)
    watch.ended(notice("a", gone=True))  # retention dropped it: nothing to answer with here
    assert wait_a.done() and watch.take("a") is None and "a" not in watch.tracked
    watch.lost()
    assert wait_b.done() and wait_b.result() is False and watch.take("b") is None


def test_ended_jobs_kept_are_bounded() -> None:
    watch = _Watch()
    watch.subscribed()
    limit = gateway.MAX_ENDED
    for i in range(limit + 10):
        watch.created(f"j{i}", watch.epoch)
        watch.ended(notice(f"j{i}"))
    assert len(watch._ended) == limit
    assert watch.take("j0") is None and "j0" not in watch.tracked  # dropped: forwarded instead
    assert watch.take(f"j{limit + 9}") is not None
