from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import lmspec
from lmspec.cli import main


def test_scaffold_validates_right_away(tmp_path: Path) -> None:
    target = tmp_path / "proj"
    result = CliRunner().invoke(main, ["init", str(target), "--name", "points"])
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in target.iterdir())
    assert names == ["data", "dataset.yaml", "model.yaml", "serve.yaml", "train.yaml"]
    report = lmspec.validate([str(target)], check_env=True)
    assert report.ok and not report.warnings, report.findings
    manifests = lmspec.load([str(target)])
    assert {(m.kind, m.name) for m in manifests.manifests} == {
        ("Model", "points-model"), ("Dataset", "points-data"),
        ("TrainingJob", "points-train"), ("InferenceService", "points-serve")}
    result = CliRunner().invoke(main, ["validate", str(target)])
    assert result.exit_code == 0, result.output


def test_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "model.yaml").write_text("# mine\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["init", str(tmp_path)])
    assert result.exit_code == 1
    assert "not overwriting existing files" in result.output
    assert (tmp_path / "model.yaml").read_text(encoding="utf-8") == "# mine\n"
    assert not (tmp_path / "train.yaml").exists()
    result = CliRunner().invoke(main, ["init", str(tmp_path), "--force"])
    assert result.exit_code == 0, result.output
    assert lmspec.validate([str(tmp_path)]).ok


def test_rejects_a_bad_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["init", str(tmp_path), "--name", "My_Project"])
    assert result.exit_code == 2
    assert not any(tmp_path.iterdir())


@pytest.mark.integration
def test_commands_do_not_import_torch() -> None:
    # The example's own manifests (a glob): never what running it leaves below it.
    code = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from lmspec.cli import main\n"
        "for args in (['schema', 'model'], ['explain', 'Model.spec'], ['render', 'examples/iris/*.yaml'],\n"
        "             ['init', '--help']):\n"
        "    assert CliRunner().invoke(main, args).exit_code == 0, args\n"
        "heavy = sorted(m for m in ('torch', 'deepspeed', 'fastapi') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
