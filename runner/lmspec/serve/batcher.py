"""Dynamic batching: concurrent requests share forward passes (Triton's semantics).

>>> batcher = Batcher(lambda rows: [r * 2 for r in rows], executor, Policy(8, 0.002, 64), ...)
>>> await batcher.submit(21)
42

An under-full batch waits until its oldest request has waited ``max_delay`` seconds and goes at
once when full; while a batch computes (in the worker thread) new requests queue up, so under
load batches fill by themselves. ``max_delay`` is an upper bound: when the previous pass served
a single request and none arrived while it ran, a lone new request goes at once (with one
client nobody else is coming, and the delay would be pure latency). At most ``max_queue``
requests wait; beyond that :class:`QueueFull` is raised (the server answers 503/429 with ``Retry-After``).

Passes run in the compute thread, so the event loop keeps answering while one computes. A pass
that takes less than ``inline_below`` seconds (judged by the recent ones) runs on the event loop
instead: handing it to the thread and back costs more than the pass itself (two wake-ups across
threads), and the loop is held for no longer than that hand-off would have taken. A pass of one
request while no other request is in flight (``alone``) runs on the loop up to
``lone_inline_below``: with one client the hand-off is pure latency (about 0.2 ms on a small
machine), and the loop has nobody else to serve meanwhile; as soon as requests overlap, passes go
back to the thread. Such a request on an idle batcher runs in the caller's task, without a round
trip through the batching task.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from .metrics import Metrics


class QueueFull(Exception):
    """The queue holds ``max_queue`` requests already."""


@dataclass(frozen=True)
class Policy:
    max_batch_size: int
    """Rows per forward pass; 1 request per pass when batching is off."""
    max_delay: float
    """Seconds an under-full batch waits for its oldest request."""
    max_queue: int
    enabled: bool = True


@dataclass(eq=False)
class _Item:
    payload: Any
    rows: int
    future: asyncio.Future[Any]
    enqueued: float = field(default_factory=time.perf_counter)


class Batcher:
    def __init__(self, run: Callable[[list[Any]], list[Any]], executor: Executor, policy: Policy,
                 metrics: Metrics, name: str) -> None:
        self._run = run
        self._executor = executor
        self.policy = policy
        self._name = name
        # Labelled once: a labels() lookup per pass costs a lock and a few dictionary probes.
        self._depth = metrics.queue_depth.labels(queue=name)
        self._waited = metrics.queue_latency.labels(queue=name)
        self._rows = metrics.batch_size.labels(queue=name)
        self._took = metrics.compute_latency.labels(queue=name)
        self._queue: collections.deque[_Item] = collections.deque()
        self._queued_rows = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._arrivals = 0
        self._lone = True
        """The last pass served one request and none arrived while it ran."""
        self.inline_below = 0.0
        """Seconds; set by the owner once it knows passes may share the loop's thread."""
        self.lone_inline_below = 0.0
        """Seconds; the same bound for a pass of one request while nothing else waits."""
        self.alone: Callable[[], bool] = lambda: False
        """Whether no other request is on its way here (set by the owner, who sees requests
        before they reach the queue: several may be parsed and about to submit)."""
        self._typical: float | None = None
        """Recent pass duration (exponential average); None until a pass has run."""
        self._busy = False
        """A pass is running in the compute thread."""
        self._last_rows = 0
        """Rows of the last pass."""

    @property
    def depth(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name=f"batcher-{self._name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def submit(self, payload: Any, rows: int = 1,
                     wait: Callable[[asyncio.Future[Any]], Awaitable[Any]] | None = None) -> Any:
        """Queue one unit of work and wait for its result. Cancelling the caller (timeout, client
        gone) takes the work out of the queue if it has not started. ``wait`` bounds the wait of
        queued work (a timeout, a watch for the client leaving; it may cancel the future, which
        takes the work out of the queue too); work run at once on the loop has nothing to wait
        for, and skips it with its tasks and timers."""
        if len(self._queue) >= self.policy.max_queue:
            raise QueueFull(self._name)
        item = _Item(payload, rows, asyncio.get_running_loop().create_future())
        if self._may_run_here(rows):
            # Requests that came in together reach here one after another, each finding the
            # batcher idle; one turn of the loop lets them all show up before deciding.
            await asyncio.sleep(0)
            if self._may_run_here(rows):
                # Idle, and this request would go alone and on the loop anyway: run it here
                # rather than wake the batching task for it and be woken back.
                self._arrivals += 1
                self._compute_here([item])
                return item.future.result()
        self._queue.append(item)
        self._queued_rows += rows
        self._arrivals += 1
        self._gauge()
        self._wake.set()
        try:
            return await (item.future if wait is None else wait(item.future))
        except asyncio.CancelledError:
            if item in self._queue:
                self._queue.remove(item)
                self._queued_rows -= rows
                self._gauge()
            raise

    def _may_run_here(self, rows: int) -> bool:
        return (not self._queue and not self._busy and (self._lone or not self.policy.enabled)
                and self.alone() and self._inline(lone=True, rows=rows))

    def _gauge(self) -> None:
        self._depth.set(len(self._queue))

    async def _loop(self) -> None:
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            if self.policy.enabled and not (self._lone and len(self._queue) == 1):
                await self._fill()
            batch = self._take()
            if batch:
                await self._compute(batch)
                # A pass run on the loop never yields: let its answers go out and new requests
                # in before the next one, or a queue would drain as one convoy.
                await asyncio.sleep(0)

    async def _fill(self) -> None:
        """Wait until the batch is full or its oldest request has waited max_delay."""
        while self._queue and self._queued_rows < self.policy.max_batch_size:
            left = self._queue[0].enqueued + self.policy.max_delay - time.perf_counter()
            if left <= 0:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), left)
            except TimeoutError:
                return

    def _take(self) -> list[_Item]:
        batch: list[_Item] = []
        rows = 0
        limit = self.policy.max_batch_size if self.policy.enabled else 1
        while self._queue:
            item = self._queue[0]
            if batch and (not self.policy.enabled or rows + item.rows > limit):
                break
            self._queue.popleft()
            self._queued_rows -= item.rows
            if item.future.done():  # cancelled while waiting
                continue
            batch.append(item)
            rows += item.rows
        self._gauge()
        return batch

    def _inline(self, lone: bool, rows: int) -> bool:
        """Whether the next pass runs on the loop: it is known to be short, or it serves one
        request while nothing else waits (what a single-threaded server does for every request;
        with nobody else to serve, the loop has nothing better to do meanwhile) and is no larger
        than the last pass, whose time the average is mostly made of."""
        typical = self._typical
        return typical is not None and (typical < self.inline_below
                                        or (lone and rows <= self._last_rows
                                            and typical < self.lone_inline_below))

    async def _compute(self, batch: list[_Item]) -> None:
        if self._inline(len(batch) == 1 and not self._queue and self.alone(), sum(i.rows for i in batch)):
            self._compute_here(batch)
            return
        started, arrivals = self._started(batch)
        self._busy = True
        try:
            results: list[Any] | Exception = await asyncio.get_running_loop().run_in_executor(
                self._executor, self._run, [i.payload for i in batch])
        except Exception as exc:
            results = exc
        finally:
            self._busy = False
        self._settle(batch, started, arrivals, results)

    def _compute_here(self, batch: list[_Item]) -> None:
        started, arrivals = self._started(batch)
        try:
            results: list[Any] | Exception = self._run([i.payload for i in batch])
        except Exception as exc:
            results = exc
        self._settle(batch, started, arrivals, results)

    def _started(self, batch: list[_Item]) -> tuple[float, int]:
        started = time.perf_counter()
        for item in batch:
            self._waited.observe(started - item.enqueued)
        self._rows.observe(sum(i.rows for i in batch))
        return started, self._arrivals

    def _settle(self, batch: list[_Item], started: float, arrivals: int,
                results: list[Any] | Exception) -> None:
        took = time.perf_counter() - started
        self._typical = took if self._typical is None else 0.8 * self._typical + 0.2 * took
        self._took.observe(took)
        self._last_rows = sum(i.rows for i in batch)
        self._lone = len(batch) == 1 and self._arrivals == arrivals
        if isinstance(results, Exception):
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(results)
            return
        for item, result in zip(batch, results, strict=True):
            if item.future.done():
                continue
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)
