"""What a served model runs: a batch in, a batch out.

>>> loaded = load_export("runs/iris-train/export")
>>> loaded.predictor.predict({"features": np.array([[5.1, 3.5, 1.4, 0.2]], np.float32)})
{'logits': array([[ 4.2, -1.3, -3.0]], dtype=float32)}

The server talks to a :class:`Predictor` (rows in, rows out) and, for causal language models, to
a :class:`.lm.TextModel` that the generation engine drives.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..standard import Signature, TensorSpec

if TYPE_CHECKING:
    from ..standard import InferenceServiceSpec
    from .lm import TextModel


class Predictor(Protocol):
    """Rows in, rows out: every array's first dimension is the batch."""

    signature: Signature

    def predict(self, inputs: dict[str, Any]) -> dict[str, Any]: ...


@dataclass
class Loaded:
    """A model ready to serve."""

    predictor: Predictor | None
    """None when another server answers (``upstream``)."""
    language_model: TextModel | None = None
    version: str = "1"
    upstream: Any = None
    """The OpenAI-compatible server requests are relayed to (``engine: vllm``): the server's
    :class:`lmspec.serve.vllm.Upstream`, which this package does not know."""

    def require_predictor(self) -> Predictor:
        if self.predictor is None:
            raise ValueError("this server relays to another engine and has no predictor")
        return self.predictor

    def warm_up(self) -> None:
        """One forward pass on a dummy batch, so readiness means the model really runs."""
        if self.upstream is not None:
            return  # healthy already: it answered /health and /v1/models
        if self.language_model is not None:
            self.language_model.next_token_logits([self.language_model.encode("a") or [0]])
            return
        predictor = self.require_predictor()
        inputs = {}
        for spec in predictor.signature.inputs:
            shape = [1 if d < 0 else d for d in spec.shape]
            dtype = np.float32 if spec.dtype in ("float32", "float16", "bfloat16", "float64") else None
            inputs[spec.name] = np.zeros(shape, dtype=dtype or np.int64)
        predictor.predict(inputs)


DERIVED_OUTPUTS = ("probabilities", "label")
"""Outputs a classifier's signature may declare after its first (the network's scores): the
server derives them from the scores."""


class ExportedPredictor:
    """:class:`Predictor` over :meth:`lmspec.model.export.Exported.predict`, so a served prediction is
    exactly what the export predicts in Python (fitted preprocessing included).

    A classifier also answers the derived outputs its signature declares: ``probabilities``
    (softmax of the scores, [N, C]) and ``label`` (the most probable class's name, [N])."""

    def __init__(self, exported: Any) -> None:
        self.exported = exported
        self.signature: Signature = exported.manifest.spec.signature
        declared = {t.name for t in self.signature.outputs[1:]}
        self.derived = [n for n in DERIVED_OUTPUTS if n in declared] if exported.task == "classification" else []
        classes = exported.transform.classes
        self.classes: list[str] | None = [str(c) for c in classes] if classes is not None else None
        self._names = np.array(self.classes, dtype=object) if self.classes else None

        self._vocab: int | None = None
        self._context: int | None = None
        if exported.task == "causal-lm":
            self._vocab = _vocab_size(exported.model)
            self._context = context_length_of(exported)

    def check(self, inputs: dict[str, Any]) -> None:
        """Refuse, before a request joins a batch, inputs the model cannot take (see
        :func:`check_token_ids`): one bad request must not fail its batch."""
        if self._vocab is not None:
            check_token_ids(inputs, self._vocab, self._context)

    def predict(self, inputs: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = self.exported.predict(inputs)
        if self.derived:
            scores = np.asarray(result[self.signature.outputs[0].name], dtype=np.float64)
            shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
            result["probabilities"] = (shifted / shifted.sum(axis=1, keepdims=True)).astype(np.float32)
            if "label" in self.derived:
                result["label"] = self.labels(scores.argmax(axis=1))
        return result

    def labels(self, index: Any) -> Any:
        """Class names of class indices (any shape); the index itself when classes are unknown."""
        index = np.asarray(index)
        if self._names is not None:
            return self._names[index]  # one gather, not a Python loop over the rows
        return np.array([str(int(i)) for i in index.reshape(-1)], dtype=object).reshape(index.shape)


class HFPredictor:
    """OIP ``infer`` over a Hugging Face causal LM: ``input_ids`` [N, L] → ``logits`` [N, L, V]."""

    def __init__(self, lm: TextModel) -> None:
        self.lm = lm
        self.signature = Signature(
            inputs=[TensorSpec(name="input_ids", dtype="int64", shape=[-1, -1])],
            outputs=[TensorSpec(name="logits", dtype="float32", shape=[-1, -1, lm.vocab_size])])

    def check(self, inputs: dict[str, Any]) -> None:
        """Refuse ids the model cannot take (over-long, outside the vocabulary) before they join
        a batch, so a too-long request costs no forward pass."""
        check_token_ids(inputs, self.lm.vocab_size, self.lm.context_length)

    def predict(self, inputs: dict[str, Any]) -> dict[str, Any]:
        import torch

        ids = np.asarray(inputs["input_ids"], dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= self.lm.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.lm.vocab_size})")
        device = next(self.lm.model.parameters()).device
        with torch.inference_mode():
            out = self.lm.model(input_ids=torch.from_numpy(ids).to(device), use_cache=False).logits
        return {"logits": out.float().cpu().numpy()}


