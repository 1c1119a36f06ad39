"""Layer 5, the data itself (``--check-env``): what data preparation would refuse in the files a
Dataset names — a declared column that is not there, a value that does not parse as its dtype,
a label that is not one of the declared classes — as findings at the data file's row.

It reuses the runner's readers (``lmspec.data``), which need numpy (and pyarrow for parquet) but
never torch; they are imported only when a Dataset is checked.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..manifests.findings import Finding
from ..validator import registry as rules


def check_dataset(m: Any) -> Iterator[Finding]:
    """The data of a Dataset manifest (any other kind: nothing), as :mod:`.environment` runs it
    once the files are there and intact."""
    if m.kind == "Dataset":
        yield from check_data(m.obj, m.base_dir, m.file)


def check_data(dataset: Any, base_dir: Path, manifest_file: str) -> Iterator[Finding]:
    """Findings for the data of one schema-valid Dataset whose files exist and match their digests."""
    try:
        from ..data._read import ColumnSpec, read_table, resolve_sources
        from ..data.errors import DataError, value_phrase
        from ..data.transform import labels_of
    except ImportError as exc:  # numpy (or pyarrow) is missing: say so, do not pass silently
        yield Finding(rules.ENV_DATA, "error", manifest_file, 1, 1, "",
                      f"cannot read the data to check it: {exc}", "pip install 'lmspec[run]'")
        return
    spec = dataset.spec
    name = dataset.metadata.name
    tokenize = next((s for s in spec.preprocessing if s.type == "tokenize"), None)
    if tokenize is not None:  # language-model data: the one text column
        columns = [ColumnSpec(tokenize.column, "string", "spec.preprocessing")]
    else:
        declared: dict[str, ColumnSpec] = {}
        for j, f in enumerate(spec.features):
            declared.setdefault(f.name, ColumnSpec(f.name, f.dtype, f"spec.features[{j}]"))
        if spec.target is not None:
            declared.setdefault(spec.target.name, ColumnSpec(spec.target.name, spec.target.dtype, "spec.target"))
        columns = list(declared.values())
    try:
        files = resolve_sources(spec, base_dir)
        if tokenize is not None:
            # Streamed, as preparation reads it: a corpus larger than memory is checked too.
            from ..data.lmprep import check_sources

            check_sources(files, columns[0], list(spec.preprocessing))
            return
        table = read_table(files, columns)
    except DataError as exc:
        yield _finding(exc, name, manifest_file)
        return
    target = spec.target
    if tokenize is None and target is not None and target.classes is not None and not _ignores_unknown(spec):
        classes = set(target.classes)
        labels = labels_of(table.columns[target.name]).tolist()
        for i, label in enumerate(labels):
            if label is not None and label not in classes:
                where = table.where(i)
                yield _finding(DataError(f"{value_phrase(label, 'label')} is not one of the declared classes "
                                         f"({', '.join(target.classes)})", column=target.name,
                                         field="spec.target.classes", **where,
                                         hint="add it to target.classes, or fix the row"), name, manifest_file)
                break


def _ignores_unknown(spec: Any) -> bool:
    """A labelEncode step on the target with ``unknown: ignore`` drops rows of other labels."""
    return any(s.type == "labelEncode" and s.column == spec.target.name and s.unknown == "ignore"
               for s in spec.preprocessing)


def _finding(exc: Any, dataset: str, manifest_file: str) -> Finding:
    """A located :class:`~lmspec.data.DataError` → a finding at the data file's row (the column is
    named in the message; data files have rows, not character columns)."""
    column = f"column {exc.column!r}: " if exc.column else ""
    field = f" (Dataset {dataset!r}, {exc.field})" if exc.field else f" (Dataset {dataset!r})"
    file = exc.file or manifest_file
    return Finding(rules.ENV_DATA, "error", file, exc.row or 1, 1, "", f"{column}{exc.message}{field}",
                   exc.hint or "")
