"""Chat data: every record format, the loss mask, the length policy, packing and bad input."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from chat_helpers import PLAIN_TEMPLATE, TEMPLATE, dataset, qa, write_jsonl, write_tokenizer

from lmspec.data import DataError, prepare
from lmspec.data.conversations import prompt_of, to_messages
from lmspec.data.lmprep import pack_rows
from lmspec.v1alpha1.dataset import Chat

WHERE = {"file": "x.jsonl", "row": 3, "unit": "line"}


def _chat(**kw: object) -> Chat:
    return Chat.model_validate({"sequenceLength": 64, **kw}, by_alias=True)


def _conversations(n: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i in range(n):
        q, a = qa(i)
        msgs = [{"role": "user", "content": q}, {"role": "assistant", "content": a}]
        if i % 2:  # a second exchange in every other conversation
            msgs += [{"role": "user", "content": "And then?"}, {"role": "assistant", "content": "Nothing more."}]
        out.append({"messages": msgs})
    return out


def _prepare(tmp_path: Path, tok_dir: Path, records: list[dict[str, object]], **chat: object):  # type: ignore[no-untyped-def]
    write_jsonl(tmp_path / "c.jsonl", records)
    spec = {"tokenizer": {"type": "huggingface", "path": str(tok_dir)}, "sequenceLength": 96, **chat}
    ds = dataset(spec, [{"path": "c.jsonl"}], splits={"ratios": {"train": 1.0, "validation": 0.0, "test": 0.0}})
    return prepare(ds, tmp_path, model_task="causal-lm")


# --- formats ---------------------------------------------------------------------------------


def test_messages_with_field_and_role_maps() -> None:
    chat = _chat(fields={"messages": "conversations", "role": "from", "content": "value"},
                 roleMap={"human": "user", "gpt": "assistant"})
    rec = {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]}
    assert to_messages(rec, chat, WHERE) == [{"role": "user", "content": "Hi"},
                                             {"role": "assistant", "content": "Hello"}]


def test_prompt_completion_plain_and_conversational() -> None:
    chat = _chat(format="promptCompletion", systemPrompt="Be brief.")
    assert to_messages({"prompt": "2+2?", "completion": "4"}, chat, WHERE) == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"}]
    rec = {"prompt": [{"role": "system", "content": "Terse."}, {"role": "user", "content": "2+2?"}],
           "completion": [{"role": "assistant", "content": "4"}]}
    assert to_messages(rec, chat, WHERE) == [  # the record's own system turn wins
        {"role": "system", "content": "Terse."}, {"role": "user", "content": "2+2?"},
        {"role": "assistant", "content": "4"}]


def test_alpaca_with_and_without_input() -> None:
    chat = _chat(format="alpaca")
    full = {"instruction": "Translate.", "input": "chat", "output": "cat", "system": "You translate."}
    assert to_messages(full, chat, WHERE) == [
        {"role": "system", "content": "You translate."}, {"role": "user", "content": "Translate.\n\nchat"},
        {"role": "assistant", "content": "cat"}]
    assert to_messages({"instruction": "Say hi.", "input": "", "output": "hi"}, chat, WHERE)[0] == \
        {"role": "user", "content": "Say hi."}


def test_plain_text_is_one_text_turn() -> None:
    chat = _chat(format="text", fields={"text": "body"})
    assert to_messages({"body": "Some text."}, chat, WHERE) == [{"role": "text", "content": "Some text."}]


def test_a_prompt_leaves_out_the_reference_answer_which_may_be_absent() -> None:
    user = {"role": "user", "content": "2+2?"}
    chat = _chat()
    answered = {"messages": [user, {"role": "assistant", "content": "4"}]}
    assert prompt_of(answered, chat, WHERE) == [user]
    assert prompt_of({"messages": [user]}, chat, WHERE) == [user]
    assert prompt_of({"prompt": "2+2?"}, _chat(format="promptCompletion"), WHERE) == [user]
    assert prompt_of({"instruction": "2+2?"}, _chat(format="alpaca", systemPrompt="Be brief."), WHERE) == [
        {"role": "system", "content": "Be brief."}, user]
    with pytest.raises(DataError, match=r"x\.jsonl, line 3: the conversation has no turn before the assistant"):
        prompt_of({"messages": [{"role": "assistant", "content": "4"}]}, chat, WHERE)


@pytest.mark.parametrize(("chat", "rec", "message"), [
    ({}, {"msgs": []}, "x.jsonl, line 3 (spec.chat.fields): the record has no field 'messages' (its fields: msgs)"),
    ({"fields": {"role": "from"}}, {"messages": [{"role": "user", "content": "a"}]},
     "messages[0] has no field 'from' (its fields: content, role)"),
    ({}, {"messages": [{"role": "human", "content": "a"}]}, "messages[0] has unknown role 'human'"),
    ({}, {"messages": "hello"}, "field 'messages' is a string, not a non-empty list of turns"),
    ({}, {"messages": [{"role": "user", "content": 3}]}, "messages[0].content is a int, not a string"),
    ({"format": "alpaca"}, {"instruction": "a", "output": None}, "field 'output' is null, not a string"),
    ({}, {"messages": [{"role": "system", "content": "a"}]}, "the conversation has no user or assistant turn"),
])
def test_bad_records_name_file_line_and_field(chat: dict[str, object], rec: dict[str, object], message: str) -> None:
    with pytest.raises(DataError) as e:
        to_messages(rec, _chat(**chat), WHERE)
    assert message in str(e.value) and str(e.value).startswith("x.jsonl, line 3")


def test_parquet_records(tmp_path: Path, tok_dir: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [{"question": qa(i)[0], "answer": qa(i)[1]} for i in range(6)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "qa.parquet")
    ds = dataset({"format": "promptCompletion", "fields": {"prompt": "question", "completion": "answer"},
                  "tokenizer": {"type": "huggingface", "path": str(tok_dir)}, "sequenceLength": 64},
                 [{"path": "qa.parquet"}], splits={"ratios": {"train": 1.0, "validation": 0.0, "test": 0.0}})
    data = prepare(ds, tmp_path, model_task="causal-lm")
    assert data.counts is not None and data.counts["train"]["conversations"] == 6
    assert data.train.all_rows().positions is not None and len(data.train) == 6


# --- the loss mask ---------------------------------------------------------------------------


def _expected_trained(hf_tok, messages: list[dict[str, str]], roles: set[str]) -> list[bool]:  # type: ignore[no-untyped-def]
    """Which tokens a person would mark: found in the rendered text by string search, not by the
    template's generation markers (assistant turns: content and <|eot|>; others: the whole turn)."""
    text = hf_tok.apply_chat_template(messages, chat_template=TEMPLATE, tokenize=False)
    spans, pos = [], 0
    for m in messages:
        head = f"<|bos|>{m['role']}\n"
        start = text.index(head, pos)
        end = text.index("<|eot|>", start + len(head)) + len("<|eot|>")
        if m["role"] in roles:
            spans.append((start + len(head) if m["role"] == "assistant" else start, end))
        pos = end
    enc = hf_tok(text, add_special_tokens=False, return_offsets_mapping=True)
    return [any(a < hi and b > lo for lo, hi in spans) for a, b in enc["offset_mapping"]]


