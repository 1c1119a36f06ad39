"""Model builders: a Model manifest's architecture → a ``torch.nn.Module``.

>>> model = build_model(manifest.spec)          # mlp, sequential, transformer or huggingface
>>> logits = model(torch.randn(8, 4))           # tabular: features [N, F] → [N, outputs]
>>> logits = lm(torch.randint(0, 256, (2, 16)))  # language models: ids [N, L] → logits [N, L, V]

Every builder returns a module whose ``forward`` takes one tensor and returns one tensor, so the
training loop, the exporter and the server treat all architectures alike. Language models are
built from scratch with Hugging Face ``transformers`` (nothing is downloaded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..domain import signature
from ..standard import (
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
from .quiet import loading_quietly, unmasked_rows_are_intended

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "gelu": nn.GELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
    "silu": nn.SiLU,
}


class ModelError(Exception):
    """A Model manifest that cannot be built (bad initial weights, unknown Hugging Face type)."""


def output_width(spec: ModelSpec) -> int:
    """Outputs per row (see :func:`lmspec.domain.signature.output_width`)."""
    width = signature.output_width(spec)
    assert width is not None, "model.num-classes: the number of outputs is unknown"
    return width


class CausalLM(nn.Module):
    """A Hugging Face causal LM whose forward maps token ids [N, L] to logits [N, L, V]."""

    def __init__(self, lm: nn.Module) -> None:
        super().__init__()
        self.lm = lm
        unmasked_rows_are_intended()

    def forward(self, ids: torch.Tensor, position_ids: torch.Tensor | None = None) -> torch.Tensor:
        # Position ids that restart within a row mark packed documents: with no attention mask,
        # transformers then keeps each document's attention inside the document.
        out: torch.Tensor = self.lm(input_ids=ids, position_ids=position_ids, use_cache=False).logits
        return out

    def enable_activation_checkpointing(self) -> None:
        # Non-reentrant checkpointing works with ZeRO's parameter hooks and needs no inputs that
        # require grad (token ids never do).
        enable: Any = self.lm.gradient_checkpointing_enable
        enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def build_model(spec: ModelSpec, *, input_width: int | None = None, base_dir: Path | None = None,
                pretrained_dir: Path | None = None) -> nn.Module:
    """Build the network a Model manifest describes, randomly initialised (seed torch first),
    then load ``initialWeights`` when given (paths relative to ``base_dir``). A pretrained
    architecture is loaded from ``pretrained_dir``, the base's resolved directory."""
    arch = spec.architecture
    model: nn.Module
    if isinstance(arch, Pretrained):
        if pretrained_dir is None:
            raise ModelError("a pretrained architecture is loaded from its resolved directory; none was given")
        return load_pretrained(pretrained_dir)
    if isinstance(arch, MLP):
        model = _mlp(arch, _in_width(spec, input_width), output_width(spec))
    elif isinstance(arch, Sequential):
        model = _sequential(arch, _in_width(spec, input_width))
    elif isinstance(arch, Transformer):
        model = _transformer(arch)
    elif isinstance(arch, HuggingFace):
        model = _huggingface(arch)
    else:  # pragma: no cover - the schema admits only the four kinds above
        raise ModelError(f"unknown architecture {arch!r}")
    if spec.initial_weights is not None:
        path = Path(spec.initial_weights.path)
        if not path.is_absolute():
            path = (base_dir or Path.cwd()) / path
        load_weights(model, path, sha256=spec.initial_weights.sha256)
    return model


def _in_width(spec: ModelSpec, given: int | None) -> int:
    width = signature.input_width(spec) or given
    if width is None:
        raise ModelError("the input width is unknown: give the signature's input a fixed last dimension")
    return width


