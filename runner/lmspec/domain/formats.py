"""Source formats by file extension: the readers infer them, the validator checks them.

>>> source_format("data/train.ndjson", None), source_format("data/train", None)
('jsonl', None)
"""

from __future__ import annotations

FORMATS_BY_SUFFIX = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".txt": "text"}
"""Source formats by file extension (what the data readers infer when ``format`` is omitted)."""


def source_format(path: str, declared: str | None) -> str | None:
    """The format a source is read as: the declared one, else the one its extension tells."""
    if declared is not None:
        return declared
    dot = path.rfind(".")
    return FORMATS_BY_SUFFIX.get(path[dot:].lower()) if dot > path.rfind("/") else None
