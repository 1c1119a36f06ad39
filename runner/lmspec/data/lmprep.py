"""Language-model data → token shards on disk, in bounded memory.

>>> # info = prepare_text(spec, files, tokenizer, directory)    # plain text, jsonl, csv, parquet
>>> # info = prepare_chat(chat, files, by_file, ratios, seed, base_dir, tokenizer_dir, directory)

Both stream their sources: documents are read a chunk at a time, tokenized in batches (a file
tokenizer's ``encode_batch`` runs on every core; the byte tokenizer is a ``frombuffer``), and
appended to one :class:`~.tokens.TokenWriter` stream in file order. Only then are documents
assigned to splits (seeded, by document, as before: it needs their number), and a split becomes
a handful of index arrays into the one stream, written beside it. Memory holds a chunk of text,
its ids, and 8 to 16 bytes per document, whatever the corpus size.

A plain-text file is one document. It is read in pieces of about :data:`PIECE_BYTES`, each cut
just after a newline that a non-space character follows, and the pieces' ids are concatenated:
for tokenizers whose pre-tokenizer splits at whitespace (byte-level BPE, WordPiece, whitespace
word levels) that is exactly the whole file's tokenization, and it keeps a file of any size out
of memory. A single document in the whole dataset is split into contiguous token ranges (train
first), keeping held-out text unseen in training.
"""

from __future__ import annotations

import array
import hashlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..standard import Chat, DatasetSpec, Dedupe, Filter, Pack, Tokenize
from ._read import TEXT_COLUMN, ColumnSpec, FileInfo, Table
from ._rows import apply_row_steps, null_mask
from .cost import BATCH_BYTES, FILE_BATCH_BYTES_PER_CORE
from .errors import DataError
from .split import SPLITS, ratio_split, split_counts
from .tokenizer import Tokenizer
from .tokens import TokenWriter

PIECE_BYTES = 1 << 16
"""Target size of a plain-text file's pieces."""
BATCH_DOCS = 8192
ROWS_PER_CHUNK = 4096
"""Rows read at a time from csv, jsonl and parquet sources."""


# --- sources -------------------------------------------------------------------------------

class _Watch:
    """A source must not change while it is read: its size and modification time are taken
    before reading and compared after (its digest was taken when the sources were resolved)."""

    def __init__(self, fi: FileInfo) -> None:
        self.fi = fi
        self.before = self._stat()

    def _stat(self) -> tuple[int, int]:
        try:
            st = self.fi.path.stat()
        except OSError as e:
            raise DataError(f"cannot read the file: {e.strerror or e}", file=self.fi.display) from None
        return st.st_size, st.st_mtime_ns

    def check(self) -> None:
        if self._stat() != self.before:
            raise DataError("the file changed while it was being prepared (its size or modification "
                            "time differ from when it was opened)", file=self.fi.display,
                            hint="prepare the data again once the file is no longer being written")


def text_pieces(fi: FileInfo) -> Iterator[tuple[bytes, int]]:
    """``(piece, byte offset)`` of a plain-text file, cut as the module says."""
    watch = _Watch(fi)
    offset, carry = 0, b""
    with fi.path.open("rb") as f:
        while True:
            block = f.read(PIECE_BYTES)
            data = carry + block
            if not block:
                if data:
                    yield data, offset
                break
            cut = _cut(data)
            if cut == 0:  # no place to cut yet: read on (bounded by a character boundary below)
                if len(data) < 8 * PIECE_BYTES:
                    carry = data
                    continue
                cut = _char_boundary(data, len(data) - 1)
            piece, carry = data[:cut], data[cut:]
            yield piece, offset
            offset += len(piece)
    watch.check()


_CUT = re.compile(rb"\n(?=[^ \t\r\n])")


def _cut(data: bytes) -> int:
    """Just after the last newline that a non-space byte follows, or 0. Looked for in a
    growing tail of the piece: source code indents most lines, so a backward scan newline by
    newline would be slow."""
    window = 4096
    while True:
        start = max(0, len(data) - window)
        found = [m.end() for m in _CUT.finditer(data, start)]
        if found:
            return found[-1]
        if start == 0:
            return 0
        window *= 8


def _char_boundary(data: bytes, at: int) -> int:
    # A UTF-8 continuation byte is 0b10xxxxxx: step back to the start of a character.
    while at > 0 and data[at] & 0xC0 == 0x80:
        at -= 1
    return at


