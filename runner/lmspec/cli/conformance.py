"""``lmspec conformance run``: the conformance suite against lmspec or another implementation."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import conformance as _pkg
from ..conformance.harness import FORMATS, failed, run_suite
from ..conformance.protocol import Subprocess
from ..conformance.suite import TIERS, SuiteError, load_suite


def default_suite() -> Path:
    """``conformance/v1alpha1`` of the source checkout, or of the current directory."""
    here = Path(_pkg.__file__).resolve().parents[3] / "conformance" / "v1alpha1"
    return here if here.is_dir() else Path("conformance/v1alpha1")


@click.group("conformance")
def command() -> None:
    """The lmspec conformance suite."""


@command.command("run")
@click.option("--suite", "suite_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Suite directory (holding schema/, semantic/, …). Default: conformance/v1alpha1.")
@click.option("--implementation", "implementation", metavar="CMD",
              help="Command of an implementation speaking the conformance protocol on stdin/stdout. "
                   "Default: lmspec's own validator, in-process.")
@click.option("--tier", "tiers", multiple=True, type=click.Choice(TIERS),
              help="Run only this tier (repeatable).")
@click.option("--format", "fmt", type=click.Choice(sorted(FORMATS)), default="text", show_default=True)
@click.option("--timeout", type=float, default=10.0, show_default=True,
              help="Seconds an implementation may take per case.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report to this file instead of standard output.")
def run(suite_dir: Path | None, implementation: str | None, tiers: tuple[str, ...], fmt: str,
        timeout: float, output: Path | None) -> None:
    """Run the suite. Exit status: 0 every case passed (or was skipped), 1 a case failed or
    errored, 2 the suite or the options are unusable."""
    try:
        cases = load_suite(suite_dir or default_suite(), list(tiers) or None)
    except SuiteError as exc:
        raise click.UsageError(str(exc)) from None
    if implementation:
        impl = Subprocess(implementation, timeout=timeout)
        outcomes, started = run_suite(cases, impl)
    else:
        from ..conformance.builtin import Builtin

        outcomes, started = run_suite(cases, Builtin())
    report = FORMATS[fmt](outcomes, started)
    if output is not None:
        output.write_text(report, encoding="utf-8")
    else:
        sys.stdout.write(report)
    sys.exit(1 if failed(outcomes) else 0)
