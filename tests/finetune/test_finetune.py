"""Fine-tuning a pretrained base with two real DeepSpeed CPU ranks: LoRA at ZeRO 0, 2 and 3 and
full fine-tuning at ZeRO-3 with optimizer offload. Each launch checks several things, since
starting ranks is slow: the held-back loss fell, the lock records the base, the exported adapter
reloads with the trained weights, the merged or full export loaded by plain ``transformers`` gives
the trained engine's logits, and a ZeRO-3 export (parameters loaded and kept partitioned) holds
every tensor of the base. Merged and full exports are streamed into several small shards, and
rank 0 reports holding less than the model at once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from train_helpers import lmspec_run, write_manifests

from lmspec.domain.pretrained import count_from_headers
from lmspec.model.adapters import load_adapter
from lmspec.model.export import load_exported
from lmspec.model.hf_shards import MAX_SHARD_BYTES_ENV
from lmspec.train.check import read_check_sample
from lmspec.train.faults import kill_after

pytestmark = [pytest.mark.integration, pytest.mark.slow]

LICENCE = Path(__file__).resolve().parents[2] / "examples" / "data" / "licenses" / "GPL-3.txt"
SIG = {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]}],
       "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1, -1]}]}
LORA = {"type": "lora", "rank": 8, "alpha": 16, "targetModules": "all-linear"}


def _manifests(directory: Path, base: Path, run_dir: Path, data_spec: dict[str, Any] | None = None,
               **job: Any) -> Path:
    model = {"apiVersion": "lmspec.io/v1alpha1", "kind": "Model", "metadata": {"name": "base"},
             "spec": {"task": "causal-lm", "architecture": {"type": "pretrained", "path": str(base)},
                      "signature": SIG}}
    data = {"apiVersion": "lmspec.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "gpl"},
            "spec": {"sources": [{"path": str(LICENCE), "format": "text"}],
                     "features": [{"name": "text", "dtype": "string"}],
                     "preprocessing": [{"type": "tokenize",
                                        "tokenizer": {"type": "file", "path": str(base / "tokenizer.json")}},
                                       {"type": "pack", "sequenceLength": 32}],
                     "splits": {"ratios": {"train": 0.8, "validation": 0.1, "test": 0.1}, "seed": 0}}}
    if data_spec is not None:
        data["spec"] = data_spec
    spec = {"model": "base", "dataset": "gpl", "loss": {"type": "causalLm"},
            "optimizer": {"type": "adamw", "lr": 0.01}, "stopping": {"maxSteps": 10},
            "batch": {"microBatchSize": 4}, "resources": {"processesPerNode": 2},
            "validation": {"interval": 10}, "evaluation": {"metrics": ["loss"]},
            "logging": {"interval": 1, "progressBar": False}, "seed": 1,
            "output": {"dir": str(run_dir)}, **job}
    trainjob = {"apiVersion": "lmspec.io/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "ft"}, "spec": spec}
    return write_manifests(directory, model, data, trainjob)


def _base(base_dir: Path) -> tuple[str, str]:
    """The shared base lies outside each test's project: a run reads it only when allowed."""
    return "--allow-outside", str(base_dir)


def _next_token_loss(logits: np.ndarray, ids: np.ndarray) -> float:
    return float(F.cross_entropy(torch.from_numpy(logits[:, :-1]).reshape(-1, logits.shape[-1]),
                                 torch.from_numpy(ids[:, 1:]).reshape(-1)))


