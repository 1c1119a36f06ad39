"""``lmspec convert`` and :mod:`lmspec.convert`: files, comments, order, refusals, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from lmspec.cli import main
from lmspec.convert import ConversionRefused, UnknownVersion, convert_files, convert_text

ROOT = Path(__file__).resolve().parents[2]

COMMENTED = """\
# lmspec serve examples/iris
apiVersion: lmspec.io/v1alpha1   # the version
kind: InferenceService
metadata:
  name: iris
  labels: {team: "ml"}   # quoted on purpose
spec:
  # the model the job exports
  model:
    trainingJob: iris-train   # by name
  server:
    port: 8080
    gracePeriodSeconds: 10.0    # seconds, written as a float
    x-note: kept
  batching: {maxQueueDelayMicroseconds: 500, maxBatchSize: 8}
  protocols:
    - oip-v2
"""


def test_comments_order_and_style_survive_both_ways() -> None:
    beta = convert_text(COMMENTED, "v1beta1", file="serve.yaml")
    assert beta.changed and beta.losses == []
    assert beta.text == """\
# lmspec serve examples/iris
apiVersion: lmspec.io/v1beta1    # the version
kind: InferenceService
metadata:
  name: iris
  labels: {team: "ml"}   # quoted on purpose
spec:
  # the model the job exports
  model:
    type: trainingJob         # by name
    name: iris-train
  server:
    port: 8080
    gracePeriod: 10s            # seconds, written as a float
    x-note: kept
  batching: {maxQueueDelay: 500us, maxBatchSize: 8}
  protocols:
    - oip-v2
"""
    back = convert_text(beta.text, "v1alpha1", file="serve.yaml")
    # All as written, but for the float 10.0, which comes back as the same number written 10.
    assert back.text == COMMENTED.replace("gracePeriodSeconds: 10.0    #", "gracePeriodSeconds: 10      #")


def test_converting_to_the_same_version_changes_nothing() -> None:
    result = convert_text(COMMENTED, "v1alpha1")
    assert (result.changed, result.text) == (False, COMMENTED)
    beta = convert_text(COMMENTED, "v1beta1").text
    again = convert_text(beta, "lmspec.io/v1beta1")
    assert (again.changed, again.text) == (False, beta)


def hub_text(path: str) -> str:
    """An example manifest (written in v1beta1) converted to v1alpha1."""
    return convert_text((ROOT / path).read_text(encoding="utf-8"), "v1alpha1").text


def test_multi_document_files_keep_their_order_and_indentation() -> None:
    # The examples are v1beta1: their v1alpha1 form is the starting point here.
    text = hub_text("examples/iris/model.yaml") + "---\n" + hub_text("examples/iris/dataset.yaml")
    beta = convert_text(text, "v1beta1").text
    kinds = [line for line in beta.splitlines() if line.startswith("kind:")]
    assert kinds == ["kind: Model", "kind: Dataset"]
    assert convert_text(beta, "v1alpha1").text == text


def test_a_mixed_file_converts_only_what_needs_it_and_checks_each_document_by_its_version() -> None:
    beta = "apiVersion: lmspec.io/v1beta1\nkind: Dataset\nmetadata: {name: d}\n" \
        "spec:\n  sources: [{path: a.csv}]\n  splits: {type: file}\n"
    alpha = "apiVersion: lmspec.io/v1alpha1\nkind: Dataset\nmetadata: {name: e}\n" \
        "spec:\n  sources: [{path: b.csv}]\n  splits: {by: ratio}   # the default\n"
    text = f"{beta}---\n---\n# nothing above\n{alpha}"
    result = convert_text(text, "v1beta1", file="mixed.yaml")
    # The empty document between them means nothing, and is left out.
    converted = alpha.replace("1alpha1", "1beta1").replace("{by: ratio}   #", "{type: ratio} #")
    assert result.text == f"{beta}---\n# nothing above\n{converted}"
    with pytest.raises(ConversionRefused) as bad:
        convert_text(text.replace("{by: ratio}", "{by: sideways}"), "v1beta1", file="mixed.yaml")
    assert [(p.line, p.field) for p in bad.value.problems] == [(15, "/spec/splits/by")]


def test_files_and_directories_go_to_the_output_directory(tmp_path: Path) -> None:
    src = tmp_path / "iris"
    src.mkdir()
    for path in sorted((ROOT / "examples/iris").glob("*.yaml")):
        (src / path.name).write_text(hub_text(f"examples/iris/{path.name}"), encoding="utf-8")
    results = convert_files([src], "v1beta1", out_dir=tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in src.glob("*.yaml"))
    assert all(r.changed for r in results)
    assert "type: ratio" in (tmp_path / "out/dataset.yaml").read_text(encoding="utf-8")
    convert_files([tmp_path / "out"], "v1alpha1", out_dir=tmp_path / "back")
    for path in src.glob("*.yaml"):
        assert (tmp_path / "back" / path.name).read_text(encoding="utf-8") == path.read_text(encoding="utf-8")


def test_a_directory_selects_what_validate_selects_never_run_outputs(tmp_path: Path) -> None:
    """A run directory below a directory argument holds the runtime's own manifests (rendered,
    exported): converting the directory leaves them, as ``lmspec validate`` does."""
    from lmspec.validator.core import OUTPUT_MARKER

    src = tmp_path / "iris"
    (src / "runs/iris-train/export").mkdir(parents=True)
    (src / "model.yaml").write_text(hub_text("examples/iris/model.yaml"), encoding="utf-8")
    (src / "runs/iris-train" / OUTPUT_MARKER).write_text("", encoding="utf-8")
    (src / "runs/iris-train/rendered.yaml").write_text(hub_text("examples/iris/model.yaml"), encoding="utf-8")
    (src / "runs/iris-train/export/model.yaml").write_text(hub_text("examples/iris/model.yaml"), encoding="utf-8")
    results = convert_files([src], "v1beta1", out_dir=tmp_path / "out")
    assert [r.path for r in results] == [str(src / "model.yaml")]
    assert sorted(str(p.relative_to(tmp_path / "out")) for p in (tmp_path / "out").rglob("*")) == ["model.yaml"]


INVALID = """\
apiVersion: lmspec.io/v1alpha1
kind: InferenceService
metadata: {name: s}
spec:
  model: {trainingJob: t, path: also}
