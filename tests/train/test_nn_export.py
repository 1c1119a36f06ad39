"""Model builders and the export format, with real data prepared by lmspec.data."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from train_helpers import IRIS_DATASET, IRIS_MODEL

from lmspec.data import prepare
from lmspec.files import sha256_file
from lmspec.model.build import CausalLM, ModelError, build_model, load_weights, unique_state
from lmspec.model.export import load_exported, save_export
from lmspec.v1alpha1 import Dataset, Model, ModelSpec
from lmspec.v1alpha1.common import FileRef

LM = {"task": "causal-lm",
      "architecture": {"type": "transformer", "vocabSize": 256, "contextLength": 16, "width": 16,
                       "depth": 1, "heads": 2},
      "signature": {"inputs": [{"name": "ids", "dtype": "int64", "shape": [-1, -1]}],
                    "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1, 256]}]}}


def test_builders_shapes() -> None:
    mlp = build_model(Model.model_validate(IRIS_MODEL, strict=False).spec)
    assert mlp(torch.zeros(5, 4)).shape == (5, 3)
    lm = build_model(ModelSpec.model_validate(LM, strict=False))
    assert lm(torch.zeros(2, 7, dtype=torch.long)).shape == (2, 7, 256)


def test_tied_weights_stored_once_and_restored() -> None:
    spec = ModelSpec.model_validate(LM, strict=False)
    torch.manual_seed(0)
    a = build_model(spec)
    state = unique_state(a.state_dict())
    assert "lm.lm_head.weight" not in state  # tied to the token embedding
    b = build_model(spec)
    b.load_state_dict(a.state_dict())
    ids = torch.randint(0, 256, (1, 5))
    assert torch.equal(a(ids), b(ids))


def test_initial_weights_are_checked(tmp_path: Path) -> None:
    spec = Model.model_validate(IRIS_MODEL, strict=False).spec
    model = build_model(spec)
    f = tmp_path / "w.safetensors"
    save_file(unique_state(model.state_dict()), str(f))
    load_weights(build_model(spec), f, sha256=sha256_file(f))
    with pytest.raises(ModelError, match="sha256"):
        load_weights(build_model(spec), f, sha256="0" * 64)
    save_file({"nope": torch.zeros(1)}, str(f))
    with pytest.raises(ModelError, match="does not match"):
        load_weights(build_model(spec), f)


def test_export_round_trip(tmp_path: Path) -> None:
    manifest = Model.model_validate(IRIS_MODEL, strict=False)
    data = prepare(Dataset.model_validate(IRIS_DATASET, strict=False), tmp_path, model_task="classification")
    torch.manual_seed(1)
    model = build_model(manifest.spec).eval()
    out = save_export(tmp_path / "export", manifest, model.state_dict(), data.transform.state_dict(),
                      job="job", metrics={"accuracy": 0.5}, input_width=4)
    save_export(out, manifest, model.state_dict(), data.transform.state_dict(), job="job", metrics={})
    exported = load_exported(out)
    assert exported.info["format"] == 1 and exported.info["job"] == "job"
    raw = np.array([[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]], dtype=np.float32)
    got = exported.predict({"features": raw})["logits"]
    with torch.no_grad():
        want = model(torch.from_numpy(data.transform.transform_features(raw).astype(np.float32))).numpy()
    np.testing.assert_array_equal(got, want)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export"]  # no temporary left behind
    # Modes as for any new file (the run directory's other files): no private 0600/0700.
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~mask
    for f in out.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o666 & ~mask, f.name


@pytest.mark.parametrize("architecture", [
    {"type": "huggingface", "modelType": "llama", "config": {
        "vocab_size": 64, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "num_key_value_heads": 2, "max_position_embeddings": 16,
        "tie_word_embeddings": True}},
    {"type": "transformer", "vocabSize": 64, "contextLength": 16, "width": 16, "depth": 1, "heads": 2},
])
def test_initial_weights_from_hugging_face_save_pretrained(tmp_path: Path, architecture: dict[str, Any]) -> None:
    spec = Model.model_validate({
        "apiVersion": "lmspec.io/v1alpha1", "kind": "Model", "metadata": {"name": "lm"},
        "spec": {"task": "causal-lm", "architecture": architecture, "signature": {
            "inputs": [{"name": "input_ids", "dtype": "int64", "shape": [-1, -1]}],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, -1, 64]}]}}}, strict=False).spec
    torch.manual_seed(5)
    pretrained = build_model(spec)
    assert isinstance(pretrained, CausalLM)
    pretrained.lm.save_pretrained(str(tmp_path / "hf"))  # keys "model.*" / "transformer.*", no "lm." prefix
    weights = tmp_path / "hf" / "model.safetensors"
    torch.manual_seed(6)
    model = build_model(spec.model_copy(update={"initial_weights": FileRef(path=str(weights))}))
    for (name, want), got in zip(pretrained.state_dict().items(), model.state_dict().values(), strict=True):
        assert torch.equal(want, got), name
