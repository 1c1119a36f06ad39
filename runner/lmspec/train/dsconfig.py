"""The DeepSpeed config of a TrainingJob: generated here and nowhere else.

>>> cfg = deepspeed_config(job.spec)    # what `lmspec export deepspeed-config` prints
>>> cfg["train_micro_batch_size_per_gpu"], cfg["gradient_accumulation_steps"]
(16, 1)

Choices, and why:

- Only the micro batch and the accumulation steps are written. DeepSpeed derives
  ``train_batch_size`` from the real world size; writing it too could only contradict it.
- The optimizer is DeepSpeed's own (``Adam``/``AdamW`` with ``torch_adam: true``, or ``SGD``), so
  DeepSpeed builds it, offload included, without compiling FusedAdam or cpu_adam.
- ``gradient_clipping`` is always written (0.0 disables it): DeepSpeed's default became 1.0.
- ``overlap_comm`` is written out with DeepSpeed's default (on at stage 3 only) when omitted.
- The learning-rate schedule is *not* a DeepSpeed scheduler block: DeepSpeed's ``WarmupDecayLR``
  decays to the warm-up start and ``WarmupLR`` warms up logarithmically by default, so neither
  says what ``schedule`` says. The runner passes a ``LambdaLR`` built from :func:`lr_multiplier`
  (DeepSpeed steps it at every optimizer step and saves it in checkpoints).
- Activation checkpointing uses ``torch.utils.checkpoint`` on each transformer block (as the
  Hugging Face Trainer does), so DeepSpeed's ``activation_checkpointing`` block, which only
  configures ``deepspeed.checkpointing.checkpoint``, is not emitted.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

from ..standard import Offload, Schedule, TrainingJobSpec

QUIET_STEPS = 2**31 - 1
"""``steps_per_print``: the runner logs metrics itself; DeepSpeed's own step log is noise."""


def deepspeed_config(spec: TrainingJobSpec) -> dict[str, Any]:
    """The complete DeepSpeed config of a training job, as a JSON-ready dict."""
    prec = spec.precision
    return {
        "train_micro_batch_size_per_gpu": spec.batch.micro_batch_size,
        "gradient_accumulation_steps": spec.batch.gradient_accumulation_steps,
        "gradient_clipping": float(spec.gradient_clipping),
        "optimizer": _optimizer(spec),
        "zero_optimization": _zero(spec),
        "zero_allow_untested_optimizer": spec.optimizer.type == "sgd",
        "fp16": {
            "enabled": prec.fp16.enabled,
            "loss_scale": prec.fp16.loss_scale,
            "initial_scale_power": prec.fp16.initial_scale_power,
            "loss_scale_window": prec.fp16.loss_scale_window,
            "hysteresis": prec.fp16.hysteresis,
            "min_loss_scale": prec.fp16.min_loss_scale,
        },
        "bf16": {"enabled": prec.bf16.enabled},
        "steps_per_print": QUIET_STEPS,
        "wall_clock_breakdown": False,
    }


def _optimizer(spec: TrainingJobSpec) -> dict[str, Any]:
    opt = spec.optimizer
    if opt.type == "sgd":
        return {"type": "SGD", "params": {
            "lr": opt.lr, "momentum": opt.momentum, "nesterov": opt.nesterov,
            "weight_decay": opt.weight_decay,
        }}
    return {
        "type": "AdamW" if opt.type == "adamw" else "Adam",
        "params": {
            "lr": opt.lr,
            "betas": list(opt.betas),
            "eps": opt.eps,
            "weight_decay": opt.weight_decay,
            # Plain Adam means L2 regularisation; DeepSpeed's "Adam" is AdamW unless told.
            "adam_w_mode": opt.type == "adamw",
            "torch_adam": True,
        },
    }


def _offload(o: Offload) -> dict[str, Any]:
    block: dict[str, Any] = {"device": o.device, "pin_memory": o.pin_memory}
    if o.nvme_path is not None:
        block["nvme_path"] = o.nvme_path
    return block


def _zero(spec: TrainingJobSpec) -> dict[str, Any]:
    z = spec.zero
    block: dict[str, Any] = {
        "stage": z.stage,
        "contiguous_gradients": z.contiguous_gradients,
        "overlap_comm": z.overlap_comm if z.overlap_comm is not None else z.stage == 3,
        "reduce_bucket_size": z.reduce_bucket_size,
        "allgather_bucket_size": z.allgather_bucket_size,
        "offload_optimizer": _offload(z.offload_optimizer),
        "offload_param": _offload(z.offload_param),
    }
    if z.stage == 3:
        block |= {
            "stage3_prefetch_bucket_size": z.stage3_prefetch_bucket_size,
            "stage3_param_persistence_threshold": z.stage3_param_persistence_threshold,
            # Without it, save_16bit_model writes nothing at stage 3.
            "stage3_gather_16bit_weights_on_model_save": True,
            "zero_quantized_weights": z.zero_quantized_weights,
            "zero_quantized_gradients": z.zero_quantized_gradients,
            "zero_hpz_partition_size": z.zero_hpz_partition_size,
        }
    return block


def lr_multiplier(schedule: Schedule, peak_lr: float, step: int, total_steps: int) -> float:
    """Learning rate at optimizer step ``step`` (counted from 0) as a fraction of ``peak_lr``.

    Linear warm-up from 0 to the peak over ``warmupSteps`` steps (step 0 runs at 0, as in most
    warm-up schedules), then flat (``constant``), or a linear or cosine decay that reaches
    ``minLr`` at ``total_steps``.

    >>> lr_multiplier(Schedule(type="cosine", warmup_steps=10), 1.0, 5, 110)
    0.5
    """
    warmup = schedule.warmup_steps
    if step < warmup:
        return step / warmup
    if schedule.type == "constant":
        return 1.0
    min_ratio = min(schedule.min_lr / peak_lr, 1.0)
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    shape = 1.0 - progress if schedule.type == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_ratio + (1.0 - min_ratio) * shape


def lr_lambda(schedule: Schedule, peak_lr: float, total_steps: int) -> Callable[[int], float]:
    """``step → multiplier`` for ``torch.optim.lr_scheduler.LambdaLR``."""
    return functools.partial(_multiplier, schedule, peak_lr, total_steps)


def _multiplier(schedule: Schedule, peak_lr: float, total_steps: int, step: int) -> float:
    return lr_multiplier(schedule, peak_lr, step, total_steps)
