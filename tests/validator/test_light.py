"""The validator's compiled checks behave exactly as the models do.

``lmspec validate`` runs each kind's validation schema on pydantic-core with light classes in
place of the models (:mod:`lmspec.manifests.light`). For every document of the conformance suite
and the examples, and for mutations of the examples, the two must raise the same errors (type,
location, message, context, input) or build the same object, defaults included.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from pydantic import BaseModel, ValidationError
from strategies import DOCUMENTS, mutated_data

from lmspec.conformance import load_suite
from lmspec.manifests import light
from lmspec.standard import VERSIONS
from lmspec.validator.parse import ParseError, parse_text

ROOT = Path(__file__).resolve().parents[2]
compiled_only = pytest.mark.skipif(
    not light.usable() and not os.environ.get("LMSPEC_REQUIRE_COMPILED"),
    reason="the compiled checks were made for another pydantic-core or other models; the validator "
    "uses the models (python -m lmspec.schemagen compiles them again)")


def test_the_compiled_checks_are_in_use_where_required() -> None:
    """scripts/test.sh (and so CI) requires them: a switch to the slower path is never silent."""
    from pydantic_core import __version__

    from lmspec.manifests import compiled

    if not os.environ.get("LMSPEC_REQUIRE_COMPILED"):
        pytest.skip("LMSPEC_REQUIRE_COMPILED is not set (scripts/test.sh sets it)")
    assert light.usable(), (
        f"the compiled checks were made for pydantic-core {compiled.PYDANTIC_CORE} and these models' source "
        f"(pydantic-core {__version__} is installed): run python -m lmspec.schemagen, or install the "
        "pydantic release they were made for")


def hub_model() -> dict[str, Any]:
    """An example's Model in the hub's version, whichever version the example is written in."""
    from lmspec.standard import to_hub

    return dict(to_hub(next(d for d in DOCUMENTS if d["kind"] == "Model"))[0])


def _suite_documents() -> list[Any]:
    docs: list[Any] = []
    cases = [c for version in ("v1alpha1", "v1beta1") for c in load_suite(ROOT / "conformance" / version)]
    for case in cases:
        for name, raw in case.raw_documents():
            try:
                docs.extend(d.data for d in parse_text(raw.decode("utf-8"), name))
            except (ParseError, UnicodeDecodeError):
                continue
    return docs


def _plain(value: Any) -> Any:
    """Objects as comparable data: class name, attributes, fields set and extensions."""
    if isinstance(value, BaseModel):
        fields = {k: _plain(getattr(value, k)) for k in type(value).model_fields}
        return (type(value).__name__, fields, sorted(value.model_fields_set), _plain(value.__pydantic_extra__ or {}))
    if isinstance(value, light.Light):
        fields = {k: _plain(v) for k, v in vars(value).items()}
        return (type(value).__name__, fields, sorted(value.model_fields_set), _plain(value.extensions))
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return (type(value).__name__, value)


def _outcome(validate: Any, data: Any) -> Any:
    try:
        return "valid", _plain(validate(data, by_alias=True, by_name=False))
    except ValidationError as exc:
        return "invalid", exc.errors(include_url=False)


def _same(data: Any) -> None:
    if not isinstance(data, dict):
        return
    version, kind = data.get("apiVersion"), data.get("kind")
    if not isinstance(version, str) or version not in VERSIONS or not isinstance(kind, str):
        return
    kinds = VERSIONS[version]
    if kind not in kinds:
        return
    model = kinds[kind].__pydantic_validator__.validate_python
    compiled = light.checker(data["apiVersion"], kind).validate_python
    assert _outcome(compiled, data) == _outcome(model, data)


@compiled_only
def test_every_conformance_and_example_document() -> None:
    docs = _suite_documents() + DOCUMENTS
    assert len(docs) > 100
    checked = 0
    for data in docs:
        _same(data)
        checked += isinstance(data, dict) and data.get("kind") in ("Model", "Dataset", "TrainingJob",
                                                                   "InferenceService")
    assert checked > 100


@compiled_only
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_data())
def test_mutated_examples(data: dict[str, Any]) -> None:
    _same(data)


@pytest.mark.parametrize(("module", "name"), [("model", "Transformer"), ("trainingjob", "Zero"),
                                              ("dataset", "ChatFields")])
def test_a_light_class_has_its_models_fields(module: str, name: str) -> None:
    import importlib

    model = getattr(importlib.import_module(f"lmspec.v1alpha1.{module}"), name)
    fields = light.model_class(name).model_fields
    assert list(fields) == list(model.model_fields)
    for n, f in model.model_fields.items():
        assert fields[n].alias == (f.alias or n)
        if not f.is_required() and f.default_factory is None:
            assert fields[n].default == f.default


@compiled_only
def test_isinstance_holds_for_the_model_and_its_light_twin() -> None:
    from lmspec import standard

    data = hub_model()
    twin = light.checker(data["apiVersion"], "Model").validate_python(data, by_alias=True, by_name=False)
    model = standard.Model.model_validate(data, by_alias=True, by_name=False)
    assert isinstance(twin, light.Model) and isinstance(model, light.Model)
    assert not isinstance(twin, light.Dataset) and not isinstance(model, light.Dataset)
    assert isinstance(twin, light.Light) and not isinstance(model, light.Light)


def test_without_usable_compiled_checks_the_models_give_the_same_report(monkeypatch: pytest.MonkeyPatch) -> None:
    import lmspec
    from lmspec.manifests import compiled
    from lmspec.validator import schema

    inputs = [str(ROOT / "examples")]
    texts = [case.raw_documents()[0][1].decode("utf-8", "replace")
             for case in load_suite(ROOT / "conformance" / "v1alpha1") if not case.valid][:40]

    def reports() -> list[Any]:
        light.clear_caches()
        for cached in (schema._key_homes, schema._all_tags):
            cached.cache_clear()
        reports = [lmspec.validate(inputs, references=False)]
        reports += [lmspec.validate_text(t, "case.yaml") for t in texts]
        return [(r.exit_code(), [f.to_dict() for f in r.findings]) for r in reports]

    fast = reports()
    monkeypatch.setattr(compiled, "PYDANTIC_CORE", "0.0.0")
    slow = reports()
    assert not light.usable()
    assert slow == fast
    assert sum(1 for _, findings in fast[1:] if findings) > 20
    monkeypatch.undo()
    reports()


def test_validate_says_when_it_falls_back_to_the_models(monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from lmspec.cli import main

    monkeypatch.setattr(light, "usable", lambda version=None: False)
    result = CliRunner().invoke(main, ["validate", str(ROOT / "examples" / "iris" / "model.yaml")])
    assert result.exit_code == 0, result.output
    assert "validated with the standard's models, not the compiled checks" in result.stderr
    monkeypatch.undo()
    result = CliRunner().invoke(main, ["validate", str(ROOT / "examples" / "iris" / "model.yaml")])
    assert "compiled checks" not in result.stderr


@compiled_only
def test_light_classes_belong_to_their_api_version() -> None:
    """The compiled checks build each apiVersion's objects from classes of that version: a model
    of the same name in another version is another type (so a second version can be compiled)."""
    data = hub_model()
    twin = light.checker(data["apiVersion"], "Model").validate_python(data, by_alias=True, by_name=False)
    assert type(twin) is light.model_class("Model", data["apiVersion"]) and type(twin)._api_version == light.HUB
    other = light.model_class("Model", "lmspec.io/v1beta1")
    assert other is not type(twin) and not isinstance(twin, other)
    assert isinstance(VERSIONS[data["apiVersion"]]["Model"].model_validate(data, by_alias=True, by_name=False),
                      light.Model)


def test_load_validates_each_manifest_once_with_the_models() -> None:
    """``lmspec.load`` gives the runtime's pydantic objects from one validation (the models'),
    not the compiled checks' light objects validated again by the models."""
    import lmspec

    light.clear_caches()
    manifests = lmspec.load([str(ROOT / "examples" / "iris")])
    assert manifests.manifests and all(isinstance(m.obj, BaseModel) for m in manifests.manifests)
    assert light._compiled_checker.cache_info().misses == 0
