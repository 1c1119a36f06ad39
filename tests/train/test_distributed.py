"""Real DeepSpeed runs with two CPU ranks: every ZeRO stage, optimizer offload, bf16, resume after
a kill, and a failed rank. Each launch checks several things, since starting ranks is slow."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from train_helpers import iris_job, lmspec_run, merge, write_manifests

from lmspec.model.export import load_exported
from lmspec.train.check import read_check_sample
from lmspec.train.faults import kill_after

pytestmark = pytest.mark.integration

TWO = ("--nproc", "2")


def _train_losses(run_dir: Path) -> list[float]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r["loss"] for r in map(json.loads, lines) if r["split"] == "train"]


def _check_run(run_dir: Path, *, atol: float) -> dict[str, Any]:
    """Loss fell, and the export reproduces the trained engine's predictions."""
    losses = _train_losses(run_dir)
    assert np.mean(losses[-3:]) < np.mean(losses[:3]), losses
    exported = load_exported(run_dir / "export")
    sample = read_check_sample(run_dir)
    with torch.no_grad():
        got = exported.model(torch.from_numpy(sample.inputs)).numpy()
    np.testing.assert_allclose(sample.select(got), sample.outputs, rtol=0, atol=atol)
    lock = json.loads((run_dir / "lock.json").read_text())
    assert lock["worldSize"] == 2 and lock["dataFingerprint"]
    return lock


def _quiet_launch(out: str) -> None:
    """lmspec's own lines, and none of the launcher's log that says nothing on one machine."""
    assert "per rank (" in out and "lmspec: trained " in out, out[-3000:]
    for noise in ("Unable to find hostfile", "CUDA_VISIBLE_DEVICES", "WORLD INFO DICT", "spawned with command",
                  "exits successfully"):
        assert noise not in out, noise


@pytest.mark.parametrize(("name", "spec", "atol"), [
    ("stage0-bf16", {"zero": {"stage": 0}, "precision": {"bf16": {"enabled": True}}}, 0.05),
    ("stage1-offload", {"zero": {"stage": 1, "offloadOptimizer": {"device": "cpu"}}}, 1e-6),
])
def test_iris_two_ranks(tmp_path: Path, name: str, spec: dict[str, Any], atol: float) -> None:
    manifests, run_dir = iris_job(tmp_path, **spec)
    shm_before = set(Path("/dev/shm").glob("deepspeed_*")) if Path("/dev/shm").is_dir() else set()
    result = lmspec_run(str(manifests), *TWO)
    assert result.returncode == 0, result.stderr[-3000:]
    # DeepSpeed's shared-memory all-reduce would leave tens of MB per rank in /dev/shm after every
    # run (RAM on most machines) and JIT-compile a kernel first: training never uses it.
    if Path("/dev/shm").is_dir():
        assert set(Path("/dev/shm").glob("deepspeed_*")) == shm_before
    assert "deepspeed_shm_comm" not in result.stdout + result.stderr
    _quiet_launch(result.stdout + result.stderr)
    lock = _check_run(run_dir, atol=atol)
    assert lock["deepspeedConfig"]["zero_optimization"]["stage"] == spec["zero"]["stage"]
    assert (run_dir / "rendered.yaml").is_file()


def test_transformer_stage3(tmp_path: Path) -> None:
    """A GPT-style model built inside zero.Init, parameters partitioned over both ranks."""
    import yaml
    from train_helpers import REPO

    docs = [yaml.safe_load((REPO / "examples" / "tinylm" / f).read_text())
            for f in ("dataset.yaml", "model.yaml", "train.yaml")]
    docs[0]["spec"]["sources"][0]["path"] = str(REPO / "examples" / "data" / "licenses" / "*.txt")
    docs[1] = merge(docs[1], {"spec": {"architecture": {"width": 32, "depth": 1, "heads": 2}}})
    run_dir = tmp_path / "run"
    docs[2] = merge(docs[2], {"spec": {
        "zero": {"stage": 3}, "stopping": {"epochs": 1, "maxSteps": 8},
        "batch": {"microBatchSize": 8}, "validation": {"interval": 8},
        "checkpointing": {"interval": 4}, "logging": {"interval": 1, "progressBar": False},
        "evaluation": {"metrics": ["loss", "perplexity"]}, "output": {"dir": str(run_dir)}}})
    result = lmspec_run(str(write_manifests(tmp_path, *docs)), *TWO)
    assert result.returncode == 0, result.stderr[-3000:]
    _check_run(run_dir, atol=1e-4)
    # Stage 3 checkpoints hold one parameter partition per rank.
    assert len(list((run_dir / "checkpoints" / "step8").glob("zero_pp_rank_*_model_states.pt"))) == 2


def test_kill_and_resume_gives_the_same_weights(tmp_path: Path) -> None:
    spec = {"zero": {"stage": 2}, "checkpointing": {"interval": 2, "keepLast": 2}}
    whole, whole_dir = iris_job(tmp_path / "whole", **spec)
    broken, broken_dir = iris_job(tmp_path / "broken", **spec)
    assert lmspec_run(str(whole), *TWO).returncode == 0

    # 12 steps; the first checkpoint is at step 2. Kill rank 1 at a random later step.
    step = random.randint(3, 11)
    killed = lmspec_run(str(broken), *TWO, env=kill_after(rank=1, step=step))
    assert killed.returncode == 1
    assert "training failed" in killed.stderr
    assert not (broken_dir / "export").exists()

    # The directory, as a user resumes: the run directory lmspec wrote inside it goes unsaid.
    resumed = lmspec_run(str(broken.parent), *TWO, "--resume")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"(step {step - step % 2})" in resumed.stdout
    assert "skipped" not in resumed.stdout + resumed.stderr
    _quiet_launch(resumed.stdout + resumed.stderr)
    # The records of the steps after the checkpoint, written before the kill, are not repeated.
    def records(run_dir: Path) -> list[tuple[str, int]]:
        lines = (run_dir / "metrics.jsonl").read_text().splitlines()
        # Events (checkpoint, resume) differ between the two runs by design; records must not.
        return [(r["split"], r["step"]) for r in map(json.loads, lines) if r["split"] != "event"]
    assert records(broken_dir) == records(whole_dir)
    a = load_file(str(whole_dir / "export" / "model.safetensors"))
    b = load_file(str(broken_dir / "export" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_a_failed_rank_stops_the_run(tmp_path: Path) -> None:
    manifests, run_dir = iris_job(tmp_path, stopping={"epochs": 50})
    started = time.monotonic()
    result = lmspec_run(str(manifests), *TWO, env=kill_after(rank=1, step=2), timeout=120)
    assert result.returncode == 1
    assert "training failed: a rank exited" in result.stderr
    assert time.monotonic() - started < 90
    assert not (run_dir / "export").exists()