def check_token_ids(inputs: dict[str, Any], vocab: int, context: int | None) -> None:
    """Token ids a causal LM can take, checked before any forward pass: shape [batch, length]
    with length >= 1, at most ``context`` long, each id in [0, vocab); ValueError otherwise."""
    for name, array in inputs.items():
        ids = np.asarray(array)
        if ids.ndim != 2 or ids.shape[1] < 1:
            raise ValueError(f"input '{name}': token ids must have shape [batch, length] with "
                             f"length >= 1, got {list(ids.shape)}")
        if context is not None and ids.shape[1] > context:
            raise ValueError(f"input '{name}': {ids.shape[1]} token ids exceed the model's context "
                             f"length of {context}")
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocab):
            raise ValueError(f"input '{name}': token ids must lie in [0, {vocab}) for this "
                             f"model's vocabulary, got {int(ids.min())}..{int(ids.max())}")


def top_k(predictor: Any, result: dict[str, Any], output: str, k: int) -> Any:
    """The ``k`` most probable classes' ``label`` or ``probabilities``, most probable first [N, k]."""
    probs = np.asarray(result["probabilities"])
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    if output == "label":
        return predictor.labels(order)
    return np.take_along_axis(probs, order, axis=1)


def _vocab_size(model: Any) -> int | None:
    """Rows of the input embedding of a causal LM (None if it has none)."""
    import torch

    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            return int(module.num_embeddings)
    return None


def context_length_of(exported: Any) -> int:
    """Longest sequence a causal LM export takes, from the loaded model's own config
    (:func:`.lm.context_length_of`, the one source for every model shape: a ``pretrained`` base's
    limit is written nowhere else). Given a Model manifest alone, its architecture's
    ``contextLength`` or ``config``."""
    model = getattr(exported, "model", None)
    if model is not None:
        from .lm import context_length_of as of_model

        return of_model(model)
    from ..domain.pretrained import context_length

    arch = exported.spec.architecture
    if getattr(arch, "context_length", None):
        return int(arch.context_length)
    return context_length(getattr(arch, "config", None) or {}) or 1024


def load_export(path: str | Path, spec: InferenceServiceSpec | None = None) -> Loaded:
    """Load a model exported by ``lmspec run`` (see :mod:`lmspec.model.export`) or a causal LM in
    Hugging Face format, placed as ``spec.placement`` says (default: CPU, float32)."""
    from ..standard import Placement
    from .lm import from_export, load_hf_dir
    from .model_dir import is_hf_dir

    path = Path(path)
    placement = spec.placement if spec is not None else Placement()
    if is_hf_dir(path) and not (path / "export.json").is_file():
        lm = load_hf_dir(path, placement)
        return Loaded(HFPredictor(lm), lm)

    from ..model.export import load_exported, tokenizer_dir

    exported = load_exported(path)
    language_model = None
    if exported.task == "causal-lm":
        language_model = from_export(exported, context_length_of(exported), placement,
                                     tokenizer_dir(path))
    return Loaded(ExportedPredictor(exported), language_model)
