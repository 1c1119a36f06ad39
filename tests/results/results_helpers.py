"""Helpers for the tests of what a run produced: ``lmspec`` as a subprocess, and the examples'
manifests written to a temporary directory with a smaller TrainingJob."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]


def lmspec(*args: str, env: dict[str, str] | None = None, timeout: float = 240,
           cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``lmspec ARGS`` in a subprocess; output captured as text."""
    return subprocess.run([sys.executable, "-m", "lmspec", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})}, cwd=cwd)


def example_manifests(name: str, directory: Path, run_dir: Path, job: Callable[[dict[str, Any]], None]) -> Path:
    """The example's manifests, data paths made absolute, the TrainingJob's output.dir set to
    ``run_dir`` and its spec edited by ``job``, written to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for f in sorted((REPO / "examples" / name).glob("*.yaml")):
        doc = yaml.safe_load(f.read_text())
        if doc["kind"] == "Dataset":
            for src in doc["spec"]["sources"]:
                src["path"] = str((f.parent / src["path"]).resolve())
        if doc["kind"] == "TrainingJob":
            job(doc["spec"])
            doc["spec"]["output"] = {"dir": str(run_dir)}
        (directory / f.name).write_text(yaml.safe_dump(doc, sort_keys=False))
    return directory
