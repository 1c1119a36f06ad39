"""Language-model data: split documents, tokenize them and pack the ids into training windows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from .split import SPLITS, Split, split_counts
from .tokenizer import Tokenizer


def split_single_document(text: str, ratios: Mapping[Any, float]) -> dict[str, list[str]]:
    """One document is cut into contiguous character ranges: train first, then validation, test.

    Contiguous ranges (rather than shuffled pieces) keep the held-out text unseen in training.
    """
    out: dict[str, list[str]] = {}
    start = 0
    for name, count in zip(SPLITS, split_counts(len(text), ratios), strict=True):
        out[name] = [text[start:start + count]] if count else []
        start += count
    return out


def pack(docs: list[str], tokenizer: Tokenizer, sequence_length: int) -> Split:
    """Concatenate the documents' ids (an end-of-document id between them, when the tokenizer has
    one) and cut the stream into windows of ``sequence_length + 1`` tokens, one every
    ``sequence_length`` tokens, so every token is a target exactly once; a short tail is dropped.
    """
    length = sequence_length
    pieces: list[np.ndarray] = []
    for ids in tokenizer.encode_batch(docs):
        pieces.append(ids)
        if tokenizer.eos_id is not None:
            pieces.append(np.array([tokenizer.eos_id], dtype=np.int64))
    stream = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)
    n = max(0, (len(stream) - 1) // length)
    index = np.arange(n, dtype=np.int64)[:, None] * length + np.arange(length + 1, dtype=np.int64)
    windows = stream[index] if n else np.zeros((0, length + 1), dtype=np.int64)
    return Split(np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:]))
