"""Preference tuning through real DeepSpeed ranks on a small pretrained base: DPO's loss is ln 2
before the first update, and the model learns the preferences (reward accuracy and margin on
held-out pairs) with LoRA and with full fine-tuning at every ZeRO stage, on one and two ranks;
`lmspec evaluate` and `lmspec report` read the run; `lmspec plan` states the reference's cost."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from train_helpers import lmspec_run, write_manifests

from lmspec.train.faults import kill_after

SIG = {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]}],
       "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1, -1]}]}
LORA = {"type": "lora", "rank": 8, "alpha": 16, "targetModules": "all-linear"}
COUNTRIES = ["France", "Spain", "Italy", "Japan", "Peru", "Chile", "Egypt", "Kenya", "Norway", "Greece",
             "Cuba", "Ghana", "India", "Iran", "Laos", "Mali", "Nepal", "Oman", "Qatar", "Togo"]


def _pairs(path: Path) -> Path:
    """A preference a small model can learn quickly: a short answer over a rambling one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, c in enumerate(COUNTRIES * 2):
        q = f"Tell me about {c}." if i < len(COUNTRIES) else f"What do you know of {c}?"
        rows.append({"prompt": q, "chosen": f"{c} is a country.",
                     "rejected": f"Well, {c}, hmm, let me think, it is, you know, a place somewhere."})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _manifests(directory: Path, base: Path, run_dir: Path, **job: Any) -> Path:
    model = {"apiVersion": "lmspec.io/v1alpha1", "kind": "Model", "metadata": {"name": "base"},
             "spec": {"task": "causal-lm", "architecture": {"type": "pretrained", "path": str(base)},
                      "signature": SIG}}
    data = {"apiVersion": "lmspec.io/v1alpha1", "kind": "Dataset", "metadata": {"name": "prefs"},
            "spec": {"sources": [{"path": str(_pairs(directory / "pairs.jsonl"))}],
                     "chat": {"format": "preference", "sequenceLength": 64,
                              "template": "{% for m in messages %}<s>{{ m.role }}: {{ m.content }}</s>\n"
                                          "{% endfor %}{% if add_generation_prompt %}<s>assistant: {% endif %}"},
                     "splits": {"ratios": {"train": 0.8, "validation": 0.2, "test": 0.0}, "seed": 0}}}
    spec = {"model": "base", "dataset": "prefs", "loss": {"type": "dpo", "beta": 0.1},
            "optimizer": {"type": "adamw", "lr": 0.01}, "stopping": {"epochs": 20, "maxSteps": 8},
            "batch": {"microBatchSize": 4}, "resources": {"processesPerNode": 2},
            "validation": {"interval": 8, "metrics": ["loss", "rewardAccuracy"]},
            "evaluation": {"enabled": False},
            "logging": {"interval": 1, "progressBar": False}, "seed": 1,
            "output": {"dir": str(run_dir)}, **job}
    trainjob = {"apiVersion": "lmspec.io/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "dpo"}, "spec": spec}
    return write_manifests(directory, model, data, trainjob)


def _metrics(run_dir: Path, kind: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r.get("split") == kind or r.get("kind") == kind]


CASES = {
    "dpo-lora-zero0-1rank": {"zero": {"stage": 0}, "adapter": LORA, "resources": {"processesPerNode": 1},
                             "checkpointing": {"interval": 4, "keepLast": 1}},
    # LoRA at ZeRO-2 on two ranks: examples/chat-dpo, run by tests/chat/test_chat_examples.py
    "dpo-full-zero3": {"zero": {"stage": 3}, "optimizer": {"type": "adamw", "lr": 0.002}},
    "simpo-full-zero1": {"zero": {"stage": 1}, "loss": {"type": "simpo"}, "optimizer": {"type": "adamw", "lr": 0.002}},
}


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASES))
def test_preference_tuning(tmp_path: Path, base_dir: Path, name: str) -> None:
    run_dir = tmp_path / "run"
    result = lmspec_run(str(_manifests(tmp_path, base_dir, run_dir, **CASES[name])),
                        "--allow-outside", str(base_dir), timeout=480)
    assert result.returncode == 0, result.stderr[-4000:] + result.stdout[-2000:]
    train = _metrics(run_dir, "train")
    assert train, (run_dir / "metrics.jsonl").read_text()[:2000]
    first = train[0]["values"] if "values" in train[0] else train[0]
    if name.startswith("dpo"):
        # Before any update the policy is the reference: exactly ln 2, and rewards of zero.
        assert abs(first["loss"] - math.log(2)) < 1e-5, first
        assert abs(first["rewardMargin"]) < 1e-5
        assert (run_dir / "reference_logps.npz").is_file()
    validation = _metrics(run_dir, "validation")[-1]
    values = validation.get("values", validation)
    assert values["rewardAccuracy"] >= 0.75 and values["rewardMargin"] > 0, values
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["validation"]["rewardAccuracy"] == values["rewardAccuracy"]
    assert (run_dir / "export" / "export.json").is_file()
    FINISHED[name] = run_dir
    if name == "dpo-lora-zero0-1rank":
        _evaluate_and_report(tmp_path, run_dir, values)


