"""Chat data through real models: packing keeps conversations apart, and the loss of an
optimizer step is the mean over its trained tokens however the step is cut into micro batches."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from chat_helpers import dataset, qa, write_jsonl, write_tokenizer

from lmspec.data import prepare
from lmspec.model.build import CausalLM


def _records(n: int) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        q, a = qa(i)
        msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        if i % 3 == 1:  # conversations differ in their number of trained tokens
            msgs += [{"role": "user", "content": "More?"}, {"role": "assistant", "content": "No. " * (i % 5)}]
        out.append({"messages": msgs})
    return out


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any, int]:
    d = tmp_path_factory.mktemp("chat")
    write_tokenizer(d / "tok")
    write_jsonl(d / "c.jsonl", _records(10))
    ratios = {"ratios": {"train": 1.0, "validation": 0.0, "test": 0.0}}
    chat = {"tokenizer": {"type": "huggingface", "path": "tok"}, "sequenceLength": 160}
    packed = prepare(dataset({**chat, "packing": True}, [{"path": "c.jsonl"}], splits=ratios), d,
                     model_task="causal-lm")
    single = prepare(dataset(chat, [{"path": "c.jsonl"}], splits=ratios), d, model_task="causal-lm")
    vocab = json.loads((d / "tok" / "tokenizer.json").read_text())
    size = len(vocab["model"]["vocab"]) + len(vocab["added_tokens"])
    return packed.train.all_rows(), single.train.all_rows(), size


def _model(kind: str, vocab: int, attn: str) -> CausalLM:
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    lm: Any
    if kind == "llama":
        lm = LlamaForCausalLM(LlamaConfig(
            vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
            attn_implementation=attn))
    else:
        lm = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=256, n_embd=32, n_layer=2, n_head=2,
                                        attn_implementation=attn))
    return CausalLM(lm.float().eval())


def _segments(positions: np.ndarray) -> list[tuple[int, int]]:
    starts = [int(i) for i in np.flatnonzero(positions == 0)] + [len(positions)]
    return list(itertools.pairwise(starts))


@pytest.mark.parametrize(("kind", "attn"), [("llama", "sdpa"), ("llama", "eager"), ("gpt2", "sdpa")])
def test_packed_and_separate_logits_are_equal(prepared: tuple[Any, Any, int], kind: str, attn: str) -> None:
    packed, single, vocab = prepared
    assert len(packed.inputs) < len(single.inputs)
    model = _model(kind, vocab, attn)
    with torch.no_grad():
        p_logits = model(torch.from_numpy(packed.inputs), torch.from_numpy(packed.positions)).numpy()
        s_logits = model(torch.from_numpy(single.inputs), torch.from_numpy(single.positions)).numpy()
        leaky = model(torch.from_numpy(packed.inputs)).numpy()  # one causal mask over the whole row
    compared, leaked = 0, False
    for r in range(len(packed.inputs)):
        for a, b in _segments(packed.positions[r]):
            ids = packed.inputs[r, a:b].tolist()
            match = [s for s in range(len(single.inputs)) if single.inputs[s, :b - a].tolist() == ids
                     and (packed.targets[r, a:b] == single.targets[s, :b - a]).all()]
            if not match or (packed.targets[r, a:b] == -100).all():
                continue  # the padding at the end of a row
            s = match[0]
            np.testing.assert_allclose(p_logits[r, a:b], s_logits[s, :b - a], rtol=0, atol=1e-5)
            compared += 1
            leaked |= a > 0 and not np.allclose(leaky[r, a:b], s_logits[s, :b - a], atol=1e-3)
    assert compared == len(single.inputs)
    assert leaked  # without the positions, later conversations see earlier ones: the test can tell


# --- gradient accumulation -------------------------------------------------------------------


def _manifests(d: Path, vocab: int, micro: int, accum: int, ranks: int = 1) -> Path:
    data = {"apiVersion": "lmspec.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "chat"},
            "spec": {"sources": [{"path": str(d / "c.jsonl")}],
                     "chat": {"tokenizer": {"type": "huggingface", "path": str(d / "tok")},
                              "sequenceLength": 64, "packing": False},
                     "splits": {"ratios": {"train": 1.0, "validation": 0.0, "test": 0.0}}}}
    model = {"apiVersion": "lmspec.io/v1alpha1", "kind": "Model", "metadata": {"name": "tiny"},
             "spec": {"task": "causal-lm",
                      "architecture": {"type": "huggingface", "modelType": "llama", "config": {
                          "vocab_size": vocab, "hidden_size": 32, "intermediate_size": 64,
                          "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
                          "max_position_embeddings": 128}},
                      "signature": {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]}],
                                    "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1, vocab]}]}}}
    run = d / f"run-{micro}x{accum}x{ranks}"
    job = {"apiVersion": "lmspec.io/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "job"},
           "spec": {"model": "tiny", "dataset": "chat", "loss": {"type": "causalLm"},
                    "optimizer": {"type": "sgd", "lr": 1.0},
                    "stopping": {"epochs": 1, "maxSteps": 1},
                    "batch": {"microBatchSize": micro, "gradientAccumulationSteps": accum},
                    "zero": {"stage": 0}, "evaluation": {"enabled": False},
                    "resources": {"processesPerNode": ranks},
                    "logging": {"interval": 1, "progressBar": False}, "seed": 1,
                    "output": {"dir": str(run)}}}
    path = d / f"m-{micro}x{accum}x{ranks}.yaml"
    path.write_text(yaml.safe_dump_all([data, model, job], sort_keys=False))
    return path


@pytest.mark.integration
@pytest.mark.slow
def test_loss_with_and_without_gradient_accumulation_is_equal(tmp_path: Path) -> None:
    tok = write_tokenizer(tmp_path / "tok")
    write_jsonl(tmp_path / "c.jsonl", _records(4))
    vocab = len(json.loads((tok / "tokenizer.json").read_text())["model"]["vocab"]) + 3
    weights, losses = [], []
    # Four conversations per optimizer step: one micro batch; four accumulated; two ranks of two.
    for micro, accum, ranks in ((4, 1, 1), (1, 4, 1), (1, 2, 2)):
        manifest = _manifests(tmp_path, vocab, micro, accum, ranks)
        env = {**os.environ, "DS_ACCELERATOR": "cpu"}
        result = subprocess.run([sys.executable, "-m", "lmspec", "run", str(manifest), "--nproc", str(ranks)],
                                capture_output=True, text=True, timeout=300, env=env)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        assert "train data: 4 conversations, 0 truncated, 0 dropped as too long" in result.stdout
        run = tmp_path / f"run-{micro}x{accum}x{ranks}"
        assert json.loads((run / "lock.json").read_text())["dataCounts"]["train"]["conversations"] == 4
        lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        losses.append(next(r["loss"] for r in lines if r["split"] == "train"))
        from safetensors.torch import load_file

        weights.append(load_file(str(run / "export" / "model.safetensors")))
    assert losses[1] == pytest.approx(losses[0], rel=1e-5) and losses[2] == pytest.approx(losses[0], rel=1e-5)
    for other in weights[1:]:
        for name, w in weights[0].items():
            torch.testing.assert_close(other[name], w, rtol=0, atol=2e-6)
    # The logged loss is the step's mean over trained tokens. Averaging per-micro-batch means
    # instead would give a different value here, as the conversations' trained tokens differ.
    counts = [int((np.asarray(r["trained"]) != 0).sum()) for r in _trained(tmp_path)]
    assert len(set(counts)) > 1, counts


def _trained(d: Path) -> list[dict[str, Any]]:
    ds = dataset({"tokenizer": {"type": "huggingface", "path": "tok"}, "sequenceLength": 64},
                 [{"path": "c.jsonl"}], splits={"ratios": {"train": 1.0, "validation": 0.0, "test": 0.0}})
    t = prepare(ds, d, model_task="causal-lm").train.all_rows()
    return [{"trained": (t.targets[r] != -100).astype(int)} for r in range(len(t.targets))]


@pytest.mark.integration
def test_tokenizer_larger_than_the_models_vocabulary_is_refused(tmp_path: Path) -> None:
    write_tokenizer(tmp_path / "tok")
    write_jsonl(tmp_path / "c.jsonl", _records(4))
    manifest = _manifests(tmp_path, 64, 4, 1)
    result = subprocess.run([sys.executable, "-m", "lmspec", "run", str(manifest)], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "DS_ACCELERATOR": "cpu"})
    assert result.returncode != 0
    assert "but Model 'tiny' has a vocabulary of 64: the tokenizer does not belong to this model" in result.stderr
    assert "Traceback" not in result.stderr
