"""Chat and instruction records → conversations: one representation for every format users bring.

>>> from lmspec.v1alpha1.dataset import Chat
>>> chat = Chat.model_validate({"format": "alpaca", "sequenceLength": 64}, by_alias=True)
>>> to_messages({"instruction": "Add 2 and 3.", "output": "5"}, chat, where={})
[{'role': 'user', 'content': 'Add 2 and 3.'}, {'role': 'assistant', 'content': '5'}]

A conversation is a list of ``{"role", "content"}`` turns with standard roles (system, user,
assistant, tool). Plain text (``format: text``) is one turn of role ``text``, which is trained
whole and rendered without a template. Reading needs no torch or transformers, so the validator's
``--check-env`` uses it too; parquet needs pyarrow.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .errors import DataError
from .jsonl import jsonl_records
from .pairs import to_pair
from .turns import Message, field, kind, system, text, turns

if TYPE_CHECKING:  # numpy- and pydantic-free at run time: the validator reads records too
    from ..standard import Chat
    from ._read import FileInfo

TEXT_ROLE = "text"
"""The role of a plain-text document's single turn."""


@dataclass(frozen=True)
class Conversation:
    """One record, converted; ``file``/``row`` say where it came from."""

    messages: list[Message]
    file: str
    row: int
    unit: str
    file_id: int

    @property
    def is_text(self) -> bool:
        return len(self.messages) == 1 and self.messages[0]["role"] == TEXT_ROLE


def read_records(fi: FileInfo) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(row, record)`` of every record of a jsonl or parquet file; rows count from 1."""
    if fi.format == "jsonl":
        try:
            yield from jsonl_records(fi)
        except UnicodeDecodeError as e:
            raise DataError(f"not UTF-8 text (byte {e.start})", file=fi.display) from None
    elif fi.format == "parquet":
        yield from _parquet(fi)
    else:
        raise DataError(f"chat data is read from jsonl or parquet files, not {fi.format}",
                        file=fi.display, field=f"spec.sources[{fi.source}]",
                        hint="convert the file to jsonl: one JSON object per line")


def _parquet(fi: FileInfo) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise DataError("reading parquet needs pyarrow", file=fi.display,
                        hint="pip install 'lmspec[run]'") from None
    row = 1
    try:
        # A batch of rows at a time: a file of any size is read in bounded memory.
        for batch in pq.ParquetFile(fi.path).iter_batches(batch_size=1024):
            for rec in batch.to_pylist():
                yield row, rec
                row += 1
    except (pa.ArrowException, OSError) as e:
        raise DataError(f"cannot read parquet: {str(e).strip()}", file=fi.display, row=row) from None


def read_conversations(files: list[FileInfo], chat: Chat) -> list[Conversation]:
    """Every record of every file, converted; the first bad record raises :class:`DataError`."""
    out: list[Conversation] = []
    for k, fi in enumerate(files):
        for row, rec in read_records(fi):
            where = {"file": fi.display, "row": row, "unit": fi.unit}
            out.append(Conversation(to_messages(rec, chat, where), fi.display, row, fi.unit, k))
    return out


def to_messages(rec: dict[str, Any], chat: Chat, where: dict[str, Any]) -> list[Message]:
    """One record in ``chat.format`` → a conversation; ``where`` locates errors (file, row, unit)."""
    f = chat.fields
    if chat.format == "text":
        return [{"role": TEXT_ROLE, "content": text(rec, f.text, where)}]
    if chat.format == "preference":  # the conversation the pair prefers
        pair = to_pair(rec, chat, where)
        return pair.prompt + pair.chosen
    if chat.format == "messages":
        messages = turns(field(rec, f.messages, where), f.messages, chat, where)
    elif chat.format == "promptCompletion":
        prompt, completion = field(rec, f.prompt, where), field(rec, f.completion, where)
        messages = system(rec, chat, where)
        messages += turns(prompt, f.prompt, chat, where) if isinstance(prompt, list) \
            else [{"role": "user", "content": text(rec, f.prompt, where)}]
        messages += turns(completion, f.completion, chat, where) if isinstance(completion, list) \
            else [{"role": "assistant", "content": text(rec, f.completion, where)}]
    else:  # alpaca
        instruction = text(rec, f.instruction, where)
        extra = rec.get(f.input)
        if extra is not None and not isinstance(extra, str):
            raise DataError(f"field {f.input!r} is {kind(extra)}, not a string", **where,
                            field="spec.chat.fields.input")
        user = f"{instruction}\n\n{extra}" if extra else instruction
        output = text(rec, f.output, where)
        messages = [*system(rec, chat, where), {"role": "user", "content": user},
                    {"role": "assistant", "content": output}]
    if chat.system_prompt is not None and not any(m["role"] == "system" for m in messages):
        messages.insert(0, {"role": "system", "content": chat.system_prompt})
    if not any(m["role"] != "system" for m in messages):
        raise DataError("the conversation has no user or assistant turn", **where)
    return messages


def prompt_of(rec: dict[str, Any], chat: Chat, where: dict[str, Any]) -> list[Message]:
    """One record as a prompt to generate from: its conversation without the trailing assistant
    turns (the reference answer, when the record has one). The answer fields of promptCompletion
    and alpaca records may be left out."""
    answer = {"promptCompletion": chat.fields.completion, "alpaca": chat.fields.output}.get(chat.format)
    if chat.format == "preference":  # the prompt of a pair (whose answers may be left out)
        f = chat.fields
        if f.prompt in rec:
            rec = {f.chosen: "a", f.rejected: "b", **rec}
        return to_pair(rec, chat, where).prompt
    if answer is not None and answer not in rec:
        rec = {**rec, answer: ""}  # an empty answer: dropped below with any other
    messages = to_messages(rec, chat, where)
    while messages and messages[-1]["role"] == "assistant":
        messages.pop()
    if not any(m["role"] != "system" for m in messages):
        raise DataError("the conversation has no turn before the assistant's answer", **where,
                        hint="end each record with the turn to answer (a user turn)")
    return messages
