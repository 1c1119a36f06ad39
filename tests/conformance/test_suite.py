"""The suite of each version: well-formed, complete, and passed by lmspec's validator."""

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
from lmspec.conformance import Builtin, Case, Expected, run_suite
from lmspec.conformance.harness import DEPRECATED_RULE, judge
from lmspec.conformance.suite import case_files, read_case_file, version_suites
from lmspec.validator.parse import parse_text
from lmspec.validator.registry import RULES
from lmspec.validator.schema import check_document

ROOT = Path(__file__).resolve().parents[2]
SUITES = dict(version_suites(ROOT / "conformance"))
SUITE = SUITES["v1alpha1"]

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

# Rules a version's schema makes impossible to break, by version (spec/v1beta1/changes.md).
IMPOSSIBLE = {
    "v1alpha1": {},
    "v1beta1": {
        "model.pretrained-source": "architecture.source is one object (change 2)",
        "inferenceservice.model-source": "spec.model is one source (change 3)",
        "inferenceservice.key-source": "an API key source is {type: env} or {type: file} (change 4)",
        "inferenceservice.inline-secret": "the schema accepts no string API key (change 4)",
        "trainingjob.precision-exclusive": "precision.mode names one mode (change 5)",
    },
}

# Rules a version's suite can only trigger, or only near-miss, and why.
ONE_SIDED = {
    "v1alpha1": {"document.deprecated-version": "optional: implementations may warn on a deprecated version, "
                                                "so no v1alpha1 case names it (the harness ignores it)"},
    "v1beta1": {"document.deprecated-version": "near miss only: v1beta1 is not deprecated"},
}


def test_every_version_has_a_suite() -> None:
    from lmspec import versions

    assert sorted(SUITES) == sorted(v.name for v in versions.all_versions()) == ["v1alpha1", "v1beta1"]
    assert set(IMPOSSIBLE) == set(ONE_SIDED) == set(SUITES)


