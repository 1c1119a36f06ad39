"""Preprocessing steps, and that fitted steps learn from the training split only."""

from __future__ import annotations

import numpy as np
import pytest

from lmspec.data import DataError, prepare

ALL_TRAIN = {"ratios": {"train": 1.0}}


def _prep(ds, base, task="classification"):
    return prepare(ds, base, model_task=task)


def test_dedupe_on_columns(tmp_path, make_dataset, write_csv):
    write_csv(tmp_path / "d.csv", ["a", "b", "t"], [[1, 1, "x"], [1, 2, "x"], [1, 1, "y"], [2, 1, "x"]])
    ds = make_dataset(sources=[{"path": "d.csv"}], features=[{"name": "a"}, {"name": "b"}],
                      target={"name": "t"}, splits=ALL_TRAIN,
                      preprocessing=[{"type": "dedupe", "columns": ["a", "t"]}])
    assert _prep(ds, tmp_path).train.inputs.tolist() == [[1, 1], [1, 1], [2, 1]]
    ds = make_dataset(sources=[{"path": "d.csv"}], features=[{"name": "a"}, {"name": "b"}],
                      target={"name": "t"}, splits=ALL_TRAIN, preprocessing=[{"type": "dedupe"}])
    assert len(_prep(ds, tmp_path).train) == 4


@pytest.mark.parametrize(("op", "value", "kept"), [
    ("eq", 2, [2]), ("ne", 2, [1, 3, 4]), ("lt", 2, [1]), ("le", 2, [1, 2]),
    ("gt", 2, [3, 4]), ("ge", 2, [2, 3, 4]), ("in", [1, 4], [1, 4]), ("notIn", [1, 4], [2, 3]),
])
def test_filter_numeric(tmp_path, make_dataset, write_csv, op, value, kept):
    write_csv(tmp_path / "d.csv", ["a", "t"], [[i, "x"] for i in (1, 2, 3, 4)])
    ds = make_dataset(sources=[{"path": "d.csv"}], features=[{"name": "a"}], target={"name": "t"},
                      splits=ALL_TRAIN,
                      preprocessing=[{"type": "filter", "column": "a", "op": op, "value": value}])
    assert _prep(ds, tmp_path).train.inputs[:, 0].tolist() == kept


@pytest.mark.parametrize(("op", "value", "kept"), [
    ("eq", "b", ["b"]), ("ne", "b", ["a", "c"]), ("gt", "a", ["b", "c"]),
    ("in", ["a", "c"], ["a", "c"]), ("notIn", ["a"], ["b", "c"]),
])
def test_filter_strings(tmp_path, make_dataset, write_csv, op, value, kept):
    write_csv(tmp_path / "d.csv", ["a", "t"], [[1, "a"], [2, "b"], [3, "c"]])
    ds = make_dataset(sources=[{"path": "d.csv"}], features=[{"name": "a"}], target={"name": "t"},
                      splits=ALL_TRAIN,
                      preprocessing=[{"type": "filter", "column": "t", "op": op, "value": value}])
    data = _prep(ds, tmp_path)
    assert data.transform.decode_targets(data.train.targets) == kept


def test_filter_value_type_error(toy, make_dataset, toy_spec, validator_rules):
    ds = make_dataset(**toy_spec(preprocessing=[{"type": "dropNulls"},
                                                {"type": "filter", "column": "x", "op": "gt", "value": "5"}]))
    assert "dataset.filter-value" in validator_rules(ds, "classification")


def test_standardize_and_minmax(toy, make_dataset, toy_spec):
    ds = make_dataset(**toy_spec(
        splits={"ratios": {"train": 1.0}},
        preprocessing=[{"type": "standardize", "columns": ["x"]},
                       {"type": "minMax", "columns": ["y"], "range": [-1.0, 1.0]}]))
    x = _prep(ds, toy).train.inputs
    assert abs(x[:, 0].mean()) < 1e-6 and abs(x[:, 0].std() - 1) < 1e-6
    assert x[:, 1].min() == -1.0 and x[:, 1].max() == 1.0


def test_default_columns_are_the_numeric_features(toy, make_dataset, toy_spec):
    ds = make_dataset(**toy_spec(
        features=[{"name": "x"}, {"name": "color", "dtype": "string"}],
        splits={"ratios": {"train": 1.0}},
        preprocessing=[{"type": "labelEncode", "column": "color"}, {"type": "standardize"}]))
    data = _prep(ds, toy)
    x = data.train.inputs
    assert abs(x[:, 0].std() - 1) < 1e-6
    assert sorted(set(x[:, 1].tolist())) == [0.0, 1.0]  # category ids, not standardized
    assert data.transform.categories["color"]["vocab"] == ["blue", "red"]


def test_string_feature_needs_labelencode(toy, make_dataset, toy_spec, validator_rules):
    ds = make_dataset(**toy_spec(features=[{"name": "x"}, {"name": "color", "dtype": "string"}]))
    assert "trainingjob.dataset-columns" in validator_rules(ds, "classification")


