"""Layer 2: route each document by apiVersion and kind, validate it against its kind's model,
and turn the errors into findings with positions, plain messages and fix hints.

The check is the models' own (pydantic-core's, on the schemas compiled from them; see :mod:`.light`), run
without importing pydantic; so are the hints, read from the models' compiled fields."""

from __future__ import annotations

import dataclasses
import functools
import re
import shlex
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic_core import ValidationError

from ..manifests.document import Document, Loc
from ..manifests.findings import Finding, pointer, similar
from ..manifests.light import HUB, FieldShape, checker, model_checker, shapes, usable, versions
from ..standard import EXTENSION_KEY
from . import registry as rules

if TYPE_CHECKING:
    from pydantic_core import ErrorDetails


def check_document(doc: Document, *, models: bool = False) -> tuple[Any, list[Finding]]:
    """Validate one document; returns the typed manifest (None when invalid) and findings. The
    typed manifest is a :class:`~lmspec.manifests.light.Light` object, or the model's own with
    ``models`` (the runtime's objects, from the same checks: :func:`lmspec.validator.core.load`)
    or when the compiled checks are not usable (:func:`~lmspec.manifests.light.usable`)."""
    data = doc.data
    if not isinstance(data, dict):
        return None, [_finding(doc, rules.DOCUMENT_NOT_MAPPING, (),
                               f"a manifest must be a mapping, not {_describe(data)}",
                               "start the document with apiVersion, kind, metadata and spec keys")]
    version = data.get("apiVersion")
    known = versions()
    if not isinstance(version, str) or version not in known:
        supported = ", ".join(known)
        path: tuple[str | int, ...]
        hint = f"supported versions: {supported}"
        if version is None:
            msg, path = "apiVersion is missing", ()
        else:
            msg, path = f"unsupported apiVersion: {_describe(version)}", ("apiVersion",)
            close = similar(version, known) if isinstance(version, str) and len(version) < 200 else None
            if close:
                hint = f"did you mean {close!r}? {hint}"
        return None, [_finding(doc, rules.DOCUMENT_API_VERSION, path, msg, hint)]
    v = version
    kind = data.get("kind")
    kinds = known[version]
    cls = kinds.get(kind) if isinstance(kind, str) else None
    if cls is None or not isinstance(kind, str):
        close = similar(str(kind), kinds) if kind else None
        hint = f"did you mean {close!r}? " if close else ""
        hint += "kinds: " + ", ".join(kinds)
        msg = "kind is missing" if kind is None else f"unknown kind: {_describe(kind)}"
        return None, [_finding(doc, rules.DOCUMENT_KIND, ("kind",) if kind is not None else (), msg, hint)]
    try:
        # by_name=False: manifests use the published camelCase keys only; the snake_case
        # attribute names are for Python code, and the JSON Schema rejects them.
        validator = model_checker(version, kind) if models else checker(version, kind)
        obj = validator.validate_python(data, by_alias=True, by_name=False)
        return (obj, []) if version == HUB else _hub_object(doc, kind, models=models)
    except ValidationError as exc:
        findings: list[Finding] = []
        # Union branches that do not fit the value's type are dropped as noise; when every
        # branch at a place was dropped, the value fits none of them and that is the finding.
        dropped: dict[tuple[str | int, ...], list[str]] = {}
        for e in exc.errors(include_url=False):
            path, branch = _data_path(v, data, cls, e["loc"])
            if branch is not None:
                dropped.setdefault(path, []).append(_BRANCH_NAMES.get(branch, "a mapping"))
            elif (f := _from_error(v, doc, cls, e, path)) is not None:
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


