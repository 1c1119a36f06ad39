"""Splits: a seeded, machine-independent partition of rows, and per-rank shards.

>>> import numpy as np
>>> parts = ratio_split(10, {"train": 0.8, "validation": 0.1, "test": 0.1}, seed=0)
>>> [len(parts[k]) for k in SPLITS]
[8, 1, 1]
>>> s = Split(np.arange(10, dtype=np.float32).reshape(5, 2), np.arange(5))
>>> [len(s.shard(r, 2)) for r in range(2)]   # 5 rows over 2 ranks: the 5th is dropped
[2, 2]
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

SPLITS = ("train", "validation", "test")


@dataclass
class Split:
    """Model-ready arrays of one split; ``inputs[i]`` pairs with ``targets[i]``."""

    inputs: np.ndarray
    """Tabular: float32 [N, F], transformed. Causal LM: int64 [N, L] token ids."""
    targets: np.ndarray
    """Classification: int64 [N] class ids. Regression: float32 [N]. Causal LM: int64 [N, L],
    the inputs shifted by one token (-100 where a token is not trained)."""
    positions: np.ndarray | None = None
    """Causal LM chat data only: int64 [N, L] position of each token within its conversation;
    they restart at 0 where a packed conversation starts."""

    def __len__(self) -> int:
        return int(self.inputs.shape[0])

    def shard(self, rank: int, world_size: int) -> Split:
        """Rows ``rank, rank + world_size, …`` of the first ``len // world_size * world_size``.

        Every rank gets the same number of rows, so collective operations stay in step; the last
        ``len % world_size`` rows are dropped (not padded: padding would count rows twice).
        """
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside world size {world_size}")
        usable = len(self) // world_size * world_size
        rows = slice(rank, usable, world_size)
        return Split(self.inputs[rows], self.targets[rows],
                     None if self.positions is None else self.positions[rows])

    token_weighted = False
    lengths = None

    def batch(self, rows: np.ndarray) -> Any:
        """The rows ``rows`` as a :class:`lmspec.data.lm.Batch` (the interface training reads
        every kind of split through)."""
        from .lm import Batch

        return Batch(self.inputs[rows], self.targets[rows],
                     None if self.positions is None else self.positions[rows])

    def trained_tokens(self, rows: np.ndarray) -> int:
        return int((self.targets[rows] != -100).sum()) if self.targets.ndim == 2 else len(rows)

    def take(self, index: Any) -> Split:
        """The rows ``index`` selects (an array of row numbers or a slice)."""
        return Split(self.inputs[index], self.targets[index],
                     None if self.positions is None else self.positions[index])


def permutation(n: int, seed: int) -> np.ndarray:
    """A permutation of ``range(n)`` that depends only on ``n`` and ``seed``.

    Sorting the raw 64-bit outputs of PCG64 relies only on that bit generator and its seeding,
    which numpy keeps stable, not on ``Generator.permutation``'s algorithm, which may change.
    """
    keys = np.random.PCG64(seed % 2**64).random_raw(n)
    return np.argsort(np.asarray(keys, dtype=np.uint64), kind="stable")


def split_counts(n: int, ratios: Mapping[Any, float]) -> list[int]:
    """Rows per split (train, validation, test) by largest remainder; they always sum to ``n``."""
    exact = [n * float(ratios.get(s, 0.0)) for s in SPLITS]
    counts = [int(np.floor(e)) for e in exact]
    total = sum(float(ratios.get(s, 0.0)) for s in SPLITS)
    # Ratios that do not quite sum to 1 (float rounding) still place every row.
    left = n - sum(counts) if total > 0 else 0
    order = sorted(range(3), key=lambda k: (-(exact[k] - counts[k]), k))
    for k in range(left):
        counts[order[k % 3]] += 1
    return counts


def ratio_split(
    n: int, ratios: Mapping[Any, float], seed: int, groups: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Row indices per split, each sorted ascending (rows keep their file order within a split).

    With ``groups`` (one label per row), each group is split by the ratios on its own, so every
    split keeps the groups' proportions (stratification).
    """
    perm = permutation(n, seed)
    if groups is None:
        buckets = [perm]
    else:
        ordered = groups[perm]
        buckets = [perm[ordered == g] for g in sorted(set(ordered.tolist()), key=str)]
    out: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    for bucket in buckets:
        start = 0
        for name, count in zip(SPLITS, split_counts(len(bucket), ratios), strict=True):
            out[name].append(bucket[start:start + count])
            start += count
    return {s: np.sort(np.concatenate(out[s])) if out[s] else np.zeros(0, dtype=np.int64)
            for s in SPLITS}


def spaced_rows(n: int, max_samples: int | str) -> np.ndarray:
    """``max_samples`` row numbers evenly spaced through ``n`` rows (all of them for ``"all"``
    or when there are fewer): the same rows whatever the world size or the run, as
    ``validation.maxSamples`` and ``evaluation.maxSamples`` promise."""
    if max_samples == "all" or int(max_samples) >= n:
        return np.arange(n, dtype=np.int64)
    k = int(max_samples)
    return (np.arange(k, dtype=np.int64) * n) // k

