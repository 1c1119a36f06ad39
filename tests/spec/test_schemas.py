"""The published JSON Schemas: current, documented, and in agreement with the validator."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from lmspec import schemagen, versions
from lmspec.conversion import convert
from lmspec.manifests.document import Document, Loc
from lmspec.v1alpha1 import KINDS
from lmspec.validator.parse import parse_file
from lmspec.validator.schema import check_document

ROOT = Path(__file__).resolve().parents[2]
# Each example's own manifests, never what running one leaves below it (runs/<job>/).
EXAMPLE_FILES = sorted((ROOT / "examples").glob("*/*.yaml"))


def properties(schema: Any, where: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property schema anywhere in a schema, with a readable location."""
    if isinstance(schema, dict):
        for name, prop in schema.get("properties", {}).items():
            yield f"{where}/properties/{name}", prop
        for key, value in schema.items():
            if key in ("examples", "default", "const", "enum"):
                continue
            if key == "oneOf" and "properties" in schema:
                continue  # constraints over an object's own properties ("exactly one of"), not new ones
            yield from properties(value, f"{where}/{key}")
    elif isinstance(schema, list):
        for i, value in enumerate(schema):
            yield from properties(value, f"{where}/{i}")


def test_committed_schemas_are_current() -> None:
    stale = [p for p in schemagen.drifted(ROOT) if p.suffix == ".json"]
    assert stale == [], "run: python -m lmspec.schemagen"


def test_one_schema_per_kind_and_a_bundle(published: dict[str, dict[str, Any]]) -> None:
    assert set(published) == {schemagen.filename(k) for k in KINDS} | {schemagen.BUNDLE}
    for name, schema in published.items():
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"https://lmspec.io/schemas/v1alpha1/{name}"
        assert schema["title"] and schema["description"]
        Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("kind", list(KINDS))
def test_kind_schemas_are_closed_with_extensions(kind: str, published: dict[str, dict[str, Any]]) -> None:
    schema = published[schemagen.filename(kind)]
    objects = [schema, *schema["$defs"].values()]
    for obj in objects:
        assert obj["additionalProperties"] is False, obj.get("title")
        assert obj["patternProperties"] == {"^x-": {}}


def test_every_property_has_a_description_and_examples(published: dict[str, dict[str, Any]]) -> None:
    missing = [f"{name}{where}" for name, schema in published.items()
               for where, prop in properties(schema)
               if not prop.get("description") or not prop.get("examples")]
    assert missing == []


def test_no_generated_titles_on_properties(published: dict[str, dict[str, Any]]) -> None:
    titled = [f"{name}{where}" for name, schema in published.items()
              for where, prop in properties(schema) if "title" in prop]
    assert titled == []


def test_examples_and_defaults_validate_against_their_property(published: dict[str, dict[str, Any]]) -> None:
    bad = []
    for name, schema in published.items():
        defs = schema.get("$defs", {})
        for where, prop in properties(schema):
            validator = Draft202012Validator({**prop, "$defs": defs})
            values = [("example", e) for e in prop["examples"]]
            if "default" in prop:
                values.append(("default", prop["default"]))
            bad += [f"{name}{where} {label} {value!r}" for label, value in values
                    if not validator.is_valid(value)]
    assert bad == []


def test_example_manifests_exist() -> None:
    assert EXAMPLE_FILES, "no example manifests found"


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_bundle_accepts_each_example(path: Path, published: dict[str, dict[str, Any]]) -> None:
    """Each example against the published schemas of its version, and, converted, of v1alpha1."""
    for doc in parse_file(path):
        own = versions.get(doc.data["apiVersion"])
        own_dir = ROOT / own.schema_dir
        bundle = Draft202012Validator(json.loads((own_dir / schemagen.BUNDLE).read_text(encoding="utf-8")))
        errors = [f"{e.json_path}: {e.message}" for e in bundle.iter_errors(doc.data)]
        assert errors == []
        kind_file = own_dir / schemagen.filename(doc.data["kind"])
        assert Draft202012Validator(json.loads(kind_file.read_text(encoding="utf-8"))).is_valid(doc.data)
        hub = _hub(doc.data)
        assert Draft202012Validator(published[schemagen.BUNDLE]).is_valid(hub)
        assert Draft202012Validator(published[schemagen.filename(hub["kind"])]).is_valid(hub)


def _hub(data: dict[str, Any]) -> dict[str, Any]:
    """An example manifest (written in v1beta1) as v1alpha1, the version these tests are about."""
    out, losses = convert(data, versions.HUB)
    assert losses == []
    hub: dict[str, Any] = out
    return hub


def _iris(kind: str) -> dict[str, Any]:
    for path in EXAMPLE_FILES:
        for doc in parse_file(path):
            if doc.data.get("kind") == kind:
                return _hub(doc.data)
    raise AssertionError(f"no {kind} example")


def test_bundle_rejects_a_wrong_or_missing_kind(published: dict[str, dict[str, Any]]) -> None:
    bundle = Draft202012Validator(published[schemagen.BUNDLE])
    model = _iris("Model")
    assert bundle.is_valid(model)
    assert not bundle.is_valid({**model, "kind": "Dataset"})
    assert not bundle.is_valid({**model, "kind": "Pipeline"})
    assert not bundle.is_valid({k: v for k, v in model.items() if k != "kind"})
    assert not bundle.is_valid({**model, "apiVersion": "lmspec.io/v1"})


