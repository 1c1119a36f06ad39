"""``lmspec export``: print artefacts generated from manifests."""

from __future__ import annotations

import json
import sys

import click

from ..output import render
from ..validate import ValidationFailed


@click.group("export")
def command() -> None:
    """Print artefacts generated from manifests."""


@command.command("deepspeed-config")
@click.argument("paths", nargs=-1, required=True)
@click.option("--job", "job_name", help="TrainingJob to use, when the inputs define several.")
def deepspeed_config(paths: tuple[str, ...], job_name: str | None) -> None:
    """Print the DeepSpeed config that `lmspec run` generates for a TrainingJob, as JSON.

    The learning-rate schedule is not in it: the runner passes it to DeepSpeed as a LambdaLR."""
    from ..dsconfig import deepspeed_config as generate
    from ..train.launch import RunError, select

    try:
        _, job = select(paths, job_name)
    except ValidationFailed as exc:
        sys.stdout.write(render(exc.report, "text"))
        sys.exit(1)
    except RunError as exc:
        click.echo(f"lmspec: error: {exc}", err=True)
        sys.exit(1)
    click.echo(json.dumps(generate(job.obj.spec), indent=2))
