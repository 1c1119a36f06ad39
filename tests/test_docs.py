"""Every manifest shown in the documentation is a valid manifest, and every example runs the
command its first line names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import lmspec

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "spec").rglob("*.md")), *sorted((ROOT / "conformance").glob("*.md"))]
FENCE = re.compile(r"```ya?ml\n(.*?)```", re.S)


def _manifest_blocks() -> list[tuple[str, str]]:
    blocks = []
    for doc in DOCS:
        for i, m in enumerate(FENCE.finditer(doc.read_text(encoding="utf-8"))):
            text = m.group(1)
            if re.search(r"^apiVersion:", text, re.M):
                blocks.append((f"{doc.relative_to(ROOT)}#{i}", text))
    return blocks


BLOCKS = _manifest_blocks()


def test_docs_contain_manifests() -> None:
    assert any(name.startswith("README.md") for name, _ in BLOCKS)
    assert len(BLOCKS) >= 3


@pytest.mark.parametrize(("name", "text"), BLOCKS, ids=[n for n, _ in BLOCKS])
def test_manifest_in_docs_is_valid(name: str, text: str) -> None:
    # Snippets show one manifest at a time, so references to others are not required here.
    report = lmspec.validate_text(text, name + ".yaml", references=False)
    assert report.ok, "\n".join(f"{f.line}:{f.column} {f.rule} {f.message}" for f in report.findings)


def test_readme_manifests_are_the_current_version() -> None:
    """The README shows v1beta1; v1alpha1 only in its section on versions, as the input of a
    conversion."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("## Versions and `lmspec convert`")
    end = text.index("\n## ", start + 1)
    for m in FENCE.finditer(text):
        versions = set(re.findall(r"^apiVersion: (\S+)", m.group(1), re.M))
        if start <= m.start() < end:
            continue
        assert versions <= {"lmspec.io/v1beta1"}, m.group(1)[:200]
    assert "apiVersion: lmspec.io/v1alpha1" in text[start:end]


def _written_by_lmspec(path: Path) -> bool:
    """Below a run directory or an export (what running an example leaves beside it)."""
    return any((d / ".lmspec-output").is_file() for d in path.parents)


EXAMPLE_FILES = sorted(p for p in (ROOT / "examples").rglob("*.yaml")
                       if "data" not in p.parts and not _written_by_lmspec(p))


@pytest.mark.parametrize("path", EXAMPLE_FILES, ids=[str(p.relative_to(ROOT)) for p in EXAMPLE_FILES])
def test_example_starts_with_its_command(path: Path) -> None:
    first = path.read_text(encoding="utf-8").splitlines()[0]
    assert re.match(r"^# lmspec (run|serve|validate|plan) examples/[\w-]+", first), first


def test_examples_are_valid_with_environment_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A copy, without what runs leave in the checkout, and with the corpus that
    # examples/corpus-lm asks scripts/make_corpus.py for (1 MB of it here).
    import shutil
    import sys

    examples = tmp_path / "examples"
    shutil.copytree(ROOT / "examples", examples,
                    ignore=shutil.ignore_patterns("runs", ".lmspec-cache", "corpus"))
    sys.path.insert(0, str(ROOT / "scripts"))
    from make_corpus import make_corpus

    make_corpus(examples / "corpus-lm" / "corpus", 1, files=8)
    monkeypatch.chdir(examples)  # the examples read the shared ../data: inside the project here
    report = lmspec.validate([str(examples)], check_env=True)
    assert report.ok, "\n".join(f"{f.file}:{f.line} {f.rule} {f.message}" for f in report.findings)
    assert report.documents >= 15


def test_readme_python_snippet_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    snippet = next(m.group(1) for m in re.finditer(r"```python\n(.*?)```", readme, re.S) if "lmspec.load" in m.group(1))
    monkeypatch.chdir(ROOT)
    exec(compile(snippet, "README.md", "exec"), {})


EXAMPLE_PATH = re.compile(r"(?<![\w./-])examples/[\w./-]*[\w/]")


@pytest.mark.parametrize("doc", [*DOCS, *sorted((ROOT / "examples").rglob("README.md"))],
                         ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_the_documentation_names_exists(doc: Path) -> None:
    """A path under examples/ that a document names is in the repository, from its root or the
    document's folder (or is what running an example writes: a run directory, the corpus a
    script generates)."""
    written = ("/runs/", "/runs", "/.lmspec-cache", "examples/corpus-lm/corpus")
    missing = sorted({p for p in EXAMPLE_PATH.findall(doc.read_text(encoding="utf-8"))
                      if not (ROOT / p).exists() and not (doc.parent / p).exists()
                      and not any(w in p for w in written)})
    assert not missing, f"{doc.relative_to(ROOT)} names {missing}, which the repository does not hold"


def test_the_chat_examples_data_is_what_its_script_builds() -> None:
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    from make_capitals_qa import OUT, records, render

    assert OUT.read_text(encoding="utf-8") == render(records()), "run python scripts/make_capitals_qa.py"


def test_the_preference_examples_data_is_what_its_script_builds() -> None:
    import sys

    sys.path.insert(0, str(ROOT / "scripts"))
    import make_capitals_preference as script

    for path, build in script.FILES.items():
        assert path.read_text(encoding="utf-8") == script.render(build()), \
            "run python scripts/make_capitals_preference.py"
