#!/usr/bin/env bash
# Installs everything into .venv, then runs the linters, the drift checks and the test suite.
# Usage: scripts/test.sh [--fast] [PYTEST ARGS...]
#   --fast: the same checks, and only the tests that start no process and train nothing
#           (markers integration and slow; see tests/conftest.py), in a few minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
fast=
if [ "${1:-}" = "--fast" ]; then
    fast=1
    shift
fi
scripts/setup-venv.sh run,serve,report,mlflow,dev
# Some tests need system programs: the report tests render HTML in headless Chromium, and the
# Slurm tests run the exported sbatch script on a single-node Slurm (munged, slurmctld, slurmd).
# Install them where this system allows (root and apt); elsewhere those tests skip and say so.
apt_updated=
apt_install() {  # PACKAGE...: quietly, with one `apt-get update` for all
    { [ -n "$apt_updated" ] || apt-get update -qq; } && apt_updated=1 \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"
}
has() { PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1; }  # daemons live in /usr/sbin
# The fast tier runs none of those tests.
if [ -z "$fast" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    if ! has chromium; then
        echo "==> installing chromium for the report tests"
        apt_install chromium >/dev/null 2>&1 \
            || echo "==> chromium could not be installed; the browser checks of the report tests will skip"
    fi
    if ! { has slurmd && has slurmctld && has munged; }; then
        echo "==> installing slurm-wlm and munge for the Slurm tests"
        apt_install slurm-wlm munge >/dev/null 2>&1 \
            || echo "==> Slurm could not be installed; the Slurm tests will skip"
    fi
fi
venv=${VENV:-.venv}
export DS_ACCELERATOR=cpu
# The validator's compiled checks must be the ones in use here: a test fails (rather than skips)
# when they were made for another pydantic-core or other models.
export LMSPEC_REQUIRE_COMPILED=1

echo "==> ruff";               "$venv/bin/ruff" check .
echo "==> mypy (strict)";      "$venv/bin/mypy"
echo "==> schemas and spec";   "$venv/bin/python" -m lmspec.schemagen --check
echo "==> examples";           "$venv/bin/lmspec" validate examples/
echo "==> conformance";        "$venv/bin/lmspec" conformance run
if [ -n "$fast" ]; then
    echo "==> pytest (fast tier)"
    LMSPEC_FAST_TIER=1 "$venv/bin/python" -m pytest -q -m "not integration and not slow" --durations=5 "$@"
else
    # One line per test as it finishes, and the slowest tests at the end.
    echo "==> pytest";         "$venv/bin/python" -m pytest -v --durations=15 "$@"
fi
