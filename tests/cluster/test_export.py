"""``lmspec export kubeflow|kserve|slurm``: golden files, the objects against the pinned upstream
CRDs in strict mode plus the rules upstream checks only in CEL or webhooks, and the round trip of
the manifests through the ConfigMap."""

from __future__ import annotations

import copy
import os
import shlex
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from upstream import all_errors, cel_errors, kserve_webhook_errors, schema_errors, trainer_webhook_errors

import lmspec
from lmspec.cli import main
from lmspec.cluster import ExportError, export, inferenceservice, trainjob

REPO = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
IMAGE = "registry.example.com/lmspec-runner:0.1.0"
OWN = "tests/cluster/manifests"
HF = "tests/cluster/hf"

CASES = [
    ("kubeflow", "examples/iris"), ("kubeflow", "examples/regression"), ("kubeflow", "examples/tinylm"),
    ("kubeflow", OWN),
    ("kserve", "examples/iris"), ("kserve", "examples/tinylm"), ("kserve", OWN), ("kserve", HF),
    ("slurm", "examples/iris"), ("slurm", "examples/tinylm"),
]


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The examples and this suite's manifests laid out as in the repository, without what
    running the examples leaves there (runs, the data cache, a generated corpus)."""
    root = tmp_path_factory.mktemp("checkout")
    shutil.copytree(REPO / "examples", root / "examples",
                    ignore=shutil.ignore_patterns("runs", ".lmspec-cache", "corpus", "__pycache__"))
    for directory in (OWN, HF):
        shutil.copytree(REPO / directory, root / directory)
    return root


@pytest.fixture(autouse=True)
def at_repo(checkout: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Paths in the goldens (the sbatch script's) are relative to where export runs.
    monkeypatch.chdir(checkout)


def _export(target: str, path: str) -> dict[str, str]:
    if path == HF:
        return export(target, [path], runtime="huggingface")  # type: ignore[arg-type]
    return export(target, [path], image=None if path == OWN or target == "slurm" else IMAGE)  # type: ignore[arg-type]


def _objects(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d is not None]


@pytest.mark.parametrize(("target", "path"), CASES)
def test_golden(target: str, path: str) -> None:
    """The exported files equal the committed ones (LMSPEC_UPDATE_GOLDEN=1 rewrites them)."""
    for name, text in _export(target, path).items():
        golden = GOLDEN / path.replace("/", "_") / name
        if os.environ.get("LMSPEC_UPDATE_GOLDEN"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(text)
        assert golden.is_file(), f"no golden file {golden}; run with LMSPEC_UPDATE_GOLDEN=1"
        assert text == golden.read_text(), f"{golden} differs from the export"


@pytest.mark.parametrize(("target", "path"), [c for c in CASES if c[0] != "slurm"])
def test_objects_pass_upstream_checks(target: str, path: str) -> None:
    (text,) = _export(target, path).values()
    objects = _objects(text)
    assert objects
    for obj in objects:
        assert all_errors(obj) == [], (obj["kind"], all_errors(obj))


@pytest.mark.parametrize(("target", "path"), [c for c in CASES if c[0] != "slurm" and c[1] != HF])
def test_configmap_round_trip(target: str, path: str, tmp_path: Path) -> None:
    """The manifests in the ConfigMap are exactly ``lmspec render``'s output, and valid."""
    (text,) = _export(target, path).values()
    (cm,) = [o for o in _objects(text) if o["kind"] == "ConfigMap"]
    carried = cm["data"]["manifests.yaml"]
    rendered = CliRunner().invoke(main, ["render", path])
    assert rendered.exit_code == 0, rendered.output
    assert carried.encode() == rendered.stdout.encode()
    # Where the workload reads it: the same place relative to the files it names.
    mounted = tmp_path / "manifests.yaml"
    mounted.write_text(carried)
    report = lmspec.validate([str(mounted)])
    assert report.ok, [f.message for f in report.findings]


CHAT = ["examples/chat-base", "examples/chat-lora"]
"""A LoRA fine-tune whose base model is trained from a sibling directory's manifests."""


