"""``lmspec export kserve --runtime huggingface``: what the predictor carries, where storageUri
points, and every refusal as one line on the command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from upstream import all_errors

from lmspec.cli import main
from lmspec.cluster import inferenceservice

REPO = Path(__file__).resolve().parents[2]
HF = REPO / "tests/cluster/hf/chat.yaml"
SERVICE = HF.read_text().split("---\n")[-1]


@pytest.fixture(autouse=True)
def at_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


def _export(path: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["export", "kserve", str(path), "--runtime", "huggingface", *extra])
    return result.exit_code, result.output


def _variant(tmp_path: Path, *replacements: tuple[str, str], text: str | None = None) -> Path:
    src = HF.read_text() if text is None else text
    for old, new in replacements:
        assert old in src, old
        src = src.replace(old, new)
    (tmp_path / "m").mkdir(exist_ok=True)
    out = tmp_path / "m" / "chat.yaml"
    out.write_text(src)
    return out


def _model(isvc: dict[str, Any]) -> dict[str, Any]:
    model: dict[str, Any] = isvc["spec"]["predictor"]["model"]
    return model


def test_predictor_is_the_huggingface_model_spec() -> None:
    (isvc,) = inferenceservice([str(HF)], runtime="huggingface")
    assert all_errors(isvc) == []
    predictor = isvc["spec"]["predictor"]
    assert "containers" not in predictor and "volumes" not in predictor
    assert _model(isvc)["modelFormat"] == {"name": "huggingface"}
    # The manifests sit in hf/ below the workspace root (their Dataset reads ../dataset/).
    assert _model(isvc)["storageUri"] == "pvc://lmspec-workspace/team-a/hf/runs/chat-sft/export"
    assert _model(isvc)["args"] == ["--model_name=chat", "--max_model_len=2048", "--dtype=bfloat16",
                                    "--max-num-seqs=64", "--tensor-parallel-size=2"]
    assert _model(isvc)["resources"]["limits"] == {"cpu": "8", "memory": "48Gi", "nvidia.com/gpu": 2}
    assert (predictor["minReplicas"], predictor["maxReplicas"], predictor["scaleMetric"]) == (1, 3, "cpu")
    assert predictor["timeout"] == 120 and predictor["nodeSelector"] == {"gpu-type": "l4"}


def test_defaults_leave_the_runtime_its_own(tmp_path: Path) -> None:
    """Without maxModelLength, with dtype auto and one device the runtime keeps its own defaults."""
    path = _variant(tmp_path, ("  engine: {name: vllm, maxModelLength: 2048, maxSequences: 64}\n", ""),
                    ("placement: {device: cuda, dtype: bfloat16, deviceIndices: [0, 1]}", "placement: {device: cuda}"),
                    ("../dataset/train.jsonl", "data/train.jsonl"))
    (isvc,) = inferenceservice([str(path)], runtime="huggingface")
    assert _model(isvc)["args"] == ["--model_name=chat", "--max-num-seqs=32"]
    assert _model(isvc)["storageUri"] == "pvc://lmspec-workspace/team-a/runs/chat-sft/export"
    assert all_errors(isvc) == []


def test_a_cpu_placement_gets_no_vllm_arguments_and_the_export_says_what_it_leaves(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _variant(tmp_path, ("placement: {device: cuda, dtype: bfloat16, deviceIndices: [0, 1]}",
                               "placement: {device: cpu, dtype: float32}\n"
                               "  generation: {maxTokens: 64, temperature: 0.7}"),
                    ("engine: {name: vllm, maxModelLength: 2048, maxSequences: 64}",
                     "engine: {maxModelLength: 2048, maxSequences: 64}"),
                    ("protocols: [openai]", "protocols: [openai, oip-v2]"),
                    ("../dataset/train.jsonl", "data/train.jsonl"))
    (isvc,) = inferenceservice([str(path)], runtime="huggingface")
    assert _model(isvc)["args"] == ["--model_name=chat", "--max_model_len=2048", "--dtype=float32"]
    err = capsys.readouterr().err
    assert 'spec.generation {"maxTokens": 64, "temperature": 0.7} is not carried over' in err
    assert '"maxTokens": 256' in err and "are not enforced" in err and "requestTimeoutSeconds" in err
    assert "oip-v2 is not served" in err and "spec.engine.maxSequences (64) is not passed" in err
    # A GPU service that declares no generation defaults hears only of the limits.
    inferenceservice([str(HF)], runtime="huggingface")
    err = capsys.readouterr().err
    assert "spec.limits" in err and "spec.generation" not in err and "maxSequences" not in err


def _hf_dir(directory: Path, *, architecture: str | None = None, adapter_only: bool = False) -> None:
    directory.mkdir(parents=True)
    if adapter_only:
        (directory / "adapter_config.json").write_text("{}")
        return
    (directory / "config.json").write_text(json.dumps({"model_type": "llama"}))
    if architecture is not None:  # an lmspec export of a Model with this architecture
        (directory / "export.json").write_text(json.dumps({"format": 2}))
        (directory / "model.yaml").write_text(yaml.safe_dump({"spec": {"architecture": {"type": architecture}}}))


def _path_service(tmp_path: Path, model_path: str) -> Path:
    text = SERVICE.replace("model: {trainingJob: chat-sft}", f"model: {{path: {model_path}}}")
    return _variant(tmp_path, text=text)


def test_path_to_a_huggingface_directory(tmp_path: Path) -> None:
    _hf_dir(tmp_path / "m" / "models" / "chat", architecture="pretrained")
    (isvc,) = inferenceservice([str(_path_service(tmp_path, "models/chat"))], runtime="huggingface")
    assert _model(isvc)["storageUri"] == "pvc://lmspec-workspace/team-a/models/chat"
    assert all_errors(isvc) == []


@pytest.mark.parametrize(("setup", "message"), [
    (lambda d: None, "does not exist here"),
    (lambda d: d.mkdir(parents=True), "holds no config.json"),
    (lambda d: _hf_dir(d, adapter_only=True), "a LoRA adapter directory"),
    (lambda d: _hf_dir(d, architecture="transformer"), "lmspec's own transformer architecture"),
])
def test_path_refusals(tmp_path: Path, setup: Any, message: str) -> None:
    setup(tmp_path / "m" / "models" / "chat")
    code, output = _export(_path_service(tmp_path, "models/chat"))
    assert code == 1, output
    assert "spec.model.path" in output and message in output, output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output


@pytest.mark.parametrize(("replacements", "field", "message"), [
    ([("  cluster:\n    nodeSelector", "  auth: {apiKeys: [{env: KEYS}]}\n  cluster:\n    nodeSelector")],
     "spec.auth.apiKeys", "checks no API keys"),
    ([("    storage: {workspace: pvc://lmspec-workspace/team-a}\n    replicas", "    replicas")],
     "spec.cluster.storage.workspace", "pvc://CLAIM"),
    ([("    storage: {workspace: pvc://lmspec-workspace/team-a}\n    replicas",
       "    storage: {workspace: /shared/lmspec}\n    replicas")],
     "spec.cluster.storage.workspace", "pvc://CLAIM"),
    ([("adapter: {type: lora, rank: 16, exportMerged: true}", "adapter: {type: lora, rank: 16}")],
     "spec.adapter.exportMerged", "only the LoRA adapter"),
    ([("output: {dir: runs/chat-sft}", "output: {dir: ../../runs/chat-sft}")],
     "spec.output.dir", "out of the workspace"),
    ([("output: {dir: runs/chat-sft}", "output: {dir: /runs/chat-sft}")], "spec.output.dir", "is absolute"),
    ([("protocols: [openai]", "protocols: [oip-v2]"),
      ("  engine: {name: vllm, maxModelLength: 2048, maxSequences: 64}\n", ""),
      (", deviceIndices: [0, 1]}", "}")],
     "spec.protocols", "OpenAI API only"),
    ([("architecture: {type: pretrained, uri: \"hf://HuggingFaceTB/SmolLM2-135M-Instruct@main\"}",
       "architecture: {type: huggingface, modelType: llama, config: {vocab_size: 256}}"),
      ("  adapter: {type: lora, rank: 16, exportMerged: true}\n", ""),
      ("  chat: {format: messages, sequenceLength: 1024}\n",
       "  features: [{name: text, dtype: string}]\n  preprocessing:\n    - {type: tokenize, tokenizer: {type: byte}}\n"
       "    - {type: pack, sequenceLength: 128}\n"),
      ("shape: [-1, -1, 49152]", "shape: [-1, -1, 256]")],
     "spec.model.trainingJob", "byte tokenizer"),
])
def test_refusals(tmp_path: Path, replacements: list[tuple[str, str]], field: str, message: str) -> None:
    code, output = _export(_variant(tmp_path, *replacements))
    assert code == 1, output
    assert field in output and message in output, output
    assert "Traceback" not in output and len(output.strip().splitlines()) == 1, output


@pytest.mark.parametrize(("path", "message"), [
    ("tests/cluster/manifests", "spec.auth.apiKeys"),       # a causal LM, but behind API keys
])
def test_refusals_of_repository_manifests(path: str, message: str) -> None:
    code, output = _export(REPO / path)
    assert code == 1 and message in output and "Traceback" not in output, output


def test_classifier_and_native_models_are_refused(tmp_path: Path) -> None:
    """An lmspec-native causal LM (byte tokenizer, lmspec's transformer) and a classifier."""
    own = (REPO / "tests/cluster/manifests/train.yaml").read_text().replace(
        "  auth:\n    apiKeys: [{env: LMSPEC_API_KEYS}]\n", "")
    code, output = _export(_variant(tmp_path, text=own))
    assert code == 1 and "architecture transformer" in output and "spec.model.trainingJob" in output, output
    assert len(output.strip().splitlines()) == 1, output
    iris = tmp_path / "iris"
    iris.mkdir()
    for f in (REPO / "examples/iris").glob("*.yaml"):
        (iris / f.name).write_text(f.read_text())
    code, output = _export(iris)
    assert code == 1 and "task classification" in output and "Traceback" not in output, output


def test_image_is_refused() -> None:
    code, output = _export(HF, "--image", "registry.example.com/x:1")
    assert code == 1 and "--image applies to --runtime lmspec" in output, output
