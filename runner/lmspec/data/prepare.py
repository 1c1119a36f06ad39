"""``prepare``: a ``Dataset`` manifest → model-ready splits, a fitted transform and file digests.

>>> # data = prepare(dataset, Path("examples/iris"), model_task="classification",
>>> #                cache_dir=Path("runs/.cache/data"))
>>> # data.train.inputs.shape, data.transform.classes
>>> # ((105, 4), ['setosa', 'versicolor', 'virginica'])

Order of work: resolve and hash the files → look in the cache → read and parse the declared
columns → row-level steps (dropNulls, dedupe, filter) on all rows → split → fit the other steps on
the training split → apply them to every split.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..files import atomic_write, sha256_file
from ..standard import (
    Dataset,
    DatasetSpec,
    FileTokenizer,
    GaussianNoise,
    LabelEncode,
    MinMax,
    Pack,
    Standardize,
    Tokenize,
)
from . import _tabular, _text
from ._read import TEXT_COLUMN, ColumnSpec, FileInfo, Table, read_table, resolve_sources
from ._rows import apply_row_steps, null_mask
from .errors import DataError
from .split import SPLITS, Split, ratio_split
from .tokenizer import Tokenizer
from .transform import Transform, labels_of

FORMAT_VERSION = "lmspec-data-1"
"""Part of every cache fingerprint; bump it whenever the same inputs would give different arrays."""

TASKS = ("classification", "regression", "causal-lm")


@dataclass
class PreparedData:
    """Everything training needs from the data, and what the run's lock file records."""

    train: Split
    validation: Split
    test: Split
    transform: Transform
    fingerprint: str
    """sha256 over the Dataset spec, the model task, every file's digest and the format version."""
    files: dict[str, str]
    """Every data and tokenizer file read → its sha256; keys are relative to the manifest directory
    when the manifest's path was."""
    counts: dict[str, dict[str, int]] | None = None
    """Chat data: per split, conversations read, truncated, dropped, sequences and tokens."""

    def split(self, name: str) -> Split:
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]


def prepare(
    dataset: Dataset,
    base_dir: Path,
    *,
    model_task: str,
    cache_dir: Path | None = None,
    rank: int = 0,
    world_size: int = 1,
    tokenizer_dir: Path | None = None,
) -> PreparedData:
    """Read, check, split and preprocess a Dataset for a model of ``model_task``.

    With ``cache_dir``, the result is stored as ``<fingerprint>.npz`` plus ``<fingerprint>.json``
    and reused when nothing that affects it changed. Only rank 0 writes the cache (other ranks
    compute the same arrays themselves if it is not there yet); ``world_size`` is accepted for
    symmetry, sharding is :meth:`Split.shard`'s job. ``tokenizer_dir`` is the tokenizer of the
    model to be trained, for chat data that declares none. Raises :class:`DataError` for bad data.
    """
    spec = dataset.spec
    base_dir = Path(base_dir)
    _check_manifest(spec, model_task)
    files = resolve_sources(spec, base_dir)
    if spec.chat is not None:
        return _prepare_chat(spec, model_task, base_dir, files, cache_dir, rank, tokenizer_dir)
    tokenizer, tok_files = _tokenizer(spec, base_dir)
    digests = {fi.key: fi.sha256 for fi in files} | tok_files
    fingerprint = _fingerprint(spec, model_task, files, tok_files)
    if cache_dir is not None:
        hit = _load_cache(Path(cache_dir), fingerprint, digests)
        if hit is not None:
            return hit
    if model_task == "causal-lm":
        assert tokenizer is not None  # _check_manifest requires a tokenize step
        splits, transform = _prepare_text(spec, files, tokenizer)
    else:
        splits, transform = _prepare_tabular(spec, model_task, files)
    data = PreparedData(splits["train"], splits["validation"], splits["test"], transform,
                        fingerprint, digests)
    if cache_dir is not None and rank == 0:
        _save_cache(Path(cache_dir), data)
    return data


