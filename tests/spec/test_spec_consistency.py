"""The prose spec, the rule registry and the schemas say the same thing.

Conventions checked here: in ``rules.md`` each rule is a heading ``### `rule.id` ``; anywhere in
the spec a rule id is written in backticks and starts with a rule layer prefix (``parse.``,
``schema.``, ``model.``, …); each field of a kind is a heading ``### `path` `` in its chapter.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from lmspec import checksgen, schemagen, versions
from lmspec.v1alpha1 import KINDS
from lmspec.validator.registry import RULES

ROOT = Path(__file__).resolve().parents[2]
SPEC = ROOT / "spec" / "v1alpha1"
PREFIXES = sorted({rule_id.split(".", 1)[0] for rule_id in RULES})
RULE_MENTION = re.compile(r"`((?:" + "|".join(map(re.escape, PREFIXES)) + r")\.[a-z0-9][a-z0-9-]*)`")
RULE_HEADING = re.compile(r"^### `([^`]+)`\s*$", re.MULTILINE)


def spec_texts() -> dict[str, str]:
    files = [*sorted((ROOT / "spec").rglob("*.md"))]
    return {str(p.relative_to(ROOT)): p.read_text(encoding="utf-8") for p in files}


def test_spec_documents_exist() -> None:
    names = {p.name for p in SPEC.glob("*.md")}
    assert {"README.md", "conventions.md", "rules.md", "versioning.md"} <= names
    assert {f"{k.lower()}.md" for k in KINDS} <= names
    assert (ROOT / "spec" / "adr" / "0001-camelcase-and-strict-yaml.md").is_file()


def test_every_rule_has_a_section_in_rules_md() -> None:
    headings = RULE_HEADING.findall((SPEC / "rules.md").read_text(encoding="utf-8"))
    missing = sorted(set(RULES) - set(headings))
    assert missing == [], "document these rules in spec/v1alpha1/rules.md"
    assert len(headings) == len(set(headings)), "a rule is documented twice"


def test_every_rule_section_describes_severity_and_layer() -> None:
    text = (SPEC / "rules.md").read_text(encoding="utf-8")
    sections = re.split(r"^### ", text, flags=re.MULTILINE)[1:]
    for section in sections:
        rule_id = section.split("`")[1]
        rule = RULES[rule_id]
        assert f"Severity: {rule.severity}. Layer: {rule.layer}." in section, rule_id
        assert "Fix:" in section, rule_id


def test_every_rule_id_mentioned_in_the_spec_exists() -> None:
    unknown = sorted({f"{name}: {m}" for name, text in spec_texts().items()
                      for m in RULE_MENTION.findall(text) if m not in RULES})
    assert unknown == []


@pytest.mark.parametrize("kind", list(KINDS))
def test_every_schema_field_is_documented_in_its_chapter(kind: str) -> None:
    text = (SPEC / f"{kind.lower()}.md").read_text(encoding="utf-8")
    headings = set(RULE_HEADING.findall(text))
    paths = [f.path for f in schemagen.walk(schemagen.kind_schema(kind))]
    assert paths, kind
    assert [p for p in paths if p not in headings] == []
    assert [h for h in headings if h not in paths] == [], "documented fields that do not exist"


def test_generated_sections_are_current() -> None:
    stale = [str(p.relative_to(ROOT)) for p in schemagen.drifted(ROOT) if p.suffix == ".md"]
    assert stale == [], "run: python -m lmspec.schemagen"


def test_check_mode_reports_a_drifted_file(tmp_path: Path) -> None:
    # A copy of the tree with one schema edited: --check must name it and fail.
    for rel in [d for v in versions.all_versions() for d in (v.schema_dir, v.spec_dir)]:
        for src in (ROOT / rel).iterdir():
            dst = tmp_path / rel / src.name
            dst.parent.mkdir(parents=True, exist_ok=True)
            dst.write_text(src.read_text(encoding="utf-8"), encoding="utf-8")
    bundle = tmp_path / "schemas" / schemagen.BUNDLE  # every version's, selected by apiVersion
    bundle.write_text((ROOT / "schemas" / schemagen.BUNDLE).read_text(encoding="utf-8"), encoding="utf-8")
    compiled = tmp_path / checksgen.PATH
    compiled.parent.mkdir(parents=True)
    compiled.write_text((ROOT / checksgen.PATH).read_text(encoding="utf-8"), encoding="utf-8")
    assert schemagen.main(["--check", "--root", str(tmp_path)]) == 0
    edited = tmp_path / "schemas/v1alpha1/model.schema.json"
    edited.write_text(edited.read_text(encoding="utf-8").replace("Kind of object.", "Kind."), encoding="utf-8")
    assert schemagen.drifted(tmp_path) == [edited]
    assert schemagen.main(["--check", "--root", str(tmp_path)]) == 1
    assert schemagen.main(["--root", str(tmp_path)]) == 0
    assert schemagen.drifted(tmp_path) == []