def _hub_object(doc: Document, kind: str, *, models: bool) -> tuple[Any, list[Finding]]:
    """A valid document of another version as the hub's object (the runtime's and the rules'
    terms): its plain data converted (:func:`lmspec.standard.to_hub`) and checked by the hub's
    model. What the hub's model refuses (a version whose own checks are looser than the hub's)
    is reported as the hub's schema findings, placed on the document as written."""
    from ..conversion import spoke_path
    from ..standard import to_hub

    hub, losses = to_hub(doc.data, share=True)  # only read: checked, never written
    if losses:
        return None, [_finding(doc, rules.SCHEMA_INVALID, (), f"{loss.dotted}: {loss.message}") for loss in losses]
    try:
        validator = model_checker(HUB, kind) if models else checker(HUB, kind)
        return validator.validate_python(hub, by_alias=True, by_name=False), []
    except ValidationError as exc:
        version = str(doc.data.get("apiVersion"))
        # Its findings are placed below (on the document as written), so it needs no positions.
        converted = dataclasses.replace(doc, data=hub, loc=Loc((1, 1)), flat=b"", text="")
        cls = versions()[HUB][kind]
        findings = []
        for e in exc.errors(include_url=False):
            path, branch = _data_path(HUB, hub, cls, e["loc"])
            if branch is None and (f := _from_error(HUB, converted, cls, e, path)) is not None:
                at = spoke_path(version, kind, path, doc.data)
                line, column = doc.locate(at)
                findings.append(dataclasses.replace(f, pointer=pointer(at), line=line, column=column))
        return None, _dedupe(findings) or [_finding(doc, rules.SCHEMA_INVALID, (), str(exc).splitlines()[0])]


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
    "string_too_short", "string_too_long", "finite_number", "multiple_of",
}


def _from_error(v: str, doc: Document, cls: str, err: ErrorDetails,
                path: tuple[str | int, ...]) -> Finding | None:
    etype = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    if etype == "string_pattern_mismatch" and ctx.get("pattern") == EXTENSION_KEY and err["loc"][-1:] == (value,):
        # An undeclared key: the keys of every object's extra mapping must be x- extensions.
        etype = "extra_forbidden"
    if etype == "missing":
        name = path[-1]
        return _finding(doc, rules.SCHEMA_REQUIRED, path, f"required key {name!r} is missing",
                        f"add {name!r} under {pointer(path[:-1]) or 'the document root'}")
    if etype == "extra_forbidden":
        name = str(path[-1])
        allowed = _allowed_keys(v, cls, err["loc"])
        here = _dotted(path)
        # A key defined elsewhere in the kind was most likely written at the wrong depth; that
        # beats a near-miss spelling here ('offloadOptimizer' is not a typo of 'optimizer').
        homes = [h for h in _key_homes(v, cls).get(name, []) if h != here]
        close = _closest(name, allowed)
        elsewhere = _other_version(v, cls, name, here)
        if elsewhere is not None:
            return _finding(doc, rules.SCHEMA_UNKNOWN_KEY, path,
                            f"unknown key {name!r}: {here} is a field of {elsewhere}, not of {v}",
                            _other_version_hint(doc, v, elsewhere, path), key=True)
        if close and close.lower() == name.lower():
            hint = f"did you mean {close!r}?"
        elif 0 < len(homes) <= 3:
            hint = f"{name!r} belongs at " + " or ".join(homes)
        elif close:
            hint = f"did you mean {close!r}?"
        else:
            hint = "allowed keys: " + ", ".join(allowed) if allowed else "remove it"
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
        elif want == "a mapping":
            hint = _mapping_hint(v, cls, err["loc"], path, value)
        if etype == "float_type" and isinstance(value, int) and not isinstance(value, bool):
            return _finding(doc, rules.SCHEMA_BOUND, path,
                            f"{_field_name(path)} must be at most 1.8e308 (a 64-bit float), got {value}")
        return _finding(doc, rules.SCHEMA_TYPE, path,
                        f"expected {want}, got {_describe(value)}", hint)
    if etype in ("literal_error", "enum", "union_tag_invalid"):
        expected = ctx.get("expected") or ctx.get("expected_tags") or ""
        if etype == "union_tag_invalid":
            path = (*path, ctx.get("discriminator", "type").strip("'"))
            value = ctx.get("tag")
        raw = [s.strip() for s in str(expected).replace(" or ", ",").split(",")]
        choices = [s.strip("'") for s in raw]
        numbers = [s for s in raw if not s.startswith("'")]
        if isinstance(value, str) and value.strip() in numbers:
            hint = f"remove the quotes: {path[-1]}: {value.strip()}. "
        else:
            close = _closest(str(value), choices)
            hint = f"did you mean {close!r}? " if close else ""
        return _finding(doc, rules.SCHEMA_ENUM, path,
                        f"{_describe(value)} is not one of {expected}",
                        hint + f"allowed: {expected}", key=err["loc"][-1:] == ("[key]",))
    if etype == "union_tag_not_found":
        tag = str(ctx.get("discriminator", "type")).strip("'")
        node = _lookup(doc.data, path)
        keys = [k for k in node if isinstance(k, str)] if isinstance(node, dict) else []
        misspelt = similar(tag, keys)
        hint = f"is {misspelt!r} a misspelling of {tag!r}? " if misspelt else ""
        return _finding(doc, rules.SCHEMA_REQUIRED, (*path, tag), f"required key {tag!r} is missing",
                        hint + f"add {tag!r} to select the variant")
    if etype in _BOUND_TYPES:
        field = f"{cls}.{_dotted(path)}".replace("[]", "")
        flag = "" if v == newest() else f" --api-version {v.rsplit('/', 1)[-1]}"
        hint = f"`lmspec explain {field}{flag}` shows the field's range"
        if isinstance(value, str) and _DURATION.match(value):  # the schema states a duration's pattern only
            hint = f"write a duration within the bound; spec/{v.rsplit('/', 1)[-1]}/changes.md lists each one's"
        return _finding(doc, rules.SCHEMA_BOUND, path, _bound_message(etype, ctx, path, value), hint)
    if etype == "string_pattern_mismatch":
        return _finding(doc, rules.SCHEMA_PATTERN, path,
                        f"{_describe(value)} does not match {ctx.get('pattern')}",
                        _pattern_hint(path))
    return _finding(doc, rules.SCHEMA_INVALID, path, err["msg"])


