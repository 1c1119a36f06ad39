#!/usr/bin/env bash
# Installs everything into .venv, then runs the linters, the drift checks and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh run,serve,dev
venv=${VENV:-.venv}
export DS_ACCELERATOR=cpu

echo "==> ruff";               "$venv/bin/ruff" check .
echo "==> mypy (strict)";      "$venv/bin/mypy"
echo "==> schemas and spec";   "$venv/bin/python" -m lmspec.schemagen --check
echo "==> examples";           "$venv/bin/lmspec" validate examples/
echo "==> conformance";        "$venv/bin/lmspec" conformance run
# One line per test as it finishes, and the slowest tests at the end.
echo "==> pytest";             "$venv/bin/python" -m pytest -v --durations=15 "$@"
