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

from .errors import DataError, excerpt, names_phrase
from .jsonl import jsonl_records

if TYPE_CHECKING:  # numpy- and pydantic-free at run time: the validator reads records too
    from ..standard import Chat
    from ._read import FileInfo

ROLES = ("system", "user", "assistant", "tool")
TEXT_ROLE = "text"
"""The role of a plain-text document's single turn."""

Message = dict[str, str]


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
        return [{"role": TEXT_ROLE, "content": _text(rec, f.text, where)}]
    if chat.format == "preference":  # the conversation the pair prefers
        from .pairs import to_pair

        pair = to_pair(rec, chat, where)
        return pair.prompt + pair.chosen
    if chat.format == "messages":
        messages = _turns(_field(rec, f.messages, where), f.messages, chat, where)
    elif chat.format == "promptCompletion":
        prompt, completion = _field(rec, f.prompt, where), _field(rec, f.completion, where)
        messages = _system(rec, chat, where)
        messages += _turns(prompt, f.prompt, chat, where) if isinstance(prompt, list) \
            else [{"role": "user", "content": _text(rec, f.prompt, where)}]
        messages += _turns(completion, f.completion, chat, where) if isinstance(completion, list) \
            else [{"role": "assistant", "content": _text(rec, f.completion, where)}]
    else:  # alpaca
        instruction = _text(rec, f.instruction, where)
        extra = rec.get(f.input)
        if extra is not None and not isinstance(extra, str):
            raise DataError(f"field {f.input!r} is {_kind(extra)}, not a string", **where,
                            field="spec.chat.fields.input")
        user = f"{instruction}\n\n{extra}" if extra else instruction
        output = _text(rec, f.output, where)
        messages = [*_system(rec, chat, where), {"role": "user", "content": user},
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
        from .pairs import to_pair

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


def _field(rec: dict[str, Any], name: str, where: dict[str, Any]) -> Any:
    if name not in rec:
        known = names_phrase(sorted(map(str, rec))) if rec else "none"
        raise DataError(f"the record has no field {name!r} (its fields: {known})", **where,
                        field="spec.chat.fields",
                        hint="map the data's field names under chat.fields")
    return rec[name]


def _text(rec: dict[str, Any], name: str, where: dict[str, Any]) -> str:
    value = _field(rec, name, where)
    if not isinstance(value, str):
        raise DataError(f"field {name!r} is {_kind(value)}, not a string", **where)
    return value


def _system(rec: dict[str, Any], chat: Chat, where: dict[str, Any]) -> list[Message]:
    value = rec.get(chat.fields.system)
    if value is None or value == "":
        return []
    if not isinstance(value, str):
        raise DataError(f"field {chat.fields.system!r} is {_kind(value)}, not a string", **where)
    return [{"role": "system", "content": value}]


def _turns(value: Any, name: str, chat: Chat, where: dict[str, Any]) -> list[Message]:
    f = chat.fields
    if not isinstance(value, list) or not value:
        raise DataError(f"field {name!r} is {_kind(value)}, not a non-empty list of turns", **where)
    out: list[Message] = []
    for i, turn in enumerate(value):
        at = f"{name}[{i}]"
        if not isinstance(turn, dict):
            raise DataError(f"{at} is {_kind(turn)}, not an object with {f.role!r} and {f.content!r}",
                            **where)
        for key in (f.role, f.content):
            if key not in turn:
                known = names_phrase(sorted(map(str, turn))) if turn else "none"
                raise DataError(f"{at} has no field {key!r} (its fields: {known})", **where,
                                field="spec.chat.fields",
                                hint="map the data's field names under chat.fields")
        role, content = turn[f.role], turn[f.content]
        if not isinstance(role, str):
            raise DataError(f"{at}.{f.role} is {_kind(role)}, not a string", **where)
        if not isinstance(content, str):
            raise DataError(f"{at}.{f.content} is {_kind(content)}, not a string", **where)
        standard = chat.role_map.get(role, role)
        if standard not in ROLES:
            # Roles come from the data: shown as short excerpts, and not at all when they look
            # like a credential.
            shown, source = excerpt(standard), excerpt(role)
            mapped = f" (mapped from {source})" if standard != role and source is not None else ""
            what = f"unknown role {shown}" if shown is not None else \
                "an unknown role that looks like a credential (not shown)"
            raise DataError(f"{at} has {what}{mapped}", **where, field="spec.chat.roleMap",
                            hint=f"roles are {', '.join(ROLES)}; map others under chat.roleMap, "
                                 f"e.g. {{{source or 'their-role'}: {likely_role(role)}}}")
        out.append({"role": standard, "content": content})
    return out


ROLE_ALIASES = {
    "user": ("human", "person", "customer", "client", "question", "prompter", "prompt", "instruction",
             "input", "usr", "me"),
    "assistant": ("bot", "ai", "gpt", "chatgpt", "model", "chatbot", "agent", "answer", "response", "output",
                  "completion", "llm", "machine", "helper", "asst", "assistent"),
    "system": ("sys", "developer", "context", "instructions", "preamble"),
    "tool": ("function", "ipython", "observation", "tool_result", "tool-result", "function_result"),
}
"""Role names datasets use, by the standard role they stand for (the roleMap hint's guess)."""


def likely_role(role: str) -> str:
    """The standard role a data set's role name most likely means: ``bot`` → ``assistant``,
    ``human`` → ``user``; ``user`` when nothing suggests one."""
    key = role.strip().lower()
    for standard, aliases in ROLE_ALIASES.items():
        if key == standard or key in aliases or key.rstrip("s") in aliases:
            return standard
    import difflib

    names = {alias: standard for standard, aliases in ROLE_ALIASES.items() for alias in (standard, *aliases)}
    close = difflib.get_close_matches(key, list(names), n=1, cutoff=0.75)
    return names[close[0]] if close else "user"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}")
