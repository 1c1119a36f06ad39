"""What the recipe asks of its loss: one call per micro batch, whatever the objective.

>>> criterion.start_step(train, rows_of_the_step)       # before a step's first micro batch
>>> loss = criterion.loss(outputs, targets, rows)       # the micro batch's training loss
>>> criterion.train_values(mean_local_loss)             # {"loss": …} of the logging window
>>> tally = criterion.tally("validation"); tally.add(outputs, targets, rows); tally.values(metrics)

:class:`Criterion` is the supervised objective (cross-entropy, MSE, the causal-LM loss); the
preference objectives (``loss.type: dpo | simpo``) are
:class:`~lmspec.train.preference.PreferenceCriterion`, which adds DPO's reference
log-probabilities before the first step. The recipe has no branch on the loss's type besides
choosing one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..standard import Loss
from .metrics import Sums, compute_loss
from .world import World


class Tally(Protocol):
    """Running sums of an evaluation pass, reduced across ranks on read."""

    def add(self, outputs: torch.Tensor, targets: torch.Tensor, rows: np.ndarray) -> None: ...

    def values(self, metrics: list[str]) -> dict[str, float]: ...


class Criterion:
    """A supervised loss. With chat data, whose targets are masked, a step's loss is normalised
    by the trained tokens of the whole optimizer step (all micro batches, all ranks), not
    averaged per micro batch (``token_weighted``)."""

    reference_seconds = 0.0
    """Seconds spent before the first step (DPO scoring its pairs with the reference)."""

    def __init__(self, loss: Loss, task: str, world: World, *, token_weighted: bool,
                 accumulation: int) -> None:
        self.spec = loss
        self.task = task
        self.world = world
        self.token_weighted = token_weighted
        self.accumulation = accumulation
        self.step_tokens = 0

    def prepare_model(self, model: torch.nn.Module) -> None:
        """Adjust the model before DeepSpeed takes it."""

    def prepare(self, engine: Any, data: Any, *, run_dir: Path, resume: bool, has_checkpoint: bool,
                micro_batch: int, max_samples: dict[str, int | str],
                to_device: Callable[[np.ndarray], torch.Tensor]) -> None:
        """Before the first step (and before a checkpoint is loaded): the starting weights."""

    def start_step(self, split: Any, rows: np.ndarray) -> None:
        """Before the first micro batch of an optimizer step; ``rows`` are the step's rows on
        this rank (collective)."""
        if self.token_weighted:
            self.step_tokens = self._all_ranks(split.trained_tokens(rows))

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        """The training loss of a micro batch of rows ``rows`` of the training split."""
        if self.token_weighted:
            # DeepSpeed divides by gradientAccumulationSteps and averages over ranks; this
            # scale makes the step's gradient that of the mean over its trained tokens.
            scale = self.accumulation * self.world.size / max(self.step_tokens, 1)
            return compute_loss(outputs, targets, self.spec, reduction="sum") * scale
        return compute_loss(outputs, targets, self.spec)

    def train_values(self, local_loss: float) -> dict[str, float]:
        """The logged values of a logging window (collective), given this rank's mean loss."""
        loss = local_loss
        if self.world.size > 1:
            import torch.distributed as dist

            t = torch.tensor([local_loss], dtype=torch.float64)
            dist.all_reduce(t)
            loss = float(t) / self.world.size
        return {"loss": loss}

    def progress(self, values: dict[str, float]) -> str:
        """What the progress line shows of ``values`` besides the loss."""
        return ""

    def tally(self, split: str) -> Tally:
        """Running sums of an evaluation pass over ``split`` (``train``, ``validation`` or ``test``)."""
        return _Sums(self.task)

    def _all_ranks(self, local: int) -> int:
        if self.world.size == 1:  # nothing to add up, and a collective costs a thread handoff
            return local
        import torch.distributed as dist

        t = torch.tensor([local], dtype=torch.int64)
        dist.all_reduce(t)
        return int(t)


class _Sums:
    def __init__(self, task: str) -> None:
        self.task = task
        self.sums = Sums()

    def add(self, outputs: torch.Tensor, targets: torch.Tensor, rows: np.ndarray) -> None:
        self.sums.add(outputs, targets, self.task)

    def values(self, metrics: list[str]) -> dict[str, float]:
        return self.sums.reduce().values(metrics)
