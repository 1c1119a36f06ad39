"""LoRA adapters through ``peft``: attach, count, gather, save and merge.

>>> lm = attach_lora(lm, job.spec.adapter)      # before deepspeed.initialize
>>> trainable, total = count_params(model)
>>> save_adapter(peft_model, state, out / "adapter")
>>> merged = merge_adapter(base_dir, out / "adapter")
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..domain.pretrained import module_names
from ..standard import Adapter
from .quiet import loading_quietly


class AdapterError(Exception):
    """An adapter that does not fit the model (printed without a traceback)."""


def linear_module_names(lm: nn.Module) -> list[str]:
    """Last name components of the model's linear layers (``q_proj``, ``c_attn``, ...), sorted."""
    from transformers.pytorch_utils import Conv1D

    names = {name.rsplit(".", 1)[-1] for name, m in lm.named_modules()
             if isinstance(m, (nn.Linear, Conv1D)) and name}
    return sorted(names)


def default_targets(lm: nn.Module) -> list[str]:
    """peft's usual targets for the architecture (``q_proj``/``v_proj`` for Llama, ``c_attn``
    for GPT-2, ...)."""
    from peft.utils.constants import TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as TARGETS

    model_type = str(getattr(getattr(lm, "config", None), "model_type", ""))
    targets = TARGETS.get(model_type)
    if targets is None:
        raise AdapterError(f"no default LoRA target modules for model type {model_type!r}; set "
                           f"adapter.targetModules (linear layers: {', '.join(linear_module_names(lm))}) "
                           "or all-linear")
    return list(targets)


def attach_lora(lm: nn.Module, adapter: Adapter) -> Any:
    """Wrap a Hugging Face causal LM with fresh LoRA adapters; the base weights are frozen."""
    from peft import LoraConfig, get_peft_model

    targets: list[str] | str = adapter.target_modules if adapter.target_modules is not None else default_targets(lm)
    # The same definition as `lmspec validate --check-env` applies to the base's headers
    # (rule env.adapter-modules), here on the parameters of the model as loaded.
    targetable, modules = module_names({n: list(p.shape) for n, p in lm.named_parameters(remove_duplicate=False)})
    if isinstance(targets, list):
        absent = [t for t in targets if t not in targetable]
        if absent:
            raise AdapterError(f"adapter.targetModules names modules the model does not have: "
                               f"{', '.join(absent)}; its linear layers are: {', '.join(linear_module_names(lm))}")
    absent = [m for m in adapter.modules_to_save if m not in modules]
    if absent:
        raise AdapterError(f"adapter.modulesToSave names modules the model does not have: {', '.join(absent)}")
    config = LoraConfig(r=adapter.rank, lora_alpha=adapter.alpha, lora_dropout=adapter.dropout,
                        target_modules=targets, modules_to_save=adapter.modules_to_save or None,
                        task_type="CAUSAL_LM")
    with _quiet_peft():
        return get_peft_model(lm, config)


@contextmanager
def _quiet_peft() -> Iterator[None]:
    # peft asks the model for `is_gradient_checkpointing`, which transformers 5 deprecates in
    # favour of `is_activation_checkpointing`; the answer is the same.
    # lmspec's transformer architecture is GPT-2, whose Conv1D layers store their weight
    # transposed: peft notices each one, sets fan_in_fan_out itself and warns once per layer;
    # the adapter it builds is the right one, and there is no setting for the user to change.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        warnings.filterwarnings("ignore", message="fan_in_fan_out is set to False but the target module is `Conv1D`",
                                category=UserWarning)
        yield


ADAPTER_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
"""The weight files of a saved adapter, either of which ``peft`` reads."""


def check_adapter_dir(adapter_dir: Path) -> None:
    """An adapter directory holds its config and its weights: :class:`AdapterError` naming the
    directory and the files expected, rather than ``peft`` taking the path for a Hub repo id."""
    if not (adapter_dir / "adapter_config.json").is_file():
        raise AdapterError(f"{adapter_dir}: not a LoRA adapter directory (no adapter_config.json)")
    if not any((adapter_dir / name).is_file() for name in ADAPTER_WEIGHTS):
        raise AdapterError(f"{adapter_dir}: the adapter has no weights: expected "
                           f"{' or '.join(ADAPTER_WEIGHTS)} beside adapter_config.json")


def load_adapter(base: nn.Module, adapter_dir: Path) -> Any:
    """A saved adapter on a loaded base (``peft.PeftModel``)."""
    from peft import PeftModel

    check_adapter_dir(adapter_dir)
    with _quiet_peft():
        return PeftModel.from_pretrained(base, str(adapter_dir))


def numel(p: torch.Tensor) -> int:
    """Elements of a parameter, also when ZeRO-3 has partitioned it away (``ds_numel``)."""
    return int(getattr(p, "ds_numel", p.numel()))


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, each shared tensor once."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += numel(p)
        if p.requires_grad:
            trainable += numel(p)
    return trainable, total


def save_adapter(peft_model: Any, state: dict[str, torch.Tensor], out: Path) -> None:
    """Write ``adapter_config.json`` and ``adapter_model.safetensors`` from a gathered state dict
    (names as ``peft_model.named_parameters()`` gives them)."""
    peft_model.save_pretrained(str(out), state_dict=state, safe_serialization=True)


def merge_adapter(base_dir: Path, adapter_dir: Path) -> nn.Module:
    """The base with the adapter merged into its weights, as a plain ``transformers`` model.

    Done in one process after training, from the saved files: peft cannot merge into
    ZeRO-3-partitioned weights."""
    from transformers import AutoModelForCausalLM

    with loading_quietly():
        base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32, local_files_only=True)
    merged: nn.Module = load_adapter(base, adapter_dir).merge_and_unload(safe_merge=True)
    return merged
