"""The suite itself: well-formed, complete, and passed by lmspec's validator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

import pytest
import yaml
from click.testing import CliRunner
from jsonschema import Draft202012Validator

from lmspec.cli import main
from lmspec.conformance import Builtin, Case, run_suite
from lmspec.conformance.suite import case_files, read_case_file
from lmspec.validator.parse import parse_text
from lmspec.validator.registry import RULES
from lmspec.validator.schema import check_document

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "conformance" / "v1alpha1"

# Rules no case can trigger from source text alone, and why.
NOT_IN_SUITE = {
    "parse.io": "needs an unreadable path, not an input text",
    "env.file-missing": "environment layer: needs a file system (--check-env)",
    "env.sha256-mismatch": "environment layer: needs a file system (--check-env)",
    "env.engine-unavailable": "environment layer: depends on the machine's devices and packages (--check-env)",
    "env.chat-records": "environment layer: needs a file system (--check-env)",
    "env.chat-template": "environment layer: needs a file system (--check-env)",
    "env.pretrained-base": "environment layer: needs a file system (--check-env)",
    "env.outside-project": "environment layer: needs a file system (--check-env)",
    "env.adapter-modules": "environment layer: needs a pretrained base's weight files (--check-env)",
    "env.data": "environment layer: needs data files (--check-env)",
    "schema.invalid": "catch-all for schema errors no other rule describes; no v1alpha1 input reaches it",
}


def test_case_files_match_case_schema() -> None:
    schema = json.loads((ROOT / "conformance" / "case.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    files = case_files(SUITE)
    assert {tier for tier, _ in files} == {"schema", "semantic", "yaml", "references", "locations"}
    problems = [f"{path}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
                for _, path in files for e in validator.iter_errors(read_case_file(path))]
    assert not problems, "\n".join(problems)


def test_case_rules_exist(cases: list[Case]) -> None:
    unknown = {(c.id, r) for c in cases for r in (*c.rules, *(f.rule for f in c.findings)) if r not in RULES}
    assert not unknown


def test_lmspec_passes_every_case(cases: list[Case]) -> None:
    outcomes, started = run_suite(cases, Builtin())
    assert started is not None and started.capabilities == {"findings", "positions"}
    failures = [f"{o.case.id}: {o.problems}" for o in outcomes if o.status != "pass"]
    assert not failures, "\n".join(failures)


def test_every_rule_triggered_and_near_missed(cases: list[Case]) -> None:
    triggered = {f.rule for c in cases for f in c.findings}
    near_missed = {r for c in cases for r in c.rules if r not in {f.rule for f in c.findings}}
    missing = [f"{rid}: {'no triggering case' if rid not in triggered else ''}"
               f"{' no near-miss case' if rid not in near_missed else ''}"
               for rid in RULES if rid not in NOT_IN_SUITE and not (rid in triggered and rid in near_missed)]
    assert not missing, "\n".join(missing)
    assert set(NOT_IN_SUITE) <= set(RULES)
    semantic = [r.id for r in RULES.values() if r.layer == "semantic"]
    assert set(semantic) <= triggered & near_missed


# -- schema coverage ---------------------------------------------------------------------------

def _kind_schemas(schemas: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {}
    for schema in schemas.values():
        kind = schema.get("properties", {}).get("kind", {})
        name = kind.get("const") or (kind.get("enum") or [None])[0]
        if name:
            out[name] = schema
    return out


def _walk(schema: dict[str, Any], root: dict[str, Any], where: str, data: Any, seen: set[str] | None,
          out: set[str]) -> None:
    """Collect ``Def.property`` of every property in the schema (``seen`` None) or in ``data``."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        key = f"ref:{name}"
        if seen is not None:
            if key in seen:
                return
            seen = seen | {key}
        _walk(root["$defs"][name], root, name, data, seen, out)
        return
    for branch in schema.get("oneOf", []) + schema.get("anyOf", []) + schema.get("allOf", []):
        if seen is not None or Draft202012Validator({**branch, "$defs": root.get("$defs", {})}).is_valid(data):
            _walk(branch, root, where, data, seen, out)
    for name, sub in schema.get("properties", {}).items():
        if seen is not None:
            out.add(f"{where}.{name}")
            _walk(sub, root, where, None, seen, out)
        elif isinstance(data, dict) and name in data:
            out.add(f"{where}.{name}")
            _walk(sub, root, where, data[name], seen, out)
    items = schema.get("items")
    if isinstance(items, dict):
        for item in data if isinstance(data, list) else [None] if seen is not None else []:
            _walk(items, root, where, item, seen, out)
    extra = schema.get("additionalProperties")
    if isinstance(extra, dict):
        for value in data.values() if isinstance(data, dict) else [None] if seen is not None else []:
            _walk(extra, root, where, value, seen, out)


