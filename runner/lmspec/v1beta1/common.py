"""Objects used by several kinds: metadata, tensor signatures, references, file digests."""


from typing import Annotated, Literal

from pydantic import Field

from ._base import Int, Name, Spec

API_VERSION = "lmspec.io/v1beta1"

DType = Literal[
    "bool",
    "uint8",
    "int8",
    "int16",
    "int32",
    "int64",
    "float16",
    "bfloat16",
    "float32",
    "float64",
    "string",
]
"""Element types of tensors and columns. ``string`` is text (BYTES in the inference protocol)."""

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class Metadata(Spec):
    """Identity and free-form description of a manifest."""

    name: Name = Field(examples=["iris-mlp"])
    """Name of the object, unique per kind within a set of manifests; other manifests refer to it.
    A DNS-1123 label: at most 63 lowercase letters, digits and '-'."""

    labels: dict[str, str] = Field(default_factory=dict, examples=[{"team": "vision"}])
    """Identifying key/value pairs for selecting and grouping manifests."""

    annotations: dict[str, str] = Field(default_factory=dict, examples=[{"owner": "ml-platform"}])
    """Non-identifying key/value pairs for tools and people."""

    description: str = Field(default="", examples=["Three-class classifier for the iris data"])
    """Human-readable description."""


class TensorSpec(Spec):
    """One named input or output tensor of a model."""

    name: Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.-]*$", max_length=128)] = Field(examples=["features"])
    """Tensor name as it appears in inference requests and responses."""

    dtype: DType = Field(examples=["float32"])
    """Element type."""

    shape: list[Annotated[Int, Field(ge=-1)]] = Field(min_length=1, examples=[[-1, 4]])
    """Dimensions, batch first; -1 marks a variable dimension (always the batch dimension)."""


class Signature(Spec):
    """The model's inputs and outputs; the server derives its protocol metadata from it."""

    inputs: list[TensorSpec] = Field(
        min_length=1, examples=[[{"name": "features", "dtype": "float32", "shape": [-1, 4]}]]
    )
    """Input tensors, in order."""

    outputs: list[TensorSpec] = Field(
        min_length=1, examples=[[{"name": "logits", "dtype": "float32", "shape": [-1, 3]}]]
    )
    """Output tensors, in order."""


class FileRef(Spec):
    """A local file, optionally pinned by its content digest."""

    path: str = Field(min_length=1, examples=["weights/model.safetensors"])
    """Path, relative to the manifest's directory unless absolute."""

    sha256: Sha256 | None = Field(
        default=None, examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
    )
    """Lowercase hex SHA-256 of the file; checked by ``lmspec validate --check-env`` and by the runner."""


HfUri = Annotated[str, Field(pattern=r"^hf://[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?(@[^@/\s]+)?$")]


class DirectorySource(Spec):
    """A model directory on local disk."""

    type: Literal["directory"] = Field(examples=["directory"])
    """Source kind."""

    path: str = Field(min_length=1, examples=["base-model"])
    """Directory, relative to the manifest's directory unless absolute."""


class HubSource(Spec):
    """A repository of the Hugging Face Hub, read from the local Hugging Face cache
    (``HF_HUB_CACHE``)."""

    type: Literal["hub"] = Field(examples=["hub"])
    """Source kind."""

    uri: HfUri = Field(examples=["hf://HuggingFaceTB/SmolLM2-135M@main"])
    """``hf://org/name@revision``. The revision is a branch, tag or commit hash; a commit hash
    pins the exact files."""


class TrainingJobSource(Spec):
    """The model exported by a TrainingJob (``<output.dir>/export``)."""

    type: Literal["trainingJob"] = Field(examples=["trainingJob"])
    """Source kind."""

    name: Name = Field(examples=["base-pretrain"])
    """Name of the TrainingJob manifest."""
