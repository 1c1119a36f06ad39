"""Widths a Model's signature declares: the one place that reads them (no torch).

>>> from lmspec.standard import Model
>>> input_width(model.spec), output_width(model.spec)   # doctest: +SKIP
(4, 3)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..standard import ModelSpec



def last_dim(shape: Sequence[int]) -> int | None:
    """A shape's last dimension, or None when it is variable (-1)."""
    return shape[-1] if shape[-1] > 0 else None


def input_width(spec: ModelSpec) -> int | None:
    """Features per row, from the first input's last dimension (None when it is -1)."""
    return last_dim(spec.signature.inputs[0].shape)


def declared_output_width(spec: ModelSpec) -> int | None:
    """The first output's last dimension as written (None when it is -1)."""
    return last_dim(spec.signature.outputs[0].shape)


def output_width(spec: ModelSpec) -> int | None:
    """Outputs per row: the signature's last dimension, else numClasses for a classifier (None
    when neither is given: the rule ``model.num-classes``), else 1 (a regression signature of
    shape ``[-1]`` has one output per row)."""
    shape = spec.signature.outputs[0].shape
    if len(shape) >= 2 and shape[-1] > 0:
        return shape[-1]
    if spec.task == "classification":
        return spec.num_classes
    return 1
