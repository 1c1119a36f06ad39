"""The standard as the runtime sees it: one version-neutral seam over the versioned models.

The data pipeline, the model builders, the trainer, the server and the CLI import manifest types
from here, never from a versioned package such as :mod:`lmspec.v1alpha1`. The runtime therefore
works on one version of the standard — the *hub* (``HUB_VERSION``, the version the runtime is
written against, not necessarily the newest) — and every other ``apiVersion`` is converted to it
(:func:`to_hub`). The versions are registered in :mod:`lmspec.versions`; supporting another means
its models package, its conversions (:mod:`lmspec.conversion`) and one registry entry, not
touching the runtime (the hub-and-spokes policy of ``spec/v1alpha1/versioning.md``).

``VERSIONS`` maps ``apiVersion`` → ``kind`` → model class for every registered version (the
validator runs these models' compiled checks, :mod:`lmspec.manifests.light`, and converts every
version's documents to the hub's before its rules read them).
``run_dir`` says where a TrainingJob's run directory is, for the runner and the validator alike.

The models are imported on first use of their names: the validator takes ``run_dir`` and
``EXTENSION_KEY`` from here without importing pydantic.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import versions
from .v1alpha1._plain import EXTENSION_KEY

if TYPE_CHECKING:
    from pydantic import BaseModel

    from .v1alpha1 import API_VERSION, KINDS, Dataset, InferenceService, Model, TrainingJob
    from .v1alpha1.cluster import Cluster, ServiceCluster, TrainingCluster
    from .v1alpha1.common import Signature, TensorSpec
    from .v1alpha1.dataset import (
        Chat,
        ChatFields,
        ChatLoss,
        ChatTokenizer,
        DatasetSpec,
        Dedupe,
        DropNulls,
        FileTokenizer,
        Filter,
        GaussianNoise,
        LabelEncode,
        MinMax,
        Pack,
        Standardize,
        Step,
        Tokenize,
    )
    from .v1alpha1.inferenceservice import InferenceServiceSpec, KeySource, Placement
    from .v1alpha1.model import (
        MLP,
        ActivationLayer,
        DropoutLayer,
        HuggingFace,
        LinearLayer,
        ModelSpec,
        NormLayer,
        Pretrained,
        Sequential,
        Transformer,
    )
    from .v1alpha1.trainingjob import Adapter, Logging, Loss, Offload, Schedule, TrainingJobSpec

    HUB_VERSION = API_VERSION
    VERSIONS: dict[str, dict[str, type[BaseModel]]]

_HUB = versions.get(versions.HUB).package  # the hub's models package: lmspec.v1alpha1
_MODULES = {
    "": "API_VERSION KINDS Dataset InferenceService Model TrainingJob",
    ".cluster": "Cluster ServiceCluster TrainingCluster",
    ".common": "Signature TensorSpec",
    ".dataset": "Chat ChatFields ChatLoss ChatTokenizer DatasetSpec Dedupe DropNulls FileTokenizer Filter "
                "GaussianNoise LabelEncode MinMax Pack Standardize Step Tokenize",
    ".inferenceservice": "InferenceServiceSpec KeySource Placement",
    ".model": "MLP ActivationLayer DropoutLayer HuggingFace LinearLayer ModelSpec NormLayer Pretrained Sequential "
              "Transformer",
    ".trainingjob": "Adapter Logging Loss Offload Schedule TrainingJobSpec",
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names.split()}
"""Each name's module in the hub's package."""


def __getattr__(name: str) -> Any:
    value: Any
    if name == "HUB_VERSION":  # the ``apiVersion`` whose models the runtime works on
        value = __getattr__("API_VERSION")
    elif name == "VERSIONS":  # every registered ``apiVersion``, with the document class of each kind
        return {v.api_version: v.models() for v in versions.all_versions()}  # not kept: versions may be added
    elif name in _WHERE:
        value = getattr(importlib.import_module(_HUB + _WHERE[name]), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def to_hub(doc: dict[str, Any], *, share: bool = False) -> tuple[dict[str, Any], list[Any]]:
    """A plain manifest of any registered version in the hub's version, with what could not be
    represented there (:class:`lmspec.conversion.Loss`; empty for a valid manifest). ``share``:
    the result may share data with ``doc`` (for a caller that modifies neither)."""
    from .conversion import convert

    return convert(doc, versions.HUB, share=share)


def run_dir(job: TrainingJob, base_dir: Path) -> Path:
    """A TrainingJob's run directory: ``output.dir`` with ``{name}`` filled in, relative to
    ``base_dir``, the directory of the job's manifest, as every relative path in a manifest is."""
    # A plain replacement, not str.format: the template comes from a manifest, and format()
    # would evaluate attribute lookups such as {name.__class__}.
    return base_dir / job.spec.output.dir.replace("{name}", job.metadata.name)


__all__ = [
    "API_VERSION",
    "EXTENSION_KEY",
    "HUB_VERSION",
    "KINDS",
    "MLP",
    "VERSIONS",
    "ActivationLayer",
    "Adapter",
    "Chat",
    "ChatFields",
    "ChatLoss",
    "ChatTokenizer",
    "Cluster",
    "Dataset",
    "DatasetSpec",
    "Dedupe",
    "DropNulls",
    "DropoutLayer",
    "FileTokenizer",
    "Filter",
    "GaussianNoise",
    "HuggingFace",
    "InferenceService",
    "InferenceServiceSpec",
    "KeySource",
    "LabelEncode",
    "LinearLayer",
    "Logging",
    "Loss",
    "MinMax",
    "Model",
    "ModelSpec",
    "NormLayer",
    "Offload",
    "Pack",
    "Placement",
    "Pretrained",
    "Schedule",
    "Sequential",
    "ServiceCluster",
    "Signature",
    "Standardize",
    "Step",
    "TensorSpec",
    "Tokenize",
    "TrainingCluster",
    "TrainingJob",
    "TrainingJobSpec",
    "Transformer",
    "run_dir",
    "to_hub",
]
