"""Preference records → pairs of answers to one prompt (``chat.format: preference``).

>>> from lmspec.v1alpha1.dataset import Chat
>>> chat = Chat.model_validate({"format": "preference", "sequenceLength": 64}, by_alias=True)
>>> to_pair({"prompt": "2+2?", "chosen": "4", "rejected": "5"}, chat, where={}).chosen
[{'role': 'assistant', 'content': '4'}]

Three shapes are read, as TRL names them: *standard* (``prompt``, ``chosen`` and ``rejected`` are
strings), *conversational* (each is a list of turns; string and list may be mixed), and *implicit
prompt* (no prompt field: ``chosen`` and ``rejected`` are whole conversations, and the turns they
share from the start are the prompt). Reading needs no torch or transformers: the validator's
``--check-env`` reads every record with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import DataError
from .turns import Message, field, kind, system, turns

if TYPE_CHECKING:
    from ..standard import Chat


@dataclass(frozen=True)
class Pair:
    """A prompt (system and user turns, possibly earlier assistant turns) and two answers."""

    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]


def to_pair(rec: dict[str, Any], chat: Chat, where: dict[str, Any]) -> Pair:
    """One preference record → a :class:`Pair`; ``where`` locates errors (file, row, unit)."""
    f = chat.fields
    if f.prompt in rec:
        prompt = system(rec, chat, where) + _side(rec, f.prompt, "user", chat, where)
        chosen = _side(rec, f.chosen, "assistant", chat, where)
        rejected = _side(rec, f.rejected, "assistant", chat, where)
    else:
        whole_c = _whole(rec, f.chosen, chat, where)
        whole_r = _whole(rec, f.rejected, chat, where)
        shared = 0
        while shared < min(len(whole_c), len(whole_r)) and whole_c[shared] == whole_r[shared]:
            shared += 1
        prompt, chosen, rejected = whole_c[:shared], whole_c[shared:], whole_r[shared:]
        if not any(m["role"] != "system" for m in prompt):
            raise DataError(f"{f.chosen!r} and {f.rejected!r} share no turn to answer: without a "
                            f"{f.prompt!r} field, they must be conversations that start with the same "
                            "turns (the prompt)", **where, field="spec.chat.fields.prompt",
                            hint="add the prompt field, or map it under chat.fields.prompt")
    if chat.system_prompt is not None and not any(m["role"] == "system" for m in prompt):
        prompt.insert(0, {"role": "system", "content": chat.system_prompt})
    if not any(m["role"] != "system" for m in prompt):
        raise DataError("the prompt has no user turn", **where)
    for name, answer in ((f.chosen, chosen), (f.rejected, rejected)):
        if not answer or all(not m["content"] for m in answer):
            raise DataError(f"the {name!r} answer is empty", **where)
        if answer[0]["role"] != "assistant":
            raise DataError(f"the {name!r} answer starts with a {answer[0]['role']} turn, not an "
                            "assistant turn", **where)
    if chosen == rejected:
        raise DataError(f"the {f.chosen!r} and {f.rejected!r} answers are the same: the pair "
                        "prefers nothing", **where)
    return Pair(prompt, chosen, rejected)


def _side(rec: dict[str, Any], name: str, role: str, chat: Chat, where: dict[str, Any]) -> list[Message]:
    value = field(rec, name, where)
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, list):
        return turns(value, name, chat, where)
    raise DataError(f"field {name!r} is {kind(value)}, not a string or a list of turns", **where)


def _whole(rec: dict[str, Any], name: str, chat: Chat, where: dict[str, Any]) -> list[Message]:
    value = field(rec, name, where)
    if not isinstance(value, list):
        raise DataError(f"field {name!r} is {kind(value)}: without a {chat.fields.prompt!r} field, "
                        "the answers must be whole conversations (lists of turns)", **where,
                        field="spec.chat.fields.prompt")
    return turns(value, name, chat, where)
