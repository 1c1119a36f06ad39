"""Causal language models as the engine runs them: a transformers model, its tokenizer, its
chat template and its end-of-sequence tokens, loaded from an lmspec export or from a Hugging Face
format directory.

>>> lm = load_language_model("runs/chat-sft/export-hf", Placement(device="cpu"))
>>> lm.chat_ids([{"role": "user", "content": "Hi"}])      # the tokenizer's own chat template
[1, 518, 25580, ...]

Prompts and messages are client text: :meth:`TextModel.encode` and :meth:`TextModel.chat_ids`
never turn them into control tokens (see :mod:`.client_text`).

A Hugging Face directory holds ``config.json``, safetensors weights, tokenizer files and
optionally ``generation_config.json`` (whose ``eos_token_id`` ends generation) and a chat template
(``tokenizer_config.json``'s ``chat_template`` or ``chat_template.jinja``). A LoRA adapter
directory (``adapter_config.json`` + ``adapter_model.safetensors``) is loaded on top of the base
model its ``base_model_name_or_path`` names (a local path, relative to the adapter) and merged
into it with ``peft``, so serving it costs what serving the base costs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..standard import Placement
from .client_text import chat_ids, control_tokens, encode_text


class NoChatTemplate(Exception):
    """The model's tokenizer has no chat template."""


class ModelLoadError(Exception):
    """A model directory that cannot be served (missing files, unknown format, bad adapter)."""


class TextModel:
    """A causal LM ready for the engine: ``model`` maps ids to logits with a KV cache."""

    def __init__(self, model: Any, tokenizer: Any, *, context_length: int, eos: frozenset[int],
                 vocab_size: int, hf_tokenizer: bool) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.eos = eos
        self.vocab_size = vocab_size
        self._hf = hf_tokenizer
        # The text of these is encoded as text when it comes from a client.
        self._control = control_tokens(tokenizer) if hf_tokenizer else ()
        self._plain: Any = None
        if not hf_tokenizer and getattr(tokenizer, "kind", "byte") == "file":
            # The same tokenizer.json with its special tokens' text encoded as text.
            from tokenizers import Tokenizer

            self._plain = Tokenizer.from_str(tokenizer.state_dict()["json"])
            self._plain.encode_special_tokens = True

    @property
    def eos_token_id(self) -> int | None:
        return min(self.eos) if self.eos else None

    @property
    def has_chat_template(self) -> bool:
        return self._hf and bool(getattr(self.tokenizer, "chat_template", None))

    def encode(self, text: str) -> list[int]:
        """Client text → ids; the text of a control token (``</s>``) is encoded as text."""
        if self._hf:
            return encode_text(self.tokenizer, text, self._control)
        if self._plain is not None:
            return list(self._plain.encode(text, add_special_tokens=False).ids)
        return list(self.tokenizer.encode(text))

    def decode(self, ids: list[int]) -> str:
        if self._hf:
            return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))
        return str(self.tokenizer.decode(list(ids)))

    def token_text(self, token: int) -> str:
        """One token as text (for log-probabilities)."""
        if self._hf:
            return str(self.tokenizer.decode([token]))
        return str(self.tokenizer.decode([token]))

    def chat_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        """The prompt of a conversation, rendered by the tokenizer's chat template with the
        assistant's turn opened (``add_generation_prompt``); only the template places control
        tokens, whatever the messages hold."""
        if not self.has_chat_template:
            raise NoChatTemplate()
        return chat_ids(self.tokenizer, messages, self._control)

    def next_token_logits(self, sequences: list[list[int]]) -> Any:
        """Logits [len(sequences), vocab] of the token after each sequence, each re-run from
        scratch (no cache): OIP warm-up and the benchmark's baseline."""
        lengths = [len(s) for s in sequences]
        device = next(self.model.parameters()).device
        ids = torch.zeros((len(sequences), max(lengths)), dtype=torch.long, device=device)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        with torch.inference_mode():
            # Right padding is exact for a causal model: position i attends only to positions <= i.
            logits = self.model(input_ids=ids, use_cache=False).logits
            last = logits[torch.arange(len(sequences)), torch.tensor(lengths) - 1]
        return last.float().cpu().numpy()


def torch_device(placement: Placement) -> torch.device:
    if placement.device == "cuda":
        if not torch.cuda.is_available():
            raise ModelLoadError("placement.device is 'cuda' but torch sees no CUDA device "
                                 "(serve on placement.device: cpu)")
        return torch.device("cuda", placement.device_indices[0] if placement.device_indices else 0)
    return torch.device("cpu")


def torch_dtype(placement: Placement, stored: Any = None) -> torch.dtype:
    if placement.dtype != "auto":
        return getattr(torch, placement.dtype)  # type: ignore[no-any-return]
    if placement.device == "cuda" and isinstance(stored, torch.dtype):
        return stored
    return torch.float32