def _check_rows(data, hf_tok, records, roles: set[str]) -> None:  # type: ignore[no-untyped-def]
    """Unpacked rows are in data order: each row's targets are -100 exactly where expected."""
    for row, rec in enumerate(records):
        msgs = rec["messages"]
        ids = hf_tok.apply_chat_template(msgs, chat_template=TEMPLATE, tokenize=True, return_dict=True)["input_ids"]
        trained = _expected_trained(hf_tok, msgs, roles)
        k = len(ids) - 1
        want = np.where(trained[1:], ids[1:], -100)
        assert data.train.all_rows().inputs[row, :k].tolist() == ids[:-1]
        assert data.train.all_rows().targets[row, :k].tolist() == want.tolist()
        assert (data.train.all_rows().targets[row, k:] == -100).all()  # padding is never trained
        assert data.train.all_rows().positions[row].tolist() == list(range(96))


def test_labels_are_ignored_exactly_outside_assistant_turns(tmp_path: Path, tok_dir: Path, hf_tok) -> None:  # type: ignore[no-untyped-def]
    records = _conversations(4)
    data = _prepare(tmp_path, tok_dir, records)
    _check_rows(data, hf_tok, records, {"assistant"})
    assert data.counts["train"]["trainedTokens"] > 0


def test_roles_to_train_include_user_turns(tmp_path: Path, tok_dir: Path, hf_tok) -> None:  # type: ignore[no-untyped-def]
    records = _conversations(4)
    data = _prepare(tmp_path, tok_dir, records, loss={"roles": ["user", "assistant"]})
    _check_rows(data, hf_tok, records, {"user", "assistant"})


