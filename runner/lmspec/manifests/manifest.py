"""What a validation run yields: schema-valid manifests (:class:`Manifest`) with the documents
they came from, gathered in a :class:`ManifestSet` with the run's report.

>>> result = lmspec.load("examples/iris")
>>> result.pick("TrainingJob", None, option="--job").name
'iris-train'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .document import Document
from .findings import Report

if TYPE_CHECKING:
    from pydantic import BaseModel


@dataclass
class Manifest:
    """A schema-valid manifest and where it came from."""

    obj: Any
    """The typed object in the hub's version, whatever the document's: :class:`~lmspec.v1alpha1.Model`,
    ``Dataset``, ``TrainingJob`` or ``InferenceService`` (from :func:`~lmspec.validator.core.load`;
    while validating, its light twin from :mod:`.light`)."""
    document: Document

    @property
    def kind(self) -> str:
        return str(self.obj.kind)

    @property
    def api_version(self) -> str:
        """The ``apiVersion`` the manifest was written in. :attr:`obj` is always the hub's
        (:data:`lmspec.versions.HUB`): other versions are converted to it."""
        data = self.document.data
        return str(data.get("apiVersion", self.obj.api_version) if isinstance(data, dict) else self.obj.api_version)

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


class ValidationFailed(Exception):
    """Raised by :func:`~lmspec.validator.core.load` when the manifests have errors; ``report`` holds the findings."""

    def __init__(self, report: Report) -> None:
        self.report = report
        first = report.errors[0] if report.errors else None
        where = f"{first.file}:{first.line}:{first.column}: {first.message}" if first else ""
        super().__init__(f"{len(report.errors)} error(s) in the manifests; first: {where}")


def to_yaml_data(obj: BaseModel, *, defaults: bool = True, api_version: str | None = None) -> dict[str, Any]:
    """A manifest as plain data with its written key names; with ``defaults``, every default filled.

    ``obj`` is the hub's object; ``api_version`` (a manifest's own, :attr:`Manifest.api_version`)
    gives it in that version instead, with that version's defaults. What was written is converted,
    not the hub's filled-in defaults: those would come back as round-trip annotations wherever the
    other version has no place for them (v1beta1 has none for a disabled fp16's loss scale)."""
    data: dict[str, Any] = obj.model_dump(mode="json", by_alias=True, exclude_unset=not defaults)
    if api_version is None or api_version == data.get("apiVersion"):
        return data
    from .. import versions
    from ..conversion import convert

    written = obj.model_dump(mode="json", by_alias=True, exclude_unset=True)
    converted: dict[str, Any] = convert(written, api_version)[0]
    if not defaults:
        return converted
    model = versions.get(api_version).models()[data["kind"]]
    full: dict[str, Any] = model.model_validate(converted, by_alias=True, by_name=False).model_dump(
        mode="json", by_alias=True)
    return full
