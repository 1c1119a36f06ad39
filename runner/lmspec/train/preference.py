"""Preference objectives: DPO and SimPO on batches of pairs (``loss.type: dpo | simpo``).

>>> # logps = sequence_logps(logits, targets)             # [2n]: chosen rows, then rejected rows
>>> # loss, stats = objective.loss(logps, reference)      # stats: rewardAccuracy, rewardMargin, ...

A batch of ``n`` pairs is ``2n`` sequences, the chosen ones first (:class:`~lmspec.data.lm.
PreferenceSplit`); a sequence's log-probability is the sum over its answer tokens (the trained
targets), or for SimPO their mean.

- **DPO** (Rafailov et al., 2023): ``-log σ(β·[(π_c − ref_c) − (π_r − ref_r)])``, with label
  smoothing ε: ``−(1−ε)·log σ(βx) − ε·log σ(−βx)`` (TRL's ``sigmoid`` loss). The reference is the
  starting model: its log-probabilities are computed once, before the first step, and kept in the
  run directory (16 bytes a pair), so no second model is held in memory, with or without LoRA,
  at any ZeRO stage. At the first step the policy is the reference and the loss is exactly ln 2.
- **SimPO** (Meng et al., 2024): ``-log σ(β·(mean π_c − mean π_r) − γ)``, no reference at all.
  Chosen over ORPO as the reference-free objective: it is a pure preference loss (ORPO mixes in
  the supervised loss, whose weight is one more knob), it needs the same pair batches as DPO and
  its length normalisation keeps long rejected answers from winning by length.

Rewards, as TRL logs them: DPO's is ``β·(π − ref)``, SimPO's ``β·mean π``; ``rewardAccuracy`` is
the share of pairs whose chosen reward is the higher.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.lm import IGNORE
from ..standard import Loss
from .criterion import Criterion
from .errors import TrainError
from .world import World

PREFERENCE_LOSSES = ("dpo", "simpo")
DEFAULT_BETA = {"dpo": 0.1, "simpo": 2.0}
DEFAULT_GAMMA = 1.0
STATS = ("rewardAccuracy", "rewardMargin", "rewardChosen", "rewardRejected", "logpChosen", "logpRejected")
"""What a preference loss reports besides itself (TRL: rewards/accuracies, rewards/margins,
rewards/chosen, rewards/rejected, logps/chosen, logps/rejected)."""


def sequence_logps(logits: torch.Tensor, targets: torch.Tensor, *, average: bool = False) -> torch.Tensor:
    """Log-probability of each row's trained targets, summed (or averaged), in fp32."""
    mask = targets != IGNORE
    safe = torch.where(mask, targets, 0)
    logits = logits.float()
    # gather − logsumexp: the log-softmax of the targets only, without a [B, T, V] copy of it.
    picked = logits.gather(-1, safe.unsqueeze(-1)).squeeze(-1) - torch.logsumexp(logits, dim=-1)
    total = (picked * mask).sum(-1)
    return total / mask.sum(-1).clamp(min=1) if average else total


