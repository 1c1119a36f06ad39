"""``lmspec run``."""

from __future__ import annotations

import sys

import click

from ._errors import note_skipped, reported


@click.command("run")
@click.argument("paths", nargs=-1, required=True)
@click.option("--job", "job_name", help="TrainingJob to run, when the inputs define several.")
@click.option("--nproc", type=int, help="Processes on this machine [default: resources.processesPerNode].")
@click.option("--hostfile", type=click.Path(),
              help="DeepSpeed hostfile ('host slots=N' per line) to train on several machines.")
@click.option("--output", type=click.Path(file_okay=False), help="Run directory [default: output.dir].")
@click.option("--resume", is_flag=True, help="Continue from the newest complete checkpoint.")
@click.option("--allow-outside", "allow_outside", multiple=True, type=click.Path(file_okay=False),
              help="Also read files in this directory tree (repeatable), as `lmspec validate --check-env "
                   "--allow-outside`; by default only the manifests' and the working directory's trees.")
def command(paths: tuple[str, ...], job_name: str | None, nproc: int | None, hostfile: str | None,
            output: str | None, resume: bool, allow_outside: tuple[str, ...]) -> None:
    """Validate, then train a TrainingJob with DeepSpeed and export the model.

    The run directory (output.dir) receives rendered.yaml and lock.json before training,
    metrics.jsonl and checkpoints/ during it, and export/ at the end."""
    from ..train.launch import launch
    from ..train.rundir import RunError, release_run_dirs, select, write_run_dir

    try:
        with reported(RunError):
            # The environment layer of `lmspec validate --check-env` (files, the base, the
            # adapter's modules, chat templates) runs here, before ranks start and DeepSpeed
            # builds its ops.
            manifests, job = select(paths, job_name, check_env=True, allow_outside=allow_outside)
            note_skipped(manifests.report)
            run_dir = write_run_dir(job, manifests, output, resume=resume)
            status = launch(paths, job, run_dir, nproc=nproc, hostfile=hostfile, resume=resume)
    finally:
        release_run_dirs()
    sys.exit(status)
