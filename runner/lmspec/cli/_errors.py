"""How commands report the user's mistakes: the validator's findings, or one line — exit 1,
never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from ..manifests.findings import Report
from ..validator.core import ValidationFailed, skipped_note
from ..validator.report import render


def note_skipped(report: Report) -> None:
    """Say once, on stderr, what directory arguments passed over that a user could miss
    (nothing otherwise: see :func:`~lmspec.validator.core.skipped_note`)."""
    note = skipped_note(report.skipped)
    if note:
        click.echo(note, err=True)


@contextmanager
def reported(*user_errors: type[Exception]) -> Iterator[None]:
    """``with reported(RunError): ...`` — invalid manifests print their findings as ``lmspec
    validate`` does; the listed exceptions print ``lmspec: error: <message>``; both exit 1."""
    try:
        yield
    except ValidationFailed as exc:
        note_skipped(exc.report)
        sys.stdout.write(render(exc.report, "text"))
        sys.exit(1)
    except user_errors as exc:
        click.echo(f"lmspec: error: {exc}", err=True)
        sys.exit(1)
