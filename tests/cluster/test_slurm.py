"""The exported sbatch script under a real Slurm: ``sbatch`` → ``srun`` → ``torchrun`` →
``lmspec run`` → the exported model, on the single-node cluster of ``slurm_fixture`` (skipped,
with the reason, where this machine cannot start one)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from slurm_fixture import FINISHED, Slurm

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
JOB_TIMEOUT = 600  # seconds; the job takes ~15 s on an idle 2-core machine
PLANNED = "resources: {nodes: 1, processesPerNode: 1, accelerator: cpu}"
TWO_RANKS = "resources: {nodes: 1, processesPerNode: 2, accelerator: cpu}"


def _project(root: Path) -> Path:
    """examples/iris and its data laid out as in the repository, planned as 1 node × 2 processes
    so that torchrun's ranks have to meet in one process group."""
    shutil.copytree(REPO / "examples" / "iris", root / "examples" / "iris", ignore=shutil.ignore_patterns("runs"))
    (root / "examples" / "data").mkdir()
    shutil.copy(REPO / "examples" / "data" / "iris.csv", root / "examples" / "data" / "iris.csv")
    train = root / "examples" / "iris" / "train.yaml"
    text = train.read_text()
    assert PLANNED in text, "examples/iris/train.yaml changed its resources line; update PLANNED"
    train.write_text(text.replace(PLANNED, TWO_RANKS))
    return root


def _wait(slurm: Slurm, job_id: str, log: Path) -> dict[str, str]:
    """The job's final ``scontrol`` record; cancels the job and fails with its log when it runs
    over :data:`JOB_TIMEOUT`."""
    deadline = time.monotonic() + JOB_TIMEOUT
    while (job := slurm.job(job_id))["JobState"] not in FINISHED:
        if time.monotonic() > deadline:
            slurm.run("scancel", job_id)
            output = log.read_text(errors="replace") if log.is_file() else "(no output yet)"
            pytest.fail(f"job {job_id} still {job['JobState']} after {JOB_TIMEOUT}s\n{output[-4000:]}\n{slurm.logs()}")
        time.sleep(1)
    return job


def test_sbatch_script_trains_and_exports(slurm: Slurm, tmp_path: Path) -> None:
    project = _project(tmp_path)
    exported = subprocess.run([sys.executable, "-m", "lmspec", "export", "slurm", "examples/iris", "-o", "deploy"],
                              cwd=project, capture_output=True, text=True, timeout=120)
    assert exported.returncode == 0, exported.stderr
    script = project / "deploy" / "iris-train.sbatch"
    assert "--nproc_per_node 2" in script.read_text()

    # As a user submits it: from the directory the paths in the script are relative to, with the
    # environment that has torchrun and lmspec on the PATH (sbatch exports it to the job).
    # LOGLEVEL=INFO makes torchrun say in the job's output what it started; TMPDIR keeps its
    # log directory out of the machine's /tmp.
    (tmp_path / "tmp").mkdir()
    submitted = subprocess.run([slurm.bin("sbatch"), "--parsable", str(script.relative_to(project))], cwd=project,
                               env=slurm.env(LOGLEVEL="INFO", TMPDIR=str(tmp_path / "tmp")), capture_output=True,
                               text=True, timeout=60)
    assert submitted.returncode == 0, submitted.stderr
    job_id = submitted.stdout.strip().split(";")[0]
    log = project / f"iris-train-{job_id}.out"  # the script's --output=%x-%j.out, in the submit directory
    job = _wait(slurm, job_id, log)

    output = log.read_text(errors="replace")
    failure = f"job {job_id}: {job['JobState']} ({job['Reason']})\n{output[-6000:]}"
    assert (job["JobState"], job["ExitCode"]) == ("COMPLETED", "0:0"), failure
    assert job["NodeList"] == slurm.node
    # srun's step ran torchrun with the job's rendezvous id, torchrun started `lmspec run` as its
    # workers, and they were two ranks in one world, as declared.
    assert re.search(rf"run_id\s*:\s*{job_id}\n", output), output[-4000:]
    assert "starting workers for entrypoint: lmspec" in output, output[-4000:]
    run_dir = project / "examples" / "iris" / "runs" / "iris-train"
    assert json.loads((run_dir / "lock.json").read_text())["worldSize"] == 2
    assert f"exported to {run_dir / 'export'}" in output
    assert (run_dir / "export" / "model.safetensors").is_file()
    assert (run_dir / "export" / "export.json").is_file()
