#!/usr/bin/env bash
# Create .venv (once) and install planfleet with the given extras into it, quietly.
# Usage: scripts/venv.sh EXTRAS   (e.g. "test,embedded")
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-embedded}"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=".venv/.installed-${extras//,/_}"
# reinstall only when the dependency list changed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip >/dev/null
    .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
    touch "$stamp"
fi
