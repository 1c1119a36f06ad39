"""What ``lmspec validate --check-env`` accepts, ``lmspec run`` runs; what it refuses, a run refuses
before it prepares data or loads a model: the run's pre-flight is the validator's environment layer.

The base is a real tiny Llama-style checkpoint (sharded safetensors, a tokenizer with a chat
template); the other side of each agreement is the real component (transformers, peft)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

import lmspec
from lmspec.train.rundir import select
from lmspec.validator.core import ValidationFailed

SIG = {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]}],
       "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1, -1]}]}
RECORD = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}


def _project(directory: Path, base: Path | str, *, adapter: dict[str, Any] | None = None,
             chat: dict[str, Any] | None = None) -> Path:
    """A chat fine-tuning project: Model (the base), a chat Dataset without a tokenizer of its
    own (it uses the base's), and a TrainingJob."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "chat.jsonl").write_text(json.dumps(RECORD) + "\n")
    model = {"apiVersion": "lmspec.io/v1alpha1", "kind": "Model", "metadata": {"name": "base"},
             "spec": {"task": "causal-lm", "architecture": {"type": "pretrained", "path": str(base)},
                      "signature": SIG}}
    data = {"apiVersion": "lmspec.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "chat"},
            "spec": {"sources": [{"path": "chat.jsonl"}], "chat": {"sequenceLength": 64, **(chat or {})}}}
    spec: dict[str, Any] = {"model": "base", "dataset": "chat", "loss": {"type": "causalLm"}}
    if adapter is not None:
        spec["adapter"] = adapter
    job = {"apiVersion": "lmspec.io/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "ft"}, "spec": spec}
    path = directory / "m.yaml"
    path.write_text(yaml.safe_dump_all([model, data, job], sort_keys=False))
    return path


def _refused(path: Path, **kwargs: Any) -> list[tuple[str, str]]:
    """(rule, pointer) of every error that both the validator and the run's pre-flight report."""
    report = lmspec.validate([str(path)], check_env=True, **kwargs)
    found = sorted((f.rule, f.pointer) for f in report.findings if f.severity == "error")
    try:
        select([str(path)], None, check_env=True, **kwargs)
    except ValidationFailed as exc:
        assert sorted((f.rule, f.pointer) for f in exc.report.findings if f.severity == "error") == found
    else:
        assert found == [], f"validate --check-env refuses {found}, the run's pre-flight does not"
    return found


# --- LoRA target modules ----------------------------------------------------------------------


@pytest.mark.parametrize("targets", [["q_proj", "v_proj"], ["o_proj", "lm_head", "embed_tokens"], ["c_attn"],
                                     ["q_proj", "norm"], ["self_attn"]])
def test_lora_targets_are_checked_from_the_headers_as_peft_attaches_them(
        base_dir: Path, tmp_path: Path, targets: list[str]) -> None:
    from lmspec.model.adapters import AdapterError, attach_lora
    from lmspec.model.build import load_pretrained
    from lmspec.standard import Adapter

    path = _project(tmp_path, base_dir, adapter={"type": "lora", "targetModules": targets})
    found = _refused(path, allow_outside=[str(base_dir)])
    try:
        attach_lora(load_pretrained(base_dir).lm, Adapter.model_validate({"type": "lora", "targetModules": targets}))
        attached = True
    except AdapterError:
        attached = False
    assert (found == []) == attached, (found, attached)
    if not attached:
        assert found == [("env.adapter-modules", "/spec/adapter/targetModules")]


def test_modules_to_save_the_base_lacks_are_refused_before_the_run(base_dir: Path, tmp_path: Path) -> None:
    path = _project(tmp_path, base_dir, adapter={"type": "lora", "modulesToSave": ["score"]})
    assert _refused(path, allow_outside=[str(base_dir)]) == [("env.adapter-modules", "/spec/adapter/modulesToSave")]
    report = lmspec.validate([str(path)], check_env=True, allow_outside=[str(base_dir)])
    (finding,) = [f for f in report.findings if f.rule != "document.deprecated-version"]  # a v1alpha1 file
    assert finding.file == str(path) and "score" in path.read_text().splitlines()[finding.line - 1]
    assert "score" in finding.message and str(base_dir) in finding.message


# --- the base's chat template -----------------------------------------------------------------


def test_a_base_template_without_generation_markers_is_refused_before_the_run(base_dir: Path, tmp_path: Path) -> None:
    plain = shutil.copytree(base_dir, tmp_path / "plain")
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    config = json.loads((plain / "tokenizer_config.json").read_text())
    config["chat_template"] = "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    (plain / "tokenizer_config.json").write_text(json.dumps(config))
    path = _project(tmp_path / "p", plain)
    assert _refused(path, allow_outside=[str(plain)]) == [("env.chat-template", "/spec/chat")]
    # Training the whole conversation needs no markers.
    fine = _project(tmp_path / "q", plain, chat={"loss": {"trainOnPrompt": True}})
    assert _refused(fine, allow_outside=[str(plain)]) == []
    # The base's own template has them.
    assert _refused(_project(tmp_path / "r", base_dir), allow_outside=[str(base_dir)]) == []


# --- files outside the project ----------------------------------------------------------------


def test_a_base_outside_the_project_is_refused_by_both_unless_allowed(base_dir: Path, tmp_path: Path) -> None:
    path = _project(tmp_path, base_dir)
    assert _refused(path) == [("env.outside-project", "/spec/architecture/path")]
    assert _refused(path, allow_outside=[str(base_dir.parent)]) == []


def test_a_chat_template_outside_the_project_is_not_read(base_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "t.jinja").write_text("{% generation %}{{ messages }}{% endgeneration %}")
    path = _project(tmp_path / "p", base_dir, chat={"templatePath": str(outside / "t.jinja")})
    assert _refused(path, allow_outside=[str(base_dir)]) == [("env.outside-project", "/spec/chat/templatePath")]
    assert _refused(path, allow_outside=[str(base_dir), str(outside)]) == []


# --- a huggingface architecture's config ------------------------------------------------------


@pytest.mark.parametrize(("model_type", "config"), [
    ("llama", {"num_attention_heads": 0}),
    ("gpt2", {"n_head": 0}),
    ("gpt2", {"num_attention_heads": 0}),             # GPT-2's alias of n_head
    ("llama", {"num_key_value_heads": 3}),
    ("gpt2", {"n_embd": 30, "n_head": 4}),
    ("llama", {"hidden_size": 30}),
    ("mistral", {"hidden_size": 28}),                  # heads 7 wide: no rotary pairs
    ("llama", {"vocab_size": 0}),
    ("llama", {"hidden_size": -32}),
    ("llama", {}),
    ("llama", {"num_key_value_heads": 2, "head_dim": None}),
    ("gpt2", {"n_embd": 32, "n_head": 4, "n_inner": None}),
])
def test_huggingface_config_is_refused_exactly_when_transformers_cannot_build_it(
        model_type: str, config: dict[str, Any]) -> None:
    import torch

    from lmspec.model.build import ModelError, build_model
    from lmspec.standard import Model

    sizes: dict[str, Any] = {"n_embd": 32, "n_head": 4, "n_layer": 1, "vocab_size": 64} if model_type == "gpt2" \
        else {"hidden_size": 32, "num_attention_heads": 4, "num_hidden_layers": 1, "intermediate_size": 16,
              "vocab_size": 64}
    doc = {"apiVersion": "lmspec.io/v1alpha1", "kind": "Model", "metadata": {"name": "m"},
           "spec": {"task": "causal-lm", "signature": SIG,
                    "architecture": {"type": "huggingface", "modelType": model_type, "config": sizes | config}}}
    report = lmspec.validate_text(yaml.safe_dump(doc))
    refused = [f.rule for f in report.findings if f.severity == "error"]
    try:
        with warnings.catch_warnings():  # a zero-sized layer warns before it fails
            warnings.simplefilter("ignore")
            model = build_model(Model.model_validate(doc, by_alias=True).spec)
            model(torch.tensor([[1, 2, 3]]))
        built = True
    except (ModelError, RuntimeError, ValueError, ZeroDivisionError):
        built = False
    assert (refused == []) == built, (refused, built)
    assert set(refused) <= {"model.hf-config"}


def test_lmspec_run_refuses_before_it_prepares_data_or_loads_the_model(base_dir: Path, tmp_path: Path) -> None:
    """The command itself: confined like ``validate --check-env``, widened by the same option,
    and refused by the environment layer before any run directory or data cache is written."""
    from click.testing import CliRunner

    from lmspec.cli import main

    path = _project(tmp_path, base_dir, adapter={"type": "lora", "targetModules": ["c_attn"]})
    out = CliRunner().invoke(main, ["run", str(path)])
    assert out.exit_code == 1 and "error[env.outside-project]" in out.output
    out = CliRunner().invoke(main, ["run", str(path), "--allow-outside", str(base_dir)])
    assert out.exit_code == 1 and "error[env.adapter-modules]" in out.output, out.output
    assert "c_attn" in out.output and "Traceback" not in out.output
    assert not (tmp_path / "runs").exists() and not (tmp_path / ".lmspec-cache").exists()
