"""lmspec: versioned manifests for the whole life of a model.

>>> import lmspec
>>> report = lmspec.validate(["examples/iris"])
>>> manifests = lmspec.load(["examples/iris"])   # raises lmspec.ValidationFailed on errors

Importing lmspec never imports torch or deepspeed; training and serving load them on demand.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ._version import __version__
from .validator import Finding, Manifest, ManifestSet, Report, ValidationFailed, core
from .validator.parse import MAX_BYTES

if TYPE_CHECKING:
    from .standard import API_VERSION, Dataset, InferenceService, Model, TrainingJob
    from .validator.environment import EnvironmentChecks

Paths = str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


def validate(paths: Paths, *, check_env: bool = False, references: bool = True, stdin_text: str | None = None,
             max_bytes: int = MAX_BYTES, allow_outside: Sequence[str | os.PathLike[str]] = (),
             workers: int = 1) -> Report:
    """Validate files, directories or globs; returns the report (never raises for bad input).
    ``check_env``: check what they name on this machine too (``lmspec validate --check-env``).
    See :func:`lmspec.validator.core.validate`.

    >>> lmspec.validate(["examples/iris"]).ok
    True
    """
    return core.validate(paths, env_checks=_environment(check_env), references=references, stdin_text=stdin_text,
                         max_bytes=max_bytes, allow_outside=allow_outside, workers=workers)


def validate_text(text: str, file: str = "<string>", *, check_env: bool = False, **kwargs: Any) -> Report:
    """Validate manifests given as a YAML or JSON string."""
    return core.validate_text(text, file, env_checks=_environment(check_env), **kwargs)


def load(paths: Paths, *, check_env: bool = False, allow_outside: Sequence[str | os.PathLike[str]] = ()) -> ManifestSet:
    """Parse and validate manifests, as the runtime's models; raises :class:`ValidationFailed` on
    any error. ``check_env`` as for :func:`validate` (``lmspec run`` checks the environment)."""
    return core.load(paths, env_checks=_environment(check_env), allow_outside=allow_outside)


def _environment(check_env: bool) -> EnvironmentChecks | None:
    # The environment checks read data with numpy: imported only when asked for.
    if not check_env:
        return None
    from .preflight import default_checks

    return default_checks()


def __getattr__(name: str) -> Any:
    # The models are imported on first use: validating needs neither them nor pydantic.
    if name in ("API_VERSION", "Dataset", "InferenceService", "Model", "TrainingJob"):
        from . import standard

        return getattr(standard, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "API_VERSION",
    "Dataset",
    "Finding",
    "InferenceService",
    "Manifest",
    "ManifestSet",
    "Model",
    "Report",
    "TrainingJob",
    "ValidationFailed",
    "__version__",
    "load",
    "validate",
    "validate_text",
]
