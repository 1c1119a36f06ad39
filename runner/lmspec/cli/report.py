"""``lmspec report``."""

from __future__ import annotations

from pathlib import Path

import click

from ._errors import reported


@click.command("report")
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=Path("report.html"),
              show_default=True, help="The HTML file to write.")
def command(run_dirs: tuple[Path, ...], output: Path) -> None:
    """One self-contained HTML report (no network, images inline) of a run directory written by
    `lmspec run`: learning curves with checkpoints, resume and early stop marked, test metrics,
    a confusion matrix and per-class precision/recall (classifiers), predicted vs true and
    residuals (regression), sample generations (language models; for chat data, held-out
    questions with the model's answers and the references), the lock and the rendered
    manifests. Several run directories give a comparison: curves overlaid, final metrics side
    by side, and every manifest field that differs."""
    from ..model.export import ExportError

    try:
        import matplotlib  # noqa: F401 - checked here, used lazily by the figures
    except ImportError:
        raise click.ClickException("lmspec report needs matplotlib: pip install 'lmspec[report]'") from None
    from ..report import ReportError, build_report

    with reported(ReportError, ExportError):
        build_report(list(run_dirs), output)
    click.echo(f"lmspec report: wrote {output}")
