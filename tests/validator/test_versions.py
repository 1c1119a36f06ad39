"""The validator reads every registered apiVersion: v1beta1 documents are checked by v1beta1's own
schema checks, and by the rules on their hub conversion with the findings placed back on the
v1beta1 text; v1alpha1 documents carry the deprecation warning; versions mix in one run."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

import lmspec
from lmspec import versions
from lmspec.cli import main
from lmspec.conversion import spoke_path
from lmspec.manifests.findings import Finding, Report
from lmspec.manifests.light import Light
from lmspec.validator.core import load, typed, validate_text

DEPRECATED = "document.deprecated-version"
BETA = "lmspec.io/v1beta1"

MODEL_ALPHA = """apiVersion: lmspec.io/v1alpha1
kind: Model
metadata: {name: clf}
spec:
  task: classification
  numClasses: 3
  architecture: {type: mlp, hiddenSizes: [8]}
  signature:
    inputs: [{name: x, dtype: float32, shape: [-1, 4]}]
    outputs: [{name: logits, dtype: float32, shape: [-1, 3]}]
"""

DATASET_BETA = """apiVersion: lmspec.io/v1beta1
kind: Dataset
metadata: {name: pts}
spec:
  sources: [{path: pts.csv}]
  features: [{name: a, dtype: float32}, {name: b, dtype: float32}, {name: c, dtype: float32}, {name: d, dtype: float32}]
  target: {name: y, dtype: string, classes: [p, q, r]}
  preprocessing: [{type: labelEncode, column: y}]
  splits: {type: ratio, ratios: {train: 0.8, validation: 0.2}}
"""

JOB_BETA = """apiVersion: lmspec.io/v1beta1
kind: TrainingJob
metadata: {name: fit}
spec:
  model: clf
  dataset: pts
  loss: {type: crossEntropy}
  precision: {mode: fp16}
"""

SERVICE_BETA = """apiVersion: lmspec.io/v1beta1
kind: InferenceService
metadata: {name: svc}
spec:
  model: {type: trainingJob, name: fit}
  protocols: [openai]
  engine: {type: vllm}
  placement: {device: cpu}
  server: {headerTimeout: 5s}
