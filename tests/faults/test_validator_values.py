"""Values the schema used to admit that broke later: the memory-fit rule's arithmetic on huge
or non-numeric sizes, non-finite floats, seeds beyond 64 bits, and ``output.dir`` format-string
injection. Each is now a finding with a rule id (exit 1), never a traceback."""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from runs import IRIS_DATASET, IRIS_JOB, IRIS_MODEL, merge

LLAMA: dict[str, Any] = {
    "apiVersion": "lmspec.io/v1alpha1", "kind": "Model", "metadata": {"name": "mlp"},
    "spec": {"task": "causal-lm",
             "architecture": {"type": "huggingface", "modelType": "llama", "config": {}},
             "signature": {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]}],
                           "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1, -1]}]}},
}


def validate_cli(tmp_path: Path, *docs: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump_all(list(docs), sort_keys=False))
    return subprocess.run([sys.executable, "-m", "lmspec", "validate", str(path)], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize(("patch", "where"), [
    ({"resources": {"memoryPerDevice": "1" * 400 + "GiB"}}, "/spec/resources/memoryPerDevice"),
    ({"optimizer": {"type": "adamw", "lr": float("inf")}}, "/spec/optimizer/lr"),
    ({"optimizer": {"type": "adamw", "lr": float("nan")}}, "/spec/optimizer/lr"),
    ({"seed": 1e300}, "/spec/seed"),
    ({"seed": int("9" * 2400)}, "/spec/seed"),
    ({"output": {"dir": "runs/{0}"}}, "/spec/output/dir"),
    ({"output": {"dir": "runs/{name.__class__.__mro__}"}}, "/spec/output/dir"),
])
@pytest.mark.integration
def test_hostile_job_values_are_findings(tmp_path: Path, patch: dict[str, Any], where: str) -> None:
    out = validate_cli(tmp_path, IRIS_DATASET, IRIS_MODEL, merge(IRIS_JOB, {"spec": patch}))
    assert out.returncode == 1, out.stdout + out.stderr
    assert where in out.stdout and "Traceback" not in out.stdout + out.stderr


@pytest.mark.parametrize("config", [
    {"hidden_size": "abc"}, {"hidden_size": [1]}, {"hidden_size": None}, {"hidden_size": float("nan")},
    {"num_attention_heads": 0}, {"hidden_size": int("9" * 2400)}, {"vocab_size": -5},
])
def test_memory_fit_rule_survives_any_huggingface_config(config: dict[str, Any]) -> None:
    import lmspec

    model = copy.deepcopy(LLAMA)
    model["spec"]["architecture"]["config"] = config
    job = merge(IRIS_JOB, {"spec": {"loss": {"type": "causalLm"}, "resources": {"memoryPerDevice": "80GiB"}}})
    text = yaml.safe_dump_all([IRIS_DATASET, model, job], sort_keys=False)
    report = lmspec.validate("-", stdin_text=text)  # no exception is the point: findings only
    assert all(f.rule != "internal" for f in report.findings)


def test_output_dir_substitutes_only_name(tmp_path: Path) -> None:
    import lmspec
    from lmspec.model.export import output_dir_for

    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump_all([IRIS_DATASET, IRIS_MODEL,
                                        merge(IRIS_JOB, {"spec": {"output": {"dir": "runs/{name}/x"}}})]))
    job = lmspec.load([str(path)]).get("TrainingJob", "job")
    # Relative to the manifest's directory, like every relative path in a manifest.
    assert job is not None and output_dir_for(job) == tmp_path / "runs/job/x"


SECRET = "aws_secret_access_key=wJalrXUtnFEMIK7MDENGbPxRfiCYzEXAMPLEKEY"


@pytest.mark.parametrize(("row", "words", "hidden"), [
    ("5.1,3.5,1.4,0.2," + SECRET, ["iris.csv:6:1", "'species'", "label that looks like a credential"], "wJalr"),
    ("5.1,3.5,1.4," + SECRET + ",setosa", ["iris.csv:6:1", "'petal_width'", "not a number"], "wJalr"),
    ("5.1,3.5,1.4,AKIAIOSFODNN7EXAMPLE,setosa", ["iris.csv:6:1", "'petal_width'", "not a number"], "AKIA"),
    ("5.1,3.5,1.4,0.2," + "confidential " * 20, ["iris.csv:6:1", "'species'", "'confidential confid…'"],
     "confidential " * 2),
    ("5.1,3.5,1.4,1\x1b[2J\x00" + "x" * 60 + ",setosa",
     ["iris.csv:6:1", "'petal_width'", r"'1\x1b[2J\x00xxxxxxx…'"], "x" * 8),
])
@pytest.mark.integration
def test_check_env_shows_data_values_as_short_excerpts_or_not_at_all(
        tmp_path: Path, row: str, words: list[str], hidden: str) -> None:
    """Data files may hold what was never meant to be data: a finding names the row and column
    and quotes at most 20 escaped characters of the value, none of one that looks like a
    credential."""
    lines = (Path(__file__).resolve().parents[2] / "examples/data/iris.csv").read_text().splitlines()
    lines[5] = row
    (tmp_path / "iris.csv").write_text("\n".join(lines) + "\n")
    dataset = merge(IRIS_DATASET, {"spec": {"sources": [{"path": "iris.csv"}]}})
    (tmp_path / "dataset.yaml").write_text(yaml.safe_dump(dataset, sort_keys=False))
    out = subprocess.run([sys.executable, "-m", "lmspec", "validate", "--check-env", "dataset.yaml"],
                         capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert out.returncode == 1 and "error[env.data]" in out.stdout, out.stdout + out.stderr
    assert all(w in out.stdout for w in words), out.stdout
    assert hidden not in out.stdout + out.stderr, out.stdout
