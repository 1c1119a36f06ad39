"""Text generation on the event loop: the :class:`EngineRunner` drives the engine (one iteration
at a time, in the compute thread) and each request reads its tokens as a :class:`Generation`.

>>> gen = runner.generation(prompt_ids, Sampling(max_tokens=8, temperature=0.0))
>>> async for piece in gen: print(piece, end="")
>>> gen.finish_reason, gen.completion_tokens
('length', 8)

A generation ends at ``max_tokens`` (``length``), at one of the model's end-of-sequence tokens or
at a stop string (``stop``; the stop string is not returned). A consumer that stops reading (a
client that went away, a stop string found) cancels its sequence, which leaves the batch at the
engine's next iteration.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field

from ..engine.core import Busy, Engine, SamplingParams, Sequence, TokenInfo
from ..engine.lm import TextModel
from .metrics import Metrics

BURST_SECONDS = 0.05

log = logging.getLogger("lmspec.serve")


@dataclass
class Sampling:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    logprobs: int | None = None
    echo: bool = False


@dataclass(eq=False)
class _Waiter:
    event: asyncio.Event = field(default_factory=asyncio.Event)
    tokens: list[TokenInfo] = field(default_factory=list)
    last: float = field(default_factory=time.perf_counter)
    started: bool = False
    ended: bool = False
    """Set by the runner after the sequence's last tokens were handed over."""


class EngineRunner:
    """Runs :meth:`Engine.step` in the compute thread whenever sequences are waiting or running,
    and hands each iteration's tokens to the requests that wait for them."""

    def __init__(self, lm: TextModel, engine: Engine, executor: Executor, metrics: Metrics) -> None:
        self.lm = lm
        self.engine = engine
        self._executor = executor
        self._metrics = metrics
        self._waiters: dict[Sequence, _Waiter] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._window: collections.deque[tuple[float, int]] = collections.deque()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="engine")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def generation(self, prompt: list[int], sampling: Sampling,
                   on_first_token: Callable[[], None] | None = None) -> Generation:
        return Generation(self, prompt, sampling, on_first_token)

    def submit(self, prompt: list[int], sampling: Sampling) -> tuple[Sequence, _Waiter]:
        """Queue a sequence; :class:`~.engine.Busy` when the waiting queue is full."""
        params = SamplingParams(max_tokens=sampling.max_tokens, temperature=sampling.temperature,
                                top_p=sampling.top_p, seed=sampling.seed, logprobs=sampling.logprobs,
                                prompt_logprobs=sampling.echo and sampling.logprobs is not None)
        seq = self.engine.add(prompt, params, self.lm.eos)
        waiter = _Waiter()
        self._waiters[seq] = waiter
        self._gauges()
        self._wake.set()
        return seq, waiter

    def release(self, seq: Sequence) -> None:
        if not seq.done:
            seq.cancel()
            self._wake.set()
        self._waiters.pop(seq, None)

    def _gauges(self) -> None:
        running, waiting = self.engine.counts()
        self._metrics.running_sequences.set(running)
        self._metrics.waiting_sequences.set(waiting)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self.engine.has_work:
                self._wake.clear()
                self._gauges()
                await self._wake.wait()
            await loop.run_in_executor(self._executor, self._burst, loop)

    def _burst(self, loop: asyncio.AbstractEventLoop) -> None:
        """In the compute thread: engine iterations for up to ``BURST_SECONDS`` (or until idle),
        each one's tokens handed to the event loop at once. Staying in the thread between
        iterations saves a round trip through the event loop per token, and the loop streams
        one iteration's tokens while the next computes; returning now and then lets other work
        queued for the compute thread (OIP inference) run."""
        until = time.perf_counter() + BURST_SECONDS
        while self.engine.has_work and time.perf_counter() < until:
            started = time.perf_counter()
            try:
                touched = self.engine.step()
            except Exception as exc:
                # ``step`` fails its sequences itself; this is for an error that escapes it. Every
                # request gets the error now and the engine starts again empty, rather than the
                # loop dying and every request hanging.
                log.exception("generation step failed; failing the %d sequence(s) in the engine",
                              sum(self.engine.counts()))
                touched = self.engine.fail_all(exc)
            handed = []
            for seq in touched:
                tokens, seq.pending = seq.pending, []
                handed.append((seq, tokens, seq.done))
            loop.call_soon_threadsafe(self._deliver, handed, started, time.perf_counter())

    def _deliver(self, handed: list[tuple[Sequence, list[TokenInfo], bool]], started: float,
                 now: float) -> None:
        """On the event loop: one iteration's tokens to the requests waiting for them."""
        self._metrics.compute_latency.labels(queue="generate").observe(now - started)
        self._metrics.batch_size.labels(queue="generate").observe(max(1, len(handed)))
        produced = 0
        for seq, tokens, ended in handed:
            produced += len(tokens)
            waiter = self._waiters.get(seq)
            if waiter is None:
                continue
            if tokens:
                if waiter.started:  # the first token's latency is time to first token
                    gap = (now - waiter.last) / len(tokens)
                    for _ in tokens:
                        self._metrics.inter_token_latency.observe(gap)
                waiter.started = True
                waiter.last = now
            waiter.tokens.extend(tokens)
            waiter.ended = ended
            waiter.event.set()
        self._throughput(now, produced)
        self._gauges()

    def _throughput(self, now: float, produced: int) -> None:
        """Tokens per second over the last few seconds of iterations."""
        self._window.append((now, produced))
        while self._window and self._window[0][0] < now - 5.0:
            self._window.popleft()
        span = now - self._window[0][0] if len(self._window) > 1 else 0.0
        total = sum(n for _, n in list(self._window)[1:])
        self._metrics.tokens_per_second.set(total / span if span > 0 else 0.0)


