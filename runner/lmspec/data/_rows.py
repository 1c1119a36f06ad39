"""Row-level steps (dropNulls, dedupe, filter), applied to all rows before splitting.

They see values as read (parsed to the declared dtype, before any scaling or encoding), wherever
they stand in the step list.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ..standard import Dedupe, DropNulls, Filter, Step
from ._read import ColumnSpec, Table

_OPS: dict[str, Callable[[Any, Any], Any]] = {
    "eq": operator.eq, "ne": operator.ne, "lt": operator.lt,
    "le": operator.le, "gt": operator.gt, "ge": operator.ge,
}


def null_mask(values: np.ndarray) -> np.ndarray:
    if values.dtype.kind == "f":
        return np.asarray(np.isnan(values), dtype=bool)
    return np.fromiter((v is None for v in values), dtype=bool, count=len(values))


def apply_row_steps(table: Table, steps: Sequence[Step], columns: Sequence[ColumnSpec]) -> Table:
    known = [c.name for c in columns]
    for i, step in enumerate(steps):
        field = f"spec.preprocessing[{i}]"
        if isinstance(step, DropNulls):
            names = _columns(step.columns, known, field)
            drop = np.zeros(len(table), dtype=bool)
            for n in names:
                drop |= null_mask(table.columns[n])
            table = table.take(np.flatnonzero(~drop))
        elif isinstance(step, Dedupe):
            names = _columns(step.columns, known, field)
            table = table.take(_first_occurrences(table, names))
        elif isinstance(step, Filter):
            # dataset.unknown-column and trainingjob.dataset-task guarantee the columns exist.
            assert step.column in known, f"{field}: column {step.column!r} is not declared"
            table = table.take(np.flatnonzero(_filter_mask(table.columns[step.column], step, field)))
    return table


def _columns(names: list[str] | None, known: list[str], field: str) -> list[str]:
    if names is None:
        return known
    for k, n in enumerate(names):
        assert n in known, f"{field}.columns[{k}]: column {n!r} is not declared"
    return names


def _first_occurrences(table: Table, names: list[str]) -> np.ndarray:
    # NaN != NaN, so missing values become None to let two missing values count as equal.
    cols = [[None if isinstance(v, float) and v != v else v for v in table.columns[n].tolist()]
            for n in names]
    seen: set[tuple[Any, ...]] = set()
    keep: list[int] = []
    for i, key in enumerate(zip(*cols, strict=True)):
        if key not in seen:
            seen.add(key)
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def _filter_mask(values: np.ndarray, step: Filter, field: str) -> np.ndarray:
    numeric = values.dtype.kind == "f"
    many = step.op in ("in", "notIn")
    # The rule dataset.filter-value guarantees the value's shape and type.
    assert isinstance(step.value, list) if many else not isinstance(step.value, list | dict), field
    wanted = step.value if many else [step.value]
    if numeric:
        assert all(isinstance(v, int | float) and not isinstance(v, bool) for v in wanted), field
        if many:
            hit = np.isin(values, np.asarray(wanted, dtype=np.float64))
            return hit if step.op == "in" else ~hit
        # NaN compares false, except with ne: a missing value is not equal to anything.
        with np.errstate(invalid="ignore"):
            return np.asarray(_OPS[step.op](values, float(step.value)), dtype=bool)
    labels = [v if isinstance(v, str) else str(v) for v in wanted]
    if many:
        inside = set(labels)
        hit = np.fromiter((v in inside for v in values), dtype=bool, count=len(values))
        return hit if step.op == "in" else ~hit
    fn, ref = _OPS[step.op], labels[0]
    return np.fromiter((fn(v, ref) if v is not None else step.op == "ne" for v in values),
                       dtype=bool, count=len(values))