"""


def current(report: Report) -> list[Finding]:
    return [f for f in report.findings if f.rule != DEPRECATED]


def show(report: Report) -> str:
    return "\n".join(f"{f.rule} {f.line}:{f.column} {f.pointer} {f.message} | {f.hint}" for f in report.findings)


def test_a_v1beta1_document_is_read_and_warns_of_nothing() -> None:
    report = validate_text(DATASET_BETA)
    assert report.ok and not report.findings, show(report)


def test_versions_mix_and_references_resolve_across_them() -> None:
    """A v1beta1 TrainingJob names a v1alpha1 Model; a v1beta1 service names the job."""
    text = "---\n".join([MODEL_ALPHA, DATASET_BETA, JOB_BETA.replace("  precision: {mode: fp16}\n", "")])
    report = validate_text(text)
    assert report.ok, show(report)
    assert [f.rule for f in report.findings] == [DEPRECATED]  # the Model's, and only it
    missing = validate_text(text.replace("model: clf", "model: clff"))
    [f] = current(missing)
    assert (f.rule, f.pointer, f.hint) == ("reference.missing", "/spec/model", "did you mean 'clf'?")


def test_rule_findings_point_at_the_v1beta1_text_in_its_terms() -> None:
    text = "---\n".join([MODEL_ALPHA, DATASET_BETA, JOB_BETA, SERVICE_BETA])
    report = validate_text(text, "all.yaml")
    placed = {f.rule: f for f in current(report)}
    engine = placed["inferenceservice.engine-placement"]
    # the hub's spec.engine.name is v1beta1's spec.engine.type: line 37 of the text, its value
    assert (engine.pointer, engine.line, engine.column) == ("/spec/engine/type", 37, 18), show(report)
    assert "engine.type: builtin" in engine.hint and "engine.name" not in engine.hint
    # A reference inside a v1beta1 source object is at its `name`.
    lost = validate_text(text.replace("{type: trainingJob, name: fit}", "{type: trainingJob, name: gone}"))
    [ref] = [f for f in lost.findings if f.rule == "reference.missing"]
    assert ref.pointer == "/spec/model/name" and ref.line == 35


@pytest.mark.parametrize(("hub", "spoke", "kind"), [
    (("spec", "precision", "fp16", "enabled"), ("spec", "precision", "mode"), "TrainingJob"),
    (("spec", "precision", "fp16", "lossScale"), ("spec", "precision", "lossScaling", "lossScale"), "TrainingJob"),
    (("spec", "architecture", "uri"), ("spec", "architecture", "source", "uri"), "Model"),
    (("spec", "chat", "templatePath"), ("spec", "chat", "template", "path"), "Dataset"),
    (("spec", "auth", "apiKeys", 1, "file"), ("spec", "auth", "apiKeys", 1, "path"), "InferenceService"),
    (("spec", "batching", "maxQueueDelayMicroseconds"), ("spec", "batching", "maxQueueDelay"), "InferenceService"),
    (("spec", "splits", "by"), ("spec", "splits", "type"), "Dataset"),
    (("spec", "sources", 0, "path"), ("spec", "sources", 0, "path"), "Dataset"),  # unchanged
])
def test_hub_paths_translate_to_v1beta1(hub: tuple[str | int, ...], spoke: tuple[str | int, ...],
                                        kind: str) -> None:
    assert spoke_path(BETA, kind, hub) == spoke


def test_an_unnamed_path_in_a_changed_subtree_falls_back_to_what_exists() -> None:
    data = {"spec": {"chat": {"template": {"type": "inline", "text": "t"}}}}
    assert spoke_path(BETA, "Dataset", ("spec", "chat", "nothing", "here"), data) == ("spec", "chat")


def test_environment_findings_name_the_v1beta1_field(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").write_text("""apiVersion: lmspec.io/v1beta1
kind: Dataset
metadata: {name: chat}
spec:
  sources: [{path: chat.jsonl}]
  chat:
    format: messages
    sequenceLength: 64
    tokenizer: {type: huggingface, path: tok}
    template: {type: file, path: missing.jinja}
