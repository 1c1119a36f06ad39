"""Pretrained bases without DeepSpeed: hub-cache resolution offline, digests and pins, counts from
safetensors headers, the validator's findings, LoRA targets, and the byte tokenizer in HF form."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lmspec import validate
from lmspec.domain.plan import count_parameters
from lmspec.domain.pretrained import BaseError, count_from_headers
from lmspec.model.adapters import AdapterError, attach_lora, count_params
from lmspec.model.hf_tokenizer import hf_tokenizer
from lmspec.model.pretrained import aggregate, digest_files, resolve
from lmspec.standard import Adapter, ModelSpec, Pretrained

COMMIT = "0123456789abcdef0123456789abcdef01234567"
SIG = {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]}],
       "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1, -1]}]}


def _model_yaml(arch: str) -> str:
    return ("apiVersion: lmspec.io/v1alpha1\nkind: Model\nmetadata: {name: m}\nspec:\n  task: causal-lm\n"
            f"  architecture: {arch}\n  signature: {json.dumps(SIG)}\n")


def _hub_cache(root: Path, base: Path) -> Path:
    """The layout huggingface_hub writes: blobs are omitted (snapshots hold real files, which the
    cache format allows), refs/main names the commit."""
    repo = root / "models--acme--tiny"
    shutil.copytree(base, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return root


def _no_export(_: str) -> Path | None:
    return None


def test_headers_count_equals_torch(base_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    total, largest, shapes = count_from_headers(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir)
    assert total == sum(p.numel() for p in model.parameters())
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == shapes
    assert 0 < largest < total
    assert len(list(base_dir.glob("model-*.safetensors"))) > 1  # sharded, with an index
    spec = ModelSpec.model_validate({"task": "causal-lm", "architecture": {"type": "pretrained", "path": "b"},
                                     "signature": SIG}, strict=False)
    assert count_parameters(spec, pretrained_dir=base_dir).params == total


def test_hf_reference_resolves_offline_from_the_cache(base_dir: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cache = _hub_cache(tmp_path / "hub", base_dir)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for uri in ("hf://acme/tiny@main", f"hf://acme/tiny@{COMMIT}"):
        base = resolve(Pretrained(type="pretrained", uri=uri), tmp_path, export_dir_of=_no_export)
        assert base.commit == COMMIT and base.repo_id == "acme/tiny"
        assert base.files == digest_files(base_dir) and base.sha256 == aggregate(base.files)
        assert "config.json" in base.files and "tokenizer.json" in base.files
    # A pinned digest is checked; another one is refused.
    pinned = Pretrained(type="pretrained", uri="hf://acme/tiny@main", sha256=base.sha256)
    assert resolve(pinned, tmp_path, export_dir_of=_no_export).sha256 == base.sha256
    with pytest.raises(BaseError, match="pins"):
        resolve(pinned.model_copy(update={"sha256": "0" * 64}), tmp_path, export_dir_of=_no_export)
    with pytest.raises(BaseError, match=r"not in the Hugging Face cache \(.*models--acme--other"):
        resolve(Pretrained(type="pretrained", uri="hf://acme/other@main"), tmp_path, export_dir_of=_no_export)

    # The validator: no revision is a warning; not cached while offline an error naming the cache.
    (tmp_path / "a.yaml").write_text(_model_yaml("{type: pretrained, uri: hf://acme/tiny}"))
    report = validate([str(tmp_path / "a.yaml")], check_env=True)
    assert [f.rule for f in report.findings if f.rule != "document.deprecated-version"] == ["model.hf-revision"]
    assert report.ok
    (tmp_path / "b.yaml").write_text(_model_yaml("{type: pretrained, uri: hf://acme/other@v1}"))
    report = validate([str(tmp_path / "b.yaml")], check_env=True)
    [finding] = [f for f in report.findings if f.rule != "document.deprecated-version"]
    assert finding.rule == "env.pretrained-base" and str(cache / "models--acme--other") in finding.message


@pytest.mark.integration
def test_run_refuses_a_missing_base_before_launch(tmp_path: Path) -> None:
    (tmp_path / "base").mkdir()
    (tmp_path / "base" / "config.json").write_text("{}")
    text = (_model_yaml("{type: pretrained, path: base}") +
            "---\napiVersion: lmspec.io/v1alpha1\nkind: Dataset\nmetadata: {name: d}\nspec:\n"
            "  sources: [{path: t.txt, format: text}]\n  preprocessing:\n"
            "    - {type: tokenize, tokenizer: {type: byte}}\n    - {type: pack, sequenceLength: 8}\n"
            "---\napiVersion: lmspec.io/v1alpha1\nkind: TrainingJob\nmetadata: {name: j}\nspec:\n"
            "  model: m\n  dataset: d\n  loss: {type: causalLm}\n  adapter: {type: lora}\n")
    (tmp_path / "m.yaml").write_text(text)
    (tmp_path / "t.txt").write_text("some text to train on\n")
    result = subprocess.run([sys.executable, "-m", "lmspec", "run", str(tmp_path / "m.yaml")],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode != 0
    # Refused by the pre-launch check, with the manifest's file and line, never a traceback.
    assert "m.yaml:6:42: error[env.pretrained-base]" in result.stdout
    assert "has no *.safetensors weights" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_a_base_trained_by_a_job_is_found_beside_that_job(base_dir: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A Model whose base is a TrainingJob's export, the job's manifest in another directory:
    the export is under the job's own run directory, wherever the command runs from."""
    from lmspec.train.rundir import RunError, select

    repo = Path(__file__).resolve().parents[2]
    for name in ("chat-base", "chat-lora"):
        shutil.copytree(repo / "examples" / name, tmp_path / "examples" / name,
                        ignore=shutil.ignore_patterns("runs", ".lmspec-cache", "__pycache__"))
    shutil.copytree(repo / "examples" / "data", tmp_path / "examples" / "data")
    monkeypatch.chdir(tmp_path)
    paths = ["examples/chat-base", "examples/chat-lora"]
    export = tmp_path / "examples" / "chat-base" / "runs" / "chat-base-pretrain" / "export"
    with pytest.raises(RunError, match="does not exist yet") as refused:
        select(paths, "chat-lora-train")
    assert str(export) in str(refused.value)
    shutil.copytree(base_dir, export)  # what the pretraining run writes: a Hugging Face model
    _, job = select(paths, "chat-lora-train")
    assert job.name == "chat-lora-train"


