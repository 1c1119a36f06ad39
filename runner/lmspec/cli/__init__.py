"""The ``lmspec`` command: it owns options, output and exit codes, and nothing else — each
subcommand calls the validator, the runner or the server. Subcommands live in their own modules
and are imported only when invoked, so ``lmspec validate`` never pays for (or imports) the
training and serving stacks."""

from __future__ import annotations

import importlib
from typing import Any

import click

from .._version import __version__

COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("lmspec.cli.validate", "Validate manifests (files, directories, globs, - for stdin)."),
    "schema": ("lmspec.cli.schema", "Print or write the published JSON Schemas."),
    "explain": ("lmspec.cli.explain", "Explain a kind or field: type, default, constraints, example."),
    "render": ("lmspec.cli.render", "Print manifests with every default filled in."),
    "init": ("lmspec.cli.init", "Scaffold a working set of manifests and a tiny CSV."),
    "serve": ("lmspec.cli.serve", "Serve an InferenceService's model over HTTP (OIP v2, OpenAI)."),
    "run": ("lmspec.cli.run", "Train a TrainingJob with DeepSpeed and export the model."),
    "plan": ("lmspec.cli.plan", "Parameter counts and ZeRO memory per device, before launching."),
    "export": ("lmspec.cli.export", "Print generated artefacts (deepspeed-config)."),
    "predict": ("lmspec.cli.predict", "Batch predictions of an exported model over a csv/jsonl/parquet file."),
    "evaluate": ("lmspec.cli.evaluate", "Declared test metrics of an exported model on a new file or split."),
    "report": ("lmspec.cli.report", "One self-contained HTML report of one run, or a comparison of several."),
    "conformance": ("lmspec.cli.conformance", "Run the conformance suite against lmspec or another implementation."),
    "convert": ("lmspec.cli.convert", "Rewrite manifests to another API version, keeping comments."),
}
"""Subcommand name → (module defining a click command named ``command``, one-line help)."""


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(COMMANDS[name][0])
        command: click.Command = module.command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_) for name, (_, help_) in sorted(COMMANDS.items())]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lmspec")
def main() -> None:
    """lmspec: validate, run and serve versioned model manifests."""


def run(argv: list[str] | None = None, **kwargs: Any) -> Any:
    """Entry point usable from Python: ``run(["validate", "examples/"])``."""
    return main.main(args=argv, **kwargs)
