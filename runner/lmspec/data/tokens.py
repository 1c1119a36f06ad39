"""Token ids on disk: a flat stream in fixed-size shard files, written once, read by range.

>>> # w = TokenWriter(directory, vocab_size=50_257, masked=False)
>>> # w.add(np.array([464, 3290, 50256]))             # one document; returns its index
>>> # info = w.close()                                  # shard names, sizes and digests
>>> # store = TokenStore(directory, info)               # checks every shard's size and digest
>>> # store.read(0, 3)                                   # int64 [3]

The ids are ``uint16`` when the vocabulary fits (at most 65,536 ids: 2 bytes a token), else
``uint32``. A document is a contiguous range of the stream; ``docs`` holds the ``D + 1`` offsets
of ``D`` documents. Chat data adds a mask stream (one bit a token, ``np.packbits`` order): is this
token trained? Shards hold :data:`SHARD_TOKENS` tokens (the last one fewer), so a mask shard's
bytes line up with its token shard.

Reads use ``os.pread`` on a file descriptor kept per shard rather than a long-lived
``np.memmap``: every page a map has touched stays in the process's resident set, so a run that
reads its whole corpus would appear to hold it all (nanoGPT re-creates its memmap per batch
for this reason); a read copies exactly the tokens asked for, into a fresh array.
"""

from __future__ import annotations

import array
import contextlib
import errno
import hashlib
import os
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DataError

SHARD_TOKENS = 1 << 26
"""Tokens per shard file (128 MiB of uint16); a multiple of 8, so mask bits align with shards."""


