"""Plan a training job before launching it: parameter counts and ZeRO model-state memory.

>>> count_parameters(model.spec)                  # 1283 for iris' 4 → 32 → 32 → 3 MLP
>>> states = model_states(job.spec, params=1283, largest_layer=1056)
>>> states.device_bytes, states.host_bytes

No torch: this runs wherever the validator runs.

Memory of *model states* per data-parallel rank (ZeRO paper, arXiv 1910.02054), with Ψ parameters,
N ranks, p/g bytes per parameter and gradient (2 in fp16/bf16, 4 in fp32) and k bytes of optimizer
state per parameter (Adam: 8 for the two moments, plus 4 for the fp32 master copy in mixed
precision, so K = 12 as in the paper; SGD: 4 with momentum, plus the master copy):

=====  =====================  ===========================================================
stage  on the device          with optimizer offload (and param offload, stage 3)
=====  =====================  ===========================================================
0      (p + g + k)·Ψ          —
1      (p + g)·Ψ + k·Ψ/N      p·Ψ (gradients and optimizer states on the host)
2      p·Ψ + (g + k)·Ψ/N      p·Ψ
3      (p + g + k)·Ψ/N + (p+g)·L   p·Ψ/N + (p+g)·L  (param offload too: (p+g)·L)
=====  =====================  ===========================================================

L is the largest layer, gathered whole at stage 3 (DeepSpeed's estimators use 4·L). Host memory
per process is (k + 4)·Ψ/N with optimizer offload (fp32 gradient partitions included), plus p·Ψ/N
with param offload. Activations, communication buckets and fragmentation come on top.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

# isinstance below holds for the models and the validator's light twins of them.
from ..manifests.light import MLP, HuggingFace, LinearLayer, NormLayer, Pretrained, Sequential, Transformer
from .signature import input_width, output_width

if TYPE_CHECKING:
    from ..standard import ModelSpec, TrainingJobSpec

GIB = 1024**3
_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40}


def speed_notes(spec: TrainingJobSpec) -> list[str]:
    """Choices known to be slow on the job's accelerator, one sentence each (empty when none)."""
    z = spec.zero
    notes: list[str] = []
    if spec.resources.accelerator != "cpu":
        return notes
    offload = z.offload_optimizer.device != "none" or z.offload_param.device != "none"
    if z.stage == 3 and offload:
        notes.append("ZeRO-3 with optimizer offload on CPU ranks: every step gathers each layer's "
                     "parameters over gloo and moves optimizer states between two places in the same "
                     "host memory; an order of magnitude slower than ZeRO-2 has been measured on a "
                     "2-core machine. On CPUs, use zero.stage 0-2 without offload")
    elif z.stage == 3:
        notes.append("ZeRO-3 on CPU ranks gathers each layer's parameters over gloo twice a step; "
                     "ZeRO-2 is faster where the model fits")
    elif offload:
        notes.append("optimizer offload on CPU ranks moves states within the same host memory: "
                     "slower, and it saves nothing")
    return notes


def parse_bytes(text: str) -> int:
    """``"80GiB"`` → 85899345920; ``"1.5GB"`` → 1500000000."""
    m = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)", text)
    if m is None:
        raise ValueError(f"not a byte size: {text!r}")
    # Exact rational arithmetic: float() of a long digit string overflows to inf.
    return int(Fraction(m.group(1)) * _UNITS[m.group(2)])


