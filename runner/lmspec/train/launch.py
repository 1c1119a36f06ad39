"""From ``lmspec run`` to training ranks: pick the job, write the run directory, launch.

>>> manifests, job = select(["examples/iris"], None)            # lmspec.train.rundir
>>> run_dir = write_run_dir(job, manifests, output=None)
>>> launch(paths, job, run_dir, nproc=2, hostfile=None, resume=False)   # → exit status

Where the ranks come from (:func:`.plan.plan_world`):

- alone: one process trains in this process;
- joined: a launcher (torchrun, deepspeed, a Slurm step of several tasks) already started this
  process as a rank: it joins that world instead of launching again;
- local: several processes on this machine (``--nproc``, ``resources.processesPerNode``, or a
  hostfile naming only this machine), started by the ``deepspeed`` launcher, which stops every
  rank as soon as one fails;
- hosts: a hostfile naming other machines: the ``deepspeed`` launcher starts the ranks there
  through pdsh (passwordless ssh; the same paths on every machine).

Before anything starts, the actual world is checked against the job: a declared
``batch.globalBatchSize`` must hold for it, a resumed checkpoint must come from the same world
size and ZeRO stage, and a CUDA job needs the devices it asks for.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from ..validator.core import Manifest
from . import checkpoint, worker
from .plan import Plan, check_cuda, check_world, plan_world
from .rundir import RunError, finished
from .world import World, free_port

WORKER_MODULE = "lmspec.train.worker"
"""What the deepspeed launcher starts once per rank."""


def launcher_command(plan: Plan, worker_args: Sequence[str], *, python: str = sys.executable,
                     master_port: int | None = None) -> list[str]:
    """The ``deepspeed`` launcher command that starts every rank of a local or hosts plan.

    >>> launcher_command(Plan("local", 2, "--nproc 2"), ["job.yaml", "--job", "j", "--output", "/runs/j"],
    ...                  python="python", master_port=29501)
    ['python', '-u', '-m', 'deepspeed.launcher.runner', '--master_port', '29501', '--no_local_rank',
     '--num_nodes', '1', '--num_gpus', '2', '--log_level', 'error', '--module', 'lmspec.train.worker', …]

    Several machines go through pdsh: DeepSpeed checks ssh to the first host, asks it for its
    address (``hostname -I``) as the rendezvous, and runs the same Python, the same working
    directory and the same absolute paths on every host."""
    cmd = [python, "-u", "-m", "deepspeed.launcher.runner"]
    if master_port is not None:
        cmd += ["--master_port", str(master_port)]
    cmd.append("--no_local_rank")
    if plan.mode == "local":
        cmd += ["--num_nodes", "1", "--num_gpus", str(plan.world_size)]
        # On one machine the launcher's log repeats what lmspec says (the command, the world,
        # CUDA_VISIBLE_DEVICES even on CPU) and warns that no hostfile was given, which is the
        # point of --num_gpus. Its errors (a rank's exit status) still show.
        cmd += ["--log_level", "error"]
    elif plan.mode == "hosts":
        assert plan.hostfile is not None
        cmd += ["--hostfile", str(plan.hostfile), "--launcher", "pdsh"]
        if plan.per_host is not None:
            cmd += ["--num_gpus", str(plan.per_host)]
        if len(plan.hosts) == 1:
            # One remote host: DeepSpeed would otherwise start the ranks here, not there.
            cmd.append("--force_multi")
    else:
        raise ValueError(f"a {plan.mode!r} plan starts no launcher")
    return [*cmd, "--module", WORKER_MODULE, *worker_args]


def launch(paths: Sequence[str], job: Manifest, run_dir: Path, *, nproc: int | None,
           hostfile: str | None, resume: bool) -> int:
    """Train, in this process or through the deepspeed launcher; returns the exit status of the
    launcher. Training in this process ends it (see :func:`worker.exit_now`)."""
    spec = job.obj.spec
    plan = plan_world(spec, nproc=nproc, hostfile=hostfile)
    note = check_world(job, plan)
    if resume or spec.checkpointing.resume:
        mismatch = checkpoint.resume_mismatch(run_dir / "checkpoints", world_size=plan.world_size,
                                              zero_stage=spec.zero.stage)
        if mismatch is not None:
            raise RunError(mismatch)
        intact, skipped = checkpoint.newest_intact(run_dir / "checkpoints")
        if intact is None and skipped:
            raise RunError(f"no intact checkpoint to resume in {run_dir / 'checkpoints'}: "
                           + "; ".join(skipped) + ". Train from scratch into a new directory (--output)")
        done = finished(run_dir)
        if done is not None:
            if World.from_env().is_main:
                print(done, flush=True)
            return 0
    if spec.resources.accelerator == "cuda":
        check_cuda(job, plan)
    if plan.mode == "hosts" and shutil.which("pdsh") is None:
        raise RunError(f"{plan.hostfile} names other machines; DeepSpeed starts ranks there through pdsh, "
                       "which is not installed here (install pdsh and set up passwordless ssh to every host)")
    if note is not None and World.from_env().is_main:
        print(note, flush=True)
    if plan.mode in ("alone", "joined"):
        worker.exit_now(worker.main_in_process(list(paths), job.name, run_dir, resume=resume))
    worker_args = [*[str(Path(p).resolve()) if p != "-" else p for p in paths],
                   "--job", job.name, "--output", str(run_dir)]
    if resume:
        worker_args.append("--resume")
    # Several machines rendezvous on the first host, where a port free here means nothing:
    # DeepSpeed's default port applies there.
    port = free_port() if plan.mode == "local" else None
    cmd = launcher_command(plan, worker_args, master_port=port)
    env = dict(os.environ)
    env["DS_ACCELERATOR"] = spec.resources.accelerator
    env.setdefault("PYTHONUNBUFFERED", "1")
    if plan.mode == "local":
        # The deepspeed launcher says nothing of how many ranks share this machine; each
        # rank's torch threads default to the cores divided among them.
        env["LMSPEC_LOCAL_RANKS"] = str(plan.world_size)
    status = subprocess.call(cmd, env=env)
    if status != 0:
        print(f"lmspec: training failed: a rank exited with status {status}; "
              "the launcher stopped the others (see the messages above)", file=sys.stderr)
        return 1
    return 0
