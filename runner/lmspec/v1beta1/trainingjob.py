"""The ``TrainingJob`` kind: how a Model is trained on a Dataset, with DeepSpeed ZeRO.

Every DeepSpeed setting the runner passes is derived from these fields (``lmspec export
deepspeed-config`` prints the result), so the manifest and the engine can never disagree.
"""


from typing import Annotated, Literal

from pydantic import BeforeValidator, Field

from ._base import CountOrAll, Int, Name, NonNegativeInt, PositiveInt, Spec
from ._plain import _not_bool
from .cluster import TrainingCluster
from .common import Metadata

Metric = Literal["loss", "accuracy", "mse", "mae", "perplexity", "rewardAccuracy", "rewardMargin"]


def _loss_metric() -> list[Metric]:
    return ["loss"]


ByteSize = Annotated[str, Field(pattern=r"^[0-9]{1,15}(\.[0-9]{1,6})?(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")]


class Loss(Spec):
    """The training objective."""

    type: Literal["crossEntropy", "mse", "causalLm", "dpo", "simpo"] = Field(examples=["crossEntropy"])
    """``crossEntropy`` for classification, ``mse`` for regression, ``causalLm`` (next-token
    cross-entropy) for causal language models; ``dpo`` (direct preference optimisation against
    the starting model) and ``simpo`` (reference-free, length-normalised) for preference pairs
    (a Dataset with ``chat.format: preference``)."""

    label_smoothing: float = Field(default=0.0, ge=0.0, lt=1.0, examples=[0.1])
    """Label smoothing for ``crossEntropy`` and ``causalLm``; for ``dpo``, the assumed share of
    pairs whose preference is wrong (conservative DPO), below 0.5."""

    beta: float | None = Field(default=None, gt=0.0, le=100.0, examples=[0.1])
    """Preference losses: the scale of the implicit reward. ``dpo``: how far the model may move
    from the starting model (default 0.1); ``simpo``: the scale of the length-normalised
    log-probability (default 2.0)."""

    gamma: float | None = Field(default=None, ge=0.0, le=100.0, examples=[1.0])
    """``simpo`` only: the target margin between the chosen and the rejected reward (default 1.0)."""


class Optimizer(Spec):
    """The optimizer and its hyperparameters."""

    type: Literal["sgd", "adam", "adamw"] = Field(default="adamw", examples=["adam"])
    """Algorithm. ``adam`` is Adam with L2 regularisation; ``adamw`` decouples weight decay."""

    lr: float = Field(default=1e-3, gt=0.0, examples=[3e-4])
    """Peak learning rate."""

    betas: list[Annotated[float, Field(ge=0.0, lt=1.0)]] = Field(
        default_factory=lambda: [0.9, 0.999], min_length=2, max_length=2, examples=[[0.9, 0.95]]
    )
    """Adam coefficients for the running averages of the gradient and its square."""

    eps: float = Field(default=1e-8, gt=0.0, examples=[1e-6])
    """Adam term added to the denominator for numerical stability."""

    weight_decay: float = Field(default=0.0, ge=0.0, examples=[0.01])
    """Weight decay coefficient."""

    momentum: float = Field(default=0.0, ge=0.0, lt=1.0, examples=[0.9])
    """SGD momentum."""

    nesterov: bool = Field(default=False, examples=[True])
    """Use Nesterov momentum (SGD, requires momentum > 0)."""


class Schedule(Spec):
    """The learning-rate schedule: a linear warm-up, then a decay."""

    type: Literal["constant", "linear", "cosine"] = Field(default="constant", examples=["cosine"])
    """Shape after warm-up: flat, linear decay to ``minLr``, or cosine decay to ``minLr``."""

    warmup_steps: NonNegativeInt = Field(default=0, examples=[100])
    """Optimizer steps of linear warm-up from 0 to ``optimizer.lr``."""

    min_lr: float = Field(default=0.0, ge=0.0, examples=[1e-5])
    """Learning rate at the end of the decay."""