# --- checks that need the model's task -----------------------------------------------------

def _check_manifest(spec: DatasetSpec, task: str) -> None:
    """What preparation relies on. The validator's rules guarantee all of it for a manifest it
    accepts (``dataset.*`` and, with the Model's task, ``trainingjob.lm-tokenizer``,
    ``trainingjob.lm-pack``, ``trainingjob.dataset-task``, ``trainingjob.dataset-columns``), so a
    failure here is a bug in lmspec, not in the manifest."""
    assert task in TASKS, f"unknown model task {task!r}"
    splits = spec.splits
    if splits.by == "ratio":
        assert math.isclose(sum(splits.ratios.values()), 1.0, abs_tol=1e-6), "dataset.split-ratios"
        assert all(src.split is None for src in spec.sources), "dataset.split-unused"
    else:
        assert any(src.split in ("train", None) for src in spec.sources), "dataset.split-files"
    steps = spec.preprocessing
    if spec.chat is not None:
        if task != "causal-lm":
            raise DataError(f"chat data is for causal-lm models, not {task}", field="spec.chat")
        for name in ("features", "target", "preprocessing"):
            if getattr(spec, name):
                raise DataError(f"chat data takes no {name}", field=f"spec.{name}",
                                hint="the chat block declares the fields and the tokenizer")
        if splits.stratify is not None:
            raise DataError("stratify does not apply to chat data", field="spec.splits.stratify")
        return
    if task == "causal-lm":
        assert any(isinstance(s, Tokenize) for s in steps), "trainingjob.lm-tokenizer"
        assert any(isinstance(s, Pack) for s in steps), "trainingjob.lm-pack"
        assert splits.stratify is None, "trainingjob.dataset-task"
        assert not any(isinstance(s, Standardize | MinMax | LabelEncode | GaussianNoise) for s in steps), \
            "trainingjob.dataset-task"
    else:
        assert not any(isinstance(s, Tokenize | Pack) for s in steps), "trainingjob.dataset-task"


def _tokenizer(spec: DatasetSpec, base_dir: Path) -> tuple[Tokenizer | None, dict[str, str]]:
    step = next(((i, s) for i, s in enumerate(spec.preprocessing) if isinstance(s, Tokenize)), None)
    if step is None:
        return None, {}
    i, tok = step
    if not isinstance(tok.tokenizer, FileTokenizer):
        return Tokenizer.byte(), {}
    field = f"spec.preprocessing[{i}].tokenizer"
    raw = tok.tokenizer.path
    path = Path(raw) if os.path.isabs(raw) else base_dir / raw
    if not path.is_file():
        raise DataError(f"tokenizer file {path} does not exist", field=f"{field}.path")
    digest = sha256_file(path)
    if tok.tokenizer.sha256 is not None and digest != tok.tokenizer.sha256:
        raise DataError(f"sha256 mismatch: the manifest pins {tok.tokenizer.sha256}, the file has "
                        f"{digest}", file=str(path), field=f"{field}.sha256")
    try:
        tokenizer = Tokenizer.from_file(path)
    except ImportError:
        raise DataError("a file tokenizer needs the tokenizers package", field=field,
                        hint="pip install 'lmspec[run]'") from None
    except Exception as e:  # the tokenizers package raises plain Exceptions for bad JSON
        raise DataError(f"cannot load tokenizer: {e}", file=str(path), field=f"{field}.path") from None
    key = path.resolve().as_posix() if os.path.isabs(raw) else Path(os.path.relpath(path, base_dir)).as_posix()
    return tokenizer, {key: digest}


# --- tabular -------------------------------------------------------------------------------

def _columns(spec: DatasetSpec, task: str) -> list[ColumnSpec]:
    cols: dict[str, ColumnSpec] = {}
    for j, f in enumerate(spec.features):
        cols.setdefault(f.name, ColumnSpec(f.name, f.dtype, f"spec.features[{j}]"))
    if spec.target is not None and task != "causal-lm":
        cols.setdefault(spec.target.name, ColumnSpec(spec.target.name, spec.target.dtype, "spec.target"))
    return list(cols.values())


