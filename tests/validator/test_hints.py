"""Hints point at the fix the user meant: case-insensitive matches first, quotes around numbers,
keys placed at the wrong depth, the right form of a mapping, and the bound a value broke."""

from __future__ import annotations

from pathlib import Path

import pytest

import lmspec

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
JOB = (EXAMPLES / "iris" / "train.yaml").read_text()
MODEL = (EXAMPLES / "iris" / "model.yaml").read_text()


def current(report: lmspec.Report) -> list[lmspec.Finding]:
    """The findings besides the deprecation warning on every v1alpha1 document."""
    return [f for f in report.findings if f.rule != "document.deprecated-version"]


def finding(text: str, old: str, new: str) -> lmspec.Finding:
    assert old in text
    [f] = current(lmspec.validate_text(text.replace(old, new), references=False))
    return f


@pytest.mark.parametrize(("text", "old", "new", "pointer", "hint"), [
    (JOB, "{type: adamw,", "{type: AdamW,", "/spec/optimizer/type", "did you mean 'adamw'?"),
    (MODEL, "activation: relu", "activation: ReLU", "/spec/architecture/activation", "did you mean 'relu'?"),
    (JOB, "zero: {stage: 0}", 'zero: {stage: "2"}', "/spec/zero/stage", "remove the quotes: stage: 2"),
    (JOB, "zero: {stage: 0}", "zero: {stage: 2}\n  offloadOptimizer: {device: cpu}", "/spec/offloadOptimizer",
     "'offloadOptimizer' belongs at spec.zero.offloadOptimizer"),
    (JOB, "  seed: 42", "  seed: 42\n  hiddenSizes: [8]", "/spec/hiddenSizes", "allowed keys:"),
    (JOB, "loss: {type: crossEntropy}", "loss: crossEntropy", "/spec/loss",
     "write it as a mapping: loss: {type: crossEntropy}"),
    (JOB, "batch: {microBatchSize: 16,", "batch: {microBatch: {size: 16},", "/spec/batch/microBatch",
     "did you mean 'microBatchSize'?"),
])
def test_hint(text: str, old: str, new: str, pointer: str, hint: str) -> None:
    f = finding(text, old, new)
    assert f.pointer == pointer and hint in f.hint, f


def test_expected_mapping_shows_an_example() -> None:
    f = finding(JOB, "batch: {microBatchSize: 16, gradientAccumulationSteps: 1}", "batch: 16")
    assert f.message == "expected a mapping, got number 16"
    assert "e.g. batch: {" in f.hint, f


@pytest.mark.parametrize(("old", "new", "message"), [
    ("microBatchSize: 16,", "microBatchSize: 0,", "microBatchSize must be at least 1, got 0"),
    ("lr: 1e-2,", "lr: 0,", "lr must be greater than 0, got 0"),
    ("lr: 1e-2,", "lr: 1e-2, betas: [0.9, 1.5],", "betas[1] must be less than 1, got 1.5"),
])
def test_bound_errors_state_the_bound(old: str, new: str, message: str) -> None:
    f = finding(JOB, old, new)
    assert f.rule == "schema.bound" and f.message == message, f


def test_stage3_tuning_below_stage3_warns() -> None:
    text = JOB.replace("zero: {stage: 0}", "zero: {stage: 2, stage3PrefetchBucketSize: 1000000}")
    report = lmspec.validate_text(text, references=False)
    [f] = current(report)
    assert (f.rule, f.severity, f.pointer) == ("trainingjob.zero3-only", "warning",
                                               "/spec/zero/stage3PrefetchBucketSize")
    at3 = JOB.replace("zero: {stage: 0}", "zero: {stage: 3, stage3PrefetchBucketSize: 1000000}")
    assert not current(lmspec.validate_text(at3, references=False))
