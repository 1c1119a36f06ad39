"""``prepare``: a ``Dataset`` manifest → model-ready splits, a fitted transform and file digests.

>>> # data = prepare(dataset, Path("examples/iris"), model_task="classification",
>>> #                cache_dir=Path("runs/.cache/data"))
>>> # data.train.inputs.shape, data.transform.classes
>>> # ((105, 4), ['setosa', 'versicolor', 'virginica'])

Order of work: resolve and hash the files → look in the cache → read and parse the declared
columns → row-level steps (dropNulls, dedupe, filter) on all rows → split → fit the other steps on
the training split → apply them to every split.

Language-model data (plain text or chat) is streamed into token shards on disk instead
(:mod:`.lmprep`): a cache entry ``<cache>/<fingerprint>/`` that every job, ``lmspec evaluate``
and ``lmspec report`` on the same Dataset share. It is built under a lock file
(``<fingerprint>.lock``: one process builds, the others wait and read) in a temporary
directory published by a rename, so a killed preparation leaves nothing that looks finished.
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
from . import _tabular
from ._read import ColumnSpec, FileInfo, Table, read_table, resolve_sources
from ._rows import apply_row_steps, null_mask
from .cost import CACHE_ENV
from .errors import DataError
from .split import SPLITS, Split, ratio_split
from .tokenizer import Tokenizer
from .transform import Transform, labels_of

FORMAT_VERSION = "lmspec-data-2"
"""Part of every cache fingerprint; bump it whenever the same inputs would give different arrays."""

TASKS = ("classification", "regression", "causal-lm")


@dataclass
class PreparedData:
    """Everything training needs from the data, and what the run's lock file records."""

    train: Any
    """:class:`Split` (tabular), :class:`~.lm.TextSplit` or :class:`~.lm.ChatSplit`; all
    give rows through ``batch(rows)``."""
    validation: Any
    test: Any
    transform: Transform
    fingerprint: str
    """sha256 over the Dataset spec, the model task, every file's digest and the format version."""
    files: dict[str, str]
    """Every data and tokenizer file read → its sha256; keys are relative to the manifest directory
    when the manifest's path was."""
    counts: dict[str, dict[str, int]] | None = None
    """Language models, per split: documents (or conversations read, truncated and dropped),
    sequences and tokens."""
    cache: Path | None = None
    """The cache entry the splits read their tokens from (language models)."""
    disk_bytes: int = 0
    """Bytes of token shards on disk (language models)."""

    def split(self, name: str) -> Any:
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

    With ``cache_dir``, the result is stored there under its fingerprint and reused when
    nothing that affects it changed. Tabular data: only rank 0 writes the cache (other ranks
    compute the same arrays themselves if it is not there yet). Language-model data is always
    written to disk, once, by whichever process takes the entry's lock first (without
    ``cache_dir``, to a private temporary directory removed with the result). ``world_size``
    is accepted for symmetry: sharding happens by index when batches are formed.
    ``tokenizer_dir`` is the tokenizer of the model to be trained, for chat data that declares
    none. Raises :class:`DataError` for bad data.
    """
    spec = dataset.spec
    base_dir = Path(base_dir)
    _check_manifest(spec, model_task)
    files = resolve_sources(spec, base_dir)
    if spec.chat is not None:
        from .chat import tokenizer_source

        extra = tokenizer_source(spec.chat, base_dir, tokenizer_dir)
        if spec.chat.template_path is not None:
            extra.append(resolve_path(spec.chat.template_path, base_dir))
        tok_files = {_key(p, base_dir): sha256_file(p) for p in extra if p.is_file()}
        fingerprint = _fingerprint(spec, model_task, files, tok_files)
        digests = {fi.key: fi.sha256 for fi in files} | tok_files
        return _cached_lm(cache_dir, fingerprint, digests,
                          lambda d: _build_chat(spec, files, base_dir, tokenizer_dir, d) | _about(spec, files))
    tokenizer, tok_files = _tokenizer(spec, base_dir)
    digests = {fi.key: fi.sha256 for fi in files} | tok_files
    fingerprint = _fingerprint(spec, model_task, files, tok_files)
    if model_task == "causal-lm":
        assert tokenizer is not None  # _check_manifest requires a tokenize step
        tok = tokenizer
        return _cached_lm(cache_dir, fingerprint, digests,
                          lambda d: _build_text(spec, files, tok, d) | _about(spec, files))
    if cache_dir is not None:
        hit = _load_cache(Path(cache_dir), fingerprint, digests)
        if hit is not None:
            return hit
    splits, transform = _prepare_tabular(spec, model_task, files)
    data = PreparedData(splits["train"], splits["validation"], splits["test"], transform,
                        fingerprint, digests)
    if cache_dir is not None:
        data.cache = Path(cache_dir) / f"{fingerprint}.npz"
        if rank == 0:
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


# --- language models: token shards in a shared cache ------------------------------------

def _about(spec: DatasetSpec, files: list[FileInfo]) -> dict[str, Any]:
    """What ``lmspec plan`` matches a Dataset with, without reading its files (:mod:`.cost`)."""
    return {"spec": spec.model_dump(mode="json", by_alias=True),
            "sourceSizes": {fi.key: fi.path.stat().st_size for fi in files}}


def _build_text(spec: DatasetSpec, files: list[FileInfo], tokenizer: Tokenizer, directory: Path,
                *, whole: bool = False) -> dict[str, Any]:
    from .lmprep import prepare_text

    index = prepare_text(spec, files, tokenizer, directory, whole=whole)
    name = next(s.column for s in spec.preprocessing if isinstance(s, Tokenize))
    transform = Transform(task="causal-lm", feature_names=[name], feature_dtypes=["string"],
                          tokenizer=tokenizer)
    return index | {"transform": transform.state_dict()}


def _build_chat(spec: DatasetSpec, files: list[FileInfo], base_dir: Path, tokenizer_dir: Path | None,
                directory: Path, *, whole: bool = False) -> dict[str, Any]:
    from .lmprep import prepare_chat, prepare_pairs

    assert spec.chat is not None
    s = spec.splits
    build = prepare_pairs if spec.chat.format == "preference" else prepare_chat
    index = build(spec.chat, files, by_file=s.by == "file", ratios=s.ratios, seed=s.seed,
                  base_dir=base_dir, tokenizer_dir=tokenizer_dir, directory=directory, whole=whole)
    transform = Transform(task="causal-lm", feature_names=["messages"], feature_dtypes=["string"],
                          tokenizer=Tokenizer.from_file(Path(index.pop("tokenizerJson"))))
    return index | {"transform": transform.state_dict()}


def prepare_file(spec: DatasetSpec, base_dir: Path, fi: FileInfo, *, tokenizer: Tokenizer | None,
                 tokenizer_dir: Path | None) -> Any:
    """A language-model file that is not one of the Dataset's sources (``lmspec evaluate
    --input``), prepared as training prepared its sources (every document in one split, in a
    private temporary cache): its split."""
    if spec.chat is not None:
        def build(d: Path) -> dict[str, Any]:
            return _build_chat(spec, [fi], base_dir, tokenizer_dir, d, whole=True)
    else:
        assert tokenizer is not None
        tok = tokenizer

        def build(d: Path) -> dict[str, Any]:
            return _build_text(spec, [fi], tok, d, whole=True)

    return _cached_lm(None, hashlib.sha256(fi.key.encode()).hexdigest(), {}, build).train


def open_entry(path: Path) -> PreparedData | None:
    """A run's data cache entry, as its lock file names it (``dataCache``): a language model's
    directory or a tabular ``.npz``; None when it is gone or damaged."""
    path = Path(path)
    try:
        meta = json.loads((path.with_suffix(".json") if path.suffix == ".npz" else path / "meta.json").read_text())
        fingerprint, files = str(meta["fingerprint"]), dict(meta["files"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if path.suffix == ".npz":
        return _load_cache(path.parent, fingerprint, files)
    return _open_lm(path, fingerprint, files)


def _cached_lm(cache_dir: Path | None, fingerprint: str, files: dict[str, str],
               build: Any) -> PreparedData:
    """The entry ``<cache_dir>/<fingerprint>``: opened if complete and intact, else built under
    the entry's lock (a process that waited for the lock finds it built and opens it)."""
    import fcntl
    import tempfile

    from ..files import publish_dir

    if cache_dir is None:
        # No shared cache asked for: a private one, removed with the result.
        private = Path(tempfile.mkdtemp(prefix="lmspec-data-"))
        import shutil
        import weakref

        made = _publish_lm(private / fingerprint, fingerprint, files, build, publish_dir)
        # Every split reads through the one store: the files go when the last split does.
        weakref.finalize(made.train.store, shutil.rmtree, private, True)
        return made
    root = Path(cache_dir)
    entry = root / fingerprint
    data = _open_lm(entry, fingerprint, files)
    if data is not None:
        return data
    try:
        root.mkdir(parents=True, exist_ok=True)
        lock = open(root / f"{fingerprint}.lock", "a+")  # noqa: SIM115 - held until the entry exists
    except OSError as e:
        raise DataError(f"cannot create the data cache in {root}: {e.strerror or e}",
                        hint=f"set {CACHE_ENV} to a writable directory") from None
    with lock:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"lmspec: waiting for another process preparing the data cache {entry}", flush=True)
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        lock.seek(0)
        lock.truncate()
        lock.write(f"{os.getpid()} {os.uname().nodename}\n")
        lock.flush()
        again = _open_lm(entry, fingerprint, files)
        if again is not None:
            return again
        # A preparation killed earlier left its temporary directory (never mistaken for the
        # entry, which appears only by a rename once complete); whoever holds the lock clears it.
        import shutil

        for stale in root.glob(f".{fingerprint}.*"):
            shutil.rmtree(stale, ignore_errors=True)
        return _publish_lm(entry, fingerprint, files, build, publish_dir)


