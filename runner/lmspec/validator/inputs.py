"""Layer 1's inputs: which files paths, directories and globs name, and reading them into
documents; what cannot be read becomes a finding, never an exception.

>>> docs, report = read(["examples/iris"])
"""

from __future__ import annotations

import fnmatch
import glob
import os
import sys
from collections.abc import Callable, Iterable, Sequence

from ..manifests.document import Document
from ..manifests.findings import Finding, Report
from . import registry as rules
from .parse import MAX_BYTES, ParseError, decode, parse_text, read_bounded
from .spread import parse_files

MANIFEST_SUFFIXES = (".yaml", ".yml")
"""What a directory argument selects."""


OUTPUT_MARKER = ".lmspec-output"
"""A file that marks a directory written by an implementation (a run directory, an export):
a directory argument never reads such a directory below it back as manifests."""


def expand(paths: Iterable[str | os.PathLike[str]]) -> tuple[list[str], list[Finding], list[str]]:
    """Files named by paths, directories and globs; '-' is stdin. Returns the files, problems
    and what directories held but were skipped (said once by the commands).

    A directory selects its ``.yaml`` and ``.yml`` files at any depth. It skips ``.json`` files
    (beside manifests they are data: tokenizers, statistics; name them or use a glob to read
    them), hidden entries, and directories marked with :data:`OUTPUT_MARKER` below it. An entry
    that cannot be listed or read is a finding, so a run that checked less than it was given
    never says "valid"."""
    files: list[str] = []
    problems: list[Finding] = []
    skipped: list[str] = []
    for given in paths:
        p = os.fspath(given)
        if p == "-":
            files.append(p)
        elif os.path.isdir(p):
            before = len(skipped)
            found = _scan(p, problems, skipped)
            if not found and not problems:
                # An empty directory in CI is almost always a wrong path: say so, never pass.
                passed = len(skipped) - before
                problems.append(_io_finding(p, "the directory holds no .yaml or .yml file" + (
                    f" (it holds {passed} skipped: JSON files or lmspec output)" if passed else "")))
            files.extend(found)
        elif glob.has_magic(p):
            matched = walk_glob(p, problems)
            if not matched:
                problems.append(_io_finding(p, "the pattern matches no file"))
            files.extend(matched)
        else:
            files.append(p)
    return list(dict.fromkeys(files)), problems, list(dict.fromkeys(skipped))


def _hugging_face_dir(names: list[str]) -> bool:
    # A Hugging Face model or tokenizer directory (a pretrained base kept beside the manifests)
    # is all JSON but holds no manifest: its files are skipped, as if hidden.
    if any(n.endswith((".yaml", ".yml")) for n in names):
        return False
    return "tokenizer.json" in names or "model.safetensors.index.json" in names or (
        "config.json" in names and any(n.endswith(".safetensors") for n in names))


def _scan(directory: str, problems: list[Finding], skipped: list[str]) -> list[str]:
    """Manifest files under ``directory``, sorted; what was passed over is added to ``skipped``.
    Symbolic links to directories are not followed. Directories that cannot be listed are
    findings."""
    found = []

    def unreadable(exc: OSError) -> None:
        problems.append(_io_finding(str(exc.filename or directory),
                                    f"cannot list the directory: {exc.strerror or exc}"))

    for root, dirs, names in os.walk(directory, onerror=unreadable):
        if root != directory and OUTPUT_MARKER in names:
            skipped.append(os.path.normpath(root) + os.sep)
            dirs[:] = []
            continue
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        if root != directory and _hugging_face_dir(names):
            # Said once for the directory rather than once for each of its JSON files.
            skipped.append(os.path.normpath(root) + os.sep)
            continue
        for n in names:
            if n.startswith("."):
                continue
            path = os.path.normpath(os.path.join(root, n))
            if n.endswith(MANIFEST_SUFFIXES):
                found.append(path)
            elif n.endswith(".json"):
                skipped.append(path)
    # Names that are not regular files (dangling links, FIFOs) go on to be read, and their
    # reading reports why they cannot be.
    return sorted(f for f in found if not os.path.isdir(f))


