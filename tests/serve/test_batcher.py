"""The dynamic batcher holds an under-full batch for more requests only when more are likely:
a request that arrives alone at an idle server (the previous pass served one request and none
came while it ran) goes at once instead of waiting ``maxQueueDelay`` for company that never
comes; under concurrent load batches wait and fill as before."""

from __future__ import annotations

import asyncio
import threading
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


def test_short_passes_run_on_the_loop_and_slow_ones_in_the_compute_thread() -> None:
    """A pass shorter than ``inline_below`` skips the hand-off to the compute thread (it would
    cost more than the pass); once passes are slow again they go back to the thread, so the loop
    is never held for long. Nothing runs inline before the first pass has been timed."""
    threads: list[str] = []
    slow = [False]

    def run(rows: list[int]) -> list[int]:
        threads.append(threading.current_thread().name)
        if slow[0]:
            time.sleep(0.2)
        return rows

    async def main() -> None:
        batcher = Batcher(run, ThreadPoolExecutor(1, thread_name_prefix="compute"), Policy(4, 0.001, 64),
                          Metrics(), "infer")
        batcher.inline_below = 0.01
        batcher.start()
        try:
            for i in range(3):
                assert await batcher.submit(i) == i
            assert threads[0].startswith("compute")  # untimed yet: the thread
            assert threads[1:] == [threading.main_thread().name] * 2
            slow[0] = True
            for i in range(3):
                await batcher.submit(i)
            # The first slow pass ran on the loop (it looked short); the average then moved it back.
            assert threads[3] == threading.main_thread().name
            assert all(t.startswith("compute") for t in threads[4:])
        finally:
            await batcher.stop()

    asyncio.run(main())


def test_a_lone_request_runs_on_the_loop_and_overlapping_ones_batch_in_the_thread() -> None:
    """One request at a time, with no other in flight, skips the compute thread up to
    ``lone_inline_below`` (a single-client server gains the hand-off's latency). When other
    requests are in flight (the owner counts them, as the server's gate does), passes go to the
    thread, and requests that arrive together share them."""
    calls: list[tuple[str, int]] = []

    def run(rows: list[int]) -> list[int]:
        calls.append((threading.current_thread().name, len(rows)))
        time.sleep(0.005)  # longer than inline_below, shorter than lone_inline_below
        return rows

    async def main() -> None:
        batcher = Batcher(run, ThreadPoolExecutor(1, thread_name_prefix="compute"), Policy(8, 0.05, 64),
                          Metrics(), "infer")
        batcher.inline_below = 0.001
        batcher.lone_inline_below = 0.05
        in_flight = [0]
        batcher.alone = lambda: in_flight[0] <= 1

        async def request(value: int, rows: int = 1) -> int:
            in_flight[0] += 1  # as the gate counts a request before its handler first waits
            try:
                result: int = await batcher.submit(value, rows)
                return result
            finally:
                in_flight[0] -= 1

        batcher.start()
        main_thread = threading.main_thread().name
        try:
            for i in range(3):
                assert await request(i) == i
            assert calls[0][0].startswith("compute")  # untimed yet: the thread
            assert calls[1:] == [(main_thread, 1)] * 2
            # Larger than the passes timed so far: it may take longer, so the thread.
            assert await request(5, rows=50) == 5
            assert calls[-1][0].startswith("compute")
            del calls[3:]
            # Another request in flight (still reading its body, say): the thread.
            in_flight[0] += 1
            assert await request(7) == 7
            in_flight[0] -= 1
            assert calls[3][0].startswith("compute")
            # Several at once: they share passes in the thread.
            del calls[:]
            assert await asyncio.gather(*(request(i) for i in range(6))) == list(range(6))
            assert sum(n for _, n in calls) == 6 and len(calls) < 6
            assert all(t.startswith("compute") for t, _ in calls)
            # Alone again: back on the loop (once the average has come down from the batches).
            for i in range(8):
                await request(i)
            assert calls[-1] == (main_thread, 1)
        finally:
            await batcher.stop()

    asyncio.run(main())
