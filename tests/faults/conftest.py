"""Fixtures for the fault suite: the server fixtures of ``tests/serve`` (real exports, real
``lmspec serve`` processes on loopback), and the directory of this suite on ``sys.path`` for its
helpers (pytest runs in importlib mode)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

_spec = importlib.util.spec_from_file_location("serve_fixtures", HERE.parent / "serve" / "conftest.py")
assert _spec is not None and _spec.loader is not None
serve_fixtures = importlib.util.module_from_spec(_spec)
sys.modules["serve_fixtures"] = serve_fixtures
_spec.loader.exec_module(serve_fixtures)

exports = serve_fixtures.exports
start = serve_fixtures.start
service_manifest_fixture = serve_fixtures.service_manifest_fixture
