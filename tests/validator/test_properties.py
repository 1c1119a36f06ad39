"""Property: whatever the input, validation returns a report whose findings are well-formed."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from strategies import DOCUMENTS, dump, mutated_data, mutated_text

import lmspec
from lmspec.validator.registry import RULES
from lmspec.validator.report import render

_BREAK = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(text: str, file: str) -> lmspec.Report:
    report = lmspec.validate_text(text, file)
    lines = _BREAK.split(text)
    for f in report.findings:
        assert f.rule in RULES, f
        assert f.severity == RULES[f.rule].severity, f
        assert 1 <= f.line <= len(lines), (f, len(lines))
        assert 1 <= f.column <= len(lines[f.line - 1]) + 1, (f, lines[f.line - 1])
        assert f.file == file
        assert f.pointer == "" or f.pointer.startswith("/")
    assert report.exit_code() in (0, 1, 2)
    assert (report.exit_code() == 2) == report.parse_failed
    return report


def test_examples_are_valid() -> None:
    assert DOCUMENTS
    for doc in DOCUMENTS:
        assert lmspec.validate_text(dump(doc), references=False).ok


@SETTINGS
@given(mutated_data())
def test_structural_mutations(doc: dict[str, object]) -> None:
    _check(dump(doc), "m.yaml")


@SETTINGS
@given(mutated_text(), st.sampled_from(["m.yaml", "m.json"]))
def test_textual_mutations(text: str, file: str) -> None:
    report = _check(text, file)
    for fmt in ("junit", "sarif", "github"):
        render(report, fmt)


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_arbitrary_text(text: str) -> None:
    _check(text, "m.yaml")
