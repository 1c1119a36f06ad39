"""Readers (csv, jsonl, parquet, text), source resolution, digests and the errors they raise."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from lmspec.data import DataError, prepare

FEATURES = [{"name": "a"}, {"name": "b"}]
TARGET = {"name": "t", "dtype": "string"}
ALL_TRAIN = {"ratios": {"train": 1.0}}


def _prep(ds, base, task="classification"):
    return prepare(ds, base, model_task=task)


def test_csv_reader(tmp_path, make_dataset, write_csv):
    write_csv(tmp_path / "d.csv", ["b", "t", "a"], [[2, "x", 1], [4, "y", 3]])
    data = _prep(make_dataset(sources=[{"path": "d.csv"}], features=FEATURES, target=TARGET,
                              splits=ALL_TRAIN), tmp_path)
    assert data.train.inputs.tolist() == [[1.0, 2.0], [3.0, 4.0]]  # feature order, not file order
    assert data.train.inputs.dtype == np.float32
    assert data.train.targets.tolist() == [0, 1]
    assert data.files == {"d.csv": hashlib.sha256((tmp_path / "d.csv").read_bytes()).hexdigest()}


def test_jsonl_reader(tmp_path, make_dataset):
    lines = [{"a": 1, "b": 2.5, "t": "x"}, {"a": "3", "b": 4, "t": "y", "extra": [1]}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(r) for r in lines) + "\n\n")
    data = _prep(make_dataset(sources=[{"path": "d.jsonl"}], features=FEATURES, target=TARGET,
                              splits=ALL_TRAIN), tmp_path)
    assert data.train.inputs.tolist() == [[1.0, 2.5], [3.0, 4.0]]


def test_parquet_reader(tmp_path, make_dataset):
    table = pa.table({"a": pa.array([1, 2, 3], pa.int32()), "b": [0.5, 1.5, 2.5],
                      "t": ["x", "y", "x"], "unused": [1, 2, 3]})
    pq.write_table(table, tmp_path / "d.parquet")
    data = _prep(make_dataset(sources=[{"path": "d.parquet"}], features=FEATURES, target=TARGET,
                              splits=ALL_TRAIN), tmp_path)
    assert data.train.inputs.tolist() == [[1.0, 0.5], [2.0, 1.5], [3.0, 2.5]]
    assert data.transform.classes == ["x", "y"]


def test_text_reader_each_file_is_a_document(tmp_path, make_dataset):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "b.txt").write_text("bbbb")
    (tmp_path / "docs" / "a.txt").write_text("aaaa")
    ds = make_dataset(sources=[{"path": "docs/*.txt"}],
                      preprocessing=[{"type": "tokenize", "tokenizer": {"type": "byte"}},
                                     {"type": "pack", "sequenceLength": 3}],
                      splits=ALL_TRAIN)
    data = _prep(ds, tmp_path, "causal-lm")
    # Sorted glob order: a.txt then b.txt, concatenated (the byte tokenizer has no separator).
    assert data.train.all_rows().inputs.tolist() == [list(b"aaa"), list(b"abb")]
    assert list(data.files) == ["docs/a.txt", "docs/b.txt"]


def test_format_override_and_glob_of_several_csvs(tmp_path, make_dataset, write_csv):
    write_csv(tmp_path / "p" / "1.dat", ["a", "b", "t"], [[1, 1, "x"]])
    write_csv(tmp_path / "p" / "2.dat", ["a", "b", "t"], [[2, 2, "y"]])
    data = _prep(make_dataset(sources=[{"path": "p/*.dat", "format": "csv"}], features=FEATURES,
                              target=TARGET, splits=ALL_TRAIN), tmp_path)
    assert data.train.inputs[:, 0].tolist() == [1.0, 2.0]


def test_sha256_pin_accepted(tmp_path, make_dataset, write_csv):
    p = write_csv(tmp_path / "d.csv", ["a", "b", "t"], [[1, 2, "x"]])
    digest = hashlib.sha256(p.read_bytes()).hexdigest()
    _prep(make_dataset(sources=[{"path": "d.csv", "sha256": digest}], features=FEATURES,
                       target=TARGET, splits=ALL_TRAIN), tmp_path)


# --- errors ----------------------------------------------------------------------------------

def _error(tmp_path, ds, task="classification") -> DataError:
    with pytest.raises(DataError) as e:
        prepare(ds, tmp_path, model_task=task)
    return e.value


def test_missing_column_lists_columns_and_suggests(tmp_path, make_dataset, write_csv):
    write_csv(tmp_path / "d.csv", ["alpha", "b", "t"], [[1, 2, "x"]])
    features = [{"name": "b"}, {"name": "alpah"}]
    err = _error(tmp_path, make_dataset(sources=[{"path": "d.csv"}], features=features,
                                        target=TARGET, splits=ALL_TRAIN))
    assert err.field == "spec.features[1]"
    assert err.file is not None and err.file.endswith("d.csv")
    assert "it has: alpha, b, t" in str(err)
    assert "did you mean 'alpha'" in str(err)


def test_non_numeric_value(tmp_path, make_dataset, write_csv):
    write_csv(tmp_path / "d.csv", ["a", "b", "t"], [[1, 2, "x"], [3, 4, "y"], [5, "abc", "x"]])
    err = _error(tmp_path, make_dataset(sources=[{"path": "d.csv"}], features=FEATURES,
                                        target=TARGET, splits=ALL_TRAIN))
    # The header is row 1, so the third data row is row 4.
    assert (err.row, err.column, err.field) == (4, "b", "spec.features[1]")
    assert str(err).startswith(f"{err.file}, row 4, column 'b' (spec.features[1]): value 'abc'")


def test_non_numeric_in_jsonl_names_the_line(tmp_path, make_dataset):
    (tmp_path / "d.jsonl").write_text('{"a": 1, "b": 1, "t": "x"}\n\n{"a": true, "b": 1, "t": "x"}\n')
    err = _error(tmp_path, make_dataset(sources=[{"path": "d.jsonl"}], features=FEATURES,
                                        target=TARGET, splits=ALL_TRAIN))
    assert (err.row, err.column) == (3, "a")
    assert "line 3" in str(err)


@pytest.mark.parametrize("missing", ["", "nan", "NaN"])
def test_nan_or_empty_in_numeric_column(tmp_path, make_dataset, write_csv, missing):
    write_csv(tmp_path / "d.csv", ["a", "b", "t"], [[1, 2, "x"], [3, missing, "y"]])
    err = _error(tmp_path, make_dataset(sources=[{"path": "d.csv"}], features=FEATURES,
                                        target=TARGET, splits=ALL_TRAIN))
    assert (err.row, err.column, err.field) == (3, "b", "spec.features[1]")
    assert "dropNulls" in str(err)


def test_dropnulls_removes_the_row_first(tmp_path, make_dataset, write_csv):
    write_csv(tmp_path / "d.csv", ["a", "b", "t"], [[1, 2, "x"], [3, "", "y"], [5, 6, ""]])
    data = _prep(make_dataset(sources=[{"path": "d.csv"}], features=FEATURES, target=TARGET,
                              preprocessing=[{"type": "dropNulls"}], splits=ALL_TRAIN), tmp_path)
    assert data.train.inputs.tolist() == [[1.0, 2.0]]


def test_integer_dtype_rejects_fractions(tmp_path, make_dataset, write_csv):
    write_csv(tmp_path / "d.csv", ["a", "b", "t"], [[1, 2, "x"], [1.5, 2, "y"]])
    features = [{"name": "a", "dtype": "int64"}, {"name": "b"}]
    err = _error(tmp_path, make_dataset(sources=[{"path": "d.csv"}], features=features,
                                        target=TARGET, splits=ALL_TRAIN))
    assert (err.row, err.column) == (3, "a")
    assert "int64" in str(err)


def test_bad_sha256(tmp_path, make_dataset, write_csv):
    write_csv(tmp_path / "d.csv", ["a", "b", "t"], [[1, 2, "x"]])
    err = _error(tmp_path, make_dataset(sources=[{"path": "d.csv", "sha256": "0" * 64}],
                                        features=FEATURES, target=TARGET, splits=ALL_TRAIN))
    assert err.field == "spec.sources[0].sha256"
    assert "mismatch" in str(err) and "d.csv" in str(err)


def test_unreadable_parquet(tmp_path, make_dataset):
    (tmp_path / "d.parquet").write_bytes(b"PAR1 this is not parquet")
    err = _error(tmp_path, make_dataset(sources=[{"path": "d.parquet"}], features=FEATURES,
                                        target=TARGET, splits=ALL_TRAIN))
    assert err.file is not None and err.file.endswith("d.parquet")
    assert "cannot read parquet" in str(err)


def test_empty_glob(tmp_path, make_dataset):
    err = _error(tmp_path, make_dataset(sources=[{"path": "x.csv"}, {"path": "shards/*.csv"}],
                                        features=FEATURES, target=TARGET, splits=ALL_TRAIN))
    # x.csv is checked first and is missing too: the first problem wins, with its field.
    assert err.field == "spec.sources[0].path"
    (tmp_path / "x.csv").write_text("a,b,t\n1,2,x\n")
    err = _error(tmp_path, make_dataset(sources=[{"path": "x.csv"}, {"path": "shards/*.csv"}],
                                        features=FEATURES, target=TARGET, splits=ALL_TRAIN))
    assert err.field == "spec.sources[1].path"
    assert "matches no file" in str(err)


def test_wrong_field_count(tmp_path, make_dataset):
    (tmp_path / "d.csv").write_text("a,b,t\n1,2,x\n3,4\n")
    err = _error(tmp_path, make_dataset(sources=[{"path": "d.csv"}], features=FEATURES,
                                        target=TARGET, splits=ALL_TRAIN))
    assert err.row == 3 and "has 2 fields; the header has 3" in str(err)


def test_invalid_jsonl_line(tmp_path, make_dataset):
    (tmp_path / "d.jsonl").write_text('{"a": 1, "b": 2, "t": "x"}\n{"a": 1,\n')
    err = _error(tmp_path, make_dataset(sources=[{"path": "d.jsonl"}], features=FEATURES,
                                        target=TARGET, splits=ALL_TRAIN))
    assert err.row == 2 and "invalid JSON" in str(err)


def test_unknown_extension_is_refused_by_the_validator(make_dataset, validator_rules):
    ds = make_dataset(sources=[{"path": "d.dat"}], features=FEATURES, target=TARGET, splits=ALL_TRAIN)
    assert "dataset.source-format" in validator_rules(ds, "classification")
    ds = make_dataset(sources=[{"path": "d.dat", "format": "csv"}], features=FEATURES, target=TARGET,
                      splits=ALL_TRAIN)
    assert "dataset.source-format" not in validator_rules(ds, "classification")


def test_iris_example(example_data):
    import lmspec

    m = lmspec.load([str(Path(example_data).parent / "iris")]).get("Dataset", "iris")
    assert m is not None
    data = prepare(m.obj, m.base_dir, model_task="classification")
    assert [len(data.train), len(data.validation), len(data.test)] == [105, 24, 21]
    assert data.transform.classes == ["setosa", "versicolor", "virginica"]
    for split in (data.train, data.validation, data.test):
        counts = np.bincount(split.targets, minlength=3)
        assert counts.min() == counts.max()  # stratified: equal classes, as in the full data
    assert list(data.files) == ["../data/iris.csv"]


def test_blank_lines_count_as_rows(tmp_path, make_dataset):
    (tmp_path / "d.csv").write_text("a,b,t\n1,2,x\n\n3,oops,y\n")
    err = _error(tmp_path, make_dataset(sources=[{"path": "d.csv"}], features=FEATURES,
                                        target=TARGET, splits=ALL_TRAIN))
    assert (err.row, err.column) == (4, "b")