def _decode(piece: bytes, fi: FileInfo, offset: int) -> str:
    try:
        return piece.decode("utf-8")
    except UnicodeDecodeError as e:
        at = offset + e.start
        raise DataError(f"not UTF-8 text (byte {at}, line {_line_of(fi, at)})", file=fi.display) from None


def _line_of(fi: FileInfo, at: int) -> int:
    """The line holding byte ``at`` of a file (for messages: counted only when one is needed)."""
    line, done = 1, 0
    with fi.path.open("rb") as f:
        while done < at:
            block = f.read(min(PIECE_BYTES * 16, at - done))
            if not block:
                break
            line += block.count(b"\n")
            done += len(block)
    return line


def _row_docs(fi: FileInfo, column: ColumnSpec, steps: list[Any]) -> Iterator[tuple[str, int]]:
    """``(document, row)`` of a csv, jsonl or parquet file, after the row steps but ``dedupe``,
    a chunk at a time; the caller dedupes across chunks and files, keeping a 16-byte digest of
    every document seen rather than its text."""
    from .stream import read_chunks

    per_chunk = [s for s in steps if not isinstance(s, Dedupe)]
    watch = _Watch(fi)
    for table in read_chunks(fi, [column], ROWS_PER_CHUNK):
        table = apply_row_steps(table, per_chunk, [column])
        table = table.take(np.flatnonzero(~null_mask(table.columns[column.name])))
        for doc, row in zip(table.columns[column.name].tolist(), table.row.tolist(), strict=True):
            yield str(doc), int(row)
    watch.check()


def check_sources(files: list[FileInfo], column: ColumnSpec, steps: list[Any]) -> None:
    """Read every document as preparation would, without tokenizing: the first problem raises
    :class:`DataError` (``lmspec validate --check-env``). Bounded memory, like preparation."""
    for fi in files:
        if fi.format == "text":
            _not_empty(fi)
            for piece, offset in text_pieces(fi):
                _decode(piece, fi, offset)
        else:
            for _ in _row_docs(fi, column, steps):
                pass


# --- plain text (the tokenize and pack steps) ---------------------------------------------------

