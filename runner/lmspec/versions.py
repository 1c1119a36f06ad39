"""The registry of the standard's API versions: one record per ``apiVersion``.

>>> from lmspec.versions import get
>>> get("v1beta1").api_version
'lmspec.io/v1beta1'
>>> get("lmspec.io/v1alpha1").hub
True

Each record names its models package, the document class of each kind, where its schemas and
spec live, the module holding its conversions to and from the hub, and whether (and in favour
of what) it is deprecated. Adding a version is its package, its generated schemas and spec, its
conformance cases, its conversions and one :func:`register` call here — nothing in the runtime.

Importing this module imports neither pydantic nor a models package: the models and the
conversions are imported by dotted path on first use.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

GROUP = "lmspec.io"

KIND_NAMES = ("Model", "Dataset", "TrainingJob", "InferenceService")


@dataclass(frozen=True)
class Version:
    """One API version of the standard."""

    api_version: str
    """``lmspec.io/<name>``, as manifests write it."""

    package: str
    """Dotted path of the models package (``lmspec.v1beta1``); its ``KINDS`` maps kind → class."""

    kinds: dict[str, str] = field(default_factory=lambda: {k: k for k in KIND_NAMES})
    """Kind → name of its document class in ``package``."""

    conversion: str | None = None
    """Dotted path of the module with ``to_hub(doc)`` and ``from_hub(doc)``, each returning
    ``(doc, losses)``; ``None`` for the hub itself."""

    schema_dir: str = ""
    """Directory of the published schemas, relative to the repository root."""

    spec_dir: str = ""
    """Directory of the spec prose, relative to the repository root."""

    deprecated_by: str | None = None
    """The ``apiVersion`` that replaces this one, once it is deprecated."""

    policy: str = ""
    """How long a deprecated version stays accepted, and what is guaranteed meanwhile."""

    @property
    def name(self) -> str:
        """``v1beta1`` for ``lmspec.io/v1beta1``."""
        return self.api_version.rsplit("/", 1)[1]

    @property
    def hub(self) -> bool:
        """Whether this is the version the runtime is written against."""
        return self.api_version == HUB

    def models(self) -> dict[str, Any]:
        """Kind → document class (imports the models package and pydantic)."""
        module = importlib.import_module(self.package)
        return {kind: getattr(module, cls) for kind, cls in self.kinds.items()}

    def converter(self) -> ModuleType | None:
        """The conversion module, or ``None`` for the hub."""
        return importlib.import_module(self.conversion) if self.conversion else None


HUB = f"{GROUP}/v1alpha1"
"""The version the runtime is written against: every document is converted to it before the
data pipeline, the trainer or the server read it. Not necessarily the newest version; moving it
is a change of the runtime, invisible to manifests."""

_REGISTRY: dict[str, Version] = {}


def register(version: Version) -> Version:
    """Add (or replace) a version; returns it. Tests and extensions may register their own."""
    _REGISTRY[version.api_version] = version
    return version


def unregister(api_version: str) -> None:
    """Remove a version added by :func:`register` (the hub cannot be removed)."""
    if api_version == HUB:
        raise ValueError("the hub version cannot be removed")
    _REGISTRY.pop(api_version, None)


def all_versions() -> Iterator[Version]:
    """Every registered version, in registration order (oldest first)."""
    return iter(list(_REGISTRY.values()))


def names() -> list[str]:
    """``["lmspec.io/v1alpha1", "lmspec.io/v1beta1", …]``."""
    return list(_REGISTRY)


def find(name: str) -> Version | None:
    """The version called ``name`` (``v1beta1`` or ``lmspec.io/v1beta1``), or ``None``."""
    full = name if "/" in name else f"{GROUP}/{name}"
    return _REGISTRY.get(full)


def get(name: str) -> Version:
    """Like :func:`find`, but raises ``KeyError`` with a did-you-mean for an unknown version."""
    version = find(name)
    if version is None:
        raise KeyError(unknown_message(name))
    return version


def unknown_message(name: str) -> str:
    """``unknown version 'v1beta2'; did you mean 'v1beta1'? versions: v1alpha1, v1beta1``."""
    short = [v.name for v in _REGISTRY.values()]
    close = difflib.get_close_matches(name.rsplit("/", 1)[-1], short, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown version {name!r}{hint} versions: {', '.join(short)}"


ALPHA_POLICY = (
    "v1alpha1 is deprecated in favour of v1beta1 and stays accepted for at least 2 minor releases "
    "of lmspec after v1beta1's release. Meanwhile every v1alpha1 manifest validates and runs as "
    "before, `lmspec validate` warns and names `lmspec convert --to v1beta1`, and conversion both "
    "ways is lossless."
)

register(Version(
    api_version=HUB,
    package="lmspec.v1alpha1",
    schema_dir="schemas/v1alpha1",
    spec_dir="spec/v1alpha1",
    deprecated_by=f"{GROUP}/v1beta1",
    policy=ALPHA_POLICY,
))
register(Version(
    api_version=f"{GROUP}/v1beta1",
    package="lmspec.v1beta1",
    conversion="lmspec.conversion.v1beta1",
    schema_dir="schemas/v1beta1",
    spec_dir="spec/v1beta1",
))

__all__ = [
    "GROUP",
    "HUB",
    "KIND_NAMES",
    "Version",
    "all_versions",
    "find",
    "get",
    "names",
    "register",
    "unknown_message",
    "unregister",
]
