"""The ``Model`` kind: architecture, task, signature and initial weights."""


from typing import Annotated, Any, Literal

from pydantic import Field

from ._base import Int, PositiveInt, Spec
from .common import DirectorySource, FileRef, HubSource, Metadata, Sha256, Signature, TrainingJobSource

Task = Literal["classification", "regression", "causalLm"]
Activation = Literal["relu", "gelu", "tanh", "sigmoid", "silu"]


class MLP(Spec):
    """A multi-layer perceptron: Linear → activation → dropout per hidden size, then a Linear head.
    Input and output widths come from the signature's last dimension."""

    type: Literal["mlp"] = Field(examples=["mlp"])
    """Architecture kind."""

    hidden_sizes: list[PositiveInt] = Field(default_factory=list, examples=[[64, 64]])
    """Width of each hidden layer, in order; empty means a single linear layer."""

    activation: Activation = Field(default="relu", examples=["gelu"])
    """Activation after each hidden layer."""

    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, examples=[0.1])
    """Dropout probability after each hidden activation."""


class LinearLayer(Spec):
    """A fully connected layer (``nn.Linear``)."""

    type: Literal["linear"] = Field(examples=["linear"])
    """Layer kind."""

    out_features: PositiveInt = Field(examples=[32])
    """Output width; the input width is the previous layer's output (or the signature's input)."""

    bias: bool = Field(default=True, examples=[False])
    """Whether the layer has an additive bias."""


class ActivationLayer(Spec):
    """An element-wise activation."""

    type: Activation = Field(examples=["relu"])
    """Activation function."""


class DropoutLayer(Spec):
    """Dropout (``nn.Dropout``)."""

    type: Literal["dropout"] = Field(examples=["dropout"])
    """Layer kind."""

    p: float = Field(default=0.1, ge=0.0, lt=1.0, examples=[0.2])
    """Probability of zeroing an element during training."""


class NormLayer(Spec):
    """Layer normalisation over the last dimension (``nn.LayerNorm``)."""

    type: Literal["layerNorm"] = Field(examples=["layerNorm"])
    """Layer kind."""

    eps: float = Field(default=1e-5, gt=0.0, examples=[1e-6])
    """Added to the variance for numerical stability."""


Layer = Annotated[LinearLayer | ActivationLayer | DropoutLayer | NormLayer, Field(discriminator="type")]


class Sequential(Spec):
    """An explicit stack of layers applied in order, as ``nn.Sequential``."""

    type: Literal["sequential"] = Field(examples=["sequential"])
    """Architecture kind."""

    layers: list[Layer] = Field(
        min_length=1,
        examples=[[{"type": "linear", "outFeatures": 16}, {"type": "relu"}, {"type": "linear", "outFeatures": 3}]],
    )
    """Layers in order. The last linear layer's width must match the output signature."""


class Transformer(Spec):
    """A decoder-only (GPT-style) transformer language model with learned positions."""

    type: Literal["transformer"] = Field(examples=["transformer"])
    """Architecture kind."""

    vocab_size: PositiveInt = Field(examples=[256])
    """Number of token ids; must cover the tokenizer's vocabulary (256 for the byte tokenizer)."""

    context_length: PositiveInt = Field(examples=[128])
    """Maximum sequence length in tokens."""

    width: PositiveInt = Field(examples=[128])
    """Hidden size (d_model); must be divisible by ``heads``."""

    depth: PositiveInt = Field(examples=[4])
    """Number of transformer blocks."""

    heads: PositiveInt = Field(examples=[4])
    """Attention heads per block."""

    mlp_ratio: float = Field(default=4.0, gt=0.0, le=64.0, examples=[4.0])
    """Feed-forward width as a multiple of ``width``."""

    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, examples=[0.1])
    """Dropout on embeddings, attention and residual paths; 0 is usual for pretraining."""

    tie_embeddings: bool = Field(default=True, examples=[False])
    """Share the input embedding matrix with the output projection."""


