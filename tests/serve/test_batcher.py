"""The dynamic batcher holds an under-full batch for more requests only when more are likely:
a request that arrives alone at an idle server (the previous pass served one request and none
came while it ran) goes at once instead of waiting ``maxQueueDelay`` for company that never
comes; under concurrent load batches wait and fill as before."""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor

from lmspec.serve.batcher import Batcher, Policy
from lmspec.serve.metrics import Metrics

DELAY = 1.0  # long enough that waiting it, or not, cannot be confused on a loaded machine


def test_alone_goes_at_once_and_concurrent_requests_still_batch() -> None:
    passes: list[int] = []

    def run(rows: list[int]) -> list[int]:
        passes.append(len(rows))
        return [r * 2 for r in rows]

    async def main() -> None:
        batcher = Batcher(run, ThreadPoolExecutor(1), Policy(4, DELAY, 64), Metrics(), "infer")
        batcher.start()
        try:
            for _ in range(3):  # one client, request after request: never held
                t = time.perf_counter()
                assert await batcher.submit(21) == 42
                assert time.perf_counter() - t < DELAY / 2
            # Several at once fill a batch together.
            assert await asyncio.gather(*(batcher.submit(i) for i in range(4))) == [0, 2, 4, 6]
            assert passes[-1] == 4
            # Right after a shared pass more company is likely: an under-full batch waits.
            t = time.perf_counter()
            results = await asyncio.gather(batcher.submit(1), _later(batcher, 2, DELAY / 4))
            assert results == [2, 4] and passes[-1] == 2
            assert time.perf_counter() - t >= DELAY * 0.9
            # The pair served, a lone request waits once more; after it, requests go at once again.
            await batcher.submit(5)
            t = time.perf_counter()
            await batcher.submit(6)
            assert time.perf_counter() - t < DELAY / 2
        finally:
            await batcher.stop()

    asyncio.run(main())


async def _later(batcher: Batcher, value: int, delay: float) -> int:
    await asyncio.sleep(delay)
    result: int = await batcher.submit(value)
    return result
