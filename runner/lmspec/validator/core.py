"""The validator: parse → schema → semantic rules → references → (optionally) the environment.

Every layer runs on everything it can, so one run reports all problems at once.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import glob
import itertools
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..files import sha256_file
from . import registry as rules
from .envdata import check_data
from .findings import Finding, Report, pointer, similar
from .light import Light
from .parse import MAX_BYTES, Document, ParseError, decode, parse_text, read_bounded
from .schema import check_document
from .semantic import REFERENCES, Index, run_checks
from .spread import parse_files

if TYPE_CHECKING:
    from pydantic import BaseModel

MANIFEST_SUFFIXES = (".yaml", ".yml")
"""What a directory argument selects."""


@dataclass
class Manifest:
    """A schema-valid manifest and where it came from."""

    obj: Any
    """The typed object: :class:`~lmspec.v1alpha1.Model`, ``Dataset``, ``TrainingJob`` or ``InferenceService``
    (from :func:`load`; while validating, its light twin from :mod:`.light`)."""
    document: Document

    @property
    def kind(self) -> str:
        return str(self.obj.kind)

    @property
    def name(self) -> str:
        return str(self.obj.metadata.name)

    @property
    def file(self) -> str:
        return self.document.file

    @property
    def base_dir(self) -> Path:
        """Directory that relative paths in the manifest are resolved against."""
        if self.document.file.startswith("<"):
            return Path.cwd()
        return Path(self.document.file).resolve().parent

    def resolve(self, path: str) -> Path:
        """A path written in the manifest: absolute as written, else relative to :attr:`base_dir`
        (the one rule for every relative path in the standard)."""
        return self.base_dir / path


@dataclass
class ManifestSet:
    """The manifests of one validation run."""

    manifests: list[Manifest] = field(default_factory=list)
    report: Report = field(default_factory=Report)

    def of_kind(self, kind: str) -> list[Manifest]:
        return [m for m in self.manifests if m.kind == kind]

    def get(self, kind: str, name: str) -> Manifest | None:
        return next((m for m in self.manifests if m.kind == kind and m.name == name), None)

    def pick(self, kind: str, name: str | None, *, option: str) -> Manifest:
        """The manifest of ``kind`` named ``name``, or the only one when ``name`` is None.
        Raises :class:`LookupError` with a message for the user; ``option`` is the command-line
        flag that chooses among several (e.g. ``--job``)."""
        found = self.of_kind(kind)
        if name is not None:
            named = self.get(kind, name)
            if named is None:
                have = ", ".join(m.name for m in found) or "none"
                raise LookupError(f"no {kind} named {name!r} among the inputs (found: {have})")
            return named
        if not found:
            raise LookupError(f"no {kind} among the inputs; pass the file that defines one")
        if len(found) > 1:
            names = ", ".join(m.name for m in found)
            raise LookupError(f"several {kind} manifests among the inputs ({names}); choose one with {option}")
        return found[0]

    def index(self) -> Index:
        by_kind: dict[str, dict[str, Any]] = {}
        dirs: dict[tuple[str, str], Callable[[], Path]] = {}
        for m in self.manifests:
            by_kind.setdefault(m.kind, {}).setdefault(m.name, m.obj)
            dirs.setdefault((m.kind, m.name), _base_dir_of(m))
        return Index(by_kind, dirs)


Checked = tuple[Any, list[Finding]]
"""What :func:`.schema.check_document` found for a document: its typed manifest, and findings."""


def _base_dir_of(m: Manifest) -> Callable[[], Path]:
    return lambda: m.base_dir


class ValidationFailed(Exception):
    """Raised by :func:`load` when the manifests have errors; ``report`` holds the findings."""

    def __init__(self, report: Report) -> None:
        self.report = report
        first = report.errors[0] if report.errors else None
        where = f"{first.file}:{first.line}:{first.column}: {first.message}" if first else ""
        super().__init__(f"{len(report.errors)} error(s) in the manifests; first: {where}")


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


def _parse_error(exc: ParseError) -> Finding:
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
            report.findings.append(_parse_error(exc))
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


def validate_documents(docs: Sequence[Document], report: Report | None = None, *,
                       check_env: bool = False, references: bool = True,
                       allow_outside: Sequence[str | os.PathLike[str]] = (),
                       schema_checked: Mapping[int, Checked] | None = None) -> ManifestSet:
    """Run layers 2-5 over parsed documents. ``schema_checked`` holds layer 2's results for documents
    checked already (by ``id``), as :func:`validate` gathers them while files are still parsed."""
    result = ManifestSet(report=report or Report())
    report = result.report
    # Documents that fail the schema only in some fields are checked further without those
    # fields (their defaults in their place), so that one bad value hides no other finding.
    partial: list[tuple[Manifest, list[str]]] = []
    known = set(report.files)
    for doc in docs:
        if doc.file not in known:  # a set: a list's `in` made this quadratic in the files
            known.add(doc.file)
            report.files.append(doc.file)
        report.labels.setdefault(doc.file, []).append(_label(doc))
        done = schema_checked.get(id(doc)) if schema_checked is not None else None
        obj, findings = done if done is not None else check_document(doc)
        report.extend(findings)
        if obj is not None:
            result.manifests.append(Manifest(obj, doc))
        elif (repaired := _without_bad_fields(doc, findings)) is not None:
            partial.append(repaired)
    report.documents += len(docs)

    checked = result.manifests + [m for m, _ in partial]
    removed = {id(m): cut for m, cut in partial}
    index = ManifestSet(checked).index()
    report.extend(_references(checked, check_missing=references, partial=removed))
    for m in checked:
        cut = removed.get(id(m), [])
        for rule, path, message, hint in run_checks(m.obj, index):
            at = pointer(path)
            # A finding about a field that was taken out, or about the mapping that held it,
            # would be about the gap, not about what the file says.
            if not any(at == c or at.startswith(c + "/") or at == c.rsplit("/", 1)[0] for c in cut):
                report.findings.append(_at(m, rule, path, message, hint))
        if check_env and id(m) not in removed:
            env = list(_environment(m, allow_outside, index))
            report.extend(env)
            if m.kind == "Dataset" and not env:  # the files are there and intact: read them
                report.extend(check_data(m.obj, m.base_dir, m.file))
    if check_env:
        report.extend(_job_environment([m for m in checked if id(m) not in removed], index))
    report.sort()
    return result


def _job_environment(manifests: list[Manifest], index: Index) -> Iterator[Finding]:
    """Layer 5 across manifests (:mod:`.envjob`): each TrainingJob's Model and Dataset together."""
    from .envjob import job_environment

    named: dict[tuple[str, str], Manifest] = {}
    for m in manifests:
        named.setdefault((m.kind, m.name), m)
    for job in manifests:
        if job.kind == "TrainingJob":
            for target, rule, path, message, hint in job_environment(
                    job, lambda kind, name: named.get((kind, name)), index):
                yield _at(target, rule, path, message, hint)