def _logits(model: torch.nn.Module, ids: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        out: np.ndarray = model.eval()(input_ids=torch.from_numpy(ids)).logits.numpy()
    return out


CASES = {
    "lora-zero0": {"zero": {"stage": 0}, "adapter": LORA},
    "lora-zero2": {"zero": {"stage": 2}, "adapter": {**LORA, "exportMerged": True},
                   "checkpointing": {"interval": 4, "keepLast": 1}},
    "lora-zero3": {"zero": {"stage": 3}, "adapter": {**LORA, "exportMerged": True}},
    "full-zero3-offload": {"zero": {"stage": 3, "offloadOptimizer": {"device": "cpu"}}},
}

SHARD_BYTES = 48_000
"""Export shard size of the full fine-tuning case: about a third of the tiny base's fp32 weights,
so the export streams into several shards."""


FINISHED: dict[str, Path] = {}
"""Run directories of the cases above, reused as the uninterrupted reference of the resume test."""


@pytest.mark.parametrize("name", list(CASES))
def test_finetune_two_ranks(tmp_path: Path, base_dir: Path, name: str) -> None:
    from safetensors.numpy import load_file
    from transformers import AutoModelForCausalLM

    job = CASES[name]
    run_dir = tmp_path / "run"
    stage = job["zero"]["stage"]
    total, _, base_shapes = count_from_headers(base_dir)
    env = {MAX_SHARD_BYTES_ENV: str(SHARD_BYTES)}
    result = lmspec_run(str(_manifests(tmp_path, base_dir, run_dir, **job)), *_base(base_dir), env=env, timeout=480)
    assert result.returncode == 0, result.stderr[-4000:]
    if stage == 3:  # each rank held a partition of the parameters only
        assert len(list((run_dir / "checkpoints" / "step10").glob("zero_pp_rank_*_model_states.pt"))) == 2

    FINISHED[name] = run_dir
    lock = json.loads((run_dir / "lock.json").read_text())
    # Paths in lock.json are relative to the run directory.
    assert lock["worldSize"] == 2 and (run_dir / lock["base"]["directory"]).resolve() == base_dir.resolve()
    assert not Path(lock["base"]["directory"]).is_absolute()
    assert set(lock["base"]["files"]) >= {"config.json", "tokenizer.json", "model.safetensors.index.json"}
    assert lock["base"]["loadedPartitioned"] is (stage == 3)
    params = lock["parameters"]
    export = run_dir / "export"
    info = json.loads((export / "export.json").read_text())
    assert info["format"] == 2 and info["base"]["sha256"] == lock["base"]["sha256"]

    sample = read_check_sample(run_dir)
    ids = sample.inputs
    base = AutoModelForCausalLM.from_pretrained(base_dir)
    assert sample.argmax is not None and sample.argmax.shape == ids.shape
    # Held-back (test split) next-token loss fell: the export (adapter or full) against the base.
    with torch.no_grad():
        trained = load_exported(export).model(torch.from_numpy(ids)).float().numpy()
    assert (trained.argmax(-1) == sample.argmax).mean() > 0.99  # the export is the trained engine
    assert _next_token_loss(trained, ids) < _next_token_loss(_logits(base, ids), ids) - 0.05

    if "adapter" in job:
        assert 0 < params["trainable"] < params["total"] // 5
        adapter = load_file(str(export / "adapter" / "adapter_model.safetensors"))
        lora_b = [v for k, v in adapter.items() if "lora_B" in k]
        assert len(lora_b) == 2 * 7 and all(np.abs(v).max() > 0 for v in lora_b)  # trained from zero
        config = json.loads((export / "adapter" / "adapter_config.json").read_text())
        assert config["r"] == 8 and config["peft_type"] == "LORA"
        # The adapter reloaded on the base reproduces the trained engine: its weights are the trained ones.
        reloaded = load_adapter(base, export / "adapter")
        np.testing.assert_allclose(_logits(reloaded, ids), trained, rtol=0, atol=1e-4)
        merged_expected = job["adapter"].get("exportMerged", False)
        assert (export / "config.json").is_file() is merged_expected
        if not merged_expected:
            return
    else:
        assert params["trainable"] == params["total"] == total
    shapes = count_from_headers(export)[2]
    assert shapes == base_shapes  # every tensor present, named and shaped as the base's, none empty
    # Streamed into several shards; rank 0 never held more than a shard and one parameter.
    index = json.loads((export / "model.safetensors.index.json").read_text())
    stats = json.loads((run_dir / "summary.json").read_text())["export"]
    weight_bytes = 4 * total  # fp32
    assert stats["weightBytes"] == index["metadata"]["total_size"] == weight_bytes
    assert stats["shards"] == len(set(index["weight_map"].values())) >= 3
    assert sorted(set(index["weight_map"].values()))[0] == f"model-00001-of-{stats['shards']:05d}.safetensors"
    largest = 4 * max(int(np.prod(s)) for s in base_shapes.values())
    assert 0 < stats["peakHeldBytes"] <= SHARD_BYTES + largest < weight_bytes
    assert not list(run_dir.glob(".export-weights.*"))  # the staging directory is gone
    # config.json says what the shards hold (the fp32 weights), so dtype="auto" casts nothing.
    assert json.loads((export / "config.json").read_text())["dtype"] == "float32"
    plain = AutoModelForCausalLM.from_pretrained(export)
    np.testing.assert_allclose(_logits(plain, ids), trained, rtol=0, atol=1e-4)
    for f in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"):
        assert (export / f).is_file(), f


def test_lora_kill_and_resume_gives_the_same_adapter(tmp_path: Path, base_dir: Path) -> None:
    from safetensors.numpy import load_file

    job = CASES["lora-zero2"]
    whole = FINISHED.get("lora-zero2")
    if whole is None:  # run alone: make the uninterrupted reference here
        whole = tmp_path / "whole"
        done = lmspec_run(str(_manifests(tmp_path / "w", base_dir, whole, **job)), *_base(base_dir), timeout=480)
        assert done.returncode == 0, done.stderr[-3000:]
    broken = tmp_path / "broken"
    manifests = _manifests(tmp_path / "b", base_dir, broken, **job)
    killed = lmspec_run(str(manifests), *_base(base_dir), env=kill_after(rank=1, step=6), timeout=480)
    assert killed.returncode != 0 and not (broken / "export").exists()
    resumed = lmspec_run(str(manifests), "--resume", *_base(base_dir), timeout=480)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "(step 4)" in resumed.stdout
    a = load_file(str(whole / "export" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(broken / "export" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and any("lora_B" in k for k in a)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


DECLARED_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|assistant|> ' }}{% generation %}{{ message['content'] + '<|endoftext|>' }}{% endgeneration %}{{ '\\n\\n' }}"
    "{% else %}{{ '<|' + message['role'] + '|> ' + message['content'] + '<|endoftext|>\\n\\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|assistant|> ' }}{% endif %}"
)
"""A chat template unlike the base's (a space after the role, blank lines between turns)."""


def test_export_carries_the_datasets_chat_template(tmp_path: Path, base_dir: Path) -> None:
    """A chat fine-tune whose Dataset declares its own template exports a tokenizer with that
    template, so servers format requests as training did; one rank at ZeRO-3, so the streamed
    export fits one ``model.safetensors``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    (tmp_path / "template.jinja").write_text(DECLARED_TEMPLATE)
    qa = Path(__file__).resolve().parents[2] / "examples" / "data" / "python-docs-qa.jsonl"
    data = {"sources": [{"path": str(qa)}],
            "chat": {"sequenceLength": 64, "templatePath": "template.jinja"},  # beside the manifests
            "splits": {"ratios": {"train": 0.8, "validation": 0.1, "test": 0.1}, "seed": 0}}
    manifests = _manifests(tmp_path, base_dir, tmp_path / "run", data, zero={"stage": 3},
                           resources={"processesPerNode": 1}, stopping={"maxSteps": 2},
                           validation={"interval": 2})
    result = lmspec_run(str(manifests), *_base(base_dir), timeout=480)
    assert result.returncode == 0, result.stderr[-4000:]

    export = tmp_path / "run" / "export"
    assert (export / "chat_template.jinja").read_text() == DECLARED_TEMPLATE
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is a list?"},
                {"role": "assistant", "content": "A sequence."}, {"role": "user", "content": "And a dict?"}]
    base = AutoTokenizer.from_pretrained(base_dir)
    exported = AutoTokenizer.from_pretrained(export)
    declared = base.apply_chat_template(messages, chat_template=DECLARED_TEMPLATE, tokenize=False,
                                        add_generation_prompt=True)
    assert exported.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) == declared
    assert base.apply_chat_template(messages, tokenize=False, add_generation_prompt=True) != declared
    # The streamed export in one file loads and reproduces the trained engine.
    assert (export / "model.safetensors").is_file() and not (export / "model.safetensors.index.json").exists()
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["export"]["shards"] == 1
    sample = read_check_sample(tmp_path / "run")
    # config.json says what the shards hold (the fp32 weights), so dtype="auto" casts nothing.
    assert json.loads((export / "config.json").read_text())["dtype"] == "float32"
    plain = AutoModelForCausalLM.from_pretrained(export)
    np.testing.assert_allclose(sample.select(_logits(plain, sample.inputs)), sample.outputs, rtol=0, atol=1e-4)