def _prepare_tabular(spec: DatasetSpec, task: str, files: list[FileInfo]) -> tuple[dict[str, Split], Transform]:
    columns = _columns(spec, task)
    fields = {c.name: c for c in columns}
    table = apply_row_steps(read_table(files, columns), spec.preprocessing, columns)
    for c in columns:
        missing = null_mask(table.columns[c.name])
        if missing.any():
            i = int(np.argmax(missing))
            raise DataError("missing value (empty or NaN)", column=c.name, field=c.field,
                            **table.where(i), hint="add a dropNulls step to drop such rows")
    parts = _split_rows(spec, table)
    train = table.take(parts["train"])
    if len(train) == 0:
        raise DataError("the training split has no rows", field="spec.splits")
    transform = _tabular.fit(spec, task, train)
    splits = {name: _tabular.encode(transform, spec, table.take(idx), fields)
              for name, idx in parts.items()}
    return splits, transform


def _split_rows(spec: DatasetSpec, table: Table) -> dict[str, np.ndarray]:
    s = spec.splits
    if s.by == "file":
        split_of = np.array([fi.split or "train" for fi in table.files], dtype=object)[table.file_id]
        return {name: np.flatnonzero(split_of == name) for name in SPLITS}
    groups = None
    if s.stratify is not None:
        assert s.stratify in table.columns, "dataset.unknown-column"
        groups = labels_of(table.columns[s.stratify])
    return ratio_split(len(table), s.ratios, s.seed, groups)


# --- language model ------------------------------------------------------------------------

def _prepare_text(spec: DatasetSpec, files: list[FileInfo], tokenizer: Tokenizer) -> tuple[dict[str, Split], Transform]:
    i, step = next((i, s) for i, s in enumerate(spec.preprocessing) if isinstance(s, Tokenize))
    name = step.column
    declared = next((f"spec.features[{j}]" for j, f in enumerate(spec.features) if f.name == name),
                    f"spec.preprocessing[{i}].column")
    assert name == TEXT_COLUMN or not any(fi.format == "text" for fi in files), "dataset.text-column"
    column = ColumnSpec(name, "string", declared)
    table = apply_row_steps(read_table(files, [column]), spec.preprocessing, [column])
    # An empty document holds nothing to learn from; it is skipped, not an error.
    table = table.take(np.flatnonzero(~null_mask(table.columns[name])))
    docs = table.columns[name]
    s = spec.splits
    parts: dict[str, list[str]]
    if s.by == "file":
        split_of = np.array([fi.split or "train" for fi in table.files], dtype=object)[table.file_id]
        parts = {n: list(docs[split_of == n]) for n in SPLITS}
    elif len(docs) == 1:
        parts = _text.split_single_document(str(docs[0]), s.ratios)
    else:
        idx = ratio_split(len(docs), s.ratios, s.seed)
        parts = {n: list(docs[idx[n]]) for n in SPLITS}
    length = next(p.sequence_length for p in spec.preprocessing if isinstance(p, Pack))
    splits = {n: _text.pack(parts[n], tokenizer, length) for n in SPLITS}
    if len(splits["train"]) == 0:
        raise DataError(f"the training split holds fewer than {length + 1} tokens, not one sequence",
                        field="spec.preprocessing", hint="add text or lower pack.sequenceLength")
    transform = Transform(task="causal-lm", feature_names=[name], feature_dtypes=["string"],
                          tokenizer=tokenizer)
    return splits, transform


# --- chat ----------------------------------------------------------------------------------

