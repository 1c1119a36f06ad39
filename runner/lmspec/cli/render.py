"""``lmspec render``: manifests with every default filled in.

    lmspec render examples/iris/train.yaml
    lmspec render examples/iris --format json

The output is what a runner acts on: the schema's defaults made explicit, keys in schema order,
``x-`` extensions kept. Invalid input is reported as ``lmspec validate`` reports it.
"""

from __future__ import annotations

import json
import sys

import click

from ..validator.core import read, to_yaml_data, typed, validate_documents
from ..validator.emit import to_yaml
from ..validator.report import render as render_report
from ._errors import note_skipped


@click.command("render")
@click.argument("paths", nargs=-1, required=True)
@click.option("-o", "--format", "fmt", type=click.Choice(["yaml", "json"]), default="yaml",
              show_default=True, help="Output format.")
@click.option("--require-refs", is_flag=True,
              help="Also fail when a referenced manifest is not among the inputs.")
def command(paths: tuple[str, ...], fmt: str, require_refs: bool) -> None:
    """Print the manifests in PATHS (files, directories, globs, - for stdin) with every default
    filled in. Invalid input is reported like `lmspec validate` and exits 1 (2 if unreadable);
    a reference to a manifest that is not among the inputs is not an error unless --require-refs."""
    docs, report = read(list(paths))
    # Rendering one file of a project is the common case, so by default missing references do
    # not block it; every other rule (cross-manifest ones included, when both are given) applies.
    result = validate_documents(docs, report, references=require_refs)
    note_skipped(report)
    if not report.ok or report.parse_failed:
        sys.stdout.write(render_report(report, "text"))
        sys.exit(report.exit_code())
    for f in report.warnings:
        click.echo(f"{f.file}:{f.line}:{f.column}: warning[{f.rule}] {f.message}", err=True)
    # Each manifest in its own apiVersion, as written, with that version's defaults.
    rendered = [to_yaml_data(m.obj, api_version=m.api_version) for m in typed(result).manifests]
    if fmt == "json":
        # One JSON value per manifest, one after another (jq reads such a stream).
        sys.stdout.write("".join(json.dumps(d, indent=2, ensure_ascii=False) + "\n" for d in rendered))
    else:
        sys.stdout.write("---\n".join(to_yaml(d) for d in rendered))
