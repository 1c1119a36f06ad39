"""What a loaded model allows, read from the model itself: the context length of a LoRA export
over a ``pretrained`` base (its ``config.json``, not a default), token ids checked before any
forward pass on OIP ``infer``, and adapter directories that cannot be loaded named as such."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.integration,
              # peft 0.21 still calls a transformers method that transformers 5 deprecates.
              pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")]

BASE_CONTEXT = 256


def _adapter(base: Path, out: Path) -> Path:
    """A LoRA adapter (random, non-zero) on ``base``, saved as peft saves it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(2)
    model = AutoModelForCausalLM.from_pretrained(base)
    tuned = get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    tuned.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, hf_models: Any) -> Path:
    return Path(hf_models.llama_dir(tmp_path_factory.mktemp("base") / "base", context_length=BASE_CONTEXT))


@pytest.fixture(scope="module")
def lora_export(base: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An export as a LoRA fine-tuning run over a ``pretrained`` base writes it (format 2, the
    adapter beside the base's recorded directory, not merged)."""
    from transformers import AutoTokenizer

    from lmspec.data import Tokenizer, Transform
    from lmspec.model.export import save_export
    from lmspec.v1alpha1 import Model

    manifest = Model.model_validate({
        "apiVersion": "lmspec.io/v1alpha1", "kind": "Model", "metadata": {"name": "tuned"},
        "spec": {"task": "causal-lm", "architecture": {"type": "pretrained", "path": str(base)},
                 "signature": {"inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]}],
                               "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1, -1]}]}}})

    def write(tmp: Path) -> dict[str, Any]:
        _adapter(base, tmp / "adapter")
        AutoTokenizer.from_pretrained(base).save_pretrained(tmp / "adapter")
        return {"base": {"source": "path", "directory": str(base)},
                "adapter": {"type": "lora", "path": "adapter", "merged": False}}

    transform = Transform(task="causal-lm", feature_names=[], feature_dtypes=[],
                          tokenizer=Tokenizer.from_file(base / "tokenizer.json"))
    return save_export(tmp_path_factory.mktemp("tuned") / "export", manifest, None, transform.state_dict(),
                       job="tuned", metrics={}, write_hf=write)


def _app(export: Path, protocols: list[str]) -> Any:
    from lmspec.engine.predictor import load_export
    from lmspec.serve.app import create_app
    from lmspec.v1alpha1 import InferenceService

    service = InferenceService.model_validate({
        "apiVersion": "lmspec.io/v1alpha1", "kind": "InferenceService", "metadata": {"name": "m"},
        "spec": {"model": {"path": str(export)}, "protocols": protocols}})
    return create_app(service, lambda: load_export(export, service.spec))


def _ready(state: Any) -> None:
    deadline = time.monotonic() + 120
    while not state.ready and time.monotonic() < deadline:
        assert state.load_error is None, state.load_error
        time.sleep(0.02)
    assert state.ready


def test_a_lora_export_over_a_pretrained_base_serves_the_bases_context_length(lora_export: Path) -> None:
    from starlette.testclient import TestClient

    from lmspec.engine.predictor import load_export

    loaded = load_export(lora_export)
    assert loaded.language_model is not None and loaded.language_model.context_length == BASE_CONTEXT
    app, state = _app(lora_export, ["oip-v2", "openai"])
    with TestClient(app) as client:
        _ready(state)
        assert client.get("/v1/models").json()["data"][0]["max_model_len"] == BASE_CONTEXT
        r = client.post("/v1/completions", json={"model": "m", "prompt": [5] * 787, "max_tokens": 4})
        assert r.status_code == 400 and r.json()["error"]["code"] == "context_length_exceeded", r.text[:300]
        r = client.post("/v2/models/m/infer", json={"inputs": [{"name": "input_ids", "shape": [1, 300],
                                                                "datatype": "INT64", "data": [5] * 300}]})
        assert r.status_code == 400 and "context length of 256" in r.json()["error"], r.text[:300]
        r = client.post("/v1/completions", json={"model": "m", "prompt": "The server", "max_tokens": 4})
        assert r.status_code == 200, r.text[:300]


def test_oip_infer_on_a_hugging_face_lm_refuses_over_long_ids_before_the_forward_pass(base: Path) -> None:
    from starlette.testclient import TestClient

    app, state = _app(base, ["oip-v2"])
    with TestClient(app) as client:
        _ready(state)
        assert state.loaded is not None
        predictor = state.loaded.require_predictor()
        passes: list[int] = []
        predict = predictor.predict

        def counted(inputs: dict[str, Any]) -> dict[str, Any]:
            passes.append(inputs["input_ids"].shape[1])
            return predict(inputs)

        predictor.predict = counted  # type: ignore[method-assign]
        for length in (BASE_CONTEXT + 1, 5000):
            r = client.post("/v2/models/m/infer", json={"inputs": [{
                "name": "input_ids", "shape": [1, length], "datatype": "INT64", "data": [5] * length}]})
            assert r.status_code == 400, r.text[:300]
            assert f"{length} token ids exceed the model's context length of {BASE_CONTEXT}" in r.json()["error"]
        r = client.post("/v2/models/m/infer", json={"inputs": [{
            "name": "input_ids", "shape": [1, 2], "datatype": "INT64", "data": [5, 100000]}]})
        assert r.status_code == 400 and "vocabulary" in r.json()["error"], r.text[:300]
        assert passes == []  # no forward pass for any refused request
        r = client.post("/v2/models/m/infer", json={"inputs": [{
            "name": "input_ids", "shape": [1, 3], "datatype": "INT64", "data": [5, 6, 7]}]})
        assert r.status_code == 200 and passes == [3], r.text[:300]


def test_an_adapter_without_weights_is_named_with_the_files_it_needs(base: Path, lora_export: Path,
                                                                     tmp_path: Path) -> None:
    import shutil

    from lmspec.engine.lm import ModelLoadError, load_hf_dir
    from lmspec.model.export import ExportError, load_exported
    from lmspec.standard import Placement

    adapter = _adapter(base, tmp_path / "adapter")
    config = json.loads((adapter / "adapter_config.json").read_text())
    config["base_model_name_or_path"] = os.path.relpath(base, adapter)
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    (adapter / "adapter_model.safetensors").unlink()
    with pytest.raises(ModelLoadError) as raised:
        load_hf_dir(adapter, Placement())
    message = str(raised.value)
    assert str(adapter) in message and "adapter_model.safetensors" in message and "Repo id" not in message

    export = Path(shutil.copytree(lora_export, tmp_path / "export"))
    (export / "adapter" / "adapter_model.safetensors").unlink()
    with pytest.raises(ExportError) as failed:
        load_exported(export)
    assert str(export / "adapter") in str(failed.value) and "adapter_model.safetensors" in str(failed.value)


def test_v1_models_is_503_until_the_model_is_loaded(base: Path) -> None:
    import threading

    from starlette.testclient import TestClient

    from lmspec.engine.predictor import load_export
    from lmspec.serve.app import create_app
    from lmspec.v1alpha1 import InferenceService

    service = InferenceService.model_validate({
        "apiVersion": "lmspec.io/v1alpha1", "kind": "InferenceService", "metadata": {"name": "m"},
        "spec": {"model": {"path": str(base)}, "protocols": ["openai"]}})
    go = threading.Event()

    def slow_load() -> Any:
        go.wait(60)
        return load_export(base, service.spec)

    app, state = create_app(service, slow_load)
    with TestClient(app) as client:
        r = client.get("/v1/models")
        assert r.status_code == 503 and r.headers["retry-after"] == "1", r.text
        assert "not ready" in r.json()["error"]["message"]
        go.set()
        _ready(state)
        [model] = client.get("/v1/models").json()["data"]
        assert model["id"] == "m" and model["max_model_len"] == BASE_CONTEXT
