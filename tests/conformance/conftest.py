"""Shared fixtures: the suite of each version, and the published JSON Schemas it is checked against."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lmspec import versions
from lmspec.conformance import Case, load_suite
from lmspec.conformance.suite import version_suites

ROOT = Path(__file__).resolve().parents[2]
SUITES = dict(version_suites(ROOT / "conformance"))
"""Version name → its suite directory (``conformance/v1alpha1``, ``conformance/v1beta1``)."""
SUITE = SUITES["v1alpha1"]
BUNDLE = "lmspec.schema.json"


def schema_dir(version: str) -> Path:
    return ROOT / versions.get(version).schema_dir


def published_schemas(version: str) -> dict[str, dict[str, Any]]:
    """The committed schemas of a version by file name."""
    files = sorted(schema_dir(version).glob("*.schema.json"))
    return {f.name: json.loads(f.read_text(encoding="utf-8")) for f in files}


@pytest.fixture(scope="session", params=sorted(SUITES))
def version(request: pytest.FixtureRequest) -> str:
    """Each version with a suite; tests using it run once per version."""
    return str(request.param)


@pytest.fixture(scope="session")
def version_cases(version: str) -> list[Case]:
    return load_suite(SUITES[version])


@pytest.fixture(scope="session")
def cases() -> list[Case]:
    """The v1alpha1 suite (tests about the harness itself)."""
    return load_suite(SUITE)


@pytest.fixture(scope="session")
def schemas(version: str) -> dict[str, dict[str, Any]]:
    return published_schemas(version)
