"""Fit the tabular steps on the training split and turn any split into model-ready arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..standard import DatasetSpec, GaussianNoise, LabelEncode, MinMax, Standardize
from ._read import ColumnSpec, Table
from .errors import DataError, value_phrase
from .split import Split
from .transform import Transform, labels_of


def _sorted_labels(values: np.ndarray) -> list[str]:
    labels = set(labels_of(values).tolist())
    return sorted(labels, key=float) if values.dtype.kind == "f" else sorted(labels)


def fit(spec: DatasetSpec, task: str, train: Table) -> Transform:
    """Learn every statistic from ``train``; nothing from the other splits reaches this function."""
    features = spec.features
    names = [f.name for f in features]
    # The rules trainingjob.dataset-columns and dataset.unknown-column guarantee what is asserted.
    assert names, "a tabular dataset needs at least one feature"
    index = {n: j for j, n in enumerate(names)}
    target = spec.target
    assert target is not None, f"a {task} model needs a target column"

    label_steps = {s.column: (i, s) for i, s in enumerate(spec.preprocessing)
                   if isinstance(s, LabelEncode)}
    categories: dict[str, dict[str, Any]] = {}
    for name, (_, s) in label_steps.items():
        if name in index:
            categories[name] = {"vocab": _sorted_labels(train.columns[name]), "unknown": s.unknown}
        else:
            assert name == target.name, f"column {name!r} is neither a feature nor the target"
    for f in features:
        assert f.dtype != "string" or f.name in categories, f"feature {f.name!r} is not label-encoded"

    transform = Transform(task=task, feature_names=names, feature_dtypes=[f.dtype for f in features],
                          categories=categories, target_name=target.name)
    x = raw_features(transform, train)
    numeric = [f.name for f in features if f.dtype != "string" and f.name not in categories]

    y: np.ndarray | None = None
    if task == "classification":
        transform.classes = list(target.classes) if target.classes is not None \
            else _sorted_labels(train.columns[target.name])
    else:
        assert target.dtype not in ("string", "bool"), "a regression target must be numeric"
        y = train.columns[target.name].astype(np.float64)

    for i, step in enumerate(spec.preprocessing):
        field = f"spec.preprocessing[{i}]"
        if isinstance(step, Standardize | MinMax):
            cols: list[int] = []
            for k, name in enumerate(step.columns or numeric):
                if name in index:
                    cols.append(index[name])
                elif name == target.name and y is not None:
                    op = _fit_affine(step, y[:, None])
                    y = (y - op["shift"][0]) * op["scale"][0] + op["offset"][0]
                    transform.target_ops.append({k2: float(v[0]) for k2, v in op.items()
                                                 if k2 in ("shift", "scale", "offset")})
                else:
                    raise AssertionError(f"{field}.columns[{k}]: {name!r} is not a feature or a regression target")
            if not cols:
                continue
            op = _fit_affine(step, x[:, cols])
            op["columns"] = cols
            x[:, cols] = (x[:, cols] - np.asarray(op["shift"])) * np.asarray(op["scale"]) \
                + np.asarray(op["offset"])
            transform.ops.append(op)
            # Noise declared earlier is in earlier units: carry it through this step's scale.
            for n in transform.noise:
                for pos, c in enumerate(n["columns"]):
                    if c in cols:
                        n["std"][pos] *= abs(op["scale"][cols.index(c)])
        elif isinstance(step, GaussianNoise):
            cols = []
            for name in step.columns or numeric:
                assert name in index, f"{field}: gaussianNoise on {name!r}, which is not a feature"
                cols.append(index[name])
            if cols:
                transform.noise.append({"columns": cols, "std": [float(step.std)] * len(cols)})
    return transform


def _fit_affine(step: Standardize | MinMax, v: np.ndarray) -> dict[str, Any]:
    """``y = (x - shift) * scale + offset`` per column; a constant column keeps scale 1."""
    if isinstance(step, Standardize):
        shift = v.mean(axis=0)
        std = v.std(axis=0)
        scale = np.where(std > 0, 1.0 / np.where(std > 0, std, 1.0), 1.0)
        offset = np.zeros_like(shift)
    else:
        lo, hi = float(step.range[0]), float(step.range[1])
        shift = v.min(axis=0)
        span = v.max(axis=0) - shift
        scale = np.where(span > 0, (hi - lo) / np.where(span > 0, span, 1.0), 1.0)
        offset = np.full_like(shift, lo)
    return {"step": step.type, "shift": shift.tolist(), "scale": scale.tolist(),
            "offset": offset.tolist()}


def raw_features(t: Transform, table: Table, spec: DatasetSpec | None = None) -> np.ndarray:
    """Features as float64 [N, F] before the affine steps; categories become their ids."""
    x = np.empty((len(table), len(t.feature_names)), dtype=np.float64)
    for j, name in enumerate(t.feature_names):
        values = table.columns[name]
        if name not in t.categories:
            x[:, j] = values
            continue
        cat = t.categories[name]
        ids = {label: k for k, label in enumerate(cat["vocab"])}
        labels = labels_of(values).tolist()
        col = np.fromiter((ids.get(v, -1) for v in labels), dtype=np.float64, count=len(labels))
        unknown = col < 0
        if unknown.any() and cat["unknown"] == "error":
            i = int(np.argmax(unknown))
            raise DataError(f"{value_phrase(labels[i], 'category')} does not occur in the training split",
                            column=name, field=_label_field(spec, name), **table.where(i),
                            hint="set unknown: ignore on the labelEncode step to map it to -1")
        x[:, j] = col
    return x


def _label_field(spec: DatasetSpec | None, name: str) -> str | None:
    steps = spec.preprocessing if spec is not None else []
    return next((f"spec.preprocessing[{i}]" for i, s in enumerate(steps)
                 if isinstance(s, LabelEncode) and s.column == name), None)


def encode(t: Transform, spec: DatasetSpec, table: Table, fields: dict[str, ColumnSpec]) -> Split:
    """One split's rows → a :class:`Split`, with the transform fitted on the training split."""
    x = raw_features(t, table, spec)
    target = t.target_name or ""
    if t.task == "classification":
        classes = t.classes or []
        ids = {label: k for k, label in enumerate(classes)}
        labels = labels_of(table.columns[target]).tolist()
        y = np.fromiter((ids.get(v, -1) for v in labels), dtype=np.int64, count=len(labels))
        unknown = y < 0
        if unknown.any():
            if _target_unknown(spec) == "ignore":
                keep = ~unknown  # no model output stands for an unknown class: the row is dropped
                x, y = x[keep], y[keep]
            else:
                i = int(np.argmax(unknown))
                declared = spec.target is not None and spec.target.classes is not None
                raise DataError(
                    f"{value_phrase(labels[i], 'label')} is not one of the classes ({', '.join(classes)})",
                    column=target, **table.where(i),
                    field="spec.target.classes" if declared else fields[target].field,
                    hint="add it to target.classes" if declared else
                    "every class must occur in the training split")
        return Split(t._apply(x), y)
    return Split(t._apply(x), t.encode_targets(table.columns[target]))


def _target_unknown(spec: DatasetSpec) -> str:
    for s in spec.preprocessing:
        if isinstance(s, LabelEncode) and spec.target is not None and s.column == spec.target.name:
            return s.unknown
    return "error"