@pytest.mark.parametrize("unknown", ["error", "ignore"])
def test_labelencode_unknown_category(tmp_path, make_dataset, write_csv, unknown):
    write_csv(tmp_path / "train.csv", ["c", "t"], [["a", "x"], ["b", "y"]])
    write_csv(tmp_path / "val.csv", ["c", "t"], [["a", "x"], ["z", "y"]])
    ds = make_dataset(
        sources=[{"path": "train.csv", "split": "train"}, {"path": "val.csv", "split": "validation"}],
        features=[{"name": "c", "dtype": "string"}], target={"name": "t"},
        preprocessing=[{"type": "labelEncode", "column": "c", "unknown": unknown}],
        splits={"by": "file"})
    if unknown == "error":
        with pytest.raises(DataError) as e:
            _prep(ds, tmp_path)
        assert (e.value.row, e.value.column, e.value.field) == (3, "c", "spec.preprocessing[0]")
        assert e.value.file is not None and e.value.file.endswith("val.csv")
    else:
        assert _prep(ds, tmp_path).validation.inputs[:, 0].tolist() == [0.0, -1.0]


def test_target_classes_declared_order_and_unknown_label(toy, make_dataset, toy_spec):
    ds = make_dataset(**toy_spec(target={"name": "label", "classes": ["lo", "hi"]}))
    data = _prep(ds, toy)
    assert data.transform.classes == ["lo", "hi"]
    x0 = data.train.inputs[:, 0]
    assert data.train.targets.tolist() == (x0 >= 10).astype(np.int64).tolist()
    ds = make_dataset(**toy_spec(target={"name": "label", "classes": ["lo"]}))
    with pytest.raises(DataError) as e:
        _prep(ds, toy)
    assert e.value.field == "spec.target.classes" and "'hi'" in str(e.value)


def test_learned_classes_are_sorted(toy, make_dataset, toy_spec):
    data = _prep(make_dataset(**toy_spec()), toy)
    assert data.transform.classes == ["hi", "lo"]
    assert data.transform.decode_targets(np.array([1, 0])) == ["lo", "hi"]


def test_fitted_on_train_only(tmp_path, make_dataset, write_csv):
    """Wildly different validation data leaves every fitted statistic unchanged."""
    write_csv(tmp_path / "train.csv", ["a", "c", "t"], [[1, "p", "x"], [2, "q", "y"], [3, "p", "x"]])
    write_csv(tmp_path / "v1.csv", ["a", "c", "t"], [[2, "p", "x"]])
    write_csv(tmp_path / "v2.csv", ["a", "c", "t"], [[1e6, "q", "y"], [-1e6, "q", "x"]])
    states = []
    for val in ("v1.csv", "v2.csv"):
        ds = make_dataset(
            sources=[{"path": "train.csv", "split": "train"}, {"path": val, "split": "validation"}],
            features=[{"name": "a"}, {"name": "c", "dtype": "string"}], target={"name": "t"},
            preprocessing=[{"type": "labelEncode", "column": "c"}, {"type": "standardize"},
                           {"type": "minMax", "columns": ["a"]}],
            splits={"by": "file"})
        data = _prep(ds, tmp_path)
        states.append(data.transform.state_dict())
        assert data.train.inputs[:, 0].tolist() == [0.0, 0.5, 1.0]
    assert states[0] == states[1]
    assert states[0]["ops"][0]["shift"] == [2.0]  # the train mean: 1, 2, 3


def test_gaussian_noise_is_training_time_only(toy, make_dataset, toy_spec):
    ds = make_dataset(**toy_spec(preprocessing=[
        {"type": "gaussianNoise", "std": 0.5, "columns": ["x"]},
        {"type": "minMax", "columns": ["x"], "range": [0.0, 2.0]}]))
    data = _prep(ds, toy)
    base = _prep(make_dataset(**toy_spec(preprocessing=[
        {"type": "minMax", "columns": ["x"], "range": [0.0, 2.0]}])), toy)
    assert np.array_equal(data.train.inputs, base.train.inputs)  # prepared data has no noise
    x = np.zeros((20000, 2), dtype=np.float32)
    noisy = data.transform.augment(x, np.random.default_rng(0))
    assert noisy[:, 1].tolist() == [0.0] * 20000
    # The noise is declared in raw units; minMax after it scales x by 2 / (max - min) of train x.
    scale = data.transform.ops[0]["scale"][0]
    assert scale < 0.5
    assert abs(noisy[:, 0].std() - 0.5 * scale) < 0.01
    assert np.array_equal(base.transform.augment(x, np.random.default_rng(0)), x)


def test_regression_target_scaling_round_trips(example_data, make_dataset):
    names = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
    ds = make_dataset(sources=[{"path": "diabetes.csv"}], features=[{"name": n} for n in names],
                      target={"name": "progression", "dtype": "float32"},
                      preprocessing=[{"type": "standardize", "columns": [*names, "progression"]}])
    data = prepare(ds, example_data, model_task="regression")
    assert data.train.targets.dtype == np.float32 and data.train.inputs.shape[1] == 10
    assert abs(float(data.train.targets.mean())) < 1e-5
    raw = data.transform.decode_targets(data.train.targets[:5])
    assert all(abs(v - round(v)) < 1e-3 for v in raw)  # progression is an integer in the file
    assert len(data.train) + len(data.validation) + len(data.test) == 442