def prepare_text(spec: DatasetSpec, files: list[FileInfo], tokenizer: Tokenizer, directory: Path,
                 *, whole: bool = False) -> dict[str, Any]:
    """Tokenize every document into ``directory``; returns the entry's index (what
    ``meta.json`` records). ``whole``: every document is in the train split (a single file
    given to ``lmspec evaluate``), and an empty result is not an error."""
    i, step = next((i, s) for i, s in enumerate(spec.preprocessing) if isinstance(s, Tokenize))
    name = step.column
    declared = next((f"spec.features[{j}]" for j, f in enumerate(spec.features) if f.name == name),
                    f"spec.preprocessing[{i}].column")
    assert name == TEXT_COLUMN or not any(fi.format == "text" for fi in files), "dataset.text-column"
    column = ColumnSpec(name, "string", declared)
    length = next(p.sequence_length for p in spec.preprocessing if isinstance(p, Pack))
    doc_file = array.array("i")
    seen: set[bytes] | None = set() if any(isinstance(s, Dedupe) for s in spec.preprocessing) else None
    filters = [s for s in spec.preprocessing if isinstance(s, Filter)]
    with TokenWriter(directory, vocab_size=tokenizer.vocab_size, masked=False) as writer:
        encoder = _BatchEncoder(tokenizer, writer)
        for k, fi in enumerate(files):
            if fi.format == "text":
                _not_empty(fi)
                if seen is not None and _seen(seen, bytes.fromhex(fi.sha256)):
                    continue  # the same bytes as an earlier file: a duplicate document
                if filters and not _text_file_kept(fi, column, filters):
                    continue
                for piece, offset in text_pieces(fi):
                    encoder.piece(piece, fi, offset)
                encoder.end_stream()
                doc_file.append(k)
            else:
                for doc, row in _row_docs(fi, column, list(spec.preprocessing)):
                    if seen is not None and _seen(seen, doc.encode("utf-8", "surrogatepass")):
                        continue
                    encoder.document(doc, {"file": fi.display, "row": row, "unit": fi.unit})
                    doc_file.append(k)
        encoder.flush()
        store, docs = writer.finish()
    splits = _text_splits(spec, files, docs, np.frombuffer(doc_file, dtype=np.int32), whole)
    counts: dict[str, dict[str, int]] = {}
    for n in SPLITS:
        np.save(directory / f"{n}.ranges.npy", splits[n][0])
        sizes = splits[n][0][:, 1] - splits[n][0][:, 0]
        tokens = int(sizes.sum())
        counts[n] = {"documents": splits[n][1], "tokens": tokens,
                     "sequences": max(0, (tokens - 1) // length)}
    if counts["train"]["sequences"] == 0 and not whole:
        raise DataError(f"the training split holds fewer than {length + 1} tokens, not one sequence",
                        field="spec.preprocessing", hint="add text or lower pack.sequenceLength")
    return {"kind": "text", "store": store, "sequenceLength": length, "counts": counts}


def _not_empty(fi: FileInfo) -> None:
    if fi.path.stat().st_size == 0:
        raise DataError("the file is empty: a text source is one document", file=fi.display,
                        field=f"spec.sources[{fi.source}]")


def _text_file_kept(fi: FileInfo, column: ColumnSpec, filters: list[Any]) -> bool:
    """Whether a ``filter`` step keeps a text file's document. The step compares the whole
    document, so the file is read whole here: the one case where a text source is."""
    text = _decode(fi.path.read_bytes(), fi, 0)
    table = Table({column.name: np.array([text], dtype=object)}, np.zeros(1, dtype=np.int32),
                  np.zeros(1, dtype=np.int64), [fi])
    return len(apply_row_steps(table, filters, [column])) == 1


def _seen(seen: set[bytes], data: bytes) -> bool:
    key = data if len(data) <= 16 else hashlib.blake2b(data, digest_size=16).digest()
    if key in seen:
        return True
    seen.add(key)
    return False


class _BatchEncoder:
    """Collects text until a batch is worth a call to the tokenizer, then appends the ids to
    the writer in order. A document arrives whole (:meth:`document`) or in pieces
    (:meth:`piece`, then :meth:`end_stream`)."""

    def __init__(self, tokenizer: Tokenizer, writer: TokenWriter) -> None:
        self.tok = tokenizer
        self.writer = writer
        self.pending: list[tuple[Any, dict[str, Any], bool]] = []  # (text or bytes, where, ends a document)
        self.size = 0
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        self.batch_bytes = BATCH_BYTES if tokenizer.kind == "byte" else \
            FILE_BATCH_BYTES_PER_CORE * max(2, cores)

    def document(self, text: str, where: dict[str, Any]) -> None:
        self._add(text, where, True)

    def piece(self, piece: bytes, fi: FileInfo, offset: int) -> None:
        where = {"file": fi.display}
        if self.tok.kind == "byte":
            _decode(piece, fi, offset)  # checked, not kept: the bytes are the ids
            self._add(piece, where, False)
        else:
            self._add(_decode(piece, fi, offset), where, False)

    def end_stream(self) -> None:
        self.pending.append(("", {}, True))

    def _add(self, text: Any, where: dict[str, Any], ends: bool) -> None:
        self.pending.append((text, where, ends))
        self.size += len(text)
        if self.size >= self.batch_bytes or len(self.pending) >= BATCH_DOCS:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        items = self.pending
        self.pending, self.size = [], 0
        texts = [t for t, _, _ in items]
        if self.tok.kind == "byte":
            ids = [np.frombuffer(t, dtype=np.uint8) if isinstance(t, bytes)
                   else np.frombuffer(_utf8(t, w), dtype=np.uint8) for t, w, _ in items]
        else:
            ids = self.tok.encode_batch([t if isinstance(t, str) else "" for t in texts])
        eos = self.tok.eos_id
        for (_, where, ends), piece in zip(items, ids, strict=True):
            if len(piece):
                self.writer.append(piece, where=where)
            if ends:
                if eos is not None:
                    self.writer.append(np.array([eos], dtype=np.int64))
                self.writer.end_document()


def _utf8(text: str, where: dict[str, Any]) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise DataError(f"the text holds a lone surrogate (character {e.start}), which is not "
                        "valid Unicode", **where) from None


def _text_splits(spec: DatasetSpec, files: list[FileInfo], docs: np.ndarray,
                 doc_file: np.ndarray, whole: bool) -> dict[str, tuple[np.ndarray, int]]:
    """Each split's ranges of the stream (``[K, 2]``, merged where adjacent) and documents."""
    s = spec.splits
    n = len(docs) - 1
    if whole:
        every = np.arange(n, dtype=np.int64)
        parts = {"train": every, "validation": every[:0], "test": every[:0]}
    elif s.by == "file":
        split_of = np.array([fi.split or "train" for fi in files], dtype=object)
        parts = {name: np.flatnonzero(split_of[doc_file] == name) for name in SPLITS} if n else \
            {name: np.zeros(0, dtype=np.int64) for name in SPLITS}
    elif n == 1:
        out: dict[str, tuple[np.ndarray, int]] = {}
        start = 0
        for name, count in zip(SPLITS, split_counts(int(docs[1]), s.ratios), strict=True):
            out[name] = (np.array([[start, start + count]], dtype=np.int64) if count
                         else np.zeros((0, 2), dtype=np.int64), 1 if count else 0)
            start += count
        return out
    else:
        parts = ratio_split(n, s.ratios, s.seed)
    return {name: (_ranges(docs, idx), len(idx)) for name, idx in parts.items()}


def _ranges(docs: np.ndarray, idx: np.ndarray) -> np.ndarray:
    if not len(idx):
        return np.zeros((0, 2), dtype=np.int64)
    starts, ends = docs[idx], docs[idx + 1]
    # Documents next to each other in the stream become one range.
    new = np.concatenate([[True], starts[1:] != ends[:-1]])
    first = np.flatnonzero(new)
    last = np.concatenate([first[1:] - 1, [len(idx) - 1]])
    return np.stack([starts[first], ends[last]], axis=1).astype(np.int64)


# --- chat ----------------------------------------------------------------------------------

# A record's fate, as bits: a truncated conversation may still be dropped, for having no
# trained token left.
KEPT, TRUNCATED, DROPPED_LONG, DROPPED_UNTRAINED = 0, 1, 2, 4


def prepare_chat(chat: Chat, files: list[FileInfo], *, by_file: bool, ratios: Any, seed: int,
                 base_dir: Path, tokenizer_dir: Path | None, directory: Path,
                 whole: bool = False) -> dict[str, Any]:
    """Render, tokenize and mask every conversation into ``directory``, then split and pack
    them; returns the entry's index (what ``meta.json`` records). ``whole``: as for
    :func:`prepare_text`; sources without a split name are training data."""
    encoder, tok, tok_dir, tok_files = _chat_encoder(chat, base_dir, tokenizer_dir)
    limit = chat.sequence_length + 1
    status = array.array("b")
    record_doc = array.array("q")
    record_file = array.array("i")
    doc_trained = array.array("q")
    with TokenWriter(directory, vocab_size=max(len(tok), int(tok.vocab_size)), masked=True) as writer:
        for k, where, ids, trained in _encoded(chat, files, encoder, base_dir, tokenizer_dir):
            state = KEPT
            if len(ids) > limit:
                if chat.over_length == "drop":
                    state = DROPPED_LONG
                else:
                    state, ids, trained = TRUNCATED, ids[:limit], trained[:limit]
            if state != DROPPED_LONG and (len(ids) < 2 or not trained[1:].any()):
                state |= DROPPED_UNTRAINED
            record_file.append(k)
            status.append(state)
            if state in (KEPT, TRUNCATED):
                record_doc.append(writer.add(ids, trained, where=where))
                doc_trained.append(int(trained[1:].sum()))
            else:
                record_doc.append(-1)
        store, docs = writer.finish()
    st = np.frombuffer(status, dtype=np.int8)
    rdoc = np.frombuffer(record_doc, dtype=np.int64)
    trained_of = np.frombuffer(doc_trained, dtype=np.int64)
    parts = _record_splits(files, record_file, by_file=by_file, whole=whole, ratios=ratios, seed=seed)
    counts: dict[str, dict[str, int]] = {}
    for name, idx in parts.items():
        s = st[idx]
        kept = rdoc[idx][rdoc[idx] >= 0]
        sizes = (docs[kept + 1] - docs[kept] - 1).tolist()
        rows = pack_rows(sizes, chat.sequence_length, chat.packing)
        row_ptr = np.zeros(len(rows) + 1, dtype=np.int64)
        row_ptr[1:] = np.cumsum([len(r) for r in rows])
        row_docs = np.array([int(kept[i]) for r in rows for i in r], dtype=np.int64)
        row_trained = np.add.reduceat(trained_of[row_docs], row_ptr[:-1]) if len(row_docs) else \
            np.zeros(0, dtype=np.int64)
        np.save(directory / f"{name}.row_ptr.npy", row_ptr)
        np.save(directory / f"{name}.row_docs.npy", row_docs)
        np.save(directory / f"{name}.row_trained.npy", row_trained)
        counts[name] = {"conversations": len(idx), "truncated": int((s & TRUNCATED != 0).sum()),
                        "droppedOverLength": int((s & DROPPED_LONG != 0).sum()),
                        "droppedUntrained": int((s & DROPPED_UNTRAINED != 0).sum()),
                        "sequences": len(rows), "tokens": int(sum(sizes)),
                        "trainedTokens": int(row_trained.sum())}
    c = counts["train"]
    if c["conversations"] == 0 and not whole:
        # Nothing was assigned to training at all: the split is the cause, not the lengths.
        raise DataError("the training split holds no conversation", field="spec.splits",
                        hint="by file, the sources without split (or with split: train) are the training data, "
                             "and they hold no record" if by_file else "raise splits.ratios.train, or add records")
    if c["sequences"] == 0 and not whole:
        hint = ("raise chat.sequenceLength or set chat.overLength: truncate" if c["droppedOverLength"]
                else "check that the conversations have assistant turns to train on" if c["droppedUntrained"]
                else "every source of a split by file without a split name is training data")
        raise DataError(f"no training sequence is left: of {c['conversations']} conversations, "
                        f"{c['droppedOverLength']} were too long and {c['droppedUntrained']} had no "
                        "trained token", field="spec.chat", hint=hint)
    json_path = tok_dir / "tokenizer.json" if tok_dir is not None else tok_files[0]
    return {"kind": "chat", "store": store, "sequenceLength": chat.sequence_length,
            "packing": chat.packing, "padId": encoder.pad_id, "counts": counts,
            "tokenizerJson": str(json_path)}


def _record_splits(files: list[FileInfo], record_file: array.array[int], *, by_file: bool, whole: bool,
                   ratios: Any, seed: int) -> dict[str, np.ndarray]:
    """The records (conversations, or preference pairs) of each split, by index: by their
    source's split name (none: training), all in training (``whole``), or a seeded partition."""
    n = len(record_file)
    if not (by_file or whole):
        return ratio_split(n, ratios, seed)
    split_of = np.array(["train" if whole else fi.split or "train" for fi in files], dtype=object)
    of_record = np.frombuffer(record_file, dtype=np.int32)
    return {name: np.flatnonzero(split_of[of_record] == name) if n else np.zeros(0, dtype=np.int64)
            for name in SPLITS}


def _chat_encoder(chat: Chat, base_dir: Path, tokenizer_dir: Path | None) -> tuple[Any, Any, Path | None, list[Path]]:
    from .chat import Encoder, load_tokenizer
    from .chat_template import check_template, find_template

    tok, tok_dir, tok_files = load_tokenizer(chat, base_dir, tokenizer_dir)
    template = find_template(chat, base_dir, tok_dir)
    check_template(template, chat)
    if template is not None and template.origin != "spec.chat.template" and Path(template.origin) not in tok_files:
        tok_files.append(Path(template.origin))
    return Encoder(tok, template, chat), tok, tok_dir, tok_files


POOL_BYTES = 8 << 20
"""Chat sources of at least this size are encoded by a pool of processes, one per core:
rendering a template is Python, so threads would not help."""
POOL_CHUNK = 256
"""Conversations a worker encodes per task."""

Encoded = tuple[int, dict[str, Any], np.ndarray, np.ndarray]
"""A conversation's source file (index), where it is, its ids and its trained flags."""


def _records(chat: Chat, files: list[FileInfo]) -> Iterator[tuple[int, dict[str, Any], list[dict[str, str]]]]:
    from .conversations import read_records, to_messages

    for k, fi in enumerate(files):
        watch = _Watch(fi)
        for row, rec in read_records(fi):
            where = {"file": fi.display, "row": row, "unit": fi.unit}
            yield k, where, to_messages(rec, chat, where)
        watch.check()


def _encoded(chat: Chat, files: list[FileInfo], encoder: Any, base_dir: Path,
             tokenizer_dir: Path | None) -> Iterator[Encoded]:
    """Every conversation encoded, in file order: here, or by a pool of processes for large
    sources (the order, and so the data, is the same either way)."""
    from .chat import one_conversation

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if cores < 2 or sum(fi.path.stat().st_size for fi in files) < POOL_BYTES:
        for k, where, messages in _records(chat, files):
            e = encoder.encode(one_conversation(messages, where, k))
            yield k, where, np.asarray(e.ids, dtype=np.int64), np.asarray(e.trained, dtype=bool)
        return
    yield from _encoded_by_pool(chat, files, base_dir, tokenizer_dir, cores)


def _encoded_by_pool(chat: Chat, files: list[FileInfo], base_dir: Path, tokenizer_dir: Path | None,
                     cores: int) -> Iterator[Encoded]:
    import multiprocessing
    from collections import deque
    from concurrent.futures import Future, ProcessPoolExecutor

    # spawn, not fork: the caller may hold threads (a tokenizer's, a process group's) that a
    # forked child would inherit in an unknown state.
    context = multiprocessing.get_context("spawn")
    pending: deque[Future[list[Any]]] = deque()
    with ProcessPoolExecutor(cores, mp_context=context, initializer=_worker_init,
                             initargs=(chat, base_dir, tokenizer_dir)) as pool:
        def drain(limit: int) -> Iterator[Encoded]:
            while len(pending) > limit:
                for item in pending.popleft().result():
                    if item[0] == "error":
                        raise DataError(item[1], **item[2])
                    _, k, where, ids, trained = item
                    yield k, where, ids, trained

        chunk: list[Any] = []
        for record in _records(chat, files):
            chunk.append(record)
            if len(chunk) == POOL_CHUNK:
                pending.append(pool.submit(_worker_encode, chunk))
                chunk = []
                # A bounded number of chunks in flight: memory stays flat whatever the size.
                yield from drain(2 * cores)
        if chunk:
            pending.append(pool.submit(_worker_encode, chunk))
        yield from drain(0)


_WORKER: Any = None


def _worker_init(chat: Chat, base_dir: Path, tokenizer_dir: Path | None) -> None:
    global _WORKER
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one process a core already
    _WORKER = _chat_encoder(chat, base_dir, tokenizer_dir)[0]


def _worker_encode(chunk: list[Any]) -> list[Any]:
    from .chat import one_conversation

    out: list[Any] = []
    for k, where, messages in chunk:
        try:
            e = _WORKER.encode(one_conversation(messages, where, k))
        except DataError as exc:
            # Sent back as plain values: the main process raises it, in data order.
            out.append(("error", exc.message, {"file": exc.file, "row": exc.row, "unit": exc.unit,
                                               "column": exc.column, "field": exc.field, "hint": exc.hint}))
            break
        out.append(("ok", k, where, np.asarray(e.ids, dtype=np.int64), np.asarray(e.trained, dtype=bool)))
    return out


def pack_rows(lengths: list[int], capacity: int, packing: bool) -> list[list[int]]:
    """Which conversations share a row: best-fit decreasing (the fullest row that still has
    room), ties kept in data order; without packing, one conversation per row."""
    import bisect

    if not packing:
        return [[i] for i in range(len(lengths))]
    rows: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (room left, row index), sorted
    for i in sorted(range(len(lengths)), key=lambda k: (-lengths[k], k)):
        need = lengths[i]
        at = bisect.bisect_left(free, (need, -1))
        if at < len(free):
            room, r = free.pop(at)
            rows[r].append(i)
            bisect.insort(free, (room - need, r))
        else:
            rows.append([i])
            bisect.insort(free, (capacity - need, len(rows) - 1))
    return rows


# --- preference pairs ------------------------------------------------------------------------

def prepare_pairs(chat: Chat, files: list[FileInfo], *, by_file: bool, ratios: Any, seed: int,
                  base_dir: Path, tokenizer_dir: Path | None, directory: Path,
                  whole: bool = False) -> dict[str, Any]:
    """Render and tokenize every preference pair into ``directory``: two documents per pair,
    the prompt followed by the chosen answer, then by the rejected one (only the answers are
    trained); a row of a split is one pair. Arguments as for :func:`prepare_chat`.

    One process: a pair renders three templates, a few thousand pairs a second, which
    preference data sets (tens of thousands of pairs) do not make worth a pool."""
    from .conversations import read_records
    from .pairs import to_pair

    encoder, tok, tok_dir, tok_files = _chat_encoder(chat, base_dir, tokenizer_dir)
    limit = chat.sequence_length + 1
    status = array.array("b")
    pair_file = array.array("i")
    pair_doc = array.array("q")  # the chosen answer's document; the rejected one's is the next
    trained_of = array.array("q")  # per document
    with TokenWriter(directory, vocab_size=max(len(tok), int(tok.vocab_size)), masked=True) as writer:
        for k, fi in enumerate(files):
            watch = _Watch(fi)
            for row, rec in read_records(fi):
                where = {"file": fi.display, "row": row, "unit": fi.unit}
                prompt, chosen, rejected = encoder.encode_pair(to_pair(rec, chat, where), where)
                state = KEPT
                longest = max(len(chosen), len(rejected))
                if len(prompt) + longest > limit:
                    if chat.over_length == "drop":
                        state = DROPPED_LONG
                    else:
                        # The prompt's start goes first (its end leads into the answer), down to
                        # half the length; then the answers' ends.
                        keep = max(limit - longest, min(len(prompt), limit // 2))
                        prompt = prompt[len(prompt) - keep:]
                        chosen, rejected = chosen[:limit - keep], rejected[:limit - keep]
                        state = TRUNCATED
                pair_file.append(k)
                status.append(state)
                if state == DROPPED_LONG:
                    pair_doc.append(-1)
                    continue
                first = -1
                for answer in (chosen, rejected):
                    ids = np.asarray(prompt + answer, dtype=np.int64)
                    trained = np.zeros(len(ids), dtype=bool)
                    trained[len(prompt):] = True
                    doc = writer.add(ids, trained, where=where)
                    first = doc if first < 0 else first
                    trained_of.append(len(answer))
                pair_doc.append(first)
            watch.check()
        store, docs = writer.finish()
    st = np.frombuffer(status, dtype=np.int8)
    pdoc = np.frombuffer(pair_doc, dtype=np.int64)
    trained = np.frombuffer(trained_of, dtype=np.int64)
    parts = _record_splits(files, pair_file, by_file=by_file, whole=whole, ratios=ratios, seed=seed)
    counts: dict[str, dict[str, int]] = {}
    for name, idx in parts.items():
        s = st[idx]
        kept = pdoc[idx][pdoc[idx] >= 0]
        row_docs = np.stack([kept, kept + 1], axis=1).reshape(-1) if len(kept) else np.zeros(0, dtype=np.int64)
        row_ptr = np.arange(len(kept) + 1, dtype=np.int64) * 2
        row_trained = trained[row_docs].reshape(-1, 2).sum(axis=1) if len(kept) else np.zeros(0, dtype=np.int64)
        np.save(directory / f"{name}.row_ptr.npy", row_ptr)
        np.save(directory / f"{name}.row_docs.npy", row_docs)
        np.save(directory / f"{name}.row_trained.npy", row_trained)
        sizes = docs[row_docs + 1] - docs[row_docs] if len(row_docs) else np.zeros(0, dtype=np.int64)
        counts[name] = {"pairs": len(idx), "truncated": int((s == TRUNCATED).sum()),
                        "droppedOverLength": int((s == DROPPED_LONG).sum()), "sequences": len(kept),
                        "tokens": int(sizes.sum()), "trainedTokens": int(row_trained.sum())}
    c = counts["train"]
    if c["sequences"] == 0 and not whole:
        hint = ("raise chat.sequenceLength or set chat.overLength: truncate" if c["droppedOverLength"]
                else "every source of a split by file without a split name is training data")
        raise DataError(f"no training pair is left: of {c['pairs']} pairs, {c['droppedOverLength']} were "
                        "too long", field="spec.chat", hint=hint)
    json_path = tok_dir / "tokenizer.json" if tok_dir is not None else tok_files[0]
    return {"kind": "preference", "store": store, "sequenceLength": chat.sequence_length,
            "packing": False, "padId": encoder.pad_id, "counts": counts,
            "tokenizerJson": str(json_path)}