class Stopping(Spec):
    """When training ends: after ``epochs`` passes over the training split or ``maxSteps``
    optimizer steps, whichever comes first."""

    epochs: PositiveInt = Field(default=1, examples=[20])
    """Passes over the training split."""

    max_steps: PositiveInt | None = Field(default=None, examples=[1000])
    """Upper bound on optimizer steps; none when omitted."""


class Batch(Spec):
    """Batch sizes. The global batch is ``microBatchSize × gradientAccumulationSteps × world
    size`` (world size = ``resources.nodes × resources.processesPerNode``)."""

    micro_batch_size: PositiveInt = Field(default=8, examples=[32])
    """Samples per process per forward/backward pass."""

    gradient_accumulation_steps: PositiveInt = Field(default=1, examples=[4])
    """Micro batches accumulated before each optimizer step."""

    global_batch_size: PositiveInt | None = Field(default=None, examples=[256])
    """Optional statement of the global batch; when given it must equal the product above."""

    group_by_length: bool = Field(default=False, examples=[True])
    """Language models: form micro batches of rows of similar length (within seeded windows of
    64 global micro batches, whose order is then shuffled), so that less of each batch is
    padding. A micro batch is always padded only to its longest row."""


class LossScaling(Spec):
    """Loss scaling of fp16 training, dynamic or static; unused in the other modes."""

    loss_scale: float = Field(default=0.0, ge=0.0, examples=[128.0])
    """Static loss scale; 0 selects dynamic loss scaling."""

    initial_scale_power: NonNegativeInt = Field(default=16, examples=[12])
    """Dynamic scaling starts at 2^initialScalePower."""

    loss_scale_window: PositiveInt = Field(default=1000, examples=[500])
    """Steps without overflow before the dynamic scale is raised."""

    hysteresis: PositiveInt = Field(default=2, examples=[2])
    """Overflows tolerated before the dynamic scale is lowered."""

    min_loss_scale: float = Field(default=1.0, gt=0.0, examples=[1.0])
    """Lower bound of the dynamic scale."""


class Precision(Spec):
    """Numeric precision of training."""

    mode: Literal["fp32", "fp16", "bf16"] = Field(default="fp32", examples=["bf16"])
    """``fp32``: full precision; ``fp16`` and ``bf16``: mixed precision with fp32 master weights
    (fp16 with loss scaling)."""

    loss_scaling: LossScaling = Field(default_factory=LossScaling, examples=[{"lossScale": 128.0}])
    """Loss scaling, for ``mode: fp16``."""


class Offload(Spec):
    """Where ZeRO keeps optimizer states or parameters."""

    device: Literal["none", "cpu", "nvme"] = Field(default="none", examples=["cpu"])
    """``none`` keeps them on the accelerator."""

    nvme_path: str | None = Field(default=None, examples=["/local_nvme"])
    """Directory on a fast local disk, relative to the manifest's directory unless absolute; required for ``nvme``."""

    pin_memory: bool = Field(default=False, examples=[True])
    """Use page-locked host memory (faster transfers, more host memory)."""


ZeroStage = Annotated[Literal[0, 1, 2, 3], BeforeValidator(_not_bool)]


