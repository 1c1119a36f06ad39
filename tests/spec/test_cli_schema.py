from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from lmspec import schemagen
from lmspec.cli import main

ROOT = Path(__file__).resolve().parents[2]


def test_prints_one_kind_in_any_case() -> None:
    result = CliRunner().invoke(main, ["schema", "trainingjob"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    assert schema["$id"] == "https://lmspec.io/schemas/v1beta1/trainingjob.schema.json"  # the newest version
    assert result.output == (ROOT / "schemas/v1beta1/trainingjob.schema.json").read_text(encoding="utf-8")
    result = CliRunner().invoke(main, ["schema", "TrainingJob", "--api-version", "v1alpha1"])
    assert result.exit_code == 0, result.output
    assert result.output == (ROOT / "schemas/v1alpha1/trainingjob.schema.json").read_text(encoding="utf-8")
    result = CliRunner().invoke(main, ["schema", "Model", "--api-version", "v1beta2"])
    assert result.exit_code == 2 and "did you mean 'v1beta1'?" in result.output


def test_prints_the_bundle_without_a_kind() -> None:
    result = CliRunner().invoke(main, ["schema"])
    assert result.exit_code == 0
    assert json.loads(result.output)["$id"].endswith("/lmspec.schema.json")


def test_unknown_kind_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["schema", "Pipeline"])
    assert result.exit_code == 2
    assert "unknown kind 'Pipeline'" in result.output
    assert "TrainingJob" in result.output


def test_output_writes_every_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["schema", "--output", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    written = {p.name: p.read_text(encoding="utf-8") for p in (tmp_path / "out").iterdir()}
    assert written == {name: schemagen.dumps(s) for name, s in schemagen.schemas("v1beta1").items()}