def format_bytes(n: float) -> str:
    """``1536`` → ``"1.50 KiB"``; binary units, as ``memoryPerDevice`` examples use."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} B" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1024
    return f"{n:.2f} TiB"


@dataclass(frozen=True)
class Count:
    """Parameters of a model and of its largest layer; None when they cannot be known."""

    params: int | None
    largest_layer: int | None
    note: str = ""


def count_parameters(spec: ModelSpec, *, n_features: int | None = None, pretrained_dir: Path | None = None) -> Count:
    """Trainable parameters, as the runner's builders create them (tied weights counted once).
    A pretrained base is counted from the safetensors headers in ``pretrained_dir``."""
    arch = spec.architecture
    if isinstance(arch, Pretrained):
        if pretrained_dir is None:
            return Count(None, None, "unknown until the pretrained base is available")
        from .pretrained import BaseError, count_from_headers

        try:
            total, largest, _ = count_from_headers(pretrained_dir)
        except (BaseError, OSError, ValueError, KeyError) as e:
            return Count(None, None, f"unknown: cannot read the safetensors headers in {pretrained_dir} ({e})")
        return Count(total, largest)
    if isinstance(arch, Transformer):
        return _transformer(arch.vocab_size, arch.context_length, arch.width, arch.depth,
                            int(arch.mlp_ratio * arch.width), arch.tie_embeddings)
    if isinstance(arch, HuggingFace):
        return _huggingface(arch)
    width = input_width(spec) or n_features
    if width is None:
        return Count(None, None, "input width unknown (signature input is -1)")
    layers: list[int] = []
    if isinstance(arch, MLP):
        n_out = output_width(spec)
        if n_out is None:
            return Count(None, None, "output width unknown")
        for hidden in [*arch.hidden_sizes, n_out]:
            layers.append(width * hidden + hidden)
            width = hidden
    elif isinstance(arch, Sequential):
        for layer in arch.layers:
            if isinstance(layer, LinearLayer):
                layers.append(width * layer.out_features + (layer.out_features if layer.bias else 0))
                width = layer.out_features
            elif isinstance(layer, NormLayer):
                layers.append(2 * width)
    return Count(sum(layers), max(layers, default=0))


def _transformer(vocab: int, context: int, w: int, depth: int, inner: int, tied: bool) -> Count:
    attention = 4 * w * w + 4 * w          # fused qkv (3w² + 3w) and output projection (w² + w)
    mlp = 2 * w * inner + inner + w        # up and down projections with biases
    block = attention + mlp + 2 * 2 * w    # two layer norms (weight and bias)
    embeddings = vocab * w + context * w   # token and learned position embeddings
    head = 0 if tied else vocab * w        # GPT-2's head has no bias
    total = embeddings + depth * block + 2 * w + head
    return Count(total, max(vocab * w, block))


class _BadConfig(ValueError):
    pass


# The largest size any real model uses is far below this; beyond it sums become meaningless.
_MAX_DIM = 2**40


def _dim(c: dict[str, Any], key: str, default: int) -> int:
    """A size from a Hugging Face config: any JSON value may be there, so check it is one."""
    value = c.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= _MAX_DIM:
        raise _BadConfig(f"config.{key} is {value!r}, not an integer between 1 and {_MAX_DIM}")
    return value


def _huggingface(arch: HuggingFace) -> Count:
    try:
        return _huggingface_sizes(arch)
    except _BadConfig as exc:
        return Count(None, None, str(exc))


def _huggingface_sizes(arch: HuggingFace) -> Count:
    c: dict[str, Any] = arch.config
    if arch.model_type == "gpt2":
        w = _dim(c, "n_embd", 768)  # transformers' GPT2Config defaults
        inner = _dim(c, "n_inner", 4 * w) if c.get("n_inner") is not None else 4 * w
        return _transformer(_dim(c, "vocab_size", 50257), _dim(c, "n_positions", 1024), w,
                            _dim(c, "n_layer", 12), inner, bool(c.get("tie_word_embeddings", True)))
    if arch.model_type in ("llama", "mistral"):
        h = _dim(c, "hidden_size", 4096)  # transformers' LlamaConfig defaults
        inner = _dim(c, "intermediate_size", 11008 if arch.model_type == "llama" else 14336)
        layers = _dim(c, "num_hidden_layers", 32)
        heads = _dim(c, "num_attention_heads", 32)
        kv = _dim(c, "num_key_value_heads", heads if arch.model_type == "llama" else 8)
        vocab = _dim(c, "vocab_size", 32000)
        kv_dim = kv * (h // heads)
        block = 2 * h * h + 2 * h * kv_dim + 3 * h * inner + 2 * h
        head = 0 if c.get("tie_word_embeddings", False) else vocab * h
        return Count(vocab * h + layers * block + h + head, max(vocab * h, block))
    return Count(None, None, f"unknown for model type {arch.model_type!r}")


@dataclass(frozen=True)
class States:
    """Model-state memory of one process."""

    stage: int
    offload: str
    """``none``, ``optimizer`` or ``optimizer+param``."""
    device_bytes: int
    host_bytes: int


def bytes_per_param(spec: TrainingJobSpec) -> tuple[int, int, int]:
    """(p, g, k): bytes per parameter of weights, gradients and optimizer state."""
    mixed = spec.precision.bf16.enabled or spec.precision.fp16.enabled
    p = g = 2 if mixed else 4
    opt = spec.optimizer
    k = 8 if opt.type in ("adam", "adamw") else (4 if opt.momentum > 0 else 0)
    return p, g, k + (4 if mixed else 0)


def model_states(spec: TrainingJobSpec, params: int, largest_layer: int, *, stage: int | None = None,
                 offload: str | None = None, trainable: int | None = None) -> States:
    """Model-state memory for the job's ZeRO stage and offload (or the ones given).

    With ``trainable`` (adapters), only those parameters have gradients and optimizer states;
    the frozen rest costs its weights alone (partitioned at stage 3)."""
    if trainable is not None and trainable < params:
        n = spec.resources.nodes * spec.resources.processes_per_node
        p = bytes_per_param(spec)[0]
        frozen = params - trainable
        states = model_states(spec, trainable, largest_layer, stage=stage, offload=offload)
        on_device = frozen * p / n if states.stage == 3 else frozen * p
        return States(states.stage, states.offload, int(states.device_bytes + on_device), states.host_bytes)
    z = spec.zero
    stage = z.stage if stage is None else stage
    if offload is None:
        offload = "none"
        if z.offload_optimizer.device != "none" and stage > 0:
            offload = "optimizer+param" if stage == 3 and z.offload_param.device != "none" else "optimizer"
    n = spec.resources.nodes * spec.resources.processes_per_node
    p, g, k = bytes_per_param(spec)
    psi, big = params, largest_layer
    host = 0.0
    device: float
    if offload == "none":
        device = {
            0: (p + g + k) * psi,
            1: (p + g) * psi + k * psi / n,
            2: p * psi + (g + k) * psi / n,
            3: (p + g + k) * psi / n + (p + g) * big,
        }[stage]
    else:
        host = (k + 4) * psi / n
        if stage < 3:
            device = p * psi
        elif offload == "optimizer":
            device = p * psi / n + (p + g) * big
        else:
            device = (p + g) * big
            host += p * psi / n
    return States(stage, offload, int(device), int(host))


def all_states(spec: TrainingJobSpec, params: int, largest_layer: int, *,
               trainable: int | None = None) -> list[States]:
    """Every stage and offload choice, for the plan table."""
    choices = [(0, "none"), (1, "none"), (1, "optimizer"), (2, "none"), (2, "optimizer"),
               (3, "none"), (3, "optimizer"), (3, "optimizer+param")]
    return [model_states(spec, params, largest_layer, stage=s, offload=o, trainable=trainable) for s, o in choices]


# peft's default LoRA targets for common architectures (its
# TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING), repeated here because peft imports torch.
DEFAULT_LORA_TARGETS = {"llama": ["q_proj", "v_proj"], "mistral": ["q_proj", "v_proj"],
                        "qwen2": ["q_proj", "v_proj"], "gemma": ["q_proj", "v_proj"],
                        "gpt2": ["c_attn"], "gpt_neox": ["query_key_value"], "opt": ["q_proj", "v_proj"],
                        "phi": ["q_proj", "v_proj"]}


def lora_parameters(spec: TrainingJobSpec, pretrained_dir: Path) -> int | None:
    """Trainable parameters of the job's LoRA adapters on a pretrained base, from its config
    and safetensors headers (rank × (in + out) per targeted weight, plus modules to save);
    None when the targets cannot be known without the model."""
    from .pretrained import BaseError, count_from_headers, read_config

    adapter = spec.adapter
    if adapter is None:
        return None
    try:
        shapes = count_from_headers(pretrained_dir)[2]
        model_type = str(read_config(pretrained_dir).get("model_type", ""))
    except (BaseError, OSError, ValueError, KeyError):
        return None
    targets = adapter.target_modules if adapter.target_modules is not None else DEFAULT_LORA_TARGETS.get(model_type)
    if targets is None:
        return None
    total = 0
    for name, shape in shapes.items():
        parts = name.split(".")
        if len(shape) != 2 or parts[-1] != "weight" or len(parts) < 2:
            continue
        module = parts[-2]
        if module in adapter.modules_to_save:
            total += shape[0] * shape[1]
        elif targets == "all-linear":
            if re.search(r"\.\d+\.", name):  # linear layers inside the blocks, not embeddings or head
                total += adapter.rank * (shape[0] + shape[1])
        elif module in targets:
            total += adapter.rank * (shape[0] + shape[1])
    return total
