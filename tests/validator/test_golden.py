"""Findings, positions and exit codes of ``lmspec validate -o json`` are what they were.

``golden/validate.json`` was captured from the validator before its modules were reorganised into
the ``lmspec.validator`` package (see ``golden.py`` for what is pinned and how to regenerate it).
Every conformance case and every example must still give the same exit code and the same
findings (rule, severity, file, document, line, column, pointer), in the same order.
"""

from __future__ import annotations

import json
from pathlib import Path

import golden

GOLDEN = Path(__file__).resolve().parent / "golden" / "validate.json"


def test_validate_json_output_matches_golden() -> None:
    expected = json.loads(GOLDEN.read_text(encoding="utf-8"))
    actual = golden.capture()
    missing = sorted(set(expected) - set(actual))
    assert not missing, f"inputs in the golden file that no longer exist: {missing}"
    changed = {k: {"expected": v, "actual": actual[k]} for k, v in expected.items() if actual[k] != v}
    assert not changed, "output differs from the golden file:\n" + json.dumps(changed, indent=1)[:20000]
