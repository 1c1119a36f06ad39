"""Write a plain-text corpus of a given size from the Python standard library's source files.

    python scripts/make_corpus.py OUT_DIR --mb 256 [--files 8]

Every machine that runs lmspec has these files, so the corpus needs no download. They are
concatenated in a fixed order (sorted paths, each file's text behind a ``# file: NAME`` line)
and repeated until the size is reached, spread over ``--files`` files of equal size: the same
bytes on every machine with the same Python version. Used by ``bench/data.py`` and by the
README's pretraining example.
"""

from __future__ import annotations

import argparse
import sysconfig
from pathlib import Path


def sources() -> list[Path]:
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return sorted(p for p in stdlib.rglob("*.py") if "site-packages" not in p.parts and "test" not in p.parts)


def make_corpus(out: Path, megabytes: float, files: int = 8) -> list[Path]:
    """Write ``files`` text files holding ``megabytes`` MB (10**6 bytes) in all; returns them."""
    out.mkdir(parents=True, exist_ok=True)
    per_file = int(megabytes * 1e6) // files
    texts: list[bytes] = []
    for p in sources():
        try:
            body = p.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        texts.append(f"# file: {p.name}\n{body}\n".encode())
    written: list[Path] = []
    k = 0
    for i in range(files):
        path = out / f"corpus-{i:03d}.txt"
        size = 0
        with path.open("wb") as f:
            while size < per_file:
                chunk = texts[k % len(texts)][:per_file - size]
                # Never cut a UTF-8 character: step back to the start of one.
                while chunk and len(chunk) < len(texts[k % len(texts)]) and chunk[-1] & 0xC0 == 0x80:
                    chunk = chunk[:-1]
                if not chunk:
                    break
                f.write(chunk)
                size += len(chunk)
                k += 1
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--mb", type=float, default=256.0, help="megabytes in all (default 256)")
    parser.add_argument("--files", type=int, default=8)
    args = parser.parse_args()
    paths = make_corpus(args.out, args.mb, args.files)
    total = sum(p.stat().st_size for p in paths)
    print(f"wrote {len(paths)} files, {total:,} bytes, to {args.out}")


if __name__ == "__main__":
    main()
