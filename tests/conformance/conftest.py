"""Shared fixtures: the suite, and the published JSON Schemas it is checked against."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmspec.conformance import Case, load_suite

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "conformance" / "v1alpha1"
SCHEMA_DIR = ROOT / "schemas" / "v1alpha1"
BUNDLE = "lmspec.schema.json"


def published_schemas() -> dict[str, dict[str, Any]]:
    """The committed schemas by file name; generated in memory while none are committed."""
    files = sorted(SCHEMA_DIR.glob("*.schema.json"))
    if any(f.name == BUNDLE for f in files):
        return {f.name: json.loads(f.read_text(encoding="utf-8")) for f in files}
    from lmspec import schemagen

    return schemagen.schemas()


@pytest.fixture(scope="session")
def cases() -> list[Case]:
    return load_suite(SUITE)


@pytest.fixture(scope="session")
def schemas() -> dict[str, dict[str, Any]]:
    return published_schemas()


@pytest.fixture(scope="session")
def bundle_path(schemas: dict[str, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = SCHEMA_DIR / BUNDLE
    if path.is_file():
        return path
    path = tmp_path_factory.mktemp("schemas") / BUNDLE
    path.write_text(json.dumps(schemas[BUNDLE]), encoding="utf-8")
    return path
