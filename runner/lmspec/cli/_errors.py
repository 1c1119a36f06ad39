"""How commands report the user's mistakes: the validator's findings, or one line — exit 1,
never a traceback."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click

from ..validator.core import ValidationFailed
from ..validator.report import render


@contextmanager
def reported(*user_errors: type[Exception]) -> Iterator[None]:
    """``with reported(RunError): ...`` — invalid manifests print their findings as ``lmspec
    validate`` does; the listed exceptions print ``lmspec: error: <message>``; both exit 1."""
    try:
        yield
    except ValidationFailed as exc:
        sys.stdout.write(render(exc.report, "text"))
        sys.exit(1)
    except user_errors as exc:
        click.echo(f"lmspec: error: {exc}", err=True)
        sys.exit(1)
