"""Files, the one way lmspec digests and publishes them.

    sha256_file    the digest manifests pin (``sha256``), lock files record and caches key on
    atomic_write   a file appears whole or not at all (write a temporary file, fsync, rename)
    publish_dir    a directory appears whole or not at all, replacing an earlier one

Standard library only, imported where used: the validator imports this module on every run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Lowercase hex SHA-256 of a file's bytes, as ``sha256sum`` prints it."""
    import hashlib  # here, not at the top: the validator imports this module on every run

    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Create or replace ``path`` with what ``write`` writes to a binary file object; a reader
    (or a crash) never sees a partial file."""
    import tempfile

    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write` for text (UTF-8)."""
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


def publish_dir(fill: Callable[[Path], object], dest: Path) -> Path:
    """Fill a temporary directory beside ``dest`` with ``fill(tmp)``, then move it to ``dest``
    (an earlier ``dest`` is moved aside first and removed after): ``dest`` is always either the
    old directory or the complete new one."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    try:
        fill(tmp)
        if dest.exists():
            old = dest.with_name(f".{dest.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
            os.replace(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
