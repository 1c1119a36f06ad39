"""The built-in generation engine: a KV cache per sequence and continuous (iteration-level)
batching.

>>> engine = Engine(model, EngineLimits(max_sequences=32, max_waiting=256, max_model_length=2048,
...                                     kv_cache_tokens=65536, prefill_chunk_tokens=512))
>>> seq = engine.add(prompt_ids, SamplingParams(max_tokens=16))   # from the event loop
>>> updates = engine.step()                                       # in the compute thread

**Scheduling policy.** Each call of :meth:`Engine.step` is one iteration:

1. sequences that were cancelled (client gone, stop string found) or finished leave the batch
   and their cache rows are freed;
2. waiting sequences are admitted, oldest first, while fewer than ``max_sequences`` run and the
   KV budget holds (see below); the others keep waiting (at most ``max_waiting`` of them);
3. prefill: admitted prompts run through the model, oldest first, up to ``prefill_chunk_tokens``
   prompt tokens in this iteration. Whole prompts that fit run together in one left-padded
   forward pass; a longer prompt is split into chunks over several iterations, so it delays the
   running streams by at most one chunk's forward pass per token, never by the whole prompt. A
   prompt whose prefill completes yields its first token and joins the batch;
4. decode: one batched forward pass gives every running sequence its next token.

**KV cache.** Every sequence owns one row of the running batch's cache (transformers'
:class:`~transformers.DynamicCache`). Rows are left-padded to the batch's length and masked;
a sequence joins by having its own prefill cache padded into the batch, and leaves by having its
row dropped (its memory is freed at once). Columns that are padding in every row are trimmed
after each iteration, so the batch's cache holds at most ``rows × longest sequence`` tokens;
admission keeps ``rows × (prompt + max_tokens)`` of the longest reservation within
``kv_cache_tokens``.

Why this is not transformers' own continuous batching manager (``init_continuous_batching``):
it swaps the model's attention for a paged implementation and owns the model while it lives
(plain forward passes on the same object fail, but the server also answers OIP ``infer`` with
the model's logits), its greedy/sampling choice and temperature are fixed per manager rather
than per request, it has no per-request seed, and it runs a thread of its own outside the
server's compute thread and drain. This engine keeps the model's own attention and transformers'
cache classes, so greedy output is the one ``generate`` gives; only the merging of caches of
different lengths into one batch is written here, because transformers has no operation for it.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import Cache, DynamicCache, DynamicLayer

log = logging.getLogger("lmspec.serve")

FINISH_STOP = "stop"
FINISH_LENGTH = "length"


@dataclass(frozen=True)
class EngineLimits:
    max_sequences: int
    """Sequences generating at once (rows of the batch)."""
    max_waiting: int
    """Sequences allowed to wait for a row; beyond it :meth:`Engine.add` raises :class:`Busy`."""
    max_model_length: int
    """Longest sequence (prompt + completion), in tokens."""
    kv_cache_tokens: int
    """Tokens the batch's KV cache may hold (rows × longest reservation)."""
    prefill_chunk_tokens: int
    """Prompt tokens prefilled per iteration, between two decode steps."""


class Busy(Exception):
    """The waiting queue is full."""


@dataclass(frozen=True)
class SamplingParams:
    max_tokens: int
    temperature: float = 0.0
    """0 is greedy decoding."""
    top_p: float = 1.0
    seed: int | None = None
    logprobs: int | None = None
    """Return the chosen token's log-probability and this many alternatives (None: none)."""
    prompt_logprobs: bool = False
    """Also return the log-probability of each prompt token (completions' ``echo``)."""


@dataclass
class TokenInfo:
    """One generated (or, for ``echo``, prompt) token."""

    id: int
    logprob: float | None = None
    top: list[tuple[int, float]] = field(default_factory=list)


