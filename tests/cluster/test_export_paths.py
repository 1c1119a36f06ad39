"""What an exported workload reads: every local path the manifests name (a pretrained base, a chat
template) is in the workspace and in ``lmspec.io/needs-files``, or, named by absolute path,
allowed for ``lmspec run`` with ``--allow-outside``; and the machine labels Kubernetes would
refuse never reach an exported object."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from lmspec.cluster import trainjob
from lmspec.cluster.slurm import sbatch
from lmspec.validator.core import ValidationFailed

SIG = {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]}],
       "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1, -1]}]}


def _project(root: Path, base: str, cluster: dict[str, Any] | None = None) -> Path:
    """``root/project`` with a LoRA job over the pretrained base at ``base`` and chat data whose
    template is a file beside the manifests."""
    project = root / "project"
    project.mkdir(parents=True)
    (project / "chat.jsonl").write_text('{"messages": [{"role": "user", "content": "Hi"}]}\n')
    (project / "t.jinja").write_text("{% generation %}{{ messages }}{% endgeneration %}")
    model = {"apiVersion": "lmspec.io/v1alpha1", "kind": "Model", "metadata": {"name": "base"},
             "spec": {"task": "causal-lm", "architecture": {"type": "pretrained", "path": base}, "signature": SIG}}
    data = {"apiVersion": "lmspec.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "chat"},
            "spec": {"sources": [{"path": "chat.jsonl"}], "chat": {"sequenceLength": 64, "templatePath": "t.jinja"}}}
    job = {"apiVersion": "lmspec.io/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "ft"},
           "spec": {"model": "base", "dataset": "chat", "loss": {"type": "causalLm"}, "adapter": {"type": "lora"},
                    "cluster": {"image": "lmspec-runner:test", **(cluster or {})}}}
    (project / "m.yaml").write_text(yaml.safe_dump_all([model, data, job], sort_keys=False))
    return project


def _needs(objects: list[dict[str, Any]]) -> list[str]:
    cm = next(o for o in objects if o["kind"] == "ConfigMap")
    return str(cm["metadata"]["annotations"]["lmspec.io/needs-files"]).split(",")


def test_a_base_beside_the_project_is_in_the_workspace_and_needed(tmp_path: Path) -> None:
    project = _project(tmp_path, "../base")
    objects = trainjob([str(project)])
    # The workspace mirrors the tree that holds the manifests and the base.
    assert _needs(objects) == ["/workspace/base", "/workspace/project/chat.jsonl", "/workspace/project/t.jinja"]
    command = objects[-1]["spec"]["trainer"]["command"]
    assert command[-3:] == ["/workspace/project/manifests.yaml", "--job", "ft"]


def test_a_base_by_absolute_path_is_needed_and_allowed_for_the_run(tmp_path: Path) -> None:
    base = tmp_path / "models" / "base"
    base.mkdir(parents=True)
    project = _project(tmp_path, str(base))
    objects = trainjob([str(project)])
    assert str(base) in _needs(objects)
    command = objects[-1]["spec"]["trainer"]["command"]
    assert command[command.index("--allow-outside") + 1] == str(base)
    script = sbatch([str(project)])
    assert f"--allow-outside {base}" in script


@pytest.mark.parametrize(("cluster", "pointer"), [
    ({"nodeSelector": {"gpu\ntype": "h100"}}, "/spec/cluster/nodeSelector/gpu\ntype"),
    ({"nodeSelector": {"pool": "$(cat /etc/passwd)"}}, "/spec/cluster/nodeSelector/pool"),
    ({"tolerations": [{"key": "gpu$(id)", "operator": "Exists"}]}, "/spec/cluster/tolerations/0/key"),
])
def test_labels_kubernetes_refuses_are_refused_by_the_export(tmp_path: Path, cluster: dict[str, Any],
                                                             pointer: str) -> None:
    project = _project(tmp_path, "../base", cluster)
    with pytest.raises(ValidationFailed) as caught:
        trainjob([str(project)])
    found = [(f.rule, f.pointer) for f in caught.value.report.findings if f.rule != "document.deprecated-version"]
    assert found == [("cluster.label", pointer)]