""", encoding="utf-8")
    (tmp_path / "chat.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}]}\n', encoding="utf-8")
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "tokenizer.json").write_text("{}", encoding="utf-8")
    report = lmspec.validate([str(tmp_path / "d.yaml")], check_env=True)
    missing = [f for f in report.findings if f.rule == "env.file-missing"]
    assert missing, show(report)
    assert missing[0].pointer == "/spec/chat/template/path" and missing[0].line == 10, show(report)
    assert all("templatePath" not in f.message + f.hint for f in report.findings), show(report)


@pytest.mark.parametrize(("server", "message"), [
    ("headerTimeout: 0s", "headerTimeout must be greater than 0s, got 0s"),
    ("bodyTimeout: 2h", "bodyTimeout must be at most 3600s, got 2h"),
    ("gracePeriod: 1.5s", None),
])
def test_duration_bounds_are_schema_bound_findings(server: str, message: str | None) -> None:
    text = SERVICE_BETA.replace("headerTimeout: 5s", server).replace("engine: {type: vllm}", "engine: {type: builtin}")
    report = validate_text(text, references=False)
    if message is None:
        assert report.ok and not report.findings, show(report)
        return
    [f] = report.findings
    assert (f.rule, f.message, f.line) == ("schema.bound", message, 9), show(report)
    assert "changes.md" in f.hint
    fraction = validate_text(text.replace("protocols: [openai]", "batching: {maxQueueDelay: 0.5us}"),
                             references=False)
    assert [(f.rule, f.message) for f in fraction.findings if "maxQueueDelay" in f.pointer] == [
        ("schema.bound", "maxQueueDelay must be a multiple of 1us, got 0.5us")]


def test_a_field_of_the_other_version_says_whose_it_is() -> None:
    alpha = JOB_BETA.replace(BETA, "lmspec.io/v1alpha1")
    [f] = current(validate_text(alpha, "job.yaml", references=False))
    assert (f.rule, f.pointer) == ("schema.unknown-key", "/spec/precision/mode")
    assert f.message == ("unknown key 'mode': spec.precision.mode is a field of lmspec.io/v1beta1, "
                         "not of lmspec.io/v1alpha1")
    assert "lmspec convert job.yaml --to v1beta1" in f.hint
    splits = DATASET_BETA.replace(BETA, "lmspec.io/v1alpha1")
    [f] = current(validate_text(splits, references=False))
    assert f.pointer == "/spec/splits/type" and "is a field of lmspec.io/v1beta1" in f.message
    # And the other way: a v1alpha1 field in a v1beta1 document names where v1beta1 has it.
    old = SERVICE_BETA.replace("headerTimeout: 5s", "headerTimeoutSeconds: 5")
    found = {f.pointer: f for f in validate_text(old, references=False).findings}
    f = found["/spec/server/headerTimeoutSeconds"]
    assert "is a field of lmspec.io/v1alpha1" in f.message
    assert f.hint.startswith("lmspec.io/v1beta1 writes it as spec.server.headerTimeout")


def test_an_unknown_api_version_gets_a_did_you_mean() -> None:
    [f] = validate_text(MODEL_ALPHA.replace("lmspec.io/v1alpha1", "lmspec.io/v1beta2")).findings
    assert (f.rule, f.pointer) == ("document.api-version", "/apiVersion")
    assert f.hint.startswith("did you mean 'lmspec.io/v1beta1'? supported versions: lmspec.io/v1alpha1, "
                             "lmspec.io/v1beta1")


def test_each_deprecated_document_warns_and_strict_fails(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(MODEL_ALPHA + "---\n" + MODEL_ALPHA.replace("name: clf", "name: clf-2"), encoding="utf-8")
    report = lmspec.validate([str(path)])
    assert report.ok
    warnings = [f for f in report.findings if f.rule == DEPRECATED]
    assert [(f.severity, f.line, f.column, f.document) for f in warnings] == [("warning", 1, 13, 0),
                                                                             ("warning", 12, 13, 1)]
    assert warnings[0].message == "lmspec.io/v1alpha1 is deprecated in favour of lmspec.io/v1beta1"
    assert warnings[0].hint.startswith(f"convert it with `lmspec convert {path} --to v1beta1`")
    assert versions.get("v1alpha1").deprecated_by == BETA
    runner = CliRunner()
    assert runner.invoke(main, ["validate", str(path)]).exit_code == 0
    strict = runner.invoke(main, ["validate", "--strict", str(path)])
    assert strict.exit_code == 1 and DEPRECATED in strict.output


def test_load_gives_the_runtime_hub_objects_of_every_version(tmp_path: Path) -> None:
    service = SERVICE_BETA.replace("engine: {type: vllm}", "engine: {type: builtin}").replace("[openai]", "[oip-v2]")
    (tmp_path / "all.yaml").write_text("---\n".join([MODEL_ALPHA, DATASET_BETA, JOB_BETA, service]),
                                       encoding="utf-8")
    loaded = load(str(tmp_path / "all.yaml"))
    by_kind = {m.kind: m for m in loaded.manifests}
    for m in loaded.manifests:
        assert m.obj.api_version == versions.HUB and not isinstance(m.obj, Light)
    assert by_kind["Model"].api_version == "lmspec.io/v1alpha1"
    job, service = by_kind["TrainingJob"], by_kind["InferenceService"]
    assert job.api_version == BETA and job.document.data["apiVersion"] == BETA  # the text as written
    assert job.obj.spec.precision.fp16.enabled and not job.obj.spec.precision.bf16.enabled
    assert service.obj.spec.model.training_job == "fit" and service.obj.spec.server.header_timeout_seconds == 5
    assert by_kind["Dataset"].obj.spec.splits.by == "ratio"
    # typed() (the validator's light objects made the runtime's) converts the same way
    report_set = lmspec.validator.core.validate_documents(
        lmspec.validator.parse.parse_text((tmp_path / "all.yaml").read_text(encoding="utf-8"), "all.yaml"))
    assert isinstance(report_set.manifests[2].obj, Light)
    again = typed(report_set)
    assert again.manifests[2].obj == job.obj and again.manifests[3].obj == service.obj
