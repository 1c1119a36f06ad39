"""The data pipeline: a ``Dataset`` manifest → model-ready splits and a fitted transform.

>>> import lmspec
>>> from lmspec.data import prepare
>>> m = lmspec.load(["examples/iris"]).get("Dataset", "iris")
>>> data = prepare(m.obj, m.base_dir, model_task="classification")
>>> data.train.inputs.shape, data.transform.classes
((105, 4), ['setosa', 'versicolor', 'virginica'])

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

_LAZY = {"FORMAT_VERSION": "prepare", "PreparedData": "prepare", "prepare": "prepare",
         "Split": "split", "Tokenizer": "tokenizer", "Transform": "transform"}


def __getattr__(name: str) -> Any:
    # Imported on first use, so the validator can read chat records (``data.conversations``)
    # without numpy, which only the ``run`` extra installs.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["FORMAT_VERSION", "DataError", "PreparedData", "Split", "Tokenizer", "Transform", "prepare"]
