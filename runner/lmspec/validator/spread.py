"""Layer 1 on several cores: parse many files in forked processes.

>>> parse_files(["a.yaml", "b.yaml"], max_bytes=MAX_BYTES, workers=2)
[[Document(...)], ParseError(...)]

Parsing is about half of what ``lmspec validate`` does over a large tree, and files parse
independently, so with many files the list is cut into chunks of consecutive files that forked
children and this process share. Children send back plain data, with positions in their compact
form (made into objects only for the documents a finding is about,
:meth:`lmspec.manifests.document.Document.positions`), a chunk at a time, so this process can run the next layer's
per-document work on a chunk (``meanwhile``) while they parse the rest. Everything that needs
all the documents at once (references across files) waits.

The chunks are shared, not dealt out in advance: every process takes the next one when it is
free, and this process takes one only when no child has a chunk waiting for it. How much this
process can parse depends on how long the next layer takes here and on what else the machine
runs, so any fixed split leaves one side waiting for the other.

Children are forked, never spawned: a spawned interpreter would pay the whole start-up again.
Forking is safe only in a process without other threads, so only callers that know that (the
CLI) ask for workers; where ``os.fork`` is missing, or a child fails in any way, the chunks it
did not deliver are parsed here instead, with the same results.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any, BinaryIO

from ..manifests.document import Document
from .parse import ParseError, parse_file

MIN_FILES_PER_WORKER = 250
"""Fewer files than this per process do not repay a fork (a few milliseconds each)."""
BATCH = 50
"""Files per chunk: the unit a process takes and a child sends."""
MAX_CHUNKS = 1000
"""Above this many chunks, chunks grow: every chunk's ticket is written before the children
start, and all of them must fit in a pipe's buffer (4 KiB at least, everywhere)."""

Result = list[Document] | ParseError
Meanwhile = Callable[[list[Result]], None]
_HEADER = struct.Struct("<QI")  # payload size, chunk number
_TICKET = struct.Struct("<I")


