"""From ``lmspec run`` to training ranks: pick the job, write the run directory, launch.

>>> manifests, job = select(["examples/iris"], None)
>>> run_dir = write_run_dir(job, manifests, output=None)
>>> launch(paths, job, run_dir, nproc=2, hostfile=None, resume=False)   # → exit status

One process trains in this process. Several start through the ``deepspeed`` launcher, which
stops every rank as soon as one fails. A process that a launcher (torchrun, deepspeed, Slurm)
already started joins that world instead of launching again.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from ..export import output_dir_for
from ..validate import Manifest, ManifestSet, load
from .world import World, free_port, under_launcher


class RunError(Exception):
    """A user mistake found before training starts (printed without a traceback)."""


def select(paths: Sequence[str], job_name: str | None) -> tuple[ManifestSet, Manifest]:
    """Load and validate the manifests (raises ValidationFailed) and pick the TrainingJob."""
    manifests = load(list(paths))
    jobs = manifests.of_kind("TrainingJob")
    if job_name is not None:
        job = manifests.get("TrainingJob", job_name)
        if job is None:
            names = ", ".join(j.name for j in jobs) or "none"
            raise RunError(f"no TrainingJob named {job_name!r} among the inputs (found: {names})")
        return manifests, job
    if len(jobs) != 1:
        if not jobs:
            raise RunError("no TrainingJob among the inputs; pass the file that defines one")
        raise RunError("several TrainingJobs among the inputs ("
                       + ", ".join(j.name for j in jobs) + "); choose one with --job")
    return manifests, jobs[0]


def job_manifests(job: Manifest, manifests: ManifestSet) -> list[Manifest]:
    """The TrainingJob, its Model and its Dataset."""
    spec = job.obj.spec
    found = [job, manifests.get("Model", spec.model), manifests.get("Dataset", spec.dataset)]
    return [m for m in found if m is not None]


def write_run_dir(job: Manifest, manifests: ManifestSet, output: str | None) -> Path:
    """Create the run directory and write ``rendered.yaml``: the job's manifests with every
    default filled in (rank 0 only; others just learn the path)."""
    run_dir = (Path(output) if output else output_dir_for(job)).resolve()
    if World.from_env().is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        docs = [m.obj.model_dump(mode="json", by_alias=True) for m in job_manifests(job, manifests)]
        (run_dir / "rendered.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return run_dir


def launch(paths: Sequence[str], job: Manifest, run_dir: Path, *, nproc: int | None,
           hostfile: str | None, resume: bool) -> int:
    """Train, in this process or through the deepspeed launcher; returns the exit status."""
    from . import worker

    resources = job.obj.spec.resources
    n = nproc if nproc is not None else resources.processes_per_node
    if n < 1:
        raise RunError(f"--nproc must be at least 1, not {n}")
    if under_launcher() or (n == 1 and hostfile is None):
        return worker.main_in_process(list(paths), job.name, run_dir, resume=resume,
                                      accelerator=resources.accelerator)
    cmd = [sys.executable, "-u", "-m", "deepspeed.launcher.runner",
           "--master_port", str(free_port()), "--no_local_rank"]
    if hostfile is not None:
        cmd += ["--hostfile", str(Path(hostfile).resolve())]
        if nproc is not None:
            cmd += ["--num_gpus", str(nproc)]
    else:
        cmd += ["--num_nodes", "1", "--num_gpus", str(n)]
    cmd += ["--module", "lmspec.train.worker",
            *[str(Path(p).resolve()) if p != "-" else p for p in paths],
            "--job", job.name, "--output", str(run_dir)]
    if resume:
        cmd.append("--resume")
    env = dict(os.environ)
    env["DS_ACCELERATOR"] = resources.accelerator
    env.setdefault("PYTHONUNBUFFERED", "1")
    status = subprocess.call(cmd, env=env)
    if status != 0:
        print(f"lmspec: training failed: a rank exited with status {status}; "
              "the launcher stopped the others (see the messages above)", file=sys.stderr)
        return 1
    return 0