@dataclass(eq=False)
class Sequence:
    """One prompt being completed. The engine appends to ``pending`` in the compute thread; the
    server takes them on the event loop after each iteration."""

    prompt: list[int]
    params: SamplingParams
    eos: frozenset[int]
    arrived: float = field(default_factory=time.perf_counter)
    generated: list[int] = field(default_factory=list)
    pending: list[TokenInfo] = field(default_factory=list)
    prompt_info: list[TokenInfo] = field(default_factory=list)
    finish_reason: str | None = None
    error: BaseException | None = None
    cancelled: bool = False
    # Scheduling state (compute thread only).
    prefilled: int = 0
    cache: Any = None
    next_token: int | None = None
    generator: torch.Generator | None = None

    @property
    def reserved(self) -> int:
        return len(self.prompt) + self.params.max_tokens

    @property
    def done(self) -> bool:
        return self.finish_reason is not None or self.error is not None

    def cancel(self) -> None:
        """Leave at the next iteration (thread-safe: a flag the compute thread reads)."""
        self.cancelled = True


class Engine:
    """The scheduler and the batched KV cache over one causal LM (a transformers model)."""

    def __init__(self, model: Any, limits: EngineLimits) -> None:
        self.model = model
        self.limits = limits
        self.device = next(model.parameters()).device
        self._lock = threading.Lock()
        self.waiting: deque[Sequence] = deque()
        self.prefilling: list[Sequence] = []
        self.running: list[Sequence] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None
        self._wake = threading.Event()

    # --- from the event loop ---------------------------------------------------------------------

    def add(self, prompt: list[int], params: SamplingParams, eos: frozenset[int]) -> Sequence:
        """Queue a sequence (the caller checked lengths and ids); :class:`Busy` when the waiting
        queue is full."""
        seq = Sequence(prompt=list(prompt), params=params, eos=eos)
        if params.temperature > 0:
            seq.generator = torch.Generator(device=self.device)
            if params.seed is not None:
                seq.generator.manual_seed(params.seed)
            else:
                seq.generator.seed()
        with self._lock:
            if len(self.waiting) >= self.limits.max_waiting:
                raise Busy()
            self.waiting.append(seq)
        return seq

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.prefilling or self.running)

    def counts(self) -> tuple[int, int]:
        """(running, waiting) sequences; prefilling ones count as running."""
        return len(self.running) + len(self.prefilling), len(self.waiting)

    # --- in the compute thread -------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> list[Sequence]:
        """One iteration; returns the sequences with new tokens or that ended.

        Inference mode here, in the thread that runs it (the mode is per thread): without it every
        forward pass would record autograd history, and the cache would keep it alive."""
        touched: list[Sequence] = []
        try:
            self._drop_cancelled()
            self._admit()
            parts = self._prefill(touched)
            if parts:
                self._join(parts)
            if self.running:
                try:
                    self._decode(touched)
                except Exception as exc:  # a failed batched forward pass fails the whole batch
                    for seq in self.running:
                        seq.error = exc
                        touched.append(seq)
                    self.running = []
                    self._cache = self._mask = None
            self._leave([s for s in self.running if s.done])
            self._trim()
        except Exception as exc:
            # Failed between sequences, where no single one is to blame: every sequence still
            # held fails, and those that already got tokens or ended in this iteration (and may
            # have left the batch) are returned all the same, so no request waits forever.
            log.exception("generation step failed; failing the %d sequence(s) in the engine",
                          sum(self.counts()))
            touched += [seq for seq in self.fail_all(exc) if seq not in touched]
        return touched

    def fail_all(self, exc: BaseException) -> list[Sequence]:
        """Fail every sequence the engine holds and empty the batch: what the runner does when an
        iteration raised where no single sequence is to blame, so that no request waits forever
        on an engine in an unknown state. Returns the failed sequences."""
        with self._lock:
            failed = [*self.waiting, *self.prefilling, *self.running]
            self.waiting.clear()
        self.prefilling, self.running = [], []
        self._cache = self._mask = None
        for seq in failed:
            seq.error, seq.cache = exc, None
        return failed

    def _drop_cancelled(self) -> None:
        with self._lock:
            for seq in [s for s in self.waiting if s.cancelled]:
                self.waiting.remove(seq)
        for seq in [s for s in self.prefilling if s.cancelled]:
            self.prefilling.remove(seq)
            seq.cache = None
        self._leave([s for s in self.running if s.cancelled])

    def _admit(self) -> None:
        with self._lock:
            while self.waiting:
                active = self.running + self.prefilling
                if len(active) >= self.limits.max_sequences:
                    return
                candidate = self.waiting[0]
                longest = max([s.reserved for s in active] + [candidate.reserved])
                if active and (len(active) + 1) * longest > self.limits.kv_cache_tokens:
                    return
                self.prefilling.append(self.waiting.popleft())

    def _prefill(self, touched: list[Sequence]) -> list[_Part]:
        """Prefill within this iteration's token budget. Whole prompts that fit run together in
        one left-padded forward pass; a prompt longer than what is left runs alone, one chunk per
        iteration. Returns the caches of the sequences whose prompt is done, to join the batch."""
        budget = self.limits.prefill_chunk_tokens
        parts: list[_Part] = []
        group: list[Sequence] = []
        for seq in list(self.prefilling):
            if budget <= 0:
                break
            left = len(seq.prompt) - seq.prefilled
            if seq.prefilled == 0 and left <= budget and not seq.params.prompt_logprobs:
                group.append(seq)
                budget -= left
                continue
            end = seq.prefilled + min(left, budget)
            budget -= end - seq.prefilled
            try:
                logits = self._prefill_chunk(seq, seq.prefilled, end)
            except Exception as exc:  # this sequence fails alone
                self._fail(seq, exc, touched)
                continue
            seq.prefilled = end
            if end == len(seq.prompt):
                parts += self._prefilled([seq], [logits[-1]], seq.cache, _ones(1, end, self.device), touched)
        if group:
            parts += self._prefill_group(group, touched)
        return parts

    def _prefill_group(self, group: list[Sequence], touched: list[Sequence]) -> list[_Part]:
        length = max(len(s.prompt) for s in group)
        ids = torch.zeros((len(group), length), dtype=torch.long, device=self.device)
        mask = torch.zeros((len(group), length), dtype=torch.long, device=self.device)
        for row, seq in enumerate(group):
            ids[row, length - len(seq.prompt):] = torch.tensor(seq.prompt, dtype=torch.long)
            mask[row, length - len(seq.prompt):] = 1
        cache = DynamicCache()
        try:
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=_positions(mask),
                             cache=cache, use_cache=True, logits_to_keep=1)
        except Exception as exc:
            if len(group) == 1:
                self._fail(group[0], exc, touched)
                return []
            # Find the culprit: each prompt alone, so one bad prompt fails only itself.
            return [p for seq in group for p in self._prefill_group([seq], touched)]
        for seq in group:
            seq.prefilled = len(seq.prompt)
        logits = out.logits[:, -1].float()
        return self._prefilled(group, list(logits), cache, mask, touched)

    def _prefilled(self, seqs: list[Sequence], logits: list[torch.Tensor], cache: Any,
                   mask: torch.Tensor, touched: list[Sequence]) -> list[_Part]:
        """First tokens of sequences whose prompt is done; those that go on join the batch."""
        keep = []
        for row, seq in enumerate(seqs):
            self.prefilling.remove(seq)
            seq.cache = None
            self._take(seq, logits[row])
            touched.append(seq)
            if not seq.done:
                keep.append(row)
        if not keep:
            return []
        if len(keep) < len(seqs):
            index = torch.tensor(keep, dtype=torch.long, device=self.device)
            cache.batch_select_indices(index)
            mask = mask[index]
        return [(cache, mask, [seqs[i] for i in keep])]

    def _fail(self, seq: Sequence, exc: BaseException, touched: list[Sequence]) -> None:
        seq.error = exc
        seq.cache = None
        self.prefilling.remove(seq)
        touched.append(seq)

    def _prefill_chunk(self, seq: Sequence, start: int, end: int) -> torch.Tensor:
        """Run prompt[start:end] through the model on the sequence's own cache; logits of the
        chunk's positions (only the last unless prompt log-probabilities are wanted)."""
        if seq.cache is None:
            seq.cache = DynamicCache()
        ids = torch.tensor([seq.prompt[start:end]], dtype=torch.long, device=self.device)
        positions = torch.arange(start, end, device=self.device).unsqueeze(0)
        mask = torch.ones((1, end), dtype=torch.long, device=self.device)
        keep = 0 if seq.params.prompt_logprobs else 1
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                         cache=seq.cache, use_cache=True, logits_to_keep=keep)
        logits: torch.Tensor = out.logits[0].float()
        if seq.params.prompt_logprobs:
            self._prompt_logprobs(seq, start, end, logits)
        return logits

    def _prompt_logprobs(self, seq: Sequence, start: int, end: int, logits: torch.Tensor) -> None:
        if start == 0:
            seq.prompt_info.append(TokenInfo(seq.prompt[0]))
        logp = torch.log_softmax(logits, dim=-1)
        k = seq.params.logprobs or 0
        # Position i predicts token i + 1; the chunk's last position predicts the next chunk's first.
        for i in range(end - start):
            target = start + i + 1
            if target >= len(seq.prompt):
                break
            seq.prompt_info.append(_info(seq.prompt[target], logp[i], k))

    def _join(self, parts: list[_Part]) -> None:
        """Pad the new sequences' caches (and the batch's) on the left to one length and stack
        them into the batch."""
        rows: list[tuple[Any, torch.Tensor]] = [(c, m) for c, m, _ in parts]
        if self._cache is not None and self._mask is not None:
            rows.insert(0, (self._cache, self._mask))
        length = max(int(mask.shape[1]) for _, mask in rows)
        merged = Cache(layer_class_to_replicate=SpareLayer)
        for layer in range(len(rows[0][0].layers)):
            keys = torch.cat([_pad_left(c.layers[layer].keys, length) for c, _ in rows])
            values = torch.cat([_pad_left(c.layers[layer].values, length) for c, _ in rows])
            merged.update(keys, values, layer)
        self._mask = torch.cat([torch.nn.functional.pad(m, (length - m.shape[1], 0)) for _, m in rows])
        self._cache = merged
        for _, _, seqs in parts:
            self.running.extend(seqs)

    def _decode(self, touched: list[Sequence]) -> None:
        assert self._mask is not None
        ids = torch.tensor([[s.next_token] for s in self.running], dtype=torch.long, device=self.device)
        positions = self._mask.sum(dim=1, keepdim=True)  # real tokens so far, per row
        self._mask = torch.cat([self._mask, self._mask.new_ones((len(self.running), 1))], dim=1)
        out = self.model(input_ids=ids, attention_mask=self._mask, position_ids=positions,
                         cache=self._cache, use_cache=True)
        logits = out.logits[:, -1].float()
        greedy = torch.argmax(logits, dim=-1).tolist()  # one call for the whole batch
        for row, seq in enumerate(self.running):
            if seq.cancelled:
                continue
            self._take(seq, logits[row], greedy[row])
            touched.append(seq)

    def _take(self, seq: Sequence, logits: torch.Tensor, greedy: int | None = None) -> None:
        """Choose the sequence's next token from its logits and record it (or the end)."""
        p = seq.params
        scaled = logits / p.temperature if p.temperature > 0 else logits
        # A temperature so small that the scaled logits overflow is greedy decoding (its limit).
        if p.temperature <= 0 or not bool(torch.isfinite(scaled.max())):
            token = int(torch.argmax(logits)) if greedy is None else greedy
        else:
            scaled = _top_p(scaled, p.top_p)
            token = int(torch.multinomial(torch.softmax(scaled, dim=-1), 1, generator=seq.generator))
        if token in seq.eos:
            seq.finish_reason = FINISH_STOP
            return
        info = (_info(token, torch.log_softmax(logits, dim=-1), p.logprobs)
                if p.logprobs is not None else TokenInfo(token))
        seq.generated.append(token)
        seq.pending.append(info)
        seq.next_token = token
        if len(seq.generated) >= p.max_tokens or \
                len(seq.prompt) + len(seq.generated) >= self.limits.max_model_length:
            seq.finish_reason = FINISH_LENGTH

    def _leave(self, leaving: list[Sequence]) -> None:
        if not leaving:
            return
        keep = [i for i, s in enumerate(self.running) if s not in leaving]
        self.running = [self.running[i] for i in keep]
        if not keep:
            self._cache = self._mask = None
            return
        assert self._mask is not None
        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        self._cache.batch_select_indices(index)
        self._mask = self._mask[index]

    def _trim(self) -> None:
        """Drop the cache columns that are padding in every row."""
        if self._mask is None:
            return
        real = self._mask.any(dim=0)
        first = int(torch.argmax(real.to(torch.int8)))
        if first == 0:
            return
        for layer in self._cache.layers:
            layer.drop_front(first)
        self._mask = self._mask[:, first:]