def _set(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    out = copy.deepcopy(data)
    node = out
    keys = path.split(".")
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
    return out


AGREEMENT = [
    # (kind, dotted path, value, valid)
    ("TrainingJob", "spec.zero.reduceBucketSize", 5e8, True),
    ("TrainingJob", "spec.zero.reduceBucketSize", 5.5, False),
    ("TrainingJob", "spec.zero.reduceBucketSize", 0, False),
    ("TrainingJob", "spec.zero.stage", 2.0, True),
    ("TrainingJob", "spec.zero.stage", True, False),
    ("TrainingJob", "spec.zero.stage", 4, False),
    ("TrainingJob", "spec.seed", "42", False),
    ("TrainingJob", "spec.stopping.maxSteps", None, True),
    ("TrainingJob", "spec.stopping.epochs", None, False),
    ("TrainingJob", "spec.optimizer.lr", 0, False),
    ("TrainingJob", "spec.optimizer.lr", True, False),
    ("TrainingJob", "spec.resources.memoryPerDevice", "80GiB", True),
    ("TrainingJob", "spec.resources.memoryPerDevice", "80GiB\n", False),
    ("TrainingJob", "spec.x-team", {"any": ["thing"]}, True),
    ("TrainingJob", "spec.batch.x-note", "tuned", True),
    ("TrainingJob", "spec.batch.microBatchSise", 4, False),
    ("Dataset", "spec.splits.seed", 5.0, True),
    ("Dataset", "spec.splits.ratios", {"train": 1.0}, True),
    ("Dataset", "spec.splits.ratios", {"training": 1.0}, False),
    ("Dataset", "metadata.name", "Iris", False),
    ("Dataset", "metadata.name", "iris\n", False),
    ("Dataset", "metadata.labels", {"x-a": "b"}, True),
    ("Dataset", "metadata.labels", {"a": 1}, False),
    ("Model", "spec.architecture", {"type": "sequential", "layers": [{"type": "gelu"}]}, True),
    ("Model", "spec.architecture", {"type": "sequential", "layers": [{"type": "linear"}]}, False),
    ("Model", "spec.architecture", {"type": "mlp", "layers": []}, False),
    ("Model", "spec.architecture", {"hiddenSizes": [3]}, False),
    ("Model", "spec.numClasses", 1, False),
    ("InferenceService", "spec.auth.apiKeys", [{"env": "KEYS"}, "inline"], True),
    ("InferenceService", "spec.auth.apiKeys", [{"env": "1KEYS"}], False),
    ("InferenceService", "spec.server.port", 65536, False),
    ("InferenceService", "spec.protocols", [], False),
]


@pytest.mark.parametrize(("kind", "path", "value", "valid"), AGREEMENT,
                         ids=[f"{k}.{p}={v!r}" for k, p, v, _ in AGREEMENT])
def test_schema_and_validator_agree(kind: str, path: str, value: Any, valid: bool,
                                    published: dict[str, dict[str, Any]]) -> None:
    data = _set(_iris(kind), path, value)
    schema_ok = Draft202012Validator(published[schemagen.BUNDLE]).is_valid(data)
    obj, findings = check_document(Document(data, "<test>", 0, Loc((1, 1))))
    assert (schema_ok, obj is not None) == (valid, valid), findings


def test_snake_case_keys_are_rejected_by_the_validator_as_by_the_schema(
        published: dict[str, dict[str, Any]]) -> None:
    data = _set(_iris("TrainingJob"), "spec.batch", {"micro_batch_size": 4})
    assert not Draft202012Validator(published[schemagen.BUNDLE]).is_valid(data)
    obj, _ = check_document(Document(data, "<test>", 0, Loc((1, 1))))
    assert obj is None


def _every_manifest() -> Iterator[dict[str, Any]]:
    """The examples' documents in the version they are written in, and each converted to every
    other registered version (read as lmspec reads them: YAML 1.2, so ``3e-3`` is a number)."""
    for path in EXAMPLE_FILES:
        for document in parse_file(str(path)):
            doc = document.data
            if not isinstance(doc, dict):
                continue
            yield doc
            for v in versions.all_versions():
                if v.schema_dir and v.api_version != doc["apiVersion"]:
                    yield convert(doc, v.api_version)[0]


def test_the_all_versions_bundle_selects_by_api_version_then_kind() -> None:
    """schemas/lmspec.schema.json: one file for editors and CI whatever version a file is in."""
    bundle = json.loads((ROOT / "schemas" / schemagen.BUNDLE).read_text())
    Draft202012Validator.check_schema(bundle)
    check = Draft202012Validator(bundle)
    docs = list(_every_manifest())
    assert {d["apiVersion"] for d in docs} == {v.api_version for v in versions.all_versions() if v.schema_dir}
    for doc in docs:
        errors = [e.message for e in check.iter_errors(doc)]
        assert errors == [], (doc["apiVersion"], doc["kind"], doc["metadata"]["name"], errors[:3])
    # Each version is held to its own schema: a field of one version is unknown to the other.
    alpha = "lmspec.io/v1alpha1"
    beta = next(d for d in docs if d["apiVersion"].endswith("v1beta1")
                and {**convert(d, alpha)[0], "apiVersion": d["apiVersion"]} != d)
    assert list(check.iter_errors({**beta, "apiVersion": alpha}))
    assert list(check.iter_errors({**beta, "apiVersion": "lmspec.io/v9"}))
