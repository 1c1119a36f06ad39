"""A deprecated version still runs: the iris example (written in v1beta1), converted to v1alpha1,
validates with only the deprecation warning, fails ``--strict``, and trains and exports as the
v1beta1 original does (``spec/v1beta1/changes.md``, "Deprecation of v1alpha1")."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from lmspec.convert import convert_files

ROOT = Path(__file__).resolve().parents[2]


def lmspec(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DS_ACCELERATOR": "cpu"}
    return subprocess.run([sys.executable, "-m", "lmspec", *args], capture_output=True, text=True,
                          timeout=600, env=env, cwd=cwd)


@pytest.mark.integration
def test_the_iris_example_in_v1alpha1_validates_with_a_warning_and_runs(tmp_path: Path) -> None:
    (tmp_path / "examples" / "data").mkdir(parents=True)
    shutil.copy(ROOT / "examples" / "data" / "iris.csv", tmp_path / "examples" / "data")
    sources = sorted((ROOT / "examples" / "iris").glob("*.yaml"))
    results = convert_files(sources, "v1alpha1", out_dir=tmp_path / "examples" / "iris")
    assert all(r.changed and not r.losses for r in results)
    iris = tmp_path / "examples" / "iris"
    assert all("apiVersion: lmspec.io/v1alpha1" in p.read_text(encoding="utf-8") for p in iris.glob("*.yaml"))

    checked = lmspec("validate", "examples/iris", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count("warning[document.deprecated-version]") == len(sources)
    assert "lmspec convert" in checked.stdout and "--to v1beta1" in checked.stdout
    assert "0 error(s)" in checked.stdout
    strict = lmspec("validate", "--strict", "examples/iris", cwd=tmp_path)
    assert strict.returncode == 1

    run = lmspec("run", "examples/iris", "--output", str(tmp_path / "run"), cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (tmp_path / "run" / "export" / "model.safetensors").is_file()
