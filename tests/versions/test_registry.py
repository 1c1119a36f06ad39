"""The registry of API versions: look-ups, did-you-mean, and what importing it costs."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from lmspec import schemagen, standard, versions

LMSPEC = Path(__file__).resolve().parents[2] / "runner" / "lmspec"


def test_the_registered_versions() -> None:
    assert versions.names() == ["lmspec.io/v1alpha1", "lmspec.io/v1beta1"]
    hub, beta = versions.get("v1alpha1"), versions.get("lmspec.io/v1beta1")
    assert hub.hub and not beta.hub and versions.HUB == standard.HUB_VERSION == hub.api_version
    assert hub.deprecated_by == beta.api_version and "2 minor releases" in hub.policy
    assert hub.converter() is None and beta.converter() is not None
    assert set(beta.models()) == {"Model", "Dataset", "TrainingJob", "InferenceService"}
    assert versions.find("v2") is None


def test_an_unknown_version_gets_a_did_you_mean() -> None:
    with pytest.raises(KeyError, match=r"'v1beta2'; did you mean 'v1beta1'\? versions: v1alpha1, v1beta1"):
        versions.get("v1beta2")
    with pytest.raises(ValueError, match="hub"):
        versions.unregister(versions.HUB)


def test_standard_keeps_its_names_and_converts_to_the_hub() -> None:
    assert standard.VERSIONS[versions.HUB] == standard.KINDS  # every registered version is read
    assert list(standard.VERSIONS) == versions.names()
    doc, losses = standard.to_hub({"apiVersion": "lmspec.io/v1beta1", "kind": "Model", "metadata": {"name": "m"},
                                   "spec": {"task": "causalLm"}})
    assert (doc["apiVersion"], doc["spec"]["task"], losses) == ("lmspec.io/v1alpha1", "causal-lm", [])
    for name in standard.__all__:
        assert getattr(standard, name) is not None


def test_schemas_are_generated_per_version() -> None:
    beta = schemagen.kind_schema("Model", "v1beta1")
    assert beta["$id"] == "https://lmspec.io/schemas/v1beta1/model.schema.json"
    assert schemagen.kind_schema("Model")["$id"] == "https://lmspec.io/schemas/v1alpha1/model.schema.json"
    assert "spec.architecture[type=pretrained].source[type=hub].uri" in {f.path for f in schemagen.walk(beta)}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            out.add("." * node.level + (node.module or ""))
    return out


@pytest.mark.parametrize("module", ["versions.py", "conversion/__init__.py", "conversion/v1beta1.py"])
def test_the_registry_and_conversions_import_neither_pydantic_nor_models(module: str) -> None:
    # The models are imported by dotted path on first use, so the validator can read the
    # registry (and convert documents) without paying for pydantic.
    imported = _imports(LMSPEC / module)
    assert not {m for m in imported if m.split(".")[0] in ("pydantic", "torch")}
    assert not {m for m in imported if m.lstrip(".").startswith(("v1alpha1", "v1beta1")) and "_plain" not in m}
