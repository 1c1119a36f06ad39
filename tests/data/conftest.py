"""Fixtures for the data pipeline tests: build Dataset manifests and write real data files."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lmspec.v1alpha1 import Dataset

REPO = Path(__file__).resolve().parents[2]


def _dataset(**spec: Any) -> Dataset:
    return Dataset.model_validate(
        {"apiVersion": "lmspec.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "t"},
         "spec": spec}, by_alias=True)


_SIGNATURES = {
    "classification": ([-1, -1], "float32", [-1, 3]),
    "regression": ([-1, -1], "float32", [-1, 1]),
    "causal-lm": ([-1, -1], "int64", [-1, -1, 256]),
}
_LOSS = {"classification": "crossEntropy", "regression": "mse", "causal-lm": "causalLm"}


def _rules(ds: Dataset, task: str) -> set[str]:
    """The validator's rules that fire on ``ds`` alone and when a TrainingJob pairs it with a
    Model of ``task``: what the validator refuses, so data preparation never sees it."""
    from lmspec.standard import Model, TrainingJob
    from lmspec.validator.rules import Index, run_checks

    inputs, dtype, outputs = _SIGNATURES[task]
    arch = {"type": "transformer", "vocabSize": 256, "contextLength": 64, "width": 32, "depth": 1,
            "heads": 2} if task == "causal-lm" else {"type": "mlp"}
    model = Model.model_validate({
        "apiVersion": "lmspec.io/v1alpha1", "kind": "Model", "metadata": {"name": "m"},
        "spec": {"task": task, "architecture": arch, "signature": {
            "inputs": [{"name": "x", "dtype": dtype, "shape": inputs}],
            "outputs": [{"name": "y", "dtype": "float32", "shape": outputs}]}}}, by_alias=True)
    job = TrainingJob.model_validate({
        "apiVersion": "lmspec.io/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "j"},
        "spec": {"model": "m", "dataset": ds.metadata.name, "loss": {"type": _LOSS[task]}}}, by_alias=True)
    index = Index({"Model": {"m": model}, "Dataset": {ds.metadata.name: ds}, "TrainingJob": {"j": job}})
    return {rule for obj in (ds, job) for rule, *_ in run_checks(obj, index)}


@pytest.fixture
def validator_rules() -> Callable[[Dataset, str], set[str]]:
    """``validator_rules(dataset, task)``: rule ids the validator reports for the pair."""
    return _rules


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)
    return path


@pytest.fixture
def make_dataset() -> Callable[..., Dataset]:
    """``make_dataset(sources=[...], features=[...])``: a Dataset from camelCase spec keys."""
    return _dataset


@pytest.fixture
def write_csv() -> Callable[..., Path]:
    """``write_csv(path, header, rows)``."""
    return _write_csv


@pytest.fixture
def example_data() -> Path:
    return REPO / "examples" / "data"


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    """``toy.csv``: 20 rows; x = row, y = (row % 5) * 2, color alternates, label lo/hi by x."""
    rows = [[float(i), float(i % 5) * 2.0, "red" if i % 2 else "blue", "hi" if i >= 10 else "lo"]
            for i in range(20)]
    _write_csv(tmp_path / "toy.csv", ["x", "y", "color", "label"], rows)
    return tmp_path


@pytest.fixture
def toy_spec() -> Callable[..., dict[str, Any]]:
    """The spec of a Dataset over ``toy.csv``; keyword arguments replace top-level keys."""

    def make(**over: Any) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "sources": [{"path": "toy.csv"}],
            "features": [{"name": "x"}, {"name": "y"}],
            "target": {"name": "label", "dtype": "string"},
            "splits": {"ratios": {"train": 0.6, "validation": 0.2, "test": 0.2}, "seed": 3},
        }
        spec.update(over)
        return spec

    return make
