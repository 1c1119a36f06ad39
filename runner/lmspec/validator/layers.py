"""Layers 2 to 5 over parsed documents: schema, semantic rules, references and (given
``env_checks``) the environment, each on everything it can, so one run reports every problem.

A document that fails its schema only in some fields is checked further without them.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from .. import versions
from ..manifests.document import Document
from ..manifests.findings import Finding, Report, pointer
from ..manifests.manifest import Manifest, ManifestSet
from . import environment
from . import registry as rules
from .at import finding_at, in_version
from .environment import EnvironmentChecks
from .index import index_of
from .references import check_references
from .rules import run_checks
from .schema import check_document

Checked = tuple[Any, list[Finding]]
"""What :func:`.schema.check_document` found for a document: its typed manifest, and findings."""


def validate_documents(docs: Sequence[Document], report: Report | None = None, *,
                       references: bool = True,
                       allow_outside: Sequence[str | os.PathLike[str]] = (),
                       schema_checked: Mapping[int, Checked] | None = None,
                       env_checks: EnvironmentChecks | None = None, models: bool = False) -> ManifestSet:
    """Run layers 2-5 over parsed documents. ``schema_checked`` holds layer 2's results for documents
    checked already (by ``id``), as :func:`validate` gathers them while files are still parsed.
    ``env_checks``: the environment's checks (layer 5, run only when given; lmspec's own are
    :func:`lmspec.preflight.default_checks`). With ``models``, the manifests are the runtime's
    pydantic objects, validated once by the models themselves (see :func:`.schema.check_document`)."""
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
        if (old := deprecated(doc)) is not None:
            report.findings.append(old)
        done = schema_checked.get(id(doc)) if schema_checked is not None else None
        obj, findings = done if done is not None else check_document(doc, models=models)
        report.extend(findings)
        if obj is not None:
            result.manifests.append(Manifest(obj, doc))
        elif (repaired := _without_bad_fields(doc, findings)) is not None:
            partial.append(repaired)
    report.documents += len(docs)

    checked = result.manifests + [m for m, _ in partial]
    removed = {id(m): cut for m, cut in partial}
    index = index_of(checked)
    report.extend(check_references(checked, check_missing=references, partial=removed))
    for m in checked:
        cut = removed.get(id(m), [])
        for rule, path, message, hint in run_checks(m.obj, index):
            at = pointer(in_version(m, path)[0])
            # A finding about a field that was taken out, or about the mapping that held it,
            # would be about the gap, not about what the file says.
            if not any(at == c or at.startswith(c + "/") or at == c.rsplit("/", 1)[0] for c in cut):
                report.findings.append(finding_at(m, rule, path, message, hint))
        if env_checks is not None and id(m) not in removed:
            env = list(environment.check_manifest(m, env_checks, allow_outside, index))
            report.extend(env)
            if not env:  # the files are there and intact: read them
                report.extend(environment.check_contents(m, env_checks))
    if env_checks is not None:
        report.extend(environment.check_jobs([m for m in checked if id(m) not in removed], env_checks, index))
    report.sort()
    return result


def deprecated(doc: Document) -> Finding | None:
    """The ``document.deprecated-version`` warning for a document of a deprecated version
    (:attr:`lmspec.versions.Version.deprecated_by`), or None."""
    api = doc.data.get("apiVersion") if isinstance(doc.data, dict) else None
    version = versions.find(api) if isinstance(api, str) and api.startswith(versions.GROUP + "/") else None
    if version is None or version.deprecated_by is None or versions.find(version.deprecated_by) is None:
        return None
    successor = version.deprecated_by
    policy = version.policy.split(". ", 1)[0].rstrip(".")
    file = "FILE" if doc.file.startswith("<") else shlex.quote(doc.file)
    line, column = doc.locate(("apiVersion",))
    return Finding(rules.DOCUMENT_DEPRECATED_VERSION, "warning", doc.file, line, column, "/apiVersion",
                   f"{version.api_version} is deprecated in favour of {successor}",
                   f"convert it with `lmspec convert {file} --to {successor.rsplit('/', 1)[-1]}`"
                   + (f". {policy}" if policy else ""), doc.index)


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
