"""The Open Inference Protocol's data plane (``lmspec.serve.oip.dataplane``) called directly, with
real exports loaded in this process: no server, no socket. Each refusal is rendered as the router
renders it (``error_response``), and the bodies are those ``/v2/...`` answers over HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from starlette.requests import Request

from lmspec.engine.predictor import Loaded, load_export
from lmspec.serve.dataplane import GenerationParameters, check_model, check_prompt, check_text
from lmspec.serve.errors import ApiError, error_response
from lmspec.serve.oip import dataplane
from lmspec.serve.oip.protocol import InferenceRequest
from lmspec.v1alpha1 import InferenceService

ROW = [5.1, 3.5, 1.4, 0.2]


def answered(path: str, exc: ApiError) -> tuple[int, Any]:
    """Status and JSON body the server writes for ``exc`` raised by a route under ``path``."""
    import json

    request = Request({"type": "http", "method": "POST", "path": path, "query_string": b"",
                       "headers": [], "scheme": "http", "server": ("127.0.0.1", 8080)})
    response = error_response(request, exc)
    return response.status_code, json.loads(bytes(response.body))


def refused(path: str, call: Any, *args: Any) -> tuple[int, Any]:
    with pytest.raises(ApiError) as info:
        call(*args)
    return answered(path, info.value)


def service(name: str, **spec: Any) -> InferenceService:
    return InferenceService.model_validate({
        "apiVersion": "lmspec.io/v1alpha1", "kind": "InferenceService", "metadata": {"name": name},
        "spec": {"model": {"path": "export"}, **spec}})


@pytest.fixture(scope="module")
def iris(exports: dict[str, Path]) -> Loaded:
    return load_export(exports["iris"])


@pytest.fixture(scope="module")
def lm(exports: dict[str, Path]) -> Loaded:
    return load_export(exports["lm"])


def features(**change: Any) -> dict[str, Any]:
    return {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": ROW, **change}


@pytest.mark.parametrize("body, error", [
    ({"inputs": [features(name="x")]}, "unexpected or repeated input(s) x; the model takes ['features']"),
    ({"inputs": [features(), features()]},
     "unexpected or repeated input(s) features; the model takes ['features']"),
    ({"inputs": []}, "missing input 'features'"),
    ({"inputs": [features(datatype="FP64")]},
     "input 'features': datatype 'FP64' does not match the model's 'FP32'"),
    ({"inputs": [features(shape=[1, 5])]}, "input 'features': shape [1, 5] does not match the model's [-1, 4]"),
    ({"inputs": [features(shape=[2, 4])]},
     "input 'features': 4 data elements do not fill shape [2, 4] (8 elements)"),
    ({"inputs": [features(data=["a", "b", "c", "d"])]},
     "input 'features': data is not a regular array of FP32 values"),
    ({"inputs": [features(shape=[2, 4], data=[[1, 2, 3, 4], [1, 2]])]},
     "input 'features': data is not a regular array of FP32 values"),
    ({"inputs": [features(shape=[9, 4], data=[1.0] * 36)]},
     "inputs must share a batch dimension between 1 and batching.maxBatchSize (8)"),
    ({"inputs": [features()], "outputs": [{"name": "probs"}]},
     "unknown output(s) probs; the model has ['label', 'logits', 'probabilities']"),
    ({"inputs": [features()], "outputs": [{"name": "label", "parameters": {"top_k": 0}}]},
     "output 'label': top_k must be an integer from 1 to the number of classes (3), not value 0"),
    ({"inputs": [features()], "outputs": [{"name": "label", "parameters": {"top_k": "2"}}]},
     "output 'label': top_k must be an integer from 1 to the number of classes (3), not value '2'"),
    ({"inputs": [features()], "outputs": [{"name": "label", "parameters": {"top_k": True}}]},
     "output 'label': top_k must be an integer from 1 to the number of classes (3), not value True"),
    ({"inputs": [features()], "outputs": [{"name": "logits", "parameters": {"top_k": 2}}]},
     "output 'logits': top_k applies to a classifier's label and probabilities outputs only"),
], ids=["unknown", "repeated", "missing", "datatype", "shape", "elements", "strings", "ragged", "batch",
        "output", "top_k-0", "top_k-string", "top_k-bool", "top_k-logits"])
def test_infer_inputs_refusals(iris: Loaded, body: dict[str, Any], error: str) -> None:
    request = InferenceRequest.model_validate(body)
    assert refused("/v2/models/iris/infer", dataplane.infer_inputs, request, iris.require_predictor(), 8) \
        == (400, {"error": error})


def test_infer_answers_the_outputs_asked_for(iris: Loaded) -> None:
    predictor = iris.require_predictor()
    rows = [ROW, [6.7, 3.0, 5.2, 2.3]]
    request = InferenceRequest.model_validate({
        "id": "r1", "inputs": [features(shape=[2, 4], data=rows)],
        "outputs": [{"name": "label", "parameters": {"top_k": 2}}, {"name": "logits"}]})
    work = dataplane.infer_inputs(request, predictor, 8)
    assert work.rows == 2 and work.outputs == ["label", "logits"] and work.top_k == {"label": 2}
    result = predictor.predict(work.arrays)
    body = dataplane.infer_answer("iris", "1", request.id,
                                  dataplane.infer_outputs(predictor, result, work), 1 << 20)
    import json

    answer = json.loads(body)
    assert answer["id"] == "r1" and answer["model_name"] == "iris" and answer["model_version"] == "1"
    label, logits = answer["outputs"]
    assert label["shape"] == [2, 2] and label["datatype"] == "BYTES"
    assert label["data"][0] == "setosa" and label["data"][2] == "virginica"
    np.testing.assert_allclose(np.array(logits["data"]).reshape(2, 3), result["logits"], rtol=1e-6)


def test_infer_answer_refuses_answers_over_max_response_bytes(iris: Loaded) -> None:
    predictor = iris.require_predictor()
    work = dataplane.infer_inputs(InferenceRequest.model_validate({"inputs": [features()]}), predictor, 8)
    outputs = dataplane.infer_outputs(predictor, predictor.predict(work.arrays), work)
    assert refused("/v2/models/iris/infer", dataplane.infer_answer, "iris", "1", None, outputs, 40) == (
        400, {"error": "the response would exceed limits.maxResponseBytes (40 bytes): ask for fewer rows, "
                       "shorter inputs or fewer outputs"})
    spec = predictor.signature.outputs[0]
    infinite = [("logits", spec, np.array([[np.inf, 0.0, 0.0]], np.float32))]
    assert refused("/v2/models/iris/infer", dataplane.infer_answer, "iris", "1", None, infinite, 1 << 20) == (
        400, {"error": "output 'logits' is not finite (inf or NaN) for these inputs, and JSON cannot carry "
                       "such values; the inputs are outside the model's range"})


@pytest.mark.parametrize("ids, error", [
    ([1] * 300, "input 'input_ids': 300 token ids exceed the model's context length of 256"),
    ([1, 300], "input 'input_ids': token ids must lie in [0, 256) for this model's vocabulary, got 1..300"),
], ids=["context", "vocabulary"])
def test_token_ids_the_model_cannot_take(lm: Loaded, ids: list[int], error: str) -> None:
    request = InferenceRequest.model_validate({"inputs": [
        {"name": "input_ids", "shape": [1, len(ids)], "datatype": "INT64", "data": ids}]})
    assert refused("/v2/models/lm/infer", dataplane.infer_inputs, request, lm.require_predictor(), 8) \
        == (400, {"error": error})


def test_metadata(iris: Loaded, lm: Loaded) -> None:
    assert dataplane.server_metadata(None)["extensions"] == []
    assert dataplane.server_metadata(iris)["extensions"] == []
    assert dataplane.server_metadata(lm)["extensions"] == ["generate"]
    meta = dataplane.model_metadata("iris", iris)
    assert meta["name"] == "iris" and meta["versions"] == ["1"] and meta["platform"] == "pytorch_lmspec"
    assert meta["inputs"] == [{"name": "features", "datatype": "FP32", "shape": [-1, 4]}]
    assert [o["name"] for o in meta["outputs"]] == ["logits", "probabilities", "label"]


def test_model_and_version_in_the_path() -> None:
    assert refused("/v2/models/x/infer", check_model, "iris", "x", None) == (
        404, {"error": "unknown model 'x' (this server serves 'iris')"})
    assert refused("/v2/models/iris/versions/7", check_model, "iris", "iris", "7") == (
        404, {"error": "model 'iris' has no version '7' (versions: ['1'])"})
    check_model("iris", "iris", "1")
    check_model("iris", "iris", None)


@pytest.mark.parametrize("prompt, params, error", [
    (2, {"max_tokens": 1000}, "max_tokens 1000 exceeds this server's limit of 64"),
    (250, {"max_tokens": 10}, "This model's maximum context length is 256 tokens. However, you requested "
                              "260 tokens (250 in the prompt, 10 for the completion)."),
    (250, {}, "This model's maximum context length is 256 tokens. However, you requested 266 tokens "
              "(250 in the prompt, 16 for the completion)."),
], ids=["limit", "context", "default-max-tokens"])
def test_generate_sampling_refusals(prompt: int, params: dict[str, Any], error: str) -> None:
    spec = service("lm", limits={"maxTokens": 64}).spec
    assert refused("/v2/models/lm/generate", dataplane.generate_sampling, spec, 256, prompt,
                   GenerationParameters.model_validate(params)) == (400, {"error": error})


def test_generate_sampling_over_the_manifest_defaults() -> None:
    spec = service("lm", generation={"maxTokens": 8, "temperature": 0.5, "topP": 0.9,
                                     "stop": ["\n\n", "END"]}).spec
    plain = dataplane.generate_sampling(spec, 256, 3, GenerationParameters())
    assert (plain.max_tokens, plain.temperature, plain.top_p, plain.stop, plain.seed) == \
        (8, 0.5, 0.9, ["\n\n", "END"], None)
    asked = dataplane.generate_sampling(spec, 256, 3, GenerationParameters.model_validate(
        {"max_tokens": 4, "temperature": 0.0, "top_p": 0.5, "stop": "x", "seed": 7}))
    assert (asked.max_tokens, asked.temperature, asked.top_p, asked.stop, asked.seed) == (4, 0.0, 0.5, ["x"], 7)
    # A request's stop list replaces the manifest's; empty strings stop nothing and are dropped.
    assert dataplane.generate_sampling(spec, 256, 3, GenerationParameters(stop=["", "y"])).stop == ["y"]
    assert dataplane.generate_sampling(spec, 256, 3, GenerationParameters(stop=[])).stop == []
    # The whole context may be used, not one token more.
    assert dataplane.generate_sampling(spec, 11, 3, GenerationParameters()).max_tokens == 8


def test_stop_strings_are_bounded() -> None:
    from pydantic import ValidationError

    for stop in (["s"] * 17, ["s" * 257]):
        with pytest.raises(ValidationError, match="at most 16 stop strings, each at most 256 characters"):
            GenerationParameters(stop=stop)
    assert GenerationParameters(stop=["s"] * 16).stop == ["s"] * 16


def test_prompt_text_and_ids(lm: Loaded) -> None:
    assert lm.language_model is not None
    assert refused("/v2/models/lm/generate", check_text, "\ud800", "text_input") == (
        400, {"error": "text_input is not valid Unicode: surrogates not allowed at character 0"})
    assert refused("/v2/models/lm/generate", check_prompt, lm.language_model, [], "text_input") == (
        400, {"error": "the prompt is empty (it must hold at least one token)"})
    assert check_text("ok", "text_input") == "ok"
    check_prompt(lm.language_model, [0, 255])
