"""``lmspec validate``."""

from __future__ import annotations

import sys

import click

from ..output import FORMATS, render
from ..validate import read, validate_documents


@click.command("validate")
@click.argument("paths", nargs=-1, required=True)
@click.option("-o", "--format", "fmt", type=click.Choice(sorted(FORMATS)), default="text",
              show_default=True, help="Output format.")
@click.option("--check-env", is_flag=True, help="Also check that data files exist and match their sha256.")
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1).")
@click.option("--allow-missing-refs", is_flag=True,
              help="Do not report references to manifests that are not among the inputs.")
def command(paths: tuple[str, ...], fmt: str, check_env: bool, strict: bool, allow_missing_refs: bool) -> None:
    """Validate manifests: PATHS are files, directories (searched for .yaml, .yml and .json),
    globs, or - for standard input. Exit status: 0 valid, 1 invalid, 2 unreadable input."""
    docs, report = read(list(paths))
    validate_documents(docs, report, check_env=check_env, references=not allow_missing_refs)
    sys.stdout.write(render(report, fmt, strict=strict))
    sys.exit(report.exit_code(strict=strict))
