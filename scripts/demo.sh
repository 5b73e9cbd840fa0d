#!/usr/bin/env bash
# Run the skybutler demo in the project's own virtualenv, creating and installing it when needed.
#
#   bash scripts/demo.sh                 # a tour on a temporary repository, deleted afterwards
#   bash scripts/demo.sh --dir DIR       # create the repository in DIR and keep it
#
# The virtualenv is the one scripts/test.sh makes and keeps up to date (.venv, or
# SKYBUTLER_VENV), so the demo and the tests always run against the same install.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/test.sh --setup-only
venv=${SKYBUTLER_VENV:-.venv}
exec "$venv/bin/python" -m skybutler.demo "$@"
