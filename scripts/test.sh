#!/usr/bin/env bash
# Installs everything into .venv, then runs the linters, the drift checks and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-venv.sh run,serve,report,mlflow,dev
# The report tests render HTML in headless Chromium: install it where this system allows (root
# and apt); elsewhere those checks skip and say so.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "==> installing chromium for the report tests"
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } >/dev/null 2>&1 \
        || echo "==> chromium could not be installed; the browser checks of the report tests will skip"
fi
venv=${VENV:-.venv}
export DS_ACCELERATOR=cpu

echo "==> ruff";               "$venv/bin/ruff" check .
echo "==> mypy (strict)";      "$venv/bin/mypy"
echo "==> schemas and spec";   "$venv/bin/python" -m lmspec.schemagen --check
echo "==> examples";           "$venv/bin/lmspec" validate examples/
echo "==> conformance";        "$venv/bin/lmspec" conformance run
# One line per test as it finishes, and the slowest tests at the end.
echo "==> pytest";             "$venv/bin/python" -m pytest -v --durations=15 "$@"