def newest() -> str:
    """The newest registered version of the standard (the last registered)."""
    return list(versions())[-1]


def _other_version(v: str, cls: str, name: str, here: str) -> str | None:
    """Another version of lmspec's own (compiled) in whose kind ``cls`` ``here`` is a field."""
    from .. import versions as registry

    for other in registry.all_versions():
        mine = other.api_version != v and usable(other.api_version) and cls in other.kinds.values()
        if mine and here in _key_homes(other.api_version, cls).get(name, []):
            return other.api_version
    return None


def _other_version_hint(doc: Document, v: str, elsewhere: str, path: tuple[str | int, ...]) -> str:
    """Where this version writes what ``elsewhere`` writes at ``path``, or the command that
    converts the file to ``elsewhere``."""
    from ..conversion import spoke_path

    kind = doc.data.get("kind") if isinstance(doc.data, dict) else None
    if elsewhere == HUB and isinstance(kind, str):
        moved = spoke_path(v, kind, path)
        if moved != path:
            return f"{v} writes it as {_dotted(moved)} (spec/{v.rsplit('/', 1)[-1]}/changes.md)"
    name = elsewhere.rsplit("/", 1)[-1]
    return (f"write {v}'s field (spec/{name}/changes.md says how each differs), or move the file to "
            f"{name}: `lmspec convert {_quoted(doc.file)} --to {name}` converts it once it is valid")


def _quoted(file: str) -> str:
    return "FILE" if file.startswith("<") else shlex.quote(file)


def _closest(word: str, choices: list[str]) -> str | None:
    """The choice ``word`` most likely means: one equal to it but for case first (``AdamW`` is
    ``adamw``, never ``adam``), else the closest spelling, compared without case."""
    for c in choices:
        if c.lower() == word.lower():
            return c
    lowered = {c.lower(): c for c in choices}
    close = similar(word.lower(), lowered)
    return lowered[close] if close else None


def _field_name(path: tuple[str | int, ...]) -> str:
    """``betas[1]`` for ``(..., "betas", 1)``, ``lr`` for ``(..., "lr")``."""
    name = ""
    for part in reversed(path):
        if isinstance(part, int):
            name = f"[{part}]" + name
        else:
            return part + name
    return name or "the value"


def _dotted(path: tuple[str | int, ...]) -> str:
    """``spec.sources[].path`` for ``("spec", "sources", 0, "path")``."""
    return "".join("[]" if isinstance(p, int) else ("." if i else "") + p for i, p in enumerate(path))