def _without_bad_fields(doc: Document, findings: list[Finding]) -> tuple[Manifest, list[str]] | None:
    """The document as a typed manifest once the keys its schema findings point at are taken out,
    with their pointers; None when that does not make it valid (a required key, the envelope)."""
    data = _copy(doc.data)
    cut: list[str] = []
    for _ in range(4):
        for f in findings:
            parts = _cut_key(data, f.pointer)
            if parts is None:
                return None
            cut.append(pointer(parts))
        obj, findings = check_document(dataclasses.replace(doc, data=data))
        if obj is not None:
            return Manifest(obj, doc), cut
    return None


def _copy(data: Any) -> Any:
    """A copy of parsed data, whose containers are only dicts and lists: what copy.deepcopy
    does for any object, in a fifth of the time."""
    if type(data) is dict:
        return {k: _copy(v) for k, v in data.items()}
    if type(data) is list:
        return [_copy(v) for v in data]
    return data


def _cut_key(data: Any, at: str) -> tuple[str | int, ...] | None:
    """Remove the mapping key nearest above (or at) JSON pointer ``at`` below ``/spec/…`` or
    ``/metadata/…``; its path, or None when there is none."""
    parts: list[str | int] = []
    node = data
    for raw in at.split("/")[1:]:
        key = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list) and key.isdigit() and int(key) < len(node):
            parts.append(int(key))
            node = node[int(key)]
        elif isinstance(node, dict) and key in node:
            parts.append(key)
            node = node[key]
        else:
            break
    # A list item is never removed (the items after it would move); its list's key is.
    while parts and not isinstance(parts[-1], str):
        parts.pop()
    if len(parts) < 2:
        return None
    holder = data
    for p in parts[:-1]:
        holder = holder[p]
    if isinstance(holder, dict):
        holder.pop(parts[-1], None)
    return tuple(parts)


