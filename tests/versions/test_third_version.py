"""A version added from outside the package — its models, its conversion and one registry entry,
all in a temporary directory — converts like v1beta1, and no lmspec file changes for it. Its one
rename (``spec.seed`` → ``spec.randomSeed``) is also lossy on purpose: it keeps no ``x-`` key of
a TrainingJob's spec, so the refusal and ``--force`` paths can be seen on valid manifests."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from lmspec import versions
from lmspec.cli import main
from lmspec.conversion import convert
from lmspec.convert import ConversionRefused, convert_files, convert_text

ROOT = Path(__file__).resolve().parents[2]
API = "lmspec.io/v1gamma1"

PACKAGE = {
    "__init__.py": '''
        """A throwaway version: TrainingJob only, spec.seed renamed spec.randomSeed."""
        from typing import Any, Literal

        from pydantic import BaseModel, ConfigDict


        class TrainingJob(BaseModel):
            model_config = ConfigDict(extra="forbid", populate_by_name=True)
            apiVersion: Literal["lmspec.io/v1gamma1"]
            kind: Literal["TrainingJob"]
            metadata: dict[str, Any]
            spec: dict[str, Any]
        ''',
    "conversion.py": '''
        from typing import Any

        from lmspec.conversion import Change, Loss, Spoke, renaming

        there, back = renaming("seed", "randomSeed")


        def forward(spec: Any) -> Any:
            new, _ = there(spec)
            lost = [Loss((k,), "x- keys have no place in v1gamma1") for k in new if k.startswith("x-")]
            return {k: v for k, v in new.items() if not k.startswith("x-")}, lost


        SPOKE = Spoke("lmspec.io/v1gamma1", [Change("seed", ("TrainingJob",), ("spec",), forward, back)])
        to_hub, from_hub = SPOKE.to_hub, SPOKE.from_hub
        ''',
}


@pytest.fixture
def gamma(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[versions.Version]:
    package = tmp_path / "site" / "lmspec_v1gamma1"
    package.mkdir(parents=True)
    for name, source in PACKAGE.items():
        (package / name).write_text(textwrap.dedent(source), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    version = versions.register(versions.Version(
        api_version=API, package="lmspec_v1gamma1", kinds={"TrainingJob": "TrainingJob"},
        conversion="lmspec_v1gamma1.conversion"))
    try:
        yield version
    finally:
        versions.unregister(API)
        for name in [m for m in sys.modules if m.startswith("lmspec_v1gamma1")]:
            del sys.modules[name]


def lmspec_files() -> dict[Path, float]:
    return {p: p.stat().st_mtime for p in (ROOT / "runner" / "lmspec").rglob("*.py")}


def test_a_registered_version_converts_both_ways_through_the_hub(gamma: versions.Version, tmp_path: Path) -> None:
    before = lmspec_files()
    # examples/iris is v1beta1; its v1alpha1 form is the starting point here.
    job = convert_text((ROOT / "examples/iris/train.yaml").read_text(encoding="utf-8"), "v1alpha1").text
    (tmp_path / "train.yaml").write_text(job, encoding="utf-8")
    [result] = convert_files([tmp_path / "train.yaml"], "v1gamma1", out_dir=tmp_path / "g")
    text = (tmp_path / "g/train.yaml").read_text(encoding="utf-8")
    assert "apiVersion: lmspec.io/v1gamma1" in text and "randomSeed:" in text and result.losses == []
    # Spoke to spoke: v1gamma1 → hub → v1beta1, and back to where it began.
    convert_files([tmp_path / "g"], "v1beta1", out_dir=tmp_path / "b")
    assert "apiVersion: lmspec.io/v1beta1" in (tmp_path / "b/train.yaml").read_text(encoding="utf-8")
    convert_files([tmp_path / "b"], "v1alpha1", out_dir=tmp_path / "a")
    assert (tmp_path / "a/train.yaml").read_text(encoding="utf-8") == job
    assert lmspec_files() == before


def test_an_invalid_document_of_the_new_version_is_refused(gamma: versions.Version, tmp_path: Path) -> None:
    (tmp_path / "j.yaml").write_text("apiVersion: lmspec.io/v1gamma1\nkind: TrainingJob\nmetadata: {}\n",
                                     encoding="utf-8")
    with pytest.raises(ConversionRefused, match=r"j.yaml:1:1: /spec: required key 'spec' is missing"):
        convert_files([tmp_path / "j.yaml"], "v1alpha1")


LOSSY = """\
# lmspec run examples/iris
apiVersion: lmspec.io/v1alpha1
kind: TrainingJob
metadata: {name: j}
spec:
  model: m
  dataset: d
  loss: {type: crossEntropy}
  seed: 3
  x-owner: ml    # an extension
