"""The published JSON Schemas and the spec's field reference, generated from the models of every
version in the registry (:mod:`lmspec.versions`).

    python -m lmspec.schemagen           # rewrite schemas/<version>/*.json and the spec's fields
    python -m lmspec.schemagen --check   # exit 1 and list the files that differ (run in CI)

The pydantic models are the single source of truth; the schemas (one per kind, plus a bundle that
dispatches on ``kind``) and the generated sections of ``spec/<version>/*.md`` are derived from
them and committed, so a reviewer sees every change to the standard as a diff. Functions taking
``version`` (``"v1beta1"``) default to the hub version.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel, Field, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

from . import versions
from .field_docs import attach_field_docs

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BUNDLE = "lmspec.schema.json"


def _version(version: str | None) -> versions.Version:
    return versions.get(version or versions.HUB)


def kinds(version: str | None = None) -> dict[str, type[BaseModel]]:
    """The document class of each kind of ``version``, with the fields' docstrings attached."""
    v = _version(version)
    models = v.models()
    attach_field_docs(models)  # schemas and docs carry the fields' docstrings as descriptions
    return models


def base_url(version: str | None = None) -> str:
    """``https://lmspec.io/schemas/v1beta1/`` for ``"v1beta1"``."""
    return f"https://lmspec.io/schemas/{_version(version).name}/"


BEGIN = "<!-- BEGIN GENERATED: {name} (python -m lmspec.schemagen; do not edit) -->"
END = "<!-- END GENERATED: {name} -->"

# Python's `re` lets `$` match before a final newline; ECMA-262 (the dialect JSON Schema
# patterns use) and pydantic do not. The guard makes every implementation reject "name\n".
_EOL_GUARD = "(?!\\n)$"


class _Generator(GenerateJsonSchema):
    """pydantic's generator, with defaults from factories shown and no per-property titles."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()  # type: ignore[call-arg]
        return schema.get("default", NoDefault)

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def filename(kind: str) -> str:
    """``filename("TrainingJob")`` → ``"trainingjob.schema.json"``."""
    return f"{kind.lower()}.schema.json"


def kind_schema(kind: str, version: str | None = None) -> dict[str, Any]:
    """The JSON Schema of one kind: ``kind_schema("Model")["$id"]`` ends in ``model.schema.json``."""
    cls = kinds(version)[kind]
    raw = cls.model_json_schema(by_alias=True, mode="validation", schema_generator=_Generator)
    head = {
        "$schema": DRAFT,
        "$id": base_url(version) + filename(kind),
        "title": f"{kind} ({_version(version).api_version})",
        "description": raw.get("description", f"A {kind} manifest."),
    }
    return _finish(head, raw)


def bundle_schema(version: str | None = None) -> dict[str, Any]:
    """One schema for every kind, selected by ``kind``; self-contained, for editors."""
    by_kind = kinds(version)
    members = tuple(by_kind[k] for k in ("Model", "Dataset", "TrainingJob", "InferenceService"))
    # Union[...] of a tuple built at run time: neither the | syntax nor a static type applies.
    union = Annotated[Union[members], Field(discriminator="kind")]  # type: ignore[valid-type]  # noqa: UP007
    raw = TypeAdapter(union).json_schema(by_alias=True, mode="validation", schema_generator=_Generator)
    v = _version(version)
    head = {
        "$schema": DRAFT,
        "$id": base_url(version) + BUNDLE,
        "title": f"lmspec manifest ({v.api_version})",
        "description": f"Any lmspec {v.name} manifest: {', '.join(by_kind)}, selected by kind.",
    }
    return _finish(head, raw)


def versions_bundle() -> dict[str, Any]:
    """One schema for every registered version and kind, selected by ``apiVersion`` and then by
    ``kind``: each version's bundle is embedded whole under its own ``$id`` (a 2020-12 schema
    resource), so the file is self-contained and a validator needs no network to resolve it."""
    published = [v for v in versions.all_versions() if v.schema_dir]
    names = [v.api_version for v in published]
    return {
        "$schema": DRAFT,
        "$id": "https://lmspec.io/schemas/" + BUNDLE,
        "title": "lmspec manifest (any version)",
        "description": f"Any lmspec manifest of {', '.join(names)}: selected by apiVersion, then by kind.",
        "type": "object",
        "required": ["apiVersion"],
        "properties": {"apiVersion": {"enum": names}},
        "allOf": [
            {"if": {"properties": {"apiVersion": {"const": name}}, "required": ["apiVersion"]},
             "then": {"$ref": base_url(name) + BUNDLE}}
            for name in names
        ],
        "$defs": {v.name: bundle_schema(v.api_version) for v in published},
    }


def _finish(head: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    body = {k: v for k, v in raw.items() if k not in ("title", "description")}
    out = {**head, **body}
    _repair(out)
    return out


# pydantic writes the bounds of a constrained type that has its own validator (our ``Int``)
# under its own names; JSON Schema only knows these.
_BOUND_NAMES = {"ge": "minimum", "gt": "exclusiveMinimum", "le": "maximum", "lt": "exclusiveMaximum"}
_SUBSCHEMA_MAPS = ("properties", "$defs", "patternProperties")
_SUBSCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
_SUBSCHEMAS = ("items", "additionalProperties", "propertyNames", "not", "if", "then", "else")


def _repair(schema: Any) -> None:
    """Fix, in place and at every depth, what pydantic's output gets wrong for a validator."""
    if not isinstance(schema, dict):
        return
    if schema.get("type") in ("integer", "number"):
        for ours, theirs in _BOUND_NAMES.items():
            if ours in schema:
                schema[theirs] = schema.pop(ours)
    pattern = schema.get("pattern")
    if isinstance(pattern, str) and pattern.endswith("$") and not pattern.endswith(_EOL_GUARD):
        schema["pattern"] = pattern[:-1] + _EOL_GUARD
    for key in _SUBSCHEMA_MAPS:
        for sub in schema.get(key, {}).values():
            _repair(sub)
    for key in _SUBSCHEMA_LISTS:
        for sub in schema.get(key, []):
            _repair(sub)
    for key in _SUBSCHEMAS:
        _repair(schema.get(key))