def _label(doc: Document) -> str:
    data = doc.data
    if isinstance(data, dict):
        kind, meta = data.get("kind"), data.get("metadata")
        name = meta.get("name") if isinstance(meta, dict) else None
        if isinstance(kind, str) and isinstance(name, str) and len(kind) + len(name) < 200:
            return f"{kind}/{name}"
    return f"document {doc.index}"


def _at(m: Manifest, rule: str, path: tuple[str | int, ...], message: str, hint: str = "") -> Finding:
    line, column = m.document.locate(path)
    r = rules.RULES[rule]
    return Finding(rule, r.severity, m.file, line, column, pointer(path), message, hint, m.document.index)


def _references(manifests: list[Manifest], *, check_missing: bool,
                partial: Iterable[int] = ()) -> Iterator[Finding]:
    """Duplicates and references among ``manifests``; the references of those whose ``id`` is in
    ``partial`` (schema errors set aside) are not checked: they count only as targets."""
    unchecked = set(partial)
    seen: dict[tuple[str, str], Manifest] = {}
    for m in manifests:
        first = seen.setdefault((m.kind, m.name), m)
        if first is not m:
            line = first.document.locate(("metadata", "name"))[0]
            yield _at(m, rules.REFERENCE_DUPLICATE, ("metadata", "name"),
                      f"a {m.kind} named {m.name!r} is already defined in {first.file}:{line}",
                      "rename one of them")
    names: dict[str, list[str]] = {}
    by_kind: dict[str, list[str]] = {}
    for m in manifests:
        names.setdefault(m.name, []).append(m.kind)
    for kind, defined in seen:
        by_kind.setdefault(kind, []).append(defined)
    for m in manifests:
        if id(m) in unchecked:
            continue
        for path, kind, get in REFERENCES.get(m.kind, []):
            name = get(m.obj)
            if name is None or (kind, name) in seen:
                continue
            others = names.get(name)
            if others:
                yield _at(m, rules.REFERENCE_WRONG_KIND, path,
                          f"{path[-1]} must name a {kind}, but {name!r} is a {others[0]}",
                          f"name a {kind} manifest")
            elif check_missing:
                candidates = by_kind.get(kind, [])
                # difflib is quadratic-ish; beyond a few hundred names a guess costs too much.
                close = similar(name, candidates) if len(candidates) <= 200 else None
                if close:
                    hint = f"did you mean {close!r}?"
                elif 0 < len(candidates) <= 10:
                    hint = f"{kind}s given: {', '.join(sorted(candidates))}"
                else:
                    hint = f"pass the file that defines the {kind} too"
                yield _at(m, rules.REFERENCE_MISSING, path, f"no {kind} named {name!r} among the inputs", hint)


