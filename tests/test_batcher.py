"""DynamicBatcher on its own (no model, no HTTP): when a batch closes, and what callers get."""

import asyncio
import time

import pytest

from kerasrecipes.serving.batcher import DynamicBatcher, QueueFull


def _run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 30))


def test_items_of_concurrent_callers_share_a_call_and_get_their_own_results():
    calls = []

    def fn(items):
        calls.append(list(items))
        return [10 * x for x in items]

    async def main():
        async with DynamicBatcher(fn, max_batch=4, timeout_ms=50) as batcher:
            return await asyncio.gather(*(batcher.submit([i]) for i in range(6)))

    assert _run(main()) == [[10 * i] for i in range(6)]
    assert [len(c) for c in calls] == [4, 2]  # full at 4; the rest after the window


def test_a_batch_does_not_wait_when_nothing_is_incoming():
    async def main():
        async with DynamicBatcher(lambda items: items, timeout_ms=5000,
                                  incoming=lambda: 0) as batcher:
            start = time.monotonic()
            assert await batcher.submit(["a"]) == ["a"]
            return time.monotonic() - start

    assert _run(main()) < 2.5  # not the 5 s window


def test_a_batch_waits_for_what_is_incoming_then_closes_when_it_arrives():
    sizes = []
    arriving = [1]

    def fn(items):
        sizes.append(len(items))
        return items

    async def main():
        async with DynamicBatcher(fn, timeout_ms=5000, incoming=lambda: arriving[0]) as batcher:
            first = asyncio.ensure_future(batcher.submit(["a"]))
            await asyncio.sleep(0.2)
            assert not first.done() and batcher.queued == 1  # waiting for the arriving one
            arriving[0] = 0
            second = await batcher.submit(["b"])  # it arrives: the batch closes at once
            return await first, second

    start = time.monotonic()
    assert _run(main()) == (["a"], ["b"])
    assert sizes == [2] and time.monotonic() - start < 2.5
    # And a fall to 0 without a new item: `wake()` closes the batch without the window.

    async def fell():
        arriving[0] = 1
        async with DynamicBatcher(fn, timeout_ms=5000, incoming=lambda: arriving[0]) as batcher:
            task = asyncio.ensure_future(batcher.submit(["c"]))
            await asyncio.sleep(0.2)
            arriving[0] = 0
            batcher.wake()
            return await task

    start = time.monotonic()
    assert _run(fell()) == ["c"] and time.monotonic() - start < 2.5


def test_full_queue_and_errors():
    async def full():
        async with DynamicBatcher(lambda items: items, timeout_ms=5000, max_queue=2,
                                  incoming=lambda: 1) as batcher:
            waiting = asyncio.ensure_future(batcher.submit(["a", "b"]))
            await asyncio.sleep(0.05)
            with pytest.raises(QueueFull, match="2 of 2 items queued; this request has 1"):
                await batcher.submit(["c"])
            batcher.flush = True  # draining: close the batch now
            batcher.wake()
            return await waiting

    assert _run(full()) == ["a", "b"]

    def broken(items):
        raise RuntimeError("model failed")

    async def failing():
        async with DynamicBatcher(broken, timeout_ms=1) as batcher:
            return await asyncio.gather(batcher.submit([1]), batcher.submit([2]),
                                        return_exceptions=True)

    assert [str(e) for e in _run(failing())] == ["model failed"] * 2
    for bad in ({"max_batch": 0}, {"max_queue": True}, {"timeout_ms": -1}):
        with pytest.raises(ValueError):
            DynamicBatcher(lambda items: items, **bad)
