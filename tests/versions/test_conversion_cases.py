"""The conversion cases of conformance/v1beta1/conversion: each manifest is valid in its version,
and each converts to the other, compared as data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

import lmspec
from lmspec.conversion import convert
from lmspec.conversion.v1beta1 import CHANGES
from lmspec.versions import get

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted((ROOT / "conformance" / "v1beta1" / "conversion").glob("*.yaml"))
CASES = [case for file in FILES for case in yaml.safe_load(file.read_text(encoding="utf-8"))["cases"]]


def test_every_change_has_a_case() -> None:
    assert {c.id for c in CHANGES} == {case["change"] for case in CASES}
    ids = [case["id"] for case in CASES]
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_conversion_case(case: dict[str, Any]) -> None:
    alpha, beta = yaml.safe_load(case["v1alpha1"]), yaml.safe_load(case["v1beta1"])
    report = lmspec.validate_text(case["v1alpha1"], "case.yaml", references=False)
    assert report.ok, [f.message for f in report.findings]
    get("v1beta1").models()[beta["kind"]].model_validate(beta)
    assert convert(alpha, "v1beta1") == (beta, [])
    assert convert(beta, "v1alpha1") == (alpha, [])