def default_workers() -> int:
    """The cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def parse_files(files: list[str], *, max_bytes: int, workers: int,
                meanwhile: Meanwhile | None = None) -> list[Result]:
    """Each file's documents (or its :class:`ParseError`), in the order of ``files``.
    ``meanwhile``, when given, sees every result once, in batches as soon as they are there, in
    no set order: work for the next layer that would otherwise wait for the slowest child."""
    n = min(workers, len(files) // MIN_FILES_PER_WORKER) - 1  # children beside this process
    if n < 1 or not hasattr(os, "fork"):
        return _here(files, max_bytes, meanwhile)
    size = max(BATCH, -(-len(files) // MAX_CHUNKS))
    chunks = [files[i:i + size] for i in range(0, len(files), size)]
    tickets = _tickets(len(chunks))
    if tickets is None:
        return _here(files, max_bytes, meanwhile)
    import select  # here: a run over a few files, the common case, never forks

    done: dict[int, list[Result]] = {}
    children = [c for c in (_fork(chunks, tickets, max_bytes) for _ in range(n)) if c is not None]

    def deliver(number: int, batch: list[Result]) -> None:
        done[number] = batch
        if meanwhile is not None:
            meanwhile(batch)

    try:
        while children:
            ready = select.select([c.signals for c in children], [], [], 0)[0]
            if not ready:
                number = _take(tickets)
                if number is not None:  # nothing has come: parse a chunk here meanwhile
                    deliver(number, [_parse(f, max_bytes) for f in chunks[number]])
                    continue
                ready = select.select([c.signals for c in children], [], [])[0]
            for child in [c for c in children if c.signals in ready]:
                number, batch = _receive(child, chunks, done)
                if batch is None:  # the child has ended, or failed: what it did not send is parsed below
                    child.close()
                    children.remove(child)
                else:
                    deliver(number, batch)
    finally:
        os.close(tickets)
        for child in children:
            child.close()
    for number, chunk in enumerate(chunks):
        if number not in done:
            deliver(number, [_parse(f, max_bytes) for f in chunk])
    return [r for number in range(len(chunks)) for r in done[number]]


def _receive(child: _Child, chunks: list[list[str]],
             done: dict[int, list[Result]]) -> tuple[int, list[Result] | None]:
    """The next chunk ``child`` sent, with its number; None for the chunk when it sent nothing
    more, or something that is not a chunk still to be done."""
    sent = child.next_payload()
    if sent is None or not 0 <= sent[0] < len(chunks) or sent[0] in done:
        return -1, None
    return sent[0], _unpack(sent[1], chunks[sent[0]])


def _here(files: list[str], max_bytes: int, meanwhile: Meanwhile | None) -> list[Result]:
    results = [_parse(f, max_bytes) for f in files]
    if meanwhile is not None:
        meanwhile(results)
    return results


def _parse(file: str, max_bytes: int) -> Result:
    try:
        return parse_file(file, max_bytes=max_bytes, positions=False)
    except ParseError as exc:
        return exc


def _tickets(count: int) -> int | None:
    """The read end of a pipe that holds one ticket per chunk, its write end closed, so that
    each read takes the next chunk's number and an empty pipe reads as the end of the work
    (reads of a few bytes from a pipe are whole, whoever else reads it); None when it cannot
    be made."""
    try:
        read_end, write_end = os.pipe()
    except OSError:
        return None
    data = b"".join(_TICKET.pack(i) for i in range(count))
    try:
        os.set_blocking(write_end, False)  # a pipe smaller than the tickets must not hang us
        written = os.write(write_end, data)
    except OSError:
        written = -1
    os.close(write_end)
    if written != len(data):
        os.close(read_end)
        return None
    return read_end


def _take(tickets: int) -> int | None:
    """The next chunk nobody has taken, or None when none is left."""
    data = os.read(tickets, _TICKET.size)
    return _TICKET.unpack(data)[0] if len(data) == _TICKET.size else None


class _Child:
    """A forked child parsing chunks. It appends each (a length-prefixed pickle) to an unlinked
    temporary file, then writes one byte to a pipe, so it never waits for this process to read:
    a pipe holds 64 KiB, a chunk a few hundred, and a reader thread would have to win the
    interpreter lock for every 64 KiB it moves. This process reads the chunks in the order sent,
    waiting on the pipe for each; the pipe's end of file is the child's end."""

    def __init__(self, pid: int, signals: int, spool: BinaryIO) -> None:
        self.pid, self.signals, self.spool, self.offset = pid, signals, spool, 0

    def next_payload(self) -> tuple[int, bytes] | None:
        """The next chunk's number and bytes, or None once the child has ended (or its chunk is
        cut short)."""
        if not os.read(self.signals, 1):
            return None
        fd = self.spool.fileno()
        header = os.pread(fd, _HEADER.size, self.offset)
        if len(header) < _HEADER.size:
            return None
        size, number = _HEADER.unpack(header)
        payload = os.pread(fd, size, self.offset + _HEADER.size)
        if len(payload) < size:
            return None
        self.offset += _HEADER.size + size
        return number, payload

    def close(self) -> None:
        os.close(self.signals)
        self.spool.close()
        os.waitpid(self.pid, 0)


def _fork(chunks: list[list[str]], tickets: int, max_bytes: int) -> _Child | None:
    """A child parsing the chunks it takes from ``tickets``, or None when it could not start."""
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
        while (number := _take(tickets)) is not None:
            out: list[Any] = []
            for f in chunks[number]:
                r = _parse(f, max_bytes)
                if isinstance(r, ParseError):
                    out.append((r.rule, r.message, r.file, r.line, r.column))
                else:
                    out.append((r[0].text if r else "", [(d.data, d.loc, d.flat) for d in r]))
            payload = pickle.dumps(out, pickle.HIGHEST_PROTOCOL)
            _write(fd, _HEADER.pack(len(payload), number) + payload)
            _write(write_end, b".")
        code = 0
    finally:
        os._exit(code)


def _write(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _unpack(payload: bytes, files: list[str]) -> list[Result] | None:
    """One chunk from a child, for ``files``; None if it does not hold it whole."""
    import pickle

    try:
        sent = pickle.loads(payload)
    except Exception:
        return None
    if not isinstance(sent, list) or len(sent) != len(files):
        return None
    batch: list[Result] = []
    for file, item in zip(files, sent, strict=True):
        if len(item) == 5:
            batch.append(ParseError(item[0], item[1], item[2], item[3], item[4]))
        else:
            text, docs = item
            batch.append([Document(data, file, i, loc, text, flat) for i, (data, loc, flat) in enumerate(docs)])
    return batch
