"""v1alpha1 → v1beta1 → v1alpha1 is the identity, and the v1beta1 in between is valid: for every
valid conformance case and generated manifests. Every example manifest (written in v1beta1) goes to
v1alpha1 and back the same way."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from jsonschema import Draft202012Validator
from version_strategies import hub_manifests

from lmspec.conversion import convert
from lmspec.convert.roundtrip import loader, to_plain
from lmspec.versions import get

ROOT = Path(__file__).resolve().parents[2]


def documents(text: str) -> list[dict[str, Any]]:
    """The manifests of a YAML text, read as ``lmspec convert`` reads them."""
    return [d for d in (to_plain(n) for n in loader(text).load_all(text)) if isinstance(d, dict)]


def _valid_case_sources() -> list[tuple[str, str]]:
    out = []
    for file in sorted((ROOT / "conformance" / "v1alpha1").rglob("*.yaml")):
        for case in yaml.safe_load(file.read_text(encoding="utf-8"))["cases"]:
            if case.get("valid"):
                sources = [case["source"]] if "source" in case else [
                    d["source"] for d in case.get("documents", []) if "source" in d]
                out += [(f"{case['id']}#{i}", src) for i, src in enumerate(sources)]
    return out


CASES = _valid_case_sources()
EXAMPLES = sorted(p for p in (ROOT / "examples").rglob("*.yaml") if "runs" not in p.parts)

V1BETA1 = get("v1beta1")
BUNDLE = ROOT / V1BETA1.schema_dir / "lmspec.schema.json"
SCHEMA = Draft202012Validator(json.loads(BUNDLE.read_text(encoding="utf-8")))
VERSIONS = ("v1alpha1", "v1beta1")


def schema_of(version: str) -> Draft202012Validator:
    bundle = ROOT / get(version).schema_dir / "lmspec.schema.json"
    return Draft202012Validator(json.loads(bundle.read_text(encoding="utf-8")))


SCHEMAS = {v: schema_of(v) for v in VERSIONS}


def assert_round_trip_via(doc: dict[str, Any], other: str) -> None:
    """``doc`` → ``other`` → its own version is the identity (key order included), and the
    document in between is valid in ``other``."""
    own = get(doc["apiVersion"]).name
    there, losses = convert(doc, other)
    assert losses == []
    assert there["apiVersion"] == f"lmspec.io/{other}"
    get(other).models()[there["kind"]].model_validate(there)
    assert [e.message for e in SCHEMAS[other].iter_errors(there)] == []
    back, losses = convert(there, own)
    assert losses == []
    assert back == doc
    assert json.dumps(numbers(back)) == json.dumps(numbers(doc))


def assert_round_trip(doc: dict[str, Any], *, order: bool = True) -> None:
    beta, losses = convert(doc, "v1beta1")
    assert losses == []
    assert beta["apiVersion"] == "lmspec.io/v1beta1"
    V1BETA1.models()[beta["kind"]].model_validate(beta)
    errors = [e.message for e in SCHEMA.iter_errors(beta)]
    assert errors == []
    back, losses = convert(beta, "v1alpha1")
    assert losses == []
    assert back == doc
    if order:  # the written key order too
        assert json.dumps(numbers(back)) == json.dumps(numbers(doc))


def numbers(value: Any) -> Any:
    """``value`` with whole floats as integers: a duration of ``5.0`` seconds comes back as ``5``,
    the same number (as JSON Schema and YAML's core schema count it)."""
    if isinstance(value, dict):
        return {k: numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [numbers(v) for v in value]
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


def test_there_are_cases_and_examples() -> None:
    assert len(CASES) > 100 and len(EXAMPLES) > 20


@pytest.mark.parametrize(("case", "source"), CASES, ids=[c for c, _ in CASES])
def test_valid_conformance_case_round_trips(case: str, source: str) -> None:
    for doc in documents(source):
        assert_round_trip(doc)


@pytest.mark.parametrize("path", EXAMPLES, ids=[str(p.relative_to(ROOT)) for p in EXAMPLES])
def test_example_round_trips_through_the_other_version(path: Path) -> None:
    docs = documents(path.read_text(encoding="utf-8"))
    assert docs
    for doc in docs:
        own = get(doc["apiVersion"]).name
        assert own == "v1beta1"  # the examples show the current version
        for other in VERSIONS:
            if other != own:
                assert_round_trip_via(doc, other)


@settings(max_examples=60, deadline=None)
@given(hub_manifests())
def test_generated_manifest_round_trips(doc: dict[str, Any]) -> None:
    get("v1alpha1").models()[doc["kind"]].model_validate(doc)  # the strategy draws valid manifests
    # Keys of an object that a change splits or merges (precision.fp16 → mode and lossScaling)
    # may come back in another order; the examples and conformance cases check the order.
    assert_round_trip(doc, order=False)


@settings(max_examples=60, deadline=None)
@given(hub_manifests())
def test_the_way_back_round_trips_too(doc: dict[str, Any]) -> None:
    beta, _ = convert(doc, "v1beta1")
    hub, losses = convert(beta, "v1alpha1")
    again, more = convert(hub, "v1beta1")
    assert (losses, more) == ([], [])
    assert again == beta


def test_a_shared_conversion_equals_a_copying_one_and_leaves_its_input_alone() -> None:
    """``convert(..., share=True)`` (the validator's, copying only what changes) gives what the
    copying conversion gives, both ways, and never writes into the document it was given."""
    docs = [d for _, src in CASES for d in documents(src)]
    docs += [d for path in EXAMPLES for d in documents(path.read_text(encoding="utf-8"))]
    assert len(docs) > 100
    for doc in docs:
        for to in VERSIONS:
            before = json.dumps(doc)
            shared = convert(doc, to, share=True)
            assert json.dumps(doc) == before, (doc["metadata"]["name"], to)
            assert shared == convert(doc, to), (doc["metadata"]["name"], to)
            back = convert(shared[0], doc["apiVersion"], share=True)[0]
            assert back == doc and json.dumps(doc) == before
