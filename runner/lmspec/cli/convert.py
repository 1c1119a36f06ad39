"""``lmspec convert``: rewrite manifests to another API version.

    lmspec convert examples/iris --to v1beta1 -o converted/
    lmspec convert model.yaml --to v1alpha1           # to standard output

Comments, key order and ``x-`` extensions stay; a document already of the target version is left
as it is. Nothing is written when a document is invalid, of an unknown version, or would lose
information (``--force`` converts those losses anyway and lists them).
"""

from __future__ import annotations

import sys

import click

from ..convert import ConversionRefused, UnknownVersion, convert_files


@click.command("convert")
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True))
@click.option("--to", "to", required=True, metavar="VERSION", help="Target version, e.g. v1beta1.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Write each converted file to this directory under its own name (default: print).")
@click.option("--force", is_flag=True, help="Convert even where the target version loses a value.")
def command(paths: tuple[str, ...], to: str, out_dir: str | None, force: bool) -> None:
    """Convert the manifests in PATHS (files or directories) to VERSION through the hub version.
    Exits 1, writing nothing, when a document is invalid, of an unknown version, or would lose
    information without --force; 2 for an unknown --to."""
    try:
        results = convert_files(paths, to, out_dir=out_dir, force=force)
    except UnknownVersion as exc:
        click.echo(f"lmspec: error: {exc}", err=True)
        sys.exit(2)
    except ConversionRefused as exc:
        for problem in exc.problems:
            click.echo(f"{problem}", err=True)
        click.echo("lmspec: error: nothing converted", err=True)
        sys.exit(1)
    for result in results:
        for loss in result.losses:
            click.echo(f"{loss} (dropped: --force)", err=True)
    if out_dir is not None:
        for result in results:
            click.echo(f"{'converted' if result.changed else 'unchanged'}: {result.path}", err=True)
        return
    sys.stdout.write("---\n".join(r.text if r.text.endswith("\n") else r.text + "\n" for r in results))
