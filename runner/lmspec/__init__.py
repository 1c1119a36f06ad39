"""lmspec: versioned manifests for the whole life of a model.

>>> import lmspec
>>> report = lmspec.validate(["examples/iris"])
>>> manifests = lmspec.load(["examples/iris"])   # raises lmspec.ValidationFailed on errors

Importing lmspec never imports torch or deepspeed; training and serving load them on demand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .validator import Finding, Manifest, ManifestSet, Report, ValidationFailed, load, validate, validate_text

if TYPE_CHECKING:
    from .standard import API_VERSION, Dataset, InferenceService, Model, TrainingJob


def __getattr__(name: str) -> Any:
    # The models are imported on first use: validating needs neither them nor pydantic.
    if name in ("API_VERSION", "Dataset", "InferenceService", "Model", "TrainingJob"):
        from . import standard

        return getattr(standard, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "API_VERSION",
    "Dataset",
    "Finding",
    "InferenceService",
    "Manifest",
    "ManifestSet",
    "Model",
    "Report",
    "TrainingJob",
    "ValidationFailed",
    "__version__",
    "load",
    "validate",
    "validate_text",
]
