"""The preprocessing cache: hits, misses, invalidation and atomic writes."""

from __future__ import annotations

import numpy as np

from lmspec.data import prepare


def _files(cache):
    return sorted(p.name for p in cache.iterdir())


def test_hit_returns_identical_arrays_without_rewriting(toy, make_dataset, toy_spec):
    cache = toy / "cache"
    ds = make_dataset(**toy_spec(preprocessing=[{"type": "standardize"}]))
    first = prepare(ds, toy, model_task="classification", cache_dir=cache)
    npz = cache / f"{first.fingerprint}.npz"
    assert _files(cache) == [f"{first.fingerprint}.json", f"{first.fingerprint}.npz"]
    stamp = npz.stat().st_mtime_ns
    second = prepare(ds, toy, model_task="classification", cache_dir=cache)
    assert npz.stat().st_mtime_ns == stamp
    for name in ("train", "validation", "test"):
        a, b = first.split(name), second.split(name)
        assert a.inputs.dtype == b.inputs.dtype and np.array_equal(a.inputs, b.inputs)
        assert a.targets.dtype == b.targets.dtype and np.array_equal(a.targets, b.targets)
    assert second.transform.state_dict() == first.transform.state_dict()
    assert second.files == first.files


def test_a_changed_file_or_spec_or_task_misses(toy, make_dataset, toy_spec, write_csv):
    cache = toy / "cache"
    base = prepare(make_dataset(**toy_spec()), toy, model_task="classification", cache_dir=cache)
    other_seed = prepare(make_dataset(**toy_spec(splits={"seed": 4})), toy,
                         model_task="classification", cache_dir=cache)
    assert other_seed.fingerprint != base.fingerprint
    rows = [[float(i), 0.0, "red", "hi" if i >= 10 else "lo"] for i in range(20)]
    write_csv(toy / "toy.csv", ["x", "y", "color", "label"], rows)
    changed = prepare(make_dataset(**toy_spec()), toy, model_task="classification", cache_dir=cache)
    assert changed.fingerprint != base.fingerprint
    assert (changed.train.inputs[:, 1] == 0).all()  # the new data, not the cached old arrays
    assert len(_files(cache)) == 6


def test_an_explicit_default_keeps_the_fingerprint(toy, make_dataset, toy_spec):
    a = prepare(make_dataset(**toy_spec()), toy, model_task="classification")
    spec = toy_spec()
    spec["splits"] = {**spec["splits"], "by": "ratio"}
    b = prepare(make_dataset(**spec), toy, model_task="classification")
    assert a.fingerprint == b.fingerprint


def test_a_corrupt_entry_is_recomputed(toy, make_dataset, toy_spec):
    cache = toy / "cache"
    ds = make_dataset(**toy_spec())
    good = prepare(ds, toy, model_task="classification", cache_dir=cache)
    (cache / f"{good.fingerprint}.npz").write_bytes(b"truncated")
    again = prepare(ds, toy, model_task="classification", cache_dir=cache)
    assert np.array_equal(again.train.inputs, good.train.inputs)
    with np.load(cache / f"{good.fingerprint}.npz") as z:  # and the entry was rewritten whole
        assert np.array_equal(z["train_inputs"], good.train.inputs)


def test_only_rank_zero_writes(toy, make_dataset, toy_spec):
    cache = toy / "cache"
    prepare(make_dataset(**toy_spec()), toy, model_task="classification", cache_dir=cache, rank=1,
            world_size=2)
    assert not cache.exists() or _files(cache) == []
