"""The validator's public API: :func:`validate`, :func:`validate_text`, :func:`load`,
:func:`check_environment` and :func:`typed`; the layers live in their own modules.

The names the rest of lmspec imports from here (``Manifest``, ``ManifestSet``, ``load``,
``OUTPUT_MARKER`` …) are re-exported, so ``from lmspec.validator.core import …`` keeps working.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from ..manifests.document import Document
from ..manifests.findings import Report
from ..manifests.light import Light
from ..manifests.manifest import Manifest, ManifestSet, ValidationFailed, to_yaml_data
from ..versions import HUB
from . import environment
from .environment import EnvironmentChecks
from .index import index_of
from .inputs import MANIFEST_SUFFIXES, OUTPUT_MARKER, expand, parse_finding, read, skipped_note, walk_glob
from .layers import Checked, validate_documents
from .parse import MAX_BYTES, ParseError, parse_text
from .schema import check_document

__all__ = [
    "MANIFEST_SUFFIXES",
    "OUTPUT_MARKER",
    "Manifest",
    "ManifestSet",
    "ValidationFailed",
    "check_environment",
    "expand",
    "load",
    "parse_finding",
    "read",
    "skipped_note",
    "to_yaml_data",
    "typed",
    "validate",
    "validate_documents",
    "validate_text",
    "walk_glob",
]


def validate(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
             env_checks: EnvironmentChecks | None = None, references: bool = True, stdin_text: str | None = None,
             max_bytes: int = MAX_BYTES, allow_outside: Sequence[str | os.PathLike[str]] = (),
             workers: int = 1) -> Report:
    """Validate files, directories or globs; returns the report (never raises for bad input).
    ``env_checks``: run the environment layer with these checks (``--check-env``; lmspec's own
    are :func:`lmspec.preflight.default_checks`), or not at all when None. ``workers`` > 1
    parses many files in forked processes: only from a process that runs no other threads (as
    the ``lmspec validate`` command does).

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
    return validate_documents(docs, report, env_checks=env_checks, references=references,
                              allow_outside=allow_outside, schema_checked=checked).report


def validate_text(text: str, file: str = "<string>", **kwargs: Any) -> Report:
    """Validate manifests given as a YAML or JSON string."""
    report = Report(files=[file])
    try:
        docs = parse_text(text, file)
    except ParseError as exc:
        report.findings.append(parse_finding(exc))
        return report
    return validate_documents(docs, report, **kwargs).report


def load(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
         env_checks: EnvironmentChecks | None = None,
         allow_outside: Sequence[str | os.PathLike[str]] = ()) -> ManifestSet:
    """Parse and validate manifests; raises :class:`ValidationFailed` on any error.
    ``env_checks`` and ``allow_outside`` as for :func:`validate`."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    docs, report = read(paths)
    # Validated once, by the models themselves: the runtime's objects, with the findings the
    # compiled checks give (they are the models' own checks).
    result = validate_documents(docs, report, env_checks=env_checks, allow_outside=allow_outside, models=True)
    if not result.report.ok:
        raise ValidationFailed(result.report)
    return result


def check_environment(manifests: ManifestSet, chosen: Sequence[Manifest], *,
                      allow_outside: Sequence[str | os.PathLike[str]] = (),
                      checks: EnvironmentChecks) -> None:
    """Layer 5 (``--check-env``) for the manifests a command is about to use, and only those:
    ``lmspec serve`` checks the service it serves, not the training data of jobs passed beside
    it. Raises :class:`ValidationFailed` with the findings, as :func:`load` does. ``checks``:
    the environment's checks (lmspec's own: :func:`lmspec.preflight.default_checks`); their
    manifest checks run."""
    index = index_of(manifests.manifests)
    report = Report()
    for m in chosen:
        report.extend(environment.check_manifest(m, checks, allow_outside, index))
    report.sort()
    if not report.ok:
        report.files = sorted({f.file for f in report.findings})
        report.documents = len(chosen)
        raise ValidationFailed(report)


def typed(result: ManifestSet) -> ManifestSet:
    """The manifests as the runtime's pydantic models (the hub's, whatever version each was
    written in), in place of the validator's light objects.

    The models run the checks the validator ran (the compiled checks are theirs), so a manifest
    the validator accepted is accepted again here."""
    from ..standard import VERSIONS, to_hub

    hub = VERSIONS[HUB]
    for m in result.manifests:
        if isinstance(m.obj, Light):
            data = m.document.data
            if m.api_version != HUB:
                data, _ = to_hub(data)
            m.obj = hub[data["kind"]].model_validate(data, by_alias=True, by_name=False)
    return result
