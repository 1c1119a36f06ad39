"""Layer 5 checks of one manifest: the files it points at exist, stay inside the project and
match their digests; a pretrained base can be found and read; chat tokenizers, templates and
records are usable; the declared engine and device exist here. Each check is a function of
the manifest and its :class:`~lmspec.validator.environment.Scope`, run by
:mod:`lmspec.validator.environment`.
"""

from __future__ import annotations

import glob
import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..files import sha256_file
from ..manifests.findings import Finding
from ..manifests.manifest import Manifest
from ..validator import registry as rules
from ..validator.at import finding_at
from ..validator.environment import Scope
from ..validator.index import Index
from ..validator.inputs import walk_glob


def pretrained_base(m: Manifest, scope: Scope) -> Iterator[Finding]:
    """A Model's pretrained base lies inside the project, and can be found and read."""
    if m.kind != "Model":
        return
    arch_path = getattr(m.obj.spec.architecture, "path", None)
    if arch_path is not None and not scope.inside(m.base_dir / arch_path):
        yield finding_at(m, rules.ENV_OUTSIDE_PROJECT, ("spec", "architecture", "path"),
                         f"{arch_path!r} points outside the manifest's directory tree ({m.base_dir}) and the "
                         "working directory's; it is not read",
                         "keep the base beside the manifests, or allow the directory with --allow-outside DIR")
        return
    yield from _base_finding(m, scope.index)


def engine(m: Manifest, _: Scope) -> Iterator[Finding]:
    """An InferenceService's declared engine and device exist on this machine (found without
    importing torch)."""
    from ..domain.accelerators import cuda_present, vllm_installed

    if m.kind != "InferenceService":
        return
    spec = m.obj.spec
    if spec.engine.name == "vllm" and not vllm_installed():
        yield finding_at(m, rules.ENV_ENGINE_UNAVAILABLE, ("spec", "engine", "name"),
                         "engine 'vllm' is asked for, but the vllm package is not installed here",
                         "pip install vllm (CUDA machines only), or use engine.name: builtin, which runs "
                         "on CPU and CUDA")
    if spec.placement.device == "cuda" and not cuda_present():
        yield finding_at(m, rules.ENV_ENGINE_UNAVAILABLE, ("spec", "placement", "device"),
                         "placement.device is 'cuda', but this machine has no NVIDIA driver or device",
                         "serve here with placement.device: cpu and engine.name: builtin")


def referenced_files(m: Manifest, scope: Scope) -> Iterator[Finding]:
    """The files a Dataset's sources and tokenizer steps and a Model's initial weights name lie
    inside the project, exist (a pattern matches one at least) and match their digests."""
    spec = m.obj.spec
    refs: list[tuple[tuple[str | int, ...], str, str | None]] = []
    if m.kind == "Dataset":
        refs += [(("spec", "sources", i), s.path, s.sha256) for i, s in enumerate(spec.sources)]
        for i, step in enumerate(spec.preprocessing):
            tok = getattr(step, "tokenizer", None)
            if tok is not None and tok.type == "file":
                refs.append((("spec", "preprocessing", i, "tokenizer"), tok.path, tok.sha256))
    elif m.kind == "Model" and spec.initial_weights is not None:
        refs.append((("spec", "initialWeights"), spec.initial_weights.path, spec.initial_weights.sha256))
    for path, rel, digest in refs:
        target = m.base_dir / rel
        magic = glob.has_magic(rel)
        # A pattern is confined by its fixed leading directories, and each match again below.
        fixed = Path(*itertools.takewhile(lambda part: not glob.has_magic(part), target.parts)) if magic else target
        if not scope.inside(fixed):
            yield finding_at(m, rules.ENV_OUTSIDE_PROJECT, (*path, "path"),
                             f"{rel!r} points outside the manifest's directory tree ({m.base_dir}) and the "
                             "working directory's; it is not read",
                             "keep data beside the manifests, or allow the directory with --allow-outside DIR")
            continue
        if magic:
            matched = [f for f in walk_glob(str(target)) if scope.inside(f)]
            if not matched:
                yield finding_at(m, rules.ENV_FILE_MISSING, (*path, "path"), f"{rel!r} matches no file",
                                 f"looked in {m.base_dir}")
            continue
        if not target.is_file():
            yield finding_at(m, rules.ENV_FILE_MISSING, (*path, "path"), f"file {rel!r} does not exist",
                             f"looked for {target}")
        elif digest is not None:
            actual = sha256_file(target)
            if actual != digest:
                yield finding_at(m, rules.ENV_SHA256, (*path, "sha256"),
                                 f"{rel} has sha256 {actual}, the manifest says {digest}",
                                 "the file changed: restore it, or update sha256 if the change is intended")


