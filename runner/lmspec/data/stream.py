"""Read a csv, jsonl or parquet file in chunks of rows, for files larger than memory.

>>> for table in read_chunks(Path("new.csv"), [ColumnSpec("x", "float32", "x")], rows=4096):
...     table.columns["x"]      # float64 [≤ 4096]; table.row holds the file's row numbers

Values are parsed to their declared dtypes exactly as :func:`lmspec.data.prepare` parses them
(the same :func:`parse_column`), so a model sees the same numbers in batch inference as in
training, and a bad value is reported with its file, row and column.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..domain.formats import FORMATS_BY_SUFFIX
from ._read import (
    ColumnSpec,
    FileInfo,
    Table,
    csv_column,
    display_path,
    missing_column,
    parse_column,
)
from .errors import DataError
from .jsonl import jsonl_records

STREAM_FORMATS = ("csv", "jsonl", "parquet")


def file_info(path: Path, fmt: str | None = None) -> FileInfo:
    """A file given on the command line, its format from ``fmt`` or its extension."""
    fmt = fmt or FORMATS_BY_SUFFIX.get(path.suffix.lower())
    if fmt not in STREAM_FORMATS:
        raise DataError(f"cannot read {display_path(path)}: expected a .csv, .jsonl or .parquet file")
    if not path.is_file():
        raise DataError(f"file {display_path(path)} does not exist")
    return FileInfo(path, str(path), display_path(path), fmt, "", 0, None)


def count_rows(fi: FileInfo) -> int | None:
    """Rows in the file when that is cheap to know (parquet metadata), else None."""
    if fi.format != "parquet":
        return None
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None  # reading it says what is missing
    try:
        return int(pq.ParquetFile(fi.path).metadata.num_rows)
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"cannot read parquet: {str(e).strip()}", file=fi.display) from None


def read_chunks(fi: FileInfo, columns: Sequence[ColumnSpec], rows: int) -> Iterator[Table]:
    """Tables of at most ``rows`` rows, in file order, holding the parsed ``columns``."""
    reader = {"csv": _csv_chunks, "jsonl": _jsonl_chunks, "parquet": _parquet_chunks}[fi.format]
    for raw, numbers, available in reader(fi, columns, rows):
        for c in columns:
            if c.name not in available:
                raise missing_column(c, available, fi)
        parsed = {c.name: parse_column(raw[c.name], c, fi, numbers) for c in columns}
        yield Table(parsed, np.zeros(len(numbers), dtype=np.int32), numbers, [fi])


Chunk = tuple[dict[str, Any], np.ndarray, list[str]]


def _csv_chunks(fi: FileInfo, columns: Sequence[ColumnSpec], rows: int) -> Iterator[Chunk]:
    try:
        with fi.path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = [h.strip() for h in next(reader, [])]
            if not header:
                raise DataError("the file is empty; a csv file needs a header row", file=fi.display, row=1)
            index = {n: header.index(n) for n in (c.name for c in columns) if n in header}
            body: list[list[str]] = []
            numbers: list[int] = []
            emitted = False
            for n, record in enumerate(reader, start=2):
                if not record:
                    continue  # a blank line, as in prepare
                if len(record) != len(header):
                    raise DataError(f"has {len(record)} fields; the header has {len(header)}",
                                    file=fi.display, row=n)
                body.append(record)
                numbers.append(n)
                if len(body) == rows:
                    yield _csv_raw(body, index), np.asarray(numbers, dtype=np.int64), header
                    body, numbers, emitted = [], [], True
            if body or not emitted:
                yield _csv_raw(body, index), np.asarray(numbers, dtype=np.int64), header
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", file=fi.display) from None
    except csv.Error as e:
        raise DataError(f"malformed csv: {e}", file=fi.display) from None


def _csv_raw(body: list[list[str]], index: dict[str, int]) -> dict[str, Any]:
    return {name: csv_column([r[j] for r in body]) for name, j in index.items()}


def _jsonl_chunks(fi: FileInfo, columns: Sequence[ColumnSpec], rows: int) -> Iterator[Chunk]:
    names = [c.name for c in columns]
    records: list[dict[str, Any]] = []
    numbers: list[int] = []
    seen: dict[str, None] = {}
    emitted = False

    def chunk() -> Chunk:
        # A key missing from some records is a missing value there (reported by the caller's
        # null check); missing from all records so far, a missing column. A file without
        # records lacks no column: its result is empty, as for a header-only csv.
        known = seen if seen or emitted or records else dict.fromkeys(names)
        raw = {n: [r.get(n) for r in records] for n in names if n in known}
        return raw, np.asarray(numbers, dtype=np.int64), list(known)

    try:
        for n, rec in jsonl_records(fi):
            records.append(rec)
            numbers.append(n)
            seen.update(dict.fromkeys(rec))
            if len(records) == rows:
                yield chunk()
                records, numbers, emitted = [], [], True
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", file=fi.display) from None
    if records or not emitted:
        yield chunk()


def _parquet_chunks(fi: FileInfo, columns: Sequence[ColumnSpec], rows: int) -> Iterator[Chunk]:
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading parquet needs pyarrow", file=fi.display,
                        hint="pip install 'lmspec[run]'") from None
    try:
        pf = pq.ParquetFile(fi.path)
        names = list(pf.schema_arrow.names)
        wanted = [c.name for c in columns if c.name in names]
        start = 1
        for batch in pf.iter_batches(batch_size=rows, columns=wanted):
            raw: dict[str, Any] = {}
            for name in batch.schema.names:
                col = batch.column(name)
                if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
                    raw[name] = pc.cast(col, pa.float64()).to_numpy(zero_copy_only=False)
                else:
                    raw[name] = col.to_pylist()
            yield raw, np.arange(start, start + batch.num_rows, dtype=np.int64), names
            start += batch.num_rows
        if start == 1:
            yield {n: [] for n in wanted}, np.zeros(0, dtype=np.int64), names
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"cannot read parquet: {str(e).strip()}", file=fi.display) from None
