"""``lmspec serve``."""

from __future__ import annotations

import click


@click.command("serve")
@click.argument("paths", nargs=-1, required=True)
@click.option("--service", help="Name of the InferenceService to serve (needed when several are given).")
@click.option("--host", help="Address to bind (default: the manifest's server.host, else 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535),
              help="TCP port (default: the manifest's server.port); 0 picks a free one.")
@click.option("--export", "export", type=click.Path(file_okay=False),
              help="Serve the model exported in this directory (a run directory, e.g. one trained "
                   "with `lmspec run --output`, or its export/) instead of the one spec.model names.")
@click.option("--access-log", is_flag=True, help="Log every request.")
def command(paths: tuple[str, ...], service: str | None, host: str | None, port: int | None,
            export: str | None, access_log: bool) -> None:
    """Serve the model of an InferenceService: PATHS are manifest files or directories (the
    service, and the TrainingJob it names). Prints the URL it listens on; SIGTERM drains
    in-flight requests, then exits 0."""
    from ..serve.server import main

    main(list(paths), service=service, host=host, port=port, access_log=access_log, export=export)
