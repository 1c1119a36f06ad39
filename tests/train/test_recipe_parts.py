"""The recipe's parts on their own: the fault-injection seam, the seeds every draw derives from,
and the run state's lock paths and data check. Real files, no training."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lmspec.train import faults
from lmspec.train.errors import TrainError
from lmspec.train.order import seed_for
from lmspec.train.runstate import Progress, RunState
from lmspec.train.world import World

PACKAGE = Path(__file__).resolve().parents[2] / "runner" / "lmspec"


def test_only_the_fault_seam_reads_the_fault_variable() -> None:
    # The variable's name as a string of its own (docstrings may mention it): only the seam has it.
    readers = sorted(p.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")
                     if any(isinstance(node, ast.Constant) and node.value == faults.FAULT_ENV
                            for node in ast.walk(ast.parse(p.read_text(encoding="utf-8")))))
    assert readers == ["train/faults.py"]


def test_without_the_fault_variable_nothing_is_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(faults.FAULT_ENV, raising=False)
    kill = faults.kill_point()
    for rank in range(2):
        for step in range(10):
            kill(rank, step)  # returns: this process is still alive


@pytest.mark.integration
def test_the_fault_seam_kills_its_rank_just_after_its_step() -> None:
    script = ("from lmspec.train.faults import kill_point\n"
              "kill = kill_point()\n"
              "for step in range(1, 10):\n"
              "    kill(0, step)\n"  # another rank: never killed
              "    kill(1, step)\n"
              "    print(step, flush=True)\n")
    done = subprocess.run([sys.executable, "-c", script], env={**faults.kill_after(rank=1, step=6)},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == -9
    assert done.stdout.split() == ["1", "2", "3", "4", "5"]


def test_seeds_are_the_same_in_every_process() -> None:
    # Pinned: a resumed run (another process) must draw what the uninterrupted run drew.
    assert seed_for(0, 1, 2, 3, 1) == 7330198541265073554
    assert seed_for(7) == 4953164456164915532
    assert seed_for(7, 0) != seed_for(0, 7)


def test_lock_paths_are_relative_and_changed_data_is_refused(tmp_path: Path) -> None:
    run_dir, data_dir = tmp_path / "project" / "run", tmp_path / "project" / "data"
    run_dir.mkdir(parents=True)
    state = RunState(run_dir, World(0, 0, 1), zero_stage=2, keep_last=1)
    files = {"a.csv": "1" * 64, str(tmp_path / "b.csv"): "2" * 64}
    locked = state.lock_files(files, data_dir)
    assert locked == {"../data/a.csv": "1" * 64, "../../b.csv": "2" * 64}
    (run_dir / "lock.json").write_text(json.dumps({"dataFiles": locked}))
    state.check_same_data(files, data_dir)  # unchanged: resumes
    with pytest.raises(TrainError, match=r"the data changed since the run started \(\.\./data/a\.csv differ"):
        state.check_same_data({**files, "a.csv": "3" * 64}, data_dir)


def test_a_run_is_done_at_its_last_step_or_when_it_stopped_early() -> None:
    assert not Progress(step=3).done(4)
    assert Progress(step=4).done(4)
    assert Progress(step=1, stopped_early=True).done(4)