def test_end_of_turn_can_be_left_untrained(tmp_path: Path, tok_dir: Path, hf_tok) -> None:  # type: ignore[no-untyped-def]
    eot = hf_tok.convert_tokens_to_ids("<|eot|>")
    with_eot = _prepare(tmp_path, tok_dir, _conversations(2))
    without = _prepare(tmp_path, tok_dir, _conversations(2), loss={"endOfTurn": False})
    assert (with_eot.train.all_rows().targets == eot).sum() == 3  # one per assistant turn
    assert (without.train.all_rows().targets == eot).sum() == 0
    assert ((with_eot.train.all_rows().targets != -100) & (with_eot.train.all_rows().targets != eot)).sum() == \
        (without.train.all_rows().targets != -100).sum()


def test_train_on_prompt_trains_every_token(tmp_path: Path, tok_dir: Path, hf_tok) -> None:  # type: ignore[no-untyped-def]
    records = _conversations(3)
    data = _prepare(tmp_path, tok_dir, records, loss={"trainOnPrompt": True})
    for r, rec in enumerate(records):
        ids = hf_tok.apply_chat_template(rec["messages"], chat_template=TEMPLATE, tokenize=True,
                                         return_dict=True)["input_ids"]
        k = len(ids) - 1
        assert data.train.all_rows().targets[r, :k].tolist() == ids[1:]
        assert (data.train.all_rows().targets[r, k:] == -100).all()


def test_template_without_generation_markers_is_an_error(tmp_path: Path) -> None:
    plain = write_tokenizer(tmp_path / "plain", template=PLAIN_TEMPLATE)
    with pytest.raises(DataError, match=r"has no \{% generation %\} markers"):
        _prepare(tmp_path, plain, _conversations(2))
    # Declaring the whole conversation as trained needs no markers.
    assert _prepare(tmp_path, plain, _conversations(2), loss={"trainOnPrompt": True}).counts is not None


def test_all_zero_mask_is_an_error(tmp_path: Path, tok_dir: Path) -> None:
    # Generation markers that enclose nothing the assistant says.
    empty = TEMPLATE.replace("{% generation %}{{ m['content'] }}<|eot|>{% endgeneration %}",
                             "{{ m['content'] }}<|eot|>{% generation %}{% endgeneration %}")
    with pytest.raises(DataError, match=r"c.jsonl, line 1 \(spec.chat.template\): .*loss mask would be all zero"):
        _prepare(tmp_path, tok_dir, _conversations(2), template=empty)


def test_manifest_template_replaces_the_tokenizers(tmp_path: Path) -> None:
    plain = write_tokenizer(tmp_path / "plain", template=PLAIN_TEMPLATE)
    (tmp_path / "t.jinja").write_text(TEMPLATE)
    data = _prepare(tmp_path, plain, _conversations(2), templatePath="t.jinja")
    assert "t.jinja" in data.files and (data.train.all_rows().targets != -100).any()


def test_no_template_at_all_is_an_error(tmp_path: Path) -> None:
    bare = write_tokenizer(tmp_path / "bare", template=None)
    with pytest.raises(DataError, match="no chat template"):
        _prepare(tmp_path, bare, _conversations(1))


# --- length policy and packing ---------------------------------------------------------------


