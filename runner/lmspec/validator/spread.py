"""Layer 1 on several cores: parse many files in forked processes.

>>> parse_files(["a.yaml", "b.yaml"], max_bytes=MAX_BYTES, workers=2)
[[Document(...)], ParseError(...)]

Parsing is most of what ``lmspec validate`` does over a large tree, and files parse
independently, so with many files the list is cut into contiguous slices: this process parses
the first while forked children parse the others and send back plain data, with positions in
their compact form (made into objects only for the documents a finding is about,
:meth:`.parse.Document.positions`). Children send their results in small batches, so this
process can start the next layer's per-document work on a batch (``meanwhile``) while they parse
the rest. Everything that needs all the documents at once (references cross files) waits.

Children are forked, never spawned: a spawned interpreter would pay the whole start-up again.
Forking is safe only in a process without other threads, so only callers that know that (the
CLI) ask for workers; where ``os.fork`` is missing, or a child fails in any way, the files it
did not deliver are parsed here instead, with the same results.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any, BinaryIO

from .parse import Document, ParseError, parse_file

MIN_FILES_PER_WORKER = 250
"""Fewer files than this per process do not repay a fork (a few milliseconds each)."""
BATCH = 100
"""Files per batch a child sends."""

Result = list[Document] | ParseError
Meanwhile = Callable[[list[Result]], None]
_HEADER = struct.Struct("<Q")


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_files(files: list[str], *, max_bytes: int, workers: int,
                meanwhile: Meanwhile | None = None) -> list[Result]:
    """Each file's documents (or its :class:`ParseError`), in the order of ``files``.
    ``meanwhile``, when given, sees every result once, in order and in batches, as soon as it is
    there: work for the next layer that would otherwise wait for the slowest child."""
    n = min(workers, len(files) // MIN_FILES_PER_WORKER)
    if n < 2 or not hasattr(os, "fork"):
        results = [_parse(f, max_bytes) for f in files]
        if meanwhile is not None:
            meanwhile(results)
        return results
    # This process takes a smaller slice: it also unpacks what the children send.
    bounds = [0] + [len(files) * (2 * i - 1) // (2 * n - 1) for i in range(1, n + 1)]
    children = [(_fork(files[bounds[i]:bounds[i + 1]], max_bytes), bounds[i], bounds[i + 1])
                for i in range(1, n)]
    results = [_parse(f, max_bytes) for f in files[:bounds[1]]]
    if meanwhile is not None:
        meanwhile(results)
    for child, start, end in children:
        results.extend(_collect(child, files[start:end], max_bytes, meanwhile))
    return results


def _parse(file: str, max_bytes: int) -> Result:
    try:
        return parse_file(file, max_bytes=max_bytes, positions=False)
    except ParseError as exc:
        return exc


class _Child:
    """A forked child parsing files. It appends each batch (a length-prefixed pickle) to an
    unlinked temporary file, then writes one byte to a pipe, so it never waits for this process
    to read: a pipe holds 64 KiB, a batch a few hundred, and a reader thread would have to win
    the interpreter lock for every 64 KiB it moves. This process reads the batches in order,
    waiting on the pipe for each; the pipe's end of file is the child's end."""

    def __init__(self, pid: int, signals: int, spool: BinaryIO) -> None:
        self.pid, self.signals, self.spool, self.offset = pid, signals, spool, 0

    def next_payload(self) -> bytes | None:
        """The next batch's bytes, or None once the child has ended (or its batch is cut short)."""
        if not os.read(self.signals, 1):
            return None
        fd = self.spool.fileno()
        header = os.pread(fd, _HEADER.size, self.offset)
        if len(header) < _HEADER.size:
            return None
        (size,) = _HEADER.unpack(header)
        payload = os.pread(fd, size, self.offset + _HEADER.size)
        if len(payload) < size:
            return None
        self.offset += _HEADER.size + size
        return payload

    def close(self) -> None:
        os.close(self.signals)
        self.spool.close()
        os.waitpid(self.pid, 0)


def _fork(files: list[str], max_bytes: int) -> _Child | None:
    """A child parsing ``files``, or None when it could not start."""
    # Imported here: a run over a few files, the common case, never forks.
    import pickle
    import tempfile

    try:
        spool = tempfile.TemporaryFile()  # noqa: SIM115 - the child's until _Child.close
    except OSError:
        return None
    try:
        read_end, write_end = os.pipe()
    except OSError:
        spool.close()
        return None
    try:
        pid = os.fork()
    except OSError:
        os.close(read_end)
        os.close(write_end)
        spool.close()
        return None
    if pid:
        os.close(write_end)
        return _Child(pid, read_end, spool)
    # The child: parse, send, and leave without running the parent's exit handlers or flushing
    # its buffers a second time.
    code = 1
    try:
        os.close(read_end)
        fd = spool.fileno()
        for start in range(0, len(files), BATCH):
            out: list[Any] = []
            for f in files[start:start + BATCH]:
                r = _parse(f, max_bytes)
                if isinstance(r, ParseError):
                    out.append((r.rule, r.message, r.file, r.line, r.column))
                else:
                    out.append((r[0].text if r else "", [(d.data, d.loc, d.flat) for d in r]))
            payload = pickle.dumps(out, pickle.HIGHEST_PROTOCOL)
            _write(fd, _HEADER.pack(len(payload)) + payload)
            _write(write_end, b".")
        code = 0
    finally:
        os._exit(code)


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _collect(child: _Child | None, files: list[str], max_bytes: int,
             meanwhile: Meanwhile | None) -> list[Result]:
    """The results of ``files``: the batches the child sent, then, if it stopped early or failed,
    the files it did not deliver, parsed here."""
    results: list[Result] = []
    if child is not None:
        try:
            while len(results) < len(files) and (payload := child.next_payload()) is not None:
                batch = _unpack(payload, files[len(results):])
                if batch is None:
                    break
                if meanwhile is not None:
                    meanwhile(batch)
                results.extend(batch)
        finally:
            child.close()
    rest = [_parse(f, max_bytes) for f in files[len(results):]]
    if rest and meanwhile is not None:
        meanwhile(rest)
    return results + rest


def _unpack(payload: bytes, files: list[str]) -> list[Result] | None:
    """One batch from a child, for the first of ``files``; None if it does not hold one."""
    import pickle

    try:
        sent = pickle.loads(payload)
    except Exception:
        return None
    if not isinstance(sent, list) or not 0 < len(sent) <= len(files):
        return None
    batch: list[Result] = []
    for file, item in zip(files, sent, strict=False):
        if len(item) == 5:
            batch.append(ParseError(item[0], item[1], item[2], item[3], item[4]))
        else:
            text, docs = item
            batch.append([Document(data, file, i, loc, text, flat) for i, (data, loc, flat) in enumerate(docs)])
    return batch
