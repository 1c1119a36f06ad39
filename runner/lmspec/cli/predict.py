"""``lmspec predict``."""

from __future__ import annotations

from pathlib import Path

import click

from ._errors import reported


@click.command("predict")
@click.argument("paths", nargs=-1, required=True)
@click.option("--input", "input_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Rows to predict: a .csv, .jsonl or .parquet file with the Dataset's feature columns "
                   "(chat data: .jsonl or .parquet records in the Dataset's chat format).")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the predictions (.csv, .jsonl or .parquet) [default: jsonl on stdout].")
@click.option("--job", "job_name", help="TrainingJob whose export to use, when the inputs define several.")
@click.option("--service", help="InferenceService whose model to use, when the inputs define several.")
@click.option("--chunk-rows", type=click.IntRange(1), default=4096, show_default=True,
              help="Rows read and predicted at a time.")
@click.option("--max-tokens", type=click.IntRange(1), default=64, show_default=True,
              help="Tokens generated per row (language models; greedy decoding).")
def command(paths: tuple[str, ...], input_path: Path, output: Path | None, job_name: str | None,
            service: str | None, chunk_rows: int, max_tokens: int) -> None:
    """Batch inference of an exported model over a file, with the Dataset's preprocessing.

    PATHS are the manifests: a TrainingJob (its export, <output.dir>/export, is used) or an
    InferenceService. Classifiers give `prediction` and `probability_<class>` columns,
    regressors `prediction`, language models `generated`. A language model trained on chat data
    takes records in its Dataset's chat format, rendered by the export's chat template as `lmspec
    serve` renders chat completions (a trailing assistant turn, the reference, is left out), and
    writes `prompt` (the turn answered), `reference` (that assistant turn, or null) and `generated`. The
    file is read in chunks, so it may be larger than memory; a progress bar shows on a terminal."""
    from ..data.errors import DataError
    from ..model.export import ExportError
    from ..predict import PredictError, predict_file, resolve

    with reported(PredictError, DataError, ExportError):
        target = resolve(paths, job=job_name, service=service)
        chat = target.dataset.obj.spec.chat if target.dataset is not None else None
        rows = predict_file(target.export, input_path, output, chunk_rows=chunk_rows, max_tokens=max_tokens,
                            chat=chat)
        if output is not None:
            click.echo(f"lmspec predict: {rows} rows from {input_path} → {output}", err=True)