class Zero(Spec):
    """DeepSpeed ZeRO: partitioning of optimizer states (1), gradients (2) and parameters (3)."""

    stage: ZeroStage = Field(default=0, examples=[2])
    """ZeRO stage; 0 is plain data parallelism."""

    offload_optimizer: Offload = Field(default_factory=Offload, examples=[{"device": "cpu"}])
    """Optimizer-state offload (stages 1-3)."""

    offload_param: Offload = Field(default_factory=Offload, examples=[{"device": "cpu"}])
    """Parameter offload; only meaningful at stage 3."""

    overlap_comm: bool | None = Field(default=None, examples=[True])
    """Overlap gradient reduction with the backward pass; DeepSpeed's default (on at stage 3
    only) when omitted."""

    contiguous_gradients: bool = Field(default=True, examples=[False])
    """Copy gradients into a contiguous buffer as they are produced (less fragmentation)."""

    reduce_bucket_size: PositiveInt = Field(default=500_000_000, examples=[200_000_000])
    """Elements reduced at a time."""

    allgather_bucket_size: PositiveInt = Field(default=500_000_000, examples=[200_000_000])
    """Elements all-gathered at a time (stages 1-2)."""

    stage3_prefetch_bucket_size: PositiveInt = Field(default=50_000_000, examples=[10_000_000])
    """Parameter elements prefetched ahead of use; only meaningful at stage 3."""

    stage3_param_persistence_threshold: NonNegativeInt = Field(default=100_000, examples=[10_000])
    """Parameters smaller than this stay unpartitioned; only meaningful at stage 3."""

    zero_quantized_weights: bool = Field(default=False, examples=[True])
    """ZeRO++ quantized weight communication; only meaningful at stage 3."""

    zero_quantized_gradients: bool = Field(default=False, examples=[True])
    """ZeRO++ quantized gradient communication; only meaningful at stage 3."""

    zero_hpz_partition_size: PositiveInt = Field(default=1, examples=[8])
    """ZeRO++ hierarchical partition size (ranks per secondary partition); only meaningful at stage 3."""


class ActivationCheckpointing(Spec):
    """Recompute activations in the backward pass instead of storing them."""

    enabled: bool = Field(default=False, examples=[True])
    """Checkpoint each transformer block (transformer and huggingface architectures)."""


class Adapter(Spec):
    """Train low-rank adapters (LoRA, arXiv 2106.09685) on a frozen pretrained base instead of
    every weight, through the ``peft`` library, at any ZeRO stage. ``qlora`` also quantizes the
    frozen base to 4-bit NF4 (arXiv 2305.14314) and needs ``accelerator: cuda`` and the
    ``bitsandbytes`` package."""

    type: Literal["lora", "qlora"] = Field(examples=["lora"])
    """Adapter kind."""

    rank: PositiveInt = Field(default=8, examples=[16])
    """Rank r of each low-rank update."""

    alpha: PositiveInt = Field(default=16, examples=[32])
    """Scaling numerator: the update is multiplied by ``alpha / rank``."""

    dropout: float = Field(default=0.0, ge=0.0, lt=1.0, examples=[0.05])
    """Dropout on the adapter's input."""

    target_modules: list[Annotated[str, Field(min_length=1)]] | Literal["all-linear"] | None = Field(
        default=None, examples=[["q_proj", "v_proj"]]
    )
    """Names (last component) of the modules that get adapters; ``all-linear`` for every linear
    layer but the output head; the architecture's usual choice when omitted (``q_proj`` and
    ``v_proj`` for Llama, Mistral and Qwen2; ``c_attn`` for GPT-2)."""

    modules_to_save: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=list, examples=[["lm_head", "embed_tokens"]]
    )
    """Modules trained in full and saved with the adapter (e.g. embeddings after adding tokens)."""

    export_merged: bool = Field(default=False, examples=[True])
    """Also export the base model with the adapter merged into its weights, as a plain Hugging
    Face model; the adapter is always exported."""


class Resources(Spec):
    """The planned world: machines, processes and devices."""

    nodes: PositiveInt = Field(default=1, examples=[2])
    """Machines."""

    processes_per_node: PositiveInt = Field(default=1, examples=[8])
    """Training processes per machine (one per accelerator on GPU machines)."""

    accelerator: Literal["cpu", "cuda"] = Field(default="cpu", examples=["cuda"])
    """Device type each process trains on."""

    memory_per_device: ByteSize | None = Field(default=None, examples=["80GiB"])
    """Memory available to each process's device; the validator warns when the planned model
    states do not fit."""


class EarlyStopping(Spec):
    """Stop when a validation metric stops improving."""

    metric: Metric = Field(default="loss", examples=["accuracy"])
    """Validation metric to watch."""

    mode: Literal["min", "max"] = Field(default="min", examples=["max"])
    """Whether lower or higher is better."""

    patience: PositiveInt = Field(default=3, examples=[5])
    """Validations without improvement before stopping."""

    min_delta: float = Field(default=0.0, ge=0.0, examples=[0.001])
    """Smallest change that counts as an improvement."""


