"""``lmspec conformance run``: the conformance suite against lmspec or another implementation.

    lmspec conformance run                          # every registered version, each reported apart
    lmspec conformance run --api-version v1beta1    # one version's suite
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .. import conformance as _pkg
from ..conformance.harness import FORMATS, failed, run_suite
from ..conformance.protocol import Subprocess
from ..conformance.suite import TIERS, Case, SuiteError, is_suite, load_suite, version_suites


def default_root() -> Path:
    """``conformance/`` of the source checkout, or of the current directory."""
    here = Path(_pkg.__file__).resolve().parents[3] / "conformance"
    return here if here.is_dir() else Path("conformance")


def select(suite_dir: Path | None, api_versions: tuple[str, ...], tiers: list[str] | None) -> list[Case]:
    """The cases to run: ``suite_dir`` is one version's suite (holding tier directories) or a
    directory of suites per version (``conformance/``); of the latter, the suites of
    ``api_versions`` (default: every registered version that has one)."""
    root = suite_dir or default_root()
    if suite_dir is not None and is_suite(suite_dir):
        if api_versions:
            raise SuiteError(f"{suite_dir} is one version's suite; --api-version selects among "
                             "the suites of a directory such as conformance/")
        return load_suite(suite_dir, tiers)
    suites = version_suites(root, list(api_versions) or None)
    if not suites:
        raise SuiteError(f"{root}: no conformance suite of a registered version")
    return [case for version, path in suites for case in load_suite(path, tiers, version)]


@click.group("conformance")
def command() -> None:
    """The lmspec conformance suite."""


@command.command("run")
@click.option("--suite", "suite_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Directory of suites per version (default: conformance/), or one version's suite "
                   "(holding schema/, semantic/, …).")
@click.option("--api-version", "api_versions", multiple=True, metavar="VERSION",
              help="Run this version's suite, e.g. v1beta1 (repeatable). Default: every registered "
                   "version, each reported separately.")
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
def run(suite_dir: Path | None, api_versions: tuple[str, ...], implementation: str | None,
        tiers: tuple[str, ...], fmt: str, timeout: float, output: Path | None) -> None:
    """Run the suite. Exit status: 0 every case passed (or was skipped), 1 a case failed or
    errored, 2 the suite or the options are unusable."""
    try:
        cases = select(suite_dir, api_versions, list(tiers) or None)
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
