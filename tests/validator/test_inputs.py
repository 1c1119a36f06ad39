"""Bad input never crashes: every problem is a finding with a rule, a position and exit status 2."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

import lmspec
from lmspec.cli import main
from lmspec.convert import convert_text
from lmspec.v1alpha1 import InferenceService, Model

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


MODEL = convert_text((EXAMPLES / "iris" / "model.yaml").read_text(), "v1alpha1").text  # the models' version


def _cli(*args: str, input: bytes | str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["validate", *args], input=input)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exc_info
    return result.exit_code, result.output


def test_json_is_held_to_json(tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    path.write_text('{"apiVersion": "lmspec.io/v1alpha1",}')
    code, out = _cli(str(path))
    assert code == 2 and ":1:37: error[parse.syntax]" in out


@pytest.mark.parametrize(("text", "line", "column"), [
    ('{"a": 1,\r\n "b": }', 2, 7),      # Windows line ends
    ('{"a": 1,\r "b": }', 2, 7),         # old Mac line ends: json itself counts no line here
    ('\r# a comment\n{}', 2, 1),
])
def test_json_errors_count_lines_like_every_other_position(text: str, line: int, column: int) -> None:
    [finding] = lmspec.validate_text(text, "m.json").findings
    assert (finding.rule, finding.line, finding.column) == ("parse.syntax", line, column)


def test_a_lone_surrogate_is_placed_with_the_same_line_breaks() -> None:
    [finding] = lmspec.validate_text("a: 1\rb: \ud800x\n", "m.yaml").findings
    assert (finding.rule, finding.line, finding.column) == ("parse.encoding", 2, 4)


@pytest.mark.parametrize(("content", "line", "column"), [
    (b"a: 1\rb: \xc3\xa9\xff\n", 2, 5),  # after a carriage return and a two-byte character
    (b"\xef\xbb\xbfa: 1\r\nb: \xe2\x82\xac\xff", 2, 5),  # after a BOM, CRLF and a three-byte one
    (b"a: 1\r\nb: 2\rc: \x00", 3, 4),
    (b"a: \xff\nb: \x00", 2, 4),  # a NUL after a byte that is not UTF-8
])
def test_undecodable_bytes_are_placed_in_characters_and_libyaml_lines(
        tmp_path: Path, content: bytes, line: int, column: int) -> None:
    path = tmp_path / "m.yaml"
    path.write_bytes(content)
    [finding] = lmspec.validate([str(path)]).findings
    assert (finding.rule, finding.line, finding.column) == ("parse.encoding", line, column)
    if b"\x00" not in content:
        assert finding.message == "not UTF-8: invalid byte 0xff"


@pytest.mark.parametrize(("content", "rule"), [
    (b"a: [1, 2\n", "parse.syntax"),
    (b"a: b: c\n", "parse.syntax"),
    (b"a: 1\na: 2\n", "parse.duplicate-key"),
    (b"\x00\x01\x02\x03", "parse.encoding"),
    (b"kind: Model\nname: \xe9t\xe9\n", "parse.encoding"),
    (b"\xff\xfe\x00\xd8", "parse.encoding"),
    (b"", "parse.empty"),
    (b"[" * 100_000, "parse.too-deep"),
    (b"{" * 100_000, "parse.too-deep"),
    (b"- " * 50_000 + b"x", "parse.too-deep"),
    (b"a: !!python/object/apply:os.system [echo hi]\n", "parse.tag"),
    (b"*nowhere\n", "parse.syntax"),
    (b"? [a]\n: 1\n", "parse.key"),
    (b"a: " + b"9" * 6000 + b"\n", "parse.too-large"),
])
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_unreadable_input_exits_2(tmp_path: Path, content: bytes, rule: str, suffix: str) -> None:
    path = tmp_path / f"in{suffix}"
    path.write_bytes(content)
    code, out = _cli(str(path))
    assert code == 2, out
    first = out.splitlines()[0]
    if not (suffix == ".json" and rule != "parse.encoding"):  # JSON syntax errors come first
        assert f"error[{rule}]" in first, out
    assert first.startswith(f"{path}:"), out


def test_alias_bomb_is_bounded(tmp_path: Path) -> None:
    levels = "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefghi", "bcdefghij", strict=True))
    path = tmp_path / "bomb.yaml"
    path.write_text("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + levels)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    code, out = _cli(str(path))
    assert code == 2 and "parse.too-large" in out
    assert time.perf_counter() - start < 2
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 100_000  # KiB


def test_deep_nesting_is_fast_and_small(tmp_path: Path) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 1_000_000)
    start = time.perf_counter()
    report = lmspec.validate([str(path)])
    assert [f.rule for f in report.findings] == ["parse.too-deep"]
    assert time.perf_counter() - start < 2


def test_huge_file_refused_without_reading_it_all(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with open(path, "wb") as fh:
        fh.write(MODEL.encode())
        fh.write(b"#" + b"x" * (17 * 1024 * 1024) + b"\n")
    code, out = _cli(str(path))
    assert code == 2 and "parse.too-large" in out and "16777216" in out
    code, out = _cli("--max-bytes", str(18 * 1024 * 1024), str(path))
    assert code == 0, out
    code, out = _cli("--max-bytes", "100", str(EXAMPLES / "iris" / "model.yaml"))
    assert code == 2 and "larger than 100 bytes" in out
    code, out = _cli("--max-bytes", "0", str(EXAMPLES / "iris" / "model.yaml"))
    assert code == 2 and "Traceback" not in out  # a usage error


@pytest.mark.parametrize(("text", "rule", "code"), [
    ("- just\n- a list\n", "document.not-mapping", 1),
    ("42\n", "document.not-mapping", 1),
    ("apiVersion: lmspec.io/v2\nkind: Model\n", "document.api-version", 1),
    ("apiVersion: [1]\nkind: Model\n", "document.api-version", 1),
    ("apiVersion: lmspec.io/v1alpha1\nkind: Modle\n", "document.kind", 1),
    ("apiVersion: lmspec.io/v1alpha1\nkind: {a: 1}\n", "document.kind", 1),
    ("apiVersion: lmspec.io/v1alpha1\nkind: Model\nmetadata: []\nspec: 3\n", "schema.type", 1),
    ("apiVersion: lmspec.io/v1alpha1\nkind: InferenceService\nmetadata: {name: s}\n"
     "spec: {model: {path: x}, auth: {apiKeys: [[nested]]}}\n", "schema.type", 1),
])
def test_wrong_shapes_are_findings(tmp_path: Path, text: str, rule: str, code: int) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(text)
    got, out = _cli(str(path))
    assert got == code and f"error[{rule}]" in out, out


def test_paths_that_are_not_files(tmp_path: Path) -> None:
    code, out = _cli(str(tmp_path / "missing.yaml"))
    assert code == 2 and "parse.io] no such file" in out
    code, out = _cli(str(tmp_path / "*.yaml"))
    assert code == 2 and "the pattern matches no file" in out
    (tmp_path / "empty").mkdir()
    code, out = _cli(str(tmp_path / "empty"))
    assert code == 2 and "holds no .yaml" in out
    code, out = _cli(str(tmp_path / "empty"), str(EXAMPLES / "iris"))
    assert code == 2
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked.yaml"
        locked.write_text(MODEL)
        locked.chmod(0)
        code, out = _cli(str(locked))
        assert code == 2 and "parse.io" in out


def test_no_arguments_is_a_usage_error() -> None:
    code, out = _cli()
    assert code == 2 and "Missing argument" in out


def test_valid_invalid_and_strict_exit_codes(tmp_path: Path) -> None:
    assert _cli(str(EXAMPLES / "iris"))[0] == 0
    assert _cli(str(EXAMPLES / "iris" / "*.yaml"))[0] == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(MODEL.replace("numClasses: 3", "numClasses: 'three'"))
    assert _cli(str(bad))[0] == 1
    warn = tmp_path / "warn.yaml"
    warn.write_text((EXAMPLES / "iris" / "serve.yaml").read_text().replace("127.0.0.1", "0.0.0.0"))
    assert _cli(str(warn), "--allow-missing-refs")[0] == 0
    assert _cli(str(warn), "--allow-missing-refs", "--strict")[0] == 1


def test_stdin() -> None:
    assert _cli("-", input=MODEL)[0] == 0
    code, out = _cli("-", input=MODEL.replace("numClasses: 3", "numClass: 3"))
    assert code == 1 and out.startswith("<stdin>:9:3: error[schema.unknown-key]")
    code, out = _cli("-", input=b"a: \xff\n")
    assert code == 2 and "<stdin>:1:4: error[parse.encoding]" in out
    code, out = _cli("--max-bytes", "10", "-", input=MODEL)
    assert code == 2 and "parse.too-large" in out
    code, out = _cli("-", input="")
    assert code == 2 and "parse.empty" in out


def current(report: lmspec.Report) -> list[lmspec.Finding]:
    """The findings besides the deprecation warning on every v1alpha1 document."""
    return [f for f in report.findings if f.rule != "document.deprecated-version"]


def test_did_you_mean_inside_union_branches() -> None:
    text = convert_text((EXAMPLES / "iris" / "serve.yaml").read_text(), "v1alpha1").text + \
        "  auth:\n    apiKeys:\n      - {env: A}\n      - {file: /k}\n      - {evn: C}\n"
    report = lmspec.validate_text(text, references=False)
    [f] = current(report)
    assert (f.rule, f.line, f.column, f.pointer) == ("schema.unknown-key", 15, 10, "/spec/auth/apiKeys/2/evn")
    assert f.hint.startswith("did you mean 'env'?")
    # in a discriminated union, too
    report = lmspec.validate_text(MODEL.replace("hiddenSizes:", "hiddenSize:"))
    [f] = current(report)
    assert f.hint.startswith("did you mean 'hiddenSizes'?") and f.pointer == "/spec/architecture/hiddenSize"


def test_positions_parent_for_missing_key_key_for_unknown_value_for_bad() -> None:
    text = MODEL.replace("    type: mlp\n", "    typ: mlp\n").replace("  task: classification\n", "")
    report = lmspec.validate_text(text)
    where = {(f.rule, f.pointer): (f.line, f.column) for f in report.findings}
    assert where[("schema.required", "/spec/task")] == (8, 3)  # the spec mapping starts at numClasses
    assert where[("schema.required", "/spec/architecture/type")] == (10, 5)  # the mapping
    assert "is 'typ' a misspelling of 'type'?" in current(report)[-1].hint
    text = MODEL.replace("    hiddenSizes:", "    x: 1\n    hiddenSizes:").replace("activation: relu", "activation: 3")
    where = {(f.rule, f.pointer): (f.line, f.column) for f in lmspec.validate_text(text).findings}
    assert where[("schema.unknown-key", "/spec/architecture/x")] == (12, 5)  # the key
    assert where[("schema.enum", "/spec/architecture/activation")] == (14, 17)  # the value


EXTENDED = """apiVersion: lmspec.io/v1alpha1
kind: InferenceService
x-root: {any: [thing]}
metadata:
  name: ext
  x-meta: 1