"""

def test_refusals_name_file_line_and_field(tmp_path: Path) -> None:
    with pytest.raises(ConversionRefused) as bad:
        convert_text(INVALID, "v1beta1", file="svc.yaml")
    assert str(bad.value.problems[0]).startswith("svc.yaml:5:")
    assert "inferenceservice.model-source" in str(bad.value)

    with pytest.raises(ConversionRefused) as unknown:
        convert_text("apiVersion: lmspec.io/v2\nkind: Model\n", "v1beta1", file="m.yaml")
    assert str(unknown.value).startswith("m.yaml:1:13: apiVersion: 'lmspec.io/v2' is not a version")

    beta_fraction = "apiVersion: lmspec.io/v1beta1\nkind: InferenceService\nmetadata: {name: s}\nspec:\n" \
        "  model: {type: directory, path: export}\n  batching:\n    maxQueueDelay: 1.5us\n"
    with pytest.raises(ConversionRefused) as fraction:
        convert_text(beta_fraction, "v1alpha1", file="s.yaml")
    assert str(fraction.value) == ("s.yaml:7:20: /spec/batching/maxQueueDelay: maxQueueDelay must be a multiple of "
                                   "1us, got 1.5us [schema.bound]")

    beta_invalid = "apiVersion: lmspec.io/v1beta1\nkind: Model\nmetadata: {name: m}\nspec:\n  task: causal-lm\n"
    with pytest.raises(ConversionRefused) as wrong:
        convert_text(beta_invalid, "v1alpha1", file="m.yaml")
    assert any(str(p).startswith("m.yaml:5:9: /spec/task:") for p in wrong.value.problems), wrong.value

    with pytest.raises(UnknownVersion, match="did you mean 'v1beta1'"):
        convert_text(INVALID, "v1beta2")


def test_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    (tmp_path / "serve.yaml").write_text(COMMENTED, encoding="utf-8")
    printed = runner.invoke(main, ["convert", str(tmp_path / "serve.yaml"), "--to", "v1beta1"])
    assert printed.exit_code == 0, printed.output
    assert printed.stdout == convert_text(COMMENTED, "v1beta1").text

    out = str(tmp_path / "o")
    written = runner.invoke(main, ["convert", str(tmp_path / "serve.yaml"), "--to", "v1beta1", "-o", out])
    assert written.exit_code == 0 and (tmp_path / "o/serve.yaml").is_file()
    assert "converted:" in written.stderr

    unknown = runner.invoke(main, ["convert", str(tmp_path / "serve.yaml"), "--to", "v1beta3"])
    assert unknown.exit_code == 2
    assert "did you mean 'v1beta1'?" in unknown.stderr and "Traceback" not in unknown.output

    (tmp_path / "bad.yaml").write_text(INVALID, encoding="utf-8")
    refused = runner.invoke(main, ["convert", str(tmp_path / "bad.yaml"), "--to", "v1beta1"])
    assert refused.exit_code == 1
    assert "bad.yaml:5:" in refused.stderr and "nothing converted" in refused.stderr

