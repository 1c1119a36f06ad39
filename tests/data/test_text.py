"""Tokenizers, packing and language-model datasets."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lmspec.data import DataError, Tokenizer, prepare


@pytest.fixture
def tokenizer_file(tmp_path):
    """A real word-level tokenizer.json with an end-of-text token, built with ``tokenizers``."""
    from tokenizers import Tokenizer as HF
    from tokenizers import models, pre_tokenizers, trainers

    tok = HF(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.WordLevelTrainer(special_tokens=["[UNK]", "<|endoftext|>"])
    tok.train_from_iterator(["the cat sat on the mat", "a dog ran"], trainer)
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    return path


def test_byte_tokenizer_round_trip():
    tok = Tokenizer.byte()
    text = "Grüße, 世界 🙂"
    assert tok.encode(text) == list(text.encode())
    assert tok.decode(tok.encode(text)) == text
    assert Tokenizer.from_state_dict(json.loads(json.dumps(tok.state_dict()))).encode("x") == [120]
    assert tok.vocab_size == 256 and tok.eos_id is None
    with pytest.raises(ValueError):
        tok.decode([256])


def test_file_tokenizer_round_trip(tokenizer_file):
    tok = Tokenizer.from_file(tokenizer_file)
    ids = tok.encode("the cat ran")
    assert len(ids) == 3 and tok.decode(ids) == "the cat ran"
    assert tok.eos_id is not None
    again = Tokenizer.from_state_dict(json.loads(json.dumps(tok.state_dict())))
    assert again.encode("the cat ran") == ids and again.vocab_size == tok.vocab_size


def _rows(split):
    return split.batch(np.arange(len(split)))


def _text_data(tmp_path, make_dataset, texts, length, tokenizer=None, ratios=None):
    for i, t in enumerate(texts):
        (tmp_path / f"doc{i}.txt").write_text(t)
    ds = _lm(make_dataset, [{"path": f"doc{i}.txt"} for i in range(len(texts))], tokenizer, length=length)
    ds.spec.splits.ratios = ratios or {"train": 1.0}
    return prepare(ds, tmp_path, model_task="causal-lm")


def test_windows_shift_by_one(tmp_path, make_dataset):
    b = _rows(_text_data(tmp_path, make_dataset, ["abcdefg"], 3).train)
    assert b.inputs.tolist() == [list(b"abc"), list(b"def")]
    assert b.targets.tolist() == [list(b"bcd"), list(b"efg")]
    assert b.inputs.dtype == np.int64 and b.positions is None


def test_documents_are_separated_with_eos(tmp_path, make_dataset, tokenizer_file):
    tok = Tokenizer.from_file(tokenizer_file)
    data = _text_data(tmp_path, make_dataset, ["the cat", "a dog"], 5,
                      {"type": "file", "path": "tokenizer.json"})
    stream = [*tok.encode("the cat"), tok.eos_id, *tok.encode("a dog"), tok.eos_id]
    b = _rows(data.train)
    assert b.inputs[0].tolist() == stream[:5] and b.targets[0].tolist() == stream[1:6]


def test_single_document_is_split_by_contiguous_token_ranges(tmp_path, make_dataset):
    data = _text_data(tmp_path, make_dataset, ["0123456789" * 10], 4,
                      ratios={"train": 0.8, "validation": 0.1, "test": 0.1})
    train, val, test = (bytes(_rows(s).inputs.reshape(-1).tolist()) for s in (data.train, data.validation, data.test))
    assert train.startswith(b"0123") and len(data.train) == (80 - 1) // 4
    assert val == b"01234567" and test == b"01234567" and data.counts["validation"]["tokens"] == 10
    # The held-out ranges follow the training range; no token is in two splits.
    assert data.counts["train"]["tokens"] + 10 + 10 == 100


def test_a_long_text_file_is_read_in_pieces_and_tokenized_as_a_whole(tmp_path, make_dataset, tokenizer_file,
                                                                     monkeypatch):
    from lmspec.data import lmprep

    monkeypatch.setattr(lmprep, "PIECE_BYTES", 64)  # many pieces from a small file
    text = "\n".join(["the cat sat on the mat", "  a dog ran", "", "the mat"] * 20) + "\n"
    tok = Tokenizer.from_file(tokenizer_file)
    data = _text_data(tmp_path, make_dataset, [text], 8, {"type": "file", "path": "tokenizer.json"})
    got = _rows(data.train).inputs[:, :].reshape(-1).tolist()
    whole = [*tok.encode(text), tok.eos_id]
    assert got == whole[:len(got)] and len(got) == (len(whole) - 1) // 8 * 8


def _lm(make_dataset, sources, tokenizer=None, length=16, **kw):
    return make_dataset(
        sources=sources,
        preprocessing=[{"type": "tokenize", "tokenizer": tokenizer or {"type": "byte"}, **kw},
                       {"type": "pack", "sequenceLength": length}])


def test_lm_dataset_from_text_files(example_data, make_dataset):
    data = prepare(_lm(make_dataset, [{"path": "licenses/*.txt"}], length=64), example_data,
                   model_task="causal-lm")
    b = data.train.batch(np.arange(len(data.train)))
    assert b.inputs.dtype == np.int64 and b.inputs.shape[1] == 64
    assert np.array_equal(b.inputs[:, 1:], b.targets[:, :-1])
    assert data.train.store.dtype == np.uint16 and data.disk_bytes == 2 * data.train.store.tokens
    assert len(data.train) > 2000 and len(data.validation) > 0 and len(data.test) > 0
    assert len(data.files) == 14 and data.transform.tokenizer is not None
    assert data.transform.task == "causal-lm"


def test_lm_dataset_from_jsonl_with_file_tokenizer(tmp_path, make_dataset, tokenizer_file):
    docs = [{"body": "the cat sat on the mat " * 3}, {"body": "a dog ran " * 4}, {"body": None}]
    (tmp_path / "d.jsonl").write_text("\n".join(json.dumps(d) for d in docs))
    ds = _lm(make_dataset, [{"path": "d.jsonl"}], {"type": "file", "path": "tokenizer.json"},
             length=4, column="body")
    ds.spec.splits.ratios = {"train": 1.0}
    data = prepare(ds, tmp_path, model_task="causal-lm")
    assert len(data.train) == (18 + 1 + 12 + 1 - 1) // 4
    assert "tokenizer.json" in data.files and "d.jsonl" in data.files
    served = data.transform.tokenizer
    assert served is not None and served.decode(_rows(data.train).inputs[0].tolist()) == "the cat sat on"


def test_lm_errors(tmp_path, make_dataset, tokenizer_file, validator_rules):
    (tmp_path / "a.txt").write_text("tiny")
    with pytest.raises(DataError) as e:
        prepare(_lm(make_dataset, [{"path": "a.txt"}]), tmp_path, model_task="causal-lm")
    assert "fewer than 17 tokens" in str(e.value)
    ds = _lm(make_dataset, [{"path": "a.txt"}], {"type": "file", "path": "tokenizer.json",
                                                 "sha256": "1" * 64})
    with pytest.raises(DataError) as e:
        prepare(ds, tmp_path, model_task="causal-lm")
    assert e.value.field == "spec.preprocessing[0].tokenizer.sha256"
    assert "trainingjob.dataset-task" in validator_rules(_lm(make_dataset, [{"path": "a.txt"}]), "classification")