_BOUND_WORDS = {"gt": "greater than {}", "ge": "at least {}", "lt": "less than {}", "le": "at most {}"}


def _bound_message(etype: str, ctx: dict[str, Any], path: tuple[str | int, ...], value: Any) -> str:
    name = _field_name(path)
    for key, words in _BOUND_WORDS.items():
        if key in ctx:
            return f"{name} must be {words.format(_show(ctx[key]))}, got {_show(value)}"
    unit = "characters" if etype.startswith("string") else "items"
    got = len(value) if isinstance(value, (str, list, dict)) else value
    if "min_length" in ctx:
        return f"{name} must have at least {ctx['min_length']} {unit}, got {got}"
    if "max_length" in ctx:
        return f"{name} must have at most {ctx['max_length']} {unit}, got {got}"
    if etype == "finite_number":
        return f"{name} must be a finite number, got {_show(value)}"
    if etype == "multiple_of":
        return f"{name} must be a multiple of {_show(ctx.get('multiple_of'))}, got {_show(value)}"
    return f"{name}: {_describe(value)} is out of range"


def _show(value: Any) -> str:
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))  # a bound of 0.0 reads as 0
    if isinstance(value, str) and _DURATION.match(value):
        return value  # a duration reads as a quantity, as a number does: 3600s
    return repr(value) if isinstance(value, str) else str(value)


_DURATION = re.compile(r"^[0-9]+(\.[0-9]+)?(E\+[0-9]+)?(h|m|s|ms|us)$")


def _mapping_hint(v: str, cls: str, loc: tuple[str | int, ...], path: tuple[str | int, ...],
                  value: Any) -> str:
    """The right form of a mapping written as a scalar: ``loss: crossEntropy`` → ``loss: {type:
    crossEntropy}`` when the scalar names a variant, else the field's documented example."""
    key = str(path[-1]) if path and isinstance(path[-1], str) else "the value"
    tp: Any = ("model", cls)
    for part in loc[:-1]:
        tp = _step(v, tp, part)
        if tp is None:
            return ""
    holders = _models_in(tp)
    field = next((f for m in holders for n, f in _fields(v, m).items() if loc[-1] in (n, f.alias)), None)
    if field is None:
        return ""
    if isinstance(value, str):
        tags = [t for m in _models_in(field.type) for t in _tags_of(v, m)]
        tag = _closest(value, tags) if tags else None
        if tag is not None and tag.lower() == value.lower():
            return f"write it as a mapping: {key}: {{type: {tag}}}"
    if field.has_example:
        import yaml  # here: only a hint needs to write YAML

        example = yaml.safe_dump(field.example, default_flow_style=True, sort_keys=False).strip()
        return f"e.g. {key}: {example}"
    return ""


@functools.cache
def _key_homes(v: str, cls: str) -> dict[str, list[str]]:
    """Every key a kind defines, with the dotted paths where it may be written."""
    homes: dict[str, list[str]] = {}

    def walk(tp: Any, prefix: str, depth: int) -> None:
        if depth > 12:
            return
        if tp[0] == "model":
            for n, f in _fields(v, tp[1]).items():
                key = f.alias or n
                path = f"{prefix}.{key}" if prefix else key
                if path not in homes.setdefault(key, []):
                    homes[key].append(path)
                walk(f.type, path, depth + 1)
        elif tp[0] == "list":
            walk(tp[1], prefix + "[]", depth + 1)
        elif tp[0] == "union":
            for a in tp[1]:
                walk(a, prefix, depth + 1)

    walk(("model", cls), "", 0)
    return homes


def _pattern_hint(path: tuple[str | int, ...]) -> str:
    if path and path[-1] in ("name", "model", "dataset", "trainingJob"):
        return "use lowercase letters, digits and '-', starting and ending with a letter or digit (at most 63)"
    if path and path[-1] == "sha256":
        return "64 lowercase hex digits, as printed by sha256sum"
    return ""