FINISHED: dict[str, Path] = {}
"""Run directories of the cases above: the uninterrupted reference of the resume test."""


@pytest.mark.integration
@pytest.mark.slow
def test_a_resumed_dpo_run_keeps_the_starting_models_reference(tmp_path: Path, base_dir: Path) -> None:
    """Killed after its step-4 checkpoint and resumed, a DPO run reads the reference it computed
    from the starting weights (the checkpoint holds other weights) and ends with the adapter an
    uninterrupted run ends with."""
    import numpy as np
    from safetensors.numpy import load_file

    name = "dpo-lora-zero0-1rank"
    whole = FINISHED.get(name)
    if whole is None:  # run alone: make the uninterrupted reference here
        whole = tmp_path / "whole"
        done = lmspec_run(str(_manifests(tmp_path / "w", base_dir, whole, **CASES[name])),
                          "--allow-outside", str(base_dir), timeout=480)
        assert done.returncode == 0, done.stderr[-3000:]
    broken = tmp_path / "broken"
    manifests = str(_manifests(tmp_path / "b", base_dir, broken, **CASES[name]))
    killed = lmspec_run(manifests, "--allow-outside", str(base_dir), env=kill_after(rank=0, step=6), timeout=480)
    assert killed.returncode != 0 and not (broken / "export").exists()
    reference = dict(np.load(broken / "reference_logps.npz"))
    resumed = lmspec_run(manifests, "--resume", "--allow-outside", str(base_dir), timeout=480)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "(step 4)" in resumed.stdout and "reference log-probabilities of" not in resumed.stdout
    for split, values in np.load(broken / "reference_logps.npz").items():
        np.testing.assert_array_equal(values, reference[split])
    a = load_file(str(whole / "export" / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(broken / "export" / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=0, atol=1e-6, err_msg=k)


def _evaluate_and_report(tmp_path: Path, run_dir: Path, validation: dict[str, Any]) -> None:
    """`lmspec evaluate` recomputes the last validation from the export and the starting model
    (recorded in the export), and `lmspec report` plots the rewards."""
    import subprocess
    import sys

    out = tmp_path / "eval.json"
    done = subprocess.run([sys.executable, "-m", "lmspec", "evaluate", str(tmp_path / "manifests.yaml"),
                           "--split", "validation", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads(out.read_text())["metrics"]
    for key in ("loss", "rewardAccuracy", "rewardMargin", "rewardChosen", "logpRejected"):
        assert abs(metrics[key] - validation[key]) < 1e-4, (key, metrics, validation)
    # A new file of pairs, prepared as training prepared its sources.
    pairs = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()][:6]
    (tmp_path / "new.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))
    done = subprocess.run([sys.executable, "-m", "lmspec", "evaluate", str(tmp_path / "manifests.yaml"),
                           "--input", str(tmp_path / "new.jsonl"), "--json", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    new = json.loads(out.read_text())
    assert new["rows"] == 6 and 0 <= new["metrics"]["rewardAccuracy"] <= 1 and new["metrics"]["loss"] > 0
    html = tmp_path / "report.html"
    done = subprocess.run([sys.executable, "-m", "lmspec", "report", str(run_dir), "-o", str(html)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    page = html.read_text()
    assert "Reward accuracy" in page and "rewardMargin" in page


@pytest.mark.parametrize("loss", ["dpo", "simpo"])
def test_plan_states_the_reference_a_dpo_run_keeps(tmp_path: Path, base_dir: Path, loss: str) -> None:
    from click.testing import CliRunner

    from lmspec.cli import main

    path = _manifests(tmp_path, base_dir, tmp_path / "run", loss={"type": loss})
    out = CliRunner().invoke(main, ["plan", str(path)])
    assert out.exit_code == 0, out.output
    assert ("dpo reference: the starting model's log-probabilities" in out.output) is (loss == "dpo"), out.output
    assert "no second copy of the model" in out.output or loss == "simpo"
