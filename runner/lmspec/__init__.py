"""lmspec: versioned manifests for the whole life of a model.

>>> import lmspec
>>> report = lmspec.validate(["examples/iris"])
>>> manifests = lmspec.load(["examples/iris"])   # raises lmspec.ValidationFailed on errors

Importing lmspec never imports torch or deepspeed; training and serving load them on demand.
"""

from __future__ import annotations

from ._version import __version__
from .standard import API_VERSION, Dataset, InferenceService, Model, TrainingJob
from .validator import Finding, Manifest, ManifestSet, Report, ValidationFailed, load, validate, validate_text

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
