"""Rules of a TrainingJob: batch, precision, ZeRO, and how its Model and Dataset fit together
(loss, metrics, data, context, adapters, memory, preference tuning)."""

from __future__ import annotations

from collections.abc import Iterator

from ...manifests.light import (
    Dataset,
    Dedupe,
    DropNulls,
    Filter,
    GaussianNoise,
    LabelEncode,
    MinMax,
    Pack,
    Pretrained,
    Standardize,
    Tokenize,
    TrainingJob,
    Transformer,
)
from ..rule import rule
from ._base import Index, Issue, Path, check, context_of, dataset_of, model_of, output_width, source_format
from .cluster import labels, tolerations

# The rules of this module: stable ids, severity and summary (the spec documents each id).
TRAININGJOB_BATCH = rule(
    "trainingjob.batch-world-size",
    "error",
    "semantic",
    "globalBatchSize is not microBatchSize × gradientAccumulationSteps × world size.",
)
TRAININGJOB_PRECISION = rule("trainingjob.precision-exclusive", "error", "semantic", "fp16 and bf16 are both enabled.")
TRAININGJOB_ZERO3_ONLY = rule(
    "trainingjob.zero3-only",
    "warning",
    "semantic",
    "An option that only means something at ZeRO stage 3 is set below it.",
)
TRAININGJOB_OFFLOAD_STAGE = rule(
    "trainingjob.offload-stage", "error", "semantic", "Optimizer offload is set without ZeRO (stage 0)."
)
TRAININGJOB_NVME_PATH = rule("trainingjob.nvme-path", "error", "semantic", "Offload to nvme without nvmePath.")
TRAININGJOB_QLORA_ACCELERATOR = rule(
    "trainingjob.qlora-accelerator",
    "error",
    "semantic",
    "QLoRA (4-bit quantized base) is declared for an accelerator other than cuda.",
)
TRAININGJOB_LOSS_TASK = rule("trainingjob.loss-task", "error", "semantic", "The loss does not fit the Model's task.")
TRAININGJOB_PREFERENCE_DATA = rule(
    "trainingjob.preference-data",
    "error",
    "semantic",
    "A preference loss (dpo, simpo) is trained on data that is not preference pairs, or pairs with another loss.",
)
TRAININGJOB_PREFERENCE_SETTINGS = rule(
    "trainingjob.preference-settings",
    "error",
    "semantic",
    "beta or gamma is set for a loss that does not use it, or DPO's label smoothing is 0.5 or more.",
)
TRAININGJOB_PREFERENCE_REFERENCE = rule(
    "trainingjob.preference-reference",
    "error",
    "semantic",
    "DPO starts from a Model without trained weights, so its reference (the starting model) would be random.",
)
TRAININGJOB_LM_TOKENIZER = rule(
    "trainingjob.lm-tokenizer",
    "error",
    "semantic",
    "A causal language model is trained on a Dataset without a tokenize step, or on chat data with no tokenizer "
    "(none of its own, and no pretrained base's).",
)
TRAININGJOB_LM_PACK = rule(
    "trainingjob.lm-pack",
    "error",
    "semantic",
    "A causal language model is trained on a Dataset that tokenizes but never packs.",
)
TRAININGJOB_DATASET_TASK = rule(
    "trainingjob.dataset-task",
    "error",
    "semantic",
    "A step or setting of the Dataset does not apply to the Model's task.",
)
TRAININGJOB_DATASET_COLUMNS = rule(
    "trainingjob.dataset-columns",
    "error",
    "semantic",
    "The Dataset's features or target cannot feed a classification or regression Model.",
)
TRAININGJOB_METRIC_TASK = rule(
    "trainingjob.metric-task", "error", "semantic", "A metric does not fit the Model's task."
)
TRAININGJOB_CLASSES = rule(
    "trainingjob.classes",
    "error",
    "semantic",
    "The Dataset's classes disagree with the Model's numClasses or output width.",
)
TRAININGJOB_ADAPTER_BASE = rule(
    "trainingjob.adapter-base",
    "error",
    "semantic",
    "An adapter (LoRA, QLoRA) is declared for a Model that is not a pretrained causal language model.",
)
TRAININGJOB_CONTEXT = rule(
    "trainingjob.context-length", "error", "semantic", "Packed sequences are longer than the Model's context length."
)
TRAININGJOB_MEMORY_FIT = rule(
    "trainingjob.memory-fit",
    "warning",
    "semantic",
    "resources.memoryPerDevice cannot hold the planned model states for the chosen ZeRO stage and offload.",
)


