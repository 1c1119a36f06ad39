"""What a language-model Dataset costs: tokens, bytes of token shards on disk, resident memory.

>>> c = data_cost(dataset, base_dir, sequence_length=256, micro_batch=8)
>>> c.tokens, c.exact, c.disk_bytes, c.prepare_rss, c.train_rss

Exact once the data is prepared (read from the cache entry's ``meta.json``); before that an
estimate from the sources' sizes: one token a byte for the byte tokenizer, one per
:data:`BYTES_PER_TOKEN` bytes for a file tokenizer (typical of BPE on English text and code).
Standard library only, like ``lmspec plan``: nothing is tokenized or imported to find out.

Memory, per process, beyond the Python interpreter and the libraries:

- preparation: the interpreter, numpy and the tokenizer with one batch of text
  (``BATCH_BYTES``) and its encodings (:data:`PREPARE_OVERHEAD`), plus 8 bytes a document
  (offsets) and, for chat, ~30 bytes a conversation; whatever the corpus size.
- training, each rank: the split indexes (16 bytes a document range, 24 a chat row), the
  epoch's order (16 bytes a row while it is drawn) and the micro batch (3 int64 arrays).
"""

from __future__ import annotations

import glob
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BYTES_PER_TOKEN = 4
CACHE_ENV = "LMSPEC_CACHE_DIR"
BATCH_BYTES = 4 << 20
"""Text handed to the byte tokenizer at a time during preparation (see :mod:`.lmprep`)."""
FILE_BATCH_BYTES_PER_CORE = 512 << 10
"""Text per core handed to a file tokenizer's ``encode_batch`` at a time (1 MiB on 2 cores, at
least 1 MiB): enough pieces for every core, while the encodings of a batch (~80 bytes a
token, with their token strings and offsets) stay a small, steady share of memory."""
PREPARE_OVERHEAD = {"byte": 96 << 20, "file": 320 << 20}
"""A preparing process's peak resident memory apart from the per-document indexes, with the byte
tokenizer and with a file tokenizer (whose encodings of a batch, with their per-token strings
and offsets, dominate): measured by ``bench/data.py``, flat in the corpus size."""


def default_cache_dir(base_dir: Path) -> Path:
    """The data cache of a Dataset whose manifest is in ``base_dir``: ``LMSPEC_CACHE_DIR``,
    else ``.lmspec-cache`` beside the manifest."""
    env = os.environ.get(CACHE_ENV)
    return Path(env) if env else Path(base_dir) / ".lmspec-cache"


@dataclass
class DataCost:
    tokens: int
    exact: bool
    """Counted in a prepared cache entry, not estimated."""
    basis: str
    """Where the numbers come from, for the reader."""
    disk_bytes: int
    prepare_rss: int
    train_rss: int
    documents: int | None = None


def _source_sizes(spec: Any, base_dir: Path) -> dict[str, int]:
    sizes: dict[str, int] = {}
    for src in spec.sources:
        pattern = src.path if os.path.isabs(src.path) else str(base_dir / src.path)
        for p in sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(src.path) else [pattern]:
            if os.path.isfile(p):
                key = Path(p).resolve().as_posix() if os.path.isabs(src.path) else \
                    Path(os.path.relpath(p, base_dir)).as_posix()
                sizes[key] = os.path.getsize(p)
    return sizes


def _prepared(spec: Any, base_dir: Path, sizes: dict[str, int]) -> dict[str, Any] | None:
    """The newest cache entry prepared from this spec and sources of these sizes."""
    root = default_cache_dir(base_dir)
    dumped = spec.model_dump(mode="json", by_alias=True)
    best: tuple[float, dict[str, Any]] | None = None
    for meta_path in root.glob("*/meta.json"):
        try:
            meta = json.loads(meta_path.read_text())
            when = meta_path.stat().st_mtime
        except (OSError, ValueError):
            continue
        if meta.get("spec") == dumped and meta.get("sourceSizes") == sizes and (best is None or when > best[0]):
            best = (when, meta)
    return best[1] if best is not None else None


def _vocab_bytes(spec: Any, base_dir: Path) -> tuple[int, str]:
    """Bytes a token id takes on disk, and the tokenizer's name."""
    path: Path | None = None
    if spec.chat is not None:
        ref = spec.chat.tokenizer
        if ref is not None:
            p = Path(ref.path) if os.path.isabs(ref.path) else base_dir / ref.path
            path = p / "tokenizer.json" if p.is_dir() else p
        name = "the chat tokenizer"
    else:
        tok = next((s.tokenizer for s in spec.preprocessing if getattr(s, "type", "") == "tokenize"), None)
        if tok is None or tok.type == "byte":
            return 2, "the byte tokenizer"
        path = Path(tok.path) if os.path.isabs(tok.path) else base_dir / tok.path
        name = "a file tokenizer"
    try:
        data = json.loads(path.read_text()) if path is not None else {}
        vocab = len(data.get("model", {}).get("vocab", {})) + len(data.get("added_tokens", []))
    except (OSError, ValueError, AttributeError):
        vocab = 0
    return (2 if vocab <= 1 << 16 else 4), name


def data_cost(spec: Any, base_dir: Path, *, sequence_length: int, micro_batch: int) -> DataCost:
    """The cost of a language-model Dataset ``spec`` whose manifest is in ``base_dir``."""
    sizes = _source_sizes(spec, base_dir)
    meta = _prepared(spec, base_dir, sizes)
    width, tokenizer = _vocab_bytes(spec, base_dir)
    docs: int | None = None
    if meta is not None:
        store = meta["store"]
        tokens, exact = int(store["tokens"]), True
        width = 2 if store["dtype"] == "uint16" else 4
        disk = tokens * width + (tokens + 7) // 8 * bool(store.get("masked"))
        docs = sum(int(c.get("documents", c.get("conversations", 2 * c.get("pairs", 0))))
                   for c in meta.get("counts", {}).values())
        basis = "counted in the prepared data cache"
    else:
        total = sum(sizes.values())
        per = 1 if "byte" in tokenizer else BYTES_PER_TOKEN
        tokens, exact = total // per, False
        disk = tokens * width + ((tokens + 7) // 8 if spec.chat is not None else 0)
        basis = (f"estimated from {total:,} bytes of sources, "
                 + ("one token a byte" if per == 1 else f"~{per} bytes a token for {tokenizer}"))
    rows = max(1, tokens // max(sequence_length, 1))
    n_docs = docs if docs is not None else max(1, len(sizes))
    per_doc = 8 + (30 if spec.chat is not None else 0)
    prepare_rss = PREPARE_OVERHEAD["byte" if "byte" in tokenizer else "file"] + per_doc * n_docs
    train_rss = 24 * max(n_docs, rows) + 16 * rows + 3 * 8 * micro_batch * sequence_length
    return DataCost(tokens, exact, basis, disk, prepare_rss, train_rss, docs)
