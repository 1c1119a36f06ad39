"""A finding at a path of a manifest: its rule's severity, its file, line and column.

Rules read the hub's object (:attr:`Manifest.obj`) and name the hub's paths and fields; for a
manifest written in another version both are put in that version's terms
(:func:`lmspec.conversion.spoke_path`, :func:`lmspec.conversion.spoke_words`), so the finding
points at the text as written.
"""

from __future__ import annotations

from ..manifests.findings import Finding, pointer
from ..manifests.manifest import Manifest
from ..versions import HUB
from . import registry as rules


def finding_at(m: Manifest, rule: str, path: tuple[str | int, ...], message: str, hint: str = "") -> Finding:
    """``message`` about ``path`` in ``m`` as a finding of ``rule``, located in its file."""
    version = m.api_version
    if version != HUB:
        path, message, hint = in_version(m, path, message, hint)
    line, column = m.document.locate(path)
    r = rules.RULES[rule]
    return Finding(rule, r.severity, m.file, line, column, pointer(path), message, hint, m.document.index)


def in_version(m: Manifest, path: tuple[str | int, ...], message: str = "",
               hint: str = "") -> tuple[tuple[str | int, ...], str, str]:
    """A hub path, message and hint about ``m`` in the terms of the version ``m`` is written in."""
    from ..conversion import spoke_path, spoke_words

    version = m.api_version
    if version == HUB:
        return path, message, hint
    return (spoke_path(version, m.kind, path, m.document.data), spoke_words(version, message),
            spoke_words(version, hint))
