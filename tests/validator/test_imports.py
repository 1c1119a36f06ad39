"""``import lmspec`` and ``lmspec validate`` stay light: no training or serving stack, and not even
pydantic or the models (the validator runs their compiled checks on pydantic-core)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lmspec.manifests import light

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
HEAVY = ("torch", "deepspeed", "fastapi", "uvicorn", "transformers", "pydantic")

PROBE = """
import json, sys
{body}
print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))
"""


def _modules(body: str) -> set[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(body=body)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.integration
def test_import_lmspec_is_light() -> None:
    loaded = _modules("import lmspec")
    assert "pydantic_core" in loaded and "yaml" in loaded  # the probe works
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


@pytest.mark.integration
def test_the_models_load_on_first_use() -> None:
    loaded = _modules("import lmspec\nlmspec.Model")
    assert "pydantic" in loaded


@pytest.mark.integration
def test_validate_command_is_light() -> None:
    # A glob of the examples' own manifests: never what running them leaves below them.
    body = (
        "from lmspec.cli import main\n"
        "try:\n"
        f"    main.main(args=['validate', {str(EXAMPLES / '*' / '*.yaml')!r}, '-o', 'sarif'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
    )
    loaded = _modules(body)
    assert "lmspec" in loaded and "click" in loaded
    # Under a pydantic-core release other than the compiled checks were made for, the validator
    # uses the models, and so pydantic (see lmspec.manifests.light.usable).
    heavy = set(HEAVY) if light.usable() else set(HEAVY) - {"pydantic"}
    assert not loaded & heavy, loaded & heavy


def test_every_name_of_the_seam_resolves() -> None:
    from lmspec import standard, versions

    for name in standard.__all__:
        assert getattr(standard, name) is not None, name
    assert standard.VERSIONS[standard.HUB_VERSION] == standard.KINDS
    assert set(standard.VERSIONS) == set(versions.names())


@pytest.mark.integration
@pytest.mark.parametrize("version", ["v1alpha1", "v1beta1"])
def test_validate_command_is_light_for_every_version(version: str, tmp_path: Path) -> None:
    """Documents of either version, hub or converted to it, are checked without pydantic."""
    from lmspec.convert import convert_files

    convert_files(sorted(str(p) for p in (EXAMPLES / "iris").glob("*.yaml")), version, out_dir=tmp_path)
    assert all(f"apiVersion: lmspec.io/{version}" in p.read_text() for p in tmp_path.glob("*.yaml"))
    body = (
        "from lmspec.cli import main\n"
        "try:\n"
        f"    main.main(args=['validate', {str(tmp_path)!r}], standalone_mode=False)\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
    )
    loaded = _modules(body)
    assert "lmspec" in loaded and not loaded & set(HEAVY), loaded & set(HEAVY)