DEFAULT_CONTEXT_LENGTH = 2048
"""Of a model whose config names no context length (none of ``CONTEXT_KEYS``)."""


def context_length_of(model: Any) -> int:
    """Longest sequence a loaded causal LM takes, read from its ``transformers`` config: that of
    a Hugging Face directory's model, of a LoRA adapter merged into its base, or of an lmspec
    export's module (which wraps the model as ``.lm``). The one source for every model shape: a
    manifest names no limit for a ``pretrained`` base, whose ``config.json`` holds it.

    >>> context_length_of(AutoModelForCausalLM.from_pretrained("base"))  # max_position_embeddings
    256
    """
    from ..domain.pretrained import context_length

    config = getattr(getattr(model, "lm", model), "config", None)
    found = context_length(config.to_dict()) if config is not None else None
    return found or DEFAULT_CONTEXT_LENGTH


def eos_of(generation_config: Any, tokenizer_eos: int | None) -> frozenset[int]:
    """End-of-sequence ids: the generation config's (one id or a list), else the tokenizer's."""
    eos = getattr(generation_config, "eos_token_id", None) if generation_config is not None else None
    if eos is None:
        eos = tokenizer_eos
    if eos is None:
        return frozenset()
    return frozenset([int(eos)] if isinstance(eos, int) else [int(e) for e in eos])


def load_hf_dir(path: Path, placement: Placement) -> TextModel:
    """A causal LM (or a LoRA adapter over one) in Hugging Face format."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    from ..model.quiet import loading_quietly

    adapter = (path / "adapter_config.json").is_file()
    if adapter:
        from ..model.adapters import AdapterError, check_adapter_dir

        try:
            check_adapter_dir(path)
        except AdapterError as exc:
            raise ModelLoadError(str(exc)) from None
    base = _adapter_base(path) if adapter else path
    try:
        config = AutoConfig.from_pretrained(base, local_files_only=True)
        dtype = torch_dtype(placement, getattr(config, "dtype", None))
        with loading_quietly():
            model = AutoModelForCausalLM.from_pretrained(base, dtype=dtype, local_files_only=True)
        tokenizer = AutoTokenizer.from_pretrained(path if (path / "tokenizer_config.json").is_file()
                                                  else base, local_files_only=True)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: cannot load a Hugging Face causal LM: {exc}") from None
    if adapter:
        from ..model.adapters import load_adapter

        model = load_adapter(model, path).merge_and_unload()
    move: Any = model.to  # transformers types .to() as a decorated method mypy cannot follow
    model = move(torch_device(placement)).eval()
    return TextModel(model, tokenizer, context_length=context_length_of(model),
                     eos=eos_of(model.generation_config, tokenizer.eos_token_id),
                     vocab_size=int(model.config.vocab_size), hf_tokenizer=True)


def _adapter_base(path: Path) -> Path:
    try:
        info = json.loads((path / "adapter_config.json").read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path / 'adapter_config.json'}: unreadable: {exc}") from None
    name = info.get("base_model_name_or_path")
    if not name:
        raise ModelLoadError(f"{path / 'adapter_config.json'}: no base_model_name_or_path")
    base = Path(name)
    base = base if base.is_absolute() else path / base
    if not (base / "config.json").is_file():
        raise ModelLoadError(f"{path / 'adapter_config.json'}: base model {name!r} is not a local "
                             f"Hugging Face directory ({base} has no config.json); nothing is "
                             "downloaded")
    return base


def from_export(exported: Any, context_length: int, placement: Placement,
                tokenizer_dir: Path | None = None) -> TextModel:
    """The causal LM inside an lmspec export (its module wraps a transformers model). An export
    in Hugging Face format holds the tokenizer's files (``tokenizer_dir``): that tokenizer serves,
    with the chat template the training data was rendered with. ``context_length`` never exceeds
    the model's own (:func:`context_length_of`)."""
    hf = getattr(exported.model, "lm", exported.model)
    context_length = min(context_length, context_length_of(hf))
    hf.to(device=torch_device(placement), dtype=torch_dtype(placement)).eval()
    if tokenizer_dir is not None:
        from transformers import AutoTokenizer

        try:
            hf_tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, local_files_only=True)
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{tokenizer_dir}: cannot load the tokenizer: {exc}") from None
        return TextModel(hf, hf_tokenizer, context_length=context_length,
                         eos=eos_of(hf.generation_config, hf_tokenizer.eos_token_id),
                         vocab_size=int(hf.config.vocab_size), hf_tokenizer=True)
    tokenizer = exported.transform.tokenizer
    return TextModel(hf, tokenizer, context_length=context_length,
                     eos=eos_of(None, getattr(tokenizer, "eos_id", None)),
                     vocab_size=int(hf.config.vocab_size), hf_tokenizer=False)
