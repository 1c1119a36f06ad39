"""``lmspec validate``.

>>> lmspec validate examples/iris -o sarif > lmspec.sarif
"""

from __future__ import annotations

import gc
import os
import sys

import click

from ..validator.core import read, validate_documents
from ..validator.parse import MAX_BYTES
from ..validator.report import FORMATS, render, write_github_summary


@click.command("validate")
@click.argument("paths", nargs=-1, required=True)
@click.option("-o", "--format", "fmt", type=click.Choice(sorted(FORMATS)), default="text",
              show_default=True,
              help="Output format. github also appends a summary to $GITHUB_STEP_SUMMARY when set.")
@click.option("--check-env", is_flag=True, help="Also check that data files exist and match their sha256.")
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1).")
@click.option("--allow-missing-refs", is_flag=True,
              help="Do not report references to manifests that are not among the inputs.")
@click.option("--max-bytes", type=click.IntRange(min=1), default=MAX_BYTES, show_default=True,
              help="Refuse files (and standard input) larger than this.")
def command(paths: tuple[str, ...], fmt: str, check_env: bool, strict: bool, allow_missing_refs: bool,
            max_bytes: int) -> None:
    """Validate manifests: PATHS are files, directories (searched for .yaml, .yml and .json),
    globs, or - for standard input. Exit status: 0 valid, 1 invalid, 2 unreadable input."""
    # Parsing allocates many small containers that all live until the report is written, so
    # the cyclic garbage collector finds nothing to free yet rescans them again and again
    # (about 40 % of the run on large inputs). The data has no reference cycles: reference
    # counting frees it all the same.
    # pydantic looks up its plugins (observability hooks) in the metadata of every installed
    # distribution when it builds the first schema: a tenth of a cold start in a large
    # environment, for hooks a one-shot validation has no use for. A value the user set wins.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        docs, report = read(list(paths), max_bytes=max_bytes)
        validate_documents(docs, report, check_env=check_env, references=not allow_missing_refs)
        sys.stdout.write(render(report, fmt, strict=strict))
        if fmt == "github":
            try:
                write_github_summary(report, strict=strict)
            except OSError as exc:  # the verdict matters more than the summary: warn and go on
                click.echo(f"lmspec: cannot write $GITHUB_STEP_SUMMARY: {exc}", err=True)
        code = report.exit_code(strict=strict)
    finally:
        if gc_was_enabled:  # for callers that run the command in-process
            # Re-enabling alone would start a full collection over everything allocated so
            # far (a fifth of the run); frozen objects are skipped by the collector but still
            # freed by reference counting.
            gc.freeze()
            gc.enable()
    sys.exit(code)