@check("TrainingJob")
def _job_batch(j: TrainingJob, _: Index) -> Iterator[Issue]:
    b, r = j.spec.batch, j.spec.resources
    world = r.nodes * r.processes_per_node
    product = b.micro_batch_size * b.gradient_accumulation_steps * world
    if b.global_batch_size is not None and b.global_batch_size != product:
        yield Issue(
            TRAININGJOB_BATCH,
            ("spec", "batch", "globalBatchSize"),
            f"globalBatchSize {b.global_batch_size} ≠ microBatchSize {b.micro_batch_size} × "
            f"gradientAccumulationSteps {b.gradient_accumulation_steps} × world size {world} = {product}",
            "change one of them, or drop globalBatchSize and let it follow",
        )


@check("TrainingJob")
def _job_precision(j: TrainingJob, _: Index) -> Iterator[Issue]:
    if j.spec.precision.fp16.enabled and j.spec.precision.bf16.enabled:
        yield Issue(
            TRAININGJOB_PRECISION,
            ("spec", "precision"),
            "fp16 and bf16 are both enabled",
            "enable at most one of them",
        )


@check("TrainingJob")
def _job_zero(j: TrainingJob, _: Index) -> Iterator[Issue]:
    z = j.spec.zero
    base: Path = ("spec", "zero")
    if z.stage < 3:
        stage3 = {
            "offloadParam": z.offload_param.device != "none",
            "zeroQuantizedWeights": z.zero_quantized_weights,
            "zeroQuantizedGradients": z.zero_quantized_gradients,
            "zeroHpzPartitionSize": z.zero_hpz_partition_size != 1,
            # The stage-3 tuning knobs, when changed from their defaults.
            **{f.alias or name: getattr(z, name) != f.default
               for name, f in type(z).model_fields.items() if name.startswith("stage3_")},
        }
        for key, is_set in stage3.items():
            if is_set:
                yield Issue(
                    TRAININGJOB_ZERO3_ONLY,
                    (*base, key),
                    f"{key} only has an effect at ZeRO stage 3 (stage is {z.stage}); DeepSpeed ignores it",
                    "set zero.stage: 3, or remove it",
                )
    if z.stage == 0 and z.offload_optimizer.device != "none":
        yield Issue(
            TRAININGJOB_OFFLOAD_STAGE,
            (*base, "offloadOptimizer", "device"),
            "optimizer offload needs ZeRO stage 1 or higher",
            "set zero.stage: 2 (or 1 or 3)",
        )
    for key, off in (("offloadOptimizer", z.offload_optimizer), ("offloadParam", z.offload_param)):
        if off.device == "nvme" and not off.nvme_path:
            yield Issue(
                TRAININGJOB_NVME_PATH,
                (*base, key),
                f"{key}.device is nvme but nvmePath is not set",
                "add nvmePath: a directory on a fast local disk",
            )


_LOSS_FOR_TASK = {"classification": "crossEntropy", "regression": "mse", "causal-lm": "causalLm"}


_PREFERENCE_LOSSES = ("dpo", "simpo")
"""Losses of a causal LM on preference pairs (their rules: :func:`_job_preference`)."""


_METRICS_FOR_TASK = {
    "classification": {"loss", "accuracy"},
    "regression": {"loss", "mse", "mae"},
    "causal-lm": {"loss", "accuracy", "perplexity"},
}


_PREFERENCE_METRICS = {"loss", "rewardAccuracy", "rewardMargin"}


@check("TrainingJob")
def _job_task(j: TrainingJob, index: Index) -> Iterator[Issue]:
    model = model_of(j, index)
    if model is None:
        return
    task = model.spec.task
    want = _LOSS_FOR_TASK[task]
    preference = task == "causal-lm" and j.spec.loss.type in _PREFERENCE_LOSSES
    if j.spec.loss.type != want and not preference:
        yield Issue(
            TRAININGJOB_LOSS_TASK,
            ("spec", "loss", "type"),
            f"loss {j.spec.loss.type!r} does not fit Model {model.metadata.name!r} with task {task!r}",
            f"use loss type {want!r}",
        )
    allowed = _PREFERENCE_METRICS if preference else _METRICS_FOR_TASK[task]
    for section in ("validation", "evaluation"):
        for i, metric in enumerate(getattr(j.spec, section).metrics):
            if metric not in allowed:
                yield Issue(
                    TRAININGJOB_METRIC_TASK,
                    ("spec", section, "metrics", i),
                    f"metric {metric!r} does not apply to "
                    + (f"loss {j.spec.loss.type!r}" if preference else f"task {task!r}"),
                    "allowed: " + ", ".join(sorted(allowed)),
                )


