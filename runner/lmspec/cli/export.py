"""``lmspec export``: print artefacts generated from manifests."""

from __future__ import annotations

import json

import click

from ._errors import reported


@click.group("export")
def command() -> None:
    """Print artefacts generated from manifests."""


@command.command("deepspeed-config")
@click.argument("paths", nargs=-1, required=True)
@click.option("--job", "job_name", help="TrainingJob to use, when the inputs define several.")
def deepspeed_config(paths: tuple[str, ...], job_name: str | None) -> None:
    """Print the DeepSpeed config that `lmspec run` generates for a TrainingJob, as JSON.

    The learning-rate schedule is not in it: the runner passes it to DeepSpeed as a LambdaLR."""
    from ..train.dsconfig import deepspeed_config as generate
    from ..train.launch import RunError, select

    with reported(RunError):
        _, job = select(paths, job_name)
    click.echo(json.dumps(generate(job.obj.spec), indent=2))
