"""``lmspec explain``: the definition of a field, like ``kubectl explain``.

    lmspec explain TrainingJob.spec.zero.offloadOptimizer
    lmspec explain Model.spec.architecture[type=mlp].hiddenSizes
    lmspec explain Dataset.spec.preprocessing.column      # every step that has a column
    lmspec explain InferenceService.spec.server --api-version v1alpha1
"""

from __future__ import annotations

import difflib
import re
import sys

import click
from pydantic.alias_generators import to_camel

from .. import schemagen, versions
from ..schemagen import FieldDoc
from .schema import API_VERSION_OPTION, api_version, kind_name

_FIRST_SENTENCE = re.compile(r"(?<!e\.g)(?<!i\.e)\. ")
_SEGMENT = re.compile(r"^([^\[\]]+)((?:\[[^\]]*\])*)$")


def _split(path: str) -> list[tuple[str, str]]:
    """``a.b[type=x].c`` → ``[("a", ""), ("b", "[type=x]"), ("c", "")]``."""
    out = []
    for segment in path.split("."):
        m = _SEGMENT.match(segment)
        if m is None:
            raise click.UsageError(f"cannot read the path segment {segment!r}")
        out.append((m.group(1), m.group(2)))
    return out


def _qualifier_matches(asked: str, actual: str) -> bool:
    if not asked or asked == "[]":
        return True
    want = asked.strip("[]").split("=", 1)[-1]
    have = actual.strip("[]").split("=", 1)[-1].split("|")
    return want in have


def _matches(field: FieldDoc, query: list[tuple[str, str]]) -> bool:
    parts = _split(field.path)
    if len(parts) != len(query):
        return False
    return all(name == q_name and _qualifier_matches(q_qual, qual)
               for (name, qual), (q_name, q_qual) in zip(parts, query, strict=True))


def find(kind: str, path: str, version: str | None = None) -> list[FieldDoc]:
    """Fields of ``kind`` of ``version`` (the hub's when None) at ``path`` (camelCase; snake_case
    keys are accepted too)."""
    query = [(name if name.startswith("x-") else to_camel(name), qual) for name, qual in _split(path)]
    return [f for f in schemagen.walk(schemagen.kind_schema(kind, version)) if _matches(f, query)]


def _describe(field: FieldDoc) -> list[str]:
    s, defs = field.schema, field.defs
    lines = [
        f"FIELD:       {field.path}",
        f"TYPE:        {schemagen.type_text(s, defs)}",
        "",
        "DESCRIPTION:",
        f"  {schemagen.description(s, defs)}",
        "",
        f"DEFAULT:     {schemagen.default_text(s, required=field.required)}",
        f"CONSTRAINTS: {'; '.join(schemagen.constraints(s, defs, required=field.required))}",
        f"EXAMPLE:     {schemagen.example_text(s)}",
    ]
    for suffix, children in field.children():
        lines += ["", f"FIELDS{' ' + suffix if suffix not in ('', '[]') else ''}:"]
        lines += _child_lines(children)
    return lines


def _child_lines(children: list[FieldDoc]) -> list[str]:
    width = max((len(c.name) for c in children), default=0)
    out = []
    for c in children:
        mark = " (required)" if c.required else ""
        first = _FIRST_SENTENCE.split(schemagen.description(c.schema, c.defs))[0].rstrip(".")
        out.append(f"  {c.name.ljust(width)}  {first}{mark}")
    return out


@click.command("explain")
@click.argument("target")
@API_VERSION_OPTION
def command(target: str, version: str | None) -> None:
    """Explain a kind or one of its fields: KIND[.field.path], e.g.
    TrainingJob.spec.zero.offloadOptimizer. Paths are camelCase, as in manifests; write
    [type=NAME] to pick one variant, e.g. Model.spec.architecture[type=mlp].hiddenSizes."""
    API_VERSION = api_version(version)
    head, _, path = target.partition(".")
    kind = kind_name(head)
    schema = schemagen.kind_schema(kind, API_VERSION)
    if not path:
        lines = [f"KIND:        {kind}", f"VERSION:     {API_VERSION}", "", "DESCRIPTION:",
                 f"  {schemagen.description(schema, {})}", "", "FIELDS:"]
        lines += _child_lines(list(schemagen.object_fields(schema, "", schema.get("$defs", {}))))
        click.echo("\n".join(lines))
        return
    found = find(kind, path, API_VERSION)
    if not found:
        known = sorted({f.plain_path for f in schemagen.walk(schema)})
        plain = re.sub(r"\[[^\]]*\]", "", path)
        close = difflib.get_close_matches(plain, known, n=3, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        click.echo(f"error: {kind} has no field {path!r}{hint}", err=True)
        flag = "" if versions.names()[-1] == API_VERSION else f" --api-version {API_VERSION.rsplit('/', 1)[-1]}"
        click.echo(f"see the fields with: lmspec explain {kind}{flag}", err=True)
        sys.exit(2)
    blocks = ["\n".join([f"KIND:        {kind}", f"VERSION:     {API_VERSION}", "", *_describe(f)])
              for f in found]
    click.echo("\n\n---\n\n".join(blocks))
