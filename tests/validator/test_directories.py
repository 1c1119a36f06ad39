"""What a directory argument selects, and the one rule for relative paths: every relative path
in a manifest is resolved against the directory of the file that holds the manifest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

import lmspec
from lmspec.cli import main
from lmspec.model.export import export_dir_for, output_dir_for
from lmspec.train.rundir import write_run_dir


def _init(target: Path) -> None:
    result = CliRunner().invoke(main, ["init", str(target)])
    assert result.exit_code == 0, result.output


def _validate(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["validate", *args])
    return result.exit_code, result.stdout, result.stderr


def test_json_data_beside_manifests_is_skipped_and_said_once(tmp_path: Path) -> None:
    _init(tmp_path / "p")
    (tmp_path / "p" / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE"}}')
    (tmp_path / "p" / "data" / "stats.json").write_text("{}")
    code, out, err = _validate(str(tmp_path / "p"))
    assert code == 0, out + err
    assert err.count("skipped") == 1 and "tokenizer.json" in err and "stats.json" in err
    report = lmspec.validate([str(tmp_path / "p")])
    assert report.ok and len(report.skipped) == 2
    # Named explicitly (or by a glob) a JSON file is read as a manifest.
    code, out, _ = _validate(str(tmp_path / "p" / "tokenizer.json"))
    assert code == 1 and "apiVersion" in out
    assert len(lmspec.load([str(tmp_path / "p")]).manifests) == 4


def test_a_run_directory_inside_the_manifests_is_never_read_back(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    _init(tmp_path / "p")
    monkeypatch.chdir(tmp_path / "p")
    manifests = lmspec.load(["."])
    job = manifests.pick("TrainingJob", None, option="--job")
    run_dir = write_run_dir(job, manifests, None)
    assert run_dir == (tmp_path / "p" / "runs" / "demo-train").resolve()
    (run_dir / "export").mkdir()
    (run_dir / "export" / "model.yaml").write_text((tmp_path / "p" / "model.yaml").read_text())
    (run_dir / "export" / ".lmspec-output").write_text("export\n")
    code, out, err = _validate(".")
    assert code == 0, out + err
    # lmspec wrote it there: passed over without a word (else every command after a run says it).
    assert err == ""
    assert len(lmspec.load(["."]).manifests) == 4
    # The run directory validates on its own, data checked (its paths are absolute): from the
    # project, or from anywhere once the data's tree is allowed, as for any manifest.
    for cwd, allow in ((tmp_path / "p", []), (run_dir, ["--allow-outside", str(tmp_path / "p")]),
                       (Path("/"), ["--allow-outside", str(tmp_path / "p")])):
        monkeypatch.chdir(cwd)
        code, out, err = _validate("--check-env", *allow, str(run_dir))
        assert code == 0, out + err
        code, out, err = _validate("--check-env", *allow, os.path.relpath(run_dir / "rendered.yaml"))
        assert code == 0, out + err


def test_output_dir_and_export_are_relative_to_the_manifest(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _init(tmp_path / "p")
    for cwd in (tmp_path, tmp_path / "p", tmp_path / "p" / "data"):
        monkeypatch.chdir(cwd)
        job = lmspec.load([os.path.relpath(tmp_path / "p")]).pick("TrainingJob", None, option="--job")
        assert output_dir_for(job).resolve() == tmp_path / "p" / "runs" / "demo-train"
        assert export_dir_for(job).resolve() == tmp_path / "p" / "runs" / "demo-train" / "export"


def test_the_rule_is_written_in_the_spec() -> None:
    text = (Path(__file__).resolve().parents[2] / "spec" / "v1alpha1" / "conventions.md").read_text()
    assert "## Relative paths" in text and "## Directory arguments" in text
    for field in ("output.dir", "sources[].path", "initialWeights.path", "spec.model.path",
                  "apiKeys[].file", "nvmePath"):
        assert field in text, field


def test_rendered_manifests_hold_resolved_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _init(tmp_path / "p")
    monkeypatch.chdir(tmp_path)
    manifests = lmspec.load(["p"])
    job = manifests.pick("TrainingJob", None, option="--job")
    run_dir = write_run_dir(job, manifests, str(tmp_path / "elsewhere"))
    docs = {d["kind"]: d for d in yaml.safe_load_all((run_dir / "rendered.yaml").read_text())}
    assert docs["Dataset"]["spec"]["sources"][0]["path"] == str(tmp_path / "p" / "data" / "points.csv")
    assert docs["TrainingJob"]["spec"]["output"]["dir"] == str(tmp_path / "elsewhere")
