"""Whole weights in and out of ZeRO partitions, one parameter at a time.

>>> for name, tensor in full_weights(engine.module, keep=world.is_main):   # collective
...     writer.add(name, tensor)                                          # tensor is None off rank 0

At ZeRO stage 3 no rank holds the whole model: each parameter is gathered from its partitions
(every rank in step), copied out on rank 0 and released before the next, so a caller that writes
each weight out holds one whole parameter at a time. Trained parameters come from the
optimizer's fp32 master copy at any stage. :func:`copy_into_partitioned` goes the other way, for
a model built under ``deepspeed.zero.Init``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from .errors import TrainError

Weights = Iterator[tuple[str, torch.Tensor | None]]
"""``(name, tensor)`` on rank 0, ``(name, None)`` on the other ranks."""


def gather(p: torch.Tensor, *, keep: bool) -> torch.Tensor | None:
    """One parameter, whole and fp32 (collective: every rank calls it in step): a copy where
    ``keep`` (rank 0), None elsewhere. Trained parameters come from the optimizer's fp32 master
    copy; frozen ones (the base under LoRA) are gathered from their ZeRO-3 partitions."""
    import deepspeed
    from deepspeed.utils import safe_get_full_fp32_param

    full = safe_get_full_fp32_param(p) if p.requires_grad else None
    if full is None and hasattr(p, "ds_id"):  # a frozen ZeRO-3 partition
        with deepspeed.zero.GatheredParameters([p]):
            full = p.detach().float().cpu().clone() if keep else None
    elif full is None:  # not managed by a ZeRO or bf16 optimizer: the parameter is fp32
        full = p.detach()
    return full.detach().float().cpu().clone() if keep and full is not None else None


def buffers(module: torch.nn.Module, *, keep: bool) -> Weights:
    """The buffers a state dict holds (never partitioned)."""
    persistent = set(module.state_dict())
    for name, b in module.named_buffers():
        if name in persistent:
            yield name, (b.detach().cpu().clone() if keep else None)


def full_weights(module: torch.nn.Module, *, keep: bool, trainable_only: bool = False) -> Weights:
    """Each fp32 weight, whole, one at a time, from any ZeRO stage. Collective: every rank
    must consume it to the end, in step. Nothing is kept between items."""
    for name, p in module.named_parameters():
        if trainable_only and not p.requires_grad:
            continue
        yield name, gather(p, keep=keep)
    if not trainable_only:
        yield from buffers(module, keep=keep)


def merged_weights(peft_model: Any, *, keep: bool) -> Weights:
    """The base's weights with the LoRA update merged in, one at a time, named as in the
    base's checkpoint (collective, like :func:`full_weights`). Each adapted layer's weight
    is gathered with its two LoRA factors and merged as peft's ``merge_and_unload`` does,
    ``W + scaling · transpose(B @ A)``, from the fp32 copies; ``modulesToSave`` layers give
    their trained copy."""
    from peft.tuners.lora import LoraLayer
    from peft.utils.other import transpose

    adapter = peft_model.active_adapter
    layers: dict[str, Any] = {n: m for n, m in peft_model.named_modules() if isinstance(m, LoraLayer)}
    lead = "base_model.model."
    saved = f".modules_to_save.{adapter}."

    def base_name(name: str) -> str:
        name = name[len(lead):] if name.startswith(lead) else name
        return name.replace(".base_layer.", ".").replace(saved, ".")

    for name, p in peft_model.named_parameters():
        owner, _, leaf = name.rpartition(".")
        if ".lora_" in name or ".original_module." in name:  # merged below / replaced by the copy
            continue
        layer = layers.get(owner.removesuffix(".base_layer"))
        if layer is None or leaf != "weight" or not owner.endswith(".base_layer"):
            yield base_name(name), gather(p, keep=keep)
            continue
        w = gather(p, keep=keep)
        a = gather(layer.lora_A[adapter].weight, keep=keep)
        b = gather(layer.lora_B[adapter].weight, keep=keep)
        if w is not None and a is not None and b is not None:
            w += transpose(b @ a, layer.fan_in_fan_out) * layer.scaling[adapter]
        yield base_name(name), w
    for name, t in buffers(peft_model, keep=keep):
        if ".lora_" not in name and ".original_module." not in name:
            yield base_name(name), t


def full_state_dict(module: torch.nn.Module, *, keep: bool, trainable_only: bool = False) -> dict[str, torch.Tensor]:
    """fp32 weights, whole, from any ZeRO stage (collective; complete where ``keep``, empty
    elsewhere). Holds the whole model: for small models and adapters."""
    return {name: t for name, t in full_weights(module, keep=keep, trainable_only=trainable_only) if t is not None}


def copy_into_partitioned(model: torch.nn.Module, reference: torch.nn.Module | None) -> None:
    """Copy ``reference``'s parameters and buffers (given on rank 0 only) into a model built under
    ``deepspeed.zero.Init``, one module at a time so that only one module is ever gathered whole.
    Collective: every rank calls it."""
    import deepspeed

    ref = dict(reference.named_modules()) if reference is not None else None
    for name, module in model.named_modules():
        params = list(module.parameters(recurse=False))
        with deepspeed.zero.GatheredParameters(params, modifier_rank=0):
            if ref is None:
                continue
            source = ref[name]
            with torch.no_grad():
                for (pname, p), q in zip(module.named_parameters(recurse=False),
                                         source.parameters(recurse=False), strict=True):
                    if p.shape != q.shape:
                        raise TrainError(f"{name}.{pname}: built as {tuple(p.shape)} under ZeRO-3, "
                                         f"{tuple(q.shape)} without it")
                    p.copy_(q)
                for b, c in zip(module.buffers(recurse=False), source.buffers(recurse=False), strict=True):
                    b.copy_(c)
