"""Parameter counts and ZeRO memory, against hand-computed values and the real builders."""

from __future__ import annotations

import shutil
import subprocess
import sys
from typing import Any

import pytest
from click.testing import CliRunner

from lmspec.cli import main
from lmspec.domain.plan import count_parameters, model_states, parse_bytes
from lmspec.v1alpha1 import ModelSpec, TrainingJobSpec

SIG = {"inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
       "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 3]}]}
LM_SIG = {"inputs": [{"name": "ids", "dtype": "int64", "shape": [-1, -1]}],
          "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1, -1]}]}


def model(arch: dict[str, Any], task: str = "classification") -> ModelSpec:
    return ModelSpec.model_validate(
        {"task": task, "architecture": arch, "signature": LM_SIG if task == "causal-lm" else SIG},
        strict=False)


def job(**spec: Any) -> TrainingJobSpec:
    return TrainingJobSpec.model_validate({"model": "m", "dataset": "d", "loss": {"type": "mse"}, **spec},
                                          strict=False)


def test_mlp_count() -> None:
    # 4·32+32 + 32·32+32 + 32·3+3
    assert count_parameters(model({"type": "mlp", "hiddenSizes": [32, 32]})).params == 1315


def test_gpt2_small_count() -> None:
    arch = {"type": "transformer", "vocabSize": 50257, "contextLength": 1024, "width": 768,
            "depth": 12, "heads": 12}
    assert count_parameters(model(arch, "causal-lm")).params == 124_439_808  # GPT-2 small
    hf = {"type": "huggingface", "modelType": "gpt2", "config": {}}
    assert count_parameters(model(hf, "causal-lm")).params == 124_439_808


def test_unknown_huggingface_type() -> None:
    c = count_parameters(model({"type": "huggingface", "modelType": "bert"}, "causal-lm"))
    assert c.params is None and "unknown" in c.note


@pytest.mark.parametrize("arch", [
    {"type": "mlp", "hiddenSizes": [7, 5], "activation": "gelu"},
    {"type": "sequential", "layers": [{"type": "linear", "outFeatures": 6}, {"type": "layerNorm"},
                                      {"type": "tanh"}, {"type": "linear", "outFeatures": 3, "bias": False}]},
    {"type": "transformer", "vocabSize": 61, "contextLength": 16, "width": 24, "depth": 2, "heads": 3,
     "mlpRatio": 2.5, "tieEmbeddings": False},
    {"type": "huggingface", "modelType": "llama", "config": {
        "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 100}},
])
def test_plan_agrees_with_the_builders(arch: dict[str, Any]) -> None:
    from lmspec.model.build import build_model

    spec = model(arch, "causal-lm" if arch["type"] in ("transformer", "huggingface") else "classification")
    built = build_model(spec)
    assert count_parameters(spec).params == sum(p.numel() for p in built.parameters())


def test_zero_formulas_by_hand() -> None:
    psi, big = 1_000_000, 1000
    mixed = dict(precision={"bf16": {"enabled": True}}, resources={"processesPerNode": 4})
    states = {s: model_states(job(**mixed), psi, big, stage=s, offload="none").device_bytes for s in range(4)}
    assert states == {0: 16 * psi, 1: 4 * psi + 3 * psi, 2: 2 * psi + 14 * psi // 4,
                      3: 16 * psi // 4 + 4 * big}
    off = model_states(job(**mixed), psi, big, stage=2, offload="optimizer")
    assert (off.device_bytes, off.host_bytes) == (2 * psi, 16 * psi // 4)
    both = model_states(job(**mixed), psi, big, stage=3, offload="optimizer+param")
    assert (both.device_bytes, both.host_bytes) == (4 * big, 18 * psi // 4)
    # fp32 Adam: 4 + 4 + 8 bytes, no master copy.
    assert model_states(job(), psi, big).device_bytes == 16 * psi
    assert model_states(job(zero={"stage": 1}, resources={"processesPerNode": 2}), psi, big).device_bytes \
        == 8 * psi + 4 * psi
    # SGD without momentum keeps no state.
    assert model_states(job(optimizer={"type": "sgd"}), psi, big).device_bytes == 8 * psi


def test_notes_example_7b() -> None:
    # 7B parameters, largest layer 0.5B, 8 ranks (the DeepSpeed estimator examples, offload rows).
    j = job(precision={"bf16": {"enabled": True}}, resources={"processesPerNode": 8})
    gib = 1024**3
    assert round(model_states(j, 7 * 10**9, 5 * 10**8, stage=2, offload="optimizer").device_bytes / gib, 1) == 13.0
    assert round(model_states(j, 7 * 10**9, 5 * 10**8, stage=3, offload="optimizer").device_bytes / gib, 1) == 3.5
    assert round(model_states(j, 7 * 10**9, 5 * 10**8, stage=3, offload="optimizer+param").device_bytes / gib, 1) == 1.9


def test_parse_bytes() -> None:
    assert parse_bytes("80GiB") == 80 * 1024**3
    assert parse_bytes("1.5GB") == 1_500_000_000


def test_plan_command_and_memory_fit(tmp_path: Any) -> None:
    from train_helpers import REPO

    # Examples are named by their own manifests, never what running them leaves below them.
    out = CliRunner().invoke(main, ["plan", *map(str, sorted((REPO / "examples" / "iris").glob("*.yaml")))])
    assert out.exit_code == 0, out.output
    assert "Model iris-mlp: 1,315 parameters" in out.output
    assert "*     0  none" in out.output
    job_file = tmp_path / "big.yaml"
    text = (REPO / "examples" / "tinylm" / "train.yaml").read_text()
    job_file.write_text(text.replace("accelerator: cpu}", "accelerator: cpu, memoryPerDevice: 100KiB}"))
    paths = [str(REPO / "examples" / "tinylm" / f) for f in ("model.yaml", "dataset.yaml")] + [str(job_file)]
    out = CliRunner().invoke(main, ["validate", *paths])
    assert "warning[trainingjob.memory-fit]" in out.output and out.exit_code == 0


def test_plan_one_job(tmp_path: Any) -> None:
    from train_helpers import REPO

    # A copy: the LoRA base is the pretraining job's export, which a run in the checkout may
    # have left there.
    for name in ("chat-base", "chat-lora"):
        shutil.copytree(REPO / "examples" / name, tmp_path / name,
                        ignore=shutil.ignore_patterns("runs", ".lmspec-cache", "__pycache__"))
    paths = [str(tmp_path / "chat-base"), str(tmp_path / "chat-lora")]
    both = CliRunner().invoke(main, ["plan", *paths])
    assert both.exit_code == 0 and "TrainingJob chat-base-pretrain" in both.output, both.output
    assert "TrainingJob chat-lora-train" in both.output
    one = CliRunner().invoke(main, ["plan", *paths, "--job", "chat-base-pretrain"])
    assert one.exit_code == 0, one.output
    assert "TrainingJob chat-base-pretrain" in one.output and "chat-lora" not in one.output
    assert one.output.count("Model chat-base:") == 1
    wrong = CliRunner().invoke(main, ["plan", *paths, "--job", "chat-base"])
    assert wrong.exit_code == 1
    assert "no TrainingJob named 'chat-base'" in wrong.output and "Traceback" not in wrong.output


@pytest.mark.integration
def test_plan_never_imports_torch() -> None:
    code = ("import sys; from lmspec.cli import run; "
            "import contextlib\nwith contextlib.suppress(SystemExit): run(['plan', 'examples/iris/*.yaml'])\n"
            "assert 'torch' not in sys.modules and 'deepspeed' not in sys.modules")
    from train_helpers import REPO

    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, capture_output=True)


def test_plan_warns_about_choices_known_to_be_slow_on_the_accelerator(tmp_path: Any) -> None:
    from train_helpers import REPO

    tiny = REPO / "examples" / "tinylm"
    text = (tiny / "train.yaml").read_text()
    slow = text.replace("zero: {stage: 2}", "zero: {stage: 3, offloadOptimizer: {device: cpu}}")
    assert slow != text
    for job, warned in ((slow, True), (text, False),
                        (slow.replace("accelerator: cpu}", "accelerator: cuda}"), False)):
        (tmp_path / "train.yaml").write_text(job)
        out = CliRunner().invoke(main, ["plan", str(tiny / "model.yaml"), str(tiny / "dataset.yaml"),
                                        str(tmp_path / "train.yaml")])
        assert out.exit_code == 0, out.output
        assert ("slow:" in out.output) is warned, out.output
        if warned:
            assert "ZeRO-3 with optimizer offload on CPU ranks" in out.output