class Validation(Spec):
    """Periodic evaluation on the validation split."""

    interval: PositiveInt | None = Field(default=None, examples=[50])
    """Optimizer steps between validations; at the end of each epoch when omitted."""

    metrics: list[Metric] = Field(default_factory=_loss_metric, examples=[["loss", "accuracy"]])
    """Metrics to compute."""

    early_stopping: EarlyStopping | None = Field(default=None, examples=[{"metric": "loss", "patience": 3}])
    """Optional early stopping."""

    max_samples: CountOrAll = Field(default=256, examples=[1024])
    """Samples (rows, or sequences of a language model) each validation evaluates: that many,
    evenly spaced through the validation split, the same ones every time and whatever the world
    size; ``all`` for the whole split. The default keeps a validation of a large corpus to a few
    hundred forward passes."""


class Evaluation(Spec):
    """Evaluation on the test split after training."""

    enabled: bool = Field(default=True, examples=[False])
    """Evaluate the final model on the test split."""

    metrics: list[Metric] = Field(default_factory=_loss_metric, examples=[["accuracy"]])
    """Metrics to report."""

    max_samples: CountOrAll = Field(default=2048, examples=["all"])
    """Samples of the test split evaluated, evenly spaced through it (as for validation);
    ``all`` for the whole split."""


class Checkpointing(Spec):
    """DeepSpeed-native checkpoints for resuming."""

    interval: PositiveInt | None = Field(default=None, examples=[100])
    """Optimizer steps between checkpoints; only at the end when omitted."""

    keep_last: PositiveInt = Field(default=3, examples=[2])
    """Checkpoints kept; older ones are deleted."""

    resume: bool = Field(default=False, examples=[True])
    """Resume from the latest complete checkpoint in the output directory, as ``--resume`` does."""


class Output(Spec):
    """Where the run writes its files."""

    dir: Annotated[str, Field(pattern=r"^([^{}]|\{name\})*$", min_length=1)] = Field(
        default="runs/{name}", examples=["runs/iris"])
    """Run directory, relative to the manifest's directory unless absolute; ``{name}`` is the
    job's name (the only substitution: other braces are not allowed)."""


EnvName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class Mlflow(Spec):
    """Experiment tracking with MLflow, from rank 0 only: the rendered manifests as parameters,
    every metric record of ``metrics.jsonl`` at its step, and the lock, the rendered manifests,
    the summary and the exported model as artefacts. A tracking failure never stops training."""

    enabled: bool = Field(default=False, examples=[True])
    """Log the run to MLflow (needs the ``mlflow`` package: ``pip install 'lmspec[mlflow]'``)."""

    experiment: str | None = Field(default=None, min_length=1, max_length=250, examples=["iris"])
    """Experiment the run is logged under; the job's name when omitted."""

    tracking_uri_env: EnvName = Field(default="MLFLOW_TRACKING_URI", examples=["TEAM_MLFLOW_URI"])
    """Environment variable holding the tracking URI (a server such as ``http://mlflow:5000``, or
    a database); when it is unset or empty, a local store in the run directory is used
    (``mlflow.db``, artefacts under ``mlartifacts/``)."""


class Logging(Spec):
    """Training logs and experiment trackers."""

    interval: PositiveInt = Field(default=10, examples=[1])
    """Optimizer steps between metric records in ``metrics.jsonl``."""

    tensorboard: bool = Field(default=False, examples=[True])
    """Also write TensorBoard event files to ``<run>/tensorboard`` (the ``tensorboard`` package is
    in the ``run`` extra)."""

    progress_bar: bool = Field(default=True, examples=[False])
    """Show a progress bar with loss and throughput on rank 0."""

    mlflow: Mlflow = Field(default_factory=Mlflow, examples=[{"enabled": True, "experiment": "iris"}])
    """MLflow experiment tracking."""


