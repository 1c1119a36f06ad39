"""What the server runs: a batch in, a batch out.

>>> loaded = load_export("runs/iris-train/export")
>>> loaded.predictor.predict({"features": np.array([[5.1, 3.5, 1.4, 0.2]], np.float32)})
{'logits': array([[ 4.2, -1.3, -3.0]], dtype=float32)}

The server talks only to the two small protocols below, so any model that can take a batch of
rows (and, for text generation, a batch of token sequences) can be served.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..standard import Signature


class Predictor(Protocol):
    """Rows in, rows out: every array's first dimension is the batch."""

    signature: Signature

    def predict(self, inputs: dict[str, Any]) -> dict[str, Any]: ...


class LanguageModel(Protocol):
    """Next-token logits for a batch of token sequences, plus the tokenizer."""

    context_length: int
    eos_token_id: int | None

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def next_token_logits(self, sequences: list[list[int]]) -> Any:
        """Logits [len(sequences), vocab] of the token that follows each sequence."""
        ...


@dataclass
class Loaded:
    """A model ready to serve."""

    predictor: Predictor
    language_model: LanguageModel | None = None
    version: str = "1"

    def warm_up(self) -> None:
        """One forward pass on a dummy batch, so readiness means the model really runs."""
        if self.language_model is not None:
            self.language_model.next_token_logits([self.language_model.encode("a") or [0]])
            return
        inputs = {}
        for spec in self.predictor.signature.inputs:
            shape = [1 if d < 0 else d for d in spec.shape]
            dtype = np.float32 if spec.dtype in ("float32", "float16", "bfloat16", "float64") else None
            inputs[spec.name] = np.zeros(shape, dtype=dtype or np.int64)
        self.predictor.predict(inputs)


class ExportedPredictor:
    """:class:`Predictor` over :meth:`lmspec.model.export.Exported.predict`, so a served prediction is
    exactly what the export predicts in Python (fitted preprocessing included)."""

    def __init__(self, exported: Any) -> None:
        self.exported = exported
        self.signature: Signature = exported.manifest.spec.signature

        self._vocab: int | None = None
        self._context: int | None = None
        if exported.task == "causal-lm":
            self._vocab = _vocab_size(exported.model)
            self._context = context_length_of(exported.manifest)

    def check(self, inputs: dict[str, Any]) -> None:
        """Refuse, before a request joins a batch, inputs the model cannot take (token ids outside
        the vocabulary, empty or over-long sequences): one bad request must not fail its batch."""
        if self._vocab is None:
            return
        for name, array in inputs.items():
            ids = np.asarray(array)
            if ids.ndim != 2 or ids.shape[1] < 1:
                raise ValueError(f"input '{name}': token ids must have shape [batch, length] with "
                                 f"length >= 1, got {list(ids.shape)}")
            if self._context is not None and ids.shape[1] > self._context:
                raise ValueError(f"input '{name}': {ids.shape[1]} token ids exceed the model's context "
                                 f"length of {self._context}")
            if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= self._vocab):
                raise ValueError(f"input '{name}': token ids must lie in [0, {self._vocab}) for this "
                                 f"model's vocabulary, got {int(ids.min())}..{int(ids.max())}")

    def predict(self, inputs: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.exported.predict(inputs)
        return result


def _vocab_size(model: Any) -> int | None:
    """Rows of the input embedding of a causal LM (None if it has none)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            return int(module.num_embeddings)
    return None


class TorchLanguageModel:
    """:class:`LanguageModel` over a causal LM module mapping ids [N, L] to logits [N, L, V]."""

    def __init__(self, module: Any, tokenizer: Any, context_length: int) -> None:
        self.module = module
        self.tokenizer = tokenizer
        self.context_length = context_length
        self.eos_token_id: int | None = getattr(tokenizer, "eos_id", None)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text))

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(list(ids)))

    def next_token_logits(self, sequences: list[list[int]]) -> Any:
        import torch

        # Right padding is exact for a causal model: position i attends only to positions <= i,
        # so the logits at each sequence's last real token never see the padding.
        lengths = [len(s) for s in sequences]
        ids = torch.zeros((len(sequences), max(lengths)), dtype=torch.long)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        with torch.inference_mode():
            out = self.module(ids)
            logits = getattr(out, "logits", out)
            last = logits[torch.arange(len(sequences)), torch.tensor(lengths) - 1]
        return last.float().numpy()


def context_length_of(manifest: Any) -> int:
    """Longest sequence a causal LM takes, from its architecture."""
    arch = manifest.spec.architecture
    if getattr(arch, "context_length", None):
        return int(arch.context_length)
    config = getattr(arch, "config", {}) or {}
    for key in ("n_positions", "max_position_embeddings", "n_ctx", "max_sequence_length"):
        if key in config:
            return int(config[key])
    return 1024


def load_export(path: str | Path) -> Loaded:
    """Load a model exported by ``lmspec run`` (see :mod:`lmspec.model.export`)."""
    from ..model.export import load_exported

    exported = load_exported(path)
    language_model = None
    if exported.task == "causal-lm":
        language_model = TorchLanguageModel(
            exported.model, exported.transform.tokenizer, context_length_of(exported.manifest))
    return Loaded(ExportedPredictor(exported), language_model)
