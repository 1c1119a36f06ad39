#!/usr/bin/env bash
# Creates (or updates) the virtual environment that the quickstart and the tests use.
# Usage: scripts/setup-venv.sh EXTRAS   e.g. "run,serve" or "run,serve,dev"
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-run,serve}
venv=${VENV:-.venv}
python=${PYTHON:-python3}
# torch is pinned to a CPU build that installs in seconds; set TORCH_SPEC to choose another.
torch_spec=${TORCH_SPEC:-torch==2.13.0}

if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating $venv"
  "$python" -m venv "$venv"
fi
echo "==> installing lmspec[$extras] into $venv"
"$venv/bin/python" -m pip install -q --upgrade pip
# torch first: otherwise a dependency asking for plain "torch" may pull a multi-GB CUDA build.
# Not quiet: a line per package shows progress through the install (a few minutes on a slow line).
"$venv/bin/python" -m pip install --progress-bar on "$torch_spec"
"$venv/bin/python" -m pip install --progress-bar on -e ".[$extras]"
