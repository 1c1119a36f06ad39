"""Rewrite manifest files to another API version, keeping comments and key order.

>>> from lmspec.convert import convert_files
>>> results = convert_files(["examples/iris"], "v1beta1")      # raises ConversionRefused
>>> print(results[0].text)                                      # doctest: +SKIP

Each YAML document is read with ruamel.yaml's round-trip loader, checked with lmspec's validator
(which reads every registered version), converted as plain data through the
hub (:func:`lmspec.conversion.convert`) and the result merged back into the loaded document, so
comments, key order, quoting and flow style stay wherever the structure stays. A document
already of the target version is left as it is; a file whose documents all are comes back
byte for byte.

A conversion is refused — nothing is written — when a document is not a manifest of a known
version, is invalid, or would lose information in the target version (unless ``force``).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import conversion, versions
from .roundtrip import loader, merge, position, to_plain


@dataclass(frozen=True)
class Problem:
    """Why a document cannot be converted (or what a forced conversion loses)."""

    file: str
    line: int
    column: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


@dataclass
class Converted:
    """One file's conversion: its new text and what was lost (when forced)."""

    path: str
    text: str
    changed: bool
    losses: list[Problem] = field(default_factory=list)


class ConversionRefused(Exception):
    """Raised with every :class:`Problem` found; nothing was written."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class UnknownVersion(ValueError):
    """``--to`` names no registered version; the message has a did-you-mean."""


def target_version(to: str) -> versions.Version:
    try:
        return versions.get(to)
    except KeyError as exc:
        raise UnknownVersion(exc.args[0]) from None


# --- Files ---------------------------------------------------------------------------------------

def manifest_files(paths: Iterable[str | Path]) -> tuple[list[tuple[Path, Path]], list[Problem]]:
    """``(file, name)`` for each file and each manifest under a directory, and what could not be
    listed; ``name`` is the path to write under an output directory (the file name, or the path
    below the directory argument). A directory selects what ``lmspec validate`` selects there
    (its ``*.yaml``/``*.yml`` files, never a run directory or an export below it)."""
    from ..validator.inputs import expand

    found: list[tuple[Path, Path]] = []
    problems: list[Problem] = []
    for raw in paths:
        path = Path(raw)
        if not path.is_dir():
            found.append((path, Path(path.name)))
            continue
        files, listed, _skipped = expand([path])
        problems += [Problem(f.file, f.line, f.column, "", f.message) for f in listed]
        found += [(Path(file), Path(file).relative_to(path)) for file in sorted(files)]
    return found, problems


def convert_files(paths: Iterable[str | Path], to: str, *, out_dir: str | Path | None = None,
                  force: bool = False) -> list[Converted]:
    """Convert every file (directories: their YAML files); with ``out_dir``, write the results
    there under the same names. Raises :class:`ConversionRefused` (writing nothing) if any
    document cannot be converted, :class:`UnknownVersion` for an unknown ``to``."""
    target = target_version(to)
    results: list[tuple[Path, Converted]] = []
    files, problems = manifest_files(paths)
    for file, name in files:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(Problem(str(file), 1, 1, "", f"cannot read the file: {exc}"))
            continue
        try:
            results.append((name, convert_text(text, target.api_version, file=str(file), force=force)))
        except ConversionRefused as exc:
            problems += exc.problems
    if out_dir is not None:
        names = [str(name) for name, _ in results]
        for twice in sorted({n for n in names if names.count(n) > 1}):
            problems.append(Problem(twice, 1, 1, "", f"two inputs would be written to {twice} in {out_dir}"))
    if problems:
        raise ConversionRefused(problems)
    if out_dir is not None:
        for name, result in results:
            dest = Path(out_dir) / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(result.text, encoding="utf-8")
    return [result for _, result in results]


# --- One file's text -----------------------------------------------------------------------------

def convert_text(text: str, to: str, *, file: str = "<string>", force: bool = False) -> Converted:
    """Convert every document of ``text`` (YAML or JSON) to the version ``to``."""
    from ruamel.yaml.error import YAMLError

    target = target_version(to)
    yaml = loader(text)
    try:
        docs = list(yaml.load_all(text))
    except YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line, column = (mark.line + 1, mark.column + 1) if mark is not None else (1, 1)
        raise ConversionRefused([Problem(file, line, column, "", f"not well-formed YAML: "
                                         f"{getattr(exc, 'problem', None) or exc}")]) from None
    problems: list[Problem] = []
    plains = [to_plain(doc) for doc in docs]
    sources = [_source_version(doc, plain, file, problems) for doc, plain in zip(docs, plains, strict=True)]
    problems += _invalid(text, file, docs, plains, sources)
    if problems:
        raise ConversionRefused(problems)
    losses: list[Problem] = []
    out_docs = []
    changed = False
    for doc, plain, source in zip(docs, plains, sources, strict=True):
        if source is None or source.api_version == target.api_version:
            out_docs.append(doc)
            continue
        new, lost = conversion.convert(plain, target.api_version)
        losses += [Problem(file, *position(doc, loss.path), loss.dotted, loss.message) for loss in lost]
        out_docs.append(merge(doc, new))
        changed = True
    if losses and not force:
        raise ConversionRefused([*losses, Problem(file, 1, 1, "", "the target version cannot hold these "
                                                  "values; --force converts anyway and drops them")])
    if not changed:
        return Converted(file, text, False, [])
    buf = io.StringIO()
    out_docs = [doc for doc in out_docs if doc is not None]  # empty documents mean nothing
    if len(out_docs) == 1:
        yaml.dump(out_docs[0], buf)
    else:
        yaml.dump_all(out_docs, buf)
    return Converted(file, buf.getvalue(), True, losses)


def _source_version(doc: Any, plain: Any, file: str, problems: list[Problem]) -> versions.Version | None:
    if plain is None:  # an empty document: nothing to convert
        return None
    if not isinstance(plain, dict):
        problems.append(Problem(file, *position(doc, ()), "", "the document is not a mapping (a manifest)"))
        return None
    api = plain.get("apiVersion")
    version = versions.find(api) if isinstance(api, str) and api.startswith(versions.GROUP + "/") else None
    if version is None:
        known = ", ".join(versions.names())
        problems.append(Problem(file, *position(doc, ("apiVersion",)), "apiVersion",
                                f"{api!r} is not a version of the standard; known: {known}"))
    return version


def _invalid(text: str, file: str, docs: list[Any], plains: list[Any],
             sources: list[versions.Version | None]) -> list[Problem]:
    """Errors of the documents that are not valid manifests of their version, from lmspec's
    validator, which reads every registered version (every rule within one manifest; references
    to manifests in other files are not this command's business)."""
    if not any(s is not None for s in sources):
        return []
    from ..validator import validate_text

    problems: list[Problem] = []
    ours = {i for i, s in enumerate(sources) if s is not None}
    starts = [position(doc, ())[0] if doc is not None else None for doc in docs]
    report = validate_text(text, file, references=False)
    for f in report.findings:
        if f.severity == "error" and _document_at(starts, f.line) in ours and not f.rule.startswith("reference."):
            problems.append(Problem(file, f.line, f.column, f.pointer, f"{f.message} [{f.rule}]"))
    return problems


def _document_at(starts: list[int | None], line: int) -> int:
    """The index of the document a line belongs to: the last that starts at or before it."""
    found = 0
    for index, start in enumerate(starts):
        if start is not None and start <= line:
            found = index
    return found


__all__ = ["ConversionRefused", "Converted", "Problem", "UnknownVersion", "convert_files", "convert_text",
           "manifest_files"]
