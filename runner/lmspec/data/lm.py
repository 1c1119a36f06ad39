"""Language-model splits over a token store: rows are formed by index when a batch is asked for.

>>> # split = TextSplit(store, ranges, sequence_length=256)
>>> # len(split)                        # windows of 256 inputs (+1 target) in the split
>>> # b = split.batch(np.array([0, 7]))  # inputs, targets int64 [2, 256]; positions None

Nothing here holds a split's tokens in memory: a split is a few index arrays (documents,
ranges, rows), and :meth:`batch` reads the tokens of the rows it is given. Shifting (targets are
the inputs moved by one token), masking (-100 where a token is not trained), positions and
padding happen there too.

- :class:`TextSplit`: the split's documents concatenated (an end-of-document id after each,
  when the tokenizer has one) and cut into windows of ``sequenceLength + 1`` tokens, one every
  ``sequenceLength`` tokens, so every token is a target exactly once; a short tail is dropped.
- :class:`ChatSplit`: rows of one or more whole conversations (packing); positions restart at
  0 for each conversation, and untrained targets are -100.
- :class:`PreferenceSplit`: rows of preference pairs, a batch of ``n`` pairs being ``2n``
  sequences (the chosen ones, then the rejected ones).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tokens import TokenStore

IGNORE = -100


@dataclass
class Batch:
    """Model-ready rows: ``inputs`` and ``targets`` int64 ``[B, T]``; ``positions`` int64
    ``[B, T]`` for chat data (else None)."""

    inputs: np.ndarray
    targets: np.ndarray
    positions: np.ndarray | None = None


class TextSplit:
    """Windows over the concatenation of ``ranges`` (``[K, 2]`` start/end of each piece of the
    stream, in order: a split's documents, or the part of one long document)."""

    token_weighted = False
    """Every target is trained, so the mean over a batch's rows is the mean over its tokens."""

    def __init__(self, store: TokenStore, ranges: np.ndarray, sequence_length: int) -> None:
        self.store = store
        self.ranges = np.asarray(ranges, dtype=np.int64).reshape(-1, 2)
        self.length = sequence_length
        sizes = self.ranges[:, 1] - self.ranges[:, 0]
        self._cum = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.tokens = int(self._cum[-1])
        self._rows = max(0, (self.tokens - 1) // sequence_length)

    def __len__(self) -> int:
        return self._rows

    @property
    def lengths(self) -> np.ndarray:
        return np.full(self._rows, self.length, dtype=np.int64)

    def window(self, row: int) -> np.ndarray:
        """The ``sequenceLength + 1`` tokens of a row."""
        if not 0 <= row < self._rows:
            raise IndexError(f"row {row} outside a split of {self._rows}")
        a = row * self.length
        return self._virtual(a, a + self.length + 1)

    def _virtual(self, a: int, b: int) -> np.ndarray:
        k = int(np.searchsorted(self._cum, a, side="right")) - 1
        parts: list[np.ndarray] = []
        while a < b:
            lo = int(self.ranges[k, 0]) + a - int(self._cum[k])
            take = min(b, int(self._cum[k + 1])) - a
            parts.append(self.store.read(lo, lo + take))
            a += take
            k += 1
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def batch(self, rows: np.ndarray, *, pad_to_longest: bool = True) -> Batch:
        """Rows ``rows`` (all ``sequenceLength`` long: ``pad_to_longest`` changes nothing)."""
        windows = np.stack([self.window(int(r)) for r in rows]) if len(rows) else \
            np.zeros((0, self.length + 1), dtype=np.int64)
        return Batch(np.ascontiguousarray(windows[:, :-1]), np.ascontiguousarray(windows[:, 1:]))

    def trained_tokens(self, rows: np.ndarray) -> int:
        return len(rows) * self.length

    def all_rows(self) -> Batch:
        """Every row at once: for small splits only (tests, a report's few rows)."""
        return self.batch(np.arange(len(self)))


class ChatSplit:
    """Rows of whole conversations. ``docs`` are the store's document offsets; row ``r`` holds
    the conversations ``row_docs[row_ptr[r]:row_ptr[r + 1]]``. A conversation of ``n`` tokens
    gives ``n - 1`` inputs and targets.

    A batch is padded to its longest row (``pad_to_longest``), not to ``sequenceLength``:
    without packing, short conversations would otherwise spend most of the compute on padding.
    """

    token_weighted = True
    """Targets are masked: a step's loss is normalised by its trained tokens."""

    def __init__(self, store: TokenStore, docs: np.ndarray, row_ptr: np.ndarray, row_docs: np.ndarray,
                 *, sequence_length: int, pad_id: int, packing: bool, trained: np.ndarray) -> None:
        self.store = store
        self.docs = docs
        self.row_ptr = np.asarray(row_ptr, dtype=np.int64)
        self.row_docs = np.asarray(row_docs, dtype=np.int64)
        self.length = sequence_length
        self.pad_id = pad_id
        self.packing = packing
        self.row_trained = np.asarray(trained, dtype=np.int64)
        """Trained targets per row."""
        sizes = docs[self.row_docs + 1] - docs[self.row_docs] - 1  # inputs per conversation
        self.lengths = np.add.reduceat(sizes, self.row_ptr[:-1]) if len(self.row_docs) else \
            np.zeros(0, dtype=np.int64)
        """Inputs (real, not padding) per row."""
        self.tokens = int(self.lengths.sum())

    def __len__(self) -> int:
        return len(self.row_ptr) - 1

    def batch(self, rows: np.ndarray, *, pad_to_longest: bool = True) -> Batch:
        width = int(self.lengths[rows].max()) if pad_to_longest and len(rows) else self.length
        n = len(rows)
        inputs = np.full((n, width), self.pad_id, dtype=np.int64)
        targets = np.full((n, width), IGNORE, dtype=np.int64)
        positions = np.zeros((n, width), dtype=np.int64)
        for i, r in enumerate(rows):
            at = 0
            for d in self.row_docs[self.row_ptr[r]:self.row_ptr[r + 1]]:
                a, b = int(self.docs[d]), int(self.docs[d + 1])
                ids = self.store.read(a, b)
                trained = self.store.read_mask(a, b)
                k = len(ids) - 1
                inputs[i, at:at + k] = ids[:-1]
                targets[i, at:at + k] = np.where(trained[1:], ids[1:], IGNORE)
                positions[i, at:at + k] = np.arange(k)
                at += k
            # Padding starts a document of its own in a packed row; without packing its
            # positions simply continue (right padding cannot affect earlier tokens of a
            # causal model).
            positions[i, at:] = np.arange(width - at) + (0 if self.packing else at)
        return Batch(inputs, targets, positions)

    def trained_tokens(self, rows: np.ndarray) -> int:
        return int(self.row_trained[rows].sum())

    def all_rows(self) -> Batch:
        """Every row at once, ``sequenceLength`` wide: for small splits only (tests, a
        report's few rows)."""
        return self.batch(np.arange(len(self)), pad_to_longest=False)


class PreferenceSplit(ChatSplit):
    """Rows of preference pairs: row ``r`` holds a pair's chosen sequence (prompt and chosen
    answer) and its rejected one, in that order. A batch of ``n`` rows has ``2n`` sequences: the
    ``n`` chosen first, then the ``n`` rejected (one forward pass for both, as TRL does), each
    padded to the batch's longest and masked outside the answers."""

    token_weighted = False
    """A pair's loss is one number, whatever its length: the loss is a mean over pairs."""

    def __init__(self, store: TokenStore, docs: np.ndarray, row_ptr: np.ndarray, row_docs: np.ndarray,
                 *, sequence_length: int, pad_id: int, trained: np.ndarray) -> None:
        super().__init__(store, docs, row_ptr, row_docs, sequence_length=sequence_length,
                         pad_id=pad_id, packing=False, trained=trained)
        sizes = docs[self.row_docs + 1] - docs[self.row_docs] - 1
        # The longer of the two: the width a row needs in a batch.
        self.lengths = sizes.reshape(-1, 2).max(axis=1) if len(sizes) else np.zeros(0, dtype=np.int64)

    def batch(self, rows: np.ndarray, *, pad_to_longest: bool = True) -> Batch:
        width = int(self.lengths[rows].max()) if pad_to_longest and len(rows) else self.length
        n = len(rows)
        inputs = np.full((2 * n, width), self.pad_id, dtype=np.int64)
        targets = np.full((2 * n, width), IGNORE, dtype=np.int64)
        for i, r in enumerate(rows):
            for side, d in enumerate(self.row_docs[self.row_ptr[r]:self.row_ptr[r + 1]]):
                a, b = int(self.docs[d]), int(self.docs[d + 1])
                ids = self.store.read(a, b)
                trained = self.store.read_mask(a, b)
                k = len(ids) - 1
                inputs[side * n + i, :k] = ids[:-1]
                targets[side * n + i, :k] = np.where(trained[1:], ids[1:], IGNORE)
        # Right padding: positions simply continue, and cannot affect earlier tokens.
        return Batch(inputs, targets)
