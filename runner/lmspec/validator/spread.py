"""Layer 1 on several cores: parse many files in forked processes.

>>> parse_files(["a.yaml", "b.yaml"], max_bytes=MAX_BYTES, workers=2)
[[Document(...)], ParseError(...)]

Parsing is most of what ``lmspec validate`` does over a large tree, and files parse
independently, so with many files the list is cut into contiguous slices: this process parses
the first while forked children parse the others and send back plain data, with positions in
their compact form (made into objects only for the documents a finding is about,
:meth:`.parse.Document.positions`). Everything after parsing needs all the
documents at once (references cross files) and stays in this process.

Children are forked, never spawned: a spawned interpreter would pay the whole start-up again.
Forking is safe only in a process without other threads, so only callers that know that (the
CLI) ask for workers; where ``os.fork`` is missing, or a child fails in any way, the slice is
parsed here instead, with the same results.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from typing import Any

from .parse import Document, ParseError, parse_file

MIN_FILES_PER_WORKER = 250
"""Fewer files than this per process do not repay a fork (a few milliseconds each)."""

Result = list[Document] | ParseError


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_files(files: list[str], *, max_bytes: int, workers: int,
                meanwhile: Callable[[list[Result]], None] | None = None) -> list[Result]:
    """Each file's documents (or its :class:`ParseError`), in the order of ``files``.
    ``meanwhile`` is given this process's own results while the children may still be parsing:
    work for the next layer that would otherwise wait for them."""
    n = min(workers, len(files) // MIN_FILES_PER_WORKER)
    if n < 2 or not hasattr(os, "fork"):
        return [_parse(f, max_bytes) for f in files]
    # This process takes a smaller slice: it also reads what the children send.
    bounds = [0] + [len(files) * (2 * i - 1) // (2 * n - 1) for i in range(1, n + 1)]
    children = [(_fork(files[bounds[i]:bounds[i + 1]], max_bytes), bounds[i], bounds[i + 1])
                for i in range(1, n)]
    results = [_parse(f, max_bytes) for f in files[:bounds[1]]]
    if meanwhile is not None:
        meanwhile(results)
    for child, start, end in children:
        part = files[start:end]
        received = _collect(child, part)
        results.extend(received if received is not None else [_parse(f, max_bytes) for f in part])
    return results


def _parse(file: str, max_bytes: int) -> Result:
    try:
        return parse_file(file, max_bytes=max_bytes, positions=False)
    except ParseError as exc:
        return exc


def _fork(files: list[str], max_bytes: int) -> tuple[int, int] | None:
    """A child parsing ``files``: (pid, read end of its pipe), or None when it could not start."""
    try:
        read_end, write_end = os.pipe()
        pid = os.fork()
    except OSError:
        return None
    if pid:
        os.close(write_end)
        return pid, read_end
    # The child: parse, send, and leave without running the parent's exit handlers or flushing
    # its buffers a second time.
    code = 1
    try:
        os.close(read_end)
        out: list[Any] = []
        for f in files:
            r = _parse(f, max_bytes)
            if isinstance(r, ParseError):
                out.append((r.rule, r.message, r.file, r.line, r.column))
            else:
                out.append((r[0].text if r else "", [(d.data, d.loc, d.flat) for d in r]))
        payload = memoryview(pickle.dumps(out, pickle.HIGHEST_PROTOCOL))
        while payload:
            payload = payload[os.write(write_end, payload):]
        code = 0
    finally:
        os._exit(code)


def _collect(child: tuple[int, int] | None, files: list[str]) -> list[Result] | None:
    """What a child sent, as documents and errors; None if it failed."""
    if child is None:
        return None
    pid, read_end = child
    chunks = []
    with os.fdopen(read_end, "rb") as pipe:
        while chunk := pipe.read(1 << 20):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
        return None
    try:
        sent = pickle.loads(b"".join(chunks))
    except Exception:  # a child killed mid-write leaves a truncated payload
        return None
    if len(sent) != len(files):
        return None
    results: list[Result] = []
    for file, item in zip(files, sent, strict=True):
        if len(item) == 5:
            results.append(ParseError(item[0], item[1], item[2], item[3], item[4]))
        else:
            text, docs = item
            results.append([Document(data, file, i, loc, text, flat) for i, (data, loc, flat) in enumerate(docs)])
    return results
