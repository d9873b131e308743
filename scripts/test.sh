#!/usr/bin/env bash
# Install everything the tests need on a fresh machine, then run every check:
# ruff, mypy, the JS unit tests (when js/ has any), the front ends' types (when npm is there),
# pytest (unit, reliability, notebooks, a real JupyterLab in the system Chromium).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  echo "== installing the system Chromium (browser tests)"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi

echo "== installing Python packages (the CPU build of torch first)"
python -m pip install -q --disable-pip-version-check torch==2.13.0
python -m pip install -q --disable-pip-version-check -e ".[train,notebook,test]"

echo "== ruff"
ruff check .
ruff format --check .

echo "== mypy (the package's types)"
mypy

if find js -name '*.test.js' -o -name '*.test.mjs' 2>/dev/null | grep -q .; then
  echo "== node --test js/"
  node --test js/
fi

if command -v npm >/dev/null 2>&1; then
  echo "== tsc --strict over the front ends (npm packages in a temporary folder)"
  scripts/check_js_types.sh
fi

echo "== pytest (screenshots of the widgets go to build/screenshots)"
export PATIENTML_SCREENSHOTS="${PATIENTML_SCREENSHOTS:-$PWD/build/screenshots}"
python -m pytest "$@"
