"""lmspec v1alpha1: the typed models of the four kinds."""


from pydantic import BaseModel

from .common import API_VERSION, Metadata, Signature, TensorSpec
from .dataset import Dataset, DatasetSpec
from .inferenceservice import InferenceService, InferenceServiceSpec
from .model import Model, ModelSpec
from .trainingjob import TrainingJob, TrainingJobSpec

KINDS: dict[str, type[BaseModel]] = {
    "Model": Model,
    "Dataset": Dataset,
    "TrainingJob": TrainingJob,
    "InferenceService": InferenceService,
}
"""Document class of each kind, by the ``kind`` string."""

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
