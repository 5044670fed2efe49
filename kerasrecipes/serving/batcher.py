"""Dynamic batching: items from concurrent requests grouped into one model call.

What TensorFlow Serving's batching does (`max_batch_size`, `batch_timeout_micros`,
`max_enqueued_batches`, one batch thread): a batch closes when it holds `max_batch` items or
`timeout_ms` after its first item arrived, whichever comes first; while the model runs, the next
batch fills up. The queue is bounded: a request that does not fit is refused at once
(`QueueFull`, an HTTP 503 with `Retry-After`), never left waiting.

One difference: given `incoming` (the server passes how many requests are still arriving:
uploading, parsed or decoded, not yet queued), a batch also closes as soon as nothing more is on
its way. Waiting then only adds latency: with a 2 ms window, a lone client waited it out on every
request and got 0.85× the requests/s of batch 1 (BENCHMARKS.md, "Serving"). That is also what
lets the window be longer (10 ms by default) at no cost when traffic is light: 8 clients that each
send their next request when answered then keep forming batches of 8, where a 2 ms window splits
them into alternating batches of 4 for good.
"""

import asyncio
import collections
import concurrent.futures
import time


class QueueFull(Exception):
    """The batch queue has no room for the items of a request."""


class DynamicBatcher:
    """Groups single items submitted by concurrent callers into batched calls of `fn`.

    `fn(items)` runs in one worker thread, one call at a time (the model uses every core by
    itself), and returns one result per item, in order. An exception raised by `fn` is raised to
    every caller of that batch.

    Args:
        fn: callable. `fn(list of items) -> list of results`, same length and order.
        max_batch: int. Most items in one call; `1` turns batching off. Defaults to `32`.
        timeout_ms: float. How long a batch waits for more items after its first one arrived.
            Defaults to `10.0`.
        max_queue: int. Most items waiting (not counting the running batch). Defaults to `256`.
        incoming: callable or None. Returns how many submissions are on their way (e.g.
            requests being read or decoded); while it returns 0 a batch does not wait for more.
            Defaults to `None` (always wait up to the timeout).

    Example:
    >>> async def main():
    ...     batcher = DynamicBatcher(lambda items: [2 * x for x in items], max_batch=4)
    ...     async with batcher:
    ...         return await asyncio.gather(*(batcher.submit([i]) for i in range(3)))
    >>> asyncio.run(main())
    [[0], [2], [4]]
    """

    def __init__(self, fn, max_batch=32, timeout_ms=10.0, max_queue=256, incoming=None):
        for name, value in (("max_batch", max_batch), ("max_queue", max_queue)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer. Received: {name}={value!r}")
        if not isinstance(timeout_ms, (int, float)) or not 0 <= timeout_ms <= 60_000:
            raise ValueError(f"timeout_ms must be a number in [0, 60000]. "
                             f"Received: timeout_ms={timeout_ms!r}")
        self.fn = fn
        self.max_batch = max_batch
        self.timeout = timeout_ms / 1000
        self.max_queue = max_queue
        self.incoming = incoming
        self._queue = collections.deque()  # (item, future, enqueue time)
        self._wakeup = None
        self._task = None
        self._executor = None
        self.running = 0  # items in the model call now
        self.batches = 0  # model calls so far
        self.items = 0  # items served so far
        self.flush = False  # close batches without waiting (draining)

    async def start(self):
        """Starts the batching task on the running event loop."""
        self._wakeup = asyncio.Event()
        self._executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="model")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self):
        """Serves what is queued, then stops the task and its thread."""
        self.flush = True
        while self._queue or self.running:
            await asyncio.sleep(0.005)
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    async def __aenter__(self):
        await self.start()
        return self

    async def __aexit__(self, *exc):
        await self.stop()

    def wake(self):
        """Makes the batch being formed re-check whether to close (e.g. `incoming()` fell)."""
        if self._wakeup is not None:
            self._wakeup.set()

    @property
    def queued(self):
        """Items waiting for a batch."""
        return len(self._queue)

    def idle(self):
        """Whether nothing is queued or running."""
        return not self._queue and not self.running

    async def submit(self, items):
        """Queues `items` (a list) together and returns their results, in order.

        Raises:
            QueueFull: when the queue has no room for all of `items`; none of them is queued.
        """
        if self._task is None:
            raise RuntimeError("DynamicBatcher.submit before start(): use `async with batcher:`.")
        if len(self._queue) + len(items) > self.max_queue:
            raise QueueFull(f"the batch queue is full ({len(self._queue)} of {self.max_queue} "
                            f"items queued; this request has {len(items)})")
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        futures = [loop.create_future() for _ in items]
        self._queue.extend((item, future, now) for item, future in zip(items, futures))
        self._wakeup.set()
        return await asyncio.gather(*futures)

    async def _run(self):
        loop = asyncio.get_running_loop()
        while True:
            while not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            deadline = self._queue[0][2] + self.timeout
            while len(self._queue) < self.max_batch and not self.flush:
                if self.incoming is not None and not self.incoming():
                    break  # nothing more is on its way: waiting would only add latency
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except asyncio.TimeoutError:
                    break
            batch = []
            while self._queue and len(batch) < self.max_batch:
                entry = self._queue.popleft()
                if not entry[1].done():  # skip the items of a caller that went away
                    batch.append(entry)
            if not batch:
                continue
            size = self.running = len(batch)
            try:
                results = await loop.run_in_executor(self._executor, self.fn,
                                                     [item for item, _, _ in batch])
                if len(results) != size:
                    raise RuntimeError(f"the batch function returned {len(results)} results "
                                       f"for {size} items")
            except Exception as error:  # every caller of this batch gets it
                for _, future, _ in batch:
                    if not future.done():
                        future.set_exception(error)
            else:
                for (_, future, _), result in zip(batch, results):
                    if not future.done():  # a caller that went away
                        future.set_result(result)
            finally:
                self.running = 0
                self.batches += 1
                self.items += size