class HuggingFace(Spec):
    """Any architecture of the Hugging Face ``transformers`` library, built from a config."""

    type: Literal["huggingface"] = Field(examples=["huggingface"])
    """Architecture kind."""

    model_type: Annotated[str, Field(pattern=r"^[a-z0-9_-]+$")] = Field(examples=["llama"])
    """The ``model_type`` of a ``transformers`` config class (e.g. ``gpt2``, ``llama``)."""

    config: dict[str, Any] = Field(default_factory=dict, examples=[{"hidden_size": 256, "num_hidden_layers": 4}])
    """Values passed to the config class; keys use the library's own (snake_case) names."""


BaseSource = Annotated[DirectorySource | HubSource | TrainingJobSource, Field(discriminator="type")]


class Pretrained(Spec):
    """A causal language model that starts from a pretrained checkpoint in Hugging Face format:
    ``config.json``, one or sharded ``*.safetensors`` files (with their index), the tokenizer
    files, the chat template and ``generation_config.json``."""

    type: Literal["pretrained"] = Field(examples=["pretrained"])
    """Architecture kind."""

    source: BaseSource = Field(examples=[{"type": "hub", "uri": "hf://HuggingFaceTB/SmolLM2-135M@main"}])
    """Where the checkpoint is: a local ``directory``, a Hugging Face ``hub`` repository, or the
    exported model of another ``trainingJob``, so that a pretraining job and a fine-tuning job
    chain declaratively."""

    sha256: Sha256 | None = Field(
        default=None, examples=["9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
    )
    """Digest of the whole checkpoint, as the run's ``lock.json`` records it (``base.sha256``):
    the SHA-256 of the sorted ``<sha256>  <file>`` lines of its files. The run refuses a
    checkpoint with another digest."""


Architecture = Annotated[MLP | Sequential | Transformer | HuggingFace | Pretrained, Field(discriminator="type")]


class ModelSpec(Spec):
    """What the model is: its task, architecture and interface."""

    task: Task = Field(examples=["classification"])
    """What the model predicts: class labels, real values, or the next token."""

    architecture: Architecture = Field(examples=[{"type": "mlp", "hiddenSizes": [32]}])
    """The network, chosen from the registry of named architectures by ``type``."""

    signature: Signature = Field(
        examples=[
            {
                "inputs": [{"name": "features", "dtype": "float32", "shape": [-1, 4]}],
                "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 3]}],
            }
        ]
    )
    """Names, element types and shapes of the inputs and outputs."""

    num_classes: Annotated[Int, Field(ge=2)] | None = Field(default=None, examples=[3])
    """Number of classes, for classification; checked against the output width when both are known."""

    param_dtype: Literal["float32", "bfloat16", "float16"] = Field(default="float32", examples=["bfloat16"])
    """Element type of the stored parameters."""

    initial_weights: FileRef | None = Field(default=None, examples=[{"path": "init/model.safetensors"}])
    """Optional safetensors file to start from instead of a random initialisation."""


class Model(Spec):
    """A ``Model`` manifest: what a model is — its task, its architecture (chosen by name from a
    registry) and its signature (the names, types and shapes of its inputs and outputs)."""

    api_version: Literal["lmspec.io/v1beta1"] = Field(examples=["lmspec.io/v1beta1"])
    """Version of the lmspec standard this manifest follows."""

    kind: Literal["Model"] = Field(examples=["Model"])
    """Kind of object."""

    metadata: Metadata = Field(examples=[{"name": "iris-mlp", "labels": {"team": "vision"}}])
    """Name, labels, annotations and description."""

    spec: ModelSpec = Field(
        examples=[
            {
                "task": "classification",
                "numClasses": 3,
                "architecture": {"type": "mlp", "hiddenSizes": [32, 32]},
                "signature": {
                    "inputs": [{"name": "features", "dtype": "float32", "shape": [-1, 4]}],
                    "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 3]}],
                },
            }
        ]
    )
    """The model's definition."""
