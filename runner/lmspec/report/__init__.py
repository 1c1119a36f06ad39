"""``lmspec report``: one self-contained HTML page about a run, or comparing several.

>>> from lmspec.report import build_report
>>> build_report([Path("runs/iris-train")], Path("report.html"))

Needs matplotlib (``pip install 'lmspec[report]'``); test-set plots and sample generations also
load the exported model (the ``run`` extra).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .runs import ReportError, Run, read_run

__all__ = ["ReportError", "Run", "build_report", "read_run", "render"]


def render(run_dirs: Sequence[Path]) -> str:
    """The HTML of one run's report, or of a comparison of several."""
    import matplotlib

    from .html import compare, single

    if not run_dirs:
        raise ReportError("give at least one run directory")
    runs = [read_run(Path(p)) for p in run_dirs]
    # Labels and titles come from the run directories: text, never mathtext ("$x$") to parse.
    with matplotlib.rc_context({"text.parse_math": False}):
        return single(runs[0]) if len(runs) == 1 else compare(runs)


def build_report(run_dirs: Sequence[Path], output: Path) -> Path:
    """Write the report to ``output`` and return its path. The page appears whole or not at
    all (a temporary file renamed at the end); a link's target is replaced, not the link."""
    from ..files import atomic_write_text

    text = render(run_dirs)
    target = output.resolve()
    if target.exists() and not target.is_file():
        raise ReportError(f"cannot write {output}: it exists and is not a regular file")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(target, text)
    except OSError as exc:
        raise ReportError(f"cannot write {output}: {exc.strerror or exc}") from None
    return output
