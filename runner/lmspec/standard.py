"""The standard as the runtime sees it: one version-neutral seam over the versioned models.

The data pipeline, the model builders, the trainer, the server and the CLI import manifest types
from here, never from a versioned package such as :mod:`lmspec.v1alpha1`. The runtime therefore
works on one version of the standard — the *hub* (``HUB_VERSION``) — and supporting another
``apiVersion`` means adding its models beside ``v1alpha1`` and a conversion to the hub here (the
hub-and-spokes policy of ``spec/v1alpha1/versioning.md``), not touching the runtime.

``VERSIONS`` is what the validator routes documents by: ``apiVersion`` → ``kind`` → model class.
``run_dir`` says where a TrainingJob's run directory is, for the runner and the validator alike.
"""

from __future__ import annotations

from pydantic import BaseModel

from .rundir import run_dir
from .v1alpha1 import API_VERSION, KINDS, Dataset, InferenceService, Model, TrainingJob
from .v1alpha1._plain import EXTENSION_KEY
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
"""The ``apiVersion`` whose models the runtime works on."""

VERSIONS: dict[str, dict[str, type[BaseModel]]] = {API_VERSION: KINDS}
"""Every ``apiVersion`` the validator reads, with the document class of each kind."""


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
]
