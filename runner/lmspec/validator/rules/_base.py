"""What every rule module shares: the finding a rule yields (:class:`Issue`), the registration
decorator (:func:`check`), and the look-ups several kinds' rules make.

A rule is a function of a typed, schema-valid manifest and the run's :class:`~lmspec.validator.index.Index`
that yields issues; the issue's path (a tuple of keys as written in the manifest) is turned into a
position by the caller::

    @check("Model")
    def _model_heads(m: Model, _: Index) -> Iterator[Issue]:
        ...
        yield Issue(rules.MODEL_HEADS, ("spec", "architecture", "heads"), "…", "choose heads dividing width")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from ...domain.formats import FORMATS_BY_SUFFIX, source_format
from ...domain.signature import declared_output_width
from ...manifests.light import Dataset, HuggingFace, Model, TrainingJob, Transformer
from ..index import Index

Path = tuple[str | int, ...]
__all__ = [
    "CHECKS",
    "FORMATS_BY_SUFFIX",
    "Check",
    "Index",
    "Issue",
    "Path",
    "check",
    "column_dtypes",
    "context_of",
    "dataset_of",
    "model_of",
    "output_width",
    "run_checks",
    "source_format",
]

"""Where in a manifest: its keys as written (``("spec", "sources", 0, "path")``)."""


class Issue(NamedTuple):
    """What a rule found: its rule id, where, what is wrong and how to fix it."""

    rule: str
    path: Path
    message: str
    hint: str


Check = Callable[[Any, Index], Iterator[Issue]]
CHECKS: dict[str, list[Check]] = {"Model": [], "Dataset": [], "TrainingJob": [], "InferenceService": []}


def check(kind: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        CHECKS[kind].append(fn)
        return fn

    return register


def run_checks(manifest: Any, index: Index) -> Iterator[Issue]:
    for fn in CHECKS[manifest.kind]:
        yield from fn(manifest, index)


def output_width(m: Model) -> int | None:
    return declared_output_width(m.spec)


def model_of(j: TrainingJob, index: Index) -> Model | None:
    m = index.get("Model", j.spec.model)
    return m if isinstance(m, Model) else None


def dataset_of(j: TrainingJob, index: Index) -> Dataset | None:
    d = index.get("Dataset", j.spec.dataset)
    return d if isinstance(d, Dataset) else None


def context_of(model: Model) -> int | None:
    arch = model.spec.architecture
    if isinstance(arch, Transformer):
        return arch.context_length
    if isinstance(arch, HuggingFace):
        for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
            value = arch.config.get(key)
            if isinstance(value, int):
                return value
    return None


def column_dtypes(d: Dataset) -> dict[str, str]:
    """Declared columns and their dtypes (a feature wins over a target of the same name)."""
    dtypes = {c.name: str(c.dtype) for c in reversed(d.spec.features)}
    if d.spec.target is not None:
        dtypes.setdefault(d.spec.target.name, str(d.spec.target.dtype))
    return dtypes
