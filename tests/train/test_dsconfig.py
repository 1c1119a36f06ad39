"""The generated DeepSpeed config: DeepSpeed's own parser accepts it, and it says what the
manifest says."""

from __future__ import annotations

import math
from typing import Any

import pytest

from lmspec.train.dsconfig import deepspeed_config, lr_multiplier
from lmspec.v1alpha1 import TrainingJobSpec
from lmspec.v1alpha1.trainingjob import Schedule


def job(**spec: Any) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate({"model": "m", "dataset": "d", "loss": {"type": "mse"}, **spec},
                                          strict=False)


CASES = [
    {},
    {"zero": {"stage": 1}, "precision": {"bf16": {"enabled": True}}},
    {"zero": {"stage": 2, "offloadOptimizer": {"device": "cpu", "pinMemory": True}}, "gradientClipping": 1.0},
    {"zero": {"stage": 3, "offloadParam": {"device": "cpu"}, "offloadOptimizer": {"device": "cpu"}},
     "precision": {"fp16": {"enabled": True, "lossScale": 128.0}}},
    {"optimizer": {"type": "sgd", "momentum": 0.9, "nesterov": True}, "batch": {"gradientAccumulationSteps": 4}},
]


@pytest.mark.parametrize("spec", CASES)
def test_deepspeed_parses_the_generated_config(spec: dict[str, Any]) -> None:
    from deepspeed.runtime.config import DeepSpeedConfig

    j = job(**spec)
    cfg = deepspeed_config(j)
    parsed = DeepSpeedConfig(cfg)  # no process group: DeepSpeed assumes world size 1
    assert parsed.train_micro_batch_size_per_gpu == j.batch.micro_batch_size
    assert parsed.gradient_accumulation_steps == j.batch.gradient_accumulation_steps
    assert parsed.train_batch_size == j.batch.micro_batch_size * j.batch.gradient_accumulation_steps
    assert parsed.zero_optimization_stage == j.zero.stage
    assert parsed.gradient_clipping == j.gradient_clipping
    assert parsed.bfloat16_config.enabled == j.precision.bf16.enabled
    assert parsed.float16_config.enabled == j.precision.fp16.enabled


def test_batch_triple_is_never_written() -> None:
    cfg = deepspeed_config(job(batch={"globalBatchSize": 8}))
    assert "train_batch_size" not in cfg


def test_gradient_clipping_is_explicit_even_when_off() -> None:
    # DeepSpeed's own default became 1.0: leaving the key out would clip.
    cfg = deepspeed_config(job())
    assert cfg["gradient_clipping"] == 0.0 and isinstance(cfg["gradient_clipping"], float)


def test_optimizer_mapping() -> None:
    adam = deepspeed_config(job(optimizer={"type": "adam", "weightDecay": 0.1}))["optimizer"]
    assert adam["type"] == "Adam" and adam["params"]["adam_w_mode"] is False
    assert adam["params"]["torch_adam"] is True  # no FusedAdam/cpu_adam compilation
    adamw = deepspeed_config(job(optimizer={"type": "adamw"}))["optimizer"]
    assert adamw["type"] == "AdamW" and adamw["params"]["adam_w_mode"] is True
    sgd = deepspeed_config(job(optimizer={"type": "sgd"}))
    assert sgd["optimizer"]["type"] == "SGD" and sgd["zero_allow_untested_optimizer"] is True


def test_zero_knobs() -> None:
    z2 = deepspeed_config(job(zero={"stage": 2}))["zero_optimization"]
    assert z2["overlap_comm"] is False and "stage3_prefetch_bucket_size" not in z2
    z3 = deepspeed_config(job(zero={"stage": 3, "reduceBucketSize": 1000}))["zero_optimization"]
    assert z3["overlap_comm"] is True and z3["reduce_bucket_size"] == 1000
    assert z3["stage3_gather_16bit_weights_on_model_save"] is True
    assert deepspeed_config(job(zero={"stage": 1, "overlapComm": True}))["zero_optimization"]["overlap_comm"]


def test_schedule() -> None:
    cos = Schedule(type="cosine", warmup_steps=10, min_lr=0.1)
    assert lr_multiplier(cos, 1.0, 0, 110) == 0.0
    assert lr_multiplier(cos, 1.0, 5, 110) == 0.5
    assert lr_multiplier(cos, 1.0, 10, 110) == 1.0
    assert math.isclose(lr_multiplier(cos, 1.0, 60, 110), 0.1 + 0.9 * 0.5)
    assert math.isclose(lr_multiplier(cos, 1.0, 110, 110), 0.1)
    lin = Schedule(type="linear", warmup_steps=0, min_lr=0.0)
    assert lr_multiplier(lin, 2.0, 25, 100) == 0.75
    assert lr_multiplier(Schedule(), 1.0, 99, 100) == 1.0
