"""Each v1beta1 change on its own: the conversion rule of spec/v1beta1/changes.md, both ways."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from lmspec.conversion import convert
from lmspec.conversion.v1beta1 import CHANGES

A, B = "lmspec.io/v1alpha1", "lmspec.io/v1beta1"


def doc(version: str, kind: str, spec: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {"apiVersion": version, "kind": kind, "metadata": {"name": "n", **meta}, "spec": spec}


# (kind, v1alpha1 spec, v1beta1 spec): each converts to the other, with no annotation.
PAIRS = [
    ("Model", {"task": "causal-lm"}, {"task": "causalLm"}),
    ("Model", {"task": "regression"}, {"task": "regression"}),
    ("Model", {"architecture": {"type": "pretrained", "path": "base", "sha256": "0" * 64}},
     {"architecture": {"type": "pretrained", "source": {"type": "directory", "path": "base"}, "sha256": "0" * 64}}),
    ("Model", {"architecture": {"type": "pretrained", "uri": "hf://a/b@c"}},
     {"architecture": {"type": "pretrained", "source": {"type": "hub", "uri": "hf://a/b@c"}}}),
    ("Model", {"architecture": {"type": "pretrained", "trainingJob": "t", "x-k": 1}},
     {"architecture": {"type": "pretrained", "source": {"type": "trainingJob", "name": "t"}, "x-k": 1}}),
    ("InferenceService", {"model": {"trainingJob": "t", "x-a": "b"}},
     {"model": {"type": "trainingJob", "name": "t", "x-a": "b"}}),
    ("InferenceService", {"model": {"path": "runs/t/export"}},
     {"model": {"type": "directory", "path": "runs/t/export"}}),
    ("InferenceService", {"auth": {"apiKeys": [{"env": "K"}, {"file": "/k"}]}},
     {"auth": {"apiKeys": [{"type": "env", "name": "K"}, {"type": "file", "path": "/k"}]}}),
    ("TrainingJob", {"precision": {"bf16": {"enabled": True}}}, {"precision": {"mode": "bf16"}}),
    ("TrainingJob", {"precision": {"fp16": {"enabled": True, "lossScale": 128.0}}},
     {"precision": {"mode": "fp16", "lossScaling": {"lossScale": 128.0}}}),
    ("TrainingJob", {"precision": {"fp16": {"hysteresis": 3}, "bf16": {"enabled": True}}},
     {"precision": {"lossScaling": {"hysteresis": 3}, "mode": "bf16"}}),
    ("Dataset", {"chat": {"template": "{{ x }}", "sequenceLength": 8}},
     {"chat": {"template": {"type": "inline", "text": "{{ x }}"}, "sequenceLength": 8}}),
    ("Dataset", {"chat": {"templatePath": "t.jinja"}}, {"chat": {"template": {"type": "file", "path": "t.jinja"}}}),
    ("Dataset", {"splits": {"by": "file"}}, {"splits": {"type": "file"}}),
    ("InferenceService", {"engine": {"name": "vllm"}}, {"engine": {"type": "vllm"}}),
    ("InferenceService",
     {"server": {"gracePeriodSeconds": 30, "headerTimeoutSeconds": 0.5, "bodyTimeoutSeconds": 1e-7}},
     {"server": {"gracePeriod": "30s", "headerTimeout": "500ms", "bodyTimeout": "0.1us"}}),
    ("InferenceService", {"limits": {"requestTimeoutSeconds": 1e300}},
     {"limits": {"requestTimeout": "1" + "0" * 300 + "s"}}),
    ("InferenceService", {"limits": {"requestTimeoutSeconds": 2.5e-4}}, {"limits": {"requestTimeout": "250us"}}),
    ("InferenceService", {"batching": {"maxQueueDelayMicroseconds": 2000}}, {"batching": {"maxQueueDelay": "2ms"}}),
    ("InferenceService", {"batching": {"maxQueueDelayMicroseconds": 1500}}, {"batching": {"maxQueueDelay": "1500us"}}),
    ("InferenceService", {"batching": {"maxQueueDelayMicroseconds": 0}}, {"batching": {"maxQueueDelay": "0s"}}),
]


@pytest.mark.parametrize(("kind", "alpha", "beta"), PAIRS)
def test_each_change_converts_both_ways(kind: str, alpha: dict[str, Any], beta: dict[str, Any]) -> None:
    assert convert(doc(A, kind, alpha), "v1beta1") == (doc(B, kind, beta), [])
    assert convert(doc(B, kind, beta), "v1alpha1") == (doc(A, kind, alpha), [])


def test_every_change_is_covered_and_documented() -> None:
    from pathlib import Path

    changes = (Path(__file__).resolve().parents[2] / "spec" / "v1beta1" / "changes.md").read_text(encoding="utf-8")
    for change in CHANGES:
        assert change.summary
        assert f"`{change.dotted}" in changes or change.path[-1] in changes, change.id


def test_a_renamed_key_keeps_its_place() -> None:
    alpha = {"x-first": 1, "by": "ratio", "seed": 3}
    beta, _ = convert(doc(A, "Dataset", {"splits": alpha}), "v1beta1")
    assert list(beta["spec"]["splits"]) == ["x-first", "type", "seed"]


def test_an_explicit_default_survives_in_an_annotation() -> None:
    alpha = doc(A, "TrainingJob", {"precision": {"fp16": {"enabled": False}, "bf16": {"enabled": True, "x-e": 1}}})
    beta, losses = convert(alpha, "v1beta1")
    assert losses == []
    assert beta["spec"]["precision"] == {"mode": "bf16"}
    note = beta["metadata"]["annotations"]["lmspec.io/v1alpha1-spec.precision"]
    assert '"x-e":1' in note
    assert convert(beta, "v1alpha1") == (alpha, [])


def test_an_edited_value_wins_over_a_stale_annotation() -> None:
    alpha = doc(A, "TrainingJob", {"precision": {"bf16": {"enabled": True}, "fp16": {"enabled": False}}})
    beta, _ = convert(alpha, "v1beta1")
    beta["spec"]["precision"] = {"mode": "fp16"}
    back, _ = convert(beta, "v1alpha1")
    assert back == doc(A, "TrainingJob", {"precision": {"fp16": {"enabled": True}}})


def test_empty_annotations_stay_as_written() -> None:
    for meta in ({}, {"annotations": {}}, {"annotations": {"k": "v"}}):
        # An explicit default needs a round-trip annotation; the annotations come back as written.
        alpha = doc(A, "TrainingJob", {"precision": {"bf16": {"enabled": False}}}, **meta)
        beta, _ = convert(alpha, "v1beta1")
        assert "lmspec.io/v1alpha1-spec.precision" in beta["metadata"]["annotations"]
        assert convert(beta, "v1alpha1") == (alpha, [])
        untouched, _ = convert(doc(A, "Model", {"task": "causal-lm"}, **meta), "v1beta1")
        assert untouched["metadata"] == {"name": "n", **meta}


def test_a_v1beta1_value_v1alpha1_writes_otherwise_comes_back() -> None:
    beta = doc(B, "InferenceService", {"server": {"gracePeriod": "1h", "headerTimeout": "90s"}})
    alpha, losses = convert(beta, "v1alpha1")
    assert losses == []
    assert alpha["spec"]["server"] == {"gracePeriodSeconds": 3600, "headerTimeoutSeconds": 90}
    assert convert(alpha, "v1beta1") == (beta, [])


@pytest.mark.parametrize(("kind", "alpha", "lost"), [
    ("InferenceService", {"auth": {"apiKeys": ["sk-secret", {"env": "K"}]}}, "spec.auth.apiKeys.0"),
    ("Model", {"architecture": {"type": "pretrained", "path": "a", "uri": "hf://a/b"}}, "spec.architecture.uri"),
    ("TrainingJob", {"precision": {"fp16": {"enabled": True}, "bf16": {"enabled": True}}},
     "spec.precision.bf16.enabled"),
    ("Dataset", {"chat": {"template": "t", "templatePath": "p"}}, "spec.chat.templatePath"),
])
def test_what_only_an_invalid_manifest_has_is_a_loss(kind: str, alpha: dict[str, Any], lost: str) -> None:
    original = copy.deepcopy(alpha)
    beta, losses = convert(doc(A, kind, alpha), "v1beta1")
    assert [loss.dotted for loss in losses] == [lost]
    assert alpha == original  # the input is never changed
    assert "sk-secret" not in str(beta)


def test_fractions_of_a_microsecond_are_a_loss_in_v1alpha1() -> None:
    beta = doc(B, "InferenceService", {"batching": {"maxQueueDelay": "0.5us"}})
    alpha, losses = convert(beta, "v1alpha1")
    assert [loss.dotted for loss in losses] == ["spec.batching.maxQueueDelay"]
    assert isinstance(alpha["spec"]["batching"]["maxQueueDelayMicroseconds"], int)


def test_same_version_is_a_copy_and_unknown_versions_are_refused() -> None:
    beta = doc(B, "Model", {"task": "causalLm"})
    same, losses = convert(beta, "lmspec.io/v1beta1")
    assert (same, losses) == (beta, []) and same is not beta
    with pytest.raises(KeyError, match="did you mean 'v1beta1'"):
        convert(beta, "v1beta2")
    with pytest.raises(ValueError, match="not a version of the standard"):
        convert(doc("lmspec.io/v2", "Model", {}), "v1alpha1")
