"""The validator's seams: the public names of ``lmspec.validator.core``, the record every semantic
rule yields, and environment checks passed in rather than fixed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lmspec.validator.core as core
from lmspec.conformance.suite import load_suite
from lmspec.manifests.findings import Finding
from lmspec.manifests.manifest import Manifest
from lmspec.preflight import default_checks
from lmspec.validator import registry
from lmspec.validator.at import finding_at
from lmspec.validator.environment import EnvironmentChecks, Scope
from lmspec.validator.index import index_of
from lmspec.validator.layers import validate_documents
from lmspec.validator.parse import parse_text
from lmspec.validator.rules import CHECKS, Issue, run_checks
from lmspec.validator.schema import check_document

ROOT = Path(__file__).resolve().parents[2]

DATASET = """\
apiVersion: lmspec.io/v1alpha1
kind: Dataset
metadata: {name: d}
spec:
  sources: [{path: missing.csv}]
  features: [{name: x, dtype: float32}]
  target: {name: y, dtype: string, classes: [a, b]}
"""


def test_core_names_that_other_packages_import() -> None:
    assert set(core.__all__) == {
        "MANIFEST_SUFFIXES", "OUTPUT_MARKER", "Manifest", "ManifestSet", "ValidationFailed", "check_environment",
        "expand", "load", "parse_finding", "read", "skipped_note", "to_yaml_data", "typed",
        "validate", "validate_documents", "validate_text", "walk_glob"}
    assert all(hasattr(core, name) for name in core.__all__)


def test_every_semantic_rule_yields_an_issue_record() -> None:
    """Each rule function, on every semantic conformance case, yields :class:`Issue` (a named
    record that still unpacks as ``rule, path, message, hint``)."""
    fired: set[str] = set()
    for case in load_suite(ROOT / "conformance" / "v1alpha1", ["semantic"]):
        docs = [d for name, raw in case.raw_documents() for d in parse_text(raw.decode("utf-8"), name)]
        manifests = [Manifest(obj, doc) for doc in docs if (obj := check_document(doc)[0]) is not None]
        index = index_of(manifests)
        for m in manifests:
            for issue in run_checks(m.obj, index):
                assert type(issue) is Issue, (case.id, issue)
                rule, _path, message, _hint = issue
                assert rule == issue.rule and message == issue.message
                fired.add(issue.rule)
    semantic = {r.id for r in registry.RULES.values() if r.layer == "semantic"}
    assert fired == semantic
    assert sum(len(fns) for fns in CHECKS.values()) >= 30


def test_environment_runs_the_checks_passed_in(tmp_path: Path) -> None:
    docs = parse_text(DATASET, str(tmp_path / "d.yaml"))
    seen: list[tuple[str, tuple[str, ...]]] = []

    def only_this(m: Manifest, scope: Scope) -> Iterator[Finding]:
        seen.append((m.name, scope.roots))
        yield finding_at(m, registry.ENV_DATA, ("spec", "sources", 0), "checked by the check passed in")

    custom = validate_documents(docs, env_checks=EnvironmentChecks(manifest=(only_this,))).report
    custom.findings = [f for f in custom.findings if f.rule != "document.deprecated-version"]  # a v1alpha1 file
    assert [(f.rule, f.message) for f in custom.findings] == [("env.data", "checked by the check passed in")]
    assert seen and seen[0][0] == "d" and str(Path(tmp_path).resolve()) in seen[0][1]

    lmspecs = validate_documents(parse_text(DATASET, str(tmp_path / "d.yaml")), env_checks=default_checks()).report
    assert [f.rule for f in lmspecs.findings if f.rule != "document.deprecated-version"] == ["env.file-missing"]
    # Without checks passed in there is no environment layer: the validator holds none of its own.
    none = validate_documents(parse_text(DATASET, str(tmp_path / "d.yaml"))).report
    assert [f.rule for f in none.findings] == ["document.deprecated-version"]
