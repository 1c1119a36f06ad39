"""Output formats: text, json, junit, sarif and github, on a real mixed run."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema  # type: ignore[import-untyped]
import pytest
from click.testing import CliRunner

import lmspec
from lmspec.cli import main
from lmspec.validator.registry import RULES
from lmspec.validator.report import FORMATS, render, step_summary

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


BAD_MODEL = """apiVersion: lmspec.io/v1beta1
kind: Model
metadata:
  name: Bad_Name
spec:
  task: classification
  numClass: 3
  architecture: {type: mlp}
  signature:
    inputs: [{name: x, dtype: float32, shape: [-1, 4]}]
    outputs: [{name: y, dtype: float32, shape: [-1, 3]}]
---
apiVersion: lmspec.io/v1beta1
kind: Model
metadata: {name: fine}
spec:
  task: regression
  architecture: {type: mlp}
  signature:
    inputs: [{name: x, dtype: float32, shape: [-1, 4]}]
    outputs: [{name: y, dtype: float32, shape: [-1, 1]}]
"""

WARN_SERVICE = """apiVersion: lmspec.io/v1beta1
kind: InferenceService
metadata: {name: open}
spec:
  model: {type: directory, path: export}
  server: {host: 0.0.0.0}
"""

# The parts of the SARIF 2.1.0 schema (sarif-schema-2.1.0.json) that a producer must satisfy:
# required properties and the value domains of the fields lmspec writes.
SARIF_SUBSET = {
    "type": "object",
    "required": ["version", "runs"],
    "properties": {
        "version": {"const": "2.1.0"},
        "$schema": {"type": "string", "format": "uri"},
        "runs": {"type": "array", "items": {
            "type": "object",
            "required": ["tool"],
            "properties": {
                "columnKind": {"enum": ["utf16CodeUnits", "unicodeCodePoints"]},
                "tool": {"type": "object", "required": ["driver"], "properties": {"driver": {
                    "type": "object", "required": ["name"],
                    "properties": {
                        "name": {"type": "string"},
                        "rules": {"type": "array", "items": {
                            "type": "object", "required": ["id"],
                            "properties": {
                                "id": {"type": "string"},
                                "shortDescription": {"type": "object", "required": ["text"]},
                                "defaultConfiguration": {"type": "object", "properties": {
                                    "level": {"enum": ["none", "note", "warning", "error"]}}},
                            }}},
                    }}}},
                "results": {"type": "array", "items": {
                    "type": "object",
                    "required": ["message"],
                    "properties": {
                        "ruleId": {"type": "string"},
                        "ruleIndex": {"type": "integer", "minimum": -1},
                        "level": {"enum": ["none", "note", "warning", "error"]},
                        "message": {"type": "object", "anyOf": [{"required": ["text"]}, {"required": ["id"]}]},
                        "locations": {"type": "array", "items": {"type": "object", "properties": {
                            "physicalLocation": {
                                "type": "object",
                                "anyOf": [{"required": ["address"]}, {"required": ["artifactLocation"]}],
                                "properties": {
                                    "artifactLocation": {"type": "object", "properties": {
                                        "uri": {"type": "string", "format": "uri-reference"}}},
                                    "region": {"type": "object", "properties": {
                                        "startLine": {"type": "integer", "minimum": 1},
                                        "startColumn": {"type": "integer", "minimum": 1}}},
                                }}}}},
                        "partialFingerprints": {"type": "object", "additionalProperties": {"type": "string"}},
                    }}},
            }}},
    },
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout with valid examples, a file with two documents (one bad) and a syntax error."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "manifests").mkdir()
    for f in (EXAMPLES / "iris").glob("*.yaml"):
        (tmp_path / "manifests" / f.name).write_text(f.read_text())
    (tmp_path / "manifests" / "bad.yaml").write_text(BAD_MODEL)
    (tmp_path / "manifests" / "broken.yaml").write_text("a: [1,\n")
    (tmp_path / "manifests" / "open.yaml").write_text(WARN_SERVICE)
    return tmp_path


def _report(project: Path) -> lmspec.Report:
    return lmspec.validate(["manifests"])


def test_every_format_is_selectable(project: Path) -> None:
    for fmt in FORMATS:
        result = CliRunner().invoke(main, ["validate", "manifests", "-o", fmt])
        assert result.exit_code == 2, (fmt, result.output)  # broken.yaml is a parse error
        assert "Traceback" not in result.output


def test_junit_one_suite_per_file_one_case_per_document(project: Path) -> None:
    report = _report(project)
    root = ET.fromstring(render(report, "junit"))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == set(report.files)
    bad = suites["manifests/bad.yaml"]
    cases = bad.findall("testcase")
    assert [c.get("name") for c in cases] == ["Model/Bad_Name", "Model/fine"]
    failure = cases[0].find("failure")
    assert failure is not None and cases[1].find("failure") is None
    assert failure.get("type") == "schema.pattern"
    assert failure.get("message", "").startswith("4:9: [schema.pattern]")
    assert "bad.yaml:7:3: error[schema.unknown-key] unknown key 'numClass'" in (failure.text or "")
    broken = suites["manifests/broken.yaml"].findall("testcase")
    assert [c.get("name") for c in broken] == ["parse"]
    assert broken[0].find("failure").get("type") == "parse.syntax"  # type: ignore[union-attr]
    # warnings are not failures unless --strict
    open_case = suites["manifests/open.yaml"].find("testcase")
    assert open_case is not None and open_case.find("failure") is None
    assert "inferenceservice.public-bind" in (open_case.findtext("system-out") or "")
    strict = ET.fromstring(render(report, "junit", strict=True))
    assert any(f.get("type") == "inferenceservice.public-bind" for f in strict.iter("failure"))
    assert int(root.get("tests", "0")) == sum(int(s.get("tests", "0")) for s in suites.values())
    assert int(root.get("failures", "0")) == 2


def test_junit_survives_control_characters() -> None:
    report = lmspec.validate_text('apiVersion: "\\x01\\x1b"\n', "odd\x07name.yaml")
    root = ET.fromstring(render(report, "junit"))
    assert root.find("testsuite/testcase/failure") is not None


def test_sarif_structure(project: Path) -> None:
    report = _report(project)
    doc = json.loads(render(report, "sarif"))
    jsonschema.validate(doc, SARIF_SUBSET, format_checker=jsonschema.FormatChecker())
    run = doc["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    assert [r["id"] for r in rules] == list(RULES)
    assert all(r["shortDescription"]["text"] == RULES[r["id"]].summary for r in rules)
    results = run["results"]
    assert len(results) == len(report.findings)
    for result, finding in zip(results, report.findings, strict=True):
        assert result["ruleId"] == finding.rule
        assert rules[result["ruleIndex"]]["id"] == finding.rule
        assert result["level"] == finding.severity
        loc = result["locations"][0]["physicalLocation"]
        assert loc["artifactLocation"]["uri"] == finding.file  # relative, forward slashes
        assert (loc["region"]["startLine"], loc["region"]["startColumn"]) == (finding.line, finding.column)
    by_rule = {r["ruleId"]: r for r in results}
    region = by_rule["schema.unknown-key"]["locations"][0]["physicalLocation"]["region"]
    assert (region["startLine"], region["startColumn"]) == (7, 3)
    # every region lies inside its file
    for r in results:
        loc = r["locations"][0]["physicalLocation"]
        lines = (project / loc["artifactLocation"]["uri"]).read_text().split("\n")
        assert loc["region"]["startLine"] <= len(lines)
        assert loc["region"]["startColumn"] <= len(lines[loc["region"]["startLine"] - 1]) + 1


def test_sarif_absolute_paths_become_relative(project: Path) -> None:
    report = lmspec.validate([str(project / "manifests" / "bad.yaml")])
    doc = json.loads(render(report, "sarif"))
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in doc["runs"][0]["results"]}
    assert uris == {"manifests/bad.yaml"}


def test_sarif_stdin_has_no_location() -> None:
    report = lmspec.validate(["-"], stdin_text="a: 1\n")
    doc = json.loads(render(report, "sarif"))
    jsonschema.validate(doc, SARIF_SUBSET)
    assert "locations" not in doc["runs"][0]["results"][0]


def test_github_annotations_and_step_summary(project: Path, tmp_path: Path) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    env = {**os.environ, "GITHUB_STEP_SUMMARY": str(summary)}
    result = CliRunner().invoke(main, ["validate", "manifests", "-o", "github"], env=env)
    assert result.exit_code == 2
    lines = result.output.splitlines()
    assert ("::error file=manifests/bad.yaml,line=7,col=3,title=schema.unknown-key::unknown key 'numClass' "
            "(at /spec/numClass). hint: did you mean 'numClasses'? (keys starting with 'x-' are extensions)") in lines
    assert any(line.startswith("::warning file=manifests/open.yaml,") for line in lines)
    broken = "::error file=manifests/broken.yaml,line=2,col=1,title=parse.syntax::"
    assert any(line.startswith(broken) for line in lines)
    text = summary.read_text()
    assert text.startswith("earlier step\n### lmspec validate: ❌ invalid")
    assert "| `manifests/bad.yaml:7:3` | error | `schema.unknown-key` | `/spec/numClass` |" in text


def test_github_paths_are_relative_to_the_checkout(project: Path) -> None:
    report = lmspec.validate([str(project / "manifests" / "bad.yaml")])
    annotations = render(report, "github").splitlines()[:-1]
    assert annotations and all(line.startswith("::error file=manifests/bad.yaml,") for line in annotations)


def test_github_escapes_workflow_command_syntax() -> None:
    report = lmspec.validate_text("apiVersion: lmspec.io/v1alpha1\nkind: Model\nmetadata: {name: a}\n"
                                  "spec: {task: classification, 'x:1,\\n%': 1, 'bad,key': 2}\n", "a,b:c.yaml")
    out = render(report, "github")
    line = next(x for x in out.splitlines() if "bad%2Ckey" in x or "bad,key" in x)
    assert line.startswith("::error file=a%2Cb%3Ac.yaml,line=4,col=")
    assert "\n" not in line and "unknown key 'bad,key'" in line  # commas in the message stay


def test_step_summary_is_bounded(project: Path) -> None:
    report = _report(project)
    text = step_summary(report, limit=1)
    assert text.count("\n| `") == 1 and "more finding(s) not shown" in text


def test_json_is_versioned(project: Path) -> None:
    doc = json.loads(render(_report(project), "json"))
    assert doc["version"] == 1 and doc["valid"] is False
    assert {f["rule"] for f in doc["findings"]} >= {"parse.syntax", "schema.unknown-key"}
