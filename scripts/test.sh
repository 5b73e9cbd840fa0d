#!/usr/bin/env bash
# Run the test suite in the project's own virtualenv, creating and installing it when needed.
#
#   bash scripts/test.sh [pytest args...]    # e.g. -x -k calib, or tests/test_stacks.py
#   bash scripts/test.sh --setup-only        # just create/update the virtualenv
#
# The virtualenv is .venv (SKYBUTLER_VENV overrides), made with python3 (PYTHON overrides),
# and is reinstalled when pyproject.toml changes.  On its own this runs the suite on
# SQLite + local files; with SKYBUTLER_TEST_POSTGRES_URL and SKYBUTLER_TEST_S3_ENDPOINT
# set it also runs every stack test on PostgreSQL + S3 (.ci/run starts both servers).
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
venv=${SKYBUTLER_VENV:-.venv}
extras=${SKYBUTLER_EXTRAS:-postgres,s3,dask,server,test,instruments,pipelines,rubin-test,watch,catalogs,web-test}
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1

if [ ! -x "$venv/bin/python" ]; then
    echo "[test.sh] creating $venv with $("$python" --version 2>&1)" >&2
    "$python" -m venv "$venv"
fi
stamp="$venv/.skybutler-installed"
want="$(cksum <pyproject.toml) [$extras]"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    # A first install downloads and builds about a hundred packages (1-3 minutes): say so,
    # and name each package as pip collects it, rather than sit silent.
    echo "[test.sh] installing skybutler[$extras] and its dependencies into $venv" >&2
    echo "[test.sh] (only when pyproject.toml changed; a first install takes 1-3 minutes)" >&2
    "$venv/bin/python" -m pip install -q --upgrade pip
    "$venv/bin/python" -m pip install --progress-bar off -e ".[$extras]" 2>&1 \
        | { grep --line-buffered -E '^(Collecting|ERROR|error)' || true; } \
        | sed -u -e 's/^Collecting /[test.sh]   collecting /' >&2
    echo "[test.sh] installed; next runs start at once" >&2
    echo "$want" >"$stamp"
fi

if [ "${1:-}" = --setup-only ]; then
    exit 0
fi
exec "$venv/bin/python" -m pytest -q "$@"
