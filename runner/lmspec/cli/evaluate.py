"""``lmspec evaluate``."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ._errors import reported


@click.command("evaluate")
@click.argument("paths", nargs=-1, required=True)
@click.option("--input", "input_path", type=click.Path(dir_okay=False, path_type=Path),
              help="A new .csv, .jsonl or .parquet file with the Dataset's columns, target included.")
@click.option("--split", type=click.Choice(["train", "validation", "test"]),
              help="A split of the Dataset instead [default: test].")
@click.option("--job", "job_name", help="TrainingJob whose export to evaluate, when the inputs define several.")
@click.option("--service", help="InferenceService whose model to evaluate, when the inputs define several.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, allow_dash=True),
              help="Also write the result as JSON to this file ('-' for stdout only).")
def command(paths: tuple[str, ...], input_path: Path | None, split: str | None, job_name: str | None,
            service: str | None, json_path: str | None) -> None:
    """The TrainingJob's declared test metrics (evaluation.metrics) of its exported model, on a
    new file or a split of its Dataset, through the same preprocessing and metric code as
    training."""
    from ..data.errors import DataError
    from ..evaluate import evaluate
    from ..model.export import ExportError
    from ..predict import PredictError, resolve

    if input_path is not None and split is not None:
        raise click.UsageError("give --input or --split, not both")
    with reported(PredictError, DataError, ExportError):
        target = resolve(paths, job=job_name, service=service)
        result = evaluate(target, input_path=input_path, split=split)
    text = json.dumps(result.as_json(), indent=2)
    if json_path == "-":
        click.echo(text)
        return
    shown = ", ".join(f"{k} {v:.6g}" for k, v in result.metrics.items())
    click.echo(f"lmspec evaluate: {result.source} ({result.rows} rows): {shown}")
    if json_path is not None:
        with reported(PredictError):
            try:
                Path(json_path).write_text(text + "\n")
            except OSError as exc:
                raise PredictError(f"cannot write {json_path}: {exc.strerror or exc}") from None
