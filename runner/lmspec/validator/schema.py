"""Layer 2: route each document by apiVersion and kind, validate it against its kind's model,
and turn pydantic's errors into findings with positions, plain messages and fix hints."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..standard import KINDS, VERSIONS
from . import registry as rules
from .findings import Finding, pointer
from .parse import Document

SUPPORTED_VERSIONS = tuple(VERSIONS)


def check_document(doc: Document) -> tuple[BaseModel | None, list[Finding]]:
    """Validate one document; returns the typed manifest (None when invalid) and findings."""
    data = doc.data
    if not isinstance(data, dict):
        return None, [_finding(doc, rules.DOCUMENT_NOT_MAPPING, (),
                               f"a manifest must be a mapping, not {_describe(data)}",
                               "start the document with apiVersion, kind, metadata and spec keys")]
    version = data.get("apiVersion")
    if version not in SUPPORTED_VERSIONS:
        supported = ", ".join(SUPPORTED_VERSIONS)
        path: tuple[str | int, ...]
        if version is None:
            msg, path = "apiVersion is missing", ()
        else:
            msg, path = f"unsupported apiVersion: {_describe(version)}", ("apiVersion",)
        return None, [_finding(doc, rules.DOCUMENT_API_VERSION, path, msg,
                               f"supported versions: {supported}")]
    kind = data.get("kind")
    kinds = VERSIONS[version]
    cls = kinds.get(kind) if isinstance(kind, str) else None
    if cls is None:
        close = difflib.get_close_matches(str(kind), kinds, n=1, cutoff=0.6) if kind else []
        hint = f"did you mean {close[0]!r}? " if close else ""
        hint += "kinds: " + ", ".join(kinds)
        msg = "kind is missing" if kind is None else f"unknown kind: {_describe(kind)}"
        return None, [_finding(doc, rules.DOCUMENT_KIND, ("kind",) if kind is not None else (), msg, hint)]
    try:
        # by_name=False: manifests use the published camelCase keys only; the snake_case
        # attribute names are for Python code, and the JSON Schema rejects them.
        return cls.model_validate(data, by_alias=True, by_name=False), []
    except ValidationError as exc:
        findings: list[Finding] = []
        # Union branches that do not fit the value's type are dropped as noise; when every
        # branch at a place was dropped, the value fits none of them and that is the finding.
        dropped: dict[tuple[str | int, ...], list[str]] = {}
        for e in exc.errors(include_url=False):
            path, branch = _data_path(data, cls, e["loc"])
            if branch is not None:
                dropped.setdefault(path, []).append(_BRANCH_NAMES.get(branch, "a mapping"))
            elif (f := _from_error(doc, cls, e, path)) is not None:
                findings.append(f)
        for path, names in dropped.items():
            prefix = pointer(path)
            if not any(f.pointer == prefix or f.pointer.startswith(prefix + "/") for f in findings):
                want = " or ".join(dict.fromkeys(names))
                findings.append(_finding(doc, rules.SCHEMA_TYPE, path,
                                         f"expected {want}, got {_describe(_lookup(data, path))}"))
        if not findings:  # never report a document invalid without saying why
            findings.append(_finding(doc, rules.SCHEMA_INVALID, (), str(exc).splitlines()[0]))
        return None, _dedupe(findings)


_BRANCH_NAMES = {"str": "a string", "int": "an integer", "float": "a number",
                 "bool": "a boolean (true or false)", "none": "null"}


def _lookup(data: Any, path: tuple[str | int, ...]) -> Any:
    for part in path:
        if isinstance(data, dict):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and 0 <= part < len(data):
            data = data[part]
        else:
            return None
    return data


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[str, str]] = set()
    out = []
    for f in findings:
        if (f.rule, f.pointer) not in seen:
            seen.add((f.rule, f.pointer))
            out.append(f)
    return out


def _finding(doc: Document, rule: str, path: tuple[str | int, ...], message: str, hint: str = "",
             *, key: bool = False) -> Finding:
    line, column = doc.locate(path, key=key)
    r = rules.RULES[rule]
    return Finding(rule, r.severity, doc.file, line, column, pointer(path), message, hint, doc.index)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        text = repr(value)
        return f"number {text}" if len(text) <= 40 else "a number"
    if isinstance(value, str):
        return f"string {value!r}" if len(value) < 40 else "a string"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a sequence"
    return type(value).__name__


_TYPE_NAMES = {
    "string_type": "a string", "int_type": "an integer", "int_from_float": "an integer",
    "float_type": "a number", "bool_type": "a boolean (true or false)", "dict_type": "a mapping",
    "list_type": "a sequence", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "none_required": "null",
}
_BOUND_TYPES = {
    "greater_than", "greater_than_equal", "less_than", "less_than_equal", "too_short", "too_long",
    "string_too_short", "string_too_long", "finite_number",
}


def _from_error(doc: Document, cls: type[BaseModel], err: ErrorDetails,
                path: tuple[str | int, ...]) -> Finding | None:
    etype = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if etype == "missing":
        name = path[-1]
        return _finding(doc, rules.SCHEMA_REQUIRED, path, f"required key {name!r} is missing",
                        f"add {name!r} under {pointer(path[:-1]) or 'the document root'}")
    if etype == "extra_forbidden":
        name = str(path[-1])
        allowed = _allowed_keys(cls, err["loc"])
        close = difflib.get_close_matches(name, allowed, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else (
            "allowed keys: " + ", ".join(allowed) if allowed else "remove it")
        return _finding(doc, rules.SCHEMA_UNKNOWN_KEY, path, f"unknown key {name!r}",
                        hint + " (keys starting with 'x-' are extensions)", key=True)
    if etype in _TYPE_NAMES:
        want = _TYPE_NAMES[etype]
        hint = ""
        if isinstance(value, str) and etype in ("int_type", "float_type"):
            hint = "write the number without quotes"
        elif isinstance(value, str) and etype == "bool_type":
            hint = "YAML 1.2 booleans are true and false only"
        elif isinstance(value, float) and etype in ("string_type",):
            hint = "quote the value (e.g. '1.10'), or YAML reads it as a number"
        elif isinstance(value, (int, bool)) and etype == "string_type":
            hint = "quote the value"
        if etype == "float_type" and isinstance(value, int) and not isinstance(value, bool):
            return _finding(doc, rules.SCHEMA_BOUND, path, "number too large for a float")
        return _finding(doc, rules.SCHEMA_TYPE, path,
                        f"expected {want}, got {_describe(value)}", hint)
    if etype in ("literal_error", "enum", "union_tag_invalid"):
        expected = ctx.get("expected") or ctx.get("expected_tags") or ""
        if etype == "union_tag_invalid":
            path = (*path, ctx.get("discriminator", "type").strip("'"))
            value = ctx.get("tag")
        choices = [s.strip(" '") for s in str(expected).replace(" or ", ",").split(",")]
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return _finding(doc, rules.SCHEMA_ENUM, path,
                        f"{_describe(value)} is not one of {expected}",
                        hint + f"allowed: {expected}", key=err["loc"][-1:] == ("[key]",))
    if etype == "union_tag_not_found":
        tag = str(ctx.get("discriminator", "type")).strip("'")
        node = _lookup(doc.data, path)
        keys = [k for k in node if isinstance(k, str)] if isinstance(node, dict) else []
        close = difflib.get_close_matches(tag, keys, n=1, cutoff=0.6)
        hint = f"is {close[0]!r} a misspelling of {tag!r}? " if close else ""
        return _finding(doc, rules.SCHEMA_REQUIRED, (*path, tag), f"required key {tag!r} is missing",
                        hint + f"add {tag!r} to select the variant")
    if etype in _BOUND_TYPES:
        return _finding(doc, rules.SCHEMA_BOUND, path, err["msg"],
                        "see `lmspec explain` for the field's range")
    if etype == "string_pattern_mismatch":
        return _finding(doc, rules.SCHEMA_PATTERN, path,
                        f"{_describe(value)} does not match {ctx.get('pattern')}",
                        _pattern_hint(path))
    return _finding(doc, rules.SCHEMA_INVALID, path, err["msg"])


def _pattern_hint(path: tuple[str | int, ...]) -> str:
    if path and path[-1] in ("name", "model", "dataset", "trainingJob"):
        return "use lowercase letters, digits and '-', starting and ending with a letter or digit (at most 63)"
    if path and path[-1] == "sha256":
        return "64 lowercase hex digits, as printed by sha256sum"
    return ""


def _data_path(data: Any, cls: type[BaseModel],
               loc: tuple[str | int, ...]) -> tuple[tuple[str | int, ...], str | None]:
    """pydantic's error location → the path in the data.

    pydantic adds a segment for the branch of a union it tried (the tag of a discriminated union,
    or a type name); those are not keys in the data. Returns (path, branch): ``branch`` is the
    union branch for errors of a branch that does not match the value's type, which are noise.
    """
    path: list[str | int] = []
    node: Any = data
    for part in loc:
        if part == "[key]":  # the error is about the key itself, already the path's last part
            continue
        if isinstance(node, dict):
            if part in node or not _is_branch(part):
                path.append(part)
                node = node.get(part) if isinstance(part, str) else None
                continue
        elif isinstance(node, list) and isinstance(part, int):
            path.append(part)
            node = node[part] if 0 <= part < len(node) else None
            continue
        elif node is not None and isinstance(part, str) and _is_branch(part):
            # A union branch tried on a scalar: keep the branch named after the scalar's type.
            if not _branch_matches(part, node):
                return tuple(path), part
            continue
        if isinstance(part, str) and _is_branch(part):
            if (isinstance(node, dict) and (part[:1].isupper() or "[" in part)) or node is None:
                continue
            if not _branch_matches(part, node):
                return tuple(path), part
            continue
        path.append(part)
        node = None
    return tuple(path), None


_SCALAR_BRANCHES = {"str": str, "int": int, "float": float, "bool": bool, "none": type(None)}


def _is_branch(part: str | int) -> bool:
    if not isinstance(part, str):
        return False
    # Branch names: scalar type names, model class names, discriminator tags, and the names
    # pydantic gives validator-wrapped models ("function-wrap[_split_extensions()]").
    return part in _SCALAR_BRANCHES or part[:1].isupper() or part in _TAGS or "[" in part


def _branch_matches(part: str, node: Any) -> bool:
    if part in _SCALAR_BRANCHES:
        return isinstance(node, _SCALAR_BRANCHES[part])
    return isinstance(node, dict)


def _collect_tags() -> set[str]:
    tags: set[str] = set()
    for cls in _walk_models(list(KINDS.values())):
        field = cls.model_fields.get("type")
        if field is not None:
            for arg in typing.get_args(field.annotation):
                if isinstance(arg, str):
                    tags.add(arg)
    return tags


def _walk_models(roots: list[type[BaseModel]]) -> Iterator[type[BaseModel]]:
    seen: set[type[BaseModel]] = set()
    todo = list(roots)
    while todo:
        cls = todo.pop()
        if cls in seen:
            continue
        seen.add(cls)
        yield cls
        for f in cls.model_fields.values():
            todo.extend(_models_in(f.annotation))


def _models_in(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for a in typing.get_args(tp) for m in _models_in(a)]


_TAGS = _collect_tags()


def _allowed_keys(cls: type[BaseModel], loc: tuple[str | int, ...]) -> list[str]:
    """The keys allowed in the mapping that holds the last element of ``loc``."""
    tp: Any = cls
    for part in loc[:-1]:
        tp = _step(tp, part)
        if tp is None:
            return []
    models = _models_in(tp)
    if len(models) != 1:
        return []
    return [f.alias or n for n, f in models[0].model_fields.items()]


def _step(tp: Any, part: str | int) -> Any:
    tp = _unwrap(tp)
    if isinstance(part, str) and part.startswith("function-"):
        # pydantic names a union branch that is a validator-wrapped model after the validator
        # ("function-wrap[_split_extensions()]"); every Spec is one, so it stands for the single
        # model member of the union (KeySource in ``KeySource | str``).
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return tp
        members = [m for a in typing.get_args(tp) for m in _models_in(a)]
        return members[0] if len(members) == 1 else None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        for name, f in tp.model_fields.items():
            if part in (name, f.alias):
                return f.annotation
        return None
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is list and isinstance(part, int):
        return args[0]
    if origin is dict:
        return args[1]
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            arg = _unwrap(arg)
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                tag = arg.model_fields.get("type")
                if arg.__name__ == part or (tag is not None and part in typing.get_args(tag.annotation)):
                    return arg
        # Optional[X]: pydantic adds no segment; descend into the non-null member.
        members = [a for a in args if a is not type(None)]
        if len(members) == 1:
            return _step(members[0], part)
    return None


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp
