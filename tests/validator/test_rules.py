"""Every rule fires on its bad cases, at the right place, and stays quiet on its near-misses."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from rule_cases import CASES, UNREACHABLE

import lmspec
from lmspec.manifests.document import Document
from lmspec.manifests.findings import Finding, Report
from lmspec.v1alpha1 import Model
from lmspec.validator.parse import parse_text
from lmspec.validator.registry import DOCUMENT_DEPRECATED_VERSION as DEPRECATED
from lmspec.validator.registry import RULES
from lmspec.validator.schema import _from_error

_CARET = re.compile(r"^#( *)\^ ?(\S*)\s*$")


def _normalise(case: Any) -> dict[str, Any]:
    return {"yaml": case} if isinstance(case, str) else dict(case)


def _expected(case: dict[str, Any]) -> tuple[int, int, str] | None:
    if "line" in case:
        return case["line"], case["column"], case["pointer"]
    text = case.get("yaml") or ""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        m = _CARET.match(line)
        if m:
            return i, len(m.group(1)) + 2, m.group(2)  # the line above is line i (1-based)
    return None


def _run(case: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Report:
    monkeypatch.chdir(tmp_path)
    name = case.get("name", "case.yaml")
    if "raw" in case:
        (tmp_path / name).write_bytes(case["raw"])
    elif "yaml" in case:
        (tmp_path / name).write_text(case["yaml"], encoding="utf-8")
    for rel, content in case.get("files", {}).items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(content, encoding="utf-8")
    kwargs: dict[str, Any] = {"check_env": case.get("check_env", False)}
    if "max_bytes" in case:
        kwargs["max_bytes"] = case["max_bytes"]
    return lmspec.validate(case.get("paths", [name]), **kwargs)


def _params(kind: str) -> list[Any]:
    return [pytest.param(rule, i, id=f"{rule}-{kind}{i}")
            for rule, cases in CASES.items() for i in range(len(cases[kind]))]


def _show(findings: list[Finding]) -> str:
    return "\n".join(f"{f.rule} {f.line}:{f.column} {f.pointer!r} {f.message}" for f in findings)


@pytest.mark.parametrize(("rule", "index"), _params("bad"))
def test_bad_case_triggers_rule_at_position(rule: str, index: int, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    case = _normalise(CASES[rule]["bad"][index])
    expected = _expected(case)
    assert expected is not None, "a bad case must give the expected position (caret or line/column)"
    report = _run(case, tmp_path, monkeypatch)
    hits = [(f.line, f.column, f.pointer) for f in report.findings if f.rule == rule]
    assert expected in hits, f"expected {rule} at {expected}; got:\n{_show(report.findings)}"
    allowed = {rule, *CASES[rule].get("also", []), *case.get("also", [])}
    stray = [f for f in report.findings if f.rule not in allowed and f.severity == "error"]
    assert not stray, f"unexpected findings:\n{_show(stray)}"


@pytest.mark.parametrize(("rule", "index"), _params("good"))
def test_good_case_is_clean(rule: str, index: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    case = _normalise(CASES[rule]["good"][index])
    report = _run(case, tmp_path, monkeypatch)
    assert not [f for f in report.findings if f.rule == rule], _show(report.findings)
    # Near-misses are v1alpha1 documents: the deprecation warning on them is not theirs to avoid.
    allowed = {*CASES[rule].get("also", []), *case.get("also", []), DEPRECATED} - {rule}
    stray = [f for f in report.findings if f.rule not in allowed]
    assert not stray, f"a near-miss must be clean:\n{_show(stray)}"


def test_every_rule_has_cases() -> None:
    """Adding a rule to lmspec.validator.registry without cases in rule_cases.py fails here."""
    missing = []
    for rule in RULES:
        cases = CASES.get(rule, {})
        if not cases.get("good"):
            missing.append(f"{rule}: no good (near-miss) case")
        if not cases.get("bad") and rule not in UNREACHABLE:
            missing.append(f"{rule}: no bad (triggering) case")
    assert not missing, "add cases to tests/validator/rule_cases.py:\n" + "\n".join(missing)
    assert set(CASES) <= set(RULES), f"cases for unknown rules: {set(CASES) - set(RULES)}"
    for rule in UNREACHABLE:
        assert not CASES[rule]["bad"], f"{rule} has a bad case now: remove it from UNREACHABLE"


def test_schema_invalid_fallback() -> None:
    """An error type the mapper does not know becomes schema.invalid, at the value."""
    doc: Document = parse_text("apiVersion: lmspec.io/v1alpha1\nkind: Model\nmetadata: {name: x}\n", "m.yaml")[0]
    err: Any = {"type": "value_error", "loc": ("metadata", "name"), "msg": "Value error, nope",
                "input": "x", "ctx": {}}
    finding = _from_error("lmspec.io/v1alpha1", doc, Model, err, ("metadata", "name"))
    assert finding is not None
    assert (finding.rule, finding.line, finding.column, finding.pointer) == ("schema.invalid", 3, 18, "/metadata/name")
