"""Language-model data on disk: token shards, the shared cache, bounded memory and bad input."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lmspec.data import DataError, prepare
from lmspec.data.tokens import SHARD_TOKENS, TokenStore, TokenWriter

REPO = Path(__file__).resolve().parents[2]


def _lm(make_dataset: Any, sources: list[dict[str, Any]], tokenizer: dict[str, Any] | None = None,
        length: int = 16) -> Any:
    ds = make_dataset(sources=sources,
                      preprocessing=[{"type": "tokenize", "tokenizer": tokenizer or {"type": "byte"}},
                                     {"type": "pack", "sequenceLength": length}])
    ds.spec.splits.ratios = {"train": 0.8, "validation": 0.1, "test": 0.1}
    return ds


def _texts(directory: Path, n: int = 12, size: int = 400) -> list[dict[str, Any]]:
    directory.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (directory / f"d{i:02d}.txt").write_text("".join(f"line {i} {k}\n" for k in range(size // 10)))
    return [{"path": f"{directory.name}/*.txt"}]


def test_token_store_round_trip_across_shards_and_mask_bits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from lmspec.data import tokens

    monkeypatch.setattr(tokens, "SHARD_TOKENS", 16)  # documents straddle shard files
    w = TokenWriter(tmp_path, vocab_size=300, masked=True)
    rng = np.random.default_rng(0)
    docs = [rng.integers(0, 300, size=n) for n in (5, 23, 1, 40)]
    masks = [rng.random(len(d)) < 0.5 for d in docs]
    for d, m in zip(docs, masks, strict=True):
        w.add(d, m)
    info = w.close()
    assert len(info["shards"]) == 5 and info["dtype"] == "uint16" and info["maxId"] == max(int(d.max()) for d in docs)
    store = TokenStore(tmp_path, info)
    stream, flags = np.concatenate(docs), np.concatenate(masks)
    for a, b in [(0, 69), (3, 17), (15, 16), (31, 64), (64, 69), (7, 7)]:
        assert store.read(a, b).tolist() == stream[a:b].tolist()
        assert store.read_mask(a, b).tolist() == flags[a:b].tolist()
    assert store.bytes_on_disk == 69 * 2 + sum((s["tokens"] + 7) // 8 for s in info["shards"])
    assert SHARD_TOKENS % 8 == 0


def test_vocabularies_beyond_uint16_are_stored_as_uint32_and_ids_are_checked(tmp_path: Path) -> None:
    w = TokenWriter(tmp_path, vocab_size=70_000, masked=False)
    w.add(np.array([69_999, 3]))
    store = TokenStore(tmp_path, w.close())
    assert store.dtype == np.uint32 and store.read(0, 2).tolist() == [69_999, 3]
    (tmp_path / "s").mkdir()
    small = TokenWriter(tmp_path / "s", vocab_size=1000, masked=False)
    with pytest.raises(DataError, match="token id 70000 does not fit the data cache's uint16") as e:
        small.add(np.array([1, 70_000]), where={"file": "d.jsonl", "row": 3, "unit": "line"})
    assert e.value.file == "d.jsonl" and e.value.row == 3


def test_a_damaged_or_truncated_shard_is_found_on_open_and_rebuilt(tmp_path: Path, make_dataset: Any,
                                                                   capfd: pytest.CaptureFixture[str]) -> None:
    ds = _lm(make_dataset, _texts(tmp_path / "docs"))
    cache = tmp_path / "cache"
    good = prepare(ds, tmp_path, model_task="causal-lm", cache_dir=cache)
    assert good.cache is not None and good.cache.parent == cache
    shard = good.cache / "tokens-00000.bin"
    rows = good.train.all_rows().inputs
    store_info = json.loads((good.cache / "meta.json").read_text())["store"]
    data = bytearray(shard.read_bytes())
    data[10] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(DataError, match="damaged: its sha256 differs"):
        TokenStore(good.cache, store_info)
    again = prepare(ds, tmp_path, model_task="causal-lm", cache_dir=cache)
    assert "preparing the data again" in capfd.readouterr().out
    assert np.array_equal(again.train.all_rows().inputs, rows)
    shard.write_bytes(shard.read_bytes()[:-6])  # truncated
    with pytest.raises(DataError, match="truncated or damaged"):
        TokenStore(good.cache, store_info, verify=False)
    third = prepare(ds, tmp_path, model_task="causal-lm", cache_dir=cache)
    assert np.array_equal(third.train.all_rows().inputs, rows)


def test_one_cache_entry_per_dataset_shared_and_built_once_under_a_lock(tmp_path: Path, make_dataset: Any) -> None:
    ds = _lm(make_dataset, _texts(tmp_path / "docs", n=40, size=20_000))
    cache = tmp_path / "cache"
    results: list[Any] = []
    errors: list[BaseException] = []

    def go() -> None:
        try:
            results.append(prepare(ds, tmp_path, model_task="causal-lm", cache_dir=cache))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=go) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    entries = [p for p in cache.iterdir() if p.is_dir()]
    assert len(entries) == 1 and {r.cache for r in results} == {entries[0]}
    # A job with other training settings but the same Dataset uses the same entry.
    again = prepare(ds, tmp_path, model_task="causal-lm", cache_dir=cache)
    assert again.cache == entries[0] and not list(cache.glob(".*"))


def test_a_preparation_that_fails_midway_leaves_nothing_that_looks_finished(
        tmp_path: Path, make_dataset: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from lmspec.data import tokens

    ds = _lm(make_dataset, _texts(tmp_path / "docs"))
    cache = tmp_path / "cache"

    def full(self: Any) -> None:
        self.shards.append(tokens._Shard("tokens-00000.bin", 0, ""))
        self._file = open("/dev/full", "wb")  # noqa: SIM115 - the kernel's own "disk full"
        self._hash = __import__("hashlib").sha256()
        self._in_shard = 0

    monkeypatch.setattr(tokens.TokenWriter, "_open_shard", full)
    with pytest.raises(DataError, match="no space left on the device") as e:
        prepare(ds, tmp_path, model_task="causal-lm", cache_dir=cache)
    assert "LMSPEC_CACHE_DIR" in (e.value.hint or "")
    assert [p.name for p in cache.iterdir()] == [p.name for p in cache.glob("*.lock")]  # no entry, no temp dir
    monkeypatch.undo()
    assert len(prepare(ds, tmp_path, model_task="causal-lm", cache_dir=cache).train) > 0


@pytest.mark.integration
def test_a_killed_preparation_is_redone(tmp_path: Path, make_dataset: Any) -> None:
    """SIGKILL mid-preparation: its temporary directory is never taken for the entry."""
    import yaml

    docs = _texts(tmp_path / "docs", n=60, size=200_000)
    (tmp_path / "ds.yaml").write_text(yaml.safe_dump(_lm(make_dataset, docs).model_dump(mode="json", by_alias=True)))
    script = textwrap.dedent("""
        import sys, time
        import lmspec
        from lmspec.data import lmprep, prepare
        real = lmprep._BatchEncoder.flush
        def slow(self):
            real(self)
            print("flushed", flush=True)
            time.sleep(0.2)
        lmprep._BatchEncoder.flush = slow
        m = lmspec.load([sys.argv[1]]).get("Dataset", "t")
        prepare(m.obj, m.base_dir, model_task="causal-lm", cache_dir=sys.argv[2])
    """)
    cache = tmp_path / "cache"
    proc = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "ds.yaml"), str(cache)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and "flushed" in proc.stdout.readline()
    proc.kill()
    proc.wait(timeout=60)
    assert list(cache.glob(".*")), "the killed run left its temporary directory"
    assert not [p for p in cache.iterdir() if p.is_dir() and not p.name.startswith(".")]
    ds = _lm(make_dataset, docs)
    data = prepare(ds, tmp_path, model_task="causal-lm", cache_dir=cache)
    assert len(data.train) > 0 and not list(cache.glob(".*"))


def test_bad_text_input_is_a_clear_error_naming_file_and_position(tmp_path: Path, make_dataset: Any) -> None:
    (tmp_path / "ok.txt").write_text("fine text\n" * 10)
    (tmp_path / "bad.txt").write_bytes(b"good line\nsecond line\nthird \xff\xfe line\n")
    with pytest.raises(DataError, match=r"not UTF-8 text \(byte 28, line 3\)") as e:
        prepare(_lm(make_dataset, [{"path": "ok.txt"}, {"path": "bad.txt"}]), tmp_path, model_task="causal-lm")
    assert e.value.file is not None and e.value.file.endswith("bad.txt")
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(DataError, match="the file is empty") as e:
        prepare(_lm(make_dataset, [{"path": "ok.txt"}, {"path": "empty.txt"}]), tmp_path, model_task="causal-lm")
    assert e.value.field == "spec.sources[1]"


def test_a_source_that_changes_while_it_is_prepared_is_refused(tmp_path: Path, make_dataset: Any,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from lmspec.data import lmprep

    _texts(tmp_path / "docs", n=2, size=400_000)
    ds = _lm(make_dataset, [{"path": "docs/*.txt"}])
    real = lmprep.text_pieces

    def growing(fi: Any) -> Any:
        for k, piece in enumerate(real(fi)):
            if k == 1:
                with fi.path.open("a") as f:
                    f.write("appended while being read\n")
            yield piece

    monkeypatch.setattr(lmprep, "text_pieces", growing)
    with pytest.raises(DataError, match="the file changed while it was being prepared") as e:
        prepare(ds, tmp_path, model_task="causal-lm", cache_dir=tmp_path / "cache")
    assert e.value.file is not None and e.value.file.endswith("d00.txt")
    assert not [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]


PEAK = textwrap.dedent("""
    import json, resource, sys
    from pathlib import Path
    import lmspec
    from lmspec.data import prepare
    m = lmspec.load([sys.argv[1]]).get("Dataset", "t")
    data = prepare(m.obj, m.base_dir, model_task="causal-lm", cache_dir=Path(sys.argv[2]))
    print(json.dumps({"tokens": data.train.store.tokens,
                      "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
""")


@pytest.mark.integration
def test_preparation_memory_does_not_grow_with_the_corpus(tmp_path: Path, make_dataset: Any) -> None:
    """A 64 MB corpus is prepared in the memory a 1 MB one needs: nothing holds the tokens."""
    import yaml

    sys.path.insert(0, str(REPO / "scripts"))
    from make_corpus import make_corpus

    peaks = {}
    for mb in (1, 64):
        corpus = tmp_path / f"c{mb}"
        make_corpus(corpus, mb, files=4)
        ds = _lm(make_dataset, [{"path": f"{corpus.name}/*.txt"}], length=1024)
        (tmp_path / f"ds{mb}.yaml").write_text(yaml.safe_dump(ds.model_dump(mode="json", by_alias=True)))
        out = subprocess.run([sys.executable, "-c", PEAK, str(tmp_path / f"ds{mb}.yaml"), str(tmp_path / f"cache{mb}")],
                             capture_output=True, text=True, timeout=600, check=True).stdout
        peaks[mb] = json.loads(out.strip().splitlines()[-1])
    assert peaks[64]["tokens"] == 64_000_000
    growth = peaks[64]["peak"] - peaks[1]["peak"]
    # The old in-memory path held ~50 bytes of RAM a token: 3 GB here.
    assert growth < 32 * 2**20, f"peak RSS grew by {growth / 2**20:.1f} MiB for 63 MB more text"