class SpareLayer(DynamicLayer):
    """A :class:`~transformers.DynamicLayer` that appends into spare room instead of concatenating.

    transformers' dynamic layer grows with ``torch.cat``, which copies the whole batch's cache
    at every decode step: rows × length × width per layer per token, the biggest cost of a
    decode step at 32 rows. This one keeps its keys and values in buffers with room for
    ``max(64, length / 4)`` more tokens and exposes views of the used part (``keys``/``values``,
    as the model and the mask code read them), so a copy happens once per many steps. It is
    written here because transformers' fixed-size cache (``StaticCache``) cannot take rows that
    join and leave a running batch."""

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self._k: torch.Tensor | None = None
        self._v: torch.Tensor | None = None
        self._start = self._end = 0

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        n = key_states.shape[-2]
        if self._k is None or self._v is None or self._end + n > self._k.shape[-2]:
            self._grow(n, key_states)
        assert self._k is not None and self._v is not None
        self._k[:, :, self._end:self._end + n] = key_states
        self._v[:, :, self._end:self._end + n] = value_states
        self._end += n
        return self._views()

    def _grow(self, n: int, like: torch.Tensor) -> None:
        used = self._end - self._start
        room = used + n + max(64, (used + n) // 4)
        shape = (like.shape[0], like.shape[1], room, like.shape[3])
        k, v = like.new_empty(shape), like.new_empty(shape)
        if self._k is not None and self._v is not None and used:
            k[:, :, :used] = self._k[:, :, self._start:self._end]
            v[:, :, :used] = self._v[:, :, self._start:self._end]
        self._k, self._v, self._start, self._end = k, v, 0, used

    def _views(self) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._k is not None and self._v is not None
        keys, values = self._k[:, :, self._start:self._end], self._v[:, :, self._start:self._end]
        self.keys, self.values = keys, values
        return keys, values

    def drop_front(self, columns: int) -> None:
        """Forget the first ``columns`` positions of every row (padding in all of them)."""
        self._start = min(self._end, self._start + columns)
        self._views()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self._k is None or self._v is None:
            return
        self._k, self._v = self._k[indices], self._v[indices]
        self._views()


_Part = tuple[Any, torch.Tensor, list[Sequence]]
"""A cache, its [rows, length] mask and the sequences of its rows, ready to join the batch."""


def _ones(rows: int, length: int, device: torch.device) -> torch.Tensor:
    return torch.ones((rows, length), dtype=torch.long, device=device)


def _positions(mask: torch.Tensor) -> torch.Tensor:
    """Position ids of left-padded rows: 0 at each row's first real token."""
    return (mask.cumsum(dim=1) - 1).clamp(min=0)


def _pad_left(t: torch.Tensor, length: int) -> torch.Tensor:
    """[B, H, L, D] → [B, H, length, D], zeros on the left."""
    return torch.nn.functional.pad(t, (0, 0, length - t.shape[2], 0))


def _top_p(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    if top_p >= 1.0:
        return logits
    from transformers import TopPLogitsWarper

    warp = TopPLogitsWarper(top_p=top_p)
    out: torch.Tensor = warp(None, logits.unsqueeze(0))[0]
    return out


def _info(token: int, logp: torch.Tensor, k: int | None) -> TokenInfo:
    lp = float(logp[token])
    top: list[tuple[int, float]] = []
    if k:
        values, ids = torch.topk(logp, k)
        top = [(int(i), float(v)) for i, v in zip(ids.tolist(), values.tolist(), strict=True)]
    return TokenInfo(token, lp if math.isfinite(lp) else -9999.0, top)
