"""Resolve a Dataset's sources to files, verify their digests and read the declared columns.

Every value is parsed to its declared dtype as it is read, so a bad value is reported with its
file, row and column: numeric columns become float64 arrays with NaN for a missing value; string
columns become object arrays of ``str`` with ``None`` for a missing value.
"""

from __future__ import annotations

import csv
import difflib
import glob
import json
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..domain.formats import FORMATS_BY_SUFFIX
from ..files import sha256_file
from ..standard import DatasetSpec
from .errors import NAME_CHARS, DataError, excerpt, names_phrase, value_phrase
from .jsonl import jsonl_records

NUMERIC = {"bool", "uint8", "int8", "int16", "int32", "int64", "float16", "bfloat16", "float32",
           "float64"}
INT_RANGES = {"uint8": (0, 255), "int8": (-128, 127), "int16": (-(2**15), 2**15 - 1),
              "int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
TEXT_COLUMN = "text"
CONTROL = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
"""Control characters (but tab) and line separators: never part of a number or a bool as written,
though Python's ``float`` and numpy take some of them for spaces (``3.5\\x1f`` reads as 3.5)."""


@dataclass(frozen=True)
class FileInfo:
    """One file a source resolved to."""

    path: Path
    key: str
    """The name recorded in lock files: relative to the manifest directory when the source was."""
    display: str
    """The name shown in messages."""
    format: str
    sha256: str
    source: int
    split: str | None

    @property
    def unit(self) -> str:
        return "line" if self.format == "jsonl" else "row"


@dataclass(frozen=True)
class ColumnSpec:
    """A column the pipeline needs: its declared dtype and the manifest field that declares it."""

    name: str
    dtype: str
    field: str


def display_path(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def resolve_sources(spec: DatasetSpec, base_dir: Path) -> list[FileInfo]:
    """Expand globs (sorted, so every machine sees the same order), infer formats, check digests."""
    files: list[FileInfo] = []
    for i, src in enumerate(spec.sources):
        field = f"spec.sources[{i}]"
        pattern = src.path if os.path.isabs(src.path) else str(base_dir / src.path)
        if glob.has_magic(src.path):
            paths = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if os.path.isfile(p))
            if not paths:
                raise DataError(f"{src.path!r} matches no file (looked in {display_path(base_dir)})",
                                field=f"{field}.path")
            if src.sha256 is not None and len(paths) > 1:
                raise DataError(f"sha256 pins one file but {src.path!r} matches {len(paths)}",
                                field=f"{field}.sha256", hint="list the files as separate sources")
        else:
            p = Path(pattern)
            if not p.is_file():
                raise DataError(f"file {display_path(p)} does not exist", field=f"{field}.path")
            paths = [p]
        for p in paths:
            fmt = src.format or FORMATS_BY_SUFFIX.get(p.suffix.lower())
            assert fmt is not None, f"{field}: no format (the rule dataset.source-format)"
            digest = sha256_file(p)
            if src.sha256 is not None and digest != src.sha256:
                raise DataError(f"sha256 mismatch: the manifest pins {src.sha256}, the file has {digest}",
                                file=display_path(p), field=f"{field}.sha256",
                                hint="the file changed; update the digest only if the change is intended")
            key = p.resolve().as_posix() if os.path.isabs(src.path) else \
                Path(os.path.relpath(p, base_dir)).as_posix()
            files.append(FileInfo(p, key, display_path(p), fmt, digest, i, src.split))
    return files


@dataclass
class Table:
    """Parsed columns of every row, and where each row came from."""

    columns: dict[str, np.ndarray]
    file_id: np.ndarray
    row: np.ndarray
    """User-facing row number (csv: header is row 1; jsonl: line; text: 0, a file has no rows)."""
    files: list[FileInfo]

    def __len__(self) -> int:
        return len(self.row)

    def take(self, index: np.ndarray) -> Table:
        return Table({k: v[index] for k, v in self.columns.items()}, self.file_id[index],
                     self.row[index], self.files)

    def where(self, i: int) -> dict[str, Any]:
        """Keyword arguments locating row ``i`` for :class:`DataError`."""
        f = self.files[int(self.file_id[i])]
        row = int(self.row[i])
        return {"file": f.display, "row": row or None, "unit": f.unit}


def read_table(files: list[FileInfo], columns: Sequence[ColumnSpec]) -> Table:
    parts = [_read_file(fi, columns) for fi in files]
    cols = {c.name: np.concatenate([p[0][c.name] for p in parts]) for c in columns}
    file_id = np.concatenate([np.full(len(p[1]), k, dtype=np.int32) for k, p in enumerate(parts)])
    rows = np.concatenate([p[1] for p in parts]).astype(np.int64)
    return Table(cols, file_id, rows, files)


def _read_file(fi: FileInfo, columns: Sequence[ColumnSpec]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    reader = {"csv": _read_csv, "jsonl": _read_jsonl, "parquet": _read_parquet, "text": _read_text}
    raw, rows, available = reader[fi.format](fi, columns)
    for c in columns:
        if c.name not in available:
            raise missing_column(c, available, fi)
    out = {c.name: parse_column(raw[c.name], c, fi, rows) for c in columns}
    return out, rows


def missing_column(c: ColumnSpec, available: list[str], fi: FileInfo) -> DataError:
    """The error for a declared column the file lacks: the names it has (read from the file,
    so shown as :func:`~lmspec.data.errors.names_phrase` shows them) and the closest one."""
    close = difflib.get_close_matches(c.name, available, n=1)
    shown = excerpt(close[0], NAME_CHARS) if close else None
    return DataError(f"column {c.name!r} is not in the data; it has: {names_phrase(available)}",
                     file=fi.display, field=c.field, hint=f"did you mean {shown}?" if shown else None)


RawColumns = dict[str, Any]


def _read_csv(fi: FileInfo, columns: Sequence[ColumnSpec]) -> tuple[RawColumns, np.ndarray, list[str]]:
    try:
        with fi.path.open(newline="", encoding="utf-8-sig") as f:
            records = list(csv.reader(f))
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", file=fi.display) from None
    except csv.Error as e:
        raise DataError(f"malformed csv: {e}", file=fi.display) from None
    if not records or not records[0]:
        raise DataError("the file is empty; a csv source needs a header row", file=fi.display, row=1)
    header = [h.strip() for h in records[0]]
    body = records[1:]
    width = len(header)
    if set(map(len, body)) <= {width}:
        rows = np.arange(2, len(body) + 2, dtype=np.int64)  # the common case, checked in bulk
    else:
        # Blank lines count as rows, as in a spreadsheet, so reported rows match what users see.
        numbered = [(n, r) for n, r in enumerate(body, start=2) if r]
        for n, r in numbered:
            if len(r) != width:
                raise DataError(f"has {len(r)} fields; the header has {width}", file=fi.display, row=n)
        rows = np.fromiter((n for n, _ in numbered), dtype=np.int64, count=len(numbered))
        body = [r for _, r in numbered]
    wanted = [c.name for c in columns if c.name in header]
    index = [header.index(n) for n in wanted]
    raw: RawColumns = {name: csv_column([r[j] for r in body]) for name, j in zip(wanted, index, strict=True)}
    return raw, rows, header


def csv_column(values: list[str]) -> np.ndarray:
    """One column of csv text as numpy strings (the fast path of :func:`parse_column`). numpy
    drops a string's trailing NUL characters and reads some control characters as spaces, which
    would turn ``3.5\\x00`` or ``3.5\\x1f`` into a valid 3.5: a column holding a control character
    stays Python strings, so its values are parsed (and refused) as written."""
    if values and CONTROL.search("".join(values)):
        return np.array(values, dtype=object)
    return np.array(values, dtype=str) if values else np.array([], dtype=str)


def _read_jsonl(fi: FileInfo, columns: Sequence[ColumnSpec]) -> tuple[RawColumns, np.ndarray, list[str]]:
    records: list[dict[str, Any]] = []
    lines: list[int] = []
    keys: dict[str, None] = {}
    try:
        for n, rec in jsonl_records(fi):
            records.append(rec)
            lines.append(n)
            keys.update(dict.fromkeys(rec))
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", file=fi.display) from None
    # A key missing from some records is a missing value there; missing from all, a missing column.
    raw = {c.name: [r.get(c.name) for r in records] for c in columns if c.name in keys}
    return raw, np.asarray(lines, dtype=np.int64), list(keys)


def _read_parquet(fi: FileInfo, columns: Sequence[ColumnSpec]) -> tuple[RawColumns, np.ndarray, list[str]]:
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
        table = pf.read(columns=[c.name for c in columns if c.name in names])
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"cannot read parquet: {str(e).strip()}", file=fi.display) from None
    raw: RawColumns = {}
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_integer(col.type) or pa.types.is_floating(col.type):
            raw[name] = pc.cast(col, pa.float64()).to_numpy()
        else:
            raw[name] = col.to_pylist()
    return raw, np.arange(1, table.num_rows + 1, dtype=np.int64), names


def _read_text(fi: FileInfo, columns: Sequence[ColumnSpec]) -> tuple[RawColumns, np.ndarray, list[str]]:
    try:
        text = fi.path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text (byte {e.start})", file=fi.display) from None
    # A text file is one document in one column, ``text``; it has no rows to number.
    return {TEXT_COLUMN: np.array([text], dtype=object)}, np.zeros(1, dtype=np.int64), [TEXT_COLUMN]


def parse_column(raw: Any, c: ColumnSpec, fi: FileInfo, rows: np.ndarray) -> np.ndarray:
    """Parse raw values to ``c.dtype``: float64 (NaN = missing) or object str (None = missing)."""
    if c.dtype == "string":
        return _parse_strings(raw)
    parse = _parse_bools if c.dtype == "bool" else _parse_floats
    values = parse(raw, c, fi, rows)
    finite = np.isfinite(values) | np.isnan(values)
    if not finite.all():
        i = int(np.argmin(finite))
        # The value as written: a 400-digit integer parses to inf, which is not what the file says.
        raise DataError(f"{value_phrase(_py(raw)[i])} is not a finite number", file=fi.display,
                        row=int(rows[i]) or None, unit=fi.unit, column=c.name, field=c.field)
    if c.dtype in INT_RANGES:
        lo, hi = INT_RANGES[c.dtype]
        present = ~np.isnan(values)
        bad = present & ((np.mod(values, 1) != 0) | (values < lo) | (values > hi))
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"value {_show(values[i])} is not an {c.dtype} (integer in [{lo}, {hi}])",
                            file=fi.display, row=int(rows[i]) or None, unit=fi.unit,
                            column=c.name, field=c.field)
    return values


