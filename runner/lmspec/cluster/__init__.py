"""The same manifests on a cluster: Kubeflow Trainer, KServe and Slurm objects from lmspec manifests.

>>> from lmspec.cluster import export
>>> files = export("kubeflow", ["examples/iris"], image="registry.example.com/lmspec-runner:0.1.0")
>>> list(files)
['iris-train.kubeflow.yaml']

Each target turns validated manifests into the engine's own objects; nothing here talks to a
cluster. :data:`TARGETS` names the engine releases the objects are written for.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import yaml

from .common import ExportError
from .kserve import KSERVE_VERSION, Runtime, inferenceservice
from .kubeflow import TRAINER_VERSION, trainjob
from .slurm import sbatch

Target = Literal["kubeflow", "kserve", "slurm"]
TARGETS: dict[str, str] = {"kubeflow": f"Kubeflow Trainer {TRAINER_VERSION}",
                           "kserve": f"KServe {KSERVE_VERSION}", "slurm": "Slurm (sbatch, srun, torchrun)"}


class _Dumper(yaml.SafeDumper):
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    # The manifests inside a ConfigMap read best as a literal block.
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _str)


def to_yaml(objects: Sequence[dict[str, Any]]) -> str:
    """Kubernetes objects as one multi-document YAML stream, keys in the order built."""
    return "---\n".join(yaml.dump(o, Dumper=_Dumper, sort_keys=False, width=120, allow_unicode=True)
                        for o in objects)


def export(target: Target, paths: Sequence[str], *, image: str | None = None,
           name: str | None = None, runtime: Runtime = "lmspec") -> dict[str, str]:
    """The files that run the manifests in ``paths`` on ``target``: ``{file name: text}``.

    ``name`` picks the TrainingJob (kubeflow, slurm) or InferenceService (kserve) when the inputs
    hold several; ``image`` overrides ``spec.cluster.image``; ``runtime`` (kserve only) serves the
    model with ``lmspec serve`` or KServe's Hugging Face runtime. Raises :class:`ExportError` for what
    cannot be exported, ``lmspec.ValidationFailed`` for invalid manifests."""
    if runtime != "lmspec" and target != "kserve":
        raise ExportError(f"--runtime {runtime} applies to kserve only")
    if target == "kubeflow":
        objects = trainjob(paths, image=image, job_name=name)
        return {f"{objects[-1]['metadata']['name']}.kubeflow.yaml": to_yaml(objects)}
    if target == "kserve":
        objects = inferenceservice(paths, image=image, service_name=name, runtime=runtime)
        return {f"{objects[-1]['metadata']['name']}.kserve.yaml": to_yaml(objects)}
    if target == "slurm":
        script = sbatch(paths, job_name=name)
        job = next(line.split("=", 1)[1] for line in script.splitlines() if line.startswith("#SBATCH --job-name="))
        return {f"{job}.sbatch": script}
    raise ValueError(f"unknown target {target!r}")


__all__ = ["TARGETS", "ExportError", "Runtime", "Target", "export", "inferenceservice", "sbatch", "to_yaml", "trainjob"]
