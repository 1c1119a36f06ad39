"""A schema error in one field does not hide the semantic findings of the same document, nor of
the documents that refer to it: all of them are reported in one run."""

from __future__ import annotations

from pathlib import Path

import lmspec

ROOT = Path(__file__).resolve().parents[2]
IRIS = ROOT / "examples" / "iris"

SERVICE = """\
apiVersion: lmspec.io/v1alpha1
kind: InferenceService
metadata: {name: svc}
spec:
  model: {trainingJob: iris-train}
  protocols: [oip-v2, openai]
  auth: {apiKeys: [sk-inline-secret-123]}
  server: {port: "8080"}
"""


def _rules(report: lmspec.Report) -> dict[str, str]:
    return {f.rule: f.pointer for f in report.findings}


def test_schema_and_semantic_findings_of_one_document_together(tmp_path: Path) -> None:
    (tmp_path / "svc.yaml").write_text(SERVICE)
    paths = [str(IRIS / n) for n in ("model.yaml", "dataset.yaml", "train.yaml")] + [str(tmp_path / "svc.yaml")]
    report = lmspec.validate(paths)
    found = _rules(report)
    assert found.get("schema.type") == "/spec/server/port", report.findings
    assert found.get("inferenceservice.inline-secret") == "/spec/auth/apiKeys/0", report.findings
    assert found.get("inferenceservice.protocol-task") == "/spec/protocols/1", report.findings
    inline = next(f for f in report.findings if f.rule == "inferenceservice.inline-secret")
    assert (inline.file, inline.line) == (str(tmp_path / "svc.yaml"), 7)


def test_a_broken_field_does_not_make_its_manifest_missing_for_others(tmp_path: Path) -> None:
    model = (IRIS / "model.yaml").read_text().replace("numClasses: 3", "numClasses: \"3\"")
    assert "\"3\"" in model
    (tmp_path / "model.yaml").write_text(model)
    paths = [str(tmp_path / "model.yaml"), str(IRIS / "dataset.yaml"), str(IRIS / "train.yaml")]
    report = lmspec.validate(paths)
    assert [f.rule for f in report.errors] == ["schema.type"], report.findings
    assert not lmspec.validate(paths).ok
