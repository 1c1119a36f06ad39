"""Real run directories, written once per test session by ``lmspec run`` on the iris,
regression and tinylm examples (few steps), for the report, predict, evaluate and tracking tests."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))

from results_helpers import REPO, example_manifests, lmspec


def _iris(spec: dict[str, Any]) -> None:
    spec["stopping"] = {"epochs": 8}
    spec["validation"] = {"interval": 3, "metrics": ["loss", "accuracy"],
                          "earlyStopping": {"metric": "loss", "patience": 2, "minDelta": 0.05}}
    spec["checkpointing"] = {"interval": 5}
    spec["logging"] = {"interval": 2, "progressBar": False}


def _regression(spec: dict[str, Any]) -> None:
    spec["stopping"] = {"epochs": 6}
    spec["validation"]["interval"] = 20
    spec["checkpointing"] = {"interval": 30, "keepLast": 1}
    spec["logging"] = {"interval": 5, "progressBar": False}


@pytest.fixture(scope="session")
def iris_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(manifest directory, run directory) of an iris run killed at step 7 and resumed, so its
    metrics hold checkpoint, resume and early-stop events."""
    root = tmp_path_factory.mktemp("iris")
    run_dir = root / "run"
    manifests = example_manifests("iris", root / "manifests", run_dir, _iris)
    killed = lmspec("run", str(manifests), env={"LMSPEC_FAULT_AT": "0:7"})
    assert killed.returncode != 0, killed.stderr[-2000:]
    resumed = lmspec("run", str(manifests), "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    return manifests, run_dir


@pytest.fixture(scope="session")
def regression_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("regression")
    run_dir = root / "run"
    manifests = example_manifests("regression", root / "manifests", run_dir, _regression)
    result = lmspec("run", str(manifests))
    assert result.returncode == 0, result.stderr[-3000:]
    return manifests, run_dir


def _tinylm(spec: dict[str, Any]) -> None:
    spec["stopping"] = {"epochs": 1, "maxSteps": 8}
    spec["validation"] = {"interval": 4, "metrics": ["loss", "perplexity"]}
    spec["checkpointing"] = {"interval": 4, "keepLast": 1}
    spec["zero"] = {"stage": 0}
    spec["logging"] = {"interval": 2, "progressBar": False}


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The tinylm example shrunk: one licence text, a one-block decoder, 8 steps."""
    root = tmp_path_factory.mktemp("tinylm")
    run_dir = root / "run"
    manifests = example_manifests("tinylm", root / "manifests", run_dir, _tinylm)
    dataset = yaml.safe_load((manifests / "dataset.yaml").read_text())
    dataset["spec"]["sources"] = [{"path": str(REPO / "examples/data/licenses/CC0-1.0.txt"), "format": "text"}]
    dataset["spec"]["preprocessing"][1]["sequenceLength"] = 32
    (manifests / "dataset.yaml").write_text(yaml.safe_dump(dataset, sort_keys=False))
    model = yaml.safe_load((manifests / "model.yaml").read_text())
    model["spec"]["architecture"].update({"contextLength": 64, "width": 32, "depth": 1, "heads": 2})
    (manifests / "model.yaml").write_text(yaml.safe_dump(model, sort_keys=False))
    result = lmspec("run", str(manifests))
    assert result.returncode == 0, result.stderr[-3000:]
    return manifests, run_dir


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread() -> None:
    """The models these tests run in-process are tiny: on a loaded 2-core machine a torch thread
    pool makes each forward pass ~50× slower than one thread does."""
    import torch

    torch.set_num_threads(1)