def _py(raw: Any) -> list[Any]:
    """Plain Python values, so messages show 'abc', not np.str_('abc')."""
    return raw.tolist() if isinstance(raw, np.ndarray) else list(raw)


def _show(v: float) -> str:
    """A parsed number for a message: integers without ``.0``, at most a short excerpt long."""
    v = float(v)
    return str(excerpt(int(v) if v.is_integer() and abs(v) < 1e16 else v))


def _parse_strings(raw: Any) -> np.ndarray:
    out = np.empty(len(raw), dtype=object)
    for i, v in enumerate(_py(raw)):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            out[i] = None
        else:
            s = v if isinstance(v, str) else (json.dumps(v) if isinstance(v, bool) else str(v))
            out[i] = s if s.strip() else None
    return out


def _parse_floats(raw: Any, c: ColumnSpec, fi: FileInfo, rows: np.ndarray) -> np.ndarray:
    if isinstance(raw, np.ndarray) and raw.dtype.kind == "f":
        return raw.astype(np.float64, copy=False)
    if isinstance(raw, np.ndarray) and raw.dtype.kind == "U":
        stripped = np.char.strip(raw)
        try:
            # The fast path for csv; a missing (empty) value becomes NaN.
            return np.where(stripped == "", "nan", stripped).astype(np.float64)
        except ValueError:
            pass  # locate the bad value below
    out = np.empty(len(raw), dtype=np.float64)
    for i, v in enumerate(_py(raw)):
        try:
            out[i] = _to_float(v)
        except (TypeError, ValueError):
            raise DataError(f"{value_phrase(v)} is not a number{_control_in(v)}", file=fi.display,
                            row=int(rows[i]) or None, unit=fi.unit, column=c.name,
                            field=c.field, hint=f"the column is declared {c.dtype}") from None
    return out


