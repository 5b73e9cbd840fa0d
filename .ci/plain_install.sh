#!/usr/bin/env bash
# CI job: a plain `pip install .` (no extras, not editable) in a clean virtualenv gives a
# working command line.  Checks `skybutler --help`, a tiny create/insert/put/get round trip,
# and that a command needing an extra says which one in one line.  About a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d "${TMPDIR:-/tmp}/skybutler-plain.XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q . 2>&1 | grep -v "^WARNING: Location" || true
"$work/venv/bin/python" -c "import skybutler" || { echo "[plain-install] pip install . failed" >&2; exit 1; }
if "$work/venv/bin/python" -c "import astro_metadata_translator" 2>/dev/null; then
    echo "[plain-install] astro_metadata_translator came in without the extra" >&2; exit 1
fi
sb="$work/venv/bin/skybutler"
cd "$work"
"$sb" --help >/dev/null
"$sb" create repo >/dev/null
echo '[{"name": "MyCam", "detector_max": 4}]' > instrument.json
"$sb" insert-records repo instrument instrument.json >/dev/null
"$sb" register-dataset-type repo metrics instrument -s Dict >/dev/null
echo '{"seeing": 0.7}' > metrics.json
"$sb" put repo metrics metrics.json instrument=MyCam --run u/smoke >/dev/null
got=$("$sb" get repo metrics instrument=MyCam -c u/smoke)
"$work/venv/bin/python" -c 'import json, sys; assert json.loads(sys.argv[1]) == {"seeing": 0.7}, sys.argv[1]' "$got"
"$sb" register-instrument repo HSC >/dev/null
"$work/venv/bin/python" -c "from astropy.io import fits; fits.PrimaryHDU().writeto('raw.fits')"
if "$sb" ingest-raws repo raw.fits >out.txt 2>err.txt; then
    echo "[plain-install] ingest-raws without the instruments extra succeeded?" >&2; exit 1
fi
grep -q "pip install 'skybutler\[instruments\]'" err.txt || { cat err.txt >&2; exit 1; }
if grep -q Traceback err.txt; then cat err.txt >&2; exit 1; fi
echo "[plain-install] ok: plain install, --help, create/insert/put/get, a one-line hint for the missing extra" >&2