class Generation:
    """An async iterator of text pieces; ``finish_reason``, token counts and (when asked)
    log-probabilities are set as it runs."""

    def __init__(self, runner: EngineRunner, prompt_ids: list[int], sampling: Sampling,
                 on_first_token: Callable[[], None] | None = None) -> None:
        self.runner = runner
        self.lm = runner.lm
        self.prompt_ids = list(prompt_ids)
        self.sampling = sampling
        self.on_first_token = on_first_token
        self.tokens: list[TokenInfo] = []
        self.prompt_info: list[TokenInfo] = []
        self.finish_reason = "length"
        self.reported = 0
        """Tokens whose text has been yielded: a stream reports the log-probabilities of these
        only, so they never run ahead of the text (held back while it may start a stop string)."""
        # Queued now, so a full queue is an error of the request, before any response starts.
        self._seq, self._waiter = runner.submit(self.prompt_ids, sampling)
        # A generation dropped unread (a client gone before its stream started) frees its sequence.
        weakref.finalize(self, runner.release, self._seq)

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)

    async def text(self) -> str:
        return "".join([piece async for piece in self])

    def __aiter__(self) -> AsyncIterator[str]:
        return self._run()

    async def _tokens(self) -> AsyncGenerator[list[TokenInfo], None]:
        seq, waiter = self._seq, self._waiter
        try:
            while True:
                await waiter.event.wait()
                waiter.event.clear()
                batch, waiter.tokens = waiter.tokens, []
                if batch:
                    yield batch
                if not waiter.ended:
                    continue
                if seq.error is not None:
                    raise seq.error
                if not waiter.tokens:
                    self.finish_reason = seq.finish_reason or "length"
                    self.prompt_info = seq.prompt_info
                    return
        finally:
            self.runner.release(seq)

    async def _run(self) -> AsyncIterator[str]:
        s = self.sampling
        emitted = 0
        # Text that might be the start of a stop string is held back until it cannot be.
        hold = max((len(x) for x in s.stop), default=1) - 1
        ids: list[int] = []
        tokens = self._tokens()  # an async generator: closed explicitly below
        try:
            async for batch in tokens:
                if not self.tokens and self.on_first_token is not None:
                    self.on_first_token()
                for info in batch:
                    self.tokens.append(info)
                    ids.append(info.id)
                text = self.lm.decode(ids)
                cut = _first_stop(text, s.stop, emitted)
                if cut is not None:
                    self.finish_reason = "stop"
                    # The tokens (and their log-probabilities) end where the returned text ends.
                    del self.tokens[_tokens_for(self.lm, ids, text[:cut], self.reported):]
                    self.reported = len(self.tokens)
                    if cut > emitted:
                        yield text[emitted:cut]
                    return
                # A trailing U+FFFD may be the start of a multi-byte character: wait for the
                # rest, but for at most 3 of them (a UTF-8 character has at most 4 bytes), so a
                # model that emits invalid bytes still streams.
                pending = min(3, len(text) - len(text.rstrip("\ufffd")))
                safe = len(text) - pending - hold
                if safe > emitted:
                    if s.logprobs is not None:
                        self.reported = _tokens_for(self.lm, ids, text[:safe], self.reported)
                    yield text[emitted:safe]
                    emitted = safe
        finally:
            await tokens.aclose()  # cancels the sequence if it has not ended
        text = self.lm.decode(ids)
        self.reported = len(self.tokens)
        if len(text) > emitted:
            yield text[emitted:]


def _tokens_for(lm: TextModel, ids: list[int], kept: str, low: int = 0) -> int:
    """The fewest of ``ids`` (at least ``low``) whose text starts with ``kept``; the tokens
    after them (held-back text, a stop string and what followed it) do not belong to ``kept``.
    A binary search: a few decodes, however long the stop strings."""
    high = len(ids)
    while low < high:
        mid = (low + high) // 2
        if lm.decode(ids[:mid]).startswith(kept):
            high = mid
        else:
            low = mid + 1
    return high


def _first_stop(text: str, stops: list[str], emitted: int) -> int | None:
    """Index of the earliest stop string in text (searching only where a new one can be)."""
    found = [i for stop in stops if stop
             for i in [text.find(stop, max(0, emitted - len(stop)))] if i >= 0]
    return min(found) if found else None


__all__ = ["Busy", "EngineRunner", "Generation", "Sampling"]
