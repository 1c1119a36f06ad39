"""A manifest and its conversion are one manifest to the runtime: for every valid conformance
document and every example, ``lmspec.load`` of the original and of its conversion to the other
version give the same hub objects (compared as ``lmspec render`` writes them, defaults filled)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lmspec.conformance import load_suite
from lmspec.convert import convert_files
from lmspec.validator.core import load, to_yaml_data

ROOT = Path(__file__).resolve().parents[2]
OTHER = {"v1alpha1": "v1beta1", "v1beta1": "v1alpha1"}


def _valid_cases() -> list[Any]:
    out = []
    for version in OTHER:
        for case in load_suite(ROOT / "conformance" / version):
            if case.valid:
                out.append(pytest.param(case, id=f"{version}:{case.id}"))
    return out


def _utf8(path: Path) -> bool:
    try:
        path.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _hub(paths: list[Path]) -> list[tuple[str, str, dict[str, Any]]]:
    loaded = load([str(p) for p in paths])
    return sorted((m.kind, m.name, to_yaml_data(m.obj)) for m in loaded.manifests)


def _same_after_conversion(files: list[Path], to: str, tmp: Path) -> None:
    original = _hub(files)
    assert original, "nothing was loaded"
    out = tmp / "converted"
    convert_files([str(f) for f in files], to, out_dir=out)
    assert _hub(sorted(out.rglob("*.y*ml"))) == original


@pytest.mark.parametrize("case", _valid_cases())
def test_a_valid_conformance_document_and_its_conversion_are_one_hub_object(case: Any, tmp_path: Path) -> None:
    files = []
    for name, raw in case.raw_documents():
        path = tmp_path / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(raw)
        files.append(path)
    if any(p.suffix not in (".yaml", ".yml") for p in files):
        pytest.skip("lmspec convert reads YAML files")
    if any(not _utf8(p) for p in files):
        pytest.skip("lmspec convert reads UTF-8 files")
    _same_after_conversion(files, OTHER[case.version], tmp_path)


@pytest.mark.parametrize("to", list(OTHER))
def test_the_examples_and_their_conversion_are_one_hub_object(to: str, tmp_path: Path) -> None:
    """All examples at once (some name another example's manifests); whichever version each is
    written in, the conversion of every one of them to ``to`` loads as the same hub objects."""
    examples = ROOT / "examples"
    files = sorted(p for p in examples.glob("*/*.yaml"))
    original = _hub(files)
    out = tmp_path / "converted"
    convert_files([str(examples)], to, out_dir=out)
    converted = [out / p.relative_to(examples) for p in files]
    assert all(p.is_file() for p in converted)
    assert _hub(converted) == original