def chat_files(m: Manifest, scope: Scope) -> Iterator[Finding]:
    """Chat data: the tokenizer and template files, the template's generation markers, and every
    record's fields and roles (the first problem of each file, naming its row)."""
    if m.kind != "Dataset" or m.obj.spec.chat is None:
        return
    from ..data.chat_template import find_template
    from ..data.conversations import read_records, to_messages
    from ..data.errors import DataError
    from ..domain.chat_template import has_generation_markers, needs_generation_markers

    chat = m.obj.spec.chat
    outside = [(at, rel) for at, rel in ((("spec", "chat", "tokenizer", "path"), getattr(chat.tokenizer, "path", None)),
                                         (("spec", "chat", "templatePath"), chat.template_path))
               if rel is not None and not scope.inside(m.base_dir / rel)]
    for at, rel in outside:
        yield finding_at(m, rules.ENV_OUTSIDE_PROJECT, at,
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
            yield finding_at(m, rules.ENV_FILE_MISSING, ("spec", "chat", "tokenizer", "path"),
                      f"tokenizer {what} {chat.tokenizer.path!r} does not exist", f"looked for {target}")
            return
        if chat.tokenizer.type == "huggingface":
            tok_dir = target
            if not (target / "tokenizer.json").is_file():
                yield finding_at(m, rules.ENV_FILE_MISSING, ("spec", "chat", "tokenizer", "path"),
                          f"tokenizer directory {chat.tokenizer.path!r} has no tokenizer.json",
                          f"looked for {target / 'tokenizer.json'}")
        elif chat.tokenizer.sha256 is not None and (actual := sha256_file(target)) != chat.tokenizer.sha256:
            yield finding_at(m, rules.ENV_SHA256, ("spec", "chat", "tokenizer", "sha256"),
                      f"{chat.tokenizer.path} has sha256 {actual}, the manifest says {chat.tokenizer.sha256}",
                      "the file changed: restore it, or update sha256 if the change is intended")
    if chat.template_path is not None and not (m.base_dir / chat.template_path).is_file():
        yield finding_at(m, rules.ENV_FILE_MISSING, ("spec", "chat", "templatePath"),
                  f"file {chat.template_path!r} does not exist", f"looked for {m.base_dir / chat.template_path}")
        return
    try:
        template = find_template(chat, m.base_dir, tok_dir)
    except DataError as e:
        yield finding_at(m, rules.ENV_CHAT_TEMPLATE, ("spec", "chat"), str(e))
        return
    where = ("spec", "chat", "templatePath") if chat.template_path is not None else ("spec", "chat", "tokenizer")
    if chat.format != "text" and template is None and (chat.tokenizer is not None or chat.template is not None):
        yield finding_at(m, rules.ENV_CHAT_TEMPLATE, where, "the tokenizer has no chat template",
                  "set chat.template or chat.templatePath")
    elif (template is not None and template.origin != "spec.chat.template" and needs_generation_markers(chat)
          and not has_generation_markers(template.text)):
        yield finding_at(m, rules.ENV_CHAT_TEMPLATE, where,
                  f"the chat template in {template.origin} has no {{% generation %}} markers, so the "
                  "assistant's tokens cannot be found for the assistant-only loss",
                  "enclose each assistant message and its end-of-turn token in "
                  "{% generation %}…{% endgeneration %}, or set loss.trainOnPrompt: true")
    if chat.format == "preference":
        from ..data.pairs import to_pair

        yield from _chat_records(m, read_records, to_pair, DataError)
    else:
        yield from _chat_records(m, read_records, to_messages, DataError)


def _chat_records(m: Manifest, read_records: Any, to_messages: Any, data_error: Any) -> Iterator[Finding]:
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
                yield finding_at(m, rules.ENV_CHAT_RECORDS, at, f"{where}: {e.message}" if where else e.message,
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


def base_problem(m: Manifest, index: Index | None) -> tuple[str, str] | None:
    """(message, hint) when a Model's pretrained base cannot be found or read, else None.
    A TrainingJob's export that does not exist yet is no problem: the job may run first."""
    from ..domain.pretrained import BaseError, check_directory, hub_offline, locate
    from ..manifests.light import Pretrained

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


def _base_finding(m: Manifest, index: Index | None) -> Iterator[Finding]:
    problem = base_problem(m, index)
    if problem is not None:
        arch = m.obj.spec.architecture
        key = "path" if arch.path else "uri" if arch.uri else "trainingJob"
        yield finding_at(m, rules.ENV_PRETRAINED_BASE, ("spec", "architecture", key), problem[0], problem[1])
