"""Layer 4: names that must resolve to other manifests among the inputs, and names defined twice.

>>> list(check_references(manifests, check_missing=True))   # reference.* findings
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..manifests.findings import Finding, similar
from ..manifests.manifest import Manifest
from . import registry as rules
from .at import finding_at

Key = tuple[str | int, ...]

REFERENCES: dict[str, list[tuple[Key, str, Callable[[Any], str | None]]]] = {
    "TrainingJob": [
        (("spec", "model"), "Model", lambda j: j.spec.model),
        (("spec", "dataset"), "Dataset", lambda j: j.spec.dataset),
    ],
    "Model": [
        (("spec", "architecture", "trainingJob"), "TrainingJob",
         lambda m: getattr(m.spec.architecture, "training_job", None)),
    ],
    "InferenceService": [
        (("spec", "model", "trainingJob"), "TrainingJob", lambda s: s.spec.model.training_job),
    ],
}
"""Every reference a kind makes: (path of the field, kind it must name, getter)."""


def check_references(manifests: list[Manifest], *, check_missing: bool,
                     partial: Iterable[int] = ()) -> Iterator[Finding]:
    """Duplicates and references among ``manifests``; the references of those whose ``id`` is in
    ``partial`` (schema errors set aside) are not checked: they count only as targets."""
    unchecked = set(partial)
    seen: dict[tuple[str, str], Manifest] = {}
    for m in manifests:
        first = seen.setdefault((m.kind, m.name), m)
        if first is not m:
            line = first.document.locate(("metadata", "name"))[0]
            yield finding_at(m, rules.REFERENCE_DUPLICATE, ("metadata", "name"),
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
                yield finding_at(m, rules.REFERENCE_WRONG_KIND, path,
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
                yield finding_at(m, rules.REFERENCE_MISSING, path, f"no {kind} named {name!r} among the inputs", hint)