def test_lora_targets(base_dir: Path) -> None:
    from transformers import AutoModelForCausalLM

    def lm() -> torch.nn.Module:
        return AutoModelForCausalLM.from_pretrained(base_dir)

    with pytest.raises(AdapterError, match=r"does not have: qkv_proj; its linear layers are: .*q_proj"):
        attach_lora(lm(), Adapter(type="lora", target_modules=["q_proj", "qkv_proj"]))
    default = attach_lora(lm(), Adapter(type="lora", rank=2))
    names = [n for n, p in default.named_parameters() if p.requires_grad]
    assert names and all(("q_proj" in n or "v_proj" in n) and "lora_" in n for n in names)
    every = attach_lora(lm(), Adapter(type="lora", rank=2, target_modules="all-linear", modules_to_save=["lm_head"]))
    trained = {n.split(".")[-4] for n, p in every.named_parameters() if p.requires_grad and "lora_" in n}
    assert trained == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert any("lm_head" in n and p.requires_grad and "lora_" not in n for n, p in every.named_parameters())
    trainable, total = count_params(every)
    assert 0 < trainable < total


def test_byte_tokenizer_in_hugging_face_form() -> None:
    from lmspec.data import Tokenizer

    tok = hf_tokenizer({"type": "byte"})
    text = "Größe: 3 €\n"
    assert tok(text)["input_ids"] == Tokenizer.byte().encode(text)
    assert tok.decode(tok(text)["input_ids"]) == text


@pytest.mark.parametrize("adapter", [{"type": "lora", "rank": 4},
                                     {"type": "lora", "rank": 8, "targetModules": "all-linear",
                                      "modulesToSave": ["lm_head"]}])
def test_plan_counts_adapter_parameters_as_peft_does(base_dir: Path, adapter: dict[str, object]) -> None:
    from transformers import AutoModelForCausalLM

    from lmspec.domain.plan import lora_parameters, model_states
    from lmspec.standard import TrainingJobSpec

    spec = TrainingJobSpec.model_validate({"model": "m", "dataset": "d", "loss": {"type": "causalLm"},
                                           "adapter": adapter}, strict=False)
    assert spec.adapter is not None
    trainable, _ = count_params(attach_lora(AutoModelForCausalLM.from_pretrained(base_dir), spec.adapter))
    assert lora_parameters(spec, base_dir) == trainable
    total, largest, _ = count_from_headers(base_dir)
    # Frozen weights cost 4 bytes each; the adapter's 16 (weights, gradients, Adam moments).
    states = model_states(spec, total, largest, trainable=trainable)
    assert states.device_bytes == 4 * (total - trainable) + 16 * trainable