"""


def test_a_loss_is_refused_unless_forced(gamma: versions.Version, tmp_path: Path) -> None:
    plain = {"apiVersion": "lmspec.io/v1alpha1", "kind": "TrainingJob", "metadata": {"name": "j"},
             "spec": {"seed": 3, "x-owner": "ml"}}
    new, losses = convert(plain, "v1gamma1")
    assert new["spec"] == {"randomSeed": 3} and [loss.dotted for loss in losses] == ["spec.x-owner"]

    (tmp_path / "ok.yaml").write_text(LOSSY.replace("  x-owner: ml    # an extension\n", ""), encoding="utf-8")
    (tmp_path / "lossy.yaml").write_text(LOSSY, encoding="utf-8")
    with pytest.raises(ConversionRefused) as refused:
        convert_files([tmp_path], "v1gamma1", out_dir=tmp_path / "out")
    first = refused.value.problems[0]
    assert (Path(first.file).name, first.line, first.column, first.field) == ("lossy.yaml", 10, 12, "spec.x-owner")
    assert "--force" in str(refused.value)
    assert not (tmp_path / "out").exists()  # nothing written, not even the file without a loss

    results = convert_files([tmp_path], "v1gamma1", out_dir=tmp_path / "out", force=True)
    assert sorted(len(r.losses) for r in results) == [0, 1]
    assert "x-owner" not in (tmp_path / "out/lossy.yaml").read_text(encoding="utf-8")

    runner = CliRunner()
    lossy = runner.invoke(main, ["convert", str(tmp_path / "lossy.yaml"), "--to", "v1gamma1"])
    assert lossy.exit_code == 1 and "lossy.yaml:10:12: spec.x-owner:" in lossy.stderr
    forced = runner.invoke(main, ["convert", str(tmp_path / "lossy.yaml"), "--to", "v1gamma1", "--force"])
    assert forced.exit_code == 0 and "(dropped: --force)" in forced.stderr
    assert "randomSeed: 3" in forced.stdout


GAMMA_JOB = """\
apiVersion: lmspec.io/v1gamma1
kind: TrainingJob
metadata: {name: gamma-train}
spec:
  model: iris-mlp
  dataset: iris
  loss: {type: crossEntropy}
  randomSeed: 11
  zero: {stage: 4}
"""


def test_the_validator_and_load_read_a_registered_version(gamma: versions.Version, tmp_path: Path) -> None:
    """Without compiled checks of its own (no lmspec file changes for it), a registered version
    is checked by its models, and by every rule on its hub conversion; ``load`` gives the hub's
    objects. The fallback to the models is for such a version only, and said on stderr."""
    from lmspec.manifests import light
    from lmspec.validator.core import load, validate

    before = lmspec_files()
    for name in ("model.yaml", "dataset.yaml"):
        (tmp_path / name).write_text((ROOT / "examples/iris" / name).read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "data").mkdir()
    (tmp_path / "train.yaml").write_text(GAMMA_JOB, encoding="utf-8")
    light.FELL_BACK.clear()
    report = validate([str(tmp_path)])
    # the hub's rule on zero.stage, at the v1gamma1 text (spec.zero is where it is in both)
    [f] = [f for f in report.findings if f.severity == "error"]
    assert (f.file, f.line, f.pointer) == (str(tmp_path / "train.yaml"), 9, "/spec/zero/stage")
    assert {API} == light.FELL_BACK

    (tmp_path / "train.yaml").write_text(GAMMA_JOB.replace("  zero: {stage: 4}\n", ""), encoding="utf-8")
    loaded = load([str(tmp_path)])
    job = loaded.get("TrainingJob", "gamma-train")
    assert job is not None and job.api_version == API and job.obj.api_version == versions.HUB
    assert job.obj.spec.seed == 11 and job.obj.spec.model == "iris-mlp"

    missing = GAMMA_JOB.replace("model: iris-mlp", "model: iris-mpl").replace("  zero: {stage: 4}\n", "")
    (tmp_path / "train.yaml").write_text(missing, encoding="utf-8")
    light.FELL_BACK.clear()
    result = CliRunner().invoke(main, ["validate", str(tmp_path)])
    assert result.exit_code == 1 and "did you mean 'iris-mlp'?" in result.stdout
    assert "validated lmspec.io/v1gamma1 with its models, which have no compiled checks" in result.stderr
    assert lmspec_files() == before
    light.FELL_BACK.clear()