def _prepare_chat(spec: DatasetSpec, task: str, base_dir: Path, files: list[FileInfo],
                  cache_dir: Path | None, rank: int, tokenizer_dir: Path | None) -> PreparedData:
    from .chat import prepare_chat, read_split_conversations, tokenizer_source

    chat = spec.chat
    assert chat is not None
    extra = tokenizer_source(chat, base_dir, tokenizer_dir)
    if chat.template_path is not None:
        extra.append(resolve_path(chat.template_path, base_dir))
    tok_files = {_key(p, base_dir): sha256_file(p) for p in extra if p.is_file()}
    digests = {fi.key: fi.sha256 for fi in files} | tok_files
    fingerprint = _fingerprint(spec, task, files, tok_files)
    if cache_dir is not None:
        hit = _load_cache(Path(cache_dir), fingerprint, digests)
        if hit is not None:
            return hit
    s = spec.splits
    parts = read_split_conversations(chat, files, s.by == "file", s.ratios, s.seed)
    prepared = prepare_chat(chat, parts, base_dir, tokenizer_dir)
    if prepared.tokenizer_json is None:  # pragma: no cover - every chat tokenizer has a json
        raise DataError("the chat tokenizer has no tokenizer.json", field="spec.chat.tokenizer")
    transform = Transform(task="causal-lm", feature_names=["messages"], feature_dtypes=["string"],
                          tokenizer=Tokenizer.from_file(prepared.tokenizer_json))
    sp = prepared.splits
    data = PreparedData(sp["train"], sp["validation"], sp["test"], transform, fingerprint, digests,
                        {n: c.as_dict() for n, c in prepared.counts.items()})
    if cache_dir is not None and rank == 0:
        _save_cache(Path(cache_dir), data)
    return data


def resolve_path(path: str, base_dir: Path) -> Path:
    return Path(path) if os.path.isabs(path) else base_dir / path


def _key(path: Path, base_dir: Path) -> str:
    """The name a file has in the lock: relative to the manifest directory when below it."""
    try:
        return path.resolve().relative_to(base_dir.resolve()).as_posix()
    except ValueError:
        return path.resolve().as_posix()


# --- cache ---------------------------------------------------------------------------------

def _fingerprint(spec: DatasetSpec, task: str, files: list[FileInfo], tok_files: dict[str, str]) -> str:
    canonical = {
        "formatVersion": FORMAT_VERSION,
        "spec": spec.model_dump(mode="json", by_alias=True),
        "task": task,
        "files": [[fi.key, fi.sha256, fi.format] for fi in files],
        "tokenizers": sorted(tok_files.items()),
    }
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _load_cache(cache_dir: Path, fingerprint: str, files: dict[str, str]) -> PreparedData | None:
    arrays_path, meta_path = cache_dir / f"{fingerprint}.npz", cache_dir / f"{fingerprint}.json"
    if not (arrays_path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        with np.load(arrays_path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        splits = {n: Split(arrays[f"{n}_inputs"], arrays[f"{n}_targets"], arrays.get(f"{n}_positions"))
                  for n in SPLITS}
        transform = Transform.from_state_dict(meta["transform"])
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None  # an unreadable entry is a miss; the fresh result replaces it
    if meta.get("fingerprint") != fingerprint:
        return None
    return PreparedData(splits["train"], splits["validation"], splits["test"], transform,
                        fingerprint, files, meta.get("counts"))


def _save_cache(cache_dir: Path, data: PreparedData) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    meta = {"fingerprint": data.fingerprint, "formatVersion": FORMAT_VERSION, "files": data.files,
            "transform": data.transform.state_dict(), "counts": data.counts}
    arrays: dict[str, Any] = {}
    for n in SPLITS:
        arrays[f"{n}_inputs"] = data.split(n).inputs
        arrays[f"{n}_targets"] = data.split(n).targets
        positions = data.split(n).positions
        if positions is not None:
            arrays[f"{n}_positions"] = positions
    # The json goes first and the npz last: a reader needs both, so an entry is complete once the
    # npz appears. Each is written to a temporary file and renamed, which is atomic.
    atomic_write(cache_dir / f"{data.fingerprint}.json",
                  lambda f: f.write(json.dumps(meta, indent=1).encode()))
    atomic_write(cache_dir / f"{data.fingerprint}.npz", lambda f: np.savez(f, **arrays))