def _control_in(v: Any) -> str:
    """``: it holds the control character U+0000`` for text that holds one, else nothing."""
    found = CONTROL.search(v) if isinstance(v, str) else None
    return f": it holds the control character U+{ord(found.group()):04X}" if found else ""


def _to_float(v: Any) -> float:
    if v is None:
        return math.nan
    if isinstance(v, bool):
        raise TypeError("bool")  # true/false in a numeric column is almost always a mistake
    if isinstance(v, int | float):
        try:
            return float(v)
        except OverflowError:  # a JSON integer beyond float64, as csv text of one parses: inf
            return math.inf if v > 0 else -math.inf
    if isinstance(v, str):
        if CONTROL.search(v):
            raise ValueError("a control character")
        s = v.strip()
        return math.nan if not s else float(s)
    raise TypeError(type(v).__name__)


_BOOLS = {"true": 1.0, "false": 0.0, "1": 1.0, "0": 0.0}


def _parse_bools(raw: Any, c: ColumnSpec, fi: FileInfo, rows: np.ndarray) -> np.ndarray:
    if isinstance(raw, np.ndarray) and raw.dtype.kind == "f":
        values = raw.astype(np.float64)
        ok = np.isnan(values) | (values == 0) | (values == 1)
        if not ok.all():
            i = int(np.argmin(ok))
            raise DataError(f"value {_show(values[i])} is not a bool", file=fi.display,
                            row=int(rows[i]) or None, unit=fi.unit, column=c.name, field=c.field)
        return values
    out = np.empty(len(raw), dtype=np.float64)
    for i, v in enumerate(_py(raw)):
        if v is None or (isinstance(v, str) and not v.strip() and not _control_in(v)):
            out[i] = math.nan
        elif isinstance(v, bool):
            out[i] = float(v)
        elif str(v).strip().lower() in _BOOLS and not _control_in(v):
            out[i] = _BOOLS[str(v).strip().lower()]
        else:
            raise DataError(f"{value_phrase(v)} is not a bool{_control_in(v)}", file=fi.display,
                            row=int(rows[i]) or None, unit=fi.unit, column=c.name, field=c.field,
                            hint="use true/false or 1/0")
    return out