def test_over_length_truncate_or_drop_is_counted(tmp_path: Path, tok_dir: Path) -> None:
    long = {"messages": [{"role": "user", "content": "What is a list? " * 30},
                         {"role": "assistant", "content": "A list."}]}
    prompt_only_long = {"messages": [{"role": "user", "content": "Hi"},
                                     {"role": "assistant", "content": "It is a mutable sequence. " * 40}]}
    records = [*_conversations(3), long, prompt_only_long]
    cut = _prepare(tmp_path, tok_dir, records)
    c = cut.counts["train"]
    # The long prompt loses its answer when cut, so it has no trained token left.
    assert (c["conversations"], c["truncated"], c["droppedUntrained"], c["sequences"]) == (5, 2, 1, 4)
    dropped = _prepare(tmp_path, tok_dir, records, overLength="drop")
    c = dropped.counts["train"]
    assert (c["droppedOverLength"], c["truncated"], c["sequences"]) == (2, 0, 3)


def test_best_fit_packing() -> None:
    assert pack_rows([5, 3, 4, 2], 8, packing=True) == [[0, 1], [2, 3]]
    assert pack_rows([5, 3, 4, 2], 8, packing=False) == [[0], [1], [2], [3]]
    assert sorted(i for row in pack_rows([7, 1, 1, 6, 2, 8], 8, True) for i in row) == list(range(6))


def test_packed_rows_restart_positions_and_keep_every_target(tmp_path: Path, tok_dir: Path) -> None:
    records = _conversations(12)
    packed = _prepare(tmp_path, tok_dir, records, packing=True, sequenceLength=128)
    unpacked = _prepare(tmp_path, tok_dir, records, sequenceLength=128)
    assert len(packed.train) < len(unpacked.train)
    assert (packed.train.all_rows().targets != -100).sum() == (unpacked.train.all_rows().targets != -100).sum()
    starts = (packed.train.all_rows().positions == 0).sum(axis=1)
    assert starts.max() >= 3  # at least two conversations and the padding in some row
    assert packed.counts["train"]["tokens"] == unpacked.counts["train"]["tokens"]


def test_chat_cache_round_trip(tmp_path: Path, tok_dir: Path) -> None:
    write_jsonl(tmp_path / "c.jsonl", _conversations(8))
    ds = dataset({"tokenizer": {"type": "huggingface", "path": str(tok_dir)}, "sequenceLength": 96,
                  "packing": True}, [{"path": "c.jsonl"}])
    first = prepare(ds, tmp_path, model_task="causal-lm", cache_dir=tmp_path / "cache")
    again = prepare(ds, tmp_path, model_task="causal-lm", cache_dir=tmp_path / "cache")
    assert again.counts == first.counts and again.train.all_rows().positions is not None
    assert np.array_equal(again.train.all_rows().positions, first.train.all_rows().positions)
    assert np.array_equal(again.validation.all_rows().targets, first.validation.all_rows().targets)
    assert any(re.search(r"tokenizer\.json$", k) for k in first.files)


def test_text_format_trains_whole_documents(tmp_path: Path, tok_dir: Path, hf_tok) -> None:  # type: ignore[no-untyped-def]
    data = _prepare(tmp_path, tok_dir, [{"text": "A list is a mutable sequence."}], format="text")
    ids = [*hf_tok("A list is a mutable sequence.", add_special_tokens=False)["input_ids"], hf_tok.eos_token_id]
    k = len(ids) - 1
    rows = data.train.all_rows()
    assert rows.inputs[0, :k].tolist() == ids[:-1] and rows.targets[0, :k].tolist() == ids[1:]


def test_chat_data_needs_a_causal_lm_and_no_columns(tmp_path: Path, tok_dir: Path) -> None:
    write_jsonl(tmp_path / "c.jsonl", _conversations(2))
    chat = {"tokenizer": {"type": "huggingface", "path": str(tok_dir)}, "sequenceLength": 64}
    with pytest.raises(DataError, match="chat data is for causal-lm models"):
        prepare(dataset(chat, [{"path": "c.jsonl"}]), tmp_path, model_task="classification")
    with pytest.raises(DataError, match=r"spec.features: chat data takes no features"):
        prepare(dataset(chat, [{"path": "c.jsonl"}], features=[{"name": "x"}]), tmp_path, model_task="causal-lm")
    with pytest.raises(DataError, match="needs a tokenizer"):
        prepare(dataset({"sequenceLength": 64}, [{"path": "c.jsonl"}]), tmp_path, model_task="causal-lm")