def dtype_for(vocab_size: int) -> np.dtype[Any]:
    """The smallest unsigned type that holds every id of a vocabulary of ``vocab_size``."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.uint32)


@dataclass
class _Shard:
    name: str
    tokens: int
    sha256: str
    mask: str | None = None
    mask_sha256: str | None = None

    def as_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "tokens": self.tokens, "sha256": self.sha256}
        if self.mask is not None:
            d |= {"mask": self.mask, "maskSha256": self.mask_sha256}
        return d


class TokenWriter:
    """Appends documents to shard files in ``directory``; :meth:`close` returns what a
    :class:`TokenStore` needs to read them back (kept in the cache entry's ``meta.json``)."""

    def __init__(self, directory: Path, *, vocab_size: int, masked: bool) -> None:
        self.directory = directory
        self.dtype = dtype_for(vocab_size)
        self.limit = int(np.iinfo(self.dtype).max)
        self.masked = masked
        self.shards: list[_Shard] = []
        self.offsets = array.array("q", [0])  # 8 bytes a document, not a Python int's 36
        self.total = 0
        self.max_id = -1
        self._file: Any = None
        self._mask_file: Any = None
        self._hash: Any = None
        self._mask_hash: Any = None
        self._in_shard = 0
        self._bits = np.zeros(0, dtype=bool)  # mask bits not yet a whole byte
        # Writing and digesting run on a thread of their own (both release the GIL), beside
        # the reading and tokenizing of the next batch; in order, a bounded number behind.
        self._io = ThreadPoolExecutor(1, thread_name_prefix="lmspec-shards")
        self._pending: deque[Future[None]] = deque()

    def add(self, ids: np.ndarray, trained: np.ndarray | None = None, *, where: dict[str, Any] | None = None) -> int:
        """Append one whole document (its ids, and for masked stores a flag per id); returns
        its index. ``where`` (file, row, unit) locates an id the store's type cannot hold."""
        self.append(ids, trained, where=where)
        return self.end_document()

    def append(self, ids: np.ndarray, trained: np.ndarray | None = None, *,
               where: dict[str, Any] | None = None) -> None:
        """Append ids to the open document (a long document arrives in pieces)."""
        ids = np.asarray(ids)
        if ids.size:
            top, low = int(ids.max()), int(ids.min())
            if top > self.limit or low < 0:
                bad = top if top > self.limit else low
                raise DataError(f"token id {bad} does not fit the data cache's {self.dtype.name} ids "
                                f"(0-{self.limit}): the tokenizer produces ids beyond its vocabulary "
                                "size", **(where or {}))
            self.max_id = max(self.max_id, top)
        assert (trained is not None) == self.masked
        data = ids.astype(self.dtype, copy=False)
        flags = None if trained is None else np.asarray(trained, dtype=bool)
        at = 0
        while at < len(data):
            if self._file is None:
                self._open_shard()
            take = min(len(data) - at, SHARD_TOKENS - self._in_shard)
            self._write(self._file, self._hash, data[at:at + take].tobytes())
            if flags is not None:
                self._write_bits(flags[at:at + take])
            self._in_shard += take
            at += take
            if self._in_shard == SHARD_TOKENS:
                self._close_shard()
        self.total += len(data)

    def end_document(self) -> int:
        """Close the open document; returns its index."""
        self.offsets.append(self.total)
        return len(self.offsets) - 2

    def __enter__(self) -> TokenWriter:
        return self

    def __exit__(self, kind: Any, value: Any, tb: Any) -> None:
        if kind is not None:
            self.abort()

    def finish(self) -> tuple[dict[str, Any], np.ndarray]:
        """Close the shards and write the document offsets (``docs.npy``): the store's index
        and the ``D + 1`` offsets."""
        info = self.close()
        docs = np.frombuffer(self.offsets, dtype=np.int64).copy()
        np.save(self.directory / "docs.npy", docs)
        return info, docs

    def close(self) -> dict[str, Any]:
        if self._file is not None:
            self._close_shard()
        self._io.shutdown()
        return {"dtype": self.dtype.name, "tokens": self.total, "maxId": self.max_id,
                "masked": self.masked, "shards": [s.as_dict() for s in self.shards]}

    def abort(self) -> None:
        """Close the files after a failure (what they hold is discarded with the directory)."""
        for job in self._pending:
            with contextlib.suppress(OSError):
                job.result()
        self._pending.clear()
        self._io.shutdown()
        for f in (self._file, self._mask_file):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        self._file = self._mask_file = None

    # --- files ---------------------------------------------------------------------------------

    def _open_shard(self) -> None:
        k = len(self.shards)
        name = f"tokens-{k:05d}.bin"
        self._file = open(self.directory / name, "wb")  # noqa: SIM115 - closed by _close_shard
        self._hash = hashlib.sha256()
        self.shards.append(_Shard(name, 0, ""))
        if self.masked:
            self.shards[-1].mask = f"mask-{k:05d}.bin"
            self._mask_file = open(self.directory / f"mask-{k:05d}.bin", "wb")  # noqa: SIM115
            self._mask_hash = hashlib.sha256()
        self._in_shard = 0

    def _close_shard(self) -> None:
        shard = self.shards[-1]
        if self._mask_file is not None:
            if len(self._bits):  # the last shard's final partial byte
                self._write(self._mask_file, self._mask_hash, np.packbits(self._bits).tobytes())
                self._bits = np.zeros(0, dtype=bool)
            self._close_file(self._mask_file)
            shard.mask_sha256 = self._mask_hash.hexdigest()
            self._mask_file = None
        self._close_file(self._file)
        shard.tokens, shard.sha256 = self._in_shard, self._hash.hexdigest()
        self._file = None

    def _write_bits(self, flags: np.ndarray) -> None:
        bits = np.concatenate([self._bits, flags]) if len(self._bits) else flags
        whole = len(bits) // 8 * 8
        if whole:
            self._write(self._mask_file, self._mask_hash, np.packbits(bits[:whole]).tobytes())
        self._bits = bits[whole:].copy()

    def _write(self, f: Any, h: Any, data: bytes) -> None:
        def job() -> None:
            f.write(data)
            h.update(data)

        self._pending.append(self._io.submit(job))
        self._wait(8)

    def _wait(self, behind: int) -> None:
        """Until at most ``behind`` writes are queued; a failed write raises here."""
        while len(self._pending) > behind:
            try:
                self._pending.popleft().result()
            except OSError as e:
                raise self._error(e) from None

    def _close_file(self, f: Any) -> None:
        self._wait(0)
        try:
            f.close()  # buffered bytes are written here: a full disk may show only now
        except OSError as e:
            raise self._error(e) from None

    def _error(self, e: OSError) -> DataError:
        where = f"the data cache in {self.directory.parent}"
        if e.errno == errno.ENOSPC:
            return DataError(f"no space left on the device while writing {where}",
                             hint="free space there, or set LMSPEC_CACHE_DIR to a larger disk")
        return DataError(f"cannot write {where}: {e.strerror or e}")


class TokenStore:
    """Reads back what a :class:`TokenWriter` wrote. Opening checks every shard's size and
    sha256, so a truncated or damaged file is found before training, never fed to it."""

    def __init__(self, directory: Path, info: dict[str, Any], *, verify: bool = True) -> None:
        self.directory = directory
        self.dtype = np.dtype(info["dtype"])
        self.tokens = int(info["tokens"])
        self.max_id = int(info["maxId"])
        self.masked = bool(info["masked"])
        self._shards = [_Shard(s["name"], int(s["tokens"]), s["sha256"], s.get("mask"), s.get("maskSha256"))
                        for s in info["shards"]]
        self._starts = np.cumsum([0] + [s.tokens for s in self._shards], dtype=np.int64)
        if int(self._starts[-1]) != self.tokens:
            raise DataError(f"the data cache entry {directory} is inconsistent: its shards hold "
                            f"{int(self._starts[-1])} tokens, its index {self.tokens}")
        for s in self._shards:
            self._check(s.name, s.tokens * self.dtype.itemsize, s.sha256, verify)
            if self.masked:
                assert s.mask is not None and s.mask_sha256 is not None
                self._check(s.mask, (s.tokens + 7) // 8, s.mask_sha256, verify)
        self._fds: dict[str, int] = {}

    def _check(self, name: str, size: int, sha256: str, verify: bool) -> None:
        path = self.directory / name
        try:
            actual = path.stat().st_size
        except OSError:
            raise DataError(f"the data cache shard {path} is missing") from None
        if actual != size:
            raise DataError(f"the data cache shard {path} is truncated or damaged: {actual} bytes, "
                            f"expected {size}")
        if verify:
            from ..files import sha256_file

            if sha256_file(path) != sha256:
                raise DataError(f"the data cache shard {path} is damaged: its sha256 differs from "
                                "the one recorded when it was written")

    def read(self, start: int, end: int) -> np.ndarray:
        """Tokens ``[start, end)`` of the stream, as int64."""
        return self._read(start, end, mask=False).astype(np.int64)

    def read_mask(self, start: int, end: int) -> np.ndarray:
        """The trained flags of tokens ``[start, end)`` (masked stores only), as bool."""
        return self._read(start, end, mask=True).astype(bool)

    def _read(self, start: int, end: int, *, mask: bool) -> np.ndarray:
        if not 0 <= start <= end <= self.tokens:
            raise IndexError(f"tokens [{start}, {end}) outside a stream of {self.tokens}")
        k = int(np.searchsorted(self._starts, start, side="right")) - 1
        parts: list[np.ndarray] = []
        at = start
        while at < end:
            s = self._shards[k]
            lo, hi = at - int(self._starts[k]), min(end, int(self._starts[k + 1])) - int(self._starts[k])
            parts.append(self._bits(s, lo, hi) if mask else self._ids(s, lo, hi))
            at += hi - lo
            k += 1
        if not parts:
            return np.zeros(0, dtype=bool if mask else self.dtype)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _ids(self, s: _Shard, lo: int, hi: int) -> np.ndarray:
        size = self.dtype.itemsize
        raw = os.pread(self._fd(s.name), (hi - lo) * size, lo * size)
        return np.frombuffer(raw, dtype=self.dtype)

    def _bits(self, s: _Shard, lo: int, hi: int) -> np.ndarray:
        assert s.mask is not None
        first, last = lo // 8, (hi + 7) // 8
        raw = os.pread(self._fd(s.mask), last - first, first)
        bits = np.unpackbits(np.frombuffer(raw, dtype=np.uint8))
        return bits[lo - first * 8:hi - first * 8]

    def _fd(self, name: str) -> int:
        fd = self._fds.get(name)
        if fd is None:
            fd = self._fds[name] = os.open(self.directory / name, os.O_RDONLY)
        return fd

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __del__(self) -> None:
        # Not contextlib.suppress: at interpreter teardown the module globals may be gone.
        try:
            self.close()
        except Exception:
            return

    @property
    def bytes_on_disk(self) -> int:
        masks = sum((s.tokens + 7) // 8 for s in self._shards) if self.masked else 0
        return int(self.tokens * self.dtype.itemsize + masks)
