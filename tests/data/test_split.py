"""Seeded splits, stratification, splits by file and shards."""

from __future__ import annotations

import numpy as np
import pytest

from lmspec.data import Split, prepare
from lmspec.data.split import SPLITS, permutation, ratio_split, split_counts


def test_permutation_is_pinned():
    # Recorded once: a change here means splits differ from those of earlier lmspec releases.
    assert permutation(10, 0).tolist() == [3, 2, 1, 8, 6, 0, 7, 4, 5, 9]
    assert sorted(permutation(1000, 123).tolist()) == list(range(1000))


def test_same_seed_same_split_other_seed_other_split():
    r = {"train": 0.5, "validation": 0.25, "test": 0.25}
    a, b, c = ratio_split(100, r, 1), ratio_split(100, r, 1), ratio_split(100, r, 2)
    assert all(np.array_equal(a[s], b[s]) for s in SPLITS)
    assert not np.array_equal(a["train"], c["train"])
    assert sorted(np.concatenate([a[s] for s in SPLITS]).tolist()) == list(range(100))


@pytest.mark.parametrize("n", [0, 1, 7, 10, 101])
def test_counts_always_sum(n):
    counts = split_counts(n, {"train": 0.7, "validation": 0.15, "test": 0.15})
    assert sum(counts) == n and all(c >= 0 for c in counts)


def test_stratify_keeps_class_proportions():
    groups = np.array(["a"] * 80 + ["b"] * 20, dtype=object)
    parts = ratio_split(100, {"train": 0.5, "validation": 0.25, "test": 0.25}, 0, groups)
    for s, n in zip(SPLITS, (50, 25, 25), strict=True):
        assert len(parts[s]) == n
        assert (groups[parts[s]] == "b").sum() == n // 5
    plain = ratio_split(100, {"train": 0.5, "validation": 0.25, "test": 0.25}, 0)
    assert [(groups[plain[s]] == "b").sum() for s in SPLITS] != [10, 5, 5]  # chance alone does not


def test_split_is_deterministic_through_prepare(toy, make_dataset, toy_spec):
    a = prepare(make_dataset(**toy_spec()), toy, model_task="classification")
    b = prepare(make_dataset(**toy_spec()), toy, model_task="classification")
    assert np.array_equal(a.test.inputs, b.test.inputs)
    assert a.fingerprint == b.fingerprint


def test_split_by_file(tmp_path, make_dataset, write_csv):
    write_csv(tmp_path / "a.csv", ["x", "t"], [[1, "p"], [2, "q"]])
    write_csv(tmp_path / "b.csv", ["x", "t"], [[3, "p"]])
    ds = make_dataset(sources=[{"path": "a.csv", "split": "train"}, {"path": "b.csv", "split": "test"}],
                      features=[{"name": "x"}], target={"name": "t"}, splits={"by": "file"})
    data = prepare(ds, tmp_path, model_task="classification")
    assert data.train.inputs[:, 0].tolist() == [1, 2] and data.test.inputs[:, 0].tolist() == [3]
    assert data.validation.inputs.shape == (0, 1) and len(data.validation) == 0


def test_source_split_needs_split_by_file(toy, make_dataset, toy_spec, validator_rules):
    ds = make_dataset(**toy_spec(sources=[{"path": "toy.csv", "split": "train"}]))
    assert "dataset.split-unused" in validator_rules(ds, "classification")


def test_by_file_source_without_split_is_training_data(tmp_path, make_dataset, write_csv, validator_rules):
    write_csv(tmp_path / "a.csv", ["x", "t"], [[1, "p"], [2, "q"]])
    write_csv(tmp_path / "b.csv", ["x", "t"], [[3, "p"]])
    ds = make_dataset(sources=[{"path": "a.csv"}, {"path": "b.csv", "split": "validation"}],
                      features=[{"name": "x"}], target={"name": "t"}, splits={"by": "file"})
    assert not validator_rules(ds, "classification")
    data = prepare(ds, tmp_path, model_task="classification")
    assert data.train.inputs[:, 0].tolist() == [1, 2] and data.validation.inputs[:, 0].tolist() == [3]


def test_shards_are_equal_disjoint_and_drop_the_remainder():
    s = Split(np.arange(11, dtype=np.float32)[:, None], np.arange(11))
    shards = [s.shard(r, 3) for r in range(3)]
    assert [len(x) for x in shards] == [3, 3, 3]
    rows = sorted(int(v) for x in shards for v in x.targets)
    assert rows == list(range(9))
    assert np.array_equal(s.shard(0, 1).inputs, s.inputs)
    with pytest.raises(ValueError):
        s.shard(3, 3)
