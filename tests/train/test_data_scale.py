"""Training from token shards: bounded evaluation, row order and grouping, threads, and a run
whose evaluation, export check and shared data cache are what the TrainingJob says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from train_helpers import REPO, lmspec_run, merge, write_manifests

from lmspec.data.split import permutation, spaced_rows
from lmspec.train.check import read_check_sample
from lmspec.train.order import group_by_length
from lmspec.train.world import threads_per_rank


def test_spaced_rows_are_the_same_whatever_the_world_and_cover_the_split() -> None:
    assert spaced_rows(10, 4).tolist() == [0, 2, 5, 7]
    assert spaced_rows(3, 8).tolist() == [0, 1, 2] and spaced_rows(5, "all").tolist() == list(range(5))
    rows = spaced_rows(1_000_003, 256)
    assert len(set(rows.tolist())) == 256 and rows[-1] > 990_000


def test_grouping_by_length_keeps_every_row_once_and_groups_similar_lengths() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 1000, size=5000)
    order = permutation(5000, 1)
    grouped = group_by_length(order, lengths, group=8, seed=3)
    assert sorted(grouped.tolist()) == list(range(5000))
    spread = np.ptp(lengths[grouped[:4992]].reshape(-1, 8), axis=1).mean()
    assert spread < 0.1 * np.ptp(lengths[order[:4992]].reshape(-1, 8), axis=1).mean()
    # Seeded: the same order every time, another with another seed.
    assert np.array_equal(grouped, group_by_length(order, lengths, 8, 3))
    assert not np.array_equal(grouped, group_by_length(order, lengths, 8, 4))


def test_threads_default_to_the_cores_shared_among_local_ranks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    cores = len(os.sched_getaffinity(0))
    assert threads_per_rank() == (max(1, cores // 2), f"{cores} cores / 2 local ranks; OMP_NUM_THREADS overrides")
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads_per_rank() == (3, "OMP_NUM_THREADS")


def _lm_project(directory: Path, **job: Any) -> Path:
    model = {"apiVersion": "lmspec.io/v1alpha1", "kind": "Model", "metadata": {"name": "lm"},
             "spec": {"task": "causal-lm",
                      "architecture": {"type": "transformer", "vocabSize": 256, "contextLength": 32,
                                       "width": 32, "depth": 1, "heads": 2},
                      "signature": {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]}],
                                    "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1, 256]}]}}}
    dataset = {"apiVersion": "lmspec.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "licenses"},
               "spec": {"sources": [{"path": str(REPO / "examples" / "data" / "licenses" / "*.txt"), "format": "text"}],
                        "features": [{"name": "text", "dtype": "string"}],
                        "preprocessing": [{"type": "tokenize", "tokenizer": {"type": "byte"}},
                                          {"type": "pack", "sequenceLength": 32}],
                        "splits": {"ratios": {"train": 0.8, "validation": 0.1, "test": 0.1}, "seed": 0}}}
    spec = merge({"model": "lm", "dataset": "licenses", "loss": {"type": "causalLm"},
                  "stopping": {"epochs": 1, "maxSteps": 6}, "batch": {"microBatchSize": 4},
                  "validation": {"interval": 3, "maxSamples": 8, "metrics": ["loss"]},
                  "evaluation": {"maxSamples": 40, "metrics": ["loss", "accuracy"]},
                  "logging": {"interval": 3, "progressBar": False}, "output": {"dir": "run"}}, job)
    train = {"apiVersion": "lmspec.io/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "lm-train"},
             "spec": spec}
    return write_manifests(directory, model, dataset, train)


@pytest.mark.integration
def test_bounded_evaluation_export_first_and_a_shared_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    env = {"LMSPEC_CACHE_DIR": str(cache)}
    path = _lm_project(tmp_path / "a")
    result = lmspec_run(str(path), env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "validation at step 3: loss" in out and "(8 of " in out and "test at step 6" in out and "(40 of " in out
    assert "torch thread" in out
    run = tmp_path / "a" / "run"
    lock = json.loads((run / "lock.json").read_text())
    # Every path in lock.json is relative to the run directory, "/"-separated.
    assert not Path(lock["dataCache"]).is_absolute()
    assert all(not Path(k).is_absolute() for k in lock["dataFiles"])
    entry = (run / lock["dataCache"]).resolve()
    assert entry.parent == cache.resolve() and (entry / "meta.json").is_file()
    summary = json.loads((run / "summary.json").read_text())
    info = json.loads((run / "export" / "export.json").read_text())
    assert info["metrics"] == summary["test"] and set(summary["test"]) == {"loss", "accuracy"}
    # The export check keeps a few positions of a few rows, not whole-vocabulary rows.
    sample = read_check_sample(run)
    assert sample.outputs.shape == (4, 4, 256) and sample.argmax is not None and sample.argmax.shape == (4, 32)
    # lmspec evaluate reproduces the run's test metrics: the same 40 rows.
    ev = subprocess.run([sys.executable, "-m", "lmspec", "evaluate", str(path), "--split", "test",
                         "--json", str(tmp_path / "ev.json")], capture_output=True, text=True, timeout=600,
                        env={**os.environ, **env})
    assert ev.returncode == 0, ev.stderr[-2000:]
    got = json.loads((tmp_path / "ev.json").read_text())
    assert got["rows"] == 40
    for k, v in summary["test"].items():
        assert got["metrics"][k] == pytest.approx(v, rel=1e-4, abs=1e-5)
    # Another job on the same Dataset reads the same entry: nothing is prepared again.
    other = lmspec_run(str(_lm_project(tmp_path / "b", optimizer={"lr": 1e-4})), env=env)
    assert other.returncode == 0, other.stderr[-3000:]
    assert (tmp_path / "b" / "run" / json.loads((tmp_path / "b" / "run" / "lock.json").read_text())["dataCache"]) \
        .resolve() == entry
    assert [p for p in cache.iterdir() if p.is_dir()] == [entry]