@check("TrainingJob")
def _job_data_fits_model(j: TrainingJob, index: Index) -> Iterator[Issue]:
    model, data = model_of(j, index), dataset_of(j, index)
    if model is None or data is None:
        return
    steps = data.spec.preprocessing
    chat = data.spec.chat
    if chat is not None and model.spec.task == "causal-lm":
        if chat.tokenizer is None and not isinstance(model.spec.architecture, Pretrained):
            yield Issue(
                TRAININGJOB_LM_TOKENIZER,
                ("spec", "dataset"),
                f"Dataset {data.metadata.name!r} names no chat.tokenizer, and Model {model.metadata.name!r} "
                "has no pretrained base whose tokenizer it could use",
                "set chat.tokenizer to a tokenizer directory, or train a Model with a pretrained base",
            )
        context = context_of(model)
        if context is not None and chat.sequence_length > context:
            yield Issue(
                TRAININGJOB_CONTEXT,
                ("spec", "dataset"),
                f"Dataset {data.metadata.name!r} makes sequences of {chat.sequence_length} tokens but "
                f"Model {model.metadata.name!r} has a context of {context}",
                "lower chat.sequenceLength or use a model with a longer context",
            )
    elif model.spec.task == "causal-lm":
        if not any(isinstance(s, Tokenize) for s in steps):
            yield Issue(
                TRAININGJOB_LM_TOKENIZER,
                ("spec", "dataset"),
                f"Model {model.metadata.name!r} is a causal language model but Dataset "
                f"{data.metadata.name!r} has no tokenize step",
                "add a tokenize step (tokenizer type byte needs no file) and a pack step",
            )
        arch = model.spec.architecture
        for s in steps:
            if isinstance(s, Pack) and isinstance(arch, Transformer) and s.sequence_length > arch.context_length:
                yield Issue(
                    TRAININGJOB_CONTEXT,
                    ("spec", "dataset"),
                    f"Dataset {data.metadata.name!r} packs {s.sequence_length} tokens but Model "
                    f"{model.metadata.name!r} has contextLength {arch.context_length}",
                    "lower pack.sequenceLength or raise contextLength",
                )
    if model.spec.task == "classification" and data.spec.target and data.spec.target.classes:
        n = len(data.spec.target.classes)
        declared = model.spec.num_classes or output_width(model)
        if declared is not None and declared != n:
            yield Issue(
                TRAININGJOB_CLASSES,
                ("spec", "dataset"),
                f"Dataset {data.metadata.name!r} declares {n} classes but Model "
                f"{model.metadata.name!r} has {declared} outputs",
                "make numClasses and the output width equal the number of classes",
            )


@check("TrainingJob")
def _job_adapter(j: TrainingJob, index: Index) -> Iterator[Issue]:
    adapter = j.spec.adapter
    if adapter is None:
        return
    if adapter.type == "qlora" and j.spec.resources.accelerator != "cuda":
        yield Issue(
            TRAININGJOB_QLORA_ACCELERATOR,
            ("spec", "adapter", "type"),
            f"QLoRA quantizes the base to 4 bits with bitsandbytes, which needs accelerator cuda, "
            f"not {j.spec.resources.accelerator}",
            "use adapter type lora on cpu, or resources.accelerator: cuda",
        )
    model = model_of(j, index)
    if model is not None and not isinstance(model.spec.architecture, Pretrained):
        yield Issue(
            TRAININGJOB_ADAPTER_BASE,
            ("spec", "adapter"),
            f"adapters train on a frozen pretrained base, but Model {model.metadata.name!r} has "
            f"architecture {model.spec.architecture.type!r}",
            "give the Model architecture type pretrained, or remove adapter to train every weight",
        )


@check("TrainingJob")
def _job_base_context(j: TrainingJob, index: Index) -> Iterator[Issue]:
    from ...domain.pretrained import context_length, read_config

    model, data = model_of(j, index), dataset_of(j, index)
    if model is None or data is None:
        return
    directory = index.pretrained_dir(model)
    if directory is None:
        return
    try:
        context = context_length(read_config(directory))
    except (OSError, ValueError):
        return
    if context is None:
        return
    chat = data.spec.chat
    if chat is not None and chat.sequence_length > context:
        yield Issue(
            TRAININGJOB_CONTEXT,
            ("spec", "dataset"),
            f"Dataset {data.metadata.name!r} makes sequences of {chat.sequence_length} tokens but the "
            f"pretrained base of Model {model.metadata.name!r} has a context of {context}",
            f"lower chat.sequenceLength to at most {context}",
        )
    for s in data.spec.preprocessing:
        if isinstance(s, Pack) and s.sequence_length > context:
            yield Issue(
                TRAININGJOB_CONTEXT,
                ("spec", "dataset"),
                f"Dataset {data.metadata.name!r} packs {s.sequence_length} tokens but the pretrained "
                f"base of Model {model.metadata.name!r} has a context of {context} "
                f"(max_position_embeddings in {directory / 'config.json'})",
                f"lower pack.sequenceLength to at most {context}",
            )


