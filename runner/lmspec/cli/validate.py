"""``lmspec validate``.

>>> lmspec validate examples/iris -o sarif > lmspec.sarif
"""

from __future__ import annotations

import contextlib
import gc
import os
import sys

import click

from ..validator.core import validate
from ..validator.parse import MAX_BYTES
from ..validator.report import FORMATS, render, write_github_summary
from ..validator.spread import default_workers
from ._errors import note_skipped


@click.command("validate")
@click.argument("paths", nargs=-1, required=True)
@click.option("-o", "--format", "fmt", type=click.Choice(sorted(FORMATS)), default="text",
              show_default=True,
              help="Output format. github also appends a summary to $GITHUB_STEP_SUMMARY when set.")
@click.option("--check-env", is_flag=True, help="Also check that data files exist and match their sha256.")
@click.option("--allow-outside", "allow_outside", multiple=True, type=click.Path(file_okay=False),
              help="With --check-env, also read files in this directory tree (by default only the "
                   "manifest's own directory tree is read). Repeatable.")
@click.option("--strict", is_flag=True, help="Treat warnings as errors (exit 1).")
@click.option("--allow-missing-refs", is_flag=True,
              help="Do not report references to manifests that are not among the inputs.")
@click.option("--max-bytes", type=click.IntRange(min=1), default=MAX_BYTES, show_default=True,
              help="Refuse files (and standard input) larger than this.")
def command(paths: tuple[str, ...], fmt: str, check_env: bool, allow_outside: tuple[str, ...], strict: bool,
            allow_missing_refs: bool, max_bytes: int) -> None:
    """Validate manifests: PATHS are files, directories (their .yaml and .yml files at any
    depth; .json files only when named, and never lmspec's own run directories), globs, or - for
    standard input. Exit status: 0 valid, 1 invalid, 2 unreadable input."""
    # Parsing allocates many small containers that all live until the report is written, so
    # the cyclic garbage collector finds nothing to free yet rescans them again and again
    # (about 40 % of the run on large inputs). The data has no reference cycles: reference
    # counting frees it all the same.
    # pydantic looks up its plugins (observability hooks) in the metadata of every installed
    # distribution when it builds the first schema: a tenth of a cold start in a large
    # environment, for hooks a one-shot validation has no use for. A value the user set wins.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    env_checks = None
    if check_env:  # imported only then: plain validation starts without the environment checks
        from ..preflight import default_checks

        env_checks = default_checks()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        # Many files are parsed on every core (forked: this command runs no other threads).
        report = validate(list(paths), max_bytes=max_bytes, env_checks=env_checks,
                          references=not allow_missing_refs, allow_outside=allow_outside,
                          workers=default_workers())
        note_skipped(report)
        note_checks()
        write_out(render(report, fmt, strict=strict))
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


def note_checks() -> None:
    """Say so when the schema checks ran on the standard's models rather than on the compiled
    checks (made for one pydantic-core release): the findings are the same, the start slower."""
    import sys as _sys

    light = _sys.modules.get("lmspec.manifests.light")
    if light is None:
        return
    if not light.usable():
        from pydantic_core import __version__

        from ..manifests import compiled

        click.echo(f"lmspec: note: validated with the standard's models, not the compiled checks (made for "
                   f"pydantic-core {compiled.PYDANTIC_CORE}, {__version__} installed): the same findings, a "
                   "slower start", err=True)
    elif light.FELL_BACK:
        click.echo(f"lmspec: note: validated {', '.join(sorted(light.FELL_BACK))} with its models, which have no "
                   "compiled checks: the same findings, a slower start", err=True)


def write_out(text: str) -> None:
    """The report on standard output; a closed, full or broken output is a clear error (exit 2),
    never a traceback. File names that are not UTF-8 are written back as the bytes they were."""
    stream = sys.stdout
    try:
        if stream is None:
            raise OSError("standard output is closed")
        buffer = getattr(stream, "buffer", None)
        if buffer is None:  # a text stream put in place by a caller (tests, notebooks)
            stream.write(text)
        else:
            stream.flush()
            buffer.write(text.encode(stream.encoding or "utf-8", "surrogateescape"))
        stream.flush()
    except (OSError, ValueError, UnicodeError) as exc:
        message = getattr(exc, "strerror", None) or str(exc)
        if sys.stderr is not None:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.write(f"lmspec: cannot write the report to standard output: {message}\n")
        # Python flushes stdout again at exit; point it at nothing so that fails quietly too.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 1)
        sys.exit(2)
