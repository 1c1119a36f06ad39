"""The fitted transform: a JSON round trip gives serving exactly what training computed."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from lmspec.data import Transform, prepare


@pytest.fixture
def prepared(tmp_path, make_dataset, write_csv):
    rng = np.random.default_rng(0)
    colors = ["red", "green", "blue"]

    def rows(n):
        return [[round(float(v), 3), round(float(w), 3), colors[i % 3], "a" if v > 0 else "b"]
                for i, (v, w) in enumerate(rng.normal(size=(n, 2)))]

    write_csv(tmp_path / "train.csv", ["u", "v", "color", "t"], rows(50))
    write_csv(tmp_path / "test.csv", ["u", "v", "color", "t"], rows(10))
    ds = make_dataset(
        sources=[{"path": "train.csv", "split": "train"}, {"path": "test.csv", "split": "test"}],
        features=[{"name": "u"}, {"name": "color", "dtype": "string"}, {"name": "v"}],
        target={"name": "t"},
        preprocessing=[{"type": "labelEncode", "column": "color"}, {"type": "standardize"},
                       {"type": "minMax", "columns": ["v", "color"], "range": [-1, 1]},
                       {"type": "gaussianNoise", "std": 0.1}],
        splits={"by": "file"})
    return prepare(ds, tmp_path, model_task="classification"), tmp_path / "test.csv"


def test_serving_equals_training(prepared):
    data, test_csv = prepared
    served = Transform.from_state_dict(json.loads(json.dumps(data.transform.state_dict())))
    with test_csv.open() as f:
        records = list(csv.DictReader(f))
    assert np.array_equal(served.encode_records(records), data.test.inputs)
    ids = {c: k for k, c in enumerate(served.categories["color"]["vocab"])}
    raw = np.array([[float(r["u"]), ids[r["color"]], float(r["v"])] for r in records])
    assert np.array_equal(served.transform_features(raw), data.test.inputs)
    assert served.decode_targets(data.test.targets) == [r["t"] for r in records]
    assert served.noise == data.transform.noise


def test_bad_serving_input_is_a_clear_value_error(prepared):
    t = prepared[0].transform
    with pytest.raises(ValueError, match=r"shape \[N, 3\]"):
        t.transform_features(np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"'v'.*not a finite number"):
        t.transform_features(np.array([[0.0, 1.0, np.nan]]))
    with pytest.raises(ValueError, match="not a category id"):
        t.transform_features(np.array([[0.0, 7.0, 0.0]]))
    with pytest.raises(ValueError, match="category 'purple' is unknown"):
        t.encode_records([{"u": 1, "v": 2, "color": "purple"}])
    with pytest.raises(ValueError, match="missing feature"):
        t.encode_records([{"u": 1, "color": "red"}])
    with pytest.raises(ValueError, match="not a number"):
        t.encode_records([{"u": "x", "v": 2, "color": "red"}])


def test_state_version_is_checked(prepared):
    state = prepared[0].transform.state_dict()
    state["version"] = 99
    with pytest.raises(ValueError, match="version 99"):
        Transform.from_state_dict(state)


@pytest.mark.parametrize("field", ["u", "color"])
def test_serving_errors_show_a_short_escaped_excerpt_of_the_value(prepared, field):
    """A client's value appears in a 400's message as an excerpt of at most 20 characters,
    escaped, and not at all when it looks like a credential."""
    t = prepared[0].transform
    record = {"u": 1, "v": 2, "color": "red"}
    with pytest.raises(ValueError) as long_value:
        t.encode_records([{**record, field: "x\n\x1b[2J" + "y " * 5_000}])
    message = str(long_value.value)
    assert "y y y y y y y y" not in message and "\x1b" not in message and "\n" not in message
    assert "'x\\n\\x1b[2Jy y y y y…'" in message and len(message) < 200, message
    with pytest.raises(ValueError) as secret:
        t.encode_records([{**record, field: "api_key=sk-live-abcdef"}])
    assert "sk-live" not in str(secret.value) and "looks like a credential" in str(secret.value)