def test_shipped_python_docs_data_prepares(tok_dir: Path) -> None:
    root = Path(__file__).resolve().parents[2] / "examples" / "data"
    ds = dataset({"tokenizer": {"type": "huggingface", "path": str(tok_dir)}, "sequenceLength": 256,
                  "packing": True}, [{"path": "python-docs-qa.jsonl"}],
                 splits={"ratios": {"train": 0.9, "validation": 0.05, "test": 0.05}, "seed": 0}, license="PSF-2.0")
    data = prepare(ds, root, model_task="causal-lm")
    assert data.counts is not None
    assert sum(c["conversations"] for c in data.counts.values()) == 289
    assert data.counts["train"]["droppedUntrained"] == 0 and data.counts["train"]["trainedTokens"] > 5000
    assert len(data.validation) > 0 and len(data.test) > 0


def test_check_env_names_the_file_and_line_of_a_bad_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lmspec

    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "data" / "chat.jsonl", [
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"}]},
        {"conversations": [{"from": "human", "value": "Hi"}, {"from": "bot", "value": "Hello"}]}])
    (tmp_path / "d.yaml").write_text(
        "apiVersion: lmspec.io/v1alpha1\nkind: Dataset\nmetadata: {name: d}\nspec:\n"
        "  sources: [{path: data/chat.jsonl}]\n"
        "  chat:\n    sequenceLength: 64\n    fields: {messages: conversations, role: from, content: value}\n"
        "    roleMap: {human: user, gpt: assistant}\n")
    report = lmspec.validate(["d.yaml"], check_env=True)
    [finding] = [f for f in report.findings if f.severity == "error"]
    assert finding.rule == "env.chat-records" and finding.pointer == "/spec/chat/roleMap"
    assert finding.message == "data/chat.jsonl, line 2: conversations[1] has unknown role 'bot'"
    assert "map others under chat.roleMap" in finding.hint
    # A bot is the assistant: the suggested mapping says so.
    assert finding.hint.endswith("e.g. {'bot': assistant}"), finding.hint


@pytest.mark.parametrize(("role", "standard"), [("bot", "assistant"), ("GPT", "assistant"), ("model", "assistant"),
                                                 ("human", "user"), ("customer", "user"), ("sys", "system"),
                                                 ("function", "tool"), ("asistant", "assistant"),
                                                 ("narrator", "user")])
def test_an_unknown_role_gets_a_mapping_to_the_role_it_stands_for(role: str, standard: str) -> None:
    with pytest.raises(DataError) as err:
        to_messages({"messages": [{"role": role, "content": "Hi"}]}, _chat(), {"file": "c.jsonl", "row": 1})
    assert err.value.hint is not None and err.value.hint.endswith(f"e.g. {{{role!r}: {standard}}}"), err.value.hint


def test_lone_tokenizer_file_with_inline_template(tmp_path: Path, tok_dir: Path) -> None:
    import hashlib

    write_jsonl(tmp_path / "c.jsonl", [{"instruction": qa(i)[0], "output": qa(i)[1]} for i in range(3)])
    path = tok_dir / "tokenizer.json"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    chat = {"format": "alpaca", "tokenizer": {"type": "file", "path": str(path), "sha256": digest},
            "template": TEMPLATE, "sequenceLength": 64, "loss": {"endOfTurnToken": "<|eot|>"}}
    ratios = {"ratios": {"train": 1.0, "validation": 0.0, "test": 0.0}}
    data = prepare(dataset(chat, [{"path": "c.jsonl"}], splits=ratios), tmp_path, model_task="causal-lm")
    eot = json.loads(path.read_text())["added_tokens"][2]
    assert eot["content"] == "<|eot|>" and (data.train.all_rows().targets == eot["id"]).sum() == 3
    bad = {**chat, "tokenizer": {"type": "file", "path": str(path), "sha256": "0" * 64}}
    with pytest.raises(DataError, match=r"spec.chat.tokenizer.sha256\): sha256 mismatch"):
        prepare(dataset(bad, [{"path": "c.jsonl"}], splits=ratios), tmp_path, model_task="causal-lm")
    unknown = {**chat, "loss": {"endOfTurnToken": "<|end|>"}}
    with pytest.raises(DataError, match=re.escape("end-of-turn token '<|end|>' is not in the tokenizer's vocabulary")):
        prepare(dataset(unknown, [{"path": "c.jsonl"}], splits=ratios), tmp_path, model_task="causal-lm")


