"""Preference data: the three record shapes, the tokens that are trained, the length policy and
bad pairs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from chat_helpers import dataset, write_jsonl

from lmspec.data import DataError, prepare
from lmspec.data.lm import IGNORE
from lmspec.data.pairs import to_pair
from lmspec.v1alpha1.dataset import Chat

WHERE = {"file": "p.jsonl", "row": 4, "unit": "line"}


def _chat(**kw: object) -> Chat:
    return Chat.model_validate({"format": "preference", "sequenceLength": 64, **kw}, by_alias=True)


def _pairs(n: int) -> list[dict[str, object]]:
    return [{"prompt": f"What is item {i} of a list?", "chosen": f"The value at index {i}.",
             "rejected": "A list." + " More." * (i % 3)} for i in range(n)]


def _prepare(tmp_path: Path, tok_dir: Path, records: list[dict[str, object]], **chat: object):  # type: ignore[no-untyped-def]
    write_jsonl(tmp_path / "p.jsonl", records)
    spec = {"format": "preference", "tokenizer": {"type": "huggingface", "path": str(tok_dir)},
            "sequenceLength": 96, **chat}
    ds = dataset(spec, [{"path": "p.jsonl"}], splits={"ratios": {"train": 1.0, "validation": 0.0, "test": 0.0}})
    return prepare(ds, tmp_path, model_task="causal-lm")


def test_standard_conversational_and_implicit_prompt_shapes() -> None:
    chat = _chat(systemPrompt="Be brief.")
    std = to_pair({"prompt": "2+2?", "chosen": "4", "rejected": "5"}, chat, WHERE)
    assert std.prompt == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"}]
    assert std.chosen == [{"role": "assistant", "content": "4"}]
    conv = to_pair({"prompt": [{"role": "user", "content": "2+2?"}],
                    "chosen": [{"role": "assistant", "content": "4"}], "rejected": "5"}, chat, WHERE)
    assert conv.rejected == [{"role": "assistant", "content": "5"}]
    user = {"role": "user", "content": "2+2?"}
    implicit = to_pair({"chosen": [user, {"role": "assistant", "content": "4"}],
                        "rejected": [user, {"role": "assistant", "content": "5"}]}, chat, WHERE)
    assert implicit.prompt[-1] == user and implicit.chosen == [{"role": "assistant", "content": "4"}]


@pytest.mark.parametrize(("rec", "message"), [
    ({"prompt": "q", "chosen": "a", "rejected": "a"}, "are the same"),
    ({"prompt": "q", "chosen": "", "rejected": "b"}, "'chosen' answer is empty"),
    ({"prompt": "q", "chosen": "a"}, "no field 'rejected'"),
    ({"prompt": "q", "chosen": 3, "rejected": "b"}, "not a string or a list of turns"),
    ({"chosen": "a", "rejected": "b"}, "must be whole conversations"),
    ({"chosen": [{"role": "user", "content": "x"}], "rejected": [{"role": "user", "content": "y"}]},
     "share no turn"),
    ({"prompt": "q", "chosen": [{"role": "user", "content": "x"}], "rejected": "b"}, "not an assistant turn"),
])
def test_bad_pairs_are_refused_with_their_row(rec: dict[str, object], message: str) -> None:
    with pytest.raises(DataError, match=message) as e:
        to_pair(rec, _chat(), WHERE)
    assert e.value.row == 4 and e.value.file == "p.jsonl"


SPACE_TEMPLATE = ("{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}<|eot|>{% endfor %}"
                  "{% if add_generation_prompt %}assistant: {% endif %}")
"""A template whose generation prompt ends in a space, which byte-level BPE merges into the
answer's first word."""


