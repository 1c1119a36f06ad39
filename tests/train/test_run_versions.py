"""A run from v1alpha1 manifests and a run from their v1beta1 conversion are the same run: the
runtime reads both as the hub's objects."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from train_helpers import IRIS_DATASET, IRIS_JOB, IRIS_MODEL, lmspec_run, merge, write_manifests

from lmspec.convert import convert_files

SOURCE_KEYS = {"manifests", "manifestDigests", "sources"}
"""What a lock file records of the manifest files themselves (their names and digests): the one
part allowed to differ between the two runs."""


def _lock(run_dir: Path) -> dict[str, Any]:
    lock = json.loads((run_dir / "lock.json").read_text(encoding="utf-8"))
    return {k: v for k, v in lock.items() if k not in SOURCE_KEYS}


@pytest.mark.integration
def test_a_run_from_v1alpha1_and_from_its_v1beta1_conversion_writes_the_same_lock(tmp_path: Path) -> None:
    # Fields that v1beta1 writes differently: splits.by, explicit precision flags.
    dataset = merge(IRIS_DATASET, {"spec": {"splits": {"by": "ratio"}}})
    job = merge(IRIS_JOB, {"spec": {"stopping": {"epochs": 1}, "output": {"dir": "run"},
                                    "precision": {"fp16": {"enabled": False}, "bf16": {"enabled": False}}}})
    alpha = write_manifests(tmp_path / "alpha", dataset, IRIS_MODEL, job)
    convert_files([str(alpha)], "v1beta1", out_dir=tmp_path / "beta")
    beta = tmp_path / "beta" / alpha.name
    beta_text = beta.read_text(encoding="utf-8")
    assert "apiVersion: lmspec.io/v1beta1" in beta_text and "type: ratio" in beta_text

    for manifests in (alpha, beta):
        result = lmspec_run(str(manifests), timeout=300)
        assert result.returncode == 0, result.stdout + result.stderr
    runs = [tmp_path / "alpha" / "run", tmp_path / "beta" / "run"]
    assert _lock(runs[0]) == _lock(runs[1])
    # What the run read, as the hub's objects: the same but for where it was written.
    rendered = [list(yaml.safe_load_all((r / "rendered.yaml").read_text(encoding="utf-8"))) for r in runs]
    for docs, run in zip(rendered, runs, strict=True):
        for doc in docs:
            if doc["kind"] == "TrainingJob":
                assert doc["spec"]["output"]["dir"] == str(run)
                doc["spec"]["output"]["dir"] = "run"
    assert rendered[0] == rendered[1]
    weights = [(r / "export" / "model.safetensors").read_bytes() for r in runs]
    assert weights[0] == weights[1]