@dataclass
class Objective:
    """One preference loss with its settings."""

    type: str
    beta: float
    gamma: float = DEFAULT_GAMMA
    label_smoothing: float = 0.0

    @classmethod
    def of(cls, loss: Loss) -> Objective:
        """From a TrainingJob's ``loss`` block."""
        t = str(loss.type)
        return cls(t, float(loss.beta) if loss.beta is not None else DEFAULT_BETA[t],
                   float(loss.gamma) if loss.gamma is not None else DEFAULT_GAMMA, float(loss.label_smoothing))

    @property
    def needs_reference(self) -> bool:
        return self.type == "dpo"

    @property
    def average(self) -> bool:
        """Whether a sequence's log-probability is the mean over its tokens (SimPO)."""
        return self.type == "simpo"

    def loss(self, logps: torch.Tensor, reference: torch.Tensor | None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Mean loss over the pairs of ``logps`` (``[2n]``: chosen, then rejected) and the
        per-pair statistics (``[n]`` each, detached) of :data:`STATS`. ``reference``: the
        reference's ``[n, 2]`` (chosen, rejected) log-probabilities, for DPO."""
        n = logps.shape[0] // 2
        chosen, rejected = logps[:n], logps[n:]
        if self.type == "dpo":
            assert reference is not None
            ref = reference.to(logps.dtype)
            x = (chosen - ref[:, 0]) - (rejected - ref[:, 1])
            r_chosen, r_rejected = self.beta * (chosen - ref[:, 0]), self.beta * (rejected - ref[:, 1])
            z = self.beta * x
        else:
            z = self.beta * (chosen - rejected) - self.gamma
            r_chosen, r_rejected = self.beta * chosen, self.beta * rejected
        eps = self.label_smoothing
        per_pair = -F.logsigmoid(z) * (1 - eps) - F.logsigmoid(-z) * eps
        with torch.no_grad():
            stats = {"rewardAccuracy": (r_chosen > r_rejected).float(),
                     "rewardMargin": r_chosen - r_rejected, "rewardChosen": r_chosen,
                     "rewardRejected": r_rejected, "logpChosen": chosen.detach(),
                     "logpRejected": rejected.detach()}
        return per_pair.mean(), {k: v.detach().float() for k, v in stats.items()}


@dataclass
class Window:
    """Running sums of a preference loss's statistics over pairs (a logging window, or an
    evaluation pass), reduced across ranks on read."""

    pairs: float = 0.0
    loss: float = 0.0
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STATS, 0.0))

    def add(self, loss: torch.Tensor, stats: dict[str, torch.Tensor]) -> None:
        n = int(next(iter(stats.values())).numel())
        self.pairs += n
        self.loss += float(loss.detach()) * n
        for k, v in stats.items():
            self.sums[k] += float(v.sum())

    def values(self, *, world_size: int = 1) -> dict[str, float]:
        """``loss`` and :data:`STATS`, averaged over the pairs of every rank."""
        flat = [self.pairs, self.loss, *(self.sums[k] for k in STATS)]
        if world_size > 1:
            import torch.distributed as dist

            t = torch.tensor(flat, dtype=torch.float64)
            dist.all_reduce(t)
            flat = t.tolist()
        pairs = max(flat[0], 1.0)
        out = {"loss": flat[1] / pairs}
        out.update({k: v / pairs for k, v in zip(STATS, flat[2:], strict=True)})
        return out


LN2 = math.log(2.0)
"""DPO's loss while the policy is the reference (without label smoothing)."""


def disable_dropout(model: torch.nn.Module) -> None:
    """Dropout off everywhere (LoRA's too): the policy and the reference must score a pair
    alike, and DPO's loss is ln 2 at the first step only then (TRL's ``disable_dropout``)."""
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0


REFERENCE_FILE = "reference_logps.npz"
"""In the run directory: the reference's log-probabilities of every pair a run uses."""


@torch.no_grad()
def reference_logps(engine: object, split: object, rows: np.ndarray, *, micro_batch: int, rank: int,
                    world: int, to_device: Callable[[np.ndarray], torch.Tensor], average: bool) -> np.ndarray:
    """``[len(split), 2]`` log-probabilities (chosen, rejected) of ``rows`` under the engine's
    current weights (NaN for rows not asked for). Each rank scores every ``world``-th row, all
    ranks running the same number of forward passes (ZeRO-3 gathers parameters collectively
    inside forward); the results are summed across ranks."""
    out = np.zeros((len(split), 2), dtype=np.float64)  # type: ignore[arg-type]
    mine = rows[rank::world]
    passes = math.ceil(math.ceil(len(rows) / world) / micro_batch)
    for b in range(passes):
        part = mine[b * micro_batch:(b + 1) * micro_batch]
        use = part if len(part) else rows[:1]
        batch = split.batch(use)  # type: ignore[attr-defined]
        logits = engine(to_device(batch.inputs))  # type: ignore[operator]
        lp = sequence_logps(logits, to_device(batch.targets), average=average).double().cpu().numpy()
        if len(part):
            n = len(part)
            out[part, 0], out[part, 1] = lp[:n], lp[n:]
    if world > 1:
        import torch.distributed as dist

        t = torch.from_numpy(out)
        dist.all_reduce(t)
        out = t.numpy()
    asked = np.zeros(len(out), dtype=bool)
    asked[rows] = True
    out[~asked] = np.nan
    return out