def _inside(path: str | Path, roots: Sequence[str]) -> bool:
    """Whether ``path``, symbolic links resolved, lies in one of the directory trees ``roots``."""
    real = os.path.realpath(path)
    return any(real == r or real.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def _environment(m: Manifest, allow_outside: Sequence[str | os.PathLike[str]] = (),
                 index: Index | None = None) -> Iterator[Finding]:
    """Layer 5: files the manifest points at exist and match their digests.

    Only files in the manifest's own directory tree or the working directory's are read (plus
    the trees in ``allow_outside``): a manifest from elsewhere must not make the validator
    hash, and print facts about, ``/etc/shadow`` or ``../../secrets``."""
    spec = m.obj.spec
    roots = [os.path.realpath(m.base_dir), os.path.realpath(os.getcwd()),
             *(os.path.realpath(a) for a in allow_outside)]
    arch_path = getattr(spec.architecture, "path", None) if m.kind == "Model" else None
    if arch_path is not None and not _inside(m.base_dir / arch_path, roots):
        yield _at(m, rules.ENV_OUTSIDE_PROJECT, ("spec", "architecture", "path"),
                  f"{arch_path!r} points outside the manifest's directory tree ({m.base_dir}) and the working "
                  "directory's; it is not read",
                  "keep the base beside the manifests, or allow the directory with --allow-outside DIR")
    elif m.kind == "Model":
        yield from _pretrained_base(m, index)
    refs: list[tuple[tuple[str | int, ...], str, str | None]] = []
    if m.kind == "Dataset":
        refs += [(("spec", "sources", i), s.path, s.sha256) for i, s in enumerate(spec.sources)]
        for i, step in enumerate(spec.preprocessing):
            tok = getattr(step, "tokenizer", None)
            if tok is not None and tok.type == "file":
                refs.append((("spec", "preprocessing", i, "tokenizer"), tok.path, tok.sha256))
    elif m.kind == "Model" and spec.initial_weights is not None:
        refs.append((("spec", "initialWeights"), spec.initial_weights.path, spec.initial_weights.sha256))
    elif m.kind == "InferenceService":
        yield from _engine_environment(m)
    for path, rel, digest in refs:
        target = m.base_dir / rel
        magic = glob.has_magic(rel)
        # A pattern is confined by its fixed leading directories, and each match again below.
        fixed = Path(*itertools.takewhile(lambda part: not glob.has_magic(part), target.parts)) if magic else target
        if not _inside(fixed, roots):
            yield _at(m, rules.ENV_OUTSIDE_PROJECT, (*path, "path"),
                      f"{rel!r} points outside the manifest's directory tree ({m.base_dir}) and the working "
                      "directory's; it is not read",
                      "keep data beside the manifests, or allow the directory with --allow-outside DIR")
            continue
        if magic:
            matched = [f for f in walk_glob(str(target)) if _inside(f, roots)]
            if not matched:
                yield _at(m, rules.ENV_FILE_MISSING, (*path, "path"), f"{rel!r} matches no file",
                          f"looked in {m.base_dir}")
            continue
        if not target.is_file():
            yield _at(m, rules.ENV_FILE_MISSING, (*path, "path"), f"file {rel!r} does not exist",
                      f"looked for {target}")
        elif digest is not None:
            actual = sha256_file(target)
            if actual != digest:
                yield _at(m, rules.ENV_SHA256, (*path, "sha256"),
                          f"{rel} has sha256 {actual}, the manifest says {digest}",
                          "the file changed: restore it, or update sha256 if the change is intended")
    if m.kind == "Dataset" and spec.chat is not None:
        yield from _environment_chat(m, roots)


def _environment_chat(m: Manifest, roots: Sequence[str]) -> Iterator[Finding]:
    """Chat data: the tokenizer and template files, the template's generation markers, and every
    record's fields and roles (the first problem of each file, naming its row)."""
    from ..data.chat_template import find_template, has_generation_markers, needs_generation_markers
    from ..data.conversations import read_records, to_messages
    from ..data.errors import DataError

    chat = m.obj.spec.chat
    outside = [(at, rel) for at, rel in ((("spec", "chat", "tokenizer", "path"), getattr(chat.tokenizer, "path", None)),
                                         (("spec", "chat", "templatePath"), chat.template_path))
               if rel is not None and not _inside(m.base_dir / rel, roots)]
    for at, rel in outside:
        yield _at(m, rules.ENV_OUTSIDE_PROJECT, at,
                  f"{rel!r} points outside the manifest's directory tree ({m.base_dir}) and the working "
                  "directory's; it is not read",
                  "keep the tokenizer and template beside the manifests, or allow the directory with "
                  "--allow-outside DIR")
    if outside:
        return
    tok_dir: Path | None = None
    if chat.tokenizer is not None:
        target = m.base_dir / chat.tokenizer.path
        kind_ok = target.is_dir() if chat.tokenizer.type == "huggingface" else target.is_file()
        if not kind_ok:
            what = "directory" if chat.tokenizer.type == "huggingface" else "file"
            yield _at(m, rules.ENV_FILE_MISSING, ("spec", "chat", "tokenizer", "path"),
                      f"tokenizer {what} {chat.tokenizer.path!r} does not exist", f"looked for {target}")
            return
        if chat.tokenizer.type == "huggingface":
            tok_dir = target
            if not (target / "tokenizer.json").is_file():
                yield _at(m, rules.ENV_FILE_MISSING, ("spec", "chat", "tokenizer", "path"),
                          f"tokenizer directory {chat.tokenizer.path!r} has no tokenizer.json",
                          f"looked for {target / 'tokenizer.json'}")
        elif chat.tokenizer.sha256 is not None and (actual := sha256_file(target)) != chat.tokenizer.sha256:
            yield _at(m, rules.ENV_SHA256, ("spec", "chat", "tokenizer", "sha256"),
                      f"{chat.tokenizer.path} has sha256 {actual}, the manifest says {chat.tokenizer.sha256}",
                      "the file changed: restore it, or update sha256 if the change is intended")
    if chat.template_path is not None and not (m.base_dir / chat.template_path).is_file():
        yield _at(m, rules.ENV_FILE_MISSING, ("spec", "chat", "templatePath"),
                  f"file {chat.template_path!r} does not exist", f"looked for {m.base_dir / chat.template_path}")
        return
    try:
        template = find_template(chat, m.base_dir, tok_dir)
    except DataError as e:
        yield _at(m, rules.ENV_CHAT_TEMPLATE, ("spec", "chat"), str(e))
        return
    where = ("spec", "chat", "templatePath") if chat.template_path is not None else ("spec", "chat", "tokenizer")
    if chat.format != "text" and template is None and (chat.tokenizer is not None or chat.template is not None):
        yield _at(m, rules.ENV_CHAT_TEMPLATE, where, "the tokenizer has no chat template",
                  "set chat.template or chat.templatePath")
    elif (template is not None and template.origin != "spec.chat.template" and needs_generation_markers(chat)
          and not has_generation_markers(template.text)):
        yield _at(m, rules.ENV_CHAT_TEMPLATE, where,
                  f"the chat template in {template.origin} has no {{% generation %}} markers, so the "
                  "assistant's tokens cannot be found for the assistant-only loss",
                  "enclose each assistant message and its end-of-turn token in "
                  "{% generation %}…{% endgeneration %}, or set loss.trainOnPrompt: true")
    if chat.format == "preference":
        from ..data.pairs import to_pair

        yield from _environment_records(m, read_records, to_pair, DataError)
    else:
        yield from _environment_records(m, read_records, to_messages, DataError)


def _environment_records(m: Manifest, read_records: Any, to_messages: Any, data_error: Any) -> Iterator[Finding]:
    chat = m.obj.spec.chat
    for i, src in enumerate(m.obj.spec.sources):
        pattern = str(m.base_dir / src.path)
        paths = sorted(glob.glob(pattern, recursive=True)) if glob.has_magic(src.path) else [pattern]
        for p in paths:
            path = Path(p)
            if not path.is_file():
                continue  # reported as env.file-missing
            fmt = src.format or {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}.get(
                path.suffix.lower(), path.suffix.lstrip(".") or "unknown")
            rel = os.path.relpath(path)
            info = _RecordFile(path, str(path) if rel.startswith("..") else rel, fmt, i)
            try:
                for row, rec in read_records(info):
                    to_messages(rec, chat, {"file": info.display, "row": row, "unit": info.unit})
            except data_error as e:
                at = ("spec", "chat", "fields") if (e.field or "").startswith("spec.chat.fields") else \
                    ("spec", "chat", "roleMap") if e.field == "spec.chat.roleMap" else ("spec", "sources", i)
                where = ", ".join(w for w in (e.file, f"{e.unit} {e.row}" if e.row is not None else "") if w)
                yield _at(m, rules.ENV_CHAT_RECORDS, at, f"{where}: {e.message}" if where else e.message,
                          e.hint or "")


@dataclass(frozen=True)
class _RecordFile:
    """What reading chat records needs to know about a file."""

    path: Path
    display: str
    format: str
    source: int

    @property
    def unit(self) -> str:
        return "line" if self.format == "jsonl" else "row"


def _engine_environment(m: Manifest) -> Iterator[Finding]:
    """The declared engine and device exist on this machine (found without importing torch)."""
    from ..serve.accelerators import cuda_present, vllm_installed

    spec = m.obj.spec
    if spec.engine.name == "vllm" and not vllm_installed():
        yield _at(m, rules.ENV_ENGINE_UNAVAILABLE, ("spec", "engine", "name"),
                  "engine 'vllm' is asked for, but the vllm package is not installed here",
                  "pip install vllm (CUDA machines only), or use engine.name: builtin, which runs "
                  "on CPU and CUDA")
    if spec.placement.device == "cuda" and not cuda_present():
        yield _at(m, rules.ENV_ENGINE_UNAVAILABLE, ("spec", "placement", "device"),
                  "placement.device is 'cuda', but this machine has no NVIDIA driver or device",
                  "serve here with placement.device: cpu and engine.name: builtin")


def base_problem(m: Manifest, index: Index | None) -> tuple[str, str] | None:
    """(message, hint) when a Model's pretrained base cannot be found or read, else None.
    A TrainingJob's export that does not exist yet is no problem: the job may run first."""
    from ..model.pretrained import BaseError, check_directory, hub_offline, locate
    from .light import Pretrained

    arch = m.obj.spec.architecture
    if not isinstance(arch, Pretrained):
        return None
    idx = index or Index({})
    try:
        found = locate(arch, m.base_dir, export_dir_of=idx.export_dir)
    except BaseError as e:
        return str(e), ""
    if found.directory is None:
        if arch.uri is not None and not hub_offline():
            return None  # the runner may still download it
        return found.problem, found.hint
    if arch.training_job is not None and not found.directory.exists():
        return None
    problem = check_directory(found.directory)
    if problem is not None:
        return problem
    return None


def _pretrained_base(m: Manifest, index: Index | None) -> Iterator[Finding]:
    problem = base_problem(m, index)
    if problem is not None:
        arch = m.obj.spec.architecture
        key = "path" if arch.path else "uri" if arch.uri else "trainingJob"
        yield _at(m, rules.ENV_PRETRAINED_BASE, ("spec", "architecture", key), problem[0], problem[1])


def validate(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, check_env: bool = False,
             references: bool = True, stdin_text: str | None = None, max_bytes: int = MAX_BYTES,
             allow_outside: Sequence[str | os.PathLike[str]] = (), workers: int = 1) -> Report:
    """Validate files, directories or globs; returns the report (never raises for bad input).
    ``workers`` > 1 parses many files in forked processes: only from a process that runs no
    other threads (as the ``lmspec validate`` command does).

    >>> lmspec.validate(["examples/iris"]).ok
    True
    """
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    # With workers, documents are checked against their schema as soon as they are parsed, while
    # other processes parse the rest; the layers that need every document wait for all.
    checked: dict[int, Checked] = {}

    def check(docs: list[Document]) -> None:
        for doc in docs:
            checked[id(doc)] = check_document(doc)

    docs, report = read(paths, stdin_text=stdin_text, max_bytes=max_bytes, workers=workers,
                        meanwhile=check if workers > 1 else None)
    return validate_documents(docs, report, check_env=check_env, references=references,
                              allow_outside=allow_outside, schema_checked=checked).report


def validate_text(text: str, file: str = "<string>", **kwargs: Any) -> Report:
    """Validate manifests given as a YAML or JSON string."""
    report = Report(files=[file])
    try:
        docs = parse_text(text, file)
    except ParseError as exc:
        report.findings.append(_parse_error(exc))
        return report
    return validate_documents(docs, report, **kwargs).report


def load(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *, check_env: bool = False,
         allow_outside: Sequence[str | os.PathLike[str]] = ()) -> ManifestSet:
    """Parse and validate manifests; raises :class:`ValidationFailed` on any error.
    ``allow_outside`` as for :func:`validate`."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    docs, report = read(paths)
    result = validate_documents(docs, report, check_env=check_env, allow_outside=allow_outside)
    if not result.report.ok:
        raise ValidationFailed(result.report)
    return typed(result)


def check_environment(manifests: ManifestSet, chosen: Sequence[Manifest], *,
                      allow_outside: Sequence[str | os.PathLike[str]] = ()) -> None:
    """Layer 5 (``--check-env``) for the manifests a command is about to use, and only those:
    ``lmspec serve`` checks the service it serves, not the training data of jobs passed beside
    it. Raises :class:`ValidationFailed` with the findings, as :func:`load` does."""
    index = manifests.index()
    report = Report()
    for m in chosen:
        report.extend(_environment(m, allow_outside, index))
    report.sort()
    if not report.ok:
        report.files = sorted({f.file for f in report.findings})
        report.documents = len(chosen)
        raise ValidationFailed(report)


def typed(result: ManifestSet) -> ManifestSet:
    """The manifests as the runtime's pydantic models, in place of the validator's light objects.

    The models run the checks the validator ran (the compiled checks are theirs), so a manifest
    the validator accepted is accepted again here."""
    from ..standard import VERSIONS

    for m in result.manifests:
        if isinstance(m.obj, Light):
            data = m.document.data
            m.obj = VERSIONS[data["apiVersion"]][data["kind"]].model_validate(data, by_alias=True, by_name=False)
    return result


def to_yaml_data(obj: BaseModel, *, defaults: bool = True) -> dict[str, Any]:
    """A manifest as plain data with its written key names; with ``defaults``, every default filled."""
    return obj.model_dump(mode="json", by_alias=True, exclude_unset=not defaults)
