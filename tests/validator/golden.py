"""Capture what ``lmspec validate -o json`` says about every conformance case and the examples.

The golden file ``golden/validate.json`` pins findings (rule, severity, file, document, line,
column, pointer) and exit codes; message and hint texts are left out on purpose, so that wording
can improve without touching it. ``test_golden.py`` compares the current validator with it.

This script uses only the command line's entry point (``lmspec.cli.main``), PyYAML and the
standard library, so it runs against any version of the package. To regenerate the golden file
after a deliberate change of behaviour, review the difference the test prints, then run:

    PYTHONPATH=runner python tests/validator/golden.py --write tests/validator/golden/validate.json

and commit it together with the change and a line in CHANGELOG.md saying what changed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import io
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "conformance" / "v1alpha1"
EXAMPLES = ROOT / "examples"
FIELDS = ("rule", "severity", "file", "document", "line", "column", "pointer")
"""The parts of a finding that are pinned (messages and hints are not)."""
UNPINNED = {"document.deprecated-version"}
"""Rules left out: the warning on every v1alpha1 document came with v1beta1, after the capture;
``tests/validator/rule_cases.py`` covers it."""


def run_cli(args: list[str], cwd: Path) -> dict[str, Any]:
    """``lmspec validate -o json ARGS`` in-process, in ``cwd``: exit code and pinned findings."""
    from lmspec.cli import main

    out = io.StringIO()
    old = os.getcwd()
    os.chdir(cwd)
    code: Any = 0
    try:
        with contextlib.redirect_stdout(out):
            try:
                main.main(args=["validate", "-o", "json", *args], standalone_mode=False)
            except SystemExit as exc:
                code = exc.code
    finally:
        os.chdir(old)
    doc = json.loads(out.getvalue())
    return {
        "exit": int(code or 0),
        "files": doc["files"],
        "documents": doc["documents"],
        "findings": [[f[k] for k in FIELDS] for f in doc["findings"] if f["rule"] not in UNPINNED],
    }


def _cases() -> list[tuple[str, list[tuple[str, bytes]]]]:
    out = []
    for path in sorted(SUITE.glob("*/*.yaml")):
        for raw in yaml.safe_load(path.read_text(encoding="utf-8"))["cases"]:
            docs = raw.get("documents") or [{k: raw[k] for k in ("source", "sourceBase64") if k in raw}
                                            | {"file": raw.get("file", "manifest.yaml")}]
            files = [(d["file"], base64.b64decode(d["sourceBase64"]) if "sourceBase64" in d
                      else str(d["source"]).encode("utf-8")) for d in docs]
            out.append((str(raw["id"]), files))
    return out


def capture() -> dict[str, Any]:
    """Case id (or ``examples/...``) → the pinned output."""
    result: dict[str, Any] = {}
    for case_id, files in _cases():
        with tempfile.TemporaryDirectory() as tmp:
            for name, data in files:
                target = Path(tmp) / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(data)
            result[f"case:{case_id}"] = run_cli(list(dict.fromkeys(n for n, _ in files)), Path(tmp))
    with tempfile.TemporaryDirectory() as tmp:
        # A copy of the examples without what running them leaves in the checkout, and with
        # the corpus examples/corpus-lm asks scripts/make_corpus.py for (1 MB of it).
        root = Path(tmp)
        shutil.copytree(EXAMPLES, root / "examples", ignore=shutil.ignore_patterns("runs", ".lmspec-cache", "corpus"))
        sys.path.insert(0, str(ROOT / "scripts"))
        from make_corpus import make_corpus

        make_corpus(root / "examples" / "corpus-lm" / "corpus", 1, files=8)
        result["examples"] = run_cli(["examples"], root)
        result["examples --check-env"] = run_cli(["--check-env", "examples"], root)
        for d in sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir() and p.name != "data"):
            result[f"examples/{d}"] = run_cli([f"examples/{d}"], root)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--write", type=Path, help="write the golden file here (default: print it)")
    args = ap.parse_args()
    text = json.dumps(capture(), indent=1, sort_keys=True) + "\n"
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