def walk_glob(pattern: str, problems: list[Finding] | None = None, *, limit: int = 100_000) -> list[str]:
    """Files matching a glob, ``**`` for any number of directories, sorted.

    Written here rather than with :func:`glob.glob` because that follows symbolic links to
    directories under ``**``, and a link loop makes it run for minutes; here links to
    directories are not entered, hidden entries match only a pattern that starts with '.', and
    at most ``limit`` files are listed."""
    parts = pattern.split(os.sep)
    fixed: list[str] = []
    while parts and not glob.has_magic(parts[0]):
        fixed.append(parts.pop(0))
    root = os.sep.join(fixed) if fixed else "."
    if fixed == [""]:
        root = os.sep
    found: list[str] = []

    def walk(directory: str, rest: list[str]) -> None:
        if len(found) >= limit or not rest:
            return
        head, tail = rest[0], rest[1:]
        if head == "**":
            walk(directory, tail)
        try:
            with os.scandir(directory) as entries:
                listed = sorted(entries, key=lambda e: e.name)
        except OSError as exc:
            if problems is not None and directory != root:
                problems.append(_io_finding(directory, f"cannot list the directory: {exc.strerror or exc}"))
            return
        for entry in listed:
            if entry.name.startswith(".") and not head.startswith("."):
                continue
            path = entry.path if directory != "." or fixed else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if head == "**":
                if is_dir:
                    walk(path, rest)
            elif fnmatch.fnmatchcase(entry.name, head):
                if not tail:
                    if not entry.is_dir():
                        found.append(path)
                elif is_dir:
                    walk(path, tail)

    walk(root, parts)
    return sorted(set(found))[:limit]


def skipped_note(skipped: Sequence[str]) -> str:
    """One line naming the JSON files directory arguments passed over, or ``""``: a JSON
    manifest among them would otherwise go unchecked without a word.

    Skipped directories go unsaid: run and export directories (they hold :data:`OUTPUT_MARKER`)
    are what lmspec itself wrote below the manifests, and Hugging Face model directories are
    the weights and tokenizers the manifests name; either would be repeated by every command.

    >>> skipped_note(["p/tokenizer.json", "p/runs/train/"])
    'lmspec: skipped p/tokenizer.json (JSON is read only when named)'
    """
    files = [s for s in skipped if not s.endswith(os.sep)]
    return f"lmspec: skipped {', '.join(files)} (JSON is read only when named)" if files else ""


def _io_finding(file: str, message: str) -> Finding:
    return Finding(rules.PARSE_IO, "error", file, 1, 1, "", message)


def parse_finding(exc: ParseError) -> Finding:
    return Finding(exc.rule, "error", exc.file, exc.line, exc.column, "", exc.message,
                   _PARSE_HINTS.get(exc.rule, ""))


_PARSE_HINTS = {
    "parse.duplicate-key": "remove one of the two keys; YAML tools disagree on which one wins",
    "parse.syntax": "check indentation and quoting around this position",
    "parse.encoding": "save the file as UTF-8",
    "parse.too-deep": "manifests need only a few levels of nesting",
    "parse.too-large": "split the input, or check it for runaway aliases",
}


def read(paths: Sequence[str | os.PathLike[str]], *, stdin_text: str | None = None,
         max_bytes: int = MAX_BYTES, workers: int = 1,
         meanwhile: Callable[[list[Document]], None] | None = None) -> tuple[list[Document], Report]:
    """Parse every input; parse problems become findings rather than exceptions.

    ``-`` reads standard input (or ``stdin_text`` when given); files larger than ``max_bytes``
    are refused with ``parse.too-large``. ``workers`` > 1 lets many files be parsed in forked
    processes (:mod:`.spread`): only for callers without other threads. ``meanwhile`` sees the
    documents of the named files in batches as they are parsed.
    """
    report = Report()
    files, problems, report.skipped = expand(paths)
    report.extend(problems)
    if not files and not problems:
        report.findings.append(_io_finding("<no input>", "no file was given: nothing was checked"))

    def documents_of(batch: list[list[Document] | ParseError]) -> None:
        assert meanwhile is not None
        meanwhile([d for r in batch if not isinstance(r, ParseError) for d in r])

    named = [f for f in files if f != "-"]
    parsed = iter(parse_files(named, max_bytes=max_bytes, workers=workers,
                              meanwhile=documents_of if meanwhile is not None else None))
    docs: list[Document] = []
    for f in files:
        name = "<stdin>" if f == "-" else f
        report.files.append(name)
        try:
            if f == "-":
                docs.extend(parse_text(_read_stdin(stdin_text, max_bytes), name))
                continue
            result = next(parsed)
            if isinstance(result, ParseError):
                raise result
            docs.extend(result)
        except ParseError as exc:
            report.findings.append(parse_finding(exc))
    return docs, report


def _read_stdin(stdin_text: str | None, max_bytes: int) -> str:
    if stdin_text is not None:
        raw = stdin_text.encode("utf-8", "surrogatepass")
    else:
        if sys.stdin is None:  # started with standard input closed
            raise ParseError("parse.io", "standard input is closed", "<stdin>")
        # Read bytes, not text: the encoding checks must apply to stdin as to files.
        try:
            raw = read_bounded(sys.stdin.buffer, max_bytes)
        except (OSError, ValueError) as exc:
            raise ParseError("parse.io", f"cannot read standard input: {exc}", "<stdin>") from None
    if len(raw) > max_bytes:
        raise ParseError("parse.too-large", f"input larger than {max_bytes} bytes", "<stdin>")
    return decode(raw, "<stdin>")
