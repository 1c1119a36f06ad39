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

from importlib.util import find_spec

from .errors import DataError

# The validator-only install has no numpy; there only the numpy-free modules work
# (``conversations``, ``chat_template``, ``errors``), which ``validate --check-env`` reads chat
# records with.
if find_spec("numpy") is not None:
    from .prepare import FORMAT_VERSION, PreparedData, prepare
    from .split import Split
    from .tokenizer import Tokenizer
    from .transform import Transform

__all__ = ["FORMAT_VERSION", "DataError", "PreparedData", "Split", "Tokenizer", "Transform", "prepare"]
