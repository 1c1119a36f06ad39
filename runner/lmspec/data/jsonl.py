"""JSON-lines records, for the data pipeline and for the numpy-free chat readers the validator
uses alike."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from .errors import DataError


class RecordFile(Protocol):
    """What reading records needs of a file (``_read.FileInfo`` is one)."""

    @property
    def path(self) -> Path: ...

    @property
    def display(self) -> str: ...


def jsonl_records(fi: RecordFile) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line of a JSON-lines file; anything but an
    object is a DataError naming the line. Decoding errors surface to the caller."""
    with fi.path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON: {e.msg} (column {e.colno})", file=fi.display,
                                row=n, unit="line") from None
            except RecursionError:
                raise DataError("invalid JSON: nested too deeply to read", file=fi.display,
                                row=n, unit="line") from None
            except ValueError:  # json's own refusal of an integer with more than 4300 digits
                raise DataError("invalid JSON: an integer with too many digits", file=fi.display,
                                row=n, unit="line") from None
            if not isinstance(rec, dict):
                raise DataError(f"expected a JSON object, got {type(rec).__name__}",
                                file=fi.display, row=n, unit="line")
            yield n, rec
