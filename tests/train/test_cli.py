"""``lmspec run`` refuses bad input before training, with a clear message and no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from train_helpers import IRIS_DATASET, IRIS_JOB, IRIS_MODEL, REPO, iris_job, lmspec_run, merge, write_manifests

from lmspec.cli import main


def test_invalid_manifests_are_reported_like_validate(tmp_path: Path) -> None:
    job = merge(IRIS_JOB, {"spec": {"precision": {"fp16": {"enabled": True}, "bf16": {"enabled": True}}}})
    f = write_manifests(tmp_path, IRIS_DATASET, IRIS_MODEL, job)
    out = CliRunner().invoke(main, ["run", str(f)])
    assert out.exit_code == 1
    assert "error[trainingjob.precision-exclusive]" in out.output
    assert not (tmp_path / "runs").exists()


def test_job_selection(tmp_path: Path) -> None:
    second = merge(IRIS_JOB, {"metadata": {"name": "other"}})
    f = write_manifests(tmp_path, IRIS_DATASET, IRIS_MODEL, IRIS_JOB, second)
    out = CliRunner().invoke(main, ["run", str(f)])
    assert out.exit_code == 1 and "choose one with --job" in out.output
    out = CliRunner().invoke(main, ["run", str(f), "--job", "nope"])
    assert out.exit_code == 1 and "no TrainingJob named 'nope'" in out.output


def test_export_deepspeed_config() -> None:
    # The example's own manifests, never what running it leaves below the directory.
    files = [str(f) for f in sorted((REPO / "examples" / "iris").glob("*.yaml"))]
    out = CliRunner().invoke(main, ["export", "deepspeed-config", *files])
    assert out.exit_code == 0, out.output
    cfg = json.loads(out.stdout)
    assert cfg["train_micro_batch_size_per_gpu"] == 16 and cfg["gradient_clipping"] == 0.0


@pytest.mark.integration
def test_bad_data_is_one_line_without_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "iris.csv"
    lines = (REPO / "examples" / "data" / "iris.csv").read_text().splitlines()
    lines[5] = "5.0,abc,1.4,0.2,setosa"
    bad.write_text("\n".join(lines) + "\n")
    f, _ = iris_job(tmp_path)
    f.write_text(f.read_text().replace(str(REPO / "examples" / "data" / "iris.csv"), str(bad)))
    result = lmspec_run(str(f))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr + result.stdout
    # Found before launch by the data check, at the file and line of the bad value.
    assert f"{bad}:6:1: error[env.data]" in result.stdout and "'abc' is not a number" in result.stdout


def test_a_fresh_run_refuses_an_earlier_runs_checkpoints(tmp_path: Path) -> None:
    manifests, run_dir = iris_job(tmp_path)
    done = run_dir / "checkpoints" / "step12"
    done.mkdir(parents=True)
    (done / "COMPLETE").write_text('{"step": 12, "worldSize": 1, "zeroStage": 0}\n')
    out = CliRunner().invoke(main, ["run", str(manifests)])
    assert out.exit_code == 1
    assert "already holds checkpoints of an earlier run (newest: step12)" in out.output
    assert "--resume" in out.output and "Traceback" not in out.output
    assert not (run_dir / "rendered.yaml").exists()


@pytest.mark.integration
def test_a_missing_data_file_is_found_before_launch_with_its_resolved_path(tmp_path: Path) -> None:
    data = merge(IRIS_DATASET, {"spec": {"sources": [{"path": "data/missing.csv"}]}})
    f = write_manifests(tmp_path / "proj", data, IRIS_MODEL, merge(IRIS_JOB, {"spec": {"output": {"dir": "run"}}}))
    # A subprocess: were the check missing, training would start in this process.
    out = lmspec_run(str(f), timeout=120)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "error[env.file-missing]" in out.stdout
    assert str(tmp_path / "proj" / "data" / "missing.csv") in out.stdout
    assert "deepspeed" not in (out.stdout + out.stderr).lower()
    assert not (tmp_path / "proj" / "run").exists()


@pytest.mark.integration
def test_progress_lines_when_output_is_not_a_terminal(tmp_path: Path) -> None:
    f, _ = iris_job(tmp_path, logging={"interval": 2, "progressBar": True},
                          stopping={"epochs": 1, "maxSteps": 4})
    result = lmspec_run(str(f))
    assert result.returncode == 0, result.stderr[-3000:]
    steps = [line for line in result.stdout.splitlines() if line.startswith("lmspec: step ")]
    assert [s.split()[2] for s in steps] == ["2/4", "4/4"], result.stdout
    assert "loss" in steps[0] and "samples/s" in steps[0]


@pytest.mark.integration
def test_a_bad_export_shard_size_is_refused_before_training(tmp_path: Path) -> None:
    manifests, run_dir = iris_job(tmp_path)
    result = lmspec_run(str(manifests), env={"LMSPEC_EXPORT_MAX_SHARD_BYTES": "5GB"})
    assert result.returncode == 1
    assert "LMSPEC_EXPORT_MAX_SHARD_BYTES='5GB'" in result.stderr + result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    assert not (run_dir / "metrics.jsonl").exists() and not (run_dir / "checkpoints").exists()
