"""Deeply nested manifests: a finding naming the file and line (rule ``parse.too-deep``), whatever
the PyYAML build. libyaml's composer recurses in C, and builds without a nesting limit of their
own (PyYAML 6.0.3's wheels) crash the process on text nested tens of thousands of levels deep,
so such text never reaches it: a cheap bound on the nesting sends it to the event parser, which
stops at 64 levels."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lmspec.validator import parse

ROOT = Path(__file__).resolve().parents[2]

DEEP = {
    "braces": ("{" * 100_000, 1),
    "brackets": ("[" * 100_000, 1),
    "braces closed": ("{a: " * 30_000 + "1" + "}" * 30_000, 1),
    "block sequences on a line": ("- " * 49_999 + "x", 1),
    "explicit keys on a line": ("? " * 49_999 + "x", 1),
    "block sequences after a carriage return": ("# a comment\r" + "- " * 40_000 + "x", 2),
    "indentation": ("".join(" " * i + "a:\n" for i in range(300)) + " " * 300 + "x\n", 65),
    "flow inside block": ("a:\n" + "  - " * 200 + "[" * 20_000, 2),
}


@pytest.mark.parametrize("case", list(DEEP), ids=list(DEEP))
def test_deep_nesting_is_a_finding_at_its_line(case: str) -> None:
    text, line = DEEP[case]
    assert not parse._shallow(text)  # libyaml's composer never sees it
    with pytest.raises(parse.ParseError) as caught:
        parse.parse_text(text, "deep.yaml")
    err = caught.value
    assert (err.rule, err.file, err.line) == ("parse.too-deep", "deep.yaml", line), err
    assert "nesting deeper than 64 levels" in err.message


def test_deep_json_is_a_finding() -> None:
    with pytest.raises(parse.ParseError) as caught:
        parse.parse_text('{"a": ' * 20_000 + "1" + "}" * 20_000, "deep.json")
    assert (caught.value.rule, caught.value.line) == ("parse.too-deep", 1)


def test_real_manifests_keep_the_fast_path(tmp_path: Path) -> None:
    """The bound is loose enough for every manifest a person writes: the examples, the
    conformance cases and the benchmark's corpus are composed by libyaml as before."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_validate", ROOT / "bench" / "validate.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    bench.generate(tmp_path, 100, seed=5)
    files = [p for d in (ROOT / "examples", ROOT / "conformance", tmp_path) for p in sorted(d.rglob("*.yaml"))]
    assert len(files) > 150
    deep = [p for p in files if not parse._shallow(p.read_text(encoding="utf-8"))]
    assert deep == []
    assert parse._compose_documents(files[0].read_text(encoding="utf-8")) is not None


@pytest.mark.integration
@pytest.mark.parametrize("text", ["{" * 100_000, "[" * 100_000, "- " * 49_999 + "x"], ids=["{", "[", "- "])
def test_validate_on_deep_files_exits_2_with_a_finding(tmp_path: Path, text: str) -> None:
    path = tmp_path / "deep.yaml"
    path.write_text(text)  # no final newline: 100,000 characters, as the fast path once took
    out = subprocess.run([sys.executable, "-m", "lmspec", "validate", str(path)], capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    assert f"{path}:1:" in out.stdout and "error[parse.too-deep]" in out.stdout, out.stdout
    assert "Traceback" not in out.stderr
