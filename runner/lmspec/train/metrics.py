"""Losses, metrics reduced across ranks, and the metrics log.

>>> sums = Sums()                      # per-rank running sums over an evaluation pass
>>> sums.add(outputs, targets, task)
>>> sums.reduce().values(["loss", "accuracy"])
{'loss': 0.41, 'accuracy': 0.93}
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import torch
import torch.nn.functional as F

from ..standard import Loss
from .tracking import Trackers

IGNORE_INDEX = -100
"""Token targets equal to this are ignored by the causal-LM loss (padding)."""


def compute_loss(outputs: torch.Tensor, targets: torch.Tensor, loss: Loss, *, reduction: str = "mean") -> torch.Tensor:
    """Mean (or, for ``reduction="sum"``, summed) loss of a batch, in fp32 whatever the training
    precision; targets equal to ``IGNORE_INDEX`` do not count."""
    out = outputs.float()
    if loss.type == "mse":
        return F.mse_loss(out.reshape(targets.shape), targets.float(), reduction=reduction)
    if loss.type == "causalLm":
        return F.cross_entropy(out.reshape(-1, out.shape[-1]), targets.reshape(-1),
                               ignore_index=IGNORE_INDEX, label_smoothing=loss.label_smoothing,
                               reduction=reduction)
    return F.cross_entropy(out, targets, label_smoothing=loss.label_smoothing, reduction=reduction)


@dataclass
class Sums:
    """Running sums of an evaluation pass: summed over ranks, then turned into metrics."""

    loss: float = 0.0
    count: float = 0.0
    correct: float = 0.0
    sq_err: float = 0.0
    abs_err: float = 0.0

    def add(self, outputs: torch.Tensor, targets: torch.Tensor, task: str) -> None:
        out = outputs.float()
        if task == "regression":
            pred = out.reshape(targets.shape)
            err = pred - targets.float()
            self.loss += float((err ** 2).sum())
            self.sq_err += float((err ** 2).sum())
            self.abs_err += float(err.abs().sum())
            self.count += targets.numel()
            return
        logits = out.reshape(-1, out.shape[-1])
        flat = targets.reshape(-1)
        keep = flat != IGNORE_INDEX
        self.loss += float(F.cross_entropy(logits, flat, ignore_index=IGNORE_INDEX, reduction="sum"))
        self.correct += float((logits.argmax(-1) == flat)[keep].sum())
        self.count += float(keep.sum())

    def reduce(self) -> Sums:
        """Sum over all ranks (a collective: every rank calls it)."""
        import torch.distributed as dist

        t = torch.tensor([self.loss, self.count, self.correct, self.sq_err, self.abs_err],
                         dtype=torch.float64)
        if dist.is_initialized() and dist.get_world_size() > 1:
            dist.all_reduce(t)
        return Sums(*(float(v) for v in t))

    def values(self, metrics: list[str]) -> dict[str, float]:
        n = max(self.count, 1.0)
        table = {
            "loss": self.loss / n,
            "accuracy": self.correct / n,
            "mse": self.sq_err / n,
            "mae": self.abs_err / n,
            "perplexity": math.exp(min(self.loss / n, 50.0)),
        }
        return {m: table[m] for m in metrics}


@dataclass
class MetricsLog:
    """Appends one JSON object per record to ``metrics.jsonl`` (rank 0 only) and hands the
    numbers to the run's experiment trackers (TensorBoard, MLflow)."""

    path: Path
    trackers: Trackers = field(default_factory=Trackers)
    _fh: TextIO | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self._fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()

    def write(self, split: str, step: int, values: dict[str, float], **extra: Any) -> None:
        record = {"time": round(time.time(), 3), "split": split, "step": step, **extra, **values}
        assert self._fh is not None
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()
        self.trackers.log(split, step, values, extra)

    def event(self, name: str, step: int, **extra: Any) -> None:
        """A run event (``checkpoint``, ``resume``, ``earlyStop``) as a ``split: event`` record,
        so reports can mark it on the curves."""
        record = {"time": round(time.time(), 3), "split": "event", "event": name, "step": step, **extra}
        assert self._fh is not None
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()

    def close(self, *, failed: bool = False) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        self.trackers.close(failed=failed)