def schemas(version: str | None = None) -> dict[str, dict[str, Any]]:
    """Every published schema of ``version`` by file name (the kinds' and the bundle)."""
    out = {filename(kind): kind_schema(kind, version) for kind in kinds(version)}
    out[BUNDLE] = bundle_schema(version)
    return out


def dumps(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


# --- Walking a schema's fields ------------------------------------------------------------------

@dataclass
class FieldDoc:
    """One property of a kind's schema, at a path such as ``spec.sources[].path``.

    Path syntax: ``.`` between keys; ``[]`` after a list of objects; ``[type=a|b]`` after a
    value that is one of several objects told apart by ``type`` (a list's items or a single value).
    """

    path: str
    name: str
    schema: dict[str, Any]
    required: bool
    defs: dict[str, Any]

    @property
    def plain_path(self) -> str:
        """The path without list and variant markers: ``spec.sources.path``."""
        return re.sub(r"\[[^\]]*\]", "", self.path)

    def resolved(self) -> dict[str, Any]:
        return resolve(self.schema, self.defs)

    def children(self) -> list[tuple[str, list[FieldDoc]]]:
        """Child fields, grouped by variant suffix (``""``, ``"[]"`` or ``"[type=…]"``)."""
        return [(suffix, list(object_fields(obj, f"{self.path}{suffix}.", self.defs)))
                for suffix, obj in objects(self.schema, self.defs)]


def resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Follow a ``$ref`` (keeping the referring schema's own keywords, which take precedence)."""
    while "$ref" in schema:
        target = defs[schema["$ref"].rsplit("/", 1)[1]]
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def objects(schema: dict[str, Any], defs: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Object schemas a value may be, with the path suffix that selects each."""
    s = resolve(schema, defs)
    if s.get("type") == "array" and isinstance(s.get("items"), dict):
        return [(suffix or "[]", obj) for suffix, obj in objects(s["items"], defs)]
    if "oneOf" in s and "discriminator" in s:
        tag = s["discriminator"]["propertyName"]
        out = []
        for branch in s["oneOf"]:
            obj = resolve(branch, defs)
            values = tag_values(obj["properties"][tag])
            out.append((f"[{tag}={'|'.join(values)}]", obj))
        return out
    if "anyOf" in s:
        return [pair for member in s["anyOf"] for pair in objects(member, defs)]
    if s.get("type") == "object" and "properties" in s:
        return [("", s)]
    return []


def tag_values(schema: dict[str, Any]) -> list[str]:
    if "const" in schema:
        return [str(schema["const"])]
    return [str(v) for v in schema.get("enum", [])]


def object_fields(obj: dict[str, Any], prefix: str, defs: dict[str, Any]) -> Iterator[FieldDoc]:
    required = set(obj.get("required", []))
    for name, prop in obj.get("properties", {}).items():
        yield FieldDoc(prefix + name, name, prop, name in required, defs)


def walk(schema: dict[str, Any]) -> Iterator[FieldDoc]:
    """Every field of a kind's schema, depth first in schema order."""
    defs = schema.get("$defs", {})

    def visit(field: FieldDoc) -> Iterator[FieldDoc]:
        yield field
        for _, children in field.children():
            for child in children:
                yield from visit(child)

    for field in object_fields(schema, "", defs):
        yield from visit(field)


# --- Describing a field -------------------------------------------------------------------------

def _code(value: Any) -> str:
    return "`" + json.dumps(value, ensure_ascii=False) + "`"


def type_text(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    """A short human description of a schema's type: ``list of integer``, ``string or null``."""
    s = resolve(schema, defs)
    if "const" in s:
        return f"string, always {_code(s['const'])}" if isinstance(s["const"], str) else f"constant {_code(s['const'])}"
    if "enum" in s:
        kind = s.get("type", "value")
        return f"{kind}, one of " + ", ".join(_code(v) for v in s["enum"])
    if "oneOf" in s and "discriminator" in s:
        tag = s["discriminator"]["propertyName"]
        values = [v for branch in s["oneOf"] for v in tag_values(resolve(branch, defs)["properties"][tag])]
        return f"object, one of several selected by `{tag}`: " + ", ".join(_code(v) for v in values)
    if "anyOf" in s:
        # A constant among the alternatives reads as its value: `list of string, "all-linear" or null`.
        parts = [_code(r["const"]) if "const" in (r := resolve(m, defs)) else type_text(m, defs) for m in s["anyOf"]]
        return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " or " + parts[-1]
    kind = s.get("type")
    if kind == "array":
        return "list of " + type_text(s.get("items", {}), defs)
    if kind == "object":
        if "properties" in s:
            return "object"
        values = s.get("additionalProperties", True)
        value_text = "any value" if values is True or values == {} else type_text(values, defs)
        keys = s.get("propertyNames", {}).get("enum")
        key_text = "keys " + ", ".join(_code(k) for k in keys) if keys else "string keys"
        return f"map of {key_text} to {value_text}"
    if kind is None:
        return "any value"
    return str(kind)


INT64_LIMITS = {"minimum": (-(2**63),), "maximum": (2**63 - 1,)}
"""Bounds every integer field carries (implementations store integers in 64 bits); the
constraints leave them out."""

_BOUNDS = (
    ("minimum", "MUST be ≥ {}"), ("exclusiveMinimum", "MUST be > {}"),
    ("maximum", "MUST be ≤ {}"), ("exclusiveMaximum", "MUST be < {}"),
    ("minLength", "MUST have at least {} characters"), ("maxLength", "MUST have at most {} characters"),
    ("minItems", "MUST have at least {} items"), ("maxItems", "MUST have at most {} items"),
)


def display_pattern(pattern: str) -> str:
    return pattern.replace(_EOL_GUARD, "$")


def constraints(schema: dict[str, Any], defs: dict[str, Any], *, required: bool) -> list[str]:
    """RFC 2119 statements of a field's constraints, REQUIRED/OPTIONAL first."""
    out = ["REQUIRED" if required else "OPTIONAL"]
    _collect_constraints(resolve(schema, defs), defs, "", out)
    return out


def _collect_constraints(s: dict[str, Any], defs: dict[str, Any], where: str, out: list[str]) -> None:
    for key, text in _BOUNDS:
        if key in s:
            if s[key] in INT64_LIMITS.get(key, ()):
                continue  # the range of a 64-bit integer, which "integer" says: no bound to read
            if key in ("minLength", "minItems") and s[key] == 1:
                out.append(where + "MUST NOT be empty")
            else:
                out.append(where + text.format(_number(s[key])))
    if "pattern" in s:
        out.append(where + f"MUST match `{display_pattern(s['pattern'])}`")
    if "anyOf" in s:
        for member in s["anyOf"]:
            m = resolve(member, defs)
            if m.get("type") != "object":
                _collect_constraints(m, defs, where, out)
    if s.get("type") == "array" and isinstance(s.get("items"), dict):
        items = resolve(s["items"], defs)
        if items.get("type") != "object" and "oneOf" not in items:
            _collect_constraints(items, defs, where + "each item ", out)
    if s.get("type") == "object" and isinstance(s.get("additionalProperties"), dict):
        _collect_constraints(resolve(s["additionalProperties"], defs), defs, where + "each value ", out)


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def description(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    """The field's description as one Markdown paragraph (``x`` written as `x`)."""
    text = schema.get("description") or resolve(schema, defs).get("description", "")
    return " ".join(str(text).replace("``", "`").split())


def default_text(schema: dict[str, Any], *, required: bool) -> str:
    if "default" in schema:
        return _code(schema["default"])
    return "none: the field is required" if required else "none"


def example_text(schema: dict[str, Any]) -> str:
    return ", ".join(_code(e) for e in schema.get("examples", [])) or "none"


def field_block(field: FieldDoc, level: int = 3) -> str:
    """The Markdown block of one field, in the style of the CloudEvents attribute tables."""
    s, defs = field.schema, field.defs
    lines = [
        f"{'#' * level} `{field.path}`",
        "",
        f"- Type: {type_text(s, defs)}",
        f"- Description: {description(s, defs)}",
        f"- Default: {default_text(s, required=field.required)}",
        f"- Constraints: {'; '.join(constraints(s, defs, required=field.required))}",
        f"- Example: {example_text(s)}",
    ]
    return "\n".join(lines) + "\n"


def fields_markdown(kind: str, version: str | None = None) -> str:
    """The generated field reference of one kind's chapter."""
    schema = kind_schema(kind, version)
    blocks = [field_block(f) for f in walk(schema)]
    return "\n".join(blocks)


def rules_markdown() -> str:
    """The generated table of every rule, from the registry."""
    from .validator.registry import RULES

    rows = ["| Rule | Severity | Layer | Summary |", "|---|---|---|---|"]
    for rule in RULES.values():
        rows.append(f"| [`{rule.id}`](#{_anchor(rule.id)}) | {rule.severity} | {rule.layer} | {rule.summary} |")
    return "\n".join(rows) + "\n"


def _anchor(rule_id: str) -> str:
    # GitHub's heading anchors: lowercase, punctuation other than '-' dropped.
    return re.sub(r"[^a-z0-9 _-]", "", rule_id.lower()).replace(" ", "-")


def generated_sections(version: str | None = None) -> dict[str, dict[str, str]]:
    """Spec file (relative to the spec dir) → generated section name → content. The rules'
    table is the hub's: the validator's rules are written against it."""
    out = {f"{kind.lower()}.md": {"fields": fields_markdown(kind, version)} for kind in kinds(version)}
    if _version(version).hub:
        out["rules.md"] = {"rules": rules_markdown()}
    return out


def fill_sections(text: str, sections: dict[str, str], file: str) -> str:
    """Replace the content between each section's markers; raises ValueError if markers are missing."""
    for name, content in sections.items():
        begin, end = BEGIN.format(name=name), END.format(name=name)
        start = text.find(begin)
        stop = text.find(end)
        if start < 0 or stop < start:
            raise ValueError(f"{file}: markers for the generated section {name!r} are missing")
        text = text[: start + len(begin)] + "\n\n" + content + "\n" + text[stop:]
    return text


def expected_files(root: Path, *, compiled: bool = True) -> dict[Path, str]:
    """Every generated file's path and expected content. Without ``compiled``, the validator's
    compiled checks are left out when they were made for another pydantic-core release."""
    out: dict[Path, str] = {}
    for version in versions.all_versions():
        if not version.schema_dir:
            continue
        out.update({root / version.schema_dir / name: dumps(schema)
                    for name, schema in schemas(version.api_version).items()})
        for name, sections in generated_sections(version.api_version).items():
            path = root / version.spec_dir / name
            current = path.read_text(encoding="utf-8") if path.exists() else ""
            out[path] = fill_sections(current, sections, str(path))
    out[root / "schemas" / BUNDLE] = dumps(versions_bundle())
    from . import checksgen  # the compiled checks of every version lmspec ships

    if compiled or checksgen.for_this_pydantic(root / checksgen.PATH):
        out[root / checksgen.PATH] = checksgen.source()
    return out


def drifted(root: Path) -> list[Path]:
    """Generated files whose committed content differs from a fresh generation."""
    return [path for path, text in expected_files(root, compiled=False).items()
            if not path.exists() or path.read_text(encoding="utf-8") != text]


def _default_root() -> Path:
    # An editable install sits in <repo>/runner/lmspec; fall back to the working directory.
    repo = Path(__file__).resolve().parents[2]
    return repo if (repo / "schemas").is_dir() else Path.cwd()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lmspec.schemagen", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a generated file is out of date")
    parser.add_argument("--root", type=Path, default=None, help="repository root (default: detected)")
    args = parser.parse_args(argv)
    root: Path = args.root or _default_root()
    try:
        files = expected_files(root, compiled=not args.check)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = [p for p, text in files.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    if args.check:
        from . import checksgen

        if root / checksgen.PATH not in files:
            print(f"not compared: {checksgen.PATH} was compiled for another pydantic-core release; the "
                  "validator uses the models until `python -m lmspec.schemagen` compiles it again", file=sys.stderr)
        for path in stale:
            print(f"out of date: {path.relative_to(root)}", file=sys.stderr)
        if stale:
            print("run: python -m lmspec.schemagen", file=sys.stderr)
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(files[path], encoding="utf-8")
        print(f"wrote {path.relative_to(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
