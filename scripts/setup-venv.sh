#!/usr/bin/env bash
# Creates (or updates) the virtual environment that the quickstart and the tests use.
# Usage: scripts/setup-venv.sh EXTRAS   e.g. "run,serve" or "run,serve,dev"
# Nothing is installed when the environment already holds these extras (or more) for this
# pyproject.toml and torch spec: the quickstart and the tests, run one after the other, install
# once. Delete $VENV/.lmspec-setup to install again anyway.
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${1:-run,serve}
venv=${VENV:-.venv}
python=${PYTHON:-python3}
# torch is pinned to a CPU build that installs in seconds; set TORCH_SPEC to choose another.
torch_spec=${TORCH_SPEC:-torch==2.13.0}

stamp="$venv/.lmspec-setup"
# Line 1: what the installed packages were resolved from; line 2: the extras installed.
source="$(sha256sum pyproject.toml | cut -d' ' -f1) $torch_spec"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(sed -n 1p "$stamp")" = "$source" ]; then
  have=$(sed -n 2p "$stamp")
  missing=$(comm -23 <(tr , '\n' <<<"$extras" | sort -u) <(tr , '\n' <<<"$have" | sort -u))
  if [ -z "$missing" ]; then
    echo "==> $venv already holds lmspec[$have]"
    exit 0
  fi
  # What is there stays: install the union, so that a later call for either set skips too.
  extras=$(tr , '\n' <<<"$extras,$have" | sort -u | paste -sd, -)
fi

if [ ! -x "$venv/bin/python" ]; then
  echo "==> creating $venv"
  "$python" -m venv "$venv"
fi
echo "==> installing lmspec[$extras] into $venv"
rm -f "$stamp"
"$venv/bin/python" -m pip install -q --upgrade pip
# torch first: otherwise a dependency asking for plain "torch" may pull a multi-GB CUDA build.
# Not quiet: a line per package shows progress through the install (a few minutes on a slow line).
"$venv/bin/python" -m pip install --progress-bar on "$torch_spec"
"$venv/bin/python" -m pip install --progress-bar on -e ".[$extras]"
printf '%s\n%s\n' "$source" "$extras" > "$stamp"
