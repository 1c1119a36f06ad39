"""Text generation: a sampling loop whose forward passes go through the step batcher, so
concurrent generations share them.

>>> gen = Generation(lm, step, prompt_ids, Sampling(max_tokens=8, temperature=0.0))
>>> async for piece in gen: print(piece, end="")
>>> gen.finish_reason, gen.completion_tokens
('length', 8)

Each step re-runs the model over the whole sequence (no KV cache): the reference models are small,
and this keeps every step a plain batched forward pass. A generation ends at ``max_tokens``, at the
tokenizer's end-of-sequence token, or at a stop string (which is not returned). Cancelling the
consumer (a client that went away) stops the loop after the current forward pass.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .predictor import LanguageModel


@dataclass
class Sampling:
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


def sample(logits: Any, temperature: float, top_p: float, rng: np.random.Generator) -> int:
    """One token id: greedy at temperature 0, else nucleus sampling from softmax(logits / T)."""
    logits = np.asarray(logits, dtype=np.float64)
    if temperature <= 0.0:
        return int(np.argmax(logits))
    z = logits / temperature
    p = np.exp(z - z.max())
    p /= p.sum()
    if top_p < 1.0:
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        keep = order[: int(np.searchsorted(cum, top_p)) + 1]
        q = np.zeros_like(p)
        q[keep] = p[keep]
        p = q / q.sum()
    return int(rng.choice(len(p), p=p))


class Generation:
    """An async iterator of text pieces; ``finish_reason`` and token counts are set when it ends."""

    def __init__(self, lm: LanguageModel, step: Callable[[list[int]], Awaitable[Any]],
                 prompt_ids: list[int], sampling: Sampling,
                 on_first_token: Callable[[], None] | None = None) -> None:
        self.lm = lm
        self.step = step
        self.prompt_ids = list(prompt_ids)
        self.sampling = sampling
        self.on_first_token = on_first_token
        self.tokens: list[int] = []
        self.finish_reason = "length"
        self.started = time.perf_counter()

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

    async def _run(self) -> AsyncIterator[str]:
        s = self.sampling
        rng = np.random.default_rng(s.seed)
        ids = list(self.prompt_ids) or [0]
        emitted = 0
        # Text that might be the start of a stop string is held back until it cannot be.
        hold = max((len(x) for x in s.stop), default=1) - 1
        for _ in range(s.max_tokens):
            if len(ids) >= self.lm.context_length:
                break
            logits = await self.step(ids)
            token = sample(logits, s.temperature, s.top_p, rng)
            if not self.tokens and self.on_first_token is not None:
                self.on_first_token()
            if token == self.lm.eos_token_id:
                self.finish_reason = "stop"
                break
            ids.append(token)
            self.tokens.append(token)
            text = self.lm.decode(self.tokens)
            cut = _first_stop(text, s.stop, emitted)
            if cut is not None:
                self.finish_reason = "stop"
                if cut > emitted:
                    yield text[emitted:cut]
                return
            # A trailing U+FFFD may be half of a multi-byte character: wait for the rest.
            safe = len(text.rstrip("\ufffd")) - hold
            if safe > emitted:
                yield text[emitted:safe]
                emitted = safe
        text = self.lm.decode(self.tokens)
        if len(text) > emitted:
            yield text[emitted:]


def _first_stop(text: str, stops: list[str], emitted: int) -> int | None:
    """Index of the earliest stop string in text (searching only where a new one can be)."""
    found = [i for stop in stops if stop
             for i in [text.find(stop, max(0, emitted - len(stop)))] if i >= 0]
    return min(found) if found else None