class TrainingJobSpec(Spec):
    """How to train: what, on what, with which optimisation and distribution settings."""

    model: Name = Field(examples=["iris-mlp"])
    """Name of the Model manifest to train."""

    dataset: Name = Field(examples=["iris"])
    """Name of the Dataset manifest to train on."""

    loss: Loss = Field(examples=[{"type": "crossEntropy"}])
    """Training objective; must suit the Model's task."""

    optimizer: Optimizer = Field(default_factory=Optimizer, examples=[{"type": "adamw", "lr": 0.001}])
    """Optimizer."""

    schedule: Schedule = Field(default_factory=Schedule, examples=[{"type": "cosine", "warmupSteps": 10}])
    """Learning-rate schedule."""

    stopping: Stopping = Field(default_factory=Stopping, examples=[{"epochs": 10}])
    """When to stop."""

    batch: Batch = Field(default_factory=Batch, examples=[{"microBatchSize": 16, "gradientAccumulationSteps": 2}])
    """Batch sizes."""

    precision: Precision = Field(default_factory=Precision, examples=[{"mode": "bf16"}])
    """Numeric precision."""

    gradient_clipping: float = Field(default=0.0, ge=0.0, examples=[1.0])
    """Clip the global gradient norm to this value; 0 disables clipping."""

    zero: Zero = Field(default_factory=Zero, examples=[{"stage": 2}])
    """DeepSpeed ZeRO settings."""

    adapter: Adapter | None = Field(default=None, examples=[{"type": "lora", "rank": 8}])
    """Train adapters on a frozen pretrained base; every weight is trained (full fine-tuning)
    when omitted."""

    activation_checkpointing: ActivationCheckpointing = Field(
        default_factory=ActivationCheckpointing, examples=[{"enabled": True}]
    )
    """Activation checkpointing."""

    resources: Resources = Field(default_factory=Resources, examples=[{"processesPerNode": 2}])
    """The planned world size and devices."""

    validation: Validation = Field(
        default_factory=Validation, examples=[{"interval": 50, "metrics": ["loss", "accuracy"]}]
    )
    """Validation during training."""

    evaluation: Evaluation = Field(default_factory=Evaluation, examples=[{"metrics": ["accuracy"]}])
    """Test-split evaluation after training."""

    checkpointing: Checkpointing = Field(default_factory=Checkpointing, examples=[{"interval": 100, "keepLast": 2}])
    """Checkpoints."""

    seed: Int = Field(default=0, examples=[1234])
    """Seed for initialisation, shuffling, dropout and augmentation."""

    output: Output = Field(default_factory=Output, examples=[{"dir": "runs/iris"}])
    """Run directory."""

    logging: Logging = Field(default_factory=Logging, examples=[{"interval": 5}])
    """Logging."""

    cluster: TrainingCluster | None = Field(
        default=None, examples=[{"image": "registry.example.com/lmspec-runner:0.1.0",
                                 "storage": {"workspace": "pvc://lmspec-workspace"}}]
    )
    """How a cluster engine (Kubeflow Trainer, Slurm, …) runs the job; ignored by ``lmspec run``."""


class TrainingJob(Spec):
    """A ``TrainingJob`` manifest: how a Model is trained on a Dataset — objective, optimizer,
    batches, precision, DeepSpeed ZeRO, resources, validation and checkpoints."""

    api_version: Literal["lmspec.io/v1beta1"] = Field(examples=["lmspec.io/v1beta1"])
    """Version of the lmspec standard this manifest follows."""

    kind: Literal["TrainingJob"] = Field(examples=["TrainingJob"])
    """Kind of object."""

    metadata: Metadata = Field(examples=[{"name": "iris-train"}])
    """Name, labels, annotations and description."""

    spec: TrainingJobSpec = Field(
        examples=[
            {
                "model": "iris-mlp",
                "dataset": "iris",
                "loss": {"type": "crossEntropy"},
                "optimizer": {"type": "adamw", "lr": 0.01},
                "stopping": {"epochs": 30},
                "batch": {"microBatchSize": 16},
            }
        ]
    )
    """The training job's definition."""