def test_case_files_match_case_schema(version: str) -> None:
    schema = json.loads((ROOT / "conformance" / "case.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema)
    files = case_files(SUITES[version])
    assert {tier for tier, _ in files} == {"schema", "semantic", "yaml", "references", "locations"}
    problems = [f"{path}: {'/'.join(map(str, e.absolute_path))}: {e.message}"
                for _, path in files for e in validator.iter_errors(read_case_file(path))]
    assert not problems, "\n".join(problems)


def test_case_rules_exist(version_cases: list[Case]) -> None:
    unknown = {(c.id, r) for c in version_cases for r in (*c.rules, *(f.rule for f in c.findings)) if r not in RULES}
    assert not unknown


def test_cases_are_of_their_version(version: str, version_cases: list[Case]) -> None:
    """Every document of a version's suite that names an lmspec version names that one, except
    the cases about apiVersion itself."""
    wrong = []
    for case in version_cases:
        if case.tier == "yaml" or "document.api-version" in case.rules:
            continue
        for name, raw in case.raw_documents():
            for doc in parse_text(raw.decode("utf-8"), name):
                api = doc.data.get("apiVersion") if isinstance(doc.data, dict) else None
                if isinstance(api, str) and api.startswith("lmspec.io/") and api != f"lmspec.io/{version}":
                    wrong.append(f"{case.id}: {api}")
    assert not wrong
    assert all(c.version == version for c in version_cases)


def test_lmspec_passes_every_case(version_cases: list[Case]) -> None:
    outcomes, started = run_suite(version_cases, Builtin())
    assert started is not None and started.capabilities == {"findings", "positions"}
    failures = [f"{o.case.id}: {o.problems}" for o in outcomes if o.status != "pass"]
    assert not failures, "\n".join(failures)


def test_every_rule_triggered_and_near_missed(version: str, version_cases: list[Case]) -> None:
    triggered = {f.rule for c in version_cases for f in c.findings}
    near_missed = {r for c in version_cases for r in c.rules if r not in {f.rule for f in c.findings}}
    skip = {**NOT_IN_SUITE, **IMPOSSIBLE[version]}
    one_sided = set(ONE_SIDED[version])
    missing = [f"{rid}: {'no triggering case' if rid not in triggered else ''}"
               f"{' no near-miss case' if rid not in near_missed else ''}"
               for rid in RULES if rid not in set(skip) | one_sided and not (rid in triggered and rid in near_missed)]
    assert not missing, "\n".join(missing)
    assert set(skip) <= set(RULES)
    semantic = [r.id for r in RULES.values() if r.layer == "semantic" and r.id not in skip]
    assert set(semantic) <= triggered & near_missed
    # A rule the version makes impossible is named by no case of it.
    assert not {r for c in version_cases for r in c.rules} & set(IMPOSSIBLE[version])


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


def test_valid_schema_cases_use_every_field(version_cases: list[Case], schemas: dict[str, dict[str, Any]]) -> None:
    by_kind = _kind_schemas(schemas)
    assert set(by_kind) == {"Model", "Dataset", "TrainingJob", "InferenceService"}
    fields: set[str] = set()
    for kind, schema in by_kind.items():
        _walk(schema, schema, kind, None, set(), fields)
    used: set[str] = set()
    for case in version_cases:
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

def test_jsonschema_agrees_with_lmspec_schema_layer(version_cases: list[Case],
                                                    schemas: dict[str, dict[str, Any]]) -> None:
    """For every schema-tier document, python-jsonschema with the version's published bundle and
    lmspec's schema layer reach the same verdict. Bounds the JSON Schema cannot state (a
    duration's) are left out: the bundle checks only their pattern."""
    validator = Draft202012Validator(schemas["lmspec.schema.json"])
    disagreements = []
    checked = 0
    for case in version_cases:
        if case.tier != "schema":
            continue
        for name, raw in case.raw_documents():
            for doc in parse_text(raw.decode("utf-8"), name):
                _, findings = check_document(doc)
                ours = not [f for f in findings if not _duration_bound(f.rule, f.pointer, doc.data)]
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


DURATIONS = {"gracePeriod", "headerTimeout", "bodyTimeout", "requestTimeout", "maxQueueDelay"}


def _duration_bound(rule: str, pointer: str, data: Any) -> bool:
    """A bound of a v1beta1 duration (``spec/v1beta1/changes.md``, change 7): implementations
    check it, the JSON Schema does not."""
    return (rule == "schema.bound" and pointer.rsplit("/", 1)[-1] in DURATIONS
            and isinstance(data, dict) and data.get("apiVersion") == "lmspec.io/v1beta1")


# -- the command --------------------------------------------------------------------------------

TIER_NAMES = ["schema", "semantic", "yaml", "references", "locations"]


@pytest.mark.parametrize("fmt", ["text", "json", "junit"])
def test_cli_formats(fmt: str) -> None:
    """By default every version's suite runs, each reported on its own."""
    result = CliRunner().invoke(main, ["conformance", "run", "--format", fmt])
    assert result.exit_code == 0, result.output
    if fmt == "json":
        doc = json.loads(result.output)
        assert doc["ok"] and doc["implementation"]["name"] == "lmspec"
        assert set(doc["summary"]) == set(TIER_NAMES)
        assert list(doc["versions"]) == ["v1alpha1", "v1beta1"]
        assert all(v["ok"] and list(v["summary"]) == TIER_NAMES for v in doc["versions"].values())
        assert all(c["status"] == "pass" for c in doc["cases"])
        assert {c["version"] for c in doc["cases"]} == {"v1alpha1", "v1beta1"}
    elif fmt == "junit":
        root = ET.fromstring(result.output.split("?>", 1)[1])
        assert [s.get("name") for s in root] == [f"{v}/{t}" for v in ("v1alpha1", "v1beta1") for t in TIER_NAMES]
        assert all(s.get("failures") == "0" for s in root)
    else:
        assert result.output.index("lmspec.io/v1alpha1") < result.output.index("lmspec.io/v1beta1")
        assert result.output.count("total") == 2 and "semantic" in result.output


def test_cli_selects_a_version() -> None:
    result = CliRunner().invoke(main, ["conformance", "run", "--api-version", "v1beta1", "--format", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert list(doc["versions"]) == ["v1beta1"]
    assert len(doc["cases"]) == len(load_suite_of("v1beta1"))
    # The full name works too, and one version's suite directory.
    result = CliRunner().invoke(main, ["conformance", "run", "--api-version", "lmspec.io/v1alpha1",
                                       "--tier", "references"])
    assert result.exit_code == 0 and "lmspec.io/v1alpha1" in result.output
    assert "lmspec.io/v1beta1" not in result.output
    result = CliRunner().invoke(main, ["conformance", "run", "--suite", str(SUITES["v1beta1"]), "--format", "json"])
    assert result.exit_code == 0 and list(json.loads(result.output)["versions"]) == ["v1beta1"]


def test_cli_rejects_an_unknown_version() -> None:
    result = CliRunner().invoke(main, ["conformance", "run", "--api-version", "v1beta2"])
    assert result.exit_code == 2
    assert "unknown version 'v1beta2'; did you mean 'v1beta1'?" in result.output


def load_suite_of(version: str) -> list[Case]:
    from lmspec.conformance import load_suite

    return load_suite(SUITES[version])


def test_deprecation_warnings_are_ignored_unless_a_case_names_the_rule(cases: list[Case]) -> None:
    """An implementation may warn on every document of a deprecated version: the suite passes it
    all the same, except where a case is about that warning."""
    case = next(c for c in cases if c.id == "trainingjob/zero3-only/triggers")
    exp = case.findings[0]
    right = {"rule": exp.rule, "pointer": exp.pointer, "severity": "warning"}
    deprecated = {"rule": DEPRECATED_RULE, "pointer": "/apiVersion", "severity": "warning"}
    for extra in (deprecated, {**deprecated, "severity": "error"}, {**deprecated, "pointer": "/spec"}):
        reply = {"seq": 1, "result": {"valid": True, "findings": [right, extra]}}
        assert judge(case, reply, frozenset({"findings"})).status == "pass"
    named = Case("x/deprecated", "semantic", "d", (DEPRECATED_RULE,), case.documents, True)
    reply = {"seq": 1, "result": {"valid": True, "findings": [deprecated]}}
    outcome = judge(named, reply, frozenset({"findings"}))
    assert outcome.status == "fail" and "unexpected finding of an exercised rule" in outcome.problems[0]
    expected = Case("x/deprecated", "semantic", "d", (), case.documents, True,
                    (Expected(DEPRECATED_RULE, "/apiVersion", severity="warning"),))
    assert judge(expected, {"seq": 1, "result": {"valid": True, "findings": []}},
                 frozenset({"findings"})).status == "fail"
    assert judge(expected, reply, frozenset({"findings"})).status == "pass"


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
