"""Rules of preference tuning: a ``dpo`` or ``simpo`` loss, and Datasets of preference pairs."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from . import registry as rules
from .light import Pretrained
from .semantic import _PREFERENCE_LOSSES, Index, Issue, _dataset_of, _model_of, check

if TYPE_CHECKING:
    from ..standard import Dataset, TrainingJob


@check("Dataset")
def _dataset_preference(d: Dataset, _: Index) -> Iterator[Issue]:
    chat = d.spec.chat
    if chat is None or chat.format != "preference":
        return
    if chat.packing:
        yield (rules.DATASET_PREFERENCE_OPTIONS, ("spec", "chat", "packing"),
               "preference pairs cannot be packed: each pair is scored as two whole sequences",
               "remove packing")
    if "loss" in chat.model_fields_set:
        yield (rules.DATASET_PREFERENCE_OPTIONS, ("spec", "chat", "loss"),
               "a preference pair trains its two answers, nothing else: chat.loss does not apply",
               "remove chat.loss")


@check("TrainingJob")
def _job_preference(j: TrainingJob, index: Index) -> Iterator[Issue]:
    loss = j.spec.loss
    preference = loss.type in _PREFERENCE_LOSSES
    if not preference:
        for name in ("beta", "gamma"):
            if getattr(loss, name) is not None:
                yield (rules.TRAININGJOB_PREFERENCE_SETTINGS, ("spec", "loss", name),
                       f"{name} applies to the preference losses (dpo, simpo), not to {loss.type!r}",
                       f"remove {name}")
    elif loss.type == "dpo":
        if loss.gamma is not None:
            yield (rules.TRAININGJOB_PREFERENCE_SETTINGS, ("spec", "loss", "gamma"),
                   "gamma is SimPO's target margin; DPO has none", "remove gamma, or use loss simpo")
        if loss.label_smoothing >= 0.5:
            yield (rules.TRAININGJOB_PREFERENCE_SETTINGS, ("spec", "loss", "labelSmoothing"),
                   f"DPO's label smoothing is the share of pairs assumed mislabelled; "
                   f"{loss.label_smoothing} would reverse the preferences", "use a value below 0.5, such as 0.1")
    data = _dataset_of(j, index)
    if data is not None:
        pairs = data.spec.chat is not None and data.spec.chat.format == "preference"
        if preference and not pairs:
            yield (rules.TRAININGJOB_PREFERENCE_DATA, ("spec", "dataset"),
                   f"loss {loss.type!r} learns from preference pairs, and Dataset {data.metadata.name!r} "
                   "does not hold them", "train on a Dataset with chat.format: preference")
        elif pairs and not preference:
            yield (rules.TRAININGJOB_PREFERENCE_DATA, ("spec", "loss", "type"),
                   f"Dataset {data.metadata.name!r} holds preference pairs, which loss {loss.type!r} "
                   "cannot learn from", "use loss dpo or simpo")
    model = _model_of(j, index)
    if loss.type == "dpo" and model is not None and model.spec.task == "causal-lm":
        trained = isinstance(model.spec.architecture, Pretrained) or model.spec.initial_weights is not None
        if not trained:
            yield (rules.TRAININGJOB_PREFERENCE_REFERENCE, ("spec", "model"),
                   f"DPO measures the model against where it started, and Model {model.metadata.name!r} "
                   "starts from random weights", "start from a pretrained base (architecture type "
                   "pretrained) or initialWeights, or use loss simpo, which needs no reference")