def _data_path(v: str, data: Any, cls: str,
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
            if part in node or not _is_branch(v, part):
                path.append(part)
                node = node.get(part) if isinstance(part, str) else None
                continue
        elif isinstance(node, list) and isinstance(part, int):
            path.append(part)
            node = node[part] if 0 <= part < len(node) else None
            continue
        elif node is not None and isinstance(part, str) and _is_branch(v, part):
            # A union branch tried on a scalar: keep the branch named after the scalar's type.
            if not _branch_matches(part, node):
                return tuple(path), part
            continue
        if isinstance(part, str) and _is_branch(v, part):
            if (isinstance(node, dict) and (part[:1].isupper() or "[" in part)) or node is None:
                continue
            if not _branch_matches(part, node):
                return tuple(path), part
            continue
        path.append(part)
        node = None
    return tuple(path), None


_SCALAR_BRANCHES = {"str": str, "int": int, "float": float, "bool": bool, "none": type(None)}


def _is_branch(v: str, part: str | int) -> bool:
    if not isinstance(part, str):
        return False
    # Branch names: scalar type names, model class names, discriminator tags, and the names
    # pydantic gives validator-wrapped models ("function-wrap[_split_extensions()]").
    return (part in _SCALAR_BRANCHES or part.startswith("constrained-") or part[:1].isupper()
            or part in _all_tags(v) or "[" in part)


def _branch_matches(part: str, node: Any) -> bool:
    if part.startswith("constrained-"):  # a bounded scalar beside another type: ``constrained-int``
        part = part.removeprefix("constrained-")
    if part in _SCALAR_BRANCHES:
        return isinstance(node, _SCALAR_BRANCHES[part])
    if part.startswith("literal["):  # ``Literal["all"]`` beside another type: a string branch
        return isinstance(node, str)
    return isinstance(node, dict)


def _fields(v: str, model: str) -> Mapping[str, FieldShape]:
    return shapes(v).get(model, {})


def _tags_of(v: str, model: str) -> list[str]:
    """The values of a model's ``type`` field: the tags that select it in a union."""
    field = _fields(v, model).get("type")
    if field is None or field.type[0] != "literal":
        return []
    return [t for t in field.type[1] if isinstance(t, str)]


@functools.cache
def _all_tags(v: str) -> frozenset[str]:
    return frozenset(t for model in shapes(v) for t in _tags_of(v, model))


def _models_in(tp: Any) -> list[str]:
    """The models a type names: itself, or the members of its unions, lists and mappings."""
    if tp[0] == "model":
        return [tp[1]]
    if tp[0] in ("list", "dict"):
        return [m for a in tp[1:] for m in _models_in(a)]
    if tp[0] == "union":
        return [m for a in tp[1] for m in _models_in(a)]
    return []


def _allowed_keys(v: str, cls: str, loc: tuple[str | int, ...]) -> list[str]:
    """The keys allowed in the mapping that holds the last element of ``loc``."""
    tp: Any = ("model", cls)
    for part in loc[:-1]:
        tp = _step(v, tp, part)
        if tp is None:
            return []
    models = _models_in(tp)
    if len(models) != 1:
        return []
    return [f.alias or n for n, f in _fields(v, models[0]).items()]


def _step(v: str, tp: Any, part: str | int) -> Any:
    """The type one step of an error's location below ``tp``: a field, an item, a union member."""
    if isinstance(part, str) and part.startswith("function-"):
        # pydantic names a union branch that is a validator-wrapped model after the validator
        # ("function-wrap[_split_extensions()]"); it stands for the single model member of the
        # union (KeySource in ``KeySource | str``).
        if tp[0] == "model":
            return tp
        members = _models_in(tp)
        return ("model", members[0]) if len(members) == 1 else None
    if tp[0] == "model":
        for name, f in _fields(v, tp[1]).items():
            if part in (name, f.alias):
                return f.type
        return None
    if tp[0] == "list" and isinstance(part, int):
        return tp[1]
    if tp[0] == "dict":
        return tp[2]
    if tp[0] == "union":
        for arg in tp[1]:
            if arg[0] == "model" and (arg[1] == part or part in _tags_of(v, arg[1])):
                return arg
        # Optional[X]: pydantic adds no segment; descend into the non-null member.
        members = [a for a in tp[1] if a != ("scalar", "None")]
        if len(members) == 1:
            return _step(v, members[0], part)
    return None
