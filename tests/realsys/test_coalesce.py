"""realsys/coalesce.py: a Coalescer sends at once when idle, batches what arrives while a call is in
flight, keeps its bounds, and fails only the items a reply or a failed call fails."""

from __future__ import annotations

import asyncio

import pytest

from model.errors import DtqError, InvalidArgument, NotFound, StaleAttempt, Unavailable
from realsys.coalesce import Coalescer, error_of_item, item_error


async def spin() -> None:
    """Lets the callers' tasks and the batch calls they start run up to their next wait."""
    for _ in range(5):
        await asyncio.sleep(0)


class Hop:
    """A batch call that records each batch and waits for the test to let it return."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.release = asyncio.Event()
        self.fail: Exception | None = None

    async def send(self, items: list[str]) -> list[str | DtqError]:
        self.batches.append(list(items))
        await self.release.wait()
        if self.fail is not None:
            raise self.fail
        return [NotFound(f"no {item}") if item.startswith("bad") else item.upper() for item in items]


async def test_one_caller_is_sent_at_once_and_later_callers_share_one_call() -> None:
    hop = Hop()
    coalescer: Coalescer[str, str] = Coalescer("hop", hop.send)
    first = asyncio.create_task(coalescer.call("a"))
    await spin()
    assert hop.batches == [["a"]]  # nothing in flight: sent without waiting for company
    rest = [asyncio.create_task(coalescer.call(x)) for x in ("b", "c", "d")]
    await spin()
    assert hop.batches == [["a"]]  # one call in flight: the others wait for it
    hop.release.set()
    assert await first == "A"
    assert await asyncio.gather(*rest) == ["B", "C", "D"]
    assert hop.batches == [["a"], ["b", "c", "d"]]
    assert (coalescer.calls, coalescer.items) == (2, 4)


async def test_an_item_error_fails_that_item_alone() -> None:
    hop = Hop()
    hop.release.set()
    coalescer: Coalescer[str, str] = Coalescer("hop", hop.send)
    results = await asyncio.gather(*(coalescer.call(x) for x in ("a", "bad1", "b")), return_exceptions=True)
    assert results[0] == "A" and results[2] == "B"
    assert isinstance(results[1], NotFound) and results[1].message == "no bad1"


async def test_a_failed_call_fails_every_item_it_carried_and_the_next_call_still_goes() -> None:
    hop = Hop()
    hop.fail = RuntimeError("connection reset")
    coalescer: Coalescer[str, str] = Coalescer("hop", hop.send)
    tasks = [asyncio.create_task(coalescer.call(x)) for x in ("a", "b", "c")]
    await spin()
    hop.release.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in results)
    hop.fail = None
    assert await coalescer.call("d") == "D"


async def test_batches_keep_their_item_and_byte_bounds() -> None:
    hop = Hop()
    coalescer: Coalescer[str, str] = Coalescer(
        "hop", hop.send, max_items=3, max_in_flight=1, size=len, max_bytes=4
    )
    first = asyncio.create_task(coalescer.call("x"))
    await spin()
    items = ["a", "b", "c", "d", "eeeeee", "f", "g"]
    rest = [asyncio.create_task(coalescer.call(x)) for x in items]
    await spin()
    hop.release.set()
    await first
    assert await asyncio.gather(*rest) == [x.upper() for x in items]
    assert hop.batches[1:] == [["a", "b", "c"], ["d"], ["eeeeee"], ["f", "g"]]
    assert all(len(b) <= 3 for b in hop.batches)


async def test_a_full_batch_waiting_starts_another_call_up_to_max_in_flight() -> None:
    hop = Hop()
    coalescer: Coalescer[str, str] = Coalescer("hop", hop.send, max_items=2, max_in_flight=2)
    tasks = [asyncio.create_task(coalescer.call(str(i))) for i in range(7)]
    await spin()
    assert len(hop.batches) == 2  # the first alone, then a full batch: two in flight, no more
    hop.release.set()
    assert await asyncio.gather(*tasks) == [str(i) for i in range(7)]
    assert sorted(x for b in hop.batches for x in b) == sorted(str(i) for i in range(7))


async def test_past_max_queued_a_caller_is_refused_unavailable() -> None:
    hop = Hop()
    coalescer: Coalescer[str, str] = Coalescer("hop", hop.send, max_queued=2)
    tasks = [asyncio.create_task(coalescer.call(x)) for x in ("a", "b", "c")]  # "a" goes out at once
    await spin()
    with pytest.raises(Unavailable, match="already wait"):
        await coalescer.call("d")
    hop.release.set()
    assert await asyncio.gather(*tasks) == ["A", "B", "C"]


async def test_a_caller_that_gave_up_is_not_sent() -> None:
    hop = Hop()
    coalescer: Coalescer[str, str] = Coalescer("hop", hop.send)
    first = asyncio.create_task(coalescer.call("a"))
    await spin()
    gone = asyncio.create_task(coalescer.call("b"))
    kept = asyncio.create_task(coalescer.call("c"))
    await spin()
    gone.cancel()
    hop.release.set()
    assert await first == "A" and await kept == "C"
    assert hop.batches == [["a"], ["c"]]
    await coalescer.close()


@pytest.mark.parametrize(
    "error", [NotFound("gone"), InvalidArgument("bad"), StaleAttempt("late"), Unavailable("busy", 0.25)]
)
def test_item_errors_round_trip(error: DtqError) -> None:
    back = error_of_item(*item_error(error))
    assert type(back) is type(error) and back.message == error.message
    assert getattr(back, "retry_after", None) == getattr(error, "retry_after", None)


def test_an_unknown_code_is_unavailable() -> None:
    error = error_of_item("NO_SUCH_CODE", "odd")
    assert isinstance(error, Unavailable) and "NO_SUCH_CODE" in error.message


async def test_items_queued_together_go_in_one_call_and_are_answered_each() -> None:
    hop = Hop()
    hop.release.set()
    coalescer: Coalescer[str, str] = Coalescer("hop", hop.send, max_items=3)
    results = await coalescer.call_many(["a", "bad", "b", "c"])
    assert results[0] == "A" and results[2:] == ["B", "C"]
    assert isinstance(results[1], NotFound)
    assert hop.batches == [["a", "bad", "b"], ["c"]]
