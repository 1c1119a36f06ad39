"""Rules of a Model on its own: task, architecture, signature, a Hugging Face config."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ...manifests.light import HuggingFace, LinearLayer, Model, Pretrained, Sequential, Transformer
from ..rule import rule
from ._base import Index, Issue, Path, check, output_width

# The rules of this module: stable ids, severity and summary (the spec documents each id).
MODEL_TASK_ARCHITECTURE = rule(
    "model.task-architecture", "error", "semantic", "The architecture cannot perform the model's task."
)
MODEL_OUTPUT_SIZE = rule(
    "model.output-size",
    "error",
    "semantic",
    "The classifier's output width disagrees with numClasses or the architecture's last layer.",
)
MODEL_HEADS = rule(
    "model.transformer-heads", "error", "semantic", "A transformer's width is not divisible by its number of heads."
)
MODEL_LM_SIGNATURE = rule(
    "model.lm-signature", "error", "semantic", "A causal language model's signature is not token ids in, logits out."
)
MODEL_DERIVED_OUTPUTS = rule(
    "model.derived-outputs",
    "error",
    "semantic",
    "An output after the first is not a classifier's label (string, [-1]) or probabilities (float32, [-1, C]).",
)
MODEL_PRETRAINED_SOURCE = rule(
    "model.pretrained-source",
    "error",
    "semantic",
    "A pretrained architecture names none, or more than one, of path, uri and trainingJob.",
)
MODEL_HF_REVISION = rule(
    "model.hf-revision",
    "warning",
    "semantic",
    "An hf:// reference has no revision, so the files it means change when the repository does.",
)
MODEL_HF_CONFIG = rule(
    "model.hf-config",
    "error",
    "semantic",
    "A huggingface architecture's config gives a size or count that transformers needs positive as zero, "
    "negative or not an integer, a width its heads (or heads their key-value heads) do not divide, or heads of "
    "odd width under rotary position embeddings.",
)
MODEL_NUM_CLASSES = rule(
    "model.num-classes", "error", "semantic", "A classifier gives neither numClasses nor a fixed output width."
)


@check("Model")
def _model_task_architecture(m: Model, _: Index) -> Iterator[Issue]:
    arch = m.spec.architecture
    lm_arch = isinstance(arch, (Transformer, HuggingFace, Pretrained))
    if isinstance(arch, (Transformer, Pretrained)) and m.spec.task != "causal-lm":
        yield Issue(
            MODEL_TASK_ARCHITECTURE,
            ("spec", "task"),
            f"architecture {arch.type!r} is a causal language model, but task is {m.spec.task!r}",
            "set task: causal-lm, or use an mlp or sequential architecture",
        )
    if m.spec.task == "causal-lm" and not lm_arch:
        yield Issue(
            MODEL_TASK_ARCHITECTURE,
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
        yield Issue(
            MODEL_PRETRAINED_SOURCE,
            ("spec", "architecture", given[1]) if len(given) > 1 else ("spec", "architecture"),
            "a pretrained architecture needs exactly one of path, uri and trainingJob"
            + (f", not {' and '.join(given)}" if given else ""),
            "path: a local Hugging Face model directory; uri: hf://org/name@revision; "
            "trainingJob: the export of another job",
        )
    if arch.uri is not None and "@" not in arch.uri:
        yield Issue(
            MODEL_HF_REVISION,
            ("spec", "architecture", "uri"),
            f"{arch.uri} has no revision: it means whatever the repository's main branch holds "
            "when the run starts",
            f"pin it: {arch.uri}@<commit hash> (the run's lock.json records the commit it used)",
        )


@check("Model")
def _model_output_size(m: Model, _: Index) -> Iterator[Issue]:
    width = output_width(m)
    if (
        m.spec.task == "classification"
        and m.spec.num_classes is not None
        and width is not None
        and width != m.spec.num_classes
    ):
        yield Issue(
            MODEL_OUTPUT_SIZE,
            ("spec", "signature", "outputs", 0, "shape"),
            f"output width {width} differs from numClasses {m.spec.num_classes}",
            f"make the last dimension {m.spec.num_classes}",
        )
    arch = m.spec.architecture
    if isinstance(arch, Sequential) and width is not None:
        linear = [(i, la) for i, la in enumerate(arch.layers) if isinstance(la, LinearLayer)]
        if linear and linear[-1][1].out_features != width:
            i, last = linear[-1]
            yield Issue(
                MODEL_OUTPUT_SIZE,
                ("spec", "architecture", "layers", i, "outFeatures"),
                f"the last linear layer has {last.out_features} outputs but the signature's output width is {width}",
                f"set outFeatures: {width}",
            )


@check("Model")
def _model_heads(m: Model, _: Index) -> Iterator[Issue]:
    arch = m.spec.architecture
    if isinstance(arch, Transformer) and arch.width % arch.heads:
        yield Issue(
            MODEL_HEADS,
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
            yield Issue(MODEL_HF_CONFIG, (*at, key),
                   f"config.{key} is {value!r}; transformers needs a positive integer here",
                   f"set {key} to a positive integer, or leave it out for the library's default")
    width, heads, kv = _hf_size(config, _HF_WIDTHS), _hf_size(config, _HF_HEADS), _hf_size(config, _HF_KV_HEADS)
    if width is not None and heads is not None and width[1] % heads[1]:
        yield Issue(MODEL_HF_CONFIG, (*at, heads[0]),
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
            yield Issue(MODEL_HF_CONFIG, (*at, key),
                   f"each attention head is {head} wide; rotary position embeddings need an even width",
                   "choose sizes that give heads of even width (e.g. hidden_size 32 with 4 heads)")
    if heads is not None and kv is not None and heads[1] % kv[1]:
        yield Issue(MODEL_HF_CONFIG, (*at, kv[0]),
               f"config.{heads[0]} {heads[1]} is not divisible by config.{kv[0]} {kv[1]}: each key-value "
               "head serves the same number of query heads",
               f"choose {kv[0]} dividing {heads[0]}")


@check("Model")
def _model_lm_signature(m: Model, _: Index) -> Iterator[Issue]:
    if m.spec.task != "causal-lm":
        return
    sig = m.spec.signature
    if sig.inputs[0].dtype not in ("int32", "int64"):
        yield Issue(
            MODEL_LM_SIGNATURE,
            ("spec", "signature", "inputs", 0, "dtype"),
            f"a causal language model takes token ids, not {sig.inputs[0].dtype}",
            "use dtype int64",
        )
    arch = m.spec.architecture
    width = output_width(m)
    if isinstance(arch, Transformer) and width is not None and width != arch.vocab_size:
        yield Issue(
            MODEL_LM_SIGNATURE,
            ("spec", "signature", "outputs", 0, "shape"),
            f"output width {width} differs from vocabSize {arch.vocab_size}",
            "logits have one entry per token id: use -1 or the vocabulary size",
        )


_DERIVED = {"probabilities": "float32", "label": "string"}


@check("Model")
def _model_derived_outputs(m: Model, _: Index) -> Iterator[Issue]:
    # The network has one output; a server derives the others from a classifier's scores.
    outputs = m.spec.signature.outputs
    width = output_width(m)
    for i, out in enumerate(outputs[1:], 1):
        at = ("spec", "signature", "outputs", i)
        if m.spec.task != "classification":
            yield Issue(MODEL_DERIVED_OUTPUTS, (*at, "name"),
                   f"output {out.name!r}: a {m.spec.task} model has one output",
                   "remove it; only a classifier declares more (label, probabilities)")
            continue
        if out.name not in _DERIVED:
            yield Issue(MODEL_DERIVED_OUTPUTS, (*at, "name"),
                   f"output {out.name!r}: after its first output a classifier declares only label "
                   "and probabilities, which the server derives from the scores",
                   "name it label or probabilities, or remove it")
            continue
        if out.dtype != _DERIVED[out.name]:
            yield Issue(MODEL_DERIVED_OUTPUTS, (*at, "dtype"),
                   f"{out.name} has dtype {_DERIVED[out.name]}, not {out.dtype}", f"dtype: {_DERIVED[out.name]}")
        want = [-1] if out.name == "label" else [-1, width if width is not None else -1]
        if list(out.shape) != want and not (out.name == "probabilities" and list(out.shape) == [-1, -1]):
            yield Issue(MODEL_DERIVED_OUTPUTS, (*at, "shape"),
                   f"{out.name} has shape {want}, not {list(out.shape)}", f"shape: {want}")


@check("Model")
def _model_num_classes(m: Model, _: Index) -> Iterator[Issue]:
    if m.spec.task == "classification" and m.spec.num_classes is None and output_width(m) is None:
        yield Issue(
            MODEL_NUM_CLASSES,
            ("spec", "signature", "outputs", 0, "shape"),
            "a classifier needs numClasses or a fixed output width: the number of outputs is unknown",
            "add numClasses, or give the output's last dimension (e.g. shape: [-1, 3])",
        )
