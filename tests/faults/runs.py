"""A finished iris run (early-stopped, with several checkpoints) made once and copied for each
fault: manifests and data live beside the run, referenced relatively, so a copy is independent."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "train"))

from train_helpers import IRIS_DATASET, IRIS_JOB, IRIS_MODEL, merge  # noqa: E402

__all__ = ["IRIS_DATASET", "IRIS_JOB", "IRIS_MODEL", "merge"]


def write_project(directory: Path, **job_spec: Any) -> Path:
    """Manifests + a copy of iris.csv in ``directory``; the run directory is ``directory/run``."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "examples" / "data" / "iris.csv", directory / "iris.csv")
    dataset = merge(IRIS_DATASET, {"spec": {"sources": [{"path": "iris.csv"}]}})
    job = merge(IRIS_JOB, {"spec": {"output": {"dir": "run"}, **job_spec}})
    path = directory / "manifests.yaml"
    path.write_text(yaml.safe_dump_all([dataset, IRIS_MODEL, job], sort_keys=False))
    return path


def run(directory: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    """``lmspec run manifests.yaml ARGS`` in ``directory``."""
    return subprocess.run([sys.executable, "-m", "lmspec", "run", "manifests.yaml", *args],
                          capture_output=True, text=True, timeout=timeout, cwd=directory,
                          env={**os.environ, "DS_ACCELERATOR": "cpu"})


EARLY_STOP = {"checkpointing": {"interval": 5},
              "validation": {"metrics": ["loss"],
                             "earlyStopping": {"metric": "loss", "patience": 1, "minDelta": 10}}}
