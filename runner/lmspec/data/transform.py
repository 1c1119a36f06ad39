"""The fitted state of a Dataset's preprocessing: what training learned and serving applies.

>>> t = Transform(task="regression", feature_names=["x"], feature_dtypes=["float32"],
...               ops=[{"step": "standardize", "columns": [0], "shift": [10.0], "scale": [0.5],
...                     "offset": [0.0]}])
>>> t.transform_features(np.array([[12.0]])).tolist()
[[1.0]]
>>> Transform.from_state_dict(t.state_dict()).encode_records([{"x": 8}]).tolist()
[[-1.0]]

Every statistic (means, ranges, category vocabularies, class lists) is fitted on the training split
only. Label-encoded columns are encoded first; the numeric steps (standardize, minMax) then run in
manifest order, each fitted on the training values as the steps before it left them.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import value_phrase
from .tokenizer import Tokenizer

STATE_VERSION = 1


def labels_of(values: np.ndarray) -> np.ndarray:
    """Category labels as strings: ``"2"`` for the number 2.0, the string itself for strings."""
    if values.dtype.kind == "f":
        return np.array([_number_label(v) for v in values.tolist()], dtype=object)
    return values


def _number_label(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else repr(float(v))


class Transform:
    """Fitted preprocessing; see the module docstring. Build it with :func:`lmspec.data.prepare`."""

    def __init__(
        self,
        *,
        task: str,
        feature_names: list[str],
        feature_dtypes: list[str],
        categories: dict[str, dict[str, Any]] | None = None,
        ops: list[dict[str, Any]] | None = None,
        noise: list[dict[str, Any]] | None = None,
        classes: list[str] | None = None,
        target_name: str | None = None,
        target_ops: list[dict[str, float]] | None = None,
        tokenizer: Tokenizer | None = None,
    ) -> None:
        self.task = task
        self.feature_names = list(feature_names)
        self.feature_dtypes = list(feature_dtypes)
        self.categories = dict(categories or {})
        """Label-encoded feature → ``{"vocab": [labels in id order], "unknown": "error"|"ignore"}``."""
        self.ops = list(ops or [])
        """Affine steps in order: ``y = (x - shift) * scale + offset`` on feature ``columns``."""
        self.noise = list(noise or [])
        """Augmentation: per feature ``columns``, ``std`` in model-input units."""
        self.classes = list(classes) if classes is not None else None
        self.target_name = target_name
        self.target_ops = list(target_ops or [])
        """Affine steps on a regression target (``shift``, ``scale``, ``offset``); undone on decode."""
        self.tokenizer = tokenizer
        self._index = {n: i for i, n in enumerate(self.feature_names)}

    # --- serving ----------------------------------------------------------------------------

    def transform_features(self, x: np.ndarray) -> np.ndarray:
        """Raw features [N, F] in feature order → model inputs float32 [N, F].

        A label-encoded feature is given as its category id (its index in ``categories[name]
        ["vocab"]``); use :meth:`encode_records` to pass category names instead.
        """
        if self.tokenizer is not None:
            raise ValueError("a language-model dataset has no numeric features; use .tokenizer")
        x = np.asarray(x)
        if x.ndim == 1 and len(self.feature_names) > 0 and x.shape[0] == len(self.feature_names):
            x = x[None, :]
        if x.ndim != 2 or x.shape[1] != len(self.feature_names):
            raise ValueError(f"expected features of shape [N, {len(self.feature_names)}] "
                             f"({', '.join(self.feature_names)}), got {list(x.shape)}")
        try:
            x = x.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError("features must be numbers") from None
        bad = ~np.isfinite(x)
        if bad.any():
            r, c = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(f"row {r}, feature {self.feature_names[c]!r}: {value_phrase(float(x[r, c]))} "
                             "is not a finite number")
        for name, cat in self.categories.items():
            j = self._index[name]
            ids = x[:, j]
            lo = -1 if cat["unknown"] == "ignore" else 0
            ok = (np.mod(ids, 1) == 0) & (ids >= lo) & (ids < len(cat["vocab"]))
            if not ok.all():
                r = int(np.argmin(ok))
                raise ValueError(f"row {r}, feature {name!r}: {ids[r]:g} is not a category id "
                                 f"(0..{len(cat['vocab']) - 1})")
        return self._apply(x)

    def encode_records(self, rows: list[dict[str, Any]]) -> np.ndarray:
        """Records by column name → model inputs float32 [N, F]; categories given by name.

        >>> # Transform.encode_records([{"sepal_length": 5.1, ..., "color": "red"}])
        """
        x = np.empty((len(rows), len(self.feature_names)), dtype=np.float64)
        for r, rec in enumerate(rows):
            if not isinstance(rec, dict):
                raise ValueError(f"record {r}: expected an object of feature values")
            missing = [n for n in self.feature_names if n not in rec]
            if missing:
                raise ValueError(f"record {r}: missing feature(s) {', '.join(missing)}")
            for j, name in enumerate(self.feature_names):
                v = rec[name]
                if name in self.categories:
                    x[r, j] = self._category_id(name, v, f"record {r}")
                    continue
                if isinstance(v, bool) or not isinstance(v, int | float | str):
                    raise ValueError(f"record {r}, feature {name!r}: {value_phrase(v)} is not a number")
                try:
                    x[r, j] = float(v)
                except ValueError:
                    raise ValueError(f"record {r}, feature {name!r}: {value_phrase(v)} is not a "
                                     "number") from None
                if not math.isfinite(x[r, j]):
                    raise ValueError(f"record {r}, feature {name!r}: {value_phrase(v)} is not a "
                                     "finite number")
        return self._apply(x)

    def decode_targets(self, y: np.ndarray) -> list[Any]:
        """Class ids → labels (classification); model outputs → target units (regression)."""
        y = np.asarray(y)
        if self.task == "classification" and self.classes is not None:
            return [self.classes[int(i)] for i in y.reshape(-1)]
        if self.task == "regression":
            out = y.astype(np.float64)
            for op in reversed(self.target_ops):
                out = (out - op["offset"]) / op["scale"] + op["shift"]
            return list(out.tolist())
        return list(y.tolist())

    def encode_targets(self, y: np.ndarray) -> np.ndarray:
        """Regression targets in raw units → the units the model is trained on (float32)."""
        out = np.asarray(y, dtype=np.float64)
        for op in self.target_ops:
            out = (out - op["shift"]) * op["scale"] + op["offset"]
        return out.astype(np.float32)

    # --- training ---------------------------------------------------------------------------

    def augment(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Add the gaussianNoise steps' noise to model inputs; returns ``x`` itself if there are none."""
        if not self.noise:
            return x
        out = np.array(x, dtype=np.float32, copy=True)
        for n in self.noise:
            cols = n["columns"]
            std = np.asarray(n["std"], dtype=np.float64)
            out[:, cols] += rng.normal(0.0, 1.0, size=(out.shape[0], len(cols))) * std
        return out

    # --- state ------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """JSON-serialisable; floats round-trip exactly through JSON."""
        return {
            "version": STATE_VERSION,
            "task": self.task,
            "featureNames": self.feature_names,
            "featureDtypes": self.feature_dtypes,
            "categories": self.categories,
            "ops": self.ops,
            "noise": self.noise,
            "classes": self.classes,
            "targetName": self.target_name,
            "targetOps": self.target_ops,
            "tokenizer": self.tokenizer.state_dict() if self.tokenizer is not None else None,
        }

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> Transform:
        if d.get("version") != STATE_VERSION:
            raise ValueError(f"transform state version {d.get('version')!r} is not supported "
                             f"(this lmspec reads version {STATE_VERSION})")
        tok = d.get("tokenizer")
        return cls(
            task=d["task"], feature_names=d["featureNames"], feature_dtypes=d["featureDtypes"],
            categories=d["categories"], ops=d["ops"], noise=d["noise"], classes=d["classes"],
            target_name=d["targetName"], target_ops=d["targetOps"],
            tokenizer=Tokenizer.from_state_dict(tok) if tok is not None else None,
        )

    # --- internals --------------------------------------------------------------------------

    def _category_id(self, name: str, value: Any, where: str) -> float:
        cat = self.categories[name]
        label = _number_label(value) if isinstance(value, int | float) and not isinstance(value, bool) \
            else str(value)
        try:
            return float(cat["vocab"].index(label))
        except ValueError:
            if cat["unknown"] == "ignore":
                return -1.0
            raise ValueError(f"{where}, feature {name!r}: {value_phrase(label, 'category')} is unknown "
                             f"(known: {', '.join(cat['vocab'][:20])})") from None

    def _apply(self, x: np.ndarray) -> np.ndarray:
        """Run the affine steps on float64 features; the one code path training and serving share."""
        x = np.array(x, dtype=np.float64, copy=True)
        for op in self.ops:
            cols = op["columns"]
            x[:, cols] = (x[:, cols] - np.asarray(op["shift"])) * np.asarray(op["scale"]) \
                + np.asarray(op["offset"])
        return x.astype(np.float32)

    def __repr__(self) -> str:
        return (f"Transform(task={self.task!r}, features={self.feature_names}, "
                f"steps={[op['step'] for op in self.ops]})")
