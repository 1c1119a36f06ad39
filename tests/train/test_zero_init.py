"""Models built under ``deepspeed.zero.Init`` (ZeRO stage 3) start from exactly the weights they
get at stages 0-2: the same per-tensor statistics and the same first-step loss, for every
architecture. Hugging Face's ``post_init`` initialisation does nothing on partitioned parameters,
so without care a stage-3 language model starts from PyTorch's default init (embeddings N(0, 1),
tied to the output layer: first-step losses of ~90 for a vocabulary where ln V ≈ 7.6)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from train_helpers import DATA, IRIS_DATASET, IRIS_JOB, IRIS_MODEL, merge

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIG_LM = {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]}],
          "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1, 256]}]}
TEXT = {"apiVersion": "lmspec.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "text"},
        "spec": {"sources": [{"path": str(DATA / "licenses" / "*.txt"), "format": "text"}],
                 "features": [{"name": "text", "dtype": "string"}],
                 "preprocessing": [{"type": "tokenize", "tokenizer": {"type": "byte"}},
                                   {"type": "pack", "sequenceLength": 32}],
                 "splits": {"ratios": {"train": 0.8, "validation": 0.1, "test": 0.1}, "seed": 0}}}
LM_JOB = {"model": "m", "dataset": "text", "loss": {"type": "causalLm"}}
ARCHS: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any]]] = {
    "mlp": (IRIS_DATASET, {"architecture": {"type": "mlp", "hiddenSizes": [16, 16]}}, {}),
    "sequential": (IRIS_DATASET, {"architecture": {"type": "sequential", "layers": [
        {"type": "linear", "outFeatures": 16}, {"type": "layerNorm"}, {"type": "gelu"},
        {"type": "linear", "outFeatures": 3}]}}, {}),
    "transformer": (TEXT, {"task": "causal-lm", "numClasses": None, "signature": SIG_LM, "architecture": {
        "type": "transformer", "vocabSize": 256, "contextLength": 32, "width": 32, "depth": 2,
        "heads": 2}}, LM_JOB),
    "llama-tied": (TEXT, {"task": "causal-lm", "numClasses": None, "signature": SIG_LM, "architecture": {
        "type": "huggingface", "modelType": "llama", "config": {
            "vocab_size": 256, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 32,
            "tie_word_embeddings": True}}}, LM_JOB),
}

# One process builds every (architecture, stage): DeepSpeed's import is paid once.
SCRIPT = r"""
import json, sys
from pathlib import Path
from lmspec.train.gather import full_state_dict
from lmspec.train.loop import Recipe
from lmspec.validator.core import load
out = {}
for case in json.loads(sys.argv[1]):
    manifests = load([case["file"]])
    job = manifests.pick("TrainingJob", None, option="--job")
    recipe = Recipe(job, manifests, Path(case["run"]), resume=False)
    recipe.setup()
    state = full_state_dict(recipe.engine.module, keep=recipe.world.is_main)
    stats = {k: [float(v.mean()), float(v.std()) if v.numel() > 1 else 0.0] for k, v in state.items()}
    recipe.train()
    recipe.log.close()
    first = json.loads((Path(case["run"]) / "metrics.jsonl").read_text().splitlines()[0])
    out[case["id"]] = {"stats": stats, "loss": first["loss"]}
print(json.dumps(out))
"""


def test_zero3_initialisation_equals_other_stages(tmp_path: Path) -> None:
    cases = []
    for arch, (dataset, model_patch, job_patch) in ARCHS.items():
        spec = {k: v for k, v in {**IRIS_MODEL["spec"], **model_patch}.items() if v is not None}
        model = {**IRIS_MODEL, "metadata": {"name": "m"}, "spec": spec}
        for stage in (0, 1, 2, 3):
            d = tmp_path / f"{arch}-{stage}"
            job = merge(IRIS_JOB, {"spec": {"model": "m", "dataset": dataset["metadata"]["name"],
                                            **job_patch, "zero": {"stage": stage},
                                            "stopping": {"epochs": 1, "maxSteps": 1},
                                            "batch": {"microBatchSize": 4, "gradientAccumulationSteps": 1},
                                            "output": {"dir": str(d / "run")}}})
            d.mkdir()
            (d / "m.yaml").write_text(yaml.safe_dump_all([dataset, model, job], sort_keys=False))
            cases.append({"id": f"{arch}/{stage}", "file": str(d / "m.yaml"), "run": str(d / "run")})
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(cases)], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    for arch in ARCHS:
        base = results[f"{arch}/0"]
        for stage in (1, 2, 3):
            got = results[f"{arch}/{stage}"]
            assert got["stats"].keys() == base["stats"].keys(), (arch, stage)
            for name, (mean, std) in base["stats"].items():
                assert got["stats"][name] == pytest.approx([mean, std], rel=1e-5, abs=1e-7), (arch, stage, name)
            assert got["loss"] == pytest.approx(base["loss"], rel=1e-5), (arch, stage)
