"""The benchmark corpus is what it claims: undamaged files are valid, damaged ones are not."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

import lmspec

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> object:
    spec = importlib.util.spec_from_file_location("bench_validate", ROOT / "bench" / "validate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("api_version", ["v1beta1", "v1alpha1"])
def test_corpus_damage_matches_verdicts(tmp_path: Path, api_version: str) -> None:
    truth: dict[str, str] = _bench().generate(tmp_path, 200, seed=3, api_version=api_version)  # type: ignore[attr-defined]
    assert len(truth) == 200 and 5 <= sum(bool(d) for d in truth.values()) <= 40
    report = lmspec.validate([str(tmp_path)])
    rules: dict[str, set[str]] = {}
    for f in report.errors:
        rules.setdefault(Path(f.file).name, set()).add(f.rule)
    header = f"apiVersion: lmspec.io/{api_version}\n"
    assert all((tmp_path / file).read_text().startswith(header) for file in truth)
    for file, damage in truth.items():
        if damage:
            assert file in rules, f"{file} ({damage}) passed validation"
        else:  # a damaged name elsewhere may leave a reference dangling, nothing else
            assert rules.get(file, set()) <= {"reference.missing"}, (file, rules[file])
