"""The data pipeline: a ``Dataset`` manifest → model-ready splits and a fitted transform.

>>> import lmspec
>>> from lmspec.data import prepare
>>> m = lmspec.load(["examples/iris"]).get("Dataset", "iris")
>>> data = prepare(m.obj, m.base_dir, model_task="classification")
>>> data.train.inputs.shape, data.transform.classes
((105, 4), ['setosa', 'versicolor', 'virginica'])

It owns reading data files (csv, jsonl, parquet, text), preprocessing fitted on the training
split, seeded splits and the data cache. It takes a validated manifest: what the validator's rules
guarantee is asserted here, not reported; what only the data can tell (a missing column, a value
that does not parse) raises :class:`DataError` with the file, row and column, and ``lmspec
validate --check-env`` reports the same through these readers.

Needs numpy; parquet sources need pyarrow and file tokenizers the ``tokenizers`` package (both in
the ``run`` extra). Never imports torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import DataError

if TYPE_CHECKING:
    from .prepare import FORMAT_VERSION, PreparedData, prepare
    from .split import Split
    from .tokenizer import Tokenizer
    from .transform import Transform

# Loaded on first use (PEP 562): the validator imports the numpy-free modules of this package
# (``conversations``, ``chat_template``, ``errors``), and a validator-only install has no numpy;
# importing the pipeline eagerly would also put numpy on every ``lmspec validate``'s cold start.
_LAZY = {"FORMAT_VERSION": "prepare", "PreparedData": "prepare", "prepare": "prepare", "Split": "split",
         "Tokenizer": "tokenizer", "Transform": "transform"}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    return getattr(import_module(f".{_LAZY[name]}", __name__), name)


__all__ = ["FORMAT_VERSION", "DataError", "PreparedData", "Split", "Tokenizer", "Transform", "prepare"]