def _mlp(arch: MLP, n_in: int, n_out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_in
    for hidden in arch.hidden_sizes:
        layers += [nn.Linear(width, hidden), ACTIVATIONS[arch.activation]()]
        if arch.dropout > 0:
            layers.append(nn.Dropout(arch.dropout))
        width = hidden
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def _sequential(arch: Sequential, n_in: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = n_in
    for layer in arch.layers:
        if isinstance(layer, LinearLayer):
            layers.append(nn.Linear(width, layer.out_features, bias=layer.bias))
            width = layer.out_features
        elif isinstance(layer, NormLayer):
            layers.append(nn.LayerNorm(width, eps=layer.eps))
        elif isinstance(layer, DropoutLayer):
            layers.append(nn.Dropout(layer.p))
        elif isinstance(layer, ActivationLayer):
            layers.append(ACTIVATIONS[layer.type]())
    return nn.Sequential(*layers)


def gpt2_config(arch: Transformer) -> Any:
    """The ``transformers.GPT2Config`` of a transformer architecture."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=arch.vocab_size,
        n_positions=arch.context_length,
        n_embd=arch.width,
        n_layer=arch.depth,
        n_head=arch.heads,
        n_inner=int(arch.mlp_ratio * arch.width),
        resid_pdrop=arch.dropout,
        embd_pdrop=arch.dropout,
        attn_pdrop=arch.dropout,
        tie_word_embeddings=arch.tie_embeddings,
        # Ids outside the vocabulary never occur; these only silence generation-config warnings.
        bos_token_id=0,
        eos_token_id=0,
    )


def _transformer(arch: Transformer) -> CausalLM:
    from transformers import GPT2LMHeadModel

    return CausalLM(GPT2LMHeadModel(gpt2_config(arch)))


def _huggingface(arch: HuggingFace) -> CausalLM:
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.for_model(arch.model_type, **arch.config)
    except Exception as exc:  # config classes raise many kinds (ValueError, huggingface_hub's StrictDataclassError)
        raise ModelError(f"Hugging Face model type {arch.model_type!r}: {exc}") from None
    lm: nn.Module = AutoModelForCausalLM.from_config(config)  # type: ignore[no-untyped-call]
    return CausalLM(lm)


def load_pretrained(directory: Path) -> CausalLM:
    """A Hugging Face checkpoint directory as a :class:`CausalLM`, in fp32.

    Under ZeRO-3 the caller keeps a ``HfDeepSpeedConfig`` alive first, so that ``transformers``
    creates the parameters partitioned and loads the weights into the partitions layer by layer:
    the whole model is never materialised on one rank. (``low_cpu_mem_usage`` and ``device_map``
    must not be passed then; they are not.)"""
    from transformers import AutoModelForCausalLM

    try:
        with loading_quietly():
            lm: nn.Module = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32,
                                                                 local_files_only=True)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load the pretrained model in {directory}: {exc}") from None
    return CausalLM(lm)


def load_weights(model: nn.Module, path: Path, *, sha256: str | None = None) -> None:
    """Load a safetensors file into ``model``; tied parameters may be stored once."""
    from safetensors.torch import load_file

    from ..files import sha256_file

    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist")
    if sha256 is not None and (actual := sha256_file(path)) != sha256:
        raise ModelError(f"{path} has sha256 {actual}, the manifest says {sha256}")
    state = load_file(str(path))
    if isinstance(model, CausalLM) and state and not any(k.startswith("lm.") for k in state):
        # A Hugging Face `save_pretrained` file names the inner model's keys (`model.*`,
        # `lm_head.*`); lmspec's wrapper holds that model as `lm`.
        state = {f"lm.{k}": v for k, v in state.items()}
    load_state(model, state, source=str(path))


def load_state(model: nn.Module, state: dict[str, torch.Tensor], *, source: str = "state dict") -> None:
    """``load_state_dict`` that accepts a tied parameter stored under only one of its names."""
    result = model.load_state_dict(state, strict=False)
    loaded = {id(p) for name, p in model.state_dict(keep_vars=True).items() if name in state}
    missing = [k for k in result.missing_keys if id(model.state_dict(keep_vars=True)[k]) not in loaded]
    if missing or result.unexpected_keys:
        raise ModelError(
            f"{source} does not match the architecture: missing {missing[:5]}, "
            f"unexpected {result.unexpected_keys[:5]}"
        )


def unique_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict with every tensor once (tied weights kept under their first name), as fp32
    contiguous CPU tensors: the form safetensors stores."""
    seen: set[tuple[int, Any]] = set()
    out: dict[str, torch.Tensor] = {}
    for name, t in state.items():
        key = (t.untyped_storage().data_ptr(), t.storage_offset()) if t.numel() else (id(t), 0)
        if key in seen:
            continue
        seen.add(key)
        value = t.detach().cpu()
        out[name] = (value.float() if value.is_floating_point() else value).contiguous().clone()
    return out
