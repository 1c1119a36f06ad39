"""``lmspec schema``: print or write the published JSON Schemas.

    lmspec schema TrainingJob              # one kind's schema
    lmspec schema                          # the bundle that accepts every kind
    lmspec schema --output schemas/v1beta1
    lmspec schema TrainingJob --api-version v1alpha1   # a version other than the newest
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import schemagen, versions
from ..standard import KINDS


def kind_name(text: str) -> str:
    """The kind spelled as ``text`` (any case), or a UsageError naming the kinds."""
    for kind in KINDS:
        if kind.lower() == text.lower():
            return kind
    raise click.UsageError(f"unknown kind {text!r}; kinds: {', '.join(KINDS)}")


def newest() -> str:
    """The newest version of the standard: the last registered."""
    return versions.names()[-1]


def api_version(text: str | None) -> str:
    """The version ``--api-version`` names (``v1beta1`` or ``lmspec.io/v1beta1``; the newest when
    not given), or a UsageError with a did-you-mean."""
    if text is None:
        return newest()
    found = versions.find(text)
    if found is None:
        raise click.UsageError(versions.unknown_message(text))
    return found.api_version


API_VERSION_OPTION = click.option(
    "--api-version", "version", metavar="VERSION",
    help="The version of the standard, e.g. v1alpha1 (default: the newest).")


@click.command("schema")
@click.argument("kind", required=False)
@click.option("--output", "output", type=click.Path(file_okay=False, path_type=Path),
              help="Write every schema file into this directory instead of printing.")
@API_VERSION_OPTION
def command(kind: str | None, output: Path | None, version: str | None) -> None:
    """Print the JSON Schema of KIND (Model, Dataset, TrainingJob, InferenceService), or with no
    KIND the bundle schema that accepts any manifest. With --output, write all schema files."""
    version = api_version(version)
    if output is not None:
        if kind is not None:
            raise click.UsageError("--output writes every schema; do not name a KIND")
        output.mkdir(parents=True, exist_ok=True)
        for name, schema in schemagen.schemas(version).items():
            (output / name).write_text(schemagen.dumps(schema), encoding="utf-8")
            click.echo(f"wrote {output / name}")
        return
    schema = schemagen.kind_schema(kind_name(kind), version) if kind else schemagen.bundle_schema(version)
    sys.stdout.write(schemagen.dumps(schema))