def test_a_batch_is_padded_to_its_longest_row_not_to_the_sequence_length(tmp_path: Path, tok_dir: Path) -> None:
    data = _prepare(tmp_path, tok_dir, _conversations(8), packing=False)
    split = data.train
    full = split.all_rows()
    assert full.inputs.shape[1] == 96
    rows = np.array([0, 3])
    b = split.batch(rows)
    width = int(split.lengths[rows].max())
    assert b.inputs.shape == (2, width) and width < 96
    # The same real tokens, targets and positions as the full-width rows: only padding is gone.
    assert np.array_equal(b.inputs, full.inputs[rows, :width])
    assert np.array_equal(b.targets, full.targets[rows, :width])
    assert np.array_equal(b.positions, full.positions[rows, :width])
    assert split.trained_tokens(rows) == int((b.targets != -100).sum())


def test_by_file_splits_take_an_unmarked_source_as_training_data(tmp_path: Path, tok_dir: Path) -> None:
    """As the spec says for every Dataset: a source without ``split`` is training data."""
    write_jsonl(tmp_path / "train.jsonl", _conversations(6))
    write_jsonl(tmp_path / "val.jsonl", _conversations(2))
    ds = dataset({"tokenizer": {"type": "huggingface", "path": str(tok_dir)}, "sequenceLength": 96},
                 [{"path": "train.jsonl"}, {"path": "val.jsonl", "split": "validation"}],
                 splits={"by": "file"})
    data = prepare(ds, tmp_path, model_task="causal-lm")
    assert data.counts["train"]["conversations"] == 6 and data.counts["validation"]["conversations"] == 2
    assert len(data.train) > 0 and len(data.test) == 0


def test_an_empty_training_split_blames_the_split_not_the_lengths(tmp_path: Path, tok_dir: Path) -> None:
    (tmp_path / "train.jsonl").write_text("")
    write_jsonl(tmp_path / "val.jsonl", _conversations(2))
    ds = dataset({"tokenizer": {"type": "huggingface", "path": str(tok_dir)}, "sequenceLength": 96},
                 [{"path": "train.jsonl"}, {"path": "val.jsonl", "split": "validation"}],
                 splits={"by": "file"})
    with pytest.raises(DataError, match=r"spec.splits: the training split holds no conversation") as caught:
        prepare(ds, tmp_path, model_task="causal-lm")
    assert "sequenceLength" not in str(caught.value) and "overLength" not in str(caught.value)


@pytest.mark.integration
@pytest.mark.slow  # a pool of freshly spawned interpreters: tens of seconds on 2 cores
def test_a_pool_of_processes_encodes_large_sources_to_the_same_data(tmp_path: Path, tok_dir: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from lmspec.data import lmprep

    serial = _prepare(tmp_path / "a", tok_dir, _conversations(40), packing=True)
    monkeypatch.setattr(lmprep, "POOL_BYTES", 0)
    monkeypatch.setattr(lmprep, "POOL_CHUNK", 7)
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: {0, 1})  # a pool even on one core
    pooled = _prepare(tmp_path / "b", tok_dir, _conversations(40), packing=True)
    assert pooled.counts == serial.counts
    for name in ("inputs", "targets", "positions"):
        assert np.array_equal(getattr(pooled.train.all_rows(), name), getattr(serial.train.all_rows(), name))
    # A bad record deep in the file is reported with its line while the pool runs.
    records = _conversations(30)
    records[23] = {"messages": [{"role": "wizard", "content": "hi"}]}
    with pytest.raises(DataError, match="unknown role") as e:
        _prepare(tmp_path / "c", tok_dir, records)
    assert e.value.row == 24 and e.value.file is not None and e.value.file.endswith("c.jsonl")
