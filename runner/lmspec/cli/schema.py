"""``lmspec schema``: print or write the published JSON Schemas.

    lmspec schema TrainingJob              # one kind's schema
    lmspec schema                          # the bundle that accepts every kind
    lmspec schema --output schemas/v1alpha1
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import schemagen
from ..standard import KINDS


def kind_name(text: str) -> str:
    """The kind spelled as ``text`` (any case), or a UsageError naming the kinds."""
    for kind in KINDS:
        if kind.lower() == text.lower():
            return kind
    raise click.UsageError(f"unknown kind {text!r}; kinds: {', '.join(KINDS)}")


@click.command("schema")
@click.argument("kind", required=False)
@click.option("--output", "output", type=click.Path(file_okay=False, path_type=Path),
              help="Write every schema file into this directory instead of printing.")
def command(kind: str | None, output: Path | None) -> None:
    """Print the JSON Schema of KIND (Model, Dataset, TrainingJob, InferenceService), or with no
    KIND the bundle schema that accepts any manifest. With --output, write all schema files."""
    if output is not None:
        if kind is not None:
            raise click.UsageError("--output writes every schema; do not name a KIND")
        output.mkdir(parents=True, exist_ok=True)
        for name, schema in schemagen.schemas().items():
            (output / name).write_text(schemagen.dumps(schema), encoding="utf-8")
            click.echo(f"wrote {output / name}")
        return
    schema = schemagen.kind_schema(kind_name(kind)) if kind else schemagen.bundle_schema()
    sys.stdout.write(schemagen.dumps(schema))