def _publish_lm(entry: Path, fingerprint: str, files: dict[str, str], build: Any, publish: Any) -> PreparedData:
    def fill(tmp: Path) -> None:
        index = build(tmp)
        meta = {"fingerprint": fingerprint, "formatVersion": FORMAT_VERSION, "files": files} | index
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")

    entry.parent.mkdir(parents=True, exist_ok=True)
    publish(fill, entry)
    data = _open_lm(entry, fingerprint, files, verify=False)  # just written and digested
    assert data is not None
    return data


def _open_lm(entry: Path, fingerprint: str, files: dict[str, str], *, verify: bool = True) -> PreparedData | None:
    """A complete entry's splits, or None when there is none; a damaged entry is reported and
    treated as missing (it is rebuilt and replaced)."""
    from .lm import ChatSplit, PreferenceSplit, TextSplit
    from .tokens import TokenStore

    meta_path = entry / "meta.json"
    if not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") != fingerprint or meta.get("formatVersion") != FORMAT_VERSION:
            return None
        store = TokenStore(entry, meta["store"], verify=verify)
        length = int(meta["sequenceLength"])
        splits: dict[str, Any] = {}
        if meta["kind"] == "text":
            for n in SPLITS:
                splits[n] = TextSplit(store, np.load(entry / f"{n}.ranges.npy"), length)
        elif meta["kind"] == "preference":
            docs = np.load(entry / "docs.npy")
            for n in SPLITS:
                splits[n] = PreferenceSplit(store, docs, np.load(entry / f"{n}.row_ptr.npy"),
                                            np.load(entry / f"{n}.row_docs.npy"), sequence_length=length,
                                            pad_id=int(meta["padId"]),
                                            trained=np.load(entry / f"{n}.row_trained.npy"))
        else:
            docs = np.load(entry / "docs.npy")
            for n in SPLITS:
                splits[n] = ChatSplit(store, docs, np.load(entry / f"{n}.row_ptr.npy"),
                                      np.load(entry / f"{n}.row_docs.npy"), sequence_length=length,
                                      pad_id=int(meta["padId"]), packing=bool(meta["packing"]),
                                      trained=np.load(entry / f"{n}.row_trained.npy"))
        transform = Transform.from_state_dict(meta["transform"])
    except DataError as e:
        print(f"lmspec: warning: {e}; preparing the data again", flush=True)
        return None
    except (OSError, ValueError, KeyError, json.JSONDecodeError) as e:
        print(f"lmspec: warning: the data cache entry {entry} is unreadable ({e}); preparing the "
              "data again", flush=True)
        return None
    return PreparedData(splits["train"], splits["validation"], splits["test"], transform,
                        fingerprint, files, meta.get("counts"), cache=entry,
                        disk_bytes=store.bytes_on_disk)


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
                        fingerprint, files, meta.get("counts"), cache=arrays_path)


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
