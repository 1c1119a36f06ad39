"""Record fields and turns → messages: the helpers conversations and preference pairs share.

>>> kind([1]), likely_role("bot")
('a list', 'assistant')
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import DataError, excerpt, names_phrase

if TYPE_CHECKING:  # pydantic-free at run time
    from ..standard import Chat

ROLES = ("system", "user", "assistant", "tool")
Message = dict[str, str]


def field(rec: dict[str, Any], name: str, where: dict[str, Any]) -> Any:
    if name not in rec:
        known = names_phrase(sorted(map(str, rec))) if rec else "none"
        raise DataError(f"the record has no field {name!r} (its fields: {known})", **where,
                        field="spec.chat.fields",
                        hint="map the data's field names under chat.fields")
    return rec[name]


def text(rec: dict[str, Any], name: str, where: dict[str, Any]) -> str:
    value = field(rec, name, where)
    if not isinstance(value, str):
        raise DataError(f"field {name!r} is {kind(value)}, not a string", **where)
    return value


def system(rec: dict[str, Any], chat: Chat, where: dict[str, Any]) -> list[Message]:
    value = rec.get(chat.fields.system)
    if value is None or value == "":
        return []
    if not isinstance(value, str):
        raise DataError(f"field {chat.fields.system!r} is {kind(value)}, not a string", **where)
    return [{"role": "system", "content": value}]


def turns(value: Any, name: str, chat: Chat, where: dict[str, Any]) -> list[Message]:
    f = chat.fields
    if not isinstance(value, list) or not value:
        raise DataError(f"field {name!r} is {kind(value)}, not a non-empty list of turns", **where)
    out: list[Message] = []
    for i, turn in enumerate(value):
        at = f"{name}[{i}]"
        if not isinstance(turn, dict):
            raise DataError(f"{at} is {kind(turn)}, not an object with {f.role!r} and {f.content!r}",
                            **where)
        for key in (f.role, f.content):
            if key not in turn:
                known = names_phrase(sorted(map(str, turn))) if turn else "none"
                raise DataError(f"{at} has no field {key!r} (its fields: {known})", **where,
                                field="spec.chat.fields",
                                hint="map the data's field names under chat.fields")
        role, content = turn[f.role], turn[f.content]
        if not isinstance(role, str):
            raise DataError(f"{at}.{f.role} is {kind(role)}, not a string", **where)
        if not isinstance(content, str):
            raise DataError(f"{at}.{f.content} is {kind(content)}, not a string", **where)
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


def kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), f"a {type(value).__name__}")