@check("TrainingJob")
def _job_dataset_task(j: TrainingJob, index: Index) -> Iterator[Issue]:
    """What data preparation needs of a Dataset for the Model's task (see ``lmspec.data.prepare``)."""
    model, data = model_of(j, index), dataset_of(j, index)
    if model is None or data is None:
        return
    task, name = model.spec.task, data.metadata.name
    steps = data.spec.preprocessing
    where: Path = ("spec", "dataset")
    if task == "causal-lm":
        tokenize = next((s for s in steps if isinstance(s, Tokenize)), None)
        if tokenize is not None and not any(isinstance(s, Pack) for s in steps):
            yield Issue(TRAININGJOB_LM_PACK, where,
                   f"Dataset {name!r} tokenizes but never packs: a causal language model trains on "
                   "packed sequences", "add {type: pack, sequenceLength: N} after the tokenize step")
        if data.spec.splits.stratify is not None:
            yield Issue(TRAININGJOB_DATASET_TASK, where,
                   f"Dataset {name!r} stratifies its split, which does not apply to language-model data",
                   "remove splits.stratify")
        for i, s in enumerate(steps):
            if isinstance(s, Standardize | MinMax | LabelEncode | GaussianNoise):
                yield Issue(TRAININGJOB_DATASET_TASK, where,
                       f"step {i} of Dataset {name!r} ({s.type}) does not apply to language-model data",
                       f"remove the {s.type} step, or train a classification or regression Model")
            elif isinstance(s, DropNulls | Dedupe | Filter) and tokenize is not None:
                cols = s.columns if isinstance(s, DropNulls | Dedupe) else [s.column]
                for c in cols or []:
                    if c != tokenize.column:
                        yield Issue(TRAININGJOB_DATASET_TASK, where,
                               f"step {i} of Dataset {name!r} ({s.type}) reads column {c!r}; a language "
                               f"model's data has only the tokenized column {tokenize.column!r}",
                               f"name {tokenize.column!r}, or remove the step")
        return
    for i, s in enumerate(steps):
        if isinstance(s, Tokenize | Pack):
            yield Issue(TRAININGJOB_DATASET_TASK, where,
                   f"step {i} of Dataset {name!r} ({s.type}) is for causal-lm Models, not {task}",
                   f"remove the {s.type} step")
    yield from _tabular_columns(data, task, where)


def _tabular_columns(data: Dataset, task: str, where: Path) -> Iterator[Issue]:
    name, spec = data.metadata.name, data.spec
    rule = TRAININGJOB_DATASET_COLUMNS
    if any(source_format(s.path, s.format) == "text" for s in spec.sources):
        yield Issue(rule, where, f"Dataset {name!r} reads plain text, which has no columns but 'text'; a "
               f"{task} Model reads features and a target", "use csv, jsonl or parquet sources")
    if not spec.features:
        yield Issue(rule, where, f"Dataset {name!r} has no features; a {task} Model needs at least one",
               "declare the input columns under features")
    target = spec.target
    if target is None:
        yield Issue(rule, where, f"Dataset {name!r} has no target; a {task} Model learns to predict one",
               "declare target: {name: <column>}")
        return
    if task == "regression" and target.dtype in ("string", "bool"):
        yield Issue(rule, where, f"the target of Dataset {name!r} is {target.dtype}; regression needs a numeric "
               "target", "declare a numeric dtype, or train a classification Model")
    encoded = {s.column for s in spec.preprocessing if isinstance(s, LabelEncode)}
    features = {f.name for f in spec.features}
    for f in spec.features:
        if f.dtype == "string" and f.name not in encoded:
            yield Issue(rule, where, f"feature {f.name!r} of Dataset {name!r} is a string column; the model "
                   "needs numbers", f"add a labelEncode step for {f.name!r}, or declare a numeric dtype")
    for i, s in enumerate(spec.preprocessing):
        named = target.name in (s.columns or []) if isinstance(s, Standardize | MinMax | GaussianNoise) else False
        if not named or target.name in features:
            continue
        if isinstance(s, GaussianNoise):
            yield Issue(rule, where, f"step {i} of Dataset {name!r} adds noise to the target {target.name!r}; "
                   "noise applies to features only", "remove the target from the step's columns")
        elif task != "regression":
            yield Issue(rule, where, f"step {i} of Dataset {name!r} ({s.type}) scales the target "
                   f"{target.name!r}; only a regression target can be scaled",
                   "remove the target from the step's columns")


