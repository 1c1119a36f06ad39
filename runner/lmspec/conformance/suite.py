"""Load the conformance suite: one suite per API version (``conformance/<version>/``), its case
files grouped by tier, described by ``case.schema.json``.

>>> cases = load_suite("conformance/v1alpha1", tiers=["semantic"])
>>> cases[0].id, cases[0].tier, cases[0].version
('cluster/replica-bounds/triggers', 'semantic', 'v1alpha1')
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .. import versions

TIERS = ("schema", "semantic", "yaml", "references", "locations")
"""Tiers in the order they are run and reported."""

DEFAULT_FILE = "manifest.yaml"


class SuiteError(Exception):
    """A case file that cannot be read or breaks the case format."""


@dataclass(frozen=True)
class Expected:
    """One finding a case expects; ``None`` fields are not compared."""

    rule: str
    pointer: str | None = None
    line: int | None = None
    column: int | None = None
    file: str | None = None
    document: int | None = None
    severity: str | None = None

    def describe(self) -> str:
        parts = [self.rule]
        if self.file is not None:
            parts.append(f"file {self.file}")
        if self.document is not None:
            parts.append(f"document {self.document}")
        if self.pointer is not None:
            parts.append(f"at {self.pointer or '(root)'}")
        if self.line is not None:
            parts.append(f"line {self.line}" + (f" column {self.column}" if self.column else ""))
        if self.severity is not None:
            parts.append(self.severity)
        return " ".join(parts)


@dataclass(frozen=True)
class Case:
    id: str
    tier: str
    description: str
    rules: tuple[str, ...]
    documents: tuple[dict[str, str], ...]
    """Files as sent over the protocol: ``{"file", "source"}`` or ``{"file", "sourceBase64"}``."""
    valid: bool
    findings: tuple[Expected, ...] = ()
    allow_other_findings: bool = False
    origin: str = ""
    """Case file the case was read from."""
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)
    version: str = ""
    """The API version of the suite the case belongs to (``v1beta1``); ``""`` for a suite
    directory not named after a registered version."""

    def wire(self) -> dict[str, Any]:
        """The case as the protocol's ``run`` command carries it (expectations left out)."""
        out = {"id": self.id, "description": self.description, "rules": list(self.rules),
               "documents": [dict(d) for d in self.documents]}
        if self.version:
            out["apiVersion"] = f"{versions.GROUP}/{self.version}"
        return out

    def raw_documents(self) -> list[tuple[str, bytes]]:
        return document_bytes(self.documents)


def document_bytes(documents: Any) -> list[tuple[str, bytes]]:
    """``(file, bytes)`` of each document of a wire case."""
    out = []
    for d in documents:
        if "sourceBase64" in d:
            out.append((d["file"], base64.b64decode(d["sourceBase64"])))
        else:
            out.append((d["file"], d["source"].encode("utf-8")))
    return out


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys, so a typo in a case file cannot hide a case."""


def _mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def read_case_file(path: Path) -> Any:
    """The data of one case file (YAML or JSON)."""
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except (OSError, yaml.YAMLError) as exc:
        raise SuiteError(f"{path}: {exc}") from None


def case_files(root: Path) -> list[tuple[str, Path]]:
    """``(tier, path)`` of every case file under ``root``, tiers in :data:`TIERS` order."""
    out = []
    for tier in TIERS:
        folder = root / tier
        if folder.is_dir():
            out += [(tier, p) for p in sorted(folder.iterdir())
                    if p.suffix in (".yaml", ".yml", ".json") and p.is_file()]
    return out


def is_suite(root: Path) -> bool:
    """Whether ``root`` is one version's suite (it holds tier directories)."""
    return any((root / tier).is_dir() for tier in TIERS)


def version_suites(root: str | Path, names: list[str] | None = None) -> list[tuple[str, Path]]:
    """``(version, directory)`` of the suites under ``root`` (``conformance/``): those of the
    versions ``names`` (``v1beta1`` or ``lmspec.io/v1beta1``), or of every registered version
    that has one, oldest first. A named version that is unknown or has no suite is a
    :class:`SuiteError`.

    >>> [v for v, _ in version_suites("conformance")]
    ['v1alpha1', 'v1beta1']
    """
    root = Path(root)
    if names is None:
        return [(v.name, root / v.name) for v in versions.all_versions() if is_suite(root / v.name)]
    out = []
    for name in names:
        version = versions.find(name)
        if version is None:
            raise SuiteError(versions.unknown_message(name))
        if not is_suite(root / version.name):
            raise SuiteError(f"{root / version.name}: no conformance suite for {version.name}")
        if (version.name, root / version.name) not in out:
            out.append((version.name, root / version.name))
    return out


def load_suite(root: str | Path, tiers: list[str] | None = None, version: str | None = None) -> list[Case]:
    """Every case under ``root`` (``<root>/<tier>/*.yaml``), optionally of some tiers only. The
    cases belong to ``version``; by default the directory's name, if it names a registered
    version."""
    root = Path(root)
    if not root.is_dir():
        raise SuiteError(f"{root}: no such suite directory")
    if version is None:
        found = versions.find(root.name) if root.name.startswith("v") else None
        version = found.name if found is not None else ""
    cases: list[Case] = []
    ids: dict[str, str] = {}
    for tier, path in case_files(root):
        if tiers and tier not in tiers:
            continue
        data = read_case_file(path)
        if not isinstance(data, dict) or not isinstance(data.get("cases"), list):
            raise SuiteError(f"{path}: a case file is a mapping with a 'cases' list")
        for i, raw in enumerate(data["cases"]):
            case = _case(raw, tier, f"{path}#{i}", version)
            if case.id in ids:
                raise SuiteError(f"{path}: case id {case.id!r} is also used in {ids[case.id]}")
            ids[case.id] = str(path)
            cases.append(case)
    return cases


def _case(raw: Any, tier: str, origin: str, version: str) -> Case:
    try:
        if "documents" in raw:
            docs = tuple({k: str(v) for k, v in d.items()} for d in raw["documents"])
        else:
            key = "sourceBase64" if "sourceBase64" in raw else "source"
            docs = ({"file": raw.get("file", DEFAULT_FILE), key: raw[key]},)
        expected = tuple(
            Expected(f["rule"], f.get("pointer"), f.get("line"), f.get("column"), f.get("file"),
                     f.get("document"), f.get("severity"))
            for f in raw.get("findings") or ()
        )
        return Case(str(raw["id"]), tier, str(raw["description"]), tuple(raw["rules"]), docs,
                    bool(raw["valid"]), expected, bool(raw.get("allowOtherFindings", False)),
                    origin, raw, version)
    except (KeyError, TypeError, AttributeError) as exc:
        raise SuiteError(f"{origin}: malformed case ({exc!r}); check it against case.schema.json") from None
