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

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

from .errors import DataError

if TYPE_CHECKING:
    from .prepare import FORMAT_VERSION, PreparedData, prepare
    from .split import Split
    from .tokenizer import Tokenizer
    from .transform import Transform

# Imported on first use. The validator reads chat records and templates with the modules that
# need neither numpy nor the models (``conversations``, ``chat_template``, ``errors``), and pays
# for no more; the validator-only install has no numpy at all.
_WHERE = {"FORMAT_VERSION": "prepare", "PreparedData": "prepare", "prepare": "prepare", "Split": "split",
          "Tokenizer": "tokenizer", "Transform": "transform"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _Package(types.ModuleType):
    def __setattr__(self, name: str, value: Any) -> None:
        # Importing the submodule ``prepare`` makes the import system set the package's attribute
        # ``prepare`` to it; ``lmspec.data.prepare`` stays the function, as it was when the
        # package imported it eagerly.
        if name == "prepare" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package

__all__ = ["FORMAT_VERSION", "DataError", "PreparedData", "Split", "Tokenizer", "Transform", "prepare"]
