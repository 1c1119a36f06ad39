from __future__ import annotations

from click.testing import CliRunner

from lmspec.cli import main


def explain(target: str, *options: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["explain", target, *options])
    return result.exit_code, result.output


def test_field_shows_type_description_default_constraints_example_and_children() -> None:
    code, out = explain("TrainingJob.spec.zero.offloadOptimizer")
    assert code == 0, out
    assert "FIELD:       spec.zero.offloadOptimizer" in out
    assert "TYPE:        object" in out
    assert "Optimizer-state offload" in out
    assert 'DEFAULT:     `{"device": "none", "nvmePath": null, "pinMemory": false}`' in out
    assert "CONSTRAINTS: OPTIONAL" in out
    assert 'EXAMPLE:     `{"device": "cpu"}`' in out
    children = out.split("FIELDS:")[1]
    assert "device" in children and "nvmePath" in children and "pinMemory" in children


def test_leaf_with_bounds() -> None:
    code, out = explain("TrainingJob.spec.optimizer.lr")
    assert code == 0
    assert "TYPE:        number" in out
    assert "DEFAULT:     `0.001`" in out
    assert "MUST be > 0" in out


def test_an_integer_without_an_upper_bound_shows_none() -> None:
    """Every integer is stored in 64 bits; that range is no constraint worth reading."""
    code, out = explain("InferenceService.spec.limits.maxTokens")
    assert code == 0, out
    assert "CONSTRAINTS: OPTIONAL; MUST be ≥ 1\n" in out
    assert "9223372036854775807" not in out and "≤" not in out


def test_a_union_with_a_constant_names_the_constant_as_a_value() -> None:
    code, out = explain("TrainingJob.spec.adapter.targetModules")
    assert code == 0, out
    assert 'TYPE:        list of string, `"all-linear"` or null\n' in out
    code, out = explain("TrainingJob.spec.validation.maxSamples")
    assert code == 0, out
    assert 'TYPE:        integer or `"all"`\n' in out


def test_kind_lists_top_level_fields() -> None:
    code, out = explain("inferenceservice")
    assert code == 0
    assert "KIND:        InferenceService" in out
    for name in ("apiVersion", "kind", "metadata", "spec"):
        assert f"\n  {name}" in out


def test_required_field_and_enum() -> None:
    code, out = explain("Model.spec.task")
    assert code == 0
    assert "VERSION:     lmspec.io/v1beta1" in out  # the newest version unless --api-version names one
    assert 'one of `"classification"`, `"regression"`, `"causalLm"`' in out
    assert "CONSTRAINTS: REQUIRED" in out
    code, out = explain("Model.spec.task", "--api-version", "v1alpha1")
    assert code == 0 and "VERSION:     lmspec.io/v1alpha1" in out
    assert 'one of `"classification"`, `"regression"`, `"causal-lm"`' in out


def test_api_version_picks_the_fields_and_names_unknown_versions() -> None:
    code, out = explain("InferenceService.spec.server.gracePeriod")
    assert code == 0 and 'DEFAULT:     `"30s"`' in out
    code, out = explain("InferenceService.spec.server.gracePeriodSeconds", "--api-version", "lmspec.io/v1alpha1")
    assert code == 0 and "TYPE:        number" in out
    code, out = explain("InferenceService.spec.server.gracePeriodSeconds")
    assert code == 2 and "--api-version" not in out
    code, out = explain("InferenceService.spec.server", "--api-version", "v1beta2")
    assert code == 2 and "unknown version 'v1beta2'; did you mean 'v1beta1'?" in out


def test_variants_lists_and_snake_case() -> None:
    code, out = explain("Model.spec.architecture.dropout")
    assert code == 0
    assert "spec.architecture[type=mlp].dropout" in out
    assert "spec.architecture[type=transformer].dropout" in out
    code, out = explain("Model.spec.architecture[type=mlp].hidden_sizes")
    assert code == 0
    assert "spec.architecture[type=mlp].hiddenSizes" in out
    assert "[type=transformer]" not in out
    code, out = explain("Dataset.spec.sources.sha256")
    assert code == 0
    assert "FIELD:       spec.sources[].sha256" in out


def test_unknown_path_suggests_and_exits_2() -> None:
    code, out = explain("TrainingJob.spec.zero.offloadOptimiser")
    assert code == 2
    assert "TrainingJob has no field 'spec.zero.offloadOptimiser'" in out
    assert "did you mean spec.zero.offloadOptimizer" in out


def test_unknown_kind_exits_2() -> None:
    code, out = explain("Trainingjobs.spec")
    assert code == 2
    assert "unknown kind" in out
