"""Faults in a run directory between a run and its ``--resume``: crafted or corrupted checkpoint
files, a finished or early-stopped run, changed data, a second run at once, and a loss that
stops being finite."""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
from pathlib import Path

import pytest
from runs import EARLY_STOP, run, write_project

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    write_project(root, **EARLY_STOP)
    done = run(root)
    assert done.returncode == 0, done.stdout + done.stderr
    tags = sorted(p.name for p in (root / "run" / "checkpoints").iterdir())
    assert tags == ["step10", "step12", "step5"], tags
    assert json.loads((root / "run" / "summary.json").read_text())["stoppedEarly"] is True
    return root


def copy_of(finished: Path, tmp_path: Path, *, exported: bool = True) -> Path:
    project = tmp_path / "project"
    shutil.copytree(finished, project)
    if not exported:  # as if killed between the final checkpoint and the export
        shutil.rmtree(project / "run" / "export")
        (project / "run" / "summary.json").unlink()
    return project


def digest_tree(path: Path) -> dict[str, str]:
    return {p.relative_to(path).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(path.rglob("*")) if p.is_file() and p.name != ".lmspec-run.lock"}


def model_file(project: Path, tag: str) -> Path:
    return project / "run" / "checkpoints" / tag / "mp_rank_00_model_states.pt"


def test_resume_of_a_finished_run_neither_trains_nor_overwrites_the_export(finished: Path, tmp_path: Path) -> None:
    project = copy_of(finished, tmp_path)
    before = digest_tree(project / "run")
    out = run(project, "--resume")
    assert out.returncode == 0, out.stderr
    assert "is finished (stopped early after 12 steps); nothing to resume" in out.stdout
    assert digest_tree(project / "run") == before


def test_resume_after_early_stop_killed_before_export_trains_no_more(finished: Path, tmp_path: Path) -> None:
    project = copy_of(finished, tmp_path, exported=False)
    out = run(project, "--resume")
    assert out.returncode == 0, out.stderr
    assert "resumed from" in out.stdout and "(step 12)" in out.stdout
    summary = json.loads((project / "run" / "summary.json").read_text())
    assert summary["steps"] == 12 and summary["stoppedEarly"] is True
    train_steps = [json.loads(line)["step"] for line in (project / "run" / "metrics.jsonl").read_text().splitlines()
                   if json.loads(line).get("split") == "train"]
    assert max(train_steps) == 12


class Evil:
    """Pickles to code that leaves a witness file when unpickled."""

    def __init__(self, witness: Path) -> None:
        self.witness = witness

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (str(self.witness),))  # type: ignore[return-value]


def test_crafted_and_flipped_checkpoints_fall_back_to_the_newest_intact(finished: Path, tmp_path: Path) -> None:
    import torch

    project = copy_of(finished, tmp_path, exported=False)
    witness = tmp_path / "code-ran"
    crafted = model_file(project, "step12")
    torch.save({"module": Evil(witness)}, crafted)
    flipped = model_file(project, "step10")
    data = bytearray(flipped.read_bytes())
    data[len(data) // 2] ^= 0x01
    flipped.write_bytes(bytes(data))
    out = run(project, "--resume")
    assert out.returncode == 0, out.stderr
    assert f"skipping a damaged checkpoint: {crafted} does not match its sha256 digest" in out.stdout
    assert f"skipping a damaged checkpoint: {flipped} does not match" in out.stdout
    assert "falling back to the newest intact checkpoint" in out.stdout and "(step 5)" in out.stdout
    assert not witness.exists() and "Traceback" not in out.stderr


def test_pickled_code_with_a_forged_digest_is_refused_unrun(finished: Path, tmp_path: Path) -> None:
    import torch

    project = copy_of(finished, tmp_path, exported=False)
    witness = tmp_path / "code-ran"
    crafted = model_file(project, "step12")
    torch.save({"module": Evil(witness)}, crafted)
    marker = crafted.parent / "COMPLETE"
    info = json.loads(marker.read_text())
    info["files"][crafted.name] = hashlib.sha256(crafted.read_bytes()).hexdigest()
    marker.write_text(json.dumps(info))
    out = run(project, "--resume")
    assert out.returncode != 0
    assert "refusing to load" in out.stdout + out.stderr and "Traceback" not in out.stdout + out.stderr
    assert not witness.exists()


def test_truncated_and_deleted_checkpoint_files_everywhere_is_a_clear_error(finished: Path, tmp_path: Path) -> None:
    project = copy_of(finished, tmp_path, exported=False)
    model_file(project, "step5").unlink()
    for tag in ("step10", "step12"):
        path = model_file(project, tag)
        path.write_bytes(path.read_bytes()[:1000])
    out = run(project, "--resume")
    assert out.returncode != 0 and "no intact checkpoint to resume" in out.stdout + out.stderr
    assert "step5/mp_rank_00_model_states.pt is missing" in out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr


def test_data_changed_between_run_and_resume_is_refused(finished: Path, tmp_path: Path) -> None:
    project = copy_of(finished, tmp_path, exported=False)
    csv = project / "iris.csv"
    lines = csv.read_text().splitlines(keepends=True)
    csv.write_text("".join(lines[:1] + lines[2:] + lines[1:2]))  # same rows, another order
    out = run(project, "--resume")
    assert out.returncode != 0
    assert "the data changed since the run started" in out.stdout + out.stderr
    assert "iris.csv" in out.stdout + out.stderr and "Traceback" not in out.stdout + out.stderr


def test_a_second_run_into_a_locked_run_directory_is_refused(finished: Path, tmp_path: Path) -> None:
    project = copy_of(finished, tmp_path, exported=False)
    with (project / "run" / ".lmspec-run.lock").open("a+") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running lmspec run holds
        out = run(project, "--resume")
    assert out.returncode != 0 and "is in use by another lmspec run" in out.stdout + out.stderr


def test_non_finite_loss_stops_the_run_without_an_export(tmp_path: Path) -> None:
    write_project(tmp_path, optimizer={"type": "sgd", "lr": 1e30}, stopping={"epochs": 1})
    out = run(tmp_path)
    assert out.returncode != 0
    assert "the training loss is" in out.stdout + out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "run" / "export").exists()