def test_valid_schema_cases_use_every_field(cases: list[Case], schemas: dict[str, dict[str, Any]]) -> None:
    by_kind = _kind_schemas(schemas)
    assert set(by_kind) == {"Model", "Dataset", "TrainingJob", "InferenceService"}
    fields: set[str] = set()
    for kind, schema in by_kind.items():
        _walk(schema, schema, kind, None, set(), fields)
    used: set[str] = set()
    for case in cases:
        if case.tier != "schema" or not case.valid:
            continue
        for name, raw in case.raw_documents():
            for doc in parse_text(raw.decode("utf-8"), name):
                schema = by_kind[doc.data["kind"]]
                _walk(schema, schema, doc.data["kind"], doc.data, None, used)
    missing = sorted(fields - used)
    assert len(fields) > 150
    assert not missing, f"fields no valid schema-tier case uses: {missing}"


# -- agreement with the published JSON Schema ---------------------------------------------------

def test_jsonschema_agrees_with_lmspec_schema_layer(cases: list[Case], schemas: dict[str, dict[str, Any]]) -> None:
    """For every schema-tier document, python-jsonschema with the published bundle and lmspec's
    schema layer reach the same verdict."""
    validator = Draft202012Validator(schemas["lmspec.schema.json"])
    disagreements = []
    checked = 0
    for case in cases:
        if case.tier != "schema":
            continue
        for name, raw in case.raw_documents():
            for doc in parse_text(raw.decode("utf-8"), name):
                _, findings = check_document(doc)
                ours = not findings
                theirs = validator.is_valid(doc.data)
                checked += 1
                if ours != theirs:
                    why = [f"{f.rule} at {f.pointer}" for f in findings] or \
                        [f"{e.validator} at /{'/'.join(map(str, e.absolute_path))}: {e.message[:120]}"
                         for e in validator.iter_errors(doc.data)]
                    disagreements.append(f"{case.id} document {doc.index}: lmspec "
                                         f"{'valid' if ours else 'invalid'}, jsonschema "
                                         f"{'valid' if theirs else 'invalid'}: {why}")
    assert checked > 80
    assert not disagreements, "\n".join(disagreements)


# -- the command --------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["text", "json", "junit"])
def test_cli_formats(fmt: str) -> None:
    result = CliRunner().invoke(main, ["conformance", "run", "--suite", str(SUITE), "--format", fmt])
    assert result.exit_code == 0, result.output
    if fmt == "json":
        doc = json.loads(result.output)
        assert doc["ok"] and doc["implementation"]["name"] == "lmspec"
        assert set(doc["summary"]) == {"schema", "semantic", "yaml", "references", "locations"}
        assert all(c["status"] == "pass" for c in doc["cases"])
    elif fmt == "junit":
        root = ET.fromstring(result.output.split("?>", 1)[1])
        assert [s.get("name") for s in root] == ["schema", "semantic", "yaml", "references", "locations"]
        assert all(s.get("failures") == "0" for s in root)
    else:
        assert "total" in result.output and "semantic" in result.output


def test_cli_fails_on_a_wrong_expectation(tmp_path: Any) -> None:
    """A case lmspec does not pass makes the run exit 1 and say what was expected."""
    tier = tmp_path / "semantic"
    tier.mkdir()
    data = {"cases": [{"id": "demo/wrong", "rules": ["model.transformer-heads"], "description": "d",
                       "source": "kind: Model\n", "valid": True}]}
    (tier / "x.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    result = CliRunner().invoke(main, ["conformance", "run", "--suite", str(tmp_path)])
    assert result.exit_code == 1
    assert "FAIL demo/wrong" in result.output
    assert "expected valid, got invalid" in result.output
    assert "document.api-version" in result.output


def test_cli_rejects_a_malformed_suite(tmp_path: Any) -> None:
    (tmp_path / "schema").mkdir()
    (tmp_path / "schema" / "x.yaml").write_text("cases:\n  - {id: a/b}\n  - {id: a/b}\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["conformance", "run", "--suite", str(tmp_path)])
    assert result.exit_code == 2
    assert "malformed case" in result.output
