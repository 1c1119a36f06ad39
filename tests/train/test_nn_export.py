"""Model builders and the export format, with real data prepared by lmspec.data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from train_helpers import IRIS_DATASET, IRIS_MODEL

from lmspec.data import prepare
from lmspec.files import sha256_file
from lmspec.model.build import ModelError, build_model, load_weights, unique_state
from lmspec.model.export import load_exported, save_export
from lmspec.v1alpha1 import Dataset, Model, ModelSpec

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