@pytest.mark.parametrize(("target", "name"), [("kubeflow", "chat-lora-train"), ("kserve", "chat-lora")])
def test_manifests_from_several_directories(target: str, name: str, tmp_path: Path, checkout: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Each directory's manifests travel as their own rendered file, mounted at the directory's
    place in the workspace, so the paths between directories resolve there as they do here."""
    (text,) = export(target, CHAT, image=IMAGE, name=name).values()  # type: ignore[arg-type]
    objects = _objects(text)
    for obj in objects:
        assert all_errors(obj) == [], (obj["kind"], all_errors(obj))
    (cm,) = [o for o in objects if o["kind"] == "ConfigMap"]
    if target == "kubeflow":
        trainjob_spec = objects[-1]["spec"]
        container = trainjob_spec["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"][
            "replicatedJobs"][-1]["template"]["spec"]["template"]["spec"]["containers"][0]
        args = trainjob_spec["trainer"]["command"]
    else:
        container = objects[-1]["spec"]["predictor"]["containers"][0]
        args = container["args"]
    mounts = [m for m in container["volumeMounts"] if m["name"] == "lmspec-manifests"]
    assert [m["mountPath"] for m in mounts] == ["/workspace/chat-base/manifests.yaml",
                                               "/workspace/chat-lora/manifests.yaml"]
    assert [a for a in args if a.endswith("manifests.yaml")] == [m["mountPath"] for m in mounts]

    # Lay the workspace out as the pod sees it: the mounted files, and the files the ConfigMap
    # says the workload needs (the tree below examples/ mirrors into /workspace).
    workspace = tmp_path / "workspace"
    for mount, directory in zip(mounts, CHAT, strict=True):
        carried = cm["data"][mount["subPath"]]
        rendered = CliRunner().invoke(main, ["render", directory])
        assert rendered.exit_code == 0 and carried == rendered.stdout
        placed = workspace / Path(mount["mountPath"]).relative_to("/workspace")
        placed.parent.mkdir(parents=True, exist_ok=True)
        placed.write_text(carried)
    for needed in cm["metadata"]["annotations"]["lmspec.io/needs-files"].split(","):
        relative = Path(needed).relative_to("/workspace")
        matches = sorted((checkout / "examples").glob(str(relative)))
        assert matches, needed
        for match in matches:
            target_file = workspace / match.relative_to(checkout / "examples")
            target_file.parent.mkdir(parents=True, exist_ok=True)
            target_file.write_bytes(match.read_bytes())
    files = [str(workspace / Path(m["mountPath"]).relative_to("/workspace")) for m in mounts]
    monkeypatch.chdir(workspace)  # the pod's working directory
    report = lmspec.validate(files, check_env=True)
    found = [f for f in report.findings if f.rule != "document.deprecated-version"]  # v1alpha1 examples warn
    assert found == [] and report.documents == 7, [f.message for f in found]
    # The LoRA model's base is the pretraining run, found in the base's directory in the workspace.
    loaded = lmspec.load(files)
    pretrain = loaded.get("TrainingJob", "chat-base-pretrain")
    assert pretrain is not None
    assert pretrain.resolve(pretrain.obj.spec.output.dir) == workspace / "chat-base" / "runs" / "chat-base-pretrain"


def test_slurm_runs_manifests_from_several_directories() -> None:
    (script,) = export("slurm", CHAT, name="chat-lora-train").values()
    assert "lmspec run examples/chat-base examples/chat-lora --job chat-lora-train" in script


def test_strict_mode_catches_what_lenient_mode_misses() -> None:
    """A misspelt field passes the CRD as published (the API server would prune it) and fails
    in strict mode; so does a field of an older Trainer release."""
    job = next(o for o in trainjob(["examples/iris"], image=IMAGE) if o["kind"] == "TrainJob")
    typo = copy.deepcopy(job)
    typo["spec"]["trainer"]["numNode"] = typo["spec"]["trainer"].pop("numNodes")
    assert schema_errors(typo, is_strict=False) == []
    assert any("numNode" in e for e in schema_errors(typo))
    old = copy.deepcopy(job)
    old["spec"]["podSpecOverrides"] = []  # Trainer v2.0; replaced by runtimePatches
    assert any("podSpecOverrides" in e for e in schema_errors(old))
    deep = copy.deepcopy(job)
    deep["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][0][
        "template"]["spec"]["template"]["spec"]["containers"][0]["workingDir"] = "/x"  # not patchable
    assert any("workingDir" in e for e in schema_errors(deep))


def test_cel_rules_are_evaluated() -> None:
    """Trainer's CEL rules on names and storage URIs, run on altered objects."""
    job = next(o for o in trainjob([OWN]) if o["kind"] == "TrainJob")
    assert cel_errors(job) == []
    bad = copy.deepcopy(job)
    bad["metadata"]["name"] = "9-lives"
    bad["spec"]["initializer"]["dataset"]["storageUri"] = "datasets/chat"
    messages = cel_errors(bad)
    assert any("RFC 1035" in m for m in messages), messages
    assert any("storageUri" in m for m in messages), messages


def test_names_that_kubernetes_refuses(tmp_path: Path) -> None:
    """lmspec names may start with a digit; Trainer's CEL rule and KServe's webhook refuse that."""
    src = (REPO / OWN / "train.yaml").read_text()
    src = src.replace("name: sft-gpu", "name: 7b-sft").replace("trainingJob: sft-gpu", "trainingJob: 7b-sft")
    src = src.replace("  name: chat\nspec:\n  model:", "  name: 2chat\nspec:\n  model:")
    (tmp_path / "m.yaml").write_text(src)
    with pytest.raises(ExportError, match=r"'7b-sft' is not a DNS-1035 label"):
        trainjob([str(tmp_path / "m.yaml")])
    with pytest.raises(ExportError, match=r"'2chat' is not a DNS-1035 label"):
        inferenceservice([str(tmp_path / "m.yaml")])


def test_webhook_rules() -> None:
    job = next(o for o in trainjob(["examples/iris"], image=IMAGE) if o["kind"] == "TrainJob")
    assert trainer_webhook_errors(job) == []
    assert not any(e["name"].startswith("PET_") for e in job["spec"]["trainer"]["env"])
    job["spec"]["trainer"]["env"].append({"name": "PET_NNODES", "value": "2"})
    assert trainer_webhook_errors(job)

    isvc = next(o for o in inferenceservice([OWN]) if o["kind"] == "InferenceService")
    assert kserve_webhook_errors(isvc) == []
    container = isvc["spec"]["predictor"]["containers"][0]
    assert {"name": "PROTOCOL", "value": "v2"} in container["env"]
    # Knative mode for concurrency; an HPA metric there would be refused.
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "Knative"
    wrong = copy.deepcopy(isvc)
    wrong["spec"]["predictor"]["scaleMetric"] = "cpu"
    assert kserve_webhook_errors(wrong)
    wrong = copy.deepcopy(isvc)
    wrong["spec"]["predictor"]["containers"][0]["env"].append({"name": "PYTHONPATH", "value": "/x"})
    assert kserve_webhook_errors(wrong)


def test_api_keys_come_from_a_secret() -> None:
    """No key in any exported object: the container reads the variable from a Secret."""
    (text,) = export("kserve", [OWN]).values()
    isvc = _objects(text)[-1]
    env = isvc["spec"]["predictor"]["containers"][0]["env"]
    assert {"name": "LMSPEC_API_KEYS", "valueFrom": {"secretKeyRef": {"name": "chat", "key": "LMSPEC_API_KEYS"}}} in env
    assert all("value" not in e for e in env if e["name"] != "PROTOCOL")


def test_trainjob_maps_resources_and_storage() -> None:
    runtime, cm, job = trainjob([OWN])
    t = job["spec"]["trainer"]
    assert (t["numNodes"], t["numProcPerNode"]) == (2, 4)
    assert t["resourcesPerNode"]["limits"] == {"nvidia.com/gpu": 4, "cpu": "16", "memory": "200Gi"}
    assert job["spec"]["initializer"] == {"dataset": {"storageUri": "hf://datasets/example/chat-jsonl"}}
    assert runtime["metadata"]["name"] == job["spec"]["runtimeRef"]["name"] == "lmspec-torch-dataset"
    assert [j["name"] for j in runtime["spec"]["template"]["spec"]["replicatedJobs"]] == ["dataset-initializer",
                                                                                          "node"]
    # The manifests sit in the workspace where their relative paths find the fetched data.
    assert t["command"][-3:] == ["/workspace/manifests/manifests.yaml", "--job", "sft-gpu"]
    assert cm["metadata"]["annotations"]["lmspec.io/needs-files"] == "/workspace/dataset/train.jsonl"
    node = job["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"][-1]
    pod = node["template"]["spec"]["template"]["spec"]
    assert pod["volumes"][0] == {"name": "workspace", "persistentVolumeClaim": {"claimName": "lmspec-workspace"}}
    assert pod["containers"][0]["volumeMounts"][0]["subPath"] == "team-a"
    assert pod["nodeSelector"] == {"gpu-type": "h100"}


@pytest.mark.parametrize(("args", "message"), [
    (["kubeflow", "examples/iris"], "names no container image: pass --image"),
    (["slurm", OWN], "Slurm fetches nothing before a job"),
    (["kubeflow", "examples/iris", "--image", "a b"], "contains whitespace"),
    (["kserve", "examples/iris", "examples/tinylm", "--image", IMAGE], "choose one with --service"),
    (["kubeflow", "-", "--image", IMAGE], "standard input"),
])
def test_cli_errors_are_one_line(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["export", *args])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output, result.output


def test_cli_writes_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["export", "slurm", "examples/iris", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    script = (tmp_path / "iris-train.sbatch").read_text()
    assert script == export("slurm", ["examples/iris"])["iris-train.sbatch"]
    node = next(line for line in script.splitlines() if line.startswith("NODE_COMMAND="))
    words = shlex.split(shlex.split(node.split("=", 1)[1])[0])
    assert words[:1] == ["torchrun"] and "--rdzv_backend" in words and words[-5:-2] == ["lmspec", "run",
                                                                                        "examples/iris"]


def test_invalid_manifests_are_reported_like_validate(tmp_path: Path) -> None:
    (tmp_path / "j.yaml").write_text((REPO / OWN / "train.yaml").read_text().replace(
        "replicas: {min: 1, max: 4}", "replicas: {min: 5, max: 4}"))
    result = CliRunner().invoke(main, ["export", "kserve", str(tmp_path / "j.yaml")])
    assert result.exit_code == 1
    assert "error[inferenceservice.replica-bounds]" in result.output and "Traceback" not in result.output


def test_slurm_maps_machines_and_extensions(tmp_path: Path) -> None:
    src = (REPO / OWN / "train.yaml").read_text()
    src = src.replace("      dataset: hf://datasets/example/chat-jsonl\n", "").replace(
        "workspace: pvc://lmspec-workspace/team-a\n", "workspace: /shared/lmspec\n", 1)
    (tmp_path / "train.yaml").write_text(src)
    (script,) = export("slurm", [str(tmp_path / "train.yaml")]).values()
    for line in ("#SBATCH --nodes=2", "#SBATCH --gpus-per-node=4", "#SBATCH --cpus-per-task=16",
                 "#SBATCH --mem=204800M", "#SBATCH --partition=gpu", "#SBATCH --time=04:00:00",
                 "#SBATCH --account=ml-team", "#SBATCH --chdir=/shared/lmspec", "export DS_ACCELERATOR=cuda"):
        assert line in script.splitlines(), line
    # With a working directory of its own, the script names the manifests by absolute path.
    assert f"lmspec run {tmp_path / 'train.yaml'} --job sft-gpu" in script
    (tmp_path / "train.yaml").write_text(src.replace("x-slurm: {partition: gpu", "x-slurm: {queue: gpu"))
    with pytest.raises(ExportError, match=r"x-slurm.queue is not a known key"):
        export("slurm", [str(tmp_path / "train.yaml")])
    (tmp_path / "train.yaml").write_text(src.replace("workspace: /shared/lmspec", "workspace: pvc://ws"))
    with pytest.raises(ExportError, match="Slurm needs a path every node mounts"):
        export("slurm", [str(tmp_path / "train.yaml")])


@pytest.mark.parametrize(("cluster", "mode", "error"), [
    ("{replicas: {min: 1, max: 4}, autoscaling: {metric: cpu, target: 70}}", "Standard", None),
    ("{replicas: {min: 0, max: 4}, autoscaling: {metric: rps, target: 20}}", "Knative", None),
    ("{replicas: {min: 0, max: 4}, autoscaling: {metric: memory, target: 512}}", None, "scale to zero"),
    ("{replicas: {min: 0, max: 4}}", None, "scale to zero"),
    ("{replicas: {min: 2}}", "Standard", None),
])
def test_kserve_deployment_mode_follows_the_metric(tmp_path: Path, cluster: str, mode: str | None,
                                                   error: str | None) -> None:
    (tmp_path / "s.yaml").write_text("apiVersion: lmspec.io/v1alpha1\nkind: InferenceService\nmetadata: {name: s}\n"
                                     f"spec:\n  model: {{path: export}}\n  cluster: {cluster}\n")
    if error is not None:
        with pytest.raises(ExportError, match=error):
            inferenceservice([str(tmp_path / "s.yaml")], image=IMAGE)
        return
    isvc = inferenceservice([str(tmp_path / "s.yaml")], image=IMAGE)[-1]
    assert isvc["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == mode
    assert all_errors(isvc) == []
