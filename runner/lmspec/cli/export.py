"""``lmspec export``: print artefacts generated from manifests."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from ._errors import note_skipped, reported


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
    from ..train.rundir import RunError, select

    with reported(RunError):
        manifests, job = select(paths, job_name)
        note_skipped(manifests.report)
    click.echo(json.dumps(generate(job.obj.spec, job.base_dir), indent=2))


def _cluster_export(target: str, paths: tuple[str, ...], image: str | None, name: str | None,
                    out_dir: str | None, runtime: str = "lmspec") -> None:
    from ..cluster import ExportError, export

    with reported(ExportError, OSError):
        files = export(target, paths, image=image, name=name, runtime=runtime)  # type: ignore[arg-type]
        if out_dir is None:
            sys.stdout.write("".join(files.values()))
            return
        directory = Path(out_dir)
        directory.mkdir(parents=True, exist_ok=True)
        for file_name, text in files.items():
            (directory / file_name).write_text(text)
            click.echo(str(directory / file_name))


_IMAGE = click.option("--image", help="Container image with lmspec installed (default: spec.cluster.image).")
_OUT = click.option("-o", "--output-dir", "out_dir", help="Write the files into this directory instead of printing.")


@command.command("kubeflow")
@click.argument("paths", nargs=-1, required=True)
@_IMAGE
@click.option("--job", "name", help="TrainingJob to export, when the inputs define several.")
@_OUT
def kubeflow(paths: tuple[str, ...], image: str | None, name: str | None, out_dir: str | None) -> None:
    """A Kubeflow Trainer TrainJob (with lmspec's ClusterTrainingRuntime and a ConfigMap holding
    the rendered manifests) that runs a TrainingJob with torchrun on every node."""
    _cluster_export("kubeflow", paths, image, name, out_dir)


@command.command("kserve")
@click.argument("paths", nargs=-1, required=True)
@_IMAGE
@click.option("--service", "name", help="InferenceService to export, when the inputs define several.")
@click.option("--runtime", type=click.Choice(["lmspec", "huggingface"]), default="lmspec", show_default=True,
              help="lmspec: a container running lmspec serve. huggingface: KServe's Hugging Face runtime "
                   "(causal LMs in Hugging Face format on a pvc:// workspace; no lmspec gateway).")
@_OUT
def kserve(paths: tuple[str, ...], image: str | None, name: str | None, runtime: str, out_dir: str | None) -> None:
    """A KServe InferenceService (and a ConfigMap holding the rendered manifests) whose predictor
    container runs lmspec serve, or (--runtime huggingface) whose predictor is KServe's Hugging
    Face runtime reading the model from the workspace volume."""
    _cluster_export("kserve", paths, image, name, out_dir, runtime)


@command.command("slurm")
@click.argument("paths", nargs=-1, required=True)
@click.option("--job", "name", help="TrainingJob to export, when the inputs define several.")
@_OUT
def slurm(paths: tuple[str, ...], name: str | None, out_dir: str | None) -> None:
    """An sbatch script that runs a TrainingJob with one torchrun per node and a c10d rendezvous."""
    _cluster_export("slurm", paths, None, name, out_dir)
