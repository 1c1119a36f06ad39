"""``lmspec init``: scaffold a working project.

    lmspec init my-project && lmspec validate my-project

Writes a Model, a Dataset, a TrainingJob and an InferenceService that refer to each other, and a
tiny CSV for the Dataset (pinned by its SHA-256), so every file validates as written.
"""

from __future__ import annotations

import hashlib
import re
from importlib import resources
from pathlib import Path
from string import Template

import click

TEMPLATES = ("model.yaml", "dataset.yaml", "train.yaml", "serve.yaml")
DATA_FILE = "data/points.csv"
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def _points() -> str:
    # Two well-separated classes on a 6×5 grid: learnable in a few epochs, deterministic, tiny.
    rows = ["x1,x2,label"]
    for i in range(6):
        for j in range(5):
            x1, x2 = round(-1.0 + 0.4 * i, 2), round(-1.0 + 0.5 * j, 2)
            rows.append(f"{x1},{x2},{'high' if x1 + x2 > 0 else 'low'}")
    return "\n".join(rows) + "\n"


def scaffold(directory: Path, name: str) -> dict[Path, str]:
    """The files ``init`` writes, by path, for the manifest-name prefix ``name``."""
    data = _points()
    values = {"name": name, "data_file": DATA_FILE,
              "data_sha256": hashlib.sha256(data.encode()).hexdigest()}
    files = {directory / DATA_FILE: data}
    package = resources.files("lmspec") / "templates"
    for template in TEMPLATES:
        text = (package / template).read_text(encoding="utf-8")
        files[directory / template] = Template(text).substitute(values)
    return files


@click.command("init")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path), default=".")
@click.option("--name", default="demo", show_default=True,
              help="Prefix of the manifests' names (a DNS-1123 label).")
@click.option("--force", is_flag=True, help="Overwrite files that already exist.")
def command(directory: Path, name: str, force: bool) -> None:
    """Create DIRECTORY (default: .) with model.yaml, dataset.yaml, train.yaml, serve.yaml and
    a small CSV; `lmspec validate DIRECTORY` passes right away."""
    if not _NAME.match(name) or len(name) > 50:
        raise click.BadParameter("use lowercase letters, digits and '-' (at most 50)", param_hint="--name")
    files = scaffold(directory, name)
    existing = [p for p in files if p.exists()]
    if existing and not force:
        listed = ", ".join(str(p) for p in existing)
        raise click.ClickException(f"not overwriting existing files: {listed} (use --force)")
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        click.echo(f"wrote {path}")
    # Every relative path in the manifests is relative to their folder, so these work from
    # here as written, and from inside the folder with '.' in place of its name.
    click.echo(f"next: lmspec validate {directory} && lmspec run {directory} && lmspec serve {directory}")
