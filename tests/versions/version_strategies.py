"""Hypothesis strategies: valid v1alpha1 manifests that exercise every v1beta1 change.

>>> from version_strategies import hub_manifests
>>> doc = hub_manifests().example()   # doctest: +SKIP

Each strategy draws the fields a conversion touches in every shape the v1alpha1 schema accepts:
explicit defaults and nulls, ``x-`` extensions, odd numbers of seconds, metadata with and
without (empty) annotations. The other fields are the smallest valid ones.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

API = "lmspec.io/v1alpha1"

names = st.from_regex(r"[a-z][a-z0-9]{0,6}", fullmatch=True)
extensions = st.dictionaries(st.sampled_from(["x-a", "x-team", "x-b"]),
                             st.one_of(st.integers(-3, 3), st.text(max_size=4), st.booleans()), max_size=2)
seconds = st.one_of(st.integers(0, 10**6), st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False),
                    st.sampled_from([0.1, 0.5, 1e-7, 2.5e-4, 1234.5678, 3600, 1e300]))
positive_seconds = seconds.filter(lambda s: s > 0)


def _with(draw: st.DrawFn, mapping: dict[str, Any], optional: dict[str, Any]) -> dict[str, Any]:
    """``mapping`` plus a drawn subset of ``optional`` and drawn extensions, keys shuffled."""
    out = dict(mapping)
    for key, value in optional.items():
        if draw(st.booleans()):
            out[key] = value
    out.update(draw(extensions))
    keys = draw(st.permutations(list(out)))
    return {k: out[k] for k in keys}


@st.composite
def metadata(draw: st.DrawFn) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": draw(names)}
    shape = draw(st.sampled_from(["none", "empty", "some"]))
    if shape == "empty":
        meta["annotations"] = {}
    elif shape == "some":
        meta["annotations"] = {"owner": draw(st.text(max_size=5))}
    return meta


SIGNATURE_LM = {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]}],
                "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1, 64]}]}
SIGNATURE_CLS = {"inputs": [{"name": "x", "dtype": "float32", "shape": [-1, 4]}],
                 "outputs": [{"name": "y", "dtype": "float32", "shape": [-1, 3]}]}


@st.composite
def models(draw: st.DrawFn) -> dict[str, Any]:
    if draw(st.booleans()):
        spec = {"task": "classification", "numClasses": 3, "architecture": {"type": "mlp"},
                "signature": SIGNATURE_CLS}
    else:
        source = draw(st.sampled_from([
            ("path", "base-model"), ("uri", "hf://org/name@main"), ("trainingJob", "base-train")]))
        nulls = {k: None for k in ("path", "uri", "trainingJob") if k != source[0]}
        arch = _with(draw, {"type": "pretrained", source[0]: source[1]},
                     {**nulls, "sha256": "0" * 64})
        spec = {"task": "causal-lm", "architecture": arch, "signature": SIGNATURE_LM}
    spec.update(draw(extensions))
    return {"apiVersion": API, "kind": "Model", "metadata": draw(metadata()), "spec": spec}


@st.composite
def datasets(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"sources": [{"path": "data.jsonl"}]}
    if draw(st.booleans()):
        splits = _with(draw, {}, {"by": draw(st.sampled_from(["ratio", "file"])), "seed": draw(st.integers(0, 9))})
        spec["splits"] = splits
    if draw(st.booleans()):
        template = draw(st.sampled_from([
            {"template": "{% for m in messages %}{{ m.content }}{% generation %}x{% endgeneration %}{% endfor %}"},
            {"templatePath": "chat.jinja"},
            {"template": None, "templatePath": "chat.jinja"},
            {"template": "{% generation %}\n{{ x }}\n{% endgeneration %}", "templatePath": None},
            {},
        ]))
        spec["chat"] = _with(draw, {"sequenceLength": 64, **template}, {"format": "messages", "packing": False})
    return {"apiVersion": API, "kind": "Dataset", "metadata": draw(metadata()), "spec": spec}


@st.composite
def training_jobs(draw: st.DrawFn) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": "m", "dataset": "d", "loss": {"type": "crossEntropy"}}
    if draw(st.booleans()):
        mode = draw(st.sampled_from(["fp32", "fp16", "bf16"]))
        fp16 = _with(draw, {}, {"enabled": mode == "fp16", "lossScale": 128.0, "hysteresis": 3})
        bf16 = _with(draw, {}, {"enabled": mode == "bf16"})
        precision = _with(draw, {}, {"fp16": fp16, "bf16": bf16})
        spec["precision"] = precision
    return {"apiVersion": API, "kind": "TrainingJob", "metadata": draw(metadata()), "spec": spec}


@st.composite
def inference_services(draw: st.DrawFn) -> dict[str, Any]:
    model = draw(st.sampled_from([{"trainingJob": "t"}, {"path": "runs/t/export"},
                                  {"trainingJob": "t", "path": None}]))
    spec: dict[str, Any] = {"model": _with(draw, model, {})}
    if draw(st.booleans()):
        keys = draw(st.lists(st.sampled_from([{"env": "KEYS"}, {"file": "/run/keys"}, {"env": "K", "file": None}]),
                             max_size=3))
        spec["auth"] = {"apiKeys": [_with(draw, k, {}) for k in keys]}
    if draw(st.booleans()):
        spec["server"] = _with(draw, {}, {
            "gracePeriodSeconds": draw(seconds),
            "headerTimeoutSeconds": draw(positive_seconds.filter(lambda s: s <= 3600)),
            "bodyTimeoutSeconds": draw(positive_seconds.filter(lambda s: s <= 3600)),
            "port": 8080})
    if draw(st.booleans()):
        spec["limits"] = _with(draw, {}, {"requestTimeoutSeconds": draw(positive_seconds), "maxTokens": 64})
    if draw(st.booleans()):
        spec["batching"] = _with(draw, {}, {"maxQueueDelayMicroseconds": draw(st.integers(0, 2**40)),
                                            "enabled": True})
    if draw(st.booleans()):
        spec["engine"] = _with(draw, {}, {"name": "builtin", "maxSequences": 8})
    return {"apiVersion": API, "kind": "InferenceService", "metadata": draw(metadata()), "spec": spec}


def hub_manifests() -> st.SearchStrategy[dict[str, Any]]:
    """A v1alpha1 manifest of any kind that the v1alpha1 models accept."""
    return st.one_of(models(), datasets(), training_jobs(), inference_services())