spec:
  x-spec: [1, 2]
  model: {path: export, x-model: true}
  server: {host: 127.0.0.1, x-server: {deep: {er: [1]}}}
  auth:
    apiKeys:
      - {env: KEYS, x-key: note}
"""


def test_extensions_are_accepted_at_every_depth_and_round_trip() -> None:
    report = lmspec.validate_text(EXTENDED)
    assert report.ok and not current(report)
    [doc] = lmspec.validator.parse.parse_text(EXTENDED)
    obj = InferenceService.model_validate(doc.data)
    dumped = obj.model_dump(by_alias=True, exclude_unset=True)
    assert dumped["x-root"] == {"any": ["thing"]}
    assert dumped["metadata"]["x-meta"] == 1
    assert dumped["spec"]["x-spec"] == [1, 2]
    assert dumped["spec"]["model"]["x-model"] is True
    assert dumped["spec"]["server"]["x-server"] == {"deep": {"er": [1]}}
    assert dumped["spec"]["auth"]["apiKeys"][0] == {"env": "KEYS", "x-key": "note"}
    assert InferenceService.model_validate(dumped).model_dump(by_alias=True, exclude_unset=True) == dumped
    layer = Model.model_validate(lmspec.validator.parse.parse_text(
        MODEL.replace("    type: mlp\n", "    type: mlp\n    x-arch: 1\n"))[0].data)
    assert layer.model_dump(by_alias=True)["spec"]["architecture"]["x-arch"] == 1


@pytest.mark.integration
def test_console_script_in_a_real_process(tmp_path: Path) -> None:
    exe = shutil.which("lmspec", path=str(Path(sys.executable).parent))
    assert exe is not None
    ok = subprocess.run([exe, "validate", str(EXAMPLES)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (tmp_path / "bad.yaml").write_text(MODEL.replace("numClasses: 3", "numClasses: '3'"))
    bad = subprocess.run([exe, "validate", str(tmp_path / "bad.yaml"), "-o", "sarif"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and '"ruleId": "schema.type"' in bad.stdout
    (tmp_path / "bin.yaml").write_bytes(b"\x00" * 10)
    broken = subprocess.run([exe, "validate", "-"], input=(tmp_path / "bin.yaml").read_bytes(),
                            capture_output=True, timeout=60)
    assert broken.returncode == 2 and b"parse.encoding" in broken.stdout and not broken.stderr