class PreferenceCriterion(Criterion):
    """A preference loss as the recipe calls it (see :class:`~lmspec.train.criterion.Criterion`):
    dropout off, DPO's reference log-probabilities scored before the first step (or read back
    on resume), the loss and reward statistics of each logging window and evaluation pass."""

    def __init__(self, loss: Loss, task: str, world: World, *, token_weighted: bool,
                 accumulation: int) -> None:
        super().__init__(loss, task, world, token_weighted=token_weighted, accumulation=accumulation)
        self.objective = Objective.of(loss)
        self.window = Window()
        """The statistics of the current logging window."""
        self.reference: dict[str, np.ndarray] = {}
        """DPO: the reference's ``[rows, 2]`` log-probabilities, per split."""

    def prepare_model(self, model: torch.nn.Module) -> None:
        disable_dropout(model)

    def prepare(self, engine: Any, data: Any, *, run_dir: Path, resume: bool, has_checkpoint: bool,
                micro_batch: int, max_samples: dict[str, int | str],
                to_device: Callable[[np.ndarray], torch.Tensor]) -> None:
        """DPO's reference log-probabilities: the starting model's, of every training pair and
        of the validation and test pairs that are evaluated. Computed once and kept in the run
        directory, so a resumed run (whose weights are no longer the starting ones) reads them."""
        if not self.objective.needs_reference:
            return
        from ..data.split import spaced_rows

        path = run_dir / REFERENCE_FILE
        splits = {n: getattr(data, n) for n in max_samples}
        # Only a resumed run reads them back: a fresh run in the same directory may start from
        # other weights (a base trained again), so it scores the pairs again.
        if resume and path.is_file():
            with np.load(path) as saved:
                self.reference = {n: saved[n] for n in max_samples if n in saved.files}
            if all(n in self.reference and len(self.reference[n]) == len(splits[n]) for n in max_samples):
                return
        if resume and has_checkpoint:
            raise TrainError(f"{path} is missing or does not match the data: DPO's reference "
                             "log-probabilities come from the starting weights, which a checkpoint no "
                             "longer holds; start the run afresh (without resume)")
        started = time.perf_counter()
        engine.eval()
        for n, split in splits.items():
            rows = spaced_rows(len(split), max_samples[n]) if len(split) else np.zeros(0, dtype=np.int64)
            self.reference[n] = reference_logps(
                engine, split, rows, micro_batch=micro_batch, rank=self.world.rank, world=self.world.size,
                to_device=to_device, average=self.objective.average)
        engine.train()
        self.reference_seconds = time.perf_counter() - started
        if self.world.is_main:
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, **self.reference)  # type: ignore[arg-type]  # numpy's stub types **kwds as allow_pickle
            os.replace(tmp, path)
            pairs = sum(int(np.isfinite(r[:, 0]).sum()) for r in self.reference.values())
            print(f"lmspec: reference log-probabilities of {pairs:,} pairs from the starting model "
                  f"({time.perf_counter() - started:.1f}s), kept in {path.name}", flush=True)

    def score(self, outputs: torch.Tensor, targets: torch.Tensor, rows: np.ndarray, split: str,
              window: Window) -> torch.Tensor:
        """The loss of a batch of pairs (rows ``rows`` of ``split``), its statistics added to ``window``."""
        logps = sequence_logps(outputs, targets, average=self.objective.average)
        ref = torch.from_numpy(self.reference[split][rows]) if self.objective.needs_reference else None
        loss, stats = self.objective.loss(logps, ref)
        window.add(loss, stats)
        return loss

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor, rows: np.ndarray) -> torch.Tensor:
        return self.score(outputs, targets, rows, "train", self.window)

    def train_values(self, local_loss: float) -> dict[str, float]:
        values = self.window.values(world_size=self.world.size)
        self.window = Window()
        return values

    def progress(self, values: dict[str, float]) -> str:
        return f" reward accuracy {values['rewardAccuracy']:.3f}"

    def tally(self, split: str) -> _PairTally:
        return _PairTally(self, split)


class _PairTally:
    """A preference loss reports its loss and every reward statistic, whatever ``metrics`` asks."""

    def __init__(self, criterion: PreferenceCriterion, split: str) -> None:
        self.criterion, self.split, self.window = criterion, split, Window()

    def add(self, outputs: torch.Tensor, targets: torch.Tensor, rows: np.ndarray) -> None:
        self.criterion.score(outputs, targets, rows, self.split, self.window)

    def values(self, metrics: list[str]) -> dict[str, float]:
        return self.window.values(world_size=self.criterion.world.size)