@check("TrainingJob")
def _job_memory_fit(j: TrainingJob, index: Index) -> Iterator[Issue]:
    limit_text = j.spec.resources.memory_per_device
    model = model_of(j, index)
    if limit_text is None or model is None:
        return
    from ...domain.plan import count_parameters, format_bytes, lora_parameters, model_states, parse_bytes

    data = dataset_of(j, index)
    count = count_parameters(model.spec, n_features=len(data.spec.features) if data else None,
                             pretrained_dir=index.pretrained_dir(model))
    if count.params is None or count.largest_layer is None:
        return
    directory = index.pretrained_dir(model)
    trainable = lora_parameters(j.spec, directory) if directory is not None else None
    states = model_states(j.spec, count.params, count.largest_layer, trainable=trainable)
    limit = parse_bytes(limit_text)
    if states.device_bytes > limit:
        yield Issue(
            TRAININGJOB_MEMORY_FIT,
            ("spec", "resources", "memoryPerDevice"),
            f"Model {model.metadata.name!r} ({count.params:,} parameters) needs "
            f"{format_bytes(states.device_bytes)} per device for model states alone at ZeRO "
            f"stage {states.stage} (offload: {states.offload}), more than memoryPerDevice {limit_text}",
            "raise zero.stage, offload the optimizer (zero.offloadOptimizer.device: cpu), add "
            "processes, or train in bf16; `lmspec plan` prints every option",
        )


@check("TrainingJob")
def _job_cluster(j: TrainingJob, _: Index) -> Iterator[Issue]:
    yield from tolerations(j.spec.cluster)
    yield from labels(j.spec.cluster)


@check("TrainingJob")
def _job_preference(j: TrainingJob, index: Index) -> Iterator[Issue]:
    loss = j.spec.loss
    preference = loss.type in _PREFERENCE_LOSSES
    if not preference:
        for name in ("beta", "gamma"):
            if getattr(loss, name) is not None:
                yield Issue(TRAININGJOB_PREFERENCE_SETTINGS, ("spec", "loss", name),
                       f"{name} applies to the preference losses (dpo, simpo), not to {loss.type!r}",
                       f"remove {name}")
    elif loss.type == "dpo":
        if loss.gamma is not None:
            yield Issue(TRAININGJOB_PREFERENCE_SETTINGS, ("spec", "loss", "gamma"),
                   "gamma is SimPO's target margin; DPO has none", "remove gamma, or use loss simpo")
        if loss.label_smoothing >= 0.5:
            yield Issue(TRAININGJOB_PREFERENCE_SETTINGS, ("spec", "loss", "labelSmoothing"),
                   f"DPO's label smoothing is the share of pairs assumed mislabelled; "
                   f"{loss.label_smoothing} would reverse the preferences", "use a value below 0.5, such as 0.1")
    data = dataset_of(j, index)
    if data is not None:
        pairs = data.spec.chat is not None and data.spec.chat.format == "preference"
        if preference and not pairs:
            yield Issue(TRAININGJOB_PREFERENCE_DATA, ("spec", "dataset"),
                   f"loss {loss.type!r} learns from preference pairs, and Dataset {data.metadata.name!r} "
                   "does not hold them", "train on a Dataset with chat.format: preference")
        elif pairs and not preference:
            yield Issue(TRAININGJOB_PREFERENCE_DATA, ("spec", "loss", "type"),
                   f"Dataset {data.metadata.name!r} holds preference pairs, which loss {loss.type!r} "
                   "cannot learn from", "use loss dpo or simpo")
    model = model_of(j, index)
    if loss.type == "dpo" and model is not None and model.spec.task == "causal-lm":
        trained = isinstance(model.spec.architecture, Pretrained) or model.spec.initial_weights is not None
        if not trained:
            yield Issue(TRAININGJOB_PREFERENCE_REFERENCE, ("spec", "model"),
                   f"DPO measures the model against where it started, and Model {model.metadata.name!r} "
                   "starts from random weights", "start from a pretrained base (architecture type "
                   "pretrained) or initialWeights, or use loss simpo, which needs no reference")
