"""Converting manifests between API versions, on plain data (mappings as parsed from YAML).

>>> doc = {"apiVersion": "lmspec.io/v1alpha1", "kind": "Model", "metadata": {"name": "m"},
...        "spec": {"task": "causal-lm"}}
>>> new, losses = convert(doc, "v1beta1")
>>> new["apiVersion"], new["spec"]["task"], losses
('lmspec.io/v1beta1', 'causalLm', [])

Versions connect hub and spoke (``spec/v1alpha1/versioning.md``): each spoke has ``to_hub`` and
``from_hub``; converting between two spokes goes through the hub. A spoke's conversions are a
list of :class:`Change` objects, each a pair of pure functions on one subtree of a document
(``spec.precision``); a spoke's changes live in this package, one module per version
(:mod:`lmspec.conversion.v1beta1`). :class:`Spoke` runs them and keeps every round trip lossless: where a
value written one way has no exact image on the other side (an explicit default, an ``x-`` key
on an object that disappears), the original subtree travels in the annotation
``lmspec.io/<version>-<path>``, and converting back restores it as long as the converted value
was not edited meanwhile.

A *loss* is information the target version cannot express at all (a shape only an invalid
manifest has); conversions report losses rather than fail, and callers refuse to write a
result with losses unless forced.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .. import versions

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Loss:
    """A value the target version cannot represent: ``Loss(("spec", "auth", "apiKeys", 0), "…")``."""

    path: Path
    message: str

    @property
    def dotted(self) -> str:
        return ".".join(str(p) for p in self.path)


Result = tuple[Any, list[Loss]]
"""A converted value and the losses (paths relative to the value)."""


@dataclass(frozen=True)
class Change:
    """One difference between a spoke and the hub, on the subtree at ``path`` of documents of
    ``kinds``: ``forward`` turns the hub's subtree into the spoke's, ``backward`` the reverse.
    Both are pure; both must accept any value (a document may be invalid) and leave what they do
    not understand as it is."""

    id: str
    kinds: tuple[str, ...]
    path: tuple[str, ...]
    forward: Callable[[Any], Result]
    backward: Callable[[Any], Result]
    summary: str = ""
    keys: tuple[tuple[Path, Path], ...] = ()
    """Where the hub's fields went, relative to ``path``: ``(("fp16", "enabled"), ("mode",))``
    (hub prefix, spoke prefix; ``"*"`` stands for any list index). The validator places a
    finding about the hub's field on the spoke's (:func:`spoke_path`)."""
    words: tuple[tuple[str, str], ...] = ()
    """How a finding's message names the field in each version: ``("engine.name", "engine.type")``
    (:func:`spoke_words`)."""

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


_MISSING: Any = object()


def _get(doc: Any, path: Sequence[str]) -> Any:
    for key in path:
        if not isinstance(doc, dict) or key not in doc:
            return _MISSING
        doc = doc[key]
    return doc


def _set(doc: dict[str, Any], path: Sequence[str], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


@dataclass
class _Annotations:
    """The ``metadata.annotations`` of one document, created on first write and removed again
    when the last round-trip annotation is taken from a mapping conversion made."""

    doc: dict[str, Any]
    side: str
    """Name of the version whose values the annotations written here keep (``v1alpha1``)."""
    other: str
    """Name of the version whose annotations are read (and removed) here."""
    added: bool = field(default=False)
    took: bool = field(default=False)

    def _mapping(self, create: bool) -> dict[str, Any] | None:
        meta = self.doc.get("metadata")
        if not isinstance(meta, dict):
            return None
        anns = meta.get("annotations")
        if anns is None and create:
            anns = meta["annotations"] = {}
        elif isinstance(anns, dict) and not anns and create and not self.added:
            # An empty mapping written by hand: say so, so the way back keeps it.
            anns[f"{versions.GROUP}/{self.side}-metadata.annotations"] = "{}"
        return anns if isinstance(anns, dict) else None

    def take(self, path: str) -> Any:
        anns = self._mapping(create=False)
        key = f"{versions.GROUP}/{self.other}-{path}"
        if anns is None or key not in anns:
            return _MISSING
        raw = anns.pop(key)
        self.took = True
        try:
            return json.loads(raw) if isinstance(raw, str) else _MISSING
        except ValueError:
            return _MISSING

    def keep(self, path: str, value: Any) -> None:
        anns = self._mapping(create=True)
        if anns is None:
            return
        anns[f"{versions.GROUP}/{self.side}-{path}"] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        self.added = True

    def tidy(self) -> None:
        if not self.took:
            return
        meta = self.doc.get("metadata")
        anns = meta.get("annotations") if isinstance(meta, dict) else None
        if not isinstance(anns, dict) or anns:
            if isinstance(anns, dict):
                marker = f"{versions.GROUP}/{self.other}-metadata.annotations"
                if anns.get(marker) == "{}" and len(anns) == 1:
                    anns.pop(marker)
            return
        assert isinstance(meta, dict)
        del meta["annotations"]


def plain_copy(value: Any) -> Any:
    """A copy of plain data (mappings, lists, scalars) as parsed from YAML or JSON.

    Written out rather than :func:`copy.deepcopy`: the validator converts every document of a
    spoke version, and this is about five times faster on such data (no memo, no reduce protocol);
    scalars are immutable and shared."""
    if isinstance(value, dict):
        return {k: plain_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain_copy(v) for v in value]
    return value


def _own_mappings(doc: dict[str, Any], path: Sequence[str | int], *, top: bool = True) -> dict[str, Any]:
    """``doc`` with the mappings along ``path`` copied (``doc`` itself too when ``top``), so that
    writing below them leaves the data they were copied from as it was."""
    out = dict(doc) if top else doc
    node: Any = out
    for key in path:
        child = node.get(key) if isinstance(node, dict) else None
        if not isinstance(child, dict):
            break
        node[key] = child = dict(child)
        node = child
    return out


class Spoke:
    """The conversions of one version to and from the hub, built from its changes."""

    def __init__(self, api_version: str, changes: Sequence[Change]) -> None:
        self.api_version = api_version
        self.changes = tuple(changes)
        paths = [(c.kinds, c.path) for c in self.changes]
        for kinds, path in paths:
            clash = [c.id for c in self.changes if c.path == path and set(c.kinds) & set(kinds)]
            if len(clash) > 1:
                raise ValueError(f"changes {clash} share the subtree {'.'.join(path)}")

    @property
    def name(self) -> str:
        return self.api_version.rsplit("/", 1)[1]

    def to_hub(self, doc: dict[str, Any], *, share: bool = False) -> Result:
        """This version's document → the hub's (``share``: see :func:`convert`)."""
        return self._run(doc, versions.HUB, reverse=True, share=share)

    def from_hub(self, doc: dict[str, Any], *, share: bool = False) -> Result:
        """The hub's document → this version's (``share``: see :func:`convert`)."""
        return self._run(doc, self.api_version, reverse=False, share=share)

    def _run(self, doc: dict[str, Any], target: str, *, reverse: bool, share: bool) -> Result:
        # Shared: copy only the mappings on the way to what changes (and the annotations).
        out = _own_mappings(doc, ("metadata", "annotations")) if share else plain_copy(doc)
        hub_name = versions.HUB.rsplit("/", 1)[1]
        mine, theirs = (self.name, hub_name) if reverse else (hub_name, self.name)
        anns = _Annotations(out, side=mine, other=theirs)
        kind = out.get("kind")
        losses: list[Loss] = []
        changes = reversed(self.changes) if reverse else self.changes
        for change in changes:
            if kind not in change.kinds:
                continue
            value = _get(out, change.path)
            if value is _MISSING:
                continue
            there, back = (change.backward, change.forward) if reverse else (change.forward, change.backward)
            new, lost = there(value)
            saved = anns.take(change.dotted)
            if saved is not _MISSING and back(saved)[0] == value:
                new, lost = saved, []  # the value as first written, unchanged since
            elif not lost and back(new)[0] != value:
                # (What is lost is dropped, not kept: it may be a secret written inline.)
                anns.keep(change.dotted, value)
            losses += [Loss((*change.path, *loss.path), loss.message) for loss in lost]
            if share:
                out = _own_mappings(out, change.path[:-1], top=False)
            _set(out, change.path, new)
        anns.tidy()
        if "apiVersion" in out:
            out["apiVersion"] = target
        return out, losses


def convert(doc: dict[str, Any], to: str, *, share: bool = False) -> Result:
    """``doc`` (a plain manifest of any registered version) in the version ``to`` (``v1beta1``
    or ``lmspec.io/v1beta1``), with the losses. Raises ``KeyError`` for an unknown version (the
    target's message has a did-you-mean) and ``ValueError`` for a document without a registered
    ``apiVersion``. A document already of version ``to`` comes back unchanged (a copy).

    The result is a copy, unless ``share``: then it shares what the conversion leaves alone with
    ``doc`` (``doc`` itself when nothing changes), for a caller that modifies neither, as the
    validator does for every document of a spoke version."""
    target = versions.get(to)
    api = doc.get("apiVersion") if isinstance(doc, dict) else None
    source = versions.find(api) if isinstance(api, str) and api.startswith(versions.GROUP + "/") else None
    if source is None:
        known = ", ".join(versions.names())
        raise ValueError(f"apiVersion {api!r} is not a version of the standard (known: {known})")
    if source.api_version == target.api_version:
        return (doc if share else plain_copy(doc)), []
    losses: list[Loss] = []
    hub_doc = doc
    if not source.hub:
        hub_doc, lost = _spoke(source).to_hub(doc, share=share)
        losses += lost
    if target.hub:
        return (hub_doc if share or hub_doc is not doc else plain_copy(doc)), losses
    out, lost = _spoke(target).from_hub(hub_doc, share=share)
    return out, losses + lost


def spoke_path(api_version: str, kind: str, path: Path, data: Any = None) -> Path:
    """The path in a document of ``api_version`` of what is at ``path`` in its hub conversion:
    ``spoke_path("lmspec.io/v1beta1", "TrainingJob", ("spec", "precision", "fp16", "enabled"))``
    is ``("spec", "precision", "mode")``. A path no change moved is returned as it is; one inside
    a changed subtree that no change names falls back to the nearest prefix that exists in
    ``data`` (the spoke's document), when given."""
    version = versions.find(api_version)
    if version is None or version.hub:
        return path
    for change in _changes(version):
        n = len(change.path)
        if kind not in change.kinds or tuple(path[:n]) != change.path:
            continue
        rest = tuple(path[n:])
        best: tuple[Path, Path] | None = None
        for hub, spoke in change.keys:
            fits = len(hub) <= len(rest) and all(h == "*" or h == r for h, r in zip(hub, rest, strict=False))
            if fits and (best is None or len(hub) > len(best[0])):
                best = (hub, spoke)
        if best is not None:
            hub, spoke = best
            head = rest[: len(hub)]
            moved = tuple(head[i] if s == "*" else s for i, s in enumerate(spoke))
            return (*change.path, *moved, *rest[len(hub):])
        return _existing(path, data) if data is not None and rest else path
    return path


def _existing(path: Path, data: Any) -> Path:
    """The longest prefix of ``path`` that is in ``data``."""
    out: list[str | int] = []
    for part in path:
        in_list = isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data)
        if in_list or (isinstance(data, dict) and part in data):
            data = data[part]
        else:
            break
        out.append(part)
    return tuple(out)


def spoke_words(api_version: str, text: str) -> str:
    """``text`` (a finding's message or hint, written in the hub's terms) with the fields it
    names in ``api_version``'s terms: ``use engine.name: builtin`` → ``use engine.type: builtin``."""
    version = versions.find(api_version)
    if version is None or version.hub or not text:
        return text
    for change in _changes(version):
        for hub, spoke in change.words:
            if hub in text:
                text = re.sub(rf"(?<![\w-]){re.escape(hub)}(?![\w-])", spoke.replace("\\", "\\\\"), text)
    return text


def _changes(version: versions.Version) -> tuple[Change, ...]:
    spoke = getattr(_spoke(version), "SPOKE", None)
    return spoke.changes if isinstance(spoke, Spoke) else ()


def _spoke(version: versions.Version) -> Any:
    module = version.converter()
    assert module is not None
    return module


# --- Helpers for writing changes ---------------------------------------------------------------

def rename_key(mapping: dict[str, Any], old: str, new: str, value: Any = _MISSING) -> dict[str, Any]:
    """A copy of ``mapping`` with ``old`` renamed to ``new`` in the same position (and its value
    replaced by ``value`` when given): key order is part of how a manifest reads."""
    out: dict[str, Any] = {}
    for key, val in mapping.items():
        if key == old:
            out[new] = val if value is _MISSING else value
        else:
            out[key] = val
    return out


def replace_keys(mapping: dict[str, Any], old: set[str], new: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``mapping`` with the keys ``old`` replaced by the items of ``new``, placed where
    the first of ``old`` was (at the end when none was there)."""
    out: dict[str, Any] = {}
    placed = False
    for key, val in mapping.items():
        if key in old:
            if not placed:
                out.update(new)
                placed = True
        else:
            out[key] = val
    if not placed:
        out.update(new)
    return out


def same(value: Any) -> Result:
    """The identity conversion."""
    return value, []


def renaming(old: str, new: str) -> tuple[Callable[[Any], Result], Callable[[Any], Result]]:
    """``(forward, backward)`` of a key renamed from ``old`` (hub) to ``new`` (spoke) in one
    mapping."""

    def there(value: Any) -> Result:
        if isinstance(value, dict) and old in value and new not in value:
            return rename_key(value, old, new), []
        return value, []

    def back(value: Any) -> Result:
        if isinstance(value, dict) and new in value and old not in value:
            return rename_key(value, new, old), []
        return value, []

    return there, back


def value_map(mapping: dict[Any, Any]) -> tuple[Callable[[Any], Result], Callable[[Any], Result]]:
    """``(forward, backward)`` of a scalar whose values are renamed: ``value_map({"causal-lm":
    "causalLm"})``; other values pass unchanged."""
    inverse = {v: k for k, v in mapping.items()}

    def there(value: Any) -> Result:
        return (mapping.get(value, value) if isinstance(value, str) else value), []

    def back(value: Any) -> Result:
        return (inverse.get(value, value) if isinstance(value, str) else value), []

    return there, back


__all__ = ["Change", "Loss", "Result", "Spoke", "convert", "rename_key", "renaming", "replace_keys", "same",
           "spoke_path", "spoke_words", "value_map"]