@pytest.mark.parametrize("template", [None, SPACE_TEMPLATE], ids=["tokenizer-template", "space-before-answer"])
def test_only_the_answers_are_trained_and_both_share_the_prompt(tmp_path: Path, tok_dir: Path, hf_tok,  # type: ignore[no-untyped-def]
                                                                template: str | None) -> None:
    records = _pairs(6)
    data = _prepare(tmp_path, tok_dir, records, **({"template": template} if template else {}))
    assert data.counts["train"]["pairs"] == 6 and len(data.train) == 6
    b = data.train.batch(np.arange(6))
    assert b.inputs.shape[0] == 12
    for i, rec in enumerate(records):
        prompt_msgs = [{"role": "user", "content": rec["prompt"]}]
        p_ids = list(hf_tok.apply_chat_template(prompt_msgs, chat_template=template, add_generation_prompt=True,
                                                return_dict=True)["input_ids"])
        wholes = []
        for key in ("chosen", "rejected"):
            wholes.append(list(hf_tok.apply_chat_template(
                [*prompt_msgs, {"role": "assistant", "content": rec[key]}], chat_template=template,
                return_dict=True)["input_ids"]))
        # As TRL: the prompt is the part both conversations share with the prompt's own ids.
        k = min(next((j for j, (x, y) in enumerate(zip(p_ids, w, strict=False)) if x != y), min(len(p_ids), len(w)))
                for w in wholes)
        if template is not None:
            assert k < len(p_ids)  # the space merged into the answer: the case this template tests
        for side, whole in enumerate(wholes):
            x, y = b.inputs[side * 6 + i], b.targets[side * 6 + i]
            assert list(x[:len(whole) - 1]) == whole[:-1]
            assert list(y[y != IGNORE]) == whole[k:]  # exactly the answer, end of turn included
            assert str(rec[("chosen", "rejected")[side]]) in hf_tok.decode(whole[k:])


def test_over_length_pairs_lose_the_prompt_start_first(tmp_path: Path, tok_dir: Path) -> None:
    long_prompt = "Explain dict.get. " * 30
    records = [{"prompt": long_prompt, "chosen": "It returns the value.", "rejected": "No."}, *_pairs(3)]
    data = _prepare(tmp_path / "t", tok_dir, records, sequenceLength=48)
    assert data.counts["train"]["truncated"] == 1
    b = data.train.batch(np.arange(len(data.train)), pad_to_longest=False)
    assert b.inputs.shape[1] == 48
    # The answer survived whole: its trained targets are those of an untruncated answer.
    longest = int(np.argmax([(t != IGNORE).sum() for t in b.targets[:len(data.train)]]))
    assert (b.targets[longest] != IGNORE).sum() >= 5
    dropped = _prepare(tmp_path / "d", tok_dir, records, sequenceLength=48, overLength="drop")
    assert dropped.counts["train"]["droppedOverLength"] == 1 and len(dropped.train) == 3


def test_check_env_reads_every_pair(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lmspec

    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "data" / "pairs.jsonl", [
        {"question": "2+2?", "chosen": "4", "rejected": "5"},
        {"question": "3+3?", "chosen": "6", "rejected": "6"}])
    (tmp_path / "d.yaml").write_text(
        "apiVersion: lmspec.io/v1alpha1\nkind: Dataset\nmetadata: {name: d}\nspec:\n"
        "  sources: [{path: data/pairs.jsonl}]\n"
        "  chat:\n    format: preference\n    sequenceLength: 64\n    fields: {prompt: question}\n")
    report = lmspec.validate(["d.yaml"], check_env=True)
    [finding] = [f for f in report.findings if f.severity == "error"]
    assert finding.rule == "env.chat-records"
    assert finding.message == ("data/pairs.jsonl, line 2: the 'chosen' and 'rejected' answers are the same: "
                               "the pair prefers nothing")


def test_a_pair_as_a_conversation_and_as_a_prompt() -> None:
    from lmspec.data.conversations import prompt_of, to_messages

    chat = _chat()
    rec = {"prompt": "2+2?", "chosen": "4", "rejected": "5"}
    assert to_messages(rec, chat, WHERE) == [{"role": "user", "content": "2+2?"},
                                             {"role": "assistant", "content": "4"}]
    assert prompt_of({"prompt": "2+2?"}, chat, WHERE) == [{"role": "user", "content": "2+2?"}]
