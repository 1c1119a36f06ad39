"""The pre-commit hook definition runs the installed command on manifest files."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from lmspec.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[2]



def test_pre_commit_hook() -> None:
    [hook] = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert hook["id"] == "lmspec-validate" and hook["language"] == "python"
    assert hook["pass_filenames"] is True
    files = re.compile(hook["files"])
    assert all(files.search(f) for f in ("a.yaml", "dir/b.yml", "c.json"))
    assert not any(files.search(f) for f in ("a.yaml.bak", "README.md", "x.jsonl"))
    program, command, *_ = shlex.split(hook["entry"])
    assert program == "lmspec" and command in COMMANDS
