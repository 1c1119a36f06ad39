"""The order a rank sees the training rows in, and the seeds of its random draws.

>>> rows = epoch_rows(data.train, seed=7, epoch=2, rank=1, world=4, micro_batch=8, group_by_length=False)
>>> rows[m * 8:(m + 1) * 8]            # micro batch m of epoch 2 on rank 1

Every draw is derived from (seed, epoch, micro batch, rank), never from a generator's running
state, so a resumed run sees exactly the batches, augmentation noise and dropout masks the
uninterrupted run would have.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def seed_for(*parts: int) -> int:
    """A stable 63-bit mix of the parts (Python's ``hash()`` is salted per process)."""
    h = 1469598103934665603
    for p in parts:
        h = ((h ^ (p & 0xFFFFFFFFFFFFFFFF)) * 1099511628211) % 2**64
    return h % 2**63


def group_by_length(order: np.ndarray, lengths: np.ndarray, group: int, seed: int) -> np.ndarray:
    """Rows in windows of 64 groups, sorted by length within each window (longest first);
    the groups of a window are then put in a seeded order, so a batch's rows have similar
    lengths while the epoch still mixes long and short batches."""
    from ..data.split import permutation

    window = group * 64
    out = []
    for w, start in enumerate(range(0, len(order), window)):
        part = order[start:start + window]
        part = part[np.argsort(-lengths[part], kind="stable")]
        whole = len(part) // group * group
        groups = part[:whole].reshape(-1, group)
        out.append(groups[permutation(len(groups), seed + w)].reshape(-1))
        out.append(part[whole:])
    return np.concatenate(out) if out else order


def epoch_rows(split: Any, *, seed: int, epoch: int, rank: int, world: int, micro_batch: int,
               group_by_length: bool) -> np.ndarray:
    """A rank's training rows of an epoch, in order: a seeded permutation of the split, dealt
    to the ranks in turn (``rank, rank + world, …`` of the first ``len // world × world``, so
    every rank gets as many). With ``group_by_length``, each window of 64 global micro batches
    is sorted by row length and its micro batches shuffled. Micro batch ``m`` of the epoch is
    ``rows[m * micro_batch:(m + 1) * micro_batch]``."""
    from ..data.split import permutation

    order = permutation(len(split), seed_for(seed, epoch))
    order = order[:len(order) // world * world]
    lengths = getattr(split, "lengths", None)
    if group_by_length and lengths is not None:
        order = _grouped(order, np.asarray(lengths), micro_batch * world, seed_for(seed, epoch, 2))
        # A global micro batch is consecutive: rank r takes its r-th slice.
        full = len(order) // (micro_batch * world) * (micro_batch * world)
        head = order[:full].reshape(-1, world, micro_batch)[:, rank, :].reshape(-1)
        return np.concatenate([head, order[full:][rank::world]])
    return order[rank::world]


_grouped = group_by_length  # epoch_rows' keyword argument of the same name hides the function
