"""lmspec v1beta1: the typed models of the four kinds.

The names below are imported on first use: the validator reads only this package's
pydantic-free parts (:mod:`._plain`), so it never pays for pydantic or the models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .common import API_VERSION, Metadata, Signature, TensorSpec
    from .dataset import Dataset, DatasetSpec
    from .inferenceservice import InferenceService, InferenceServiceSpec
    from .model import Model, ModelSpec
    from .trainingjob import TrainingJob, TrainingJobSpec

    KINDS: dict[str, type[BaseModel]]

_WHERE = {
    "API_VERSION": "common", "Metadata": "common", "Signature": "common", "TensorSpec": "common",
    "Dataset": "dataset", "DatasetSpec": "dataset",
    "InferenceService": "inferenceservice", "InferenceServiceSpec": "inferenceservice",
    "Model": "model", "ModelSpec": "model",
    "TrainingJob": "trainingjob", "TrainingJobSpec": "trainingjob",
}


def __getattr__(name: str) -> Any:
    if name == "KINDS":
        # The document class of each kind, by the ``kind`` string.
        kinds = {kind: __getattr__(kind) for kind in ("Model", "Dataset", "TrainingJob", "InferenceService")}
        globals()["KINDS"] = kinds
        return kinds
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "API_VERSION",
    "KINDS",
    "Dataset",
    "DatasetSpec",
    "InferenceService",
    "InferenceServiceSpec",
    "Metadata",
    "Model",
    "ModelSpec",
    "Signature",
    "TensorSpec",
    "TrainingJob",
    "TrainingJobSpec",
]
