"""Layers 3 and 4: semantic rules within and across manifests, and references between them.

Each check looks at typed, schema-valid manifests and yields ``(rule, path, message, hint)``;
the path (a tuple of keys as written in the manifest) is turned into a position by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from ..model.signature import declared_output_width
from ..standard import run_dir
from . import registry as rules

# The models' light twins (see .light): isinstance holds for either.
from .light import (
    Cluster,
    Dataset,
    Dedupe,
    DropNulls,
    Filter,
    GaussianNoise,
    HuggingFace,
    InferenceService,
    LabelEncode,
    LinearLayer,
    MinMax,
    Model,
    Pack,
    Pretrained,
    Sequential,
    Standardize,
    Tokenize,
    TrainingJob,
    Transformer,
)

Path = tuple[str | int, ...]
Issue = tuple[str, Path, str, str]


@dataclass
class Index:
    """The valid manifests of one validation run, by kind and name."""

    by_kind: dict[str, dict[str, Any]]
    base_dirs: Mapping[tuple[str, str], Callable[[], FsPath]] = field(default_factory=dict)
    """How to find the directory each manifest's relative paths are resolved against, by
    (kind, name): found only when a rule asks, since it costs a system call per path part."""

    def get(self, kind: str, name: str) -> Any | None:
        return self.by_kind.get(kind, {}).get(name)

    def base_dir(self, kind: str, name: str) -> FsPath:
        find = self.base_dirs.get((kind, name))
        return find() if find is not None else FsPath.cwd()

    def pretrained_dir(self, model: Model) -> FsPath | None:
        """The directory of a Model's pretrained base when it has a ``config.json``, found without
        reading it (whether the weights are there is ``--check-env``'s business)."""
        from ..model.pretrained import CONFIG, BaseError, locate

        arch = model.spec.architecture
        if not isinstance(arch, Pretrained):
            return None
        try:
            found = locate(arch, self.base_dir("Model", model.metadata.name), export_dir_of=self.export_dir)
        except BaseError:
            return None
        if found.directory is None or not (found.directory / CONFIG).is_file():
            return None
        return found.directory

    def export_dir(self, job_name: str) -> FsPath | None:
        """Where ``lmspec run`` exports a TrainingJob among the inputs: under its run directory,
        which is relative to the job's own manifest (not to a Model that names it as its base,
        which may sit in another directory)."""
        job = self.get("TrainingJob", job_name)
        if not isinstance(job, TrainingJob):
            return None
        return run_dir(job, self.base_dir("TrainingJob", job_name)) / "export"


Check = Callable[[Any, Index], Iterator[Issue]]
CHECKS: dict[str, list[Check]] = {"Model": [], "Dataset": [], "TrainingJob": [], "InferenceService": []}


def check(kind: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[kind].append(fn)
        return fn

    return register


def run_checks(manifest: Any, index: Index) -> Iterator[Issue]:
    for fn in CHECKS[manifest.kind]:
        yield from fn(manifest, index)


# --- Model -------------------------------------------------------------------------------------


def _output_width(m: Model) -> int | None:
    return declared_output_width(m.spec)


@check("Model")
def _model_task_architecture(m: Model, _: Index) -> Iterator[Issue]:
    arch = m.spec.architecture
    lm_arch = isinstance(arch, (Transformer, HuggingFace, Pretrained))
    if isinstance(arch, (Transformer, Pretrained)) and m.spec.task != "causal-lm":
        yield (
            rules.MODEL_TASK_ARCHITECTURE,
            ("spec", "task"),
            f"architecture {arch.type!r} is a causal language model, but task is {m.spec.task!r}",
            "set task: causal-lm, or use an mlp or sequential architecture",
        )
    if m.spec.task == "causal-lm" and not lm_arch:
        yield (
            rules.MODEL_TASK_ARCHITECTURE,
            ("spec", "architecture", "type"),
            f"task 'causal-lm' needs a transformer or huggingface architecture, not {arch.type!r}",
            "use architecture type transformer",
        )


@check("Model")
def _model_pretrained(m: Model, _: Index) -> Iterator[Issue]:
    arch = m.spec.architecture
    if not isinstance(arch, Pretrained):
        return
    given = [k for k, v in (("path", arch.path), ("uri", arch.uri), ("trainingJob", arch.training_job)) if v]
    if len(given) != 1:
        yield (
            rules.MODEL_PRETRAINED_SOURCE,
            ("spec", "architecture", given[1]) if len(given) > 1 else ("spec", "architecture"),
            "a pretrained architecture needs exactly one of path, uri and trainingJob"
            + (f", not {' and '.join(given)}" if given else ""),
            "path: a local Hugging Face model directory; uri: hf://org/name@revision; "
            "trainingJob: the export of another job",
        )
    if arch.uri is not None and "@" not in arch.uri:
        yield (
            rules.MODEL_HF_REVISION,
            ("spec", "architecture", "uri"),
            f"{arch.uri} has no revision: it means whatever the repository's main branch holds "
            "when the run starts",
            f"pin it: {arch.uri}@<commit hash> (the run's lock.json records the commit it used)",
        )


@check("Model")
def _model_output_size(m: Model, _: Index) -> Iterator[Issue]:
    width = _output_width(m)
    if (
        m.spec.task == "classification"
        and m.spec.num_classes is not None
        and width is not None
        and width != m.spec.num_classes
    ):
        yield (
            rules.MODEL_OUTPUT_SIZE,
            ("spec", "signature", "outputs", 0, "shape"),
            f"output width {width} differs from numClasses {m.spec.num_classes}",
            f"make the last dimension {m.spec.num_classes}",
        )
    arch = m.spec.architecture
    if isinstance(arch, Sequential) and width is not None:
        linear = [(i, la) for i, la in enumerate(arch.layers) if isinstance(la, LinearLayer)]
        if linear and linear[-1][1].out_features != width:
            i, last = linear[-1]
            yield (
                rules.MODEL_OUTPUT_SIZE,
                ("spec", "architecture", "layers", i, "outFeatures"),
                f"the last linear layer has {last.out_features} outputs but the signature's output width is {width}",
                f"set outFeatures: {width}",
            )


@check("Model")
def _model_heads(m: Model, _: Index) -> Iterator[Issue]:
    arch = m.spec.architecture
    if isinstance(arch, Transformer) and arch.width % arch.heads:
        yield (
            rules.MODEL_HEADS,
            ("spec", "architecture", "heads"),
            f"width {arch.width} is not divisible by heads {arch.heads}",
            "choose heads dividing width (e.g. width 128 with 4 heads)",
        )


# Sizes and counts that transformers' configs divide by or allocate with, under each name the
# libraries use (GPT-2 aliases some: n_head is num_attention_heads). None means "the library's
# default" where a config class allows it.
_HF_WIDTHS = ("hidden_size", "n_embd", "d_model")
_HF_HEADS = ("num_attention_heads", "n_head", "num_heads")
_HF_KV_HEADS = ("num_key_value_heads",)
_HF_SIZES = ("num_hidden_layers", "n_layer", "num_layers", "vocab_size", "intermediate_size", "n_inner",
             "max_position_embeddings", "n_positions", "n_ctx", "head_dim")
_HF_NULLABLE = frozenset({"n_inner", "head_dim", "num_key_value_heads"})
_HF_ROTARY = frozenset({"llama", "mistral", "mixtral", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "olmo", "olmo2",
                        "granite"})
"""Model types whose attention heads rotate in pairs (RoPE): transformers needs an even head width."""


def _hf_size(config: dict[str, Any], keys: tuple[str, ...]) -> tuple[str, int] | None:
    """The first of ``keys`` the config gives as a positive integer, with its key."""
    for key in keys:
        value = config.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return key, value
    return None


@check("Model")
def _model_hf_config(m: Model, _: Index) -> Iterator[Issue]:
    arch = m.spec.architecture
    if not isinstance(arch, HuggingFace):
        return
    config: dict[str, Any] = arch.config
    at: Path = ("spec", "architecture", "config")
    for key in (*_HF_WIDTHS, *_HF_HEADS, *_HF_KV_HEADS, *_HF_SIZES):
        if key not in config or (config[key] is None and key in _HF_NULLABLE):
            continue
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            yield (rules.MODEL_HF_CONFIG, (*at, key),
                   f"config.{key} is {value!r}; transformers needs a positive integer here",
                   f"set {key} to a positive integer, or leave it out for the library's default")
    width, heads, kv = _hf_size(config, _HF_WIDTHS), _hf_size(config, _HF_HEADS), _hf_size(config, _HF_KV_HEADS)
    if width is not None and heads is not None and width[1] % heads[1]:
        yield (rules.MODEL_HF_CONFIG, (*at, heads[0]),
               f"config.{width[0]} {width[1]} is not divisible by config.{heads[0]} {heads[1]}",
               f"choose {heads[0]} dividing {width[0]}")
    elif arch.model_type in _HF_ROTARY:
        given = _hf_size(config, ("head_dim",))
        if given is not None:
            key, head = given
        elif width is not None and heads is not None:
            key, head = heads[0], width[1] // heads[1]
        else:
            key, head = "head_dim", 0  # the library's defaults: even
        if head % 2:
            yield (rules.MODEL_HF_CONFIG, (*at, key),
                   f"each attention head is {head} wide; rotary position embeddings need an even width",
                   "choose sizes that give heads of even width (e.g. hidden_size 32 with 4 heads)")
    if heads is not None and kv is not None and heads[1] % kv[1]:
        yield (rules.MODEL_HF_CONFIG, (*at, kv[0]),
               f"config.{heads[0]} {heads[1]} is not divisible by config.{kv[0]} {kv[1]}: each key-value "
               "head serves the same number of query heads",
               f"choose {kv[0]} dividing {heads[0]}")


@check("Model")
def _model_lm_signature(m: Model, _: Index) -> Iterator[Issue]:
    if m.spec.task != "causal-lm":
        return
    sig = m.spec.signature
    if sig.inputs[0].dtype not in ("int32", "int64"):
        yield (
            rules.MODEL_LM_SIGNATURE,
            ("spec", "signature", "inputs", 0, "dtype"),
            f"a causal language model takes token ids, not {sig.inputs[0].dtype}",
            "use dtype int64",
        )
    arch = m.spec.architecture
    width = _output_width(m)
    if isinstance(arch, Transformer) and width is not None and width != arch.vocab_size:
        yield (
            rules.MODEL_LM_SIGNATURE,
            ("spec", "signature", "outputs", 0, "shape"),
            f"output width {width} differs from vocabSize {arch.vocab_size}",
            "logits have one entry per token id: use -1 or the vocabulary size",
        )


_DERIVED = {"probabilities": "float32", "label": "string"}


@check("Model")
def _model_derived_outputs(m: Model, _: Index) -> Iterator[Issue]:
    # The network has one output; a server derives the others from a classifier's scores.
    outputs = m.spec.signature.outputs
    width = _output_width(m)
    for i, out in enumerate(outputs[1:], 1):
        at = ("spec", "signature", "outputs", i)
        if m.spec.task != "classification":
            yield (rules.MODEL_DERIVED_OUTPUTS, (*at, "name"),
                   f"output {out.name!r}: a {m.spec.task} model has one output",
                   "remove it; only a classifier declares more (label, probabilities)")
            continue
        if out.name not in _DERIVED:
            yield (rules.MODEL_DERIVED_OUTPUTS, (*at, "name"),
                   f"output {out.name!r}: after its first output a classifier declares only label "
                   "and probabilities, which the server derives from the scores",
                   "name it label or probabilities, or remove it")
            continue
        if out.dtype != _DERIVED[out.name]:
            yield (rules.MODEL_DERIVED_OUTPUTS, (*at, "dtype"),
                   f"{out.name} has dtype {_DERIVED[out.name]}, not {out.dtype}", f"dtype: {_DERIVED[out.name]}")
        want = [-1] if out.name == "label" else [-1, width if width is not None else -1]
        if list(out.shape) != want and not (out.name == "probabilities" and list(out.shape) == [-1, -1]):
            yield (rules.MODEL_DERIVED_OUTPUTS, (*at, "shape"),
                   f"{out.name} has shape {want}, not {list(out.shape)}", f"shape: {want}")


@check("Model")
def _model_num_classes(m: Model, _: Index) -> Iterator[Issue]:
    if m.spec.task == "classification" and m.spec.num_classes is None and _output_width(m) is None:
        yield (
            rules.MODEL_NUM_CLASSES,
            ("spec", "signature", "outputs", 0, "shape"),
            "a classifier needs numClasses or a fixed output width: the number of outputs is unknown",
            "add numClasses, or give the output's last dimension (e.g. shape: [-1, 3])",
        )


# --- Dataset -----------------------------------------------------------------------------------


@check("Dataset")
def _dataset_splits(d: Dataset, _: Index) -> Iterator[Issue]:
    splits = d.spec.splits
    if splits.by == "ratio":
        total = sum(splits.ratios.values())
        if abs(total - 1.0) > 1e-6:
            yield (
                rules.DATASET_SPLIT_RATIOS,
                ("spec", "splits", "ratios"),
                f"split ratios sum to {total:g}, not 1",
                "adjust the ratios so they add up to 1",
            )
    elif not any(s.split in ("train", None) for s in d.spec.sources):  # no split: training data
        yield (
            rules.DATASET_SPLIT_FILES,
            ("spec", "sources"),
            "splits are by file but no source has split: train",
            "add split: train to a source (a source without split is training data too)",
        )


@check("Dataset")
def _dataset_columns(d: Dataset, _: Index) -> Iterator[Issue]:
    if d.spec.chat is not None:
        return  # chat data has no declared columns; _dataset_chat reports what does not apply
    known = {c.name for c in d.spec.features}
    if d.spec.target is not None:
        known.add(d.spec.target.name)
    text_only = all(s.format == "text" or s.path.endswith(".txt") for s in d.spec.sources)
    if text_only:
        known.add("text")
    hint = "declare it under features or target" + (f" (known: {', '.join(sorted(known))})" if known else "")
    if d.spec.splits.stratify is not None and d.spec.splits.stratify not in known:
        yield (
            rules.DATASET_UNKNOWN_COLUMN,
            ("spec", "splits", "stratify"),
            f"stratify column {d.spec.splits.stratify!r} is not declared",
            hint,
        )
    for i, step in enumerate(d.spec.preprocessing):
        names: list[tuple[Path, str]] = []
        cols = getattr(step, "columns", None)
        if cols:
            names += [(("spec", "preprocessing", i, "columns", j), c) for j, c in enumerate(cols)]
        col = getattr(step, "column", None)
        if col is not None:
            names.append((("spec", "preprocessing", i, "column"), col))
        for path, name in names:
            if name not in known:
                yield (rules.DATASET_UNKNOWN_COLUMN, path, f"column {name!r} is not declared", hint)


@check("Dataset")
def _dataset_step_order(d: Dataset, _: Index) -> Iterator[Issue]:
    tokenized = False
    for i, step in enumerate(d.spec.preprocessing):
        if isinstance(step, Tokenize):
            tokenized = True
        elif isinstance(step, Pack) and not tokenized:
            yield (
                rules.DATASET_STEP_ORDER,
                ("spec", "preprocessing", i),
                "pack comes before any tokenize step",
                "add a tokenize step before pack",
            )


# Which ``chat.fields`` each chat format reads.
_CHAT_FIELDS = {
    "messages": {"messages", "role", "content"},
    "promptCompletion": {"prompt", "completion", "system", "role", "content"},
    "alpaca": {"instruction", "input", "output", "system"},
    "text": {"text"},
    "preference": {"prompt", "chosen", "rejected", "system", "role", "content"},
}


@check("Dataset")
def _dataset_chat(d: Dataset, _: Index) -> Iterator[Issue]:
    chat = d.spec.chat
    if chat is None:
        return
    # Imported here: the data package loads numpy, which validating other manifests never needs.
    from ..data.chat_template import has_generation_markers, needs_generation_markers

    for name in ("features", "target", "preprocessing"):
        if getattr(d.spec, name):
            yield (rules.DATASET_CHAT_CONFLICT, ("spec", name), f"chat data takes no {name}",
                   "remove it: the chat block declares the record fields and the tokenizer")
    if d.spec.splits.stratify is not None:
        yield (rules.DATASET_CHAT_CONFLICT, ("spec", "splits", "stratify"),
               "stratify does not apply to chat data", "remove it")
    if chat.template is not None and chat.template_path is not None:
        yield (rules.DATASET_CHAT_TEMPLATE, ("spec", "chat", "templatePath"),
               "the chat template is declared twice, inline and as a file", "keep one of template and templatePath")
    elif chat.template is not None and needs_generation_markers(chat) and not has_generation_markers(chat.template):
        yield (rules.DATASET_CHAT_TEMPLATE, ("spec", "chat", "template"),
               "the chat template has no {% generation %} markers, so the assistant's tokens cannot be "
               "found for the assistant-only loss",
               "enclose each assistant message and its end-of-turn token in "
               "{% generation %}…{% endgeneration %}, or set loss.trainOnPrompt: true")
    reads = _CHAT_FIELDS[chat.format]
    for name in sorted(chat.fields.model_fields_set - reads):
        field = chat.fields.model_fields[name]
        if getattr(chat.fields, name) == field.default:
            continue  # named as by default, so nothing is renamed (`lmspec render` writes them all)
        alias = field.alias or name
        yield (rules.DATASET_CHAT_FIELDS, ("spec", "chat", "fields", alias),
               f"format {chat.format!r} does not read the field {alias!r}",
               f"format {chat.format!r} reads: {', '.join(sorted(reads))}")


FORMATS_BY_SUFFIX = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".txt": "text"}
"""Source formats by file extension (what the data readers infer when ``format`` is omitted)."""


def source_format(path: str, declared: str | None) -> str | None:
    """The format a source is read as: the declared one, else the one its extension tells."""
    if declared is not None:
        return declared
    dot = path.rfind(".")
    return FORMATS_BY_SUFFIX.get(path[dot:].lower()) if dot > path.rfind("/") else None


@check("Dataset")
def _dataset_sources(d: Dataset, _: Index) -> Iterator[Issue]:
    by_ratio = d.spec.splits.by == "ratio"
    for i, src in enumerate(d.spec.sources):
        if by_ratio and src.split is not None:
            yield (
                rules.DATASET_SPLIT_UNUSED,
                ("spec", "sources", i, "split"),
                f"this source names split {src.split!r}, but splits are by ratio",
                "remove split, or set splits.by: file",
            )
        if source_format(src.path, src.format) is None:
            yield (
                rules.DATASET_SOURCE_FORMAT,
                ("spec", "sources", i, "path"),
                f"cannot tell the format of {src.path!r} from its extension",
                "set format to one of csv, jsonl, parquet, text",
            )
    text = any(source_format(s.path, s.format) == "text" for s in d.spec.sources)
    for i, step in enumerate(d.spec.preprocessing):
        if text and isinstance(step, Tokenize) and step.column != "text":
            yield (
                rules.DATASET_TEXT_COLUMN,
                ("spec", "preprocessing", i, "column"),
                f"plain-text sources have one column, 'text'; this step reads {step.column!r}",
                "remove column (it defaults to text)",
            )


def column_dtypes(d: Dataset) -> dict[str, str]:
    """Declared columns and their dtypes (a feature wins over a target of the same name)."""
    dtypes = {c.name: str(c.dtype) for c in reversed(d.spec.features)}
    if d.spec.target is not None:
        dtypes.setdefault(d.spec.target.name, str(d.spec.target.dtype))
    return dtypes


@check("Dataset")
def _dataset_filter_values(d: Dataset, _: Index) -> Iterator[Issue]:
    dtypes = column_dtypes(d)
    for i, step in enumerate(d.spec.preprocessing):
        if not isinstance(step, Filter):
            continue
        path: Path = ("spec", "preprocessing", i, "value")
        many = step.op in ("in", "notIn")
        if many and not isinstance(step.value, list):
            yield (rules.DATASET_FILTER_VALUE, path, f"{step.op} needs a list of values", "write value: [a, b]")
            continue
        if not many and isinstance(step.value, (list, dict)):
            yield (rules.DATASET_FILTER_VALUE, path, f"{step.op} needs a single value, not a list",
                   "use op in or notIn to compare with several values")
            continue
        values = step.value if many else [step.value]
        numeric = dtypes.get(step.column, "string") != "string"
        if numeric and any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
            yield (rules.DATASET_FILTER_VALUE, path,
                   f"column {step.column!r} is {dtypes[step.column]}; the value must be a number",
                   "write the number without quotes (true and false compare as 1 and 0: write those)")
        elif not numeric and any(isinstance(v, (list, dict)) for v in values):
            yield (rules.DATASET_FILTER_VALUE, path, "values must be scalars", "")


# --- TrainingJob -------------------------------------------------------------------------------


@check("TrainingJob")
def _job_batch(j: TrainingJob, _: Index) -> Iterator[Issue]:
    b, r = j.spec.batch, j.spec.resources
    world = r.nodes * r.processes_per_node
    product = b.micro_batch_size * b.gradient_accumulation_steps * world
    if b.global_batch_size is not None and b.global_batch_size != product:
        yield (
            rules.TRAININGJOB_BATCH,
            ("spec", "batch", "globalBatchSize"),
            f"globalBatchSize {b.global_batch_size} ≠ microBatchSize {b.micro_batch_size} × "
            f"gradientAccumulationSteps {b.gradient_accumulation_steps} × world size {world} = {product}",
            "change one of them, or drop globalBatchSize and let it follow",
        )


@check("TrainingJob")
def _job_precision(j: TrainingJob, _: Index) -> Iterator[Issue]:
    if j.spec.precision.fp16.enabled and j.spec.precision.bf16.enabled:
        yield (
            rules.TRAININGJOB_PRECISION,
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
                yield (
                    rules.TRAININGJOB_ZERO3_ONLY,
                    (*base, key),
                    f"{key} only has an effect at ZeRO stage 3 (stage is {z.stage}); DeepSpeed ignores it",
                    "set zero.stage: 3, or remove it",
                )
    if z.stage == 0 and z.offload_optimizer.device != "none":
        yield (
            rules.TRAININGJOB_OFFLOAD_STAGE,
            (*base, "offloadOptimizer", "device"),
            "optimizer offload needs ZeRO stage 1 or higher",
            "set zero.stage: 2 (or 1 or 3)",
        )
    for key, off in (("offloadOptimizer", z.offload_optimizer), ("offloadParam", z.offload_param)):
        if off.device == "nvme" and not off.nvme_path:
            yield (
                rules.TRAININGJOB_NVME_PATH,
                (*base, key),
                f"{key}.device is nvme but nvmePath is not set",
                "add nvmePath: a directory on a fast local disk",
            )


def _model_of(j: TrainingJob, index: Index) -> Model | None:
    m = index.get("Model", j.spec.model)
    return m if isinstance(m, Model) else None


def _dataset_of(j: TrainingJob, index: Index) -> Dataset | None:
    d = index.get("Dataset", j.spec.dataset)
    return d if isinstance(d, Dataset) else None


_LOSS_FOR_TASK = {"classification": "crossEntropy", "regression": "mse", "causal-lm": "causalLm"}
_PREFERENCE_LOSSES = ("dpo", "simpo")
"""Losses of a causal LM on preference pairs (their rules: :mod:`.preference_rules`)."""
_METRICS_FOR_TASK = {
    "classification": {"loss", "accuracy"},
    "regression": {"loss", "mse", "mae"},
    "causal-lm": {"loss", "accuracy", "perplexity"},
}
_PREFERENCE_METRICS = {"loss", "rewardAccuracy", "rewardMargin"}


@check("TrainingJob")
def _job_task(j: TrainingJob, index: Index) -> Iterator[Issue]:
    model = _model_of(j, index)
    if model is None:
        return
    task = model.spec.task
    want = _LOSS_FOR_TASK[task]
    preference = task == "causal-lm" and j.spec.loss.type in _PREFERENCE_LOSSES
    if j.spec.loss.type != want and not preference:
        yield (
            rules.TRAININGJOB_LOSS_TASK,
            ("spec", "loss", "type"),
            f"loss {j.spec.loss.type!r} does not fit Model {model.metadata.name!r} with task {task!r}",
            f"use loss type {want!r}",
        )
    allowed = _PREFERENCE_METRICS if preference else _METRICS_FOR_TASK[task]
    for section in ("validation", "evaluation"):
        for i, metric in enumerate(getattr(j.spec, section).metrics):
            if metric not in allowed:
                yield (
                    rules.TRAININGJOB_METRIC_TASK,
                    ("spec", section, "metrics", i),
                    f"metric {metric!r} does not apply to "
                    + (f"loss {j.spec.loss.type!r}" if preference else f"task {task!r}"),
                    "allowed: " + ", ".join(sorted(allowed)),
                )


@check("TrainingJob")
def _job_data_fits_model(j: TrainingJob, index: Index) -> Iterator[Issue]:
    model, data = _model_of(j, index), _dataset_of(j, index)
    if model is None or data is None:
        return
    steps = data.spec.preprocessing
    chat = data.spec.chat
    if chat is not None and model.spec.task == "causal-lm":
        if chat.tokenizer is None and not isinstance(model.spec.architecture, Pretrained):
            yield (
                rules.TRAININGJOB_LM_TOKENIZER,
                ("spec", "dataset"),
                f"Dataset {data.metadata.name!r} names no chat.tokenizer, and Model {model.metadata.name!r} "
                "has no pretrained base whose tokenizer it could use",
                "set chat.tokenizer to a tokenizer directory, or train a Model with a pretrained base",
            )
        context = _context_length(model)
        if context is not None and chat.sequence_length > context:
            yield (
                rules.TRAININGJOB_CONTEXT,
                ("spec", "dataset"),
                f"Dataset {data.metadata.name!r} makes sequences of {chat.sequence_length} tokens but "
                f"Model {model.metadata.name!r} has a context of {context}",
                "lower chat.sequenceLength or use a model with a longer context",
            )
    elif model.spec.task == "causal-lm":
        if not any(isinstance(s, Tokenize) for s in steps):
            yield (
                rules.TRAININGJOB_LM_TOKENIZER,
                ("spec", "dataset"),
                f"Model {model.metadata.name!r} is a causal language model but Dataset "
                f"{data.metadata.name!r} has no tokenize step",
                "add a tokenize step (tokenizer type byte needs no file) and a pack step",
            )
        arch = model.spec.architecture
        for s in steps:
            if isinstance(s, Pack) and isinstance(arch, Transformer) and s.sequence_length > arch.context_length:
                yield (
                    rules.TRAININGJOB_CONTEXT,
                    ("spec", "dataset"),
                    f"Dataset {data.metadata.name!r} packs {s.sequence_length} tokens but Model "
                    f"{model.metadata.name!r} has contextLength {arch.context_length}",
                    "lower pack.sequenceLength or raise contextLength",
                )
    if model.spec.task == "classification" and data.spec.target and data.spec.target.classes:
        n = len(data.spec.target.classes)
        declared = model.spec.num_classes or _output_width(model)
        if declared is not None and declared != n:
            yield (
                rules.TRAININGJOB_CLASSES,
                ("spec", "dataset"),
                f"Dataset {data.metadata.name!r} declares {n} classes but Model "
                f"{model.metadata.name!r} has {declared} outputs",
                "make numClasses and the output width equal the number of classes",
            )


def _context_length(model: Model) -> int | None:
    arch = model.spec.architecture
    if isinstance(arch, Transformer):
        return arch.context_length
    if isinstance(arch, HuggingFace):
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = arch.config.get(key)
            if isinstance(value, int):
                return value
    return None


@check("TrainingJob")
def _job_adapter(j: TrainingJob, index: Index) -> Iterator[Issue]:
    adapter = j.spec.adapter
    if adapter is None:
        return
    if adapter.type == "qlora" and j.spec.resources.accelerator != "cuda":
        yield (
            rules.TRAININGJOB_QLORA_ACCELERATOR,
            ("spec", "adapter", "type"),
            f"QLoRA quantizes the base to 4 bits with bitsandbytes, which needs accelerator cuda, "
            f"not {j.spec.resources.accelerator}",
            "use adapter type lora on cpu, or resources.accelerator: cuda",
        )
    model = _model_of(j, index)
    if model is not None and not isinstance(model.spec.architecture, Pretrained):
        yield (
            rules.TRAININGJOB_ADAPTER_BASE,
            ("spec", "adapter"),
            f"adapters train on a frozen pretrained base, but Model {model.metadata.name!r} has "
            f"architecture {model.spec.architecture.type!r}",
            "give the Model architecture type pretrained, or remove adapter to train every weight",
        )


@check("TrainingJob")
def _job_base_context(j: TrainingJob, index: Index) -> Iterator[Issue]:
    from ..model.pretrained import context_length, read_config

    model, data = _model_of(j, index), _dataset_of(j, index)
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
        yield (
            rules.TRAININGJOB_CONTEXT,
            ("spec", "dataset"),
            f"Dataset {data.metadata.name!r} makes sequences of {chat.sequence_length} tokens but the "
            f"pretrained base of Model {model.metadata.name!r} has a context of {context}",
            f"lower chat.sequenceLength to at most {context}",
        )
    for s in data.spec.preprocessing:
        if isinstance(s, Pack) and s.sequence_length > context:
            yield (
                rules.TRAININGJOB_CONTEXT,
                ("spec", "dataset"),
                f"Dataset {data.metadata.name!r} packs {s.sequence_length} tokens but the pretrained "
                f"base of Model {model.metadata.name!r} has a context of {context} "
                f"(max_position_embeddings in {directory / 'config.json'})",
                f"lower pack.sequenceLength to at most {context}",
            )


@check("TrainingJob")
def _job_dataset_task(j: TrainingJob, index: Index) -> Iterator[Issue]:
    """What data preparation needs of a Dataset for the Model's task (see ``lmspec.data.prepare``)."""
    model, data = _model_of(j, index), _dataset_of(j, index)
    if model is None or data is None:
        return
    task, name = model.spec.task, data.metadata.name
    steps = data.spec.preprocessing
    where: Path = ("spec", "dataset")
    if task == "causal-lm":
        tokenize = next((s for s in steps if isinstance(s, Tokenize)), None)
        if tokenize is not None and not any(isinstance(s, Pack) for s in steps):
            yield (rules.TRAININGJOB_LM_PACK, where,
                   f"Dataset {name!r} tokenizes but never packs: a causal language model trains on "
                   "packed sequences", "add {type: pack, sequenceLength: N} after the tokenize step")
        if data.spec.splits.stratify is not None:
            yield (rules.TRAININGJOB_DATASET_TASK, where,
                   f"Dataset {name!r} stratifies its split, which does not apply to language-model data",
                   "remove splits.stratify")
        for i, s in enumerate(steps):
            if isinstance(s, Standardize | MinMax | LabelEncode | GaussianNoise):
                yield (rules.TRAININGJOB_DATASET_TASK, where,
                       f"step {i} of Dataset {name!r} ({s.type}) does not apply to language-model data",
                       f"remove the {s.type} step, or train a classification or regression Model")
            elif isinstance(s, DropNulls | Dedupe | Filter) and tokenize is not None:
                cols = s.columns if isinstance(s, DropNulls | Dedupe) else [s.column]
                for c in cols or []:
                    if c != tokenize.column:
                        yield (rules.TRAININGJOB_DATASET_TASK, where,
                               f"step {i} of Dataset {name!r} ({s.type}) reads column {c!r}; a language "
                               f"model's data has only the tokenized column {tokenize.column!r}",
                               f"name {tokenize.column!r}, or remove the step")
        return
    for i, s in enumerate(steps):
        if isinstance(s, Tokenize | Pack):
            yield (rules.TRAININGJOB_DATASET_TASK, where,
                   f"step {i} of Dataset {name!r} ({s.type}) is for causal-lm Models, not {task}",
                   f"remove the {s.type} step")
    yield from _tabular_columns(data, task, where)


def _tabular_columns(data: Dataset, task: str, where: Path) -> Iterator[Issue]:
    name, spec = data.metadata.name, data.spec
    rule = rules.TRAININGJOB_DATASET_COLUMNS
    if any(source_format(s.path, s.format) == "text" for s in spec.sources):
        yield (rule, where, f"Dataset {name!r} reads plain text, which has no columns but 'text'; a "
               f"{task} Model reads features and a target", "use csv, jsonl or parquet sources")
    if not spec.features:
        yield (rule, where, f"Dataset {name!r} has no features; a {task} Model needs at least one",
               "declare the input columns under features")
    target = spec.target
    if target is None:
        yield (rule, where, f"Dataset {name!r} has no target; a {task} Model learns to predict one",
               "declare target: {name: <column>}")
        return
    if task == "regression" and target.dtype in ("string", "bool"):
        yield (rule, where, f"the target of Dataset {name!r} is {target.dtype}; regression needs a numeric "
               "target", "declare a numeric dtype, or train a classification Model")
    encoded = {s.column for s in spec.preprocessing if isinstance(s, LabelEncode)}
    features = {f.name for f in spec.features}
    for f in spec.features:
        if f.dtype == "string" and f.name not in encoded:
            yield (rule, where, f"feature {f.name!r} of Dataset {name!r} is a string column; the model "
                   "needs numbers", f"add a labelEncode step for {f.name!r}, or declare a numeric dtype")
    for i, s in enumerate(spec.preprocessing):
        named = target.name in (s.columns or []) if isinstance(s, Standardize | MinMax | GaussianNoise) else False
        if not named or target.name in features:
            continue
        if isinstance(s, GaussianNoise):
            yield (rule, where, f"step {i} of Dataset {name!r} adds noise to the target {target.name!r}; "
                   "noise applies to features only", "remove the target from the step's columns")
        elif task != "regression":
            yield (rule, where, f"step {i} of Dataset {name!r} ({s.type}) scales the target "
                   f"{target.name!r}; only a regression target can be scaled",
                   "remove the target from the step's columns")


@check("TrainingJob")
def _job_memory_fit(j: TrainingJob, index: Index) -> Iterator[Issue]:
    limit_text = j.spec.resources.memory_per_device
    model = _model_of(j, index)
    if limit_text is None or model is None:
        return
    from ..model.plan import count_parameters, format_bytes, lora_parameters, model_states, parse_bytes

    data = _dataset_of(j, index)
    count = count_parameters(model.spec, n_features=len(data.spec.features) if data else None,
                             pretrained_dir=index.pretrained_dir(model))
    if count.params is None or count.largest_layer is None:
        return
    directory = index.pretrained_dir(model)
    trainable = lora_parameters(j.spec, directory) if directory is not None else None
    states = model_states(j.spec, count.params, count.largest_layer, trainable=trainable)
    limit = parse_bytes(limit_text)
    if states.device_bytes > limit:
        yield (
            rules.TRAININGJOB_MEMORY_FIT,
            ("spec", "resources", "memoryPerDevice"),
            f"Model {model.metadata.name!r} ({count.params:,} parameters) needs "
            f"{format_bytes(states.device_bytes)} per device for model states alone at ZeRO "
            f"stage {states.stage} (offload: {states.offload}), more than memoryPerDevice {limit_text}",
            "raise zero.stage, offload the optimizer (zero.offloadOptimizer.device: cpu), add "
            "processes, or train in bf16; `lmspec plan` prints every option",
        )


# --- InferenceService --------------------------------------------------------------------------


@check("InferenceService")
def _service_model_source(s: InferenceService, _: Index) -> Iterator[Issue]:
    src = s.spec.model
    if (src.training_job is None) == (src.path is None):
        yield (
            rules.INFERENCE_MODEL_SOURCE,
            ("spec", "model"),
            "model must name exactly one of trainingJob and path",
            "keep either trainingJob: <name> or path: <export dir>",
        )


@check("InferenceService")
def _service_secrets(s: InferenceService, _: Index) -> Iterator[Issue]:
    for i, key in enumerate(s.spec.auth.api_keys):
        path: Path = ("spec", "auth", "apiKeys", i)
        if isinstance(key, str):
            yield (
                rules.INFERENCE_INLINE_SECRET,
                path,
                "an API key is written inline in the manifest",
                "remove it from the file (and rotate it); use {env: VAR} or {file: path}",
            )
        elif (key.env is None) == (key.file is None):
            yield (
                rules.INFERENCE_KEY_SOURCE,
                path,
                "a key source must name exactly one of env and file",
                "write {env: VAR} or {file: path}",
            )


@check("InferenceService")
def _service_bind(s: InferenceService, _: Index) -> Iterator[Issue]:
    host = s.spec.server.host
    if host not in ("127.0.0.1", "localhost", "::1") and not host.startswith("127.") and not s.spec.auth.api_keys:
        yield (
            rules.INFERENCE_PUBLIC_BIND,
            ("spec", "server", "host"),
            f"the server listens on {host} with no API keys: anyone who can reach it can use it",
            "add auth.apiKeys, or bind to 127.0.0.1",
        )


@check("InferenceService")
def _service_protocol(s: InferenceService, index: Index) -> Iterator[Issue]:
    if "openai" not in s.spec.protocols or s.spec.model.training_job is None:
        return
    job = index.get("TrainingJob", s.spec.model.training_job)
    model = _model_of(job, index) if isinstance(job, TrainingJob) else None
    if model is not None and model.spec.task != "causal-lm":
        yield (
            rules.INFERENCE_PROTOCOL_TASK,
            ("spec", "protocols", s.spec.protocols.index("openai")),
            f"protocol 'openai' serves language models, but Model {model.metadata.name!r} has task {model.spec.task!r}",
            "remove 'openai' from protocols",
        )


@check("InferenceService")
def _service_placement(s: InferenceService, _: Index) -> Iterator[Issue]:
    engine, place = s.spec.engine, s.spec.placement
    if engine.name == "vllm" and place.device == "cpu":
        yield (
            rules.INFERENCE_ENGINE_PLACEMENT,
            ("spec", "engine", "name"),
            "engine 'vllm' runs on CUDA devices only, but placement.device is 'cpu'",
            "set placement.device: cuda, or use engine.name: builtin on CPU",
        )
    if place.device == "cpu" and place.device_indices:
        yield (
            rules.INFERENCE_ENGINE_PLACEMENT,
            ("spec", "placement", "deviceIndices"),
            "deviceIndices name CUDA devices, but placement.device is 'cpu'",
            "remove deviceIndices, or set placement.device: cuda",
        )
    elif len(set(place.device_indices)) != len(place.device_indices):
        yield (
            rules.INFERENCE_ENGINE_PLACEMENT,
            ("spec", "placement", "deviceIndices"),
            f"deviceIndices {place.device_indices} name a device twice",
            "list each device once",
        )
    elif engine.name == "builtin" and len(place.device_indices) > 1:
        yield (
            rules.INFERENCE_ENGINE_PLACEMENT,
            ("spec", "placement", "deviceIndices"),
            f"the builtin engine runs on one device, but deviceIndices lists {len(place.device_indices)}",
            "keep one index, or use engine.name: vllm to shard the model over several devices",
        )
    if place.device == "cpu" and place.dtype == "float16":
        yield (
            rules.INFERENCE_DTYPE_DEVICE,
            ("spec", "placement", "dtype"),
            "float16 on CPU: its kernels are missing or slow there",
            "use dtype: bfloat16 or float32 on CPU",
        )
    extra = [p for p in s.spec.protocols if p != "openai"]
    if engine.name == "vllm" and extra:
        yield (
            rules.INFERENCE_ENGINE_PROTOCOL,
            ("spec", "protocols", s.spec.protocols.index(extra[0])),
            f"engine 'vllm' serves the OpenAI-compatible API only, not {extra[0]!r}",
            "set protocols: [openai], or use engine.name: builtin",
        )


@check("InferenceService")
def _service_engine_lengths(s: InferenceService, index: Index) -> Iterator[Issue]:
    engine = s.spec.engine
    context = None
    if s.spec.model.training_job is not None:
        job = index.get("TrainingJob", s.spec.model.training_job)
        model = _model_of(job, index) if isinstance(job, TrainingJob) else None
        context = _context_length(model) if model is not None else None
    if engine.max_model_length is not None and context is not None and engine.max_model_length > context:
        yield (
            rules.INFERENCE_CONTEXT_LENGTH,
            ("spec", "engine", "maxModelLength"),
            f"engine.maxModelLength {engine.max_model_length} exceeds the context length {context} of "
            "the served Model",
            f"set maxModelLength to at most {context}, or leave it out (the default is the context length)",
        )
    longest = engine.max_model_length or context
    if engine.kv_cache_tokens is not None and longest is not None and engine.kv_cache_tokens < longest:
        yield (
            rules.INFERENCE_KV_BUDGET,
            ("spec", "engine", "kvCacheTokens"),
            f"kvCacheTokens {engine.kv_cache_tokens} cannot hold one sequence of {longest} tokens "
            "(the maximum model length)",
            f"raise kvCacheTokens to at least {longest}, or lower engine.maxModelLength",
        )


REFERENCES: dict[str, list[tuple[Path, str, Callable[[Any], str | None]]]] = {
    "TrainingJob": [
        (("spec", "model"), "Model", lambda j: j.spec.model),
        (("spec", "dataset"), "Dataset", lambda j: j.spec.dataset),
    ],
    "Model": [
        (("spec", "architecture", "trainingJob"), "TrainingJob",
         lambda m: getattr(m.spec.architecture, "training_job", None)),
    ],
    "InferenceService": [
        (("spec", "model", "trainingJob"), "TrainingJob", lambda s: s.spec.model.training_job),
    ],
}
"""Every reference a kind makes: (path of the field, kind it must name, getter)."""


# --- cluster settings (TrainingJob and InferenceService) ---------------------------------------


def _tolerations(cluster: Cluster | None) -> Iterator[Issue]:
    if cluster is None:
        return
    for i, t in enumerate(cluster.tolerations):
        path: Path = ("spec", "cluster", "tolerations", i)
        if t.operator == "Exists" and t.value is not None:
            yield (rules.CLUSTER_TOLERATION, (*path, "value"),
                   "a toleration with operator Exists matches any value; value must be omitted",
                   "drop value, or use operator: Equal")
        elif t.operator == "Equal" and t.key is None:
            yield (rules.CLUSTER_TOLERATION, path, "a toleration with operator Equal needs a key",
                   "add key (and value), or use operator: Exists to tolerate every taint")


_K8S_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_K8S_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def k8s_label_key_problem(key: str) -> str | None:
    """Why ``key`` is not a Kubernetes qualified name (a label key, a taint key), or None:
    ``[prefix/]name``, the name at most 63 alphanumerics, ``-``, ``_`` and ``.``, starting and
    ending alphanumeric, the prefix a DNS subdomain of at most 253 characters."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and not prefix:
        return "the prefix before '/' is empty"
    if prefix and (len(prefix) > 253 or not _K8S_PREFIX.fullmatch(prefix)):
        return f"the prefix {prefix!r} is not a DNS subdomain (lowercase letters, digits, '-' and '.')"
    if not name or len(name) > 63 or not _K8S_NAME.fullmatch(name):
        return ("the name must be 1 to 63 letters, digits, '-', '_' or '.', starting and ending with a "
                "letter or digit")
    return None


def k8s_label_value_problem(value: str) -> str | None:
    """Why ``value`` is not a Kubernetes label value (empty, or a name as in a label key), or None."""
    if value and (len(value) > 63 or not _K8S_NAME.fullmatch(value)):
        return "a label value is empty or 1 to 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric"
    return None


def _labels(cluster: Cluster | None) -> Iterator[Issue]:
    """Node labels and taint keys and values, as the Kubernetes API server validates them: a
    character it refuses (a newline, ``$(…)``) must not reach an exported object."""
    if cluster is None:
        return
    for key, value in cluster.node_selector.items():
        at: Path = ("spec", "cluster", "nodeSelector", key)
        if (why := k8s_label_key_problem(key)) is not None:
            yield (rules.CLUSTER_LABEL, at, f"nodeSelector key {key!r} is not a Kubernetes label key: {why}",
                   "use a label the machines carry, such as gpu-type or cloud.google.com/gke-accelerator")
        elif (why := k8s_label_value_problem(value)) is not None:
            yield (rules.CLUSTER_LABEL, at, f"nodeSelector value {value!r} of {key!r} is not a Kubernetes label "
                   f"value: {why}", "use the label's value as the machines carry it")
    for i, t in enumerate(cluster.tolerations):
        path: Path = ("spec", "cluster", "tolerations", i)
        if t.key is not None and (why := k8s_label_key_problem(t.key)) is not None:
            yield (rules.CLUSTER_LABEL, (*path, "key"), f"toleration key {t.key!r} is not a Kubernetes taint key: "
                   f"{why}", "use the taint's key as the machines carry it, such as nvidia.com/gpu")
        if t.value is not None and (why := k8s_label_value_problem(t.value)) is not None:
            yield (rules.CLUSTER_LABEL, (*path, "value"), f"toleration value {t.value!r} is not a Kubernetes "
                   f"taint value: {why}", "use the taint's value as the machines carry it")


@check("TrainingJob")
def _job_cluster(j: TrainingJob, _: Index) -> Iterator[Issue]:
    yield from _tolerations(j.spec.cluster)
    yield from _labels(j.spec.cluster)


@check("InferenceService")
def _service_cluster(s: InferenceService, _: Index) -> Iterator[Issue]:
    cluster = s.spec.cluster
    if cluster is None:
        return
    yield from _tolerations(cluster)
    yield from _labels(cluster)
    low, high = cluster.replicas.min, cluster.replicas.max
    if high is not None and high < low:
        yield (rules.INFERENCE_REPLICA_BOUNDS, ("spec", "cluster", "replicas", "max"),
               f"replicas.max {high} is below replicas.min {low}",
               f"raise max to at least {low}, or lower min")
    scaling = cluster.autoscaling
    if scaling is None:
        return
    if scaling.metric == "cpu" and scaling.target > 100:
        yield (rules.INFERENCE_AUTOSCALING_TARGET, ("spec", "cluster", "autoscaling", "target"),
               f"a cpu target is a percentage of the requested CPU; {scaling.target} is above 100",
               "use a target between 1 and 100")
    if high is None or high == low:
        yield (rules.INFERENCE_AUTOSCALING_RANGE, ("spec", "cluster", "autoscaling"),
               f"autoscaling is set, but replicas stay at {low} (replicas.max is "
               + ("omitted" if high is None else "equal to min") + ")",
               f"set replicas.max above {low}, or drop autoscaling")


# Rules kept in their own modules register themselves on import.
from . import preference_rules  # noqa: E402,F401
