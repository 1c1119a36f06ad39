"""Helpers for training tests: small manifests written to a temporary directory, and a helper
that runs ``lmspec run`` as a real subprocess (DeepSpeed ranks included)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "examples" / "data"

IRIS_DATASET: dict[str, Any] = {
    "apiVersion": "lmspec.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "iris"},
    "spec": {
        "sources": [{"path": str(DATA / "iris.csv")}],
        "features": [{"name": n, "dtype": "float32"}
                     for n in ("sepal_length", "sepal_width", "petal_length", "petal_width")],
        "target": {"name": "species", "dtype": "string",
                   "classes": ["setosa", "versicolor", "virginica"]},
        "preprocessing": [{"type": "standardize"}, {"type": "labelEncode", "column": "species"}],
        "splits": {"ratios": {"train": 0.7, "validation": 0.15, "test": 0.15}, "seed": 7},
    },
}
IRIS_MODEL: dict[str, Any] = {
    "apiVersion": "lmspec.io/v1alpha1", "kind": "Model", "metadata": {"name": "mlp"},
    "spec": {
        "task": "classification", "numClasses": 3,
        "architecture": {"type": "mlp", "hiddenSizes": [16]},
        "signature": {"inputs": [{"name": "features", "dtype": "float32", "shape": [-1, 4]}],
                      "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 3]}]},
    },
}
IRIS_JOB: dict[str, Any] = {
    "apiVersion": "lmspec.io/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "job"},
    "spec": {
        "model": "mlp", "dataset": "iris", "loss": {"type": "crossEntropy"},
        "optimizer": {"type": "adamw", "lr": 0.01},
        "schedule": {"type": "cosine", "warmupSteps": 3},
        "stopping": {"epochs": 4},
        "batch": {"microBatchSize": 8, "gradientAccumulationSteps": 2},
        "validation": {"metrics": ["loss", "accuracy"]},
        "evaluation": {"metrics": ["loss", "accuracy"]},
        "logging": {"interval": 1, "progressBar": False},
        "seed": 3,
    },
}


def merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in patch.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def write_manifests(directory: Path, *docs: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "manifests.yaml").write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
    return directory / "manifests.yaml"


def iris_job(directory: Path, **job_spec: Any) -> tuple[Path, Path]:
    """Write an iris job whose spec is patched by ``job_spec``; returns (manifest file, run dir)."""
    run_dir = directory / "run"
    job = merge(IRIS_JOB, {"spec": {**job_spec, "output": {"dir": str(run_dir)}}})
    return write_manifests(directory, IRIS_DATASET, IRIS_MODEL, job), run_dir


def lmspec_run(*args: str, env: dict[str, str] | None = None, timeout: float = 600,
               cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``lmspec run ARGS`` in a subprocess; output captured as text."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "lmspec", "run", *args], capture_output=True,
                          text=True, timeout=timeout, env=full_env, cwd=cwd)
