from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

import lmspec
from lmspec.cli import main
from lmspec.validator.parse import parse_text

ROOT = Path(__file__).resolve().parents[2]
IRIS = ROOT / "examples" / "iris"
# The example's own manifests, never what running it leaves below the directory.
IRIS_FILES = [str(f) for f in sorted(IRIS.glob("*.yaml"))]

JOB = """\
apiVersion: lmspec.io/v1alpha1
kind: TrainingJob
metadata: {name: job}
x-owner: {team: ml}
spec:
  x-queue: gpu
  model: m
  dataset: d
  loss: {type: mse}
  optimizer: {lr: 1e-4, x-note: tuned}
  output: {dir: "1e-4"}
"""


def render(*args: str) -> tuple[int, str]:
    """Exit status and standard output: the manifests, or the findings (notes go to stderr)."""
    result = CliRunner().invoke(main, ["render", *args])
    return result.exit_code, result.stdout


def test_fills_every_default_in_schema_order_and_keeps_extensions(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(JOB, encoding="utf-8")
    code, out = render(str(path))
    assert code == 0, out
    [doc] = parse_text(out, "rendered.yaml")
    data = doc.data
    assert list(data) == ["apiVersion", "kind", "metadata", "spec", "x-owner"]
    spec = data["spec"]
    assert list(spec)[:5] == ["model", "dataset", "loss", "optimizer", "schedule"]
    assert spec["x-queue"] == "gpu"
    assert spec["optimizer"] == {"type": "adamw", "lr": 1e-4, "betas": [0.9, 0.999], "eps": 1e-8,
                                 "weightDecay": 0.0, "momentum": 0.0, "nesterov": False,
                                 "x-note": "tuned"}
    assert spec["zero"]["reduceBucketSize"] == 500_000_000
    assert spec["batch"]["microBatchSize"] == 8
    # A string that YAML 1.2 would read as a number stays a string.
    assert spec["output"]["dir"] == "1e-4"


def test_output_is_valid_and_a_fixed_point(tmp_path: Path) -> None:
    code, out = render(*IRIS_FILES)
    assert code == 0, out
    again = tmp_path / "rendered.yaml"
    again.write_text(out, encoding="utf-8")
    assert lmspec.validate([str(again)]).ok
    code2, out2 = render(str(again))
    assert (code2, out2) == (0, out)
    assert len(parse_text(out, "x.yaml")) == len(IRIS_FILES)


def test_json_format(tmp_path: Path) -> None:
    code, out = render(str(IRIS / "model.yaml"), "--format", "json")
    assert code == 0, out
    data = json.loads(out)
    assert data["kind"] == "Model"
    assert data["spec"]["paramDtype"] == "float32"
    assert data["spec"]["architecture"]["dropout"] == 0.0


def test_invalid_input_prints_findings_and_exits_1(tmp_path: Path) -> None:
    path = tmp_path / "job.yaml"
    path.write_text(JOB.replace("loss: {type: mse}", "loss: {type: mse, smoothing: 0.1}"), encoding="utf-8")
    code, out = render(str(path))
    assert code == 1
    assert f"{path}:9:" in out
    assert "error[schema.unknown-key]" in out
    assert "apiVersion" not in out.replace("at /apiVersion", "")  # only the deprecation warning names it


def test_unparsable_input_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("a: 1\na: 2\n", encoding="utf-8")
    code, out = render(str(path))
    assert code == 2
    assert "parse.duplicate-key" in out


def test_missing_references_only_with_require_refs(tmp_path: Path) -> None:
    code, _ = render(str(IRIS / "train.yaml"))
    assert code == 0
    code, out = render(str(IRIS / "train.yaml"), "--require-refs")
    assert code == 1
    assert "reference.missing" in out


def _without_round_trip_notes(doc: dict[str, Any]) -> dict[str, Any]:
    """A hub document without the annotations a conversion keeps to restore the other version's
    exact form (``lmspec.io/v1beta1-spec.precision``): a fully rendered document writes values
    (a disabled fp16's loss scale) that one version keeps and the other only annotates."""
    notes = doc["metadata"]["annotations"]
    doc["metadata"]["annotations"] = {k: v for k, v in notes.items() if not k.startswith("lmspec.io/v1")}
    return doc


def test_each_manifest_renders_in_its_own_version_to_the_same_hub_object(tmp_path: Path) -> None:
    """A v1beta1 file renders as v1beta1 with v1beta1's defaults, its v1alpha1 conversion as
    v1alpha1; both outputs load as the same hub objects."""
    from lmspec.convert import convert_files
    from lmspec.validator.core import load, to_yaml_data

    convert_files(IRIS_FILES, "v1alpha1", out_dir=tmp_path / "alpha")
    outputs: dict[str, list[dict[str, Any]]] = {}
    for version, files in (("lmspec.io/v1beta1", IRIS_FILES),
                           ("lmspec.io/v1alpha1", sorted(str(f) for f in (tmp_path / "alpha").glob("*.yaml")))):
        status, out = render(*files)
        assert status == 0, out
        docs = [d.data for d in parse_text(out, "out")]
        assert {d["apiVersion"] for d in docs} == {version}
        rendered = tmp_path / f"{version.rsplit('/', 1)[1]}.yaml"
        rendered.write_text(out, encoding="utf-8")
        outputs[version] = [_without_round_trip_notes(to_yaml_data(m.obj)) for m in load(rendered).manifests]
    beta = next(d for d in parse_text(render(*IRIS_FILES)[1], "out") if d.data["kind"] == "TrainingJob").data
    assert beta["spec"]["precision"]["mode"] == "fp32"  # v1beta1's own default, not fp16/bf16 flags
    assert outputs["lmspec.io/v1beta1"] == outputs["lmspec.io/v1alpha1"]
