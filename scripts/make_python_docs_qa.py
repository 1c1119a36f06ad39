"""Build examples/data/python-docs-qa.jsonl: question/answer conversations from the docstrings
of Python's standard library.

    python scripts/make_python_docs_qa.py            # writes examples/data/python-docs-qa.jsonl
    python scripts/make_python_docs_qa.py --check    # exit 1 if the file differs from a fresh build

Each record is one conversation in the ``messages`` format: the user asks what a function or
class does and the assistant answers with the first paragraph of its docstring; when the
signature is known, a second exchange asks for it. Docstrings change between Python releases, so
the output depends on the interpreter: the committed file was built with CPython 3.11.7. The
docstrings are part of CPython and under the PSF License (PSF-2.0).
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "examples" / "data" / "python-docs-qa.jsonl"

MODULES = [
    "builtins", "bisect", "base64", "calendar", "collections", "copy", "csv", "difflib", "fnmatch", "fractions",
    "functools", "glob", "gzip", "hashlib", "heapq", "itertools", "json", "math", "operator",
    "os.path", "pathlib", "random", "re", "shlex", "shutil", "statistics", "string", "tempfile",
    "textwrap", "urllib.parse", "uuid", "zipfile",
]
MIN_CHARS, MAX_CHARS = 40, 480
PER_MODULE = 20


def first_paragraph(doc: str) -> str | None:
    """The docstring's first paragraph on one line, or None when it is not a useful answer."""
    para = inspect.cleandoc(doc).split("\n\n")[0]
    text = " ".join(line.strip() for line in para.splitlines())
    if not MIN_CHARS <= len(text) <= MAX_CHARS or ">>>" in text:
        return None
    return text


def signature(obj: object) -> str | None:
    try:
        return str(inspect.signature(obj))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def records() -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for name in MODULES:
        module = importlib.import_module(name)
        taken = 0
        for attr in sorted(dir(module)):
            if attr.startswith("_") or taken == PER_MODULE:
                continue
            obj = getattr(module, attr)
            if not (inspect.isfunction(obj) or inspect.isbuiltin(obj) or inspect.isclass(obj)):
                continue
            if getattr(obj, "__module__", None) not in (name, module.__name__, f"_{name}", None) and \
                    not str(getattr(obj, "__module__", "")).lstrip("_").startswith(name.split(".")[0]):
                continue  # re-exported from another module: asked about there
            answer = first_paragraph(obj.__doc__ or "")
            if answer is None:
                continue
            kind = "class" if inspect.isclass(obj) else "function"
            full = f"{name}.{attr}"
            messages = [{"role": "user", "content": f"What does the {kind} `{full}` do?"},
                        {"role": "assistant", "content": answer}]
            sig = signature(obj)
            # A default shown as "<function f at 0x...>" changes from run to run: left out.
            if sig is not None and len(sig) <= 120 and " at 0x" not in sig:
                messages += [{"role": "user", "content": "How is it called?"},
                             {"role": "assistant", "content": f"`{full}{sig}`"}]
            out.append({"messages": messages})
            taken += 1
    return out


def render(recs: list[dict[str, object]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in recs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare with the committed file")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    text = render(records())
    if args.check:
        same = args.out.is_file() and args.out.read_text(encoding="utf-8") == text
        print("up to date" if same else f"{args.out} differs from a fresh build with Python {sys.version.split()[0]}")
        return 0 if same else 1
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}: {text.count(chr(10))} conversations, {len(text.encode())} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
